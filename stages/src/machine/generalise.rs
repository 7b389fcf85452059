//! Generalising the baked tree, so one image boots as many distinct machines:
//! what identifies one machine or one bake is removed, and the list of what
//! was removed goes into the build record.
//!
//! - `/etc/udev/rules.d/*net*.rules`: persistent network-interface names
//!   bound to the bake host's MAC addresses;
//! - `/etc/machine-id`: emptied (not removed: systemd then generates one at
//!   first boot and treats the boot as the first), and
//!   `/var/lib/dbus/machine-id` removed when it is a file;
//! - `/etc/ssh/ssh_host_*`: SSH host keys (each machine makes its own);
//! - shell and tool histories (`.*_history`, `.*history`) in `/root` and
//!   each `/home/*`;
//! - everything inside `/tmp` and `/var/tmp`;
//! - package caches: `/var/cache/apt/archives/*.deb`, `/var/cache/apt/*.bin`,
//!   the downloaded lists in `/var/lib/apt/lists`, and `/var/cache/dnf`,
//!   `/var/cache/yum` contents.
//!
//! Nothing is followed through a symlink: a symlink found where a file is
//! expected is itself removed, never its target.

use std::io;
use std::path::Path;

use crate::{Error, Result};

/// What generalisation removed or emptied, as absolute paths in the image,
/// sorted; an emptied file is listed with ` (emptied)` after it.
pub(crate) fn generalise(root: &Path) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let mut g = Gen {
        root,
        removed: &mut removed,
    };
    g.matching("etc/udev/rules.d", |n| {
        n.contains("net") && n.ends_with(".rules")
    })?;
    g.empty("etc/machine-id")?;
    g.remove_file("var/lib/dbus/machine-id")?;
    g.matching("etc/ssh", |n| n.starts_with("ssh_host_"))?;
    let history = |n: &str| n.starts_with('.') && n.ends_with("history");
    g.matching("root", history)?;
    for home in sorted_names(&root.join("home"))? {
        if is_real_dir(&root.join("home").join(&home)) {
            g.matching(&format!("home/{home}"), history)?;
        }
    }
    g.matching("tmp", |_| true)?;
    g.matching("var/tmp", |_| true)?;
    g.matching("var/cache/apt/archives", |n| n.ends_with(".deb"))?;
    g.matching("var/cache/apt/archives/partial", |_| true)?;
    g.matching("var/cache/apt", |n| n.ends_with(".bin"))?;
    g.matching("var/lib/apt/lists", |n| n != "lock" && n != "partial")?;
    g.matching("var/lib/apt/lists/partial", |_| true)?;
    g.matching("var/cache/dnf", |_| true)?;
    g.matching("var/cache/yum", |_| true)?;
    removed.sort();
    Ok(removed)
}

struct Gen<'a> {
    root: &'a Path,
    removed: &'a mut Vec<String>,
}

impl Gen<'_> {
    /// Removes each entry of directory `dir` (relative to the root) whose
    /// name satisfies `pred`; a directory is removed with its contents.
    fn matching(&mut self, dir: &str, pred: impl Fn(&str) -> bool) -> Result<()> {
        let path = self.root.join(dir);
        if !is_real_dir(&path) || !parents_real(self.root, dir) {
            return Ok(());
        }
        for name in sorted_names(&path)? {
            if !pred(&name) {
                continue;
            }
            let p = path.join(&name);
            let meta = std::fs::symlink_metadata(&p).map_err(|e| Error::read(&p, e))?;
            if meta.is_dir() {
                std::fs::remove_dir_all(&p).map_err(|e| Error::write(&p, e))?;
            } else {
                std::fs::remove_file(&p).map_err(|e| Error::write(&p, e))?;
            }
            self.removed.push(format!("/{dir}/{name}"));
        }
        Ok(())
    }

    fn remove_file(&mut self, rel: &str) -> Result<()> {
        let p = self.root.join(rel);
        let Some(parent) = Path::new(rel).parent().and_then(|p| p.to_str()) else {
            return Ok(());
        };
        if !parents_real(self.root, parent) {
            return Ok(());
        }
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() => {
                std::fs::remove_file(&p).map_err(|e| Error::write(&p, e))?;
                self.removed.push(format!("/{rel}"));
            }
            _ => {}
        }
        Ok(())
    }

    fn empty(&mut self, rel: &str) -> Result<()> {
        let p = self.root.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_file() && m.len() > 0 => {
                // Truncate in place: mode and owner stay.
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map_err(|e| Error::write(&p, e))?;
                f.set_len(0).map_err(|e| Error::write(&p, e))?;
                self.removed.push(format!("/{rel} (emptied)"));
            }
            _ => {}
        }
        Ok(())
    }
}

fn is_real_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// True when no component of `rel` under `root` is a symlink, so nothing
/// below is reached through one.
fn parents_real(root: &Path, rel: &str) -> bool {
    let mut p = root.to_path_buf();
    for c in rel.split('/').filter(|c| !c.is_empty()) {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => {}
            _ => return false,
        }
    }
    true
}

fn sorted_names(dir: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::read(dir, e)),
    };
    let mut names = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::read(dir, e))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}
