//! Deploying a large `.deb` in proportion to what changed.
//!
//! A `.deb` pipe wrote with a payload of more than one xz block carries a
//! table of contents ([`stages::deb::Toc`], the `_pipe-toc.gz` member): every
//! entry of `data.tar` with, for a file, its size, blake3 and offset in the
//! uncompressed tar. The table is inside the package, whose digest the
//! signed manifest names and deploy checked before this runs, so it is as
//! trusted as the payload itself.
//!
//! A file whose blake3 in the table is the one the previous release
//! recorded for the same path is taken from that release (reflink, else
//! copy) and the copy hashed against the table's blake3: the previous
//! release's records only say which copy is worth trying; what is believed
//! is the signed table. Every other file (changed, new, or a copy that does
//! not hash right) is decoded from the package: only the xz blocks that hold
//! it, each block an independent unit (stages write xz in blocks of 8 MiB),
//! from the block's start to the file's end, and checked against the
//! table's blake3 too. Directories and links come from the table. Every
//! entry goes through the same checks as an entry unpacked from the archive
//! ([`super::unpack::Unpacker`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use stages::deb::{DebReader, TOC_MEMBER, Toc, TocKind};

use super::unpack::Recorded;
use crate::{Error, Result};

/// One xz block of the data member.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// Offset of the block in the data member.
    at: u64,
    /// Its size without the padding to 4 bytes (what the xz index records).
    unpadded: u64,
    /// Offset of its first byte in the uncompressed tar.
    start: u64,
    /// Its uncompressed size.
    len: u64,
}

/// A `.deb` that can be read entry by entry: its table of contents and the
/// block layout of its `data.tar.xz`.
pub(crate) struct DebLayout {
    /// The table of contents.
    pub toc: Toc,
    /// Offset and size of the `data.tar.xz` member in the file.
    data: (u64, u64),
    /// The stream header of the member.
    header: [u8; 12],
    blocks: Vec<Block>,
}

/// The largest xz index read (a 16-byte record per 8 MiB block).
const MAX_INDEX: u64 = 16 << 20;

impl DebLayout {
    /// The layout of `path`, or `None` when it has no table of contents or
    /// its data member is not one xz stream of blocks (then it is unpacked
    /// as a whole).
    pub fn open(path: &Path) -> Result<Option<DebLayout>> {
        let deb = DebReader::open(path)?;
        let member = |name: &str| deb.members().iter().find(|m| m.name == name).cloned();
        let (Some(toc_member), Some(data)) = (member(TOC_MEMBER), member("data.tar.xz")) else {
            return Ok(None);
        };
        let bad = |detail: String| Error::Verify {
            what: path.display().to_string(),
            detail,
        };
        let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
        f.seek(SeekFrom::Start(toc_member.offset))
            .map_err(|e| Error::io(path, e))?;
        let toc = Toc::decode((&mut f).take(toc_member.size)).map_err(bad)?;
        let Some((header, blocks)) =
            xz_blocks(&mut f, data.offset, data.size).map_err(|e| Error::io(path, e))?
        else {
            return Ok(None);
        };
        let total = blocks.last().map_or(0, |b| b.start + b.len);
        if total != toc.tar_size {
            tracing::info!(
                path = %path.display(),
                "the xz blocks hold {total} bytes, the table of contents says {}; unpacking it whole",
                toc.tar_size
            );
            return Ok(None);
        }
        Ok(Some(DebLayout {
            toc,
            data: (data.offset, data.size),
            header,
            blocks,
        }))
    }

    /// Bytes that would be decoded to take from the package every file
    /// whose content `prior` does not have: from the start of the block
    /// holding its first byte to its last byte.
    pub fn decode_cost(&self, prior: &BTreeMap<String, Recorded>) -> u64 {
        self.toc
            .entries
            .iter()
            .filter_map(|e| match &e.kind {
                TocKind::File {
                    size,
                    offset,
                    blake3,
                } if *size > 0 && !in_prior(prior, &e.path, *size, blake3) => {
                    let start = self
                        .block_of(*offset)
                        .and_then(|i| self.blocks.get(i))
                        .map_or(0, |b| b.start);
                    Some(offset.saturating_add(*size).saturating_sub(start))
                }
                _ => None,
            })
            .sum()
    }

    fn block_of(&self, offset: u64) -> Option<usize> {
        self.blocks
            .iter()
            .position(|b| b.start <= offset && offset < b.start + b.len)
    }

    /// `size` bytes at `offset` of the uncompressed tar, read from `path`
    /// (this package) by decoding only the blocks that hold them.
    pub fn range(&self, path: &Path, offset: u64, size: u64) -> io::Result<Box<dyn Read + '_>> {
        if size == 0 {
            return Ok(Box::new(io::empty()));
        }
        let out_of_range = || io::Error::other(format!("bytes {offset}+{size} are in no xz block"));
        let end = offset.checked_add(size - 1).ok_or_else(out_of_range)?;
        let first = self.block_of(offset).ok_or_else(out_of_range)?;
        let last = self.block_of(end).ok_or_else(out_of_range)?;
        let blocks = self.blocks.get(first..=last).ok_or_else(out_of_range)?;
        let (Some(head), Some(tail)) = (blocks.first(), blocks.last()) else {
            return Err(out_of_range());
        };
        let from = head.at;
        let to = tail.at + pad4(tail.unpadded);
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(self.data.0 + from))?;
        // One stream of just these blocks: the member's stream header, the
        // blocks as they are, and an index and footer for them.
        let stream = Cursor::new(self.header.to_vec())
            .chain(f.take(to - from))
            .chain(Cursor::new(index_and_footer(&self.header, blocks)));
        let mut decoded = liblzma::read::XzDecoder::new(stream);
        let skip = offset - head.start;
        let skipped = io::copy(&mut (&mut decoded).take(skip), &mut io::sink())?;
        if skipped != skip {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(Box::new(decoded.take(size)))
    }
}

/// The SHA-256 of every regular file of the rpm at `path`, by relative path,
/// from its header (signed with the package: deploy checked the package's
/// digests against the signed manifest). `None` when the header cannot be
/// read or names another digest algorithm.
pub(crate) fn rpm_sha256s(name: &str, path: &Path) -> Option<HashMap<String, String>> {
    let checked = File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|mut f| stages::rpm::check_headers(&mut f));
    let metadata = checked
        .and_then(|()| rpm::PackageMetadata::open(path).map_err(|e| e.to_string()))
        .and_then(|m| {
            m.get_file_entries()
                .map_err(|e| e.to_string())
                .map(|entries| {
                    entries
                        .into_iter()
                        .filter(|f| f.file_type() == rpm::FileType::Regular)
                        .map(|f| {
                            let digest = f.digest().and_then(|d| {
                                (d.algorithm() == rpm::DigestAlgorithm::Sha2_256)
                                    .then(|| d.as_hex().to_string())
                            });
                            (f.path(), digest)
                        })
                        .collect::<Vec<_>>()
                })
        });
    let files = match metadata {
        Ok(files) => files,
        Err(e) => {
            tracing::info!(
                artifact = name,
                "its header cannot be read ({e}); unpacking it"
            );
            return None;
        }
    };
    files
        .into_iter()
        .map(|(p, digest)| {
            let rel = super::unpack::clean(p.to_str()?.trim_start_matches('/')).ok()?;
            Some((rel, digest?))
        })
        .collect()
}

/// True when the previous release recorded `path` as a file with this
/// content.
pub(crate) fn in_prior(
    prior: &BTreeMap<String, Recorded>,
    path: &str,
    size: u64,
    blake3: &str,
) -> bool {
    matches!(prior.get(path), Some(Recorded::File { size: s, blake3: b, .. }) if *s == size && b == blake3)
}

fn pad4(n: u64) -> u64 {
    n.div_ceil(4) * 4
}

/// The stream header and blocks of the xz stream at `offset` (`len` bytes)
/// of `f`, from its index; `None` when it is not exactly one stream.
fn xz_blocks(f: &mut File, offset: u64, len: u64) -> io::Result<Option<([u8; 12], Vec<Block>)>> {
    if len < 24 {
        return Ok(None);
    }
    let mut header = [0u8; 12];
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(&mut header)?;
    let mut footer = [0u8; 12];
    f.seek(SeekFrom::Start(offset + len - 12))?;
    f.read_exact(&mut footer)?;
    if header[..6] != [0xFD, b'7', b'z', b'X', b'Z', 0] || footer[10..] != *b"YZ" {
        return Ok(None);
    }
    if header[6..8] != footer[8..10] {
        return Ok(None);
    }
    let backward = (u64::from(u32::from_le_bytes([
        footer[4], footer[5], footer[6], footer[7],
    ])) + 1)
        * 4;
    if backward > MAX_INDEX || backward + 24 > len {
        return Ok(None);
    }
    let mut index = vec![0u8; backward as usize];
    f.seek(SeekFrom::Start(offset + len - 12 - backward))?;
    f.read_exact(&mut index)?;
    let mut r = &index[..];
    let mut byte = || -> Option<u8> {
        let (b, rest) = r.split_first()?;
        r = rest;
        Some(*b)
    };
    if byte() != Some(0) {
        return Ok(None);
    }
    let mut varint = || -> Option<u64> {
        let mut v = 0u64;
        for i in 0..9 {
            let b = byte()?;
            v |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    };
    let Some(count) = varint() else {
        return Ok(None);
    };
    let mut blocks = Vec::new();
    let (mut at, mut start) = (12u64, 0u64);
    for _ in 0..count {
        let (Some(unpadded), Some(size)) = (varint(), varint()) else {
            return Ok(None);
        };
        blocks.push(Block {
            at,
            unpadded,
            start,
            len: size,
        });
        at = at.saturating_add(pad4(unpadded));
        start = start.saturating_add(size);
    }
    // Exactly one stream: blocks, index, footer, nothing after.
    if at.saturating_add(backward + 12) != len {
        return Ok(None);
    }
    Ok(Some((header, blocks)))
}

fn varint_into(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An xz index listing `blocks` and the stream footer after it.
fn index_and_footer(header: &[u8; 12], blocks: &[Block]) -> Vec<u8> {
    let mut index = vec![0u8];
    varint_into(&mut index, blocks.len() as u64);
    for b in blocks {
        varint_into(&mut index, b.unpadded);
        varint_into(&mut index, b.len);
    }
    while index.len() % 4 != 0 {
        index.push(0);
    }
    let mut crc = flate2::Crc::new();
    crc.update(&index);
    index.extend_from_slice(&crc.sum().to_le_bytes());
    let backward = (index.len() as u32 / 4) - 1;
    let mut tail = Vec::with_capacity(12);
    tail.extend_from_slice(&backward.to_le_bytes());
    tail.extend_from_slice(&header[6..8]);
    let mut crc = flate2::Crc::new();
    crc.update(&tail);
    index.extend_from_slice(&crc.sum().to_le_bytes());
    index.extend_from_slice(&tail);
    index.extend_from_slice(b"YZ");
    index
}

/// Reads a byte range of a package on first use: a file taken from the
/// previous release never decodes anything.
pub(crate) struct Lazy<'a> {
    pub layout: &'a DebLayout,
    pub path: &'a Path,
    pub offset: u64,
    pub size: u64,
    pub inner: Option<Box<dyn Read + 'a>>,
}

impl Read for Lazy<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inner.is_none() {
            self.inner = Some(self.layout.range(self.path, self.offset, self.size)?);
        }
        match &mut self.inner {
            Some(r) => r.read(buf),
            None => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A stream of several blocks read back range by range through the
    /// rebuilt one-block streams, compared with the whole.
    #[test]
    fn ranges_decode_from_their_blocks_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.xz");
        let data: Vec<u8> = (0..(3 << 20) + 12345u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut filters = liblzma::stream::MtStreamBuilder::new();
        filters
            .threads(2)
            .block_size(1 << 20)
            .preset(1)
            .check(liblzma::stream::Check::Crc64);
        let stream = filters.encoder().unwrap();
        let mut enc = liblzma::write::XzEncoder::new_stream(Vec::new(), stream);
        enc.write_all(&data).unwrap();
        let xz = enc.finish().unwrap();
        std::fs::write(&path, &xz).unwrap();
        let mut f = File::open(&path).unwrap();
        let (header, blocks) = xz_blocks(&mut f, 0, xz.len() as u64).unwrap().unwrap();
        assert_eq!(blocks.len(), 4);
        let layout = DebLayout {
            toc: Toc {
                format: stages::deb::TOC_FORMAT,
                tar_size: data.len() as u64,
                entries: Vec::new(),
            },
            data: (0, xz.len() as u64),
            header,
            blocks,
        };
        for (offset, size) in [
            (0u64, 10u64),
            (1 << 20, 5),
            ((1 << 20) - 3, 7),
            (100, 3 << 20),
        ] {
            let mut got = Vec::new();
            layout
                .range(&path, offset, size)
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
            assert_eq!(got, data[offset as usize..(offset + size) as usize]);
        }
        assert!(layout.range(&path, data.len() as u64, 1).is_err());
    }
}
