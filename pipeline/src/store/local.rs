//! The local directory backend.
//!
//! Every write goes to a temporary file under `.tmp/` (same filesystem), is
//! synced, then moved into place atomically: `hard_link` for create-only
//! writes (it fails if the key exists, so racing creators get one winner),
//! `rename` otherwise. Replacements and deletions hold an exclusive lock on
//! `.locks/<digest of key>.lock`, so a compare-and-swap reads the current
//! version and renames without anyone else replacing the file in between.
//! The version of an object is a digest of its identity and state (device,
//! inode, size, modification time): every write makes a new file, so a
//! replaced object always has a new inode, and an edit in place changes the
//! modification time. Unlike a content digest it costs one `stat`, so
//! listing a store of large blobs reads none of them.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::digest::{CHUNK, filled, spawn_blocking};
use super::{
    Backend, Body, BodyInner, Condition, Listed, Object, ObjectBody, ObjectMeta, Upload, Version,
};
use crate::{Error, Result};

const TMP: &str = ".tmp";
const LOCKS: &str = ".locks";
/// Temporary files older than this are left over from a killed process.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

pub(super) struct LocalBackend {
    root: PathBuf,
    /// Some write was made without its own flush (through a batch handle)
    /// since the last [`Backend::flush`]. A flush with none has nothing to
    /// make durable and skips the `syncfs`, which also writes back every
    /// other process's dirty data on the filesystem (a publish that found
    /// everything stored waited on it: tens to hundreds of milliseconds on
    /// a busy machine).
    unflushed: std::sync::atomic::AtomicBool,
}

impl LocalBackend {
    pub(super) fn new(root: PathBuf) -> Self {
        LocalBackend {
            root,
            unflushed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Notes a write made without its own flush.
    fn unflushed(&self, durable: bool) {
        if !durable {
            self.unflushed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

#[async_trait]
impl Backend for LocalBackend {
    async fn get(&self, key: &str) -> Result<Option<Object>> {
        let path = self.path(key);
        let key = key.to_string();
        let opened = spawn_blocking(move || {
            let Some(file) = open_existing(&path)? else {
                return Ok(None);
            };
            // Version and body come from one open file, so they agree even if
            // the key is replaced meanwhile (replacement is by rename).
            let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
            Ok(Some((file, version_of(&meta), meta.len())))
        })
        .await?;
        Ok(opened.map(|(file, version, size)| Object {
            meta: ObjectMeta { key, size, version },
            body: reader(file),
        }))
    }

    async fn get_bytes(&self, key: &str, max: u64) -> Result<Option<(Bytes, Version)>> {
        let path = self.path(key);
        let key = key.to_string();
        spawn_blocking(move || {
            let Some(file) = open_existing(&path)? else {
                return Ok(None);
            };
            let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
            super::too_large(&key, meta.len(), max)?;
            let mut bytes = Vec::with_capacity(meta.len() as usize);
            file.take(max.saturating_add(1))
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(&path, e))?;
            super::too_large(&key, bytes.len() as u64, max)?;
            Ok(Some((bytes.into(), version_of(&meta))))
        })
        .await
    }

    async fn open(&self, key: &str) -> Result<Option<(u64, ObjectBody)>> {
        let path = self.path(key);
        let opened = spawn_blocking(move || {
            let Some(file) = open_existing(&path)? else {
                return Ok(None);
            };
            let size = file.metadata().map_err(|e| Error::io(&path, e))?.len();
            Ok(Some((size, file)))
        })
        .await?;
        Ok(opened.map(|(size, file)| (size, reader(file))))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let path = self.path(key);
        let key = key.to_string();
        spawn_blocking(move || {
            let Some(file) = open_existing(&path)? else {
                return Ok(None);
            };
            let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
            Ok(Some(ObjectMeta {
                key,
                size: meta.len(),
                version: version_of(&meta),
            }))
        })
        .await
    }

    async fn put(&self, key: &str, body: Body, cond: Condition, durable: bool) -> Result<Version> {
        let tmp_dir = self.root.join(TMP);
        let tmp = match body.0 {
            // A spooled file in the store's own temporary directory is
            // moved into place as it is.
            BodyInner::Temp(tmp, Some(_)) if tmp.starts_with(&tmp_dir) => tmp,
            BodyInner::Reader(r) => super::digest::spool_hashed(r, &tmp_dir).await?.0,
            other => {
                let dir = tmp_dir.clone();
                spawn_blocking(move || write_temp(&dir, other, durable)).await?
            }
        };
        let root = self.root.clone();
        let key = key.to_string();
        // Marked before the commit: a flush that starts after this write
        // returns finds it marked.
        self.unflushed(durable);
        spawn_blocking(move || commit(&root, &key, tmp, cond, durable)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        Ok(self
            .list_modified(prefix)
            .await?
            .into_iter()
            .map(|l| l.meta)
            .collect())
    }

    async fn list_modified(&self, prefix: &str) -> Result<Vec<Listed>> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        spawn_blocking(move || {
            let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
            let start = if dir_part.is_empty() {
                root.clone()
            } else {
                root.join(dir_part)
            };
            let mut out = Vec::new();
            walk_with(&root, &start, &prefix, &mut |key, meta| {
                out.push(listed(key, meta))
            })?;
            Ok(out)
        })
        .await
    }

    async fn stat(&self, key: &str) -> Result<Option<Listed>> {
        let path = self.path(key);
        let key = key.to_string();
        spawn_blocking(move || match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => Ok(Some(listed(key, &m))),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(Error::io(&path, e)),
        })
        .await
    }

    async fn freshen(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        spawn_blocking(move || {
            // The object's bytes never change: only its modification time,
            // which every hard link of it (a pool copy) shares.
            match std::fs::File::options().write(true).open(&path) {
                Ok(f) => f
                    .set_modified(std::time::SystemTime::now())
                    .map_err(|e| Error::io(&path, e)),
                Err(e) if is_missing(&e) => Ok(()),
                Err(e) => Err(Error::io(&path, e)),
            }
        })
        .await
    }

    async fn uploads(&self) -> Result<Vec<Upload>> {
        let dir = self.root.join(TMP);
        spawn_blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if is_missing(&e) => return Ok(Vec::new()),
                Err(e) => return Err(Error::io(&dir, e)),
            };
            let mut out = Vec::new();
            for e in entries.flatten() {
                let Ok(meta) = e.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let name = e.file_name().to_string_lossy().into_owned();
                out.push(Upload {
                    key: format!("{TMP}/{name}"),
                    id: name,
                    last_active: unix(
                        meta.modified()
                            .unwrap_or_else(|_| std::time::SystemTime::now()),
                    ),
                    size: meta.len(),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn abort_upload(&self, upload: &Upload) -> Result<()> {
        // Only a plain name inside `.tmp/`: never a path elsewhere.
        if matches!(upload.id.as_str(), "" | "." | "..") || upload.id.contains(['/', '\\']) {
            return Ok(());
        }
        let path = self.root.join(TMP).join(&upload.id);
        spawn_blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let root = self.root.clone();
        let key = key.to_string();
        spawn_blocking(move || {
            let path = root.join(&key);
            let _lock = lock_key(&root, &key)?;
            match std::fs::remove_file(&path) {
                Ok(()) => sync_parent(&path),
                Err(e) if is_missing(&e) => Ok(()),
                Err(e) => Err(Error::io(&path, e)),
            }
        })
        .await
    }

    async fn copy_if_absent(&self, from: &str, to: &str, durable: bool) -> Result<bool> {
        let (src, dst) = (self.path(from), self.path(to));
        self.unflushed(durable);
        spawn_blocking(move || {
            #[allow(
                clippy::expect_used,
                reason = "a key is a non-empty path joined to the store root"
            )]
            let parent = dst.parent().expect("a key has a parent: the store root");
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            // A link is atomic and fails if the target exists; objects are
            // replaced by rename, never written in place, so sharing the
            // inode never lets a later write reach the copy.
            match std::fs::hard_link(&src, &dst) {
                Ok(()) if durable => sync_parent(&dst).map(|()| true),
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(Error::io(&src, e)),
            }
        })
        .await
    }

    async fn copy(&self, from: &str, to: &str, durable: bool) -> Result<()> {
        let src = self.path(from);
        let (root, key) = (self.root.clone(), to.to_string());
        let tmp_dir = self.root.join(TMP);
        self.unflushed(durable);
        spawn_blocking(move || {
            std::fs::create_dir_all(&tmp_dir).map_err(|e| Error::io(&tmp_dir, e))?;
            // A new name for the same file, then moved over `to` as a
            // written file is: objects are replaced by rename, never
            // written in place, so no later write reaches the other key.
            let tmp = tempfile::Builder::new()
                .make_in(&tmp_dir, |p| std::fs::hard_link(&src, p))
                .map_err(|e| Error::io(&src, e))?
                .into_temp_path();
            commit(&root, &key, tmp, Condition::Overwrite, durable).map(|_| ())
        })
        .await
    }

    async fn flush(&self) -> Result<()> {
        if !self
            .unflushed
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(());
        }
        let root = self.root.clone();
        spawn_blocking(move || {
            let dir = std::fs::File::open(&root).map_err(|e| Error::io(&root, e))?;
            // One syncfs for the whole filesystem instead of a flush per
            // object written through a batch handle.
            rustix::fs::syncfs(&dir).map_err(|e| Error::io(&root, e.into()))
        })
        .await
    }

    fn spool_dir(&self) -> PathBuf {
        self.root.join(TMP)
    }

    async fn prepare_write(&self, _opts: &super::OpenOptions) -> Result<()> {
        // A killed writer leaves its temporary file; nothing refers to it.
        // Old ones only: a younger one may belong to a running writer.
        let dir = self.root.join(TMP);
        spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return Ok(());
            };
            for e in entries.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_TEMP);
                if old && std::fs::remove_file(e.path()).is_ok() {
                    tracing::debug!(path = %e.path().display(), "removed a stale temporary file");
                }
            }
            Ok(())
        })
        .await
    }

    fn read_error(&self, key: &str, e: std::io::Error) -> Error {
        Error::io(self.path(key), e)
    }
}

fn reader(file: std::fs::File) -> ObjectBody {
    // Each read of a tokio file is a trip to the blocking pool; large reads
    // make the trips rare.
    Box::new(tokio::io::BufReader::with_capacity(
        CHUNK,
        tokio::fs::File::from_std(file),
    ))
}

fn version_of(meta: &std::fs::Metadata) -> Version {
    use std::os::unix::fs::MetadataExt;
    let identity = format!(
        "{}:{}:{}:{}.{:09}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    Version(blake3::hash(identity.as_bytes()).to_hex()[..32].to_string())
}

/// Makes the replacement `tmp` of the object at `path` carry a later
/// modification time than the object, and returns its version. Called
/// under the key's lock: a key's versions (device, inode, size, mtime)
/// then never repeat, even when a freed inode is reused for an object of
/// the same size within one clock tick: the mtime is a generation counter.
fn later_than_current(tmp: &Path, path: &Path) -> Result<Version> {
    use std::os::unix::fs::MetadataExt;
    let mut meta = std::fs::metadata(tmp).map_err(|e| Error::io(tmp, e))?;
    let Ok(current) = std::fs::metadata(path) else {
        return Ok(version_of(&meta));
    };
    let stamp = |m: &std::fs::Metadata| (m.mtime(), m.mtime_nsec());
    let (secs, nanos) = stamp(&current);
    // A filesystem keeping whole seconds drops the nanosecond: then a
    // second later.
    for step in [
        std::time::Duration::from_nanos(1),
        std::time::Duration::from_secs(1),
    ] {
        if stamp(&meta) > (secs, nanos) {
            break;
        }
        let (Ok(secs), Ok(nanos)) = (u64::try_from(secs), u32::try_from(nanos)) else {
            break;
        };
        let next = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos) + step;
        std::fs::File::options()
            .write(true)
            .open(tmp)
            .and_then(|f| f.set_modified(next))
            .map_err(|e| Error::io(tmp, e))?;
        meta = std::fs::metadata(tmp).map_err(|e| Error::io(tmp, e))?;
    }
    Ok(version_of(&meta))
}

fn is_missing(e: &std::io::Error) -> bool {
    // NotADirectory: a key below what is a file, e.g. `a/b` when `a` is one.
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

fn open_existing(path: &Path) -> Result<Option<std::fs::File>> {
    match std::fs::File::open(path) {
        Ok(f) if f.metadata().map(|m| m.is_dir()).unwrap_or(false) => Ok(None),
        Ok(f) => Ok(Some(f)),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Writes a body into a temporary file (synced when `durable`).
///
/// Nothing is hashed here: the caller hashed a blob's file to name it, and
/// the copy is made from that same file, which must not change meanwhile
/// (as [`super::Body::from_file`] says). A file is copied extent by extent
/// ([`copy_sparse`]): a sparse machine image stays sparse in the store, and
/// its holes are neither read nor written.
fn write_temp(dir: &Path, body: BodyInner, durable: bool) -> Result<tempfile::TempPath> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    // Readable by everyone (less the umask): a store is a publication, and
    // the web server that serves its repositories runs as another user.
    let mut tmp = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    let tmp_path = tmp.path().to_path_buf();
    match body {
        BodyInner::Bytes(b) => tmp.write_all(&b).map_err(|e| Error::io(&tmp_path, e))?,
        BodyInner::File(src) => copy_sparse(&src, tmp.as_file(), &tmp_path)?,
        BodyInner::Temp(src, _) => copy_sparse(&src, tmp.as_file(), &tmp_path)?,
        BodyInner::Reader(_) => unreachable!("readers are spooled before"),
    }
    if durable {
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(&tmp_path, e))?;
    }
    Ok(tmp.into_temp_path())
}

/// Copies `src` into the empty file `dst` (at `dst_path`), keeping its
/// holes: each data extent (`SEEK_DATA`/`SEEK_HOLE`) is copied by the
/// kernel (`copy_file_range`, a plain read and write where that is not
/// possible), the rest is left a hole of the same length. Holes read as
/// zeros, so the bytes are the same. An error names the file it happened
/// on (a full disk is the store's, not the source's); a source that shrinks
/// meanwhile is an error, not a short copy.
fn copy_sparse(src: &Path, dst: &std::fs::File, dst_path: &Path) -> Result<()> {
    use rustix::fs::SeekFrom;
    use rustix::io::Errno;
    let file = std::fs::File::open(src).map_err(|e| Error::io(src, e))?;
    let len = file.metadata().map_err(|e| Error::io(src, e))?.len();
    let mut pos = 0;
    while pos < len {
        let start = match rustix::fs::seek(&file, SeekFrom::Data(pos)) {
            Ok(start) => start,
            // Nothing but a hole from `pos` to the end.
            Err(Errno::NXIO) => break,
            // A filesystem that cannot tell: all of it is data.
            Err(Errno::INVAL | Errno::NOTSUP) => pos,
            Err(e) => return Err(Error::io(src, e.into())),
        };
        if start >= len {
            break;
        }
        let end = match rustix::fs::seek(&file, SeekFrom::Hole(start)) {
            Ok(end) => end.min(len),
            Err(Errno::INVAL | Errno::NOTSUP) => len,
            Err(e) => return Err(Error::io(src, e.into())),
        };
        copy_range(&file, src, dst, dst_path, start, end)?;
        pos = end;
    }
    // A hole at the end is the file's length, not an extent.
    dst.set_len(len).map_err(|e| Error::io(dst_path, e))
}

/// Copies bytes `start..end` of `file` (at `src`) to the same offsets of
/// `dst`.
fn copy_range(
    file: &std::fs::File,
    src: &Path,
    dst: &std::fs::File,
    dst_path: &Path,
    start: u64,
    end: u64,
) -> Result<()> {
    use rustix::io::Errno;
    use std::os::unix::fs::FileExt;
    let shrank = || {
        Error::io(
            src,
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file got shorter while it was being stored",
            ),
        )
    };
    let (mut off_in, mut off_out) = (start, start);
    while off_in < end {
        let want = usize::try_from(end - off_in)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        match rustix::fs::copy_file_range(file, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => return Err(shrank()),
            Ok(_) => {}
            Err(Errno::INTR) => {}
            // Another filesystem, or a kernel or filesystem without it:
            // read and write.
            Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::NOTSUP) => {
                break;
            }
            // Which side failed is not said: a full disk is the store's.
            Err(e @ (Errno::NOSPC | Errno::DQUOT | Errno::FBIG)) => {
                return Err(Error::io(dst_path, e.into()));
            }
            Err(e) => return Err(Error::io(src, e.into())),
        }
    }
    let mut buf = vec![0u8; CHUNK];
    while off_in < end {
        let want = usize::try_from(end - off_in)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let window = buf.get_mut(..want).ok_or_else(shrank)?;
        let n = match file.read_at(window, off_in) {
            Ok(0) => return Err(shrank()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(src, e)),
        };
        let chunk = filled(&buf, n).map_err(|e| Error::io(src, e))?;
        dst.write_all_at(chunk, off_out)
            .map_err(|e| Error::io(dst_path, e))?;
        off_in += n as u64;
        off_out += n as u64;
    }
    Ok(())
}

/// Moves a synced temporary file to `key` if `cond` holds.
fn commit(
    root: &Path,
    key: &str,
    tmp: tempfile::TempPath,
    cond: Condition,
    durable: bool,
) -> Result<Version> {
    let path = root.join(key);
    // Renaming or linking keeps the inode and its modification time, so the
    // temporary file's version is the object's.
    let mut version = version_of(&std::fs::metadata(&tmp).map_err(|e| Error::io(&tmp, e))?);
    #[allow(
        clippy::expect_used,
        reason = "a key is a non-empty path joined to the store root"
    )]
    let parent = path.parent().expect("a key has a parent: the store root");
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    match cond {
        Condition::IfAbsent => {
            // A link fails if the target exists: of racing creators, exactly
            // one succeeds, and nobody can replace an existing object.
            match std::fs::hard_link(&tmp, &path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::AlreadyExists {
                        key: key.to_string(),
                    });
                }
                Err(e) => return Err(Error::io(&path, e)),
            }
            drop(tmp);
        }
        Condition::Overwrite => {
            let _lock = lock_key(root, key)?;
            version = later_than_current(&tmp, &path)?;
            tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        }
        Condition::IfMatch(expected) => {
            let _lock = lock_key(root, key)?;
            let found = match open_existing(&path)? {
                Some(f) => Some(version_of(&f.metadata().map_err(|e| Error::io(&path, e))?)),
                None => None,
            };
            if found.as_ref() != Some(&expected) {
                return Err(Error::Conflict {
                    key: key.to_string(),
                    expected: Some(expected.0),
                    found: found.map(|v| v.0),
                });
            }
            version = later_than_current(&tmp, &path)?;
            tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        }
    }
    if durable {
        sync_parent(&path)?;
    }
    Ok(version)
}

/// An exclusive lock on one key, released when dropped. Lock files are never
/// removed: removing one would let two writers lock different files.
fn lock_key(root: &Path, key: &str) -> Result<std::fs::File> {
    let dir = root.join(LOCKS);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let name = blake3::hash(key.as_bytes()).to_hex();
    let path = dir.join(format!("{}.lock", &name[..32]));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    fs4::FileExt::lock(&file).map_err(|e| Error::io(&path, e))?;
    Ok(file)
}

/// Makes a rename or link durable.
fn sync_parent(path: &Path) -> Result<()> {
    #[allow(
        clippy::expect_used,
        reason = "a key is a non-empty path joined to the store root"
    )]
    let parent = path.parent().expect("a key has a parent");
    std::fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(parent, e))
}

fn unix(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn listed(key: String, meta: &std::fs::Metadata) -> Listed {
    Listed {
        modified: meta
            .modified()
            .unwrap_or_else(|_| std::time::SystemTime::now()),
        meta: ObjectMeta {
            key,
            size: meta.len(),
            version: version_of(meta),
        },
    }
}

fn walk_with(
    root: &Path,
    dir: &Path,
    prefix: &str,
    found: &mut dyn FnMut(String, &std::fs::Metadata),
) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if is_missing(&e) => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        #[allow(clippy::expect_used, reason = "walkdir yields paths under its root")]
        let rel = path
            .strip_prefix(root)
            .expect("walked below the root")
            .to_string_lossy()
            .replace(std::path::MAIN_SEPARATOR, "/");
        if rel == TMP || rel == LOCKS {
            continue;
        }
        let ty = entry.file_type().map_err(|e| Error::io(&path, e))?;
        if ty.is_dir() {
            // Descend only where keys with the prefix can be.
            let as_dir = format!("{rel}/");
            if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                walk_with(root, &path, prefix, found)?;
            }
        } else if ty.is_file() && rel.starts_with(prefix) {
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) if is_missing(&e) => continue, // deleted meanwhile
                Err(e) => return Err(Error::io(&path, e)),
            };
            found(rel, &meta);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[tokio::test]
    async fn a_flush_syncs_only_when_a_write_skipped_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path().to_path_buf());
        let put = |key: &'static str, durable: bool| {
            b.put(
                key,
                Body::from_bytes(&b"x"[..]),
                Condition::Overwrite,
                durable,
            )
        };
        // Durable writes leave nothing for a flush.
        put("a", true).await.unwrap();
        assert!(!b.unflushed.load(Ordering::SeqCst));
        b.flush().await.unwrap();
        // A batch write (no flush of its own) and a batch copy do.
        put("b", false).await.unwrap();
        assert!(b.unflushed.load(Ordering::SeqCst));
        b.flush().await.unwrap();
        assert!(!b.unflushed.load(Ordering::SeqCst));
        assert!(b.copy_if_absent("b", "c", false).await.unwrap());
        assert!(b.unflushed.load(Ordering::SeqCst));
        b.flush().await.unwrap();
        assert!(!b.unflushed.load(Ordering::SeqCst));
        assert_eq!(std::fs::read(dir.path().join("c")).unwrap(), b"x");
    }

    use std::os::unix::fs::{FileExt, MetadataExt};

    /// A file of `len` bytes with data at each of `extents` (offset, bytes)
    /// and holes elsewhere.
    fn sparse(path: &Path, len: u64, extents: &[(u64, &[u8])]) {
        let f = std::fs::File::create(path).unwrap();
        f.set_len(len).unwrap();
        for (at, bytes) in extents {
            f.write_all_at(bytes, *at).unwrap();
        }
        f.sync_all().unwrap();
    }

    /// A case: its name, the file's length and its data extents.
    type Case = (&'static str, u64, Vec<(u64, Vec<u8>)>);

    #[test]
    fn a_sparse_file_is_stored_with_the_same_bytes_and_its_holes() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [Case; 4] = [
            (
                "holes between and after",
                64 << 20,
                vec![(0, vec![1; 8192]), (16 << 20, vec![2; 1 << 20])],
            ),
            ("hole first", 8 << 20, vec![(4 << 20, vec![3; 4096])]),
            ("all hole", 8 << 20, vec![]),
            ("no hole", 3 << 20, vec![(0, vec![4; 3 << 20])]),
        ];
        for (name, len, extents) in cases {
            let src = dir.path().join("src");
            let refs: Vec<(u64, &[u8])> = extents.iter().map(|(a, b)| (*a, &b[..])).collect();
            sparse(&src, len, &refs);
            let tmp =
                write_temp(&dir.path().join(".tmp"), BodyInner::File(src.clone()), true).unwrap();
            assert!(
                std::fs::read(&src).unwrap() == std::fs::read(&tmp).unwrap(),
                "{name}: other bytes"
            );
            let (a, b) = (
                std::fs::metadata(&src).unwrap(),
                std::fs::metadata(&tmp).unwrap(),
            );
            assert_eq!(a.len(), b.len(), "{name}");
            let data: u64 = extents.iter().map(|(_, b)| b.len() as u64).sum();
            // Allocation is in filesystem blocks; holes stay unallocated.
            assert!(
                b.blocks() * 512 <= data + (1 << 20),
                "{name}: {} bytes allocated for {data} bytes of data",
                b.blocks() * 512
            );
            std::fs::remove_file(&src).unwrap();
        }
    }

    #[test]
    fn a_file_that_shrinks_while_it_is_stored_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        sparse(&src, 4 << 20, &[(0, &[5; 4 << 20])]);
        let out = std::fs::File::create(dir.path().join("out")).unwrap();
        let file = std::fs::File::open(&src).unwrap();
        // The range asked for runs past the end: what a file cut short
        // meanwhile looks like to the copy.
        let e = copy_range(&file, &src, &out, &dir.path().join("out"), 0, 5 << 20)
            .unwrap_err()
            .to_string();
        assert!(e.contains("got shorter"), "{e}");
    }
}
