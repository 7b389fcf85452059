//! Normalising every time in the tree before `mke2fs -d` copies it: each
//! modification time is clamped to `SOURCE_DATE_EPOCH` (files newer than
//! it, written by dpkg or the post-install script, get exactly it), and
//! each access time is set to the modification time. The change time cannot
//! be set from user space; `super::ext4` sets it in the image afterwards.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Sets the access and modification times of `path` (not following a
/// symlink) to `secs`.
pub(crate) fn set_times(path: &Path, secs: i64) -> io::Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// Clamps the times of everything under `root` (and `root` itself) and
/// returns every path, relative to `root`, with its new time, sorted,
/// `root` first as "".
/// Directories are set after their contents, so setting a child's times
/// does not move its parent's again.
pub(crate) fn normalise(root: &Path, epoch: u64) -> io::Result<Vec<(PathBuf, i64)>> {
    let mut out = Vec::new();
    walk(root, Path::new(""), epoch as i64, &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(root: &Path, rel: &Path, epoch: i64, out: &mut Vec<(PathBuf, i64)>) -> io::Result<()> {
    let path = root.join(rel);
    let meta = std::fs::symlink_metadata(&path)?;
    if meta.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(&path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            walk(root, &rel.join(name), epoch, out)?;
        }
    }
    let mtime = meta.mtime().min(epoch);
    set_times(&path, mtime)?;
    out.push((rel.to_path_buf(), mtime));
    Ok(())
}
