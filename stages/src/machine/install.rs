//! Installing the packages into the unpacked base with the package manager
//! the base carries, and running the post-install script inside it.
//!
//! - A Debian base (it has `var/lib/dpkg/status`): `dpkg --root=ROOT
//!   --install` with the host's dpkg. dpkg chroots into ROOT for the
//!   maintainer scripts, so they run with the base's own shell and
//!   libraries, and the image's dpkg database records the packages
//!   (`dpkg-query --root ROOT -W` lists them). A `usr/sbin/policy-rc.d`
//!   that refuses service starts is in place while they run, as
//!   debootstrap does.
//! - An rpm base (`var/lib/rpm` or `usr/lib/sysimage/rpm`): `rpm --root
//!   ROOT --dbpath DB --install` (the base's own database, whatever the
//!   host's macros say: Debian's rpm defaults to `~/.rpmdb`), with `--nosignature` (pipe verified the packages
//!   against the project's keyring before the bake; the base's rpm database
//!   does not know that key).
//! - A base with neither: packages cannot be registered anywhere, so a
//!   machine that lists packages is refused ([`Error::NoPackageManager`]);
//!   one that lists none bakes as usual.
//!
//! The post-install script is copied into the root and run as
//! `chroot ROOT /bin/sh /.pipe-post-install.sh` with a clean environment
//! (`PATH`, `HOME=/root`, `LC_ALL=C.UTF-8`, `SOURCE_DATE_EPOCH`), and
//! removed afterwards. Both need root
//! (chroot(2)); without it the bake stops before any of this with
//! [`Error::NeedsRoot`].

use std::path::{Path, PathBuf};
use std::process::Command;

use super::tools::{Tool, Tools, run_captured};
use super::{PackageFiles, PackageManager};
use crate::{Error, Result};

/// How much of a failing command's output an error keeps (its tail).
const OUTPUT_LIMIT: usize = 64 << 10;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The package manager `root` carries, if any.
pub(crate) fn detect(root: &Path) -> Option<PackageManager> {
    let exists = |p: &str| std::fs::symlink_metadata(root.join(p)).is_ok();
    if exists("var/lib/dpkg/status") {
        Some(PackageManager::Dpkg)
    } else if exists("var/lib/rpm") || exists("usr/lib/sysimage/rpm") {
        Some(PackageManager::Rpm)
    } else {
        None
    }
}

/// Where the base keeps its rpm database, inside the root:
/// `/usr/lib/sysimage/rpm` (rpm 4.16 and later) when it exists, else the
/// traditional `/var/lib/rpm`.
pub(crate) fn rpm_dbpath(root: &Path) -> &'static str {
    if std::fs::symlink_metadata(root.join("usr/lib/sysimage/rpm")).is_ok_and(|m| m.is_dir()) {
        "/usr/lib/sysimage/rpm"
    } else {
        "/var/lib/rpm"
    }
}

fn base_env(cmd: &mut Command, epoch: u64) {
    cmd.env_clear()
        .env("PATH", PATH)
        .env("LC_ALL", "C.UTF-8")
        .env("HOME", "/root")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("SOURCE_DATE_EPOCH", epoch.to_string());
}

/// Installs `packages` into `root` with `manager`.
pub(crate) fn packages(
    tools: &Tools,
    root: &Path,
    manager: PackageManager,
    packages: &[PackageFiles],
    epoch: u64,
) -> Result<()> {
    let mut files: Vec<PathBuf> = Vec::new();
    for p in packages {
        let file = match manager {
            PackageManager::Dpkg => p.deb.as_ref(),
            PackageManager::Rpm => p.rpm.as_ref(),
        };
        files.push(file.cloned().ok_or_else(|| Error::NoPackageFile {
            package: p.name.clone(),
            manager,
        })?);
    }
    let mut cmd = match manager {
        PackageManager::Dpkg => {
            let mut c = Command::new(tools.path(Tool::Dpkg));
            c.arg(format!("--root={}", root.display()))
                .args(["--force-unsafe-io", "--install"]);
            c
        }
        PackageManager::Rpm => {
            let mut c = Command::new(tools.path(Tool::Rpm));
            // The base's own database, named explicitly: the host's rpm
            // macros may put it elsewhere (Debian's rpm uses ~/.rpmdb).
            c.arg("--root")
                .arg(root)
                .arg("--dbpath")
                .arg(rpm_dbpath(root))
                .args(["--nosignature", "--install"]);
            c
        }
    };
    cmd.args(&files);
    base_env(&mut cmd, epoch);
    let policy = root.join("usr/sbin/policy-rc.d");
    let made_policy = manager == PackageManager::Dpkg
        && root.join("usr/sbin").is_dir()
        && std::fs::symlink_metadata(&policy).is_err();
    if made_policy {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&policy, "#!/bin/sh\nexit 101\n").map_err(|e| Error::write(&policy, e))?;
        std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::write(&policy, e))?;
    }
    let result = run_captured(cmd, OUTPUT_LIMIT);
    if made_policy {
        std::fs::remove_file(&policy).map_err(|e| Error::write(&policy, e))?;
    }
    let (status, output) = result.map_err(|e| Error::ToolRun {
        tool: manager.tool(),
        source: e,
    })?;
    if !status.success() {
        return Err(Error::PackageInstall {
            manager,
            status: status.to_string(),
            output,
        });
    }
    Ok(())
}

/// Runs `script` inside `root`; returns its output.
pub(crate) fn post_install(
    tools: &Tools,
    root: &Path,
    script: &Path,
    epoch: u64,
) -> Result<String> {
    // At the top of the root, which is never a symlink; whatever has the
    // name already is removed first, so the copy cannot write through it.
    let inside = "/.pipe-post-install.sh";
    let copy = root.join(&inside[1..]);
    if std::fs::symlink_metadata(&copy).is_ok() {
        std::fs::remove_file(&copy).map_err(|e| Error::write(&copy, e))?;
    }
    std::fs::copy(script, &copy).map_err(|e| Error::read(script, e))?;
    let mut cmd = Command::new(tools.path(Tool::Chroot));
    cmd.arg(root).args(["/bin/sh", inside]).current_dir("/");
    base_env(&mut cmd, epoch);
    let result = run_captured(cmd, OUTPUT_LIMIT);
    let _ = std::fs::remove_file(&copy);
    let (status, output) = result.map_err(|e| Error::ToolRun {
        tool: Tool::Chroot,
        source: e,
    })?;
    if !status.success() {
        return Err(Error::PostInstall {
            script: script.to_path_buf(),
            status: status.to_string(),
            output,
        });
    }
    Ok(output)
}
