//! Unpacking the base: a root filesystem tarball (plain, gzip, xz or zstd,
//! told apart by its first bytes) streamed into the work directory, with
//! ownership, modes, times, device nodes and extended attributes kept.
//!
//! Extended attributes come from pax `SCHILY.xattr.NAME` records, as GNU tar
//! `--xattrs --format=pax` and mmdebstrap write them, and from
//! `LIBARCHIVE.xattr.NAME` records (name URL-encoded, value base64), as
//! `bsdtar --xattrs` writes them (file capabilities are
//! `security.capability`, e.g. on `ping`). They are set after the owner:
//! `chown` clears a file's capabilities. `mke2fs -d` copies them into the
//! image; `super::ext4` fixes their order there.
//!
//! Every entry is checked before it is written: a name or hard-link target
//! with a `..` component is refused (not skipped, as `tar` would), and no
//! entry is written through a symlink (the `tar` crate canonicalises each
//! parent and refuses one that resolves outside the root; device nodes and
//! FIFOs, which it cannot make, get the same check here).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use super::Reporter;
use crate::{Error, Result};

/// How many bytes of the tarball were read, for progress.
struct Counting<'a, R> {
    inner: R,
    read: u64,
    reporter: &'a dyn Reporter,
    last: u64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read - self.last >= 1 << 20 || n == 0 {
            self.last = self.read;
            self.reporter.bytes(self.read);
        }
        Ok(n)
    }
}

/// Unpacks `tarball` into the existing empty directory `root` and checks that
/// what came out is a root filesystem.
pub(crate) fn unpack(tarball: &Path, root: &Path, reporter: &dyn Reporter) -> Result<()> {
    let file = File::open(tarball).map_err(|e| Error::read(tarball, e))?;
    let mut input = BufReader::with_capacity(1 << 16, file);
    let magic = {
        use std::io::BufRead;
        input
            .fill_buf()
            .map_err(|e| Error::read(tarball, e))?
            .to_vec()
    };
    let counting = Counting {
        inner: input,
        read: 0,
        reporter,
        last: 0,
    };
    let decoder: Box<dyn Read + Send + '_> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(counting))
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(counting))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::new(counting).map_err(|e| Error::read(tarball, e))?)
    } else if magic.get(257..262) == Some(b"ustar".as_slice()) {
        Box::new(counting)
    } else {
        return Err(not_rootfs(
            tarball,
            "it is not a tar archive (plain, gzip, xz or zstd)".into(),
        ));
    };
    if magic.get(257..262) == Some(b"ustar".as_slice()) {
        return unpack_entries(tarball, root, decoder);
    }
    // Decompressing on a thread of its own while this one writes the files,
    // as `tar -xz` runs `gzip` beside it: on two cores, the unpack takes
    // the longer of the two instead of their sum.
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        scope.spawn(move || decompress(decoder, tx));
        unpack_entries(
            tarball,
            root,
            Pipelined {
                rx,
                chunk: Vec::new(),
                at: 0,
            },
        )
        // Dropping the receiver here stops the thread at its next send.
    })
}

/// Decompressed chunks on their way from the decompressing thread.
type Chunk = io::Result<Vec<u8>>;

/// Reads `decoder` to the end in chunks into `tx`; stops when the reader
/// hangs up.
fn decompress(mut decoder: Box<dyn Read + Send + '_>, tx: std::sync::mpsc::SyncSender<Chunk>) {
    loop {
        // Up to 1 MiB; what was read before an error stays in `buf`.
        let mut buf = Vec::with_capacity(1 << 20);
        let result = (&mut decoder)
            .take(1 << 20)
            .read_to_end(&mut buf)
            .map(|_| ());
        let end = buf.is_empty();
        let sent = match result {
            Ok(()) if !end => tx.send(Ok(buf)),
            Ok(()) => return,
            Err(e) => {
                if !buf.is_empty() && tx.send(Ok(buf)).is_err() {
                    return;
                }
                let _ = tx.send(Err(e));
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// The reading end of [`decompress`].
struct Pipelined {
    rx: std::sync::mpsc::Receiver<Chunk>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Pipelined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk?;
                    self.at = 0;
                }
                // The sender is gone: the end of the stream.
                Err(_) => return Ok(0),
            }
        }
        let mut rest = self.chunk.get(self.at..).unwrap_or_default();
        let n = rest.read(buf)?;
        self.at += n;
        Ok(n)
    }
}

/// Unpacks the tar stream `decoder` of `tarball` into `root` and checks
/// that what came out is a root filesystem.
fn unpack_entries(tarball: &Path, root: &Path, decoder: impl Read) -> Result<()> {
    let mut archive = tar::Archive::new(decoder);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    let bad = |e: io::Error| -> Error {
        // A corrupt stream shows up as an I/O error from the decoder or tar.
        not_rootfs(tarball, format!("it cannot be read as a tar archive: {e}"))
    };
    let mut entries = 0u64;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        entries += 1;
        let name = entry.path_bytes().into_owned();
        let rel = checked_relative(tarball, &name)?;
        if let Some(link) = entry.link_name_bytes()
            && entry.header().entry_type() == EntryType::Link
        {
            checked_relative(tarball, &link).map_err(|_| Error::UnsafeEntry {
                tarball: tarball.to_path_buf(),
                entry: String::from_utf8_lossy(&name).into_owned(),
                reason: format!(
                    "its hard-link target `{}` has a `..` component, which would escape the root",
                    String::from_utf8_lossy(&link)
                ),
            })?;
        }
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let target = special(tarball, root, &rel, &entry)?;
                set_xattrs(tarball, &mut entry, &target)?;
            }
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link => {
                if rel.as_os_str().is_empty() {
                    // `./` itself: the root's own mode and owner.
                    let h = entry.header();
                    let mode = h.mode().map_err(bad)?;
                    set_owner_mode(root, h.uid().map_err(bad)?, h.gid().map_err(bad)?, mode)
                        .map_err(|e| Error::write(root, e))?;
                    set_xattrs(tarball, &mut entry, root)?;
                    continue;
                }
                let written = entry.unpack_in(root).map_err(|e| Error::UnsafeEntry {
                    tarball: tarball.to_path_buf(),
                    entry: String::from_utf8_lossy(&name).into_owned(),
                    reason: with_sources(&e),
                })?;
                if !written {
                    return Err(Error::UnsafeEntry {
                        tarball: tarball.to_path_buf(),
                        entry: String::from_utf8_lossy(&name).into_owned(),
                        reason: "it resolves outside the root".into(),
                    });
                }
                // A hard link shares its target's inode, attributes included.
                if kind != EntryType::Link {
                    // `unpack_in` checked that the parent resolves inside
                    // the root, and the entry itself is not followed.
                    set_xattrs(tarball, &mut entry, &root.join(&rel))?;
                }
            }
            // pax and GNU long-name records are consumed by the reader.
            EntryType::XGlobalHeader | EntryType::XHeader => {}
            other => {
                return Err(Error::UnsafeEntry {
                    tarball: tarball.to_path_buf(),
                    entry: String::from_utf8_lossy(&name).into_owned(),
                    reason: format!(
                        "entry type {other:?} is not a file, directory, link or device"
                    ),
                });
            }
        }
    }
    if entries == 0 {
        return Err(not_rootfs(tarball, "the archive is empty".into()));
    }
    check_rootfs(tarball, root)
}

/// `e` and the errors under it: the `tar` crate wraps the OS's reason.
fn with_sources(e: &io::Error) -> String {
    let mut out = e.to_string();
    let mut next = std::error::Error::source(e);
    while let Some(s) = next {
        out.push_str(&format!(": {s}"));
        next = s.source();
    }
    out
}

fn not_rootfs(tarball: &Path, reason: String) -> Error {
    Error::NotRootfs {
        tarball: tarball.to_path_buf(),
        reason,
    }
}

/// The entry name as a relative path, `./` and leading `/` dropped; `..`
/// anywhere is refused.
fn checked_relative(tarball: &Path, name: &[u8]) -> Result<PathBuf> {
    let path = Path::new(std::ffi::OsStr::from_bytes(name));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                return Err(Error::UnsafeEntry {
                    tarball: tarball.to_path_buf(),
                    entry: String::from_utf8_lossy(name).into_owned(),
                    reason: "it has a `..` component, which would escape the root".into(),
                });
            }
        }
    }
    Ok(out)
}

/// The prefix of a pax record carrying an extended attribute, as GNU tar
/// writes it: the name as is, the value as raw bytes.
const PAX_XATTR: &[u8] = b"SCHILY.xattr.";
/// The prefix libarchive (`bsdtar --xattrs`) writes: the name URL-encoded,
/// the value base64 (without padding). bsdtar writes a `SCHILY.xattr.`
/// record beside each, by default, whose name is URL-encoded as well.
const PAX_XATTR_LIBARCHIVE: &[u8] = b"LIBARCHIVE.xattr.";

/// The extended attributes an entry's pax records give, sorted by name.
/// `LIBARCHIVE.xattr.` records are decoded; a `SCHILY.xattr.` record naming
/// the same attribute (as is, or URL-encoded as bsdtar writes it) is the
/// same attribute again and must agree with it.
fn pax_xattrs<'a>(
    records: impl Iterator<Item = io::Result<tar::PaxExtension<'a>>>,
) -> std::result::Result<std::collections::BTreeMap<Vec<u8>, Vec<u8>>, String> {
    use base64::Engine as _;
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let mut decoded = std::collections::BTreeMap::new();
    let mut schily = Vec::new();
    for record in records {
        let record = record.map_err(|e| format!("a pax record cannot be read: {e}"))?;
        let key = record.key_bytes();
        if let Some(name) = key.strip_prefix(PAX_XATTR_LIBARCHIVE) {
            let shown = String::from_utf8_lossy(key);
            let name = url_decode(name).ok_or_else(|| {
                format!("the pax record `{shown}` has a malformed %-escape in its name")
            })?;
            let value = lenient
                .decode(record.value_bytes())
                .map_err(|e| format!("the value of the pax record `{shown}` is not base64: {e}"))?;
            decoded.insert(name, value);
        } else if let Some(name) = key.strip_prefix(PAX_XATTR) {
            schily.push((name.to_vec(), record.value_bytes().to_vec()));
        }
    }
    for (name, value) in schily {
        let same = [Some(name.clone()), url_decode(&name)]
            .into_iter()
            .flatten()
            .find(|n| decoded.contains_key(n));
        match same {
            Some(n) if decoded.get(&n) == Some(&value) => {}
            Some(n) => {
                return Err(format!(
                    "its pax records give the extended attribute `{}` two different values (`SCHILY.xattr.` and `LIBARCHIVE.xattr.`)",
                    String::from_utf8_lossy(&n)
                ));
            }
            None => {
                decoded.insert(name, value);
            }
        }
    }
    Ok(decoded)
}

/// `%XX` escapes decoded (libarchive's URL encoding of attribute names);
/// `None` for a `%` not followed by two hex digits.
fn url_decode(s: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.iter();
    while let Some(&b) = bytes.next() {
        if b == b'%' {
            let hi = hex(*bytes.next()?)?;
            let lo = hex(*bytes.next()?)?;
            out.push(hi << 4 | lo);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// Sets the extended attributes the entry's pax records carry on `path`
/// (not following a symlink).
fn set_xattrs(tarball: &Path, entry: &mut tar::Entry<'_, impl Read>, path: &Path) -> Result<()> {
    let Some(records) = entry
        .pax_extensions()
        .map_err(|e| not_rootfs(tarball, format!("a pax header cannot be read: {e}")))?
    else {
        return Ok(());
    };
    let attrs = pax_xattrs(records).map_err(|reason| {
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        not_rootfs(tarball, format!("entry `{name}`: {reason}"))
    })?;
    for (name, value) in attrs {
        super::xattrs::set(path, &name, &value).map_err(|e| {
            Error::write(
                path,
                io::Error::new(
                    e.kind(),
                    format!(
                        "setting the extended attribute `{}` the base gives it: {e}",
                        String::from_utf8_lossy(&name)
                    ),
                ),
            )
        })?;
    }
    Ok(())
}

/// A device node or FIFO: made with mknod after checking that its parent
/// resolves inside the root. Returns where it was made.
fn special(
    tarball: &Path,
    root: &Path,
    rel: &Path,
    entry: &tar::Entry<'_, impl Read>,
) -> Result<PathBuf> {
    let h = entry.header();
    let bad = |reason: String| Error::UnsafeEntry {
        tarball: tarball.to_path_buf(),
        entry: rel.display().to_string(),
        reason,
    };
    let dst = root.join(rel);
    let parent = dst.parent().ok_or_else(|| bad("it has no parent".into()))?;
    std::fs::create_dir_all(parent).map_err(|e| Error::write(parent, e))?;
    let canon_root = root.canonicalize().map_err(|e| Error::read(root, e))?;
    let canon_parent = parent.canonicalize().map_err(|e| Error::read(parent, e))?;
    if !canon_parent.starts_with(&canon_root) {
        return Err(bad(format!(
            "its directory resolves to `{}`, outside the root",
            canon_parent.display()
        )));
    }
    let target = canon_parent.join(
        dst.file_name()
            .ok_or_else(|| bad("it has no name".into()))?,
    );
    let mode = h.mode().map_err(|e| bad(e.to_string()))? & 0o7777;
    let (ty, dev) = match h.entry_type() {
        EntryType::Char | EntryType::Block => {
            let major = h.device_major().ok().flatten().unwrap_or(0);
            let minor = h.device_minor().ok().flatten().unwrap_or(0);
            let ty = if h.entry_type() == EntryType::Char {
                rustix::fs::FileType::CharacterDevice
            } else {
                rustix::fs::FileType::BlockDevice
            };
            (ty, rustix::fs::makedev(major, minor))
        }
        _ => (rustix::fs::FileType::Fifo, 0),
    };
    match std::fs::symlink_metadata(&target) {
        Ok(_) => std::fs::remove_file(&target).map_err(|e| Error::write(&target, e))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::read(&target, e)),
    }
    if target.as_os_str().as_bytes().contains(&0) {
        return Err(bad("its name contains a NUL byte".into()));
    }
    let made = rustix::fs::mknodat(
        rustix::fs::CWD,
        &target,
        ty,
        rustix::fs::Mode::from_raw_mode(mode),
        dev,
    );
    if let Err(e) = made {
        let e = io::Error::from(e);
        if e.kind() == io::ErrorKind::PermissionDenied {
            return Err(Error::NeedsRoot {
                what: "creating the base's device nodes",
            });
        }
        return Err(Error::write(&target, e));
    }
    set_owner_mode(
        &target,
        h.uid().map_err(|e| bad(e.to_string()))?,
        h.gid().map_err(|e| bad(e.to_string()))?,
        mode,
    )
    .map_err(|e| Error::write(&target, e))?;
    if let Ok(mtime) = h.mtime() {
        super::times::set_times(&target, mtime as i64).map_err(|e| Error::write(&target, e))?;
    }
    Ok(target)
}

fn set_owner_mode(path: &Path, uid: u64, gid: u64, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::lchown(path, Some(uid as u32), Some(gid as u32))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
}

/// What makes a tree a root filesystem here: an `etc` directory and a shell
/// at `bin/sh` (or `usr/bin/sh`), which the post-install script and the
/// packages' maintainer scripts run with.
fn check_rootfs(tarball: &Path, root: &Path) -> Result<()> {
    let etc = std::fs::symlink_metadata(root.join("etc")).is_ok_and(|m| m.is_dir());
    let sh = ["bin/sh", "usr/bin/sh"]
        .iter()
        .any(|p| std::fs::symlink_metadata(root.join(p)).is_ok());
    let mut missing = Vec::new();
    if !etc {
        missing.push("`etc/` directory");
    }
    if !sh {
        missing.push("shell at `bin/sh` or `usr/bin/sh`");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(not_rootfs(
            tarball,
            format!("it has no {}", missing.join(" and no ")),
        ))
    }
}
