//! Bases for the machine-image tests and the real tools that read images.
//!
//! [`debian_base`] is a real Debian root filesystem made by `mmdebstrap
//! --variant=essential --mode=root bookworm` from the Debian mirror, built
//! once and cached in `.pipe-dev/cache/` (under a lock, so concurrent tests
//! wait for one build instead of making two). If mmdebstrap cannot run or
//! fails, the test fails with its output. [`tiny_base`] is a handful of
//! files that look like a root filesystem, for the tests that never run a
//! program inside it.

use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::workspace_root;
use crate::consumers::{run, text, try_run};

/// The cache key: change it to rebuild every machine's cached base.
const DEBIAN_BASE: &str = "debian-bookworm-essential-v1.tar.gz";

/// The cached Debian base tarball, built on first use.
pub fn debian_base() -> PathBuf {
    let dir = workspace_root().join(".pipe-dev/cache");
    std::fs::create_dir_all(&dir).expect("create .pipe-dev/cache");
    let out = dir.join(DEBIAN_BASE);
    let lock = std::fs::File::create(dir.join(format!("{DEBIAN_BASE}.lock"))).expect("lock file");
    // SAFETY: a valid open descriptor.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) },
        0,
        "flock"
    );
    if !out.exists() {
        let tmp = dir.join(format!("{DEBIAN_BASE}.partial.tar.gz"));
        let _ = std::fs::remove_file(&tmp);
        let o = try_run(
            Command::new("mmdebstrap")
                .args(["--variant=essential", "--mode=root", "--quiet", "bookworm"])
                .arg(&tmp),
        );
        assert!(
            o.status.success() && tmp.exists(),
            "mmdebstrap could not build the Debian test base (it needs the Debian mirror and root; \
             install it with scripts/install-deps.sh test):\n{}",
            text(&o)
        );
        std::fs::rename(&tmp, &out).expect("rename base");
    }
    out
}

/// A tarball that looks like a root filesystem: `etc/`, a `bin/sh` (not a
/// working shell), a device node, hard and symbolic links, and the files
/// generalisation removes. Nothing inside can run.
pub fn tiny_base(dir: &Path) -> PathBuf {
    let path = dir.join("tiny-rootfs.tar");
    let f = std::fs::File::create(&path).unwrap();
    let mut b = tar::Builder::new(f);
    let mut add = |name: &str, kind: tar::EntryType, mode: u32, body: &[u8], link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(body.len() as u64);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        if kind == tar::EntryType::Char {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_path(name).unwrap();
        h.set_cksum();
        b.append(&h, body).unwrap();
    };
    use tar::EntryType::*;
    add("./", Directory, 0o755, b"", None);
    for d in [
        "etc",
        "etc/ssh",
        "etc/udev",
        "etc/udev/rules.d",
        "usr",
        "usr/bin",
        "dev",
        "tmp",
        "root",
        "home",
        "home/ann",
        "var",
        "var/tmp",
        "srv",
    ] {
        add(&format!("./{d}/"), Directory, 0o755, b"", None);
    }
    add("./bin", Symlink, 0o777, b"", Some("usr/bin"));
    add("./usr/bin/sh", Regular, 0o755, b"#!not a shell\n", None);
    add("./etc/os-release", Regular, 0o644, b"ID=tiny\n", None);
    add(
        "./etc/machine-id",
        Regular,
        0o444,
        b"0123456789abcdef0123456789abcdef\n",
        None,
    );
    add(
        "./etc/ssh/ssh_host_ed25519_key",
        Regular,
        0o600,
        b"secret\n",
        None,
    );
    add(
        "./etc/ssh/ssh_host_ed25519_key.pub",
        Regular,
        0o644,
        b"public\n",
        None,
    );
    add(
        "./etc/ssh/sshd_config",
        Regular,
        0o644,
        b"PermitRootLogin no\n",
        None,
    );
    add(
        "./etc/udev/rules.d/70-persistent-net.rules",
        Regular,
        0o644,
        b"SUBSYSTEM==\"net\"\n",
        None,
    );
    add(
        "./etc/udev/rules.d/60-other.rules",
        Regular,
        0o644,
        b"# kept\n",
        None,
    );
    add("./root/.bash_history", Regular, 0o600, b"ls\n", None);
    add("./home/ann/.python_history", Regular, 0o600, b"1+1\n", None);
    add("./home/ann/notes.txt", Regular, 0o640, b"kept\n", None);
    add("./tmp/junk", Regular, 0o644, b"junk\n", None);
    add("./var/tmp/junk2", Regular, 0o644, b"junk\n", None);
    add("./dev/null", Char, 0o666, b"", None);
    add("./srv/data.bin", Regular, 0o600, &vec![7u8; 200_000], None);
    add("./srv/data-link", Link, 0o600, b"", Some("./srv/data.bin"));
    add(
        "./srv/a file \"quoted\"",
        Regular,
        0o644,
        b"odd name\n",
        None,
    );
    b.finish().unwrap();
    path
}

/// `debugfs -R 'cat PATH' IMAGE`: the file's bytes, or `None` when the image
/// has no such file.
pub fn debugfs_cat(image: &Path, path: &str) -> Option<Vec<u8>> {
    let o = try_run(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat \"{path}\""))
            .arg(image),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    if err.contains("File not found") {
        return None;
    }
    assert!(o.status.success(), "debugfs cat {path}: {}", text(&o));
    Some(o.stdout)
}

/// `debugfs -R 'stat PATH'`: the inode's description, or `None`.
pub fn debugfs_stat(image: &Path, path: &str) -> Option<String> {
    let o = try_run(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("stat \"{path}\""))
            .arg(image),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    if err.contains("File not found") {
        return None;
    }
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// `e2fsck -fn` must find nothing; `qemu-img check` and `qemu-img info`
/// must accept the image with the expected format.
pub fn assert_images_sound(raw: Option<&Path>, qcow2: Option<&Path>) {
    if let Some(raw) = raw {
        let o = run(Command::new("e2fsck").args(["-f", "-n"]).arg(raw));
        let _ = std::io::stderr().write_all(&o.stdout);
        let info = run(Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(raw));
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(v["format"], "raw", "{v}");
    }
    if let Some(q) = qcow2 {
        run(Command::new("qemu-img")
            .args(["check", "-f", "qcow2"])
            .arg(q));
        let info = run(Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(q));
        let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(v["format"], "qcow2", "{v}");
    }
}

/// A project around [`tiny_base`]: `[project]` NAME 1.0.0, the signing key,
/// `[environments.dev]`, one package no machine lists (`unused`, a .deb) and
/// then `rest` (the `[machines.*]` and `[deploy]` sections, with `base =
/// "rootfs:tiny-rootfs.tar"`). The key is generated.
pub fn tiny_project(name: &str, store: Option<&str>, rest: &str) -> crate::cli::Project {
    let p = crate::cli::Project::new();
    let store = store
        .map(|s| format!("[store]\nurl = \"{s}\"\n\n"))
        .unwrap_or_default();
    p.write(
        "pipeline.toml",
        &format!(
            r#"[project]
name = "{name}"
version = "1.0.0"
source_date_epoch = 1700000000

{store}[signing]
key = "keys/release.key"

[environments.dev]

[packages.unused]
summary = "A package no machine lists"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb"]
files = [{{ src = "a.txt", dst = "/usr/share/unused/a.txt" }}]

{rest}"#
        ),
    );
    p.write("a.txt", "a\n");
    tiny_base(p.path());
    p
}

/// The SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut h).unwrap();
    hex::encode(h.finalize())
}

/// A package tree `dir/NAME-pkg` for dpkg-deb: `DEBIAN/control` says
/// `control`, and the directories `dirs` (relative) exist. Returns its root.
pub fn deb_tree(dir: &Path, name: &str, control: &str, dirs: &[&str]) -> PathBuf {
    let root = dir.join(format!("{name}-pkg"));
    for d in std::iter::once("DEBIAN").chain(dirs.iter().copied()) {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("DEBIAN/control"), control).unwrap();
    root
}

/// `dpkg-deb --build` of `root` into `deb` (root-owned, gzip, dated
/// `epoch`); returns `deb`.
pub fn dpkg_build(root: &Path, deb: PathBuf, epoch: u64) -> PathBuf {
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(root)
        .arg(&deb)
        .env("SOURCE_DATE_EPOCH", epoch.to_string()));
    deb
}
