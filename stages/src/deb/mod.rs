//! The .deb stage: a Debian binary package, written directly (no dpkg-deb).
//!
//! The archive is what dpkg-deb 1.21 writes: an `ar` archive of
//! `debian-binary` (`2.0`), `control.tar[.EXT]` and `data.tar[.EXT]`, both
//! tarballs compressed the same way (dpkg-deb's default "uniform
//! compression"; xz unless told otherwise). `data.tar` names start with `./`
//! and include every parent directory; everything is owned by `root:root`
//! and dated `mtime`. `control.tar` holds `control`, `md5sums` (regular
//! files except conffiles, as dh_md5sums writes it: dpkg records conffile
//! digests itself), `conffiles` when some files are `config`, and the
//! maintainer scripts, mode 0755.
//!
//! Memory does not grow with the payload: `data.tar` is streamed through the
//! compressor into an anonymous temporary file in the output directory while
//! the md5sums are computed, then the small control member is built and the
//! three members are copied into a temporary `.deb` next to the output,
//! which is renamed into place last. On any error nothing is left behind.

mod control;
mod read;
mod toc;

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

pub use self::control::version_from_project;
pub use self::read::{ArHeader, DebReader, Member, ar_header, ar_magic};
pub use self::toc::{TOC_FORMAT, TOC_MEMBER, Toc, TocEntry, TocKind};
pub use crate::compress::Compression;
use crate::compress::{Encoder, XZ_BLOCK_SIZE, default_threads};
use crate::docs::Docs;
use crate::tarball::{TarEntry, TarKind, TarWriter};
use crate::tree::{Entry, EntryKind};
use crate::{Error, Result};

/// A package to build.
#[derive(Clone, Debug)]
pub struct DebPackage {
    /// `Package`: Debian policy name (lowercase, digits, `+-.`).
    pub name: String,
    /// `Version`; see [`version_from_project`].
    pub version: String,
    /// `Architecture`, in Debian's names (`amd64`, `all`, ...).
    pub arch: String,
    /// `Maintainer`: `Name <email>`.
    pub maintainer: String,
    /// First line of `Description`.
    pub summary: String,
    /// Extended description; its lines become continuation lines.
    pub description: Option<String>,
    /// Relationship fields.
    pub relations: Relations,
    /// `Section` (`misc` by [`DebPackage::new`]).
    pub section: String,
    /// `Priority` (`optional` by [`DebPackage::new`]).
    pub priority: String,
    /// `Homepage`.
    pub homepage: Option<String>,
    /// Contents, as [`crate::tree::resolve`] returns them (sorted, parents
    /// included).
    pub entries: Vec<Entry>,
    /// Maintainer scripts.
    pub scripts: Scripts,
    /// The copyright file and changelog, shipped as
    /// `/usr/share/doc/NAME/copyright` and `changelog.gz` (unless
    /// `entries` has those paths already).
    pub docs: Option<Docs>,
    /// `SOURCE_DATE_EPOCH`: every date in the archive.
    pub mtime: u64,
}

impl DebPackage {
    /// A package with no relations, scripts or entries, section `misc` and
    /// priority `optional`.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        arch: impl Into<String>,
        maintainer: impl Into<String>,
        summary: impl Into<String>,
        mtime: u64,
    ) -> Self {
        DebPackage {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            maintainer: maintainer.into(),
            summary: summary.into(),
            description: None,
            relations: Relations::default(),
            section: "misc".into(),
            priority: "optional".into(),
            homepage: None,
            entries: Vec::new(),
            scripts: Scripts::default(),
            docs: None,
            mtime,
        }
    }

    /// The conventional file name, `NAME_VERSION_ARCH.deb` (an epoch's `:`
    /// is dropped, as dpkg-name does).
    pub fn file_name(&self) -> String {
        let version = self
            .version
            .split_once(':')
            .map_or(self.version.as_str(), |(_, v)| v);
        format!("{}_{}_{}.deb", self.name, version, self.arch)
    }
}

/// Relationship fields, each a list of relations in Debian syntax
/// (`libc6 (>= 2.36)`, `mail-transport-agent | exim4`), joined with `, `.
#[derive(Clone, Debug, Default)]
pub struct Relations {
    /// `Pre-Depends`.
    pub pre_depends: Vec<String>,
    /// `Depends`.
    pub depends: Vec<String>,
    /// `Recommends`.
    pub recommends: Vec<String>,
    /// `Suggests`.
    pub suggests: Vec<String>,
    /// `Breaks`.
    pub breaks: Vec<String>,
    /// `Conflicts`.
    pub conflicts: Vec<String>,
    /// `Provides`.
    pub provides: Vec<String>,
    /// `Replaces`.
    pub replaces: Vec<String>,
}

impl Relations {
    /// Field names and values, in dpkg-gencontrol's order.
    fn fields(&self) -> [(&'static str, &Vec<String>); 8] {
        [
            ("Pre-Depends", &self.pre_depends),
            ("Depends", &self.depends),
            ("Recommends", &self.recommends),
            ("Suggests", &self.suggests),
            ("Breaks", &self.breaks),
            ("Conflicts", &self.conflicts),
            ("Provides", &self.provides),
            ("Replaces", &self.replaces),
        ]
    }
}

/// Maintainer scripts: paths on disk, copied into `control.tar` with mode
/// 0755.
#[derive(Clone, Debug, Default)]
pub struct Scripts {
    /// Runs before unpacking.
    pub preinst: Option<PathBuf>,
    /// Runs after unpacking.
    pub postinst: Option<PathBuf>,
    /// Runs before removal.
    pub prerm: Option<PathBuf>,
    /// Runs after removal.
    pub postrm: Option<PathBuf>,
}

/// How to write the archive.
#[derive(Clone, Debug, Default)]
pub struct DebOptions {
    /// Compression of both tarballs.
    pub compression: Compression,
    /// Compression level; dpkg-deb's default for the format when `None`.
    pub level: Option<u32>,
    /// Compressor threads at most; the process's compressor budget
    /// ([`crate::compress::limits`]) when `None`, and never more than the
    /// budget has free. The output does not depend on it.
    pub threads: Option<NonZeroU32>,
}

/// A written package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// Where it was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// Writes `pkg` to `out`, atomically: the file appears complete or not at
/// all (a rename). Not flushed to disk: a caller that keeps it across a
/// crash syncs it (pipe copies it into its store, which does; a build's
/// half-made directory is discarded anyway), so a build pays for one
/// `fsync` of the package, not two.
pub fn write_deb(pkg: &DebPackage, opts: &DebOptions, out: &Path) -> Result<Artifact> {
    control::validate(pkg)?;
    let scripts = read_scripts(&pkg.scripts)?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let level = opts
        .level
        .unwrap_or_else(|| opts.compression.default_level());
    let threads = opts.threads.unwrap_or_else(default_threads);
    // The control member is a few KiB: one worker.
    let compress_vec = |w: Vec<u8>| Encoder::sized(w, opts.compression, level, threads, Some(0));
    let wr = |e| Error::write(out, e);

    // Generated documentation is written to a scratch directory and
    // streamed like any packaged file.
    let scratch = tempfile::Builder::new()
        .prefix(".pipe-deb-docs-")
        .tempdir_in(dir)
        .map_err(wr)?;
    let generated = match &pkg.docs {
        Some(docs) => docs.deb_files(&pkg.name, scratch.path()).map_err(wr)?,
        None => Vec::new(),
    };
    let entries = crate::tree::with_generated(&pkg.entries, &generated, pkg.mtime);

    let mut data_file = tempfile::tempfile_in(dir).map_err(wr)?;
    let payload_size = crate::compress::payload_size(&entries);
    // A table of contents only where a deploy can skip blocks ([`toc`]).
    let with_toc = opts.compression == Compression::Xz && payload_size > XZ_BLOCK_SIZE;
    // Workers for the data member in proportion to its size, so small
    // packages leave the rest of the budget to other writers.
    let data = Encoder::sized(
        BufWriter::new(&mut data_file),
        opts.compression,
        level,
        threads,
        Some(payload_size),
    )
    .map_err(wr)?;
    let summary = write_data(pkg, &entries, data, with_toc).map_err(|e| e.into_error(out))?;

    let control_text = control::render(pkg, summary.installed_size_kib);
    let mut ctl = TarWriter::new(compress_vec(Vec::new()).map_err(wr)?);
    let mut write_control = || -> io::Result<()> {
        ctl_dir(&mut ctl, pkg.mtime)?;
        if !summary.conffiles.is_empty() {
            ctl.file(
                "./conffiles",
                0o644,
                pkg.mtime,
                summary.conffiles.as_bytes(),
            )?;
        }
        ctl.file("./control", 0o644, pkg.mtime, control_text.as_bytes())?;
        ctl.file("./md5sums", 0o644, pkg.mtime, summary.md5sums.as_bytes())?;
        for (name, body) in &scripts {
            ctl.file(&format!("./{name}"), 0o755, pkg.mtime, body)?;
        }
        Ok(())
    };
    write_control().map_err(wr)?;
    let control_tar = ctl.finish().and_then(Encoder::finish).map_err(wr)?;

    let ext = opts.compression.extension();
    let data_len = data_file.seek(SeekFrom::End(0)).map_err(wr)?;
    data_file.seek(SeekFrom::Start(0)).map_err(wr)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".pipe-deb-")
        .tempfile_in(dir)
        .map_err(wr)?;
    {
        let mut w = BufWriter::new(tmp.as_file_mut());
        w.write_all(b"!<arch>\n").map_err(wr)?;
        ar_member(&mut w, "debian-binary", pkg.mtime, &mut &b"2.0\n"[..], 4).map_err(wr)?;
        let control_name = format!("control.tar{ext}");
        let len = control_tar.len() as u64;
        ar_member(&mut w, &control_name, pkg.mtime, &mut &control_tar[..], len).map_err(wr)?;
        ar_member(
            &mut w,
            &format!("data.tar{ext}"),
            pkg.mtime,
            &mut data_file,
            data_len,
        )
        .map_err(wr)?;
        if let Some(toc) = &summary.toc {
            let bytes = toc.encode().map_err(wr)?;
            let len = bytes.len() as u64;
            ar_member(&mut w, TOC_MEMBER, pkg.mtime, &mut &bytes[..], len).map_err(wr)?;
        }
        w.flush().map_err(wr)?;
    }
    let size = tmp.as_file().metadata().map_err(wr)?.len();
    tmp.persist(out).map_err(|e| wr(e.error))?;
    tracing::debug!(path = %out.display(), size, compression = opts.compression.name(), "wrote .deb");
    Ok(Artifact {
        path: out.to_path_buf(),
        size,
    })
}

fn ctl_dir<W: Write>(ctl: &mut TarWriter<W>, mtime: u64) -> io::Result<()> {
    ctl.header(&TarEntry {
        name: "./",
        kind: TarKind::Dir,
        mode: 0o755,
        mtime,
    })
}

/// Script names and contents, in the order they go into `control.tar`
/// (sorted by name, as dpkg-deb writes them).
fn read_scripts(s: &Scripts) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let mut out = Vec::new();
    for (name, path) in [
        ("postinst", &s.postinst),
        ("postrm", &s.postrm),
        ("preinst", &s.preinst),
        ("prerm", &s.prerm),
    ] {
        if let Some(path) = path {
            let body = fs::read(path).map_err(|e| Error::read(path, e))?;
            out.push((name, body));
        }
    }
    Ok(out)
}

/// What streaming `data.tar` learnt for the control member.
struct DataSummary {
    md5sums: String,
    conffiles: String,
    installed_size_kib: u64,
    /// The table of contents, when asked for.
    toc: Option<Toc>,
}

/// An error while streaming `data.tar`: a source problem, or a write to the
/// output that failed.
enum DataError {
    Source(Error),
    Write(io::Error),
}

impl DataError {
    fn into_error(self, out: &Path) -> Error {
        match self {
            DataError::Source(e) => e,
            DataError::Write(e) => Error::write(out, e),
        }
    }
}

impl From<io::Error> for DataError {
    fn from(e: io::Error) -> Self {
        DataError::Write(e)
    }
}

fn write_data<W: Write>(
    pkg: &DebPackage,
    entries: &[Entry],
    enc: Encoder<W>,
    with_toc: bool,
) -> std::result::Result<DataSummary, DataError> {
    let mut tar = TarWriter::new(toc::Counting {
        inner: enc,
        written: 0,
    });
    let mut summary = DataSummary {
        md5sums: String::new(),
        conffiles: String::new(),
        installed_size_kib: 0,
        toc: None,
    };
    let mut contents: Vec<TocEntry> = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    tar.header(&TarEntry {
        name: "./",
        kind: TarKind::Dir,
        mode: 0o755,
        mtime: pkg.mtime,
    })?;
    for e in entries {
        let rel = e.relative_path();
        if rel.is_empty() {
            continue;
        }
        let (name, kind) = match &e.kind {
            EntryKind::Dir => (format!("./{rel}/"), TarKind::Dir),
            EntryKind::File { size, .. } => (format!("./{rel}"), TarKind::File { size: *size }),
            EntryKind::Symlink { target } => (format!("./{rel}"), TarKind::Symlink { target }),
        };
        tar.header(&TarEntry {
            name: &name,
            kind,
            mode: e.mode,
            mtime: pkg.mtime,
        })?;
        // dpkg-gencontrol's rule: files count their size rounded up to KiB,
        // every other inode 1 KiB.
        summary.installed_size_kib += match &e.kind {
            EntryKind::File { size, .. } => size.div_ceil(1024),
            _ => 1,
        };
        let EntryKind::File { src, size } = &e.kind else {
            if with_toc {
                contents.push(TocEntry {
                    path: rel.to_string(),
                    kind: match &e.kind {
                        EntryKind::Symlink { target } => TocKind::Symlink {
                            target: target.clone(),
                        },
                        _ => TocKind::Dir,
                    },
                    mode: e.mode,
                });
            }
            continue;
        };
        let offset = tar.get_ref().written;
        let file = File::open(src).map_err(|err| DataError::Source(Error::read(src, err)))?;
        let mut hashing = HashingReader {
            inner: file,
            md5: Md5::new(),
            blake3: with_toc.then(blake3::Hasher::new),
            failed: false,
        };
        let copied = tar.data(&mut hashing, *size, &mut buf).map_err(|err| {
            if hashing.failed {
                DataError::Source(Error::read(src, err))
            } else {
                DataError::Write(err)
            }
        })?;
        let grew = copied == *size && hashing.inner.read(&mut [0u8; 1]).is_ok_and(|n| n > 0);
        if copied != *size || grew {
            let found = fs::metadata(src).map(|m| m.len()).unwrap_or(copied);
            return Err(DataError::Source(Error::SourceChanged {
                path: src.clone(),
                expected: *size,
                found,
            }));
        }
        tar.pad(*size)?;
        if let Some(b) = &hashing.blake3 {
            contents.push(TocEntry {
                path: rel.to_string(),
                kind: TocKind::File {
                    size: *size,
                    offset,
                    blake3: b.finalize().to_hex().to_string(),
                },
                mode: e.mode,
            });
        }
        let digest = hashing.md5.finalize();
        if e.config {
            summary.conffiles.push_str(&e.path);
            summary.conffiles.push('\n');
        } else {
            for b in digest.iter() {
                summary.md5sums.push_str(&format!("{b:02x}"));
            }
            summary.md5sums.push_str("  ");
            summary.md5sums.push_str(rel);
            summary.md5sums.push('\n');
        }
    }
    let counted = tar.finish()?;
    if with_toc {
        summary.toc = Some(Toc {
            format: toc::TOC_FORMAT,
            tar_size: counted.written,
            entries: contents,
        });
    }
    let mut w = counted.inner.finish()?;
    w.flush()?;
    Ok(summary)
}

/// Hashes what is read through it, and remembers whether reading failed so
/// the error is blamed on the source rather than on the output.
struct HashingReader {
    inner: File,
    md5: Md5,
    /// For the table of contents.
    blake3: Option<blake3::Hasher>,
    failed: bool,
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| self.failed = true)?;
        let chunk = crate::io::handled(buf, n).inspect_err(|_| self.failed = true)?;
        self.md5.update(chunk);
        if let Some(b) = &mut self.blake3 {
            b.update(chunk);
        }
        Ok(n)
    }
}

/// The largest `ar` member: its size is ten decimal digits.
pub(crate) const AR_MAX_MEMBER: u64 = 9_999_999_999;

/// One `ar` member as dpkg-deb writes it: name padded with spaces (no
/// trailing `/`), the package's date, uid and gid 0, mode 100644, data
/// padded to an even length with `\n`.
fn ar_member(
    w: &mut impl Write,
    name: &str,
    mtime: u64,
    data: &mut impl Read,
    len: u64,
) -> io::Result<()> {
    // The header's fields are fixed-width decimal: a value too wide would
    // shift every field after it and make an archive dpkg misreads.
    if name.len() > 16 || mtime > 999_999_999_999 || len > AR_MAX_MEMBER {
        return Err(io::Error::other(format!(
            "ar member `{name}` cannot be written: {len} bytes (at most {AR_MAX_MEMBER}), date {mtime}, name of {} bytes (at most 16)",
            name.len()
        )));
    }
    let header = format!(
        "{name:<16}{mtime:<12}{:<6}{:<6}{:<8}{len:<10}`\n",
        0, 0, "100644"
    );
    if header.len() != 60 {
        return Err(io::Error::other(format!(
            "ar member `{name}`: a {}-byte header",
            header.len()
        )));
    }
    w.write_all(header.as_bytes())?;
    let copied = io::copy(&mut data.take(len), w)?;
    if copied != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("ar member `{name}`: expected {len} bytes, found {copied}"),
        ));
    }
    if len % 2 == 1 {
        w.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod ar_tests {
    use super::*;

    /// A member whose size needs eleven digits is an error, not a header
    /// whose fields slide (issue 12).
    #[test]
    fn an_oversized_ar_member_is_an_error() {
        let mut out = Vec::new();
        let err =
            ar_member(&mut out, "data.tar.xz", 0, &mut &b""[..], AR_MAX_MEMBER + 1).unwrap_err();
        assert!(err.to_string().contains("at most 9999999999"), "{err}");
        assert!(out.is_empty(), "nothing written");
        let err = ar_member(&mut out, "x", 1 << 50, &mut &b""[..], 0).unwrap_err();
        assert!(err.to_string().contains("date"), "{err}");
        ar_member(&mut out, "debian-binary", 0, &mut &b"2.0\n"[..], 4).unwrap();
        assert_eq!(out.len(), 64);
    }
}
