//! The payload, streamed: a cpio archive (newc, or rpm's stripped format
//! above 4 GiB) of the package's files, compressed with xz into a spool file,
//! while the digests and sizes the main header needs are computed on the way.
//!
//! The rpm crate builds the header with placeholder contents (see
//! [`super::write_rpm`]); its file list gives the archive's order and each
//! entry's mode, inode and time, so the archive here is the one the crate
//! would have written, byte for byte. [`patch_header`] then fills in the
//! values that depend on contents.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufWriter, Read, Write};

use rpm::{Header, HeaderEntry, IndexData, IndexTag};
use sha2::{Digest, Sha256};

use super::COMPRESSION_LEVEL;
use crate::Error;
use crate::compress::{Compression, Encoder, default_threads, payload_size};
use crate::tree::EntryKind;

/// Why streaming failed: a source, the spool file, or the header.
pub(super) enum Failure {
    Source(Error),
    Write(io::Error),
    Rpm(rpm::Error),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Write(e)
    }
}

impl From<rpm::Error> for Failure {
    fn from(e: rpm::Error) -> Self {
        Failure::Rpm(e)
    }
}

/// What the header needs from the payload.
pub(super) struct Streamed {
    /// Per header file index: its size (regular files: what was read).
    file_sizes: Vec<u64>,
    /// Per header file index: SHA-256 (hex) of a regular file's contents.
    digests: Vec<Option<String>>,
    /// Bytes of the compressed payload.
    pub(super) compressed_size: u64,
    /// SHA-256 (hex) of the compressed payload (`PAYLOADSHA256`).
    compressed_sha256: String,
    /// SHA-256 (hex) of the uncompressed archive (`PAYLOADSHA256ALT`).
    raw_sha256: String,
}

/// Counts and hashes what passes through.
struct Hashing<W> {
    inner: W,
    sha: Sha256,
    count: u64,
}

impl<W> Hashing<W> {
    fn new(inner: W) -> Self {
        Hashing {
            inner,
            sha: Sha256::new(),
            count: 0,
        }
    }

    fn finish(self) -> (W, String, u64) {
        (self.inner, format!("{:x}", self.sha.finalize()), self.count)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(crate::io::handled(buf, n)?);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One cpio entry's header: "new ascii" (`070701`) like the rpm crate's
/// `payload::Builder`, or rpm's stripped `07070X` (index into the header's
/// file arrays) for packages with large files.
#[allow(clippy::too_many_arguments)]
fn entry_header(
    w: &mut impl Write,
    stripped: Option<u32>,
    name: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: u64,
    rdev: u16,
) -> io::Result<()> {
    if let Some(index) = stripped {
        // 6 + 8 bytes, padded to 16.
        return w.write_all(format!("07070X{index:08x}\0\0").as_bytes());
    }
    let size = u32::try_from(size).map_err(io::Error::other)?;
    let name_len = name.len() + 1;
    let mut h = String::with_capacity(110 + name_len + 3);
    h.push_str("070701");
    for field in [
        ino,
        mode,
        0, // uid
        0, // gid
        nlink,
        mtime,
        size,
        0, // devmajor
        0, // devminor
        u32::from(rdev >> 8),
        u32::from(rdev & 0xff),
        name_len as u32,
        0, // check
    ] {
        h.push_str(&format!("{field:08x}"));
    }
    h.push_str(name);
    h.push('\0');
    let mut bytes = h.into_bytes();
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    w.write_all(&bytes)
}

/// Entry `i` of the per-file array `tag` of the header, which must have one
/// entry per file.
fn nth<T: Copy>(values: &[T], i: usize, tag: &str) -> io::Result<T> {
    values.get(i).copied().ok_or_else(|| {
        io::Error::other(format!(
            "rpm header: {tag} has {} entries, but file {} needs one",
            values.len(),
            i + 1
        ))
    })
}

fn pad(w: &mut impl Write, size: u64) -> io::Result<()> {
    let n = (4 - size % 4) % 4;
    io::copy(&mut io::repeat(0).take(n), w).map(|_| ())
}

/// Writes the compressed payload for the files `header` lists (built by the
/// rpm crate from `entries`) to `out`.
pub(super) fn write(
    header: &Header<IndexTag>,
    entries: &[crate::tree::Entry],
    large_files: bool,
    out: &mut fs::File,
) -> Result<Streamed, Failure> {
    // A package without files has none of the file tags.
    let names = header
        .get_entry_data_as_string_array(IndexTag::RPMTAG_BASENAMES)
        .unwrap_or_default();
    let n = names.len();
    let (dirs, dir_index, modes, inodes, mtimes, rdevs) = if n == 0 {
        Default::default()
    } else {
        (
            header.get_entry_data_as_string_array(IndexTag::RPMTAG_DIRNAMES)?,
            header.get_entry_data_as_u32_array(IndexTag::RPMTAG_DIRINDEXES)?,
            header.get_entry_data_as_u16_array(IndexTag::RPMTAG_FILEMODES)?,
            header.get_entry_data_as_u32_array(IndexTag::RPMTAG_FILEINODES)?,
            header.get_entry_data_as_u32_array(IndexTag::RPMTAG_FILEMTIMES)?,
            header.get_entry_data_as_u16_array(IndexTag::RPMTAG_FILERDEVS)?,
        )
    };
    let by_path: HashMap<&str, &EntryKind> =
        entries.iter().map(|e| (e.path.as_str(), &e.kind)).collect();

    let file = BufWriter::with_capacity(1 << 20, out);
    // The same multithreaded xz encoder as the .deb: a fixed block size makes
    // the bytes independent of the thread count; its workers come from the
    // process's compressor budget, in proportion to the payload.
    let xz = Encoder::sized(
        Hashing::new(file),
        Compression::Xz,
        COMPRESSION_LEVEL,
        default_threads(),
        Some(payload_size(entries)),
    )?;
    let mut raw = Hashing::new(xz);
    let mut buf = vec![0u8; 256 << 10];
    let mut file_sizes = Vec::with_capacity(n);
    let mut digests = Vec::with_capacity(n);
    for (i, name) in names.iter().enumerate() {
        let dir = dirs
            .get(nth(&dir_index, i, "RPMTAG_DIRINDEXES")? as usize)
            .ok_or_else(|| io::Error::other("rpm header: directory index out of range"))?;
        let path = format!("{dir}{name}");
        let kind = by_path.get(path.as_str()).ok_or_else(|| {
            io::Error::other(format!("rpm header lists {path}, which is not an entry"))
        })?;
        let size = match kind {
            EntryKind::File { size, .. } => *size,
            EntryKind::Symlink { target } => target.len() as u64,
            EntryKind::Dir => 0,
        };
        entry_header(
            &mut raw,
            large_files.then_some(i as u32),
            &format!(".{path}"),
            nth(&inodes, i, "RPMTAG_FILEINODES")?,
            u32::from(nth(&modes, i, "RPMTAG_FILEMODES")?),
            1,
            nth(&mtimes, i, "RPMTAG_FILEMTIMES")?,
            size,
            nth(&rdevs, i, "RPMTAG_FILERDEVS")?,
        )?;
        let digest = match kind {
            EntryKind::File { src, .. } => {
                let mut f =
                    fs::File::open(src).map_err(|e| Failure::Source(Error::read(src, e)))?;
                let mut sha = Sha256::new();
                let mut left = size;
                loop {
                    let got = f
                        .read(&mut buf)
                        .map_err(|e| Failure::Source(Error::read(src, e)))?;
                    if got == 0 {
                        break;
                    }
                    let take = got.min(usize::try_from(left).unwrap_or(usize::MAX));
                    if take < got {
                        // The file grew since the tree was resolved.
                        let extra = got - take;
                        return Err(Failure::Source(Error::SourceChanged {
                            path: src.clone(),
                            expected: size,
                            found: size + extra as u64,
                        }));
                    }
                    let chunk = crate::io::handled(&buf, take)?;
                    sha.update(chunk);
                    raw.write_all(chunk)?;
                    left -= take as u64;
                }
                if left != 0 {
                    return Err(Failure::Source(Error::SourceChanged {
                        path: src.clone(),
                        expected: size,
                        found: size - left,
                    }));
                }
                Some(format!("{:x}", sha.finalize()))
            }
            EntryKind::Symlink { target } => {
                raw.write_all(target.as_bytes())?;
                None
            }
            EntryKind::Dir => None,
        };
        let header_len = if large_files { 16 } else { 0 };
        pad(&mut raw, header_len + size)?;
        file_sizes.push(size);
        digests.push(digest);
    }
    // The trailer, as the rpm crate writes it.
    entry_header(&mut raw, None, "TRAILER!!!", 0, 0, 1, 0, 0, 0)?;

    let (xz, raw_sha256, _) = raw.finish();
    let (file, compressed_sha256, compressed_size) = xz.finish()?.finish();
    file.into_inner().map_err(|e| e.into_error())?;
    Ok(Streamed {
        file_sizes,
        digests,
        compressed_size,
        compressed_sha256,
        raw_sha256,
    })
}

/// `header` with the values that depend on contents replaced by the
/// streamed ones.
pub(super) fn patch_header(
    header: &Header<IndexTag>,
    s: &Streamed,
    large_files: bool,
    source_rpm: &str,
) -> Result<Header<IndexTag>, rpm::Error> {
    let total: u64 = s.file_sizes.iter().sum();
    let region = IndexTag::RPMTAG_HEADERIMMUTABLE as u32;
    let tag = |t: IndexTag| t as u32;
    let mut entries = Vec::new();
    for (t, data) in header.get_all_entries()? {
        let entry = match data {
            _ if t == region => continue,
            _ if t == tag(IndexTag::RPMTAG_FILESIZES) => {
                if large_files {
                    HeaderEntry::new(
                        tag(IndexTag::RPMTAG_LONGFILESIZES),
                        IndexData::Int64(s.file_sizes.clone()),
                    )
                } else {
                    HeaderEntry::new(t, IndexData::Int32(narrow(&s.file_sizes)?))
                }
            }
            _ if t == tag(IndexTag::RPMTAG_SIZE) => {
                if large_files {
                    HeaderEntry::new(
                        tag(IndexTag::RPMTAG_LONGSIZE),
                        IndexData::Int64(vec![total]),
                    )
                } else {
                    HeaderEntry::new(t, IndexData::Int32(narrow(&[total])?))
                }
            }
            IndexData::StringArray(old) if t == tag(IndexTag::RPMTAG_FILEDIGESTS) => {
                let new = old
                    .into_iter()
                    .zip(&s.digests)
                    .map(|(old, new)| new.clone().unwrap_or(old))
                    .collect();
                HeaderEntry::new(t, IndexData::StringArray(new))
            }
            _ if t == tag(IndexTag::RPMTAG_PAYLOADSHA256) => {
                HeaderEntry::new(t, IndexData::StringArray(vec![s.compressed_sha256.clone()]))
            }
            // The rpm crate writes `(none)`; see `RpmPackage::source_rpm`.
            _ if t == tag(IndexTag::RPMTAG_SOURCERPM) => {
                HeaderEntry::new(t, IndexData::StringTag(source_rpm.to_string()))
            }
            _ if t == tag(IndexTag::RPMTAG_PAYLOADSHA256ALT) => {
                HeaderEntry::new(t, IndexData::StringArray(vec![s.raw_sha256.clone()]))
            }
            data => HeaderEntry::new(t, data),
        };
        entries.push(entry);
    }
    Ok(Header::from_entries(
        entries,
        IndexTag::RPMTAG_HEADERIMMUTABLE,
    ))
}

fn narrow(v: &[u64]) -> Result<Vec<u32>, rpm::Error> {
    v.iter()
        .map(|&x| u32::try_from(x).map_err(|e| rpm::Error::Io(io::Error::other(e))))
        .collect()
}
