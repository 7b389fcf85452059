//! What this project already holds, verified, so a rebuild with nothing
//! changed neither copies large outputs out of the store again nor hashes
//! large inputs again.
//!
//! **Outputs.** A cache hit used to copy every output out of the store with
//! its digest checked: a 640 MiB machine image, copied and hashed on every
//! unchanged rebuild. Now every output of at least [`MIN_SIZE`] that pipe
//! itself hashed (it wrote it and stored it, or copied it out of the store
//! checking its digest) is hard-linked into `.pipe/verified/<blake3>`, with
//! a stamp beside it (`<blake3>.json`: the digests, and the file's device,
//! inode, size and modification time when it was hashed). A later restore of
//! the same blob links that file into the new build instead of copying,
//! when the stamp still matches the file, and otherwise copies from the
//! store as before, checking the digest.
//!
//! What is trusted, and why:
//! - the store is not: anyone who can write it may have swapped a blob, so a
//!   blob read from it (S3, or a local store directory) is still hashed as
//!   it is copied ([`Store::get_blob_to_file`]); a verified copy is never a
//!   link to a store file (a local store writes each blob through its own
//!   temporary file, so the inodes are separate);
//! - `.pipe/` in the project is trusted as the project's sources are (who
//!   can write it can change what is built); the stamp catches what happens
//!   there by accident: a build's image mounted read-write, a file edited
//!   (any write moves the modification time, kept to the nanosecond). The
//!   change time cannot be part of the stamp: linking and unlinking a file
//!   moves it, and the builds directory links and unlinks these files.
//!   Someone writing the file and then setting its modification time back
//!   on purpose is not caught; they could edit `pipeline.toml` as well.
//! - The stage record naming the blob is signed and checked before this is
//!   asked; the blob must also still be in the store (one size lookup; a
//!   missing one is stored again from the verified copy).
//!
//! Sharing one inode between build directories is safe because nothing
//! writes into a finished build: publish and deploy read it. A verified copy
//! whose last build directory is gone (link count 1) is removed on the next
//! build, so the cache never holds the only copy of anything.
//!
//! **Inputs.** A large input (a machine's base tarball) is hashed once per
//! change: [`hash_input`] keeps its digests under `.pipe/verified/inputs/`
//! with the file's identity (device, inode, size, modification and change
//! time: the change time is set by the kernel on every change and cannot be
//! set back), and trusts them while the identity is unchanged. A file
//! changed within two seconds of being hashed is not remembered (the
//! kernel's timestamps advance in ticks: a write in the same tick would not
//! show).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::store::{BlobRef, digest};
use crate::{Error, Result};

/// Where verified copies and input digests live, relative to the project.
pub(crate) const DIR: &str = ".pipe/verified";
/// Outputs smaller than this are copied from the store as before: copying
/// and hashing them costs less than the bookkeeping.
pub(crate) const MIN_SIZE: u64 = 1 << 20;
/// The largest stamp read.
const MAX_STAMP: u64 = 64 << 10;
/// How long after its last change a file's stamp is trusted.
const SETTLED: Duration = Duration::from_secs(2);

/// A file's identity: what changes when its bytes do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    /// Only for inputs (see the module documentation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ctime: Option<(i64, i64)>,
}

impl FileId {
    fn of(m: &std::fs::Metadata, with_ctime: bool) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
            ctime: with_ctime.then(|| (m.ctime(), m.ctime_nsec())),
        }
    }
}

/// What a stamp file holds.
#[derive(Debug, Serialize, Deserialize)]
struct Stamp {
    blob: BlobRef,
    file: FileId,
    /// For inputs: the path it was read at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
}

/// The verified copies of one project.
#[derive(Clone, Debug)]
pub(crate) struct Verified {
    dir: PathBuf,
}

impl Verified {
    /// The verified copies of the project in `project_dir`.
    pub(crate) fn new(project_dir: &Path) -> Verified {
        Verified {
            dir: project_dir.join(DIR),
        }
    }

    fn copy(&self, blob: &BlobRef) -> PathBuf {
        self.dir.join(&blob.blake3)
    }

    fn stamp(&self, blob: &BlobRef) -> PathBuf {
        self.dir.join(format!("{}.json", blob.blake3))
    }

    /// Records that `path` holds exactly `blob`: pipe hashed it itself, and
    /// `before` is its metadata from before the hashing began. Nothing is
    /// recorded when the file changed meanwhile, or is small, or cannot be
    /// linked here (another filesystem): the cache is an optimisation, and
    /// any failure only means a later copy.
    pub(crate) fn remember(&self, path: &Path, blob: &BlobRef, before: &std::fs::Metadata) {
        if blob.size < MIN_SIZE || !valid_digest(&blob.blake3) {
            return;
        }
        if let Err(e) = self.try_remember(path, blob, before) {
            tracing::debug!(path = %path.display(), error = %e, "not kept as a verified copy");
        }
    }

    fn try_remember(
        &self,
        path: &Path,
        blob: &BlobRef,
        before: &std::fs::Metadata,
    ) -> io::Result<()> {
        let id = FileId::of(before, false);
        let now = std::fs::symlink_metadata(path)?;
        if !now.is_file() || FileId::of(&now, false) != id || id.size != blob.size {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        // Linked under a temporary name, then renamed over any older entry,
        // so the name always holds a whole file.
        let tmp = self
            .dir
            .join(format!(".{}.{}", blob.blake3, std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::fs::hard_link(path, &tmp)?;
        if let Err(e) = std::fs::rename(&tmp, self.copy(blob)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let stamp = Stamp {
            blob: blob.clone(),
            file: id,
            path: None,
        };
        write_atomic(&self.stamp(blob), &crate::json::to_vec(&stamp))
    }

    /// Puts the verified copy of `blob` at `dest` (which must not exist) as
    /// a hard link; `false` when there is none, or its stamp does not match
    /// it any more, or it cannot be linked (then `dest` was not created).
    pub(crate) fn restore(&self, blob: &BlobRef, dest: &Path) -> bool {
        if blob.size < MIN_SIZE || !valid_digest(&blob.blake3) {
            return false;
        }
        match self.try_restore(blob, dest) {
            Ok(linked) => linked,
            Err(e) => {
                tracing::debug!(blob = %blob.blake3, error = %e, "verified copy not used");
                false
            }
        }
    }

    fn try_restore(&self, blob: &BlobRef, dest: &Path) -> io::Result<bool> {
        let Some(stamp) = read_stamp(&self.stamp(blob))? else {
            return Ok(false);
        };
        if stamp.blob != *blob {
            return Ok(false);
        }
        let copy = self.copy(blob);
        let matches = |m: &std::fs::Metadata| m.is_file() && FileId::of(m, false) == stamp.file;
        match std::fs::symlink_metadata(&copy) {
            Ok(m) if matches(&m) => {}
            Ok(_) => {
                tracing::warn!(copy = %copy.display(), "a verified copy changed since it was hashed: copying from the store instead");
                return Ok(false);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        std::fs::hard_link(&copy, dest)?;
        // The name could have been replaced between the check and the link:
        // what was linked must be the file the stamp describes.
        match std::fs::symlink_metadata(dest) {
            Ok(linked) if matches(&linked) => Ok(true),
            other => {
                std::fs::remove_file(dest)?;
                other.map(|_| false)
            }
        }
    }

    /// Removes the verified copies no build directory holds any more (link
    /// count 1) and their stamps, and stamps whose copy is gone.
    pub(crate) fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = e.path();
            if let Some(b3) = name.strip_suffix(".json") {
                if valid_digest(b3) && std::fs::symlink_metadata(self.dir.join(b3)).is_err() {
                    let _ = std::fs::remove_file(&path);
                }
            } else if valid_digest(name) {
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.nlink() <= 1) {
                    let _ = std::fs::remove_file(&path);
                    let _ = std::fs::remove_file(self.dir.join(format!("{name}.json")));
                }
            } else if name.starts_with('.')
                && std::fs::symlink_metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(24 * 3600))
            {
                // A temporary link left by a killed process.
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

/// The digests of the input file `path` of the project in `project_dir`:
/// remembered from an earlier hashing while the file's identity (device,
/// inode, size, modification and change time) is unchanged, hashed
/// otherwise. Blocking.
pub(crate) fn hash_input(project_dir: &Path, path: &Path) -> Result<BlobRef> {
    let dir = project_dir.join(DIR).join("inputs");
    let key = blake3::hash(path.as_os_str().as_encoded_bytes()).to_hex();
    let stamp_path = dir.join(format!("{key}.json"));
    let before = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let id = FileId::of(&before, true);
    if let Ok(Some(stamp)) = read_stamp(&stamp_path)
        && stamp.file == id
        && stamp.path.as_deref() == Some(path)
        && stamp.blob.size == id.size
    {
        return Ok(stamp.blob);
    }
    let started = SystemTime::now();
    let blob = digest::hash_file_blocking(path)?;
    // Remembered only if nothing changed while hashing, and the last change
    // is old enough that a later one would move the times.
    let after = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let settled = |secs: i64, nsec: i64| {
        let t = SystemTime::UNIX_EPOCH
            + Duration::new(secs.max(0) as u64, nsec.clamp(0, 999_999_999) as u32);
        started.duration_since(t).is_ok_and(|d| d >= SETTLED)
    };
    if FileId::of(&after, true) == id
        && blob.size == id.size
        && settled(id.mtime, id.mtime_nsec)
        && id.ctime.is_some_and(|(s, n)| settled(s, n))
    {
        let stamp = Stamp {
            blob: blob.clone(),
            file: id,
            path: Some(path.to_path_buf()),
        };
        let write = std::fs::create_dir_all(&dir)
            .and_then(|()| write_atomic(&stamp_path, &crate::json::to_vec(&stamp)));
        if let Err(e) = write {
            tracing::debug!(path = %path.display(), error = %e, "input digest not remembered");
        }
    }
    Ok(blob)
}

fn read_stamp(path: &Path) -> io::Result<Option<Stamp>> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    f.take(MAX_STAMP).read_to_end(&mut bytes)?;
    // A damaged stamp is as good as none.
    Ok(serde_json::from_slice(&bytes).ok())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn valid_digest(hex: &str) -> bool {
    hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp_file(project: &Path, path: &Path) -> PathBuf {
        let key = blake3::hash(path.as_os_str().as_encoded_bytes()).to_hex();
        project.join(DIR).join("inputs").join(format!("{key}.json"))
    }

    /// An input's digests are remembered once it settled, used while it is
    /// unchanged, and not once it changed, even with its size and
    /// modification time put back.
    #[test]
    fn an_input_is_hashed_again_only_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("base.tar");
        std::fs::write(&input, b"first content").unwrap();
        // Just written: hashed, not remembered (a write in the same clock
        // tick would not show).
        let first = hash_input(dir.path(), &input).unwrap();
        assert_eq!(first, digest::hash_bytes(b"first content"));
        assert!(!stamp_file(dir.path(), &input).exists());
        std::thread::sleep(SETTLED + Duration::from_millis(100));
        assert_eq!(hash_input(dir.path(), &input).unwrap(), first);
        let stamp = stamp_file(dir.path(), &input);
        assert!(stamp.exists(), "remembered once settled");

        // The remembered digests are what is used: a stamp edited to name
        // other digests is believed while the file is unchanged (the stamp
        // is the project's own, as trusted as the file it describes).
        let mut doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&stamp).unwrap()).unwrap();
        let other = digest::hash_bytes(b"other content");
        doc["blob"] = serde_json::to_value(&other).unwrap();
        std::fs::write(&stamp, serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(hash_input(dir.path(), &input).unwrap(), other);

        // Rewritten with the same size, its modification time set back:
        // the change time moved, so it is hashed again.
        let mtime = std::fs::metadata(&input).unwrap().modified().unwrap();
        std::fs::write(&input, b"fresh content").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&input)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(
            hash_input(dir.path(), &input).unwrap(),
            digest::hash_bytes(b"fresh content")
        );
    }
}
