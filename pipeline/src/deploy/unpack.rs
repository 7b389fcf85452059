//! Unpacking package payloads into a release directory, refusing anything
//! that could write or point outside it.
//!
//! A `.deb` is read as an `ar` archive up to its `data.tar` member; an `.rpm`
//! up to its payload (lead, signature header, main header skipped), a cpio
//! "newc" archive. Both are streamed through the decompressor their first
//! bytes name, entry by entry: no package is ever held in memory.
//!
//! Every entry is checked before anything is written: its name must be a
//! relative path without `..`; no ancestor may be a symlink of this release
//! (nothing is written through a link); hard links must name a regular file
//! already unpacked; device nodes, FIFOs and setuid/setgid bits are refused
//! (a build manifest records no such file). Symlink targets are checked once
//! every package is unpacked, resolving through the release's other links, so
//! a link cannot escape by way of another one (`d -> .`, `x -> d/../..`).
//! A refusal names the artifact and the entry and is [`Error::Verify`] (exit
//! 3); the caller removes the half-made release.
//!
//! A package whose payload is byte for byte one the previous release had
//! unpacked need not be decompressed again (`Unpacker::reuse`): its
//! entries, as that release recorded them, are written again through the
//! same checks, each file's content taken from the previous release by
//! reflink (`FICLONE`, where the file system has it) or else by copy, never
//! by hard link (releases stay independent), and checked against the digest
//! recorded when it was unpacked from the verified package. A file changed
//! since (by hand, or by a `[deploy] files` rendering) makes the package
//! unpacked from its archive instead.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::store::digest::{CHUNK, filled};
use crate::{Error, Result};

/// An archive format deploy reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Debian package: `data.tar` is unpacked.
    Deb,
    /// An RPM package: the cpio payload is unpacked.
    Rpm,
}

/// What a release holds at one path, as unpacked; `pipe deploy --check`
/// compares the disk against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Recorded {
    /// A regular file.
    File {
        /// Permission bits.
        mode: u32,
        /// Size in bytes.
        size: u64,
        /// blake3 (hex) of its content.
        blake3: String,
    },
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// The link's target, as archived.
        target: String,
    },
}

/// One archive entry, format-neutral.
struct Entry {
    /// The name as archived (for messages).
    raw: String,
    kind: Kind,
    /// `st_mode` permission bits (including setuid/setgid/sticky).
    mode: u32,
}

enum Kind {
    File,
    Dir,
    Symlink(String),
    HardLink(String),
    /// A regular file of `size` bytes with the blake3 `blake3`: taken from
    /// the file at the same path under `from` (a previous release) when that
    /// has this content, else read from the entry's data, which must have it.
    Reused {
        from: Option<PathBuf>,
        size: u64,
        expect: Expect,
    },
    /// Device node, FIFO, socket, or anything else: always refused.
    Other(&'static str),
}

/// The digest a file taken from a previous release must have, from the
/// signed package (its table of contents, or an rpm's header): never from
/// the previous release's own records, which anyone who can write that
/// release could change along with the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expect {
    /// blake3 (hex), from a `.deb`'s table of contents.
    Blake3(String),
    /// SHA-256 (hex), from an rpm header's file digests.
    Sha256(String),
}

/// Shared by the packages of one release, unpacked in parallel: every path
/// written so far and every symlink, so checks see the whole release.
#[derive(Default)]
struct State {
    entries: BTreeMap<String, Recorded>,
    links: HashMap<String, String>,
    /// Per artifact, the paths it wrote, in order.
    by_artifact: HashMap<String, Vec<String>>,
}

/// What a release holds, and what each package put there.
pub(crate) struct Unpacked {
    /// Every path, as unpacked.
    pub(crate) entries: BTreeMap<String, Recorded>,
    /// Per artifact, its own entries in the order they were written (what
    /// [`Unpacker::reuse`] writes again).
    pub(crate) by_artifact: HashMap<String, Vec<(String, Recorded)>>,
}

/// Unpacks packages into one release directory.
pub struct Unpacker {
    root: PathBuf,
    state: Mutex<State>,
}

impl Unpacker {
    /// An unpacker writing under `root` (an empty directory).
    pub fn new(root: &Path) -> Unpacker {
        Unpacker {
            root: root.to_path_buf(),
            state: Mutex::new(State::default()),
        }
    }

    /// Unpacks the package `name` (an artifact file name, for messages) of
    /// `format`, read from `input`. May run for several packages at once.
    ///
    /// `special_modes`: the package's `allow_special_modes`; without it a
    /// setuid, setgid or world-writable entry is refused, as validate
    /// refuses such a `mode` in `pipeline.toml`.
    pub fn unpack(
        &self,
        name: &str,
        format: Format,
        special_modes: bool,
        input: impl Read,
    ) -> Result<()> {
        #[allow(clippy::expect_used, reason = "the guard checked both")]
        let broken = |e: io::Error| match e.get_ref().is_some_and(|i| i.is::<Error>()) {
            true => *e
                .into_inner()
                .expect("checked")
                .downcast::<Error>()
                .expect("checked"),
            false => Error::Verify {
                what: name.to_string(),
                detail: format!(
                    "not a readable {} package: {e}",
                    if format == Format::Deb {
                        ".deb"
                    } else {
                        ".rpm"
                    }
                ),
            },
        };
        let input = BufReader::with_capacity(CHUNK, input);
        match format {
            Format::Deb => {
                let data = deb_data(input).map_err(broken)?;
                let mut archive =
                    tar::Archive::new(decompressed(BufReader::new(data)).map_err(broken)?);
                for entry in archive.entries().map_err(broken)? {
                    let mut entry = entry.map_err(broken)?;
                    let e = tar_entry(&entry).map_err(broken)?;
                    self.entry(name, e, special_modes, &mut entry)?;
                }
            }
            Format::Rpm => {
                let payload = rpm_payload(input).map_err(broken)?;
                let mut cpio =
                    decompressed(BufReader::with_capacity(CHUNK, payload)).map_err(broken)?;
                while let Some((e, size)) = cpio_header(&mut cpio).map_err(broken)? {
                    let mut data = (&mut cpio).take(size);
                    self.entry(name, e, special_modes, &mut data)?;
                    io::copy(&mut data, &mut io::sink()).map_err(broken)?;
                    skip(&mut cpio, pad4(size)).map_err(broken)?;
                }
            }
        }
        Ok(())
    }

    /// Writes the entries the package `name` had in a previous release
    /// (`entries`, as that release recorded them), each through the checks
    /// of [`Unpacker::unpack`], every file's content taken from the same
    /// path under `from` (that release's root) by reflink or copy and
    /// checked against its recorded size and digest. False when any entry
    /// could not be reused: what was written for the package is removed
    /// again, and the caller unpacks it from its archive.
    pub(crate) fn reuse(
        &self,
        name: &str,
        special_modes: bool,
        from: &Path,
        entries: &[(String, Recorded)],
        signed: &HashMap<String, String>,
    ) -> bool {
        for (path, recorded) in entries {
            let (kind, mode) = match recorded {
                Recorded::Dir { mode } => (Kind::Dir, *mode),
                Recorded::Symlink { target } => (Kind::Symlink(target.clone()), 0o777),
                Recorded::File { mode, size, .. } => {
                    // Only what the signed package says the file holds.
                    let Some(sha256) = signed.get(path) else {
                        tracing::info!(artifact = name, path, "no signed digest; unpacking it");
                        self.forget(name);
                        return false;
                    };
                    (
                        Kind::Reused {
                            from: Some(from.to_path_buf()),
                            size: *size,
                            expect: Expect::Sha256(sha256.clone()),
                        },
                        *mode,
                    )
                }
            };
            let e = Entry {
                raw: path.clone(),
                kind,
                mode,
            };
            if let Err(err) = self.entry(name, e, special_modes, &mut io::empty()) {
                tracing::info!(artifact = name, %err, "not reused from the previous release; unpacking it");
                self.forget(name);
                return false;
            }
        }
        true
    }

    /// Writes the package `name` from its table of contents (a `.deb` at
    /// `file` with the layout `layout`): each file whose content `prior`
    /// (the previous release's entries, rooted at `from`) records with the
    /// table's blake3 is copied from there and checked against the table;
    /// every other file is decoded from the package's blocks that hold it
    /// and checked against the table too ([`super::delta`]). Returns how
    /// many files were copied. On an error what was written for the
    /// package is removed again, and the caller unpacks it from its
    /// archive.
    pub(crate) fn delta(
        &self,
        name: &str,
        special_modes: bool,
        file: &Path,
        layout: &super::delta::DebLayout,
        from: &Path,
        prior: &BTreeMap<String, Recorded>,
    ) -> Result<usize> {
        use stages::deb::TocKind;
        let mut copied = 0;
        for t in &layout.toc.entries {
            let (kind, offset, size) = match &t.kind {
                TocKind::Dir => (Kind::Dir, 0, 0),
                TocKind::Symlink { target } => (Kind::Symlink(target.clone()), 0, 0),
                TocKind::File {
                    size,
                    offset,
                    blake3,
                } => {
                    let known = super::delta::in_prior(prior, &t.path, *size, blake3);
                    copied += usize::from(known);
                    (
                        Kind::Reused {
                            from: known.then(|| from.to_path_buf()),
                            size: *size,
                            expect: Expect::Blake3(blake3.clone()),
                        },
                        *offset,
                        *size,
                    )
                }
            };
            let e = Entry {
                raw: t.path.clone(),
                kind,
                mode: t.mode,
            };
            let mut data = super::delta::Lazy {
                layout,
                path: file,
                offset,
                size,
                inner: None,
            };
            if let Err(err) = self.entry(name, e, special_modes, &mut data) {
                self.forget(name);
                return Err(err);
            }
        }
        Ok(copied)
    }

    /// Removes what `name` wrote (files and links; directories no other
    /// package wrote, when empty).
    fn forget(&self, name: &str) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(paths) = st.by_artifact.remove(name) else {
            return;
        };
        let shared: HashSet<String> = st.by_artifact.values().flatten().cloned().collect();
        for path in paths.iter().rev() {
            if shared.contains(path) {
                continue;
            }
            let full = self.root.join(path);
            match st.entries.remove(path) {
                Some(Recorded::Dir { .. }) => {
                    if fs::remove_dir(&full).is_err() {
                        st.entries
                            .insert(path.clone(), Recorded::Dir { mode: 0o755 });
                    }
                }
                _ => {
                    st.links.remove(path);
                    let _ = fs::remove_file(&full);
                }
            }
        }
    }

    /// Checks every symlink against the whole release and returns what was
    /// unpacked, by path.
    pub fn finish(self) -> Result<BTreeMap<String, Recorded>> {
        Ok(self.finish_by_artifact()?.entries)
    }

    /// [`Unpacker::finish`], with each artifact's own entries.
    pub(crate) fn finish_by_artifact(self) -> Result<Unpacked> {
        let state = self
            .state
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        for (path, target) in &state.links {
            if escapes(&state.links, path, target) {
                return Err(refused(
                    "the release",
                    path,
                    format!("symlink to `{target}` resolves outside the release"),
                ));
            }
        }
        let by_artifact = state
            .by_artifact
            .into_iter()
            .map(|(artifact, paths)| {
                let own = paths
                    .into_iter()
                    .filter_map(|p| state.entries.get(&p).map(|r| (p, r.clone())))
                    .collect();
                (artifact, own)
            })
            .collect();
        Ok(Unpacked {
            entries: state.entries,
            by_artifact,
        })
    }

    fn entry(
        &self,
        artifact: &str,
        e: Entry,
        special_modes: bool,
        data: &mut dyn Read,
    ) -> Result<()> {
        let refuse = |why: String| refused(artifact, &e.raw, why);
        let path = clean(&e.raw).map_err(&refuse)?;
        if path.is_empty() {
            // `./`: the release directory itself.
            return Ok(());
        }
        let world_writable = e.mode & 0o002 != 0
            && matches!(
                e.kind,
                Kind::File | Kind::Dir | Kind::HardLink(_) | Kind::Reused { .. }
            );
        if (e.mode & 0o6000 != 0 || world_writable) && !special_modes {
            return Err(refuse(format!(
                "mode {:04o} has the {} bit, which the package does not allow (`allow_special_modes`)",
                e.mode & 0o7777,
                if world_writable {
                    "world-writable"
                } else {
                    "setuid or setgid"
                }
            )));
        }
        let mode = if special_modes {
            e.mode & 0o7777
        } else {
            e.mode & 0o1777
        };
        let dest = self.root.join(&path);
        let record = {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(link) = ancestor_link(&st.links, &path) {
                return Err(refuse(format!(
                    "would be written through the symlink `{link}`"
                )));
            }
            match (&e.kind, st.entries.get(&path)) {
                (Kind::Dir, Some(Recorded::Dir { .. })) => {}
                (Kind::Other(what), _) => {
                    return Err(refuse(format!(
                        "is a {what}; deploy unpacks files, directories and links only"
                    )));
                }
                (_, Some(_)) => return Err(refuse("is written twice".into())),
                _ => {}
            }
            // Reserve the path now, so a second package cannot race for it.
            let record = match &e.kind {
                Kind::Dir => Recorded::Dir { mode },
                Kind::Symlink(target) => {
                    if target.starts_with('/') {
                        return Err(refuse(format!(
                            "symlink to the absolute path `{target}` points outside the release"
                        )));
                    }
                    st.links.insert(path.clone(), target.clone());
                    Recorded::Symlink {
                        target: target.clone(),
                    }
                }
                Kind::HardLink(target) => {
                    let t = clean(target)
                        .map_err(|why| refuse(format!("hard link to `{target}`: {why}")))?;
                    match st.entries.get(&t) {
                        Some(r @ Recorded::File { .. }) => r.clone(),
                        _ => {
                            return Err(refuse(format!(
                                "hard link to `{target}`, which is not a file unpacked before it in this release"
                            )));
                        }
                    }
                }
                Kind::File | Kind::Reused { .. } | Kind::Other(_) => Recorded::File {
                    mode,
                    size: 0,
                    blake3: String::new(),
                },
            };
            record_parents(&mut st.entries, &path);
            st.entries.insert(path.clone(), record.clone());
            st.by_artifact
                .entry(artifact.to_string())
                .or_default()
                .push(path.clone());
            record
        };
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|err| Error::io(parent, err))?;
        }
        let io_err = |err| Error::io(&dest, err);
        let written = match (&e.kind, record) {
            (Kind::Dir, record) => {
                match fs::create_dir(&dest) {
                    Ok(()) => {}
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists && dest.is_dir() => {}
                    Err(err) => return Err(io_err(err)),
                }
                fs::set_permissions(&dest, fs::Permissions::from_mode(mode)).map_err(io_err)?;
                record
            }
            (Kind::Symlink(target), record) => {
                std::os::unix::fs::symlink(target, &dest).map_err(io_err)?;
                record
            }
            (Kind::HardLink(target), record) => {
                #[allow(
                    clippy::expect_used,
                    reason = "the hard link target was checked by `clean` when the entry was read"
                )]
                let t = self.root.join(clean(target).expect("checked above"));
                fs::hard_link(&t, &dest).map_err(io_err)?;
                record
            }
            (Kind::Reused { from, size, expect }, _) => {
                let copied = match from {
                    Some(from) => reuse_file(&from.join(&path), &dest, mode, *size, expect),
                    None => Err(String::new()),
                };
                match (copied, expect) {
                    (Ok(r), _) => r,
                    // An rpm's files are reused all or none: the caller
                    // unpacks the package instead.
                    (Err(why), Expect::Sha256(_)) => {
                        let _ = fs::remove_file(&dest);
                        return Err(Error::Verify {
                            what: format!("{artifact}: entry `{}`", e.raw),
                            detail: why,
                        });
                    }
                    (Err(why), Expect::Blake3(blake3)) => {
                        if !why.is_empty() {
                            tracing::info!(artifact, entry = %e.raw, "{why}; taken from the package");
                        }
                        // A copy that did not check out is not kept.
                        let _ = fs::remove_file(&dest);
                        let written = write_file(artifact, &e.raw, &dest, mode, data)?;
                        match &written {
                            Recorded::File {
                                size: s, blake3: b, ..
                            } if s != size || b != blake3 => {
                                return Err(Error::Verify {
                                    what: format!("{artifact}: entry `{}`", e.raw),
                                    detail: format!(
                                        "its content has {s} bytes and blake3 {b}, the package's table of contents says {size} bytes and {blake3}; refused, nothing of this release was switched to"
                                    ),
                                });
                            }
                            _ => written,
                        }
                    }
                }
            }
            (_, _) => write_file(artifact, &e.raw, &dest, mode, data)?,
        };
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.entries.insert(path, written);
        Ok(())
    }
}

/// Writes `dest` (new) with what `data` yields, hashing it.
fn write_file(
    artifact: &str,
    raw: &str,
    dest: &Path,
    mode: u32,
    data: &mut dyn Read,
) -> Result<Recorded> {
    let io_err = |err| Error::io(dest, err);
    // `create_new` (O_EXCL) never follows a symlink at `dest`.
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(io_err)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = match data.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => {
                return Err(Error::Verify {
                    what: artifact.to_string(),
                    detail: format!("entry `{raw}` cannot be read: {err}"),
                });
            }
        };
        let chunk = filled(&buf, n).map_err(io_err)?;
        hasher.update(chunk);
        file.write_all(chunk).map_err(io_err)?;
        size += n as u64;
    }
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err)?;
    Ok(Recorded::File {
        mode,
        size,
        blake3: hasher.finalize().to_hex().to_string(),
    })
}

/// Records the directories above `path` that no entry named (they are
/// created `0755`), so `--check` knows them.
pub(crate) fn record_parents(entries: &mut BTreeMap<String, Recorded>, path: &str) {
    for (i, _) in path.match_indices('/') {
        entries
            .entry(path[..i].to_string())
            .or_insert(Recorded::Dir { mode: 0o755 });
    }
}

/// Writes `dest` (new) with the content of `src` (a file of a previous
/// release) by reflink, else by copy, and checks that content against what
/// the signed package says: `size` bytes with the digest `expect`. What is
/// checked is what `dest` holds, so a change to `src` meanwhile cannot slip
/// through. Never a hard link.
fn reuse_file(
    src: &Path,
    dest: &Path,
    mode: u32,
    size: u64,
    expect: &Expect,
) -> std::result::Result<Recorded, String> {
    use sha2::Digest;
    let io = |what: &str, e: io::Error| format!("{what}: {e}");
    // Not through a symlink, and not blocking on a FIFO put in its place.
    let from = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(src)
        .map_err(|e| io("the previous release's copy cannot be opened", e))?;
    let meta = from
        .metadata()
        .map_err(|e| io("the previous release's copy", e))?;
    if !meta.is_file() || meta.len() != size {
        return Err(format!(
            "the previous release's copy is not the {size}-byte file deployed"
        ));
    }
    let out = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|e| io("cannot create", e))?;
    let mut hasher = blake3::Hasher::new();
    let mut sha = matches!(expect, Expect::Sha256(_)).then(sha2::Sha256::new);
    let mut buf = vec![0u8; CHUNK];
    let cloned = rustix::fs::ioctl_ficlone(&out, &from).is_ok();
    let (mut input, copy): (&fs::File, bool) = if cloned {
        (&out).rewind().map_err(|e| io("cannot read back", e))?;
        (&out, false)
    } else {
        (&from, true)
    };
    let mut written = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io("cannot read", e)),
        };
        let chunk = filled(&buf, n).map_err(|e| io("cannot read", e))?;
        hasher.update(chunk);
        if let Some(sha) = &mut sha {
            sha.update(chunk);
        }
        if copy {
            (&out).write_all(chunk).map_err(|e| io("cannot write", e))?;
        }
        written += n as u64;
    }
    let found = hasher.finalize().to_hex().to_string();
    let (what, got, want) = match (expect, sha) {
        (Expect::Blake3(want), _) => ("blake3", found.clone(), want),
        (Expect::Sha256(want), Some(sha)) => ("SHA-256", hex::encode(sha.finalize()), want),
        (Expect::Sha256(want), None) => ("SHA-256", String::new(), want),
    };
    if written != size || got != *want {
        return Err(format!(
            "the previous release's copy is not what the package holds: {written} bytes with {what} {got}, the signed package says {size} bytes with {want}"
        ));
    }
    out.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| io("cannot set the mode", e))?;
    Ok(Recorded::File {
        mode,
        size,
        blake3: found,
    })
}

/// blake3 (hex) of a package's payload as archived (a .deb's `data.tar*`
/// member, an rpm's compressed cpio): what tells that two packages, of any
/// version, unpack to the same entries.
pub(crate) fn payload_digest(name: &str, format: Format, path: &Path) -> Result<String> {
    let f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let r = BufReader::with_capacity(CHUNK, f);
    let mut hasher = blake3::Hasher::new();
    let hashed = match format {
        Format::Deb => deb_data(r).and_then(|mut d| io::copy(&mut d, &mut hasher)),
        Format::Rpm => rpm_payload(r).and_then(|mut d| io::copy(&mut d, &mut hasher)),
    };
    hashed.map_err(|e| Error::Verify {
        what: name.to_string(),
        detail: format!("not a readable package: {e}"),
    })?;
    Ok(hasher.finalize().to_hex().to_string())
}

fn refused(artifact: &str, entry: &str, why: String) -> Error {
    Error::Verify {
        what: format!("{artifact}: entry `{entry}`"),
        detail: format!("{why}; refused, nothing of this release was switched to"),
    }
}

/// An archived name as a clean relative path (`a/b`), or why it is refused.
/// `./` and `` (the top directory) give an empty path.
pub(crate) fn clean(name: &str) -> std::result::Result<String, String> {
    if name.starts_with('/') {
        return Err("is an absolute path".into());
    }
    if name.contains('\0') || name.contains('\\') {
        return Err("contains a NUL byte or `\\`".into());
    }
    let mut out = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("has a `..` component".into()),
            c => out.push(c),
        }
    }
    Ok(out.join("/"))
}

/// The first ancestor of `path` that is a symlink of this release.
fn ancestor_link<'a>(links: &HashMap<String, String>, path: &'a str) -> Option<&'a str> {
    if links.is_empty() {
        return None;
    }
    path.match_indices('/')
        .map(|(i, _)| &path[..i])
        .find(|prefix| links.contains_key(*prefix))
}

/// True when the symlink at `path` with `target` resolves, through the
/// release's other links, to somewhere outside the release (or loops).
fn escapes(links: &HashMap<String, String>, path: &str, target: &str) -> bool {
    let mut at: Vec<&str> = path.split('/').collect();
    at.pop();
    let mut pending: VecDeque<&str> = target.split('/').collect();
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        match c {
            "" | "." => {}
            ".." => {
                if at.pop().is_none() {
                    return true;
                }
            }
            name => {
                at.push(name);
                if let Some(t) = links.get(&at.join("/")) {
                    hops += 1;
                    if hops > 40 || t.starts_with('/') {
                        return true;
                    }
                    at.pop();
                    for c in t.split('/').rev() {
                        pending.push_front(c);
                    }
                }
            }
        }
    }
    false
}

fn tar_entry<R: Read>(entry: &tar::Entry<'_, R>) -> io::Result<Entry> {
    let raw = String::from_utf8(entry.path_bytes().into_owned())
        .map_err(|_| io::Error::other("an entry name is not UTF-8"))?;
    let h = entry.header();
    let mode = h.mode()?;
    let link = || -> io::Result<String> {
        let bytes = entry
            .link_name_bytes()
            .ok_or_else(|| io::Error::other(format!("link `{raw}` has no target")))?;
        String::from_utf8(bytes.into_owned())
            .map_err(|_| io::Error::other(format!("the target of `{raw}` is not UTF-8")))
    };
    use tar::EntryType as T;
    let kind = match h.entry_type() {
        T::Regular | T::Continuous => Kind::File,
        T::Directory => Kind::Dir,
        T::Symlink => Kind::Symlink(link()?),
        T::Link => Kind::HardLink(link()?),
        T::Char => Kind::Other("character device"),
        T::Block => Kind::Other("block device"),
        T::Fifo => Kind::Other("FIFO"),
        _ => Kind::Other("special entry"),
    };
    Ok(Entry { raw, kind, mode })
}

/// Wraps `r` in the decompressor its first bytes name (xz, zstd, gzip), or
/// none.
fn decompressed<'a, R: BufRead + 'a>(mut r: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0xFD, b'7', b'z', b'X', b'Z', 0]) {
        // Multithreaded: stages write xz in independent blocks.
        Box::new(liblzma::bufread::XzDecoder::new_parallel(r))
    } else if head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else if head.starts_with(&[0x1F, 0x8B]) {
        Box::new(flate2::bufread::GzDecoder::new(r))
    } else {
        Box::new(r)
    })
}

fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied != n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// The longest entry name or link target read from a payload (Linux's
/// `PATH_MAX`).
const MAX_PATH: u64 = 4096;

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

/// Reads an `ar` archive up to its `data.tar*` member and returns a reader of
/// exactly that member.
fn deb_data<R: Read>(mut r: R) -> io::Result<io::Take<R>> {
    use stages::deb::{ArHeader, ar_header, ar_magic};
    ar_magic(&mut r).map_err(io::Error::other)?;
    let mut at = 8u64;
    loop {
        let Some(ArHeader { name, size }) = ar_header(&mut r, at).map_err(io::Error::other)? else {
            return Err(io::Error::other("no data.tar member"));
        };
        if name.starts_with("data.tar") {
            return Ok(r.take(size));
        }
        skip(&mut r, size + size % 2)?;
        at += 60 + size + size % 2;
    }
}

/// Skips an rpm's lead and headers and returns the reader at its payload.
fn rpm_payload<R: Read>(mut r: R) -> io::Result<R> {
    let mut lead = [0u8; 96];
    r.read_exact(&mut lead)?;
    if lead[..4] != [0xED, 0xAB, 0xEE, 0xDB] {
        return Err(io::Error::other("not an rpm (bad lead)"));
    }
    // The signature header is padded to 8 bytes; the main header is not.
    for pad in [true, false] {
        let mut intro = [0u8; 16];
        r.read_exact(&mut intro)?;
        if intro[..3] != [0x8E, 0xAD, 0xE8] {
            return Err(io::Error::other("not an rpm (bad header magic)"));
        }
        let n = u64::from(u32::from_be_bytes([
            intro[8], intro[9], intro[10], intro[11],
        ]));
        let size = u64::from(u32::from_be_bytes([
            intro[12], intro[13], intro[14], intro[15],
        ]));
        let len = 16 * n + size;
        skip(&mut r, len)?;
        if pad {
            skip(&mut r, (8 - (16 + len) % 8) % 8)?;
        }
    }
    Ok(r)
}

/// The next cpio "newc" entry and its data size; `None` at the trailer.
fn cpio_header(r: &mut impl Read) -> io::Result<Option<(Entry, u64)>> {
    let mut h = [0u8; 110];
    r.read_exact(&mut h)?;
    match &h[..6] {
        b"070701" | b"070702" => {}
        b"07070X" => {
            return Err(io::Error::other(
                "the payload is rpm's stripped cpio format (packages above 4 GiB), which deploy does not read yet",
            ));
        }
        _ => return Err(io::Error::other("the payload is not a cpio newc archive")),
    }
    let field = |i: usize| -> io::Result<u64> {
        let s = h
            .get(6 + 8 * i..14 + 8 * i)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("");
        u64::from_str_radix(s, 16).map_err(|_| io::Error::other("a cpio header field is not hex"))
    };
    let (mode, nlink, size, namesize) = (field(1)? as u32, field(4)?, field(6)?, field(11)?);
    // Names and link targets are paths: a larger one is hostile, and would
    // otherwise be allocated whole (up to 4 GiB) before anything is checked.
    if namesize > MAX_PATH {
        return Err(io::Error::other(format!(
            "a cpio entry name of {namesize} bytes (at most {MAX_PATH})"
        )));
    }
    let mut name = vec![0u8; namesize as usize];
    r.read_exact(&mut name)?;
    skip(r, pad4(110 + namesize))?;
    if name.last() == Some(&0) {
        name.pop();
    }
    let raw =
        String::from_utf8(name).map_err(|_| io::Error::other("an entry name is not UTF-8"))?;
    if raw == "TRAILER!!!" {
        return Ok(None);
    }
    let kind = match mode & 0o170000 {
        0o100000 if nlink > 1 => Kind::Other("hard-linked file (not supported in rpm payloads)"),
        0o100000 => Kind::File,
        0o040000 => Kind::Dir,
        0o120000 => {
            if size > MAX_PATH {
                return Err(io::Error::other(format!(
                    "the symlink `{raw}` has a target of {size} bytes (at most {MAX_PATH})"
                )));
            }
            let mut target = vec![0u8; size as usize];
            r.read_exact(&mut target)?;
            skip(r, pad4(size))?;
            let target = String::from_utf8(target)
                .map_err(|_| io::Error::other(format!("the target of `{raw}` is not UTF-8")))?;
            return Ok(Some((
                Entry {
                    raw,
                    kind: Kind::Symlink(target),
                    mode,
                },
                0,
            )));
        }
        0o020000 => Kind::Other("character device"),
        0o060000 => Kind::Other("block device"),
        0o010000 => Kind::Other("FIFO"),
        _ => Kind::Other("special entry"),
    };
    Ok(Some((Entry { raw, kind, mode }, size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_or_refused() {
        assert_eq!(clean("./usr/bin/x").unwrap(), "usr/bin/x");
        assert_eq!(clean("./").unwrap(), "");
        assert!(clean("/etc/passwd").is_err());
        assert!(clean("./a/../../b").is_err());
        assert!(clean("a/..").is_err());
    }

    #[test]
    fn links_escaping_through_other_links_are_found() {
        let links: HashMap<String, String> = [("d", "."), ("x", "d/../etc"), ("ok", "usr/bin")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert!(!escapes(&links, "d", "."));
        assert!(escapes(&links, "x", "d/../etc"));
        assert!(!escapes(&links, "ok", "usr/bin"));
        assert!(escapes(&links, "usr/a", "../../b"));
        assert!(!escapes(&links, "usr/a", "../b"));
        let looping: HashMap<String, String> = [("a", "b"), ("b", "a")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert!(escapes(&looping, "a", "b"));
    }

    /// A cpio header announcing a 4 GiB name or link target is refused
    /// before anything is allocated (issue 12).
    #[test]
    fn huge_cpio_names_and_links_are_refused() {
        let header = |mode: u32, size: u32, namesize: u32| {
            let mut h = b"070701".to_vec();
            for v in [0, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, namesize, 0] {
                h.extend_from_slice(format!("{v:08x}").as_bytes());
            }
            h
        };
        let err = cpio_header(&mut &header(0o100644, 0, u32::MAX)[..])
            .err()
            .expect("refused");
        assert!(err.to_string().contains("at most 4096"), "{err}");
        let mut link = header(0o120777, u32::MAX, 4);
        link.extend_from_slice(b"abc\0\0\0");
        let err = cpio_header(&mut &link[..]).err().expect("refused");
        assert!(err.to_string().contains("at most 4096"), "{err}");
    }
}
