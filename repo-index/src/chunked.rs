//! Compressed indices made of independently compressed chunks, so a new
//! generation recompresses only the chunks whose text changed.
//!
//! - gzip: one member per chunk, concatenated. RFC 1952 allows it; zlib's
//!   readers (apt's `FileFd`, `gunzip`, librepo/libsolv) read every member.
//! - xz: one stream whose blocks are the chunks (each block compressed on its
//!   own, as `xz -T` writes them), with one index. Not concatenated streams:
//!   apt 2.6 stops after the first stream of a `.xz` (it does not ask
//!   liblzma for `LZMA_CONCATENATED`), but reads every block of a stream.
//!
//! A chunk kept from an earlier generation is reused only after its
//! compressed bytes decompress to exactly the new chunk text, unless the
//! caller vouches for the table of chunks ([`Previous::vouched`]: it checked
//! pipe's own signature over it): otherwise the table comes from a view
//! state anyone who can write the store could have written.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::common;
use crate::{Error, Result};

/// Where one chunk is in the plain, gzip and xz files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// SHA-256 of its plain text.
    pub(crate) sha256: String,
    /// Length of its plain text.
    pub(crate) plain: u64,
    /// Length of its gzip member.
    pub(crate) gz: u64,
    /// Length of its xz block, padding included.
    pub(crate) xz: u64,
    /// The block's unpadded size (what the xz index records).
    pub(crate) xz_unpadded: u64,
}

/// A chunk's compressed forms.
#[derive(Clone)]
struct Packed {
    gz: Vec<u8>,
    /// The xz block, padding included.
    block: Vec<u8>,
    unpadded: u64,
}

/// An earlier chunk: its gzip member, its xz block, the block's unpadded
/// size, and whether the caller vouched for it.
type Known<'a> = (&'a [u8], &'a [u8], u64, bool);

/// The xz stream header liblzma writes for a CRC64 check.
const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];

/// What [`compress`] made.
pub(crate) struct Output {
    pub gz: Vec<u8>,
    pub xz: Vec<u8>,
    pub chunks: Vec<Chunk>,
    /// Chunks reused from `previous`.
    pub reused: usize,
}

/// An earlier generation's compressed files and their chunk table.
pub(crate) struct Previous<'a> {
    pub gz: &'a [u8],
    pub xz: &'a [u8],
    pub chunks: &'a [Chunk],
    /// The caller vouches that each chunk's gzip member and xz block are
    /// the compression of a text of its `sha256` (a signature of the key
    /// that signs the repository covers the table and the files' digests):
    /// reused without being decompressed.
    pub vouched: bool,
}

/// Compresses `text`, cut at `cuts` (increasing byte offsets strictly inside
/// it), reusing the chunks of `previous` whose text is the same (checked by
/// decompressing them). `path` names the file in errors. `xz: None`: gzip
/// only (the output's `xz` is empty); else the xz preset.
pub(crate) fn compress(
    path: &str,
    text: &[u8],
    cuts: &[usize],
    xz: Option<u32>,
    previous: &[Previous<'_>],
) -> Result<Output> {
    let mut bounds = Vec::with_capacity(cuts.len() + 2);
    bounds.push(0);
    bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < text.len()));
    bounds.push(text.len());
    bounds.sort_unstable();
    bounds.dedup();
    // Sorted, from 0 to the text's length: every window is a range of it.
    let parts: Vec<&[u8]> = bounds
        .windows(2)
        .filter_map(|w| match *w {
            [start, end] => text.get(start..end),
            _ => None,
        })
        .collect();
    if text.is_empty() {
        return Ok(Output {
            gz: common::gzip(&format!("{path}.gz"), text)?,
            xz: match xz {
                Some(preset) => common::xz(&format!("{path}.xz"), text, preset)?,
                None => Vec::new(),
            },
            chunks: Vec::new(),
            reused: 0,
        });
    }
    // The earlier chunks, by the digest of their text.
    let mut known: std::collections::HashMap<String, Known<'_>> = std::collections::HashMap::new();
    for p in previous {
        let (mut g, mut x) = (0usize, 0usize);
        for c in p.chunks {
            let (gl, xl) = (c.gz as usize, c.xz as usize);
            let Some(gz) = p.gz.get(g..g.saturating_add(gl)) else {
                break;
            };
            let block = if xz.is_some() {
                match p.xz.get(12 + x..(12 + x).saturating_add(xl)) {
                    Some(b) => b,
                    None => break,
                }
            } else {
                &[][..]
            };
            known.insert(c.sha256.clone(), (gz, block, c.xz_unpadded, p.vouched));
            g += gl;
            x += xl;
        }
    }
    let digests: Vec<String> = parts.iter().map(|p| common::sha256_hex(p)).collect();
    let reusable: Vec<Option<Packed>> = parts
        .iter()
        .zip(&digests)
        .map(|(part, d)| {
            let (gz, block, unpadded, vouched) = known.get(d)?;
            let packed = Packed {
                gz: gz.to_vec(),
                block: block.to_vec(),
                unpadded: *unpadded,
            };
            (*vouched || verify(&packed, part, xz.is_some())).then_some(packed)
        })
        .collect();
    let reused = reusable.iter().filter(|r| r.is_some()).count();
    let todo: Vec<(usize, &[u8])> = parts
        .iter()
        .zip(&reusable)
        .enumerate()
        .filter(|(_, (_, r))| r.is_none())
        .map(|(i, (part, _))| (i, *part))
        .collect();
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(todo.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let made: Vec<(usize, Result<Packed>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&(i, part)) = todo.get(n) else { break };
                        out.push((i, pack(path, part, xz)));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let mut packed = reusable;
    for (i, p) in made {
        // `i` is a position in `parts`, which `packed` has one slot for.
        if let Some(slot) = packed.get_mut(i) {
            *slot = Some(p?);
        }
    }
    let packed: Vec<Packed> = packed.into_iter().flatten().collect();
    let mut gz = Vec::new();
    let mut records = Vec::new();
    let mut blocks = Vec::new();
    let mut chunks = Vec::new();
    for ((p, part), d) in packed.iter().zip(&parts).zip(digests) {
        gz.extend_from_slice(&p.gz);
        blocks.extend_from_slice(&p.block);
        records.push((p.unpadded, part.len() as u64));
        chunks.push(Chunk {
            sha256: d,
            plain: part.len() as u64,
            gz: p.gz.len() as u64,
            xz: p.block.len() as u64,
            xz_unpadded: p.unpadded,
        });
    }
    Ok(Output {
        gz,
        xz: if xz.is_some() {
            xz_stream(&blocks, &records)
        } else {
            Vec::new()
        },
        chunks,
        reused,
    })
}

/// Compresses one chunk: a gzip member and (with a preset) an xz block.
fn pack(path: &str, part: &[u8], xz: Option<u32>) -> Result<Packed> {
    let gz = common::gzip(&format!("{path}.gz"), part)?;
    let Some(preset) = xz else {
        return Ok(Packed {
            gz,
            block: Vec::new(),
            unpadded: 0,
        });
    };
    let single = common::xz(&format!("{path}.xz"), part, preset)?;
    let (block, unpadded) = single_block(&single).ok_or_else(|| Error::Compress {
        path: format!("{path}.xz"),
        source: std::io::Error::other("liblzma wrote a stream that is not one block"),
    })?;
    Ok(Packed {
        gz,
        block: block.to_vec(),
        unpadded,
    })
}

/// True when `p` decompresses to exactly `plain` (its xz block too, when
/// `with_xz`).
fn verify(p: &Packed, plain: &[u8], with_xz: bool) -> bool {
    let mut out = Vec::with_capacity(plain.len());
    let gz_ok = flate2::read::GzDecoder::new(&p.gz[..])
        .take(plain.len() as u64 + 1)
        .read_to_end(&mut out)
        .is_ok()
        && out == plain;
    if !gz_ok {
        return false;
    }
    // A gzip member is self-delimiting: nothing may follow it in the slice.
    let mut dec = flate2::bufread::GzDecoder::new(&p.gz[..]);
    let mut sink = Vec::new();
    if dec.read_to_end(&mut sink).is_err() || !dec.into_inner().is_empty() {
        return false;
    }
    if !with_xz {
        return true;
    }
    let stream = xz_stream(&p.block, &[(p.unpadded, plain.len() as u64)]);
    out.clear();
    liblzma::read::XzDecoder::new(&stream[..])
        .take(plain.len() as u64 + 1)
        .read_to_end(&mut out)
        .is_ok()
        && out == plain
}

/// The one block of a single-stream xz file liblzma wrote, with padding,
/// and its unpadded size.
fn single_block(xz: &[u8]) -> Option<(&[u8], u64)> {
    if xz.len() < 24 || xz.get(..6)? != XZ_MAGIC {
        return None;
    }
    let (body, footer) = xz.split_at_checked(xz.len().checked_sub(12)?)?;
    let backward = u32::from_le_bytes(footer.get(4..8)?.try_into().ok()?) as usize;
    let index_size = backward.checked_add(1)?.checked_mul(4)?;
    let index_start = body.len().checked_sub(index_size)?;
    let index = body.get(index_start..)?;
    if index.first() != Some(&0) {
        return None;
    }
    let mut at = 1;
    let count = varint(index, &mut at)?;
    if count != 1 {
        return None;
    }
    let unpadded = varint(index, &mut at)?;
    Some((xz.get(12..index_start)?, unpadded))
}

fn varint(buf: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..63).step_by(7) {
        let b = *buf.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn crc32(bytes: &[u8]) -> [u8; 4] {
    let mut crc = flate2::Crc::new();
    crc.update(bytes);
    crc.sum().to_le_bytes()
}

/// One xz stream (CRC64 checks, as liblzma's default) of `blocks` (each
/// padded to 4 bytes) whose index records are `(unpadded, uncompressed)`.
fn xz_stream(blocks: &[u8], records: &[(u64, u64)]) -> Vec<u8> {
    let flags = [0u8, 0x04];
    let mut out = Vec::with_capacity(blocks.len() + 64 + records.len() * 8);
    out.extend_from_slice(&XZ_MAGIC);
    out.extend_from_slice(&flags);
    out.extend_from_slice(&crc32(&flags));
    out.extend_from_slice(blocks);
    let mut index = vec![0u8];
    put_varint(&mut index, records.len() as u64);
    for &(unpadded, size) in records {
        put_varint(&mut index, unpadded);
        put_varint(&mut index, size);
    }
    while !index.len().is_multiple_of(4) {
        index.push(0);
    }
    let crc = crc32(&index);
    index.extend_from_slice(&crc);
    let backward = (index.len() / 4 - 1) as u32;
    out.extend_from_slice(&index);
    let mut footer_body = Vec::with_capacity(6);
    footer_body.extend_from_slice(&backward.to_le_bytes());
    footer_body.extend_from_slice(&flags);
    out.extend_from_slice(&crc32(&footer_body));
    out.extend_from_slice(&footer_body);
    out.extend_from_slice(b"YZ");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("Package: p{i}\nVersion: 1\nArchitecture: all\n\n"))
            .collect::<String>()
            .into_bytes()
    }

    fn plain_of(gz: &[u8], xz: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut a = Vec::new();
        flate2::read::MultiGzDecoder::new(gz)
            .read_to_end(&mut a)
            .unwrap();
        let mut b = Vec::new();
        liblzma::read::XzDecoder::new(xz)
            .read_to_end(&mut b)
            .unwrap();
        (a, b)
    }

    #[test]
    fn chunks_decompress_to_the_text_and_unchanged_ones_are_reused() {
        let t = text(40);
        let cuts: Vec<usize> = (1..8).map(|i| i * t.len() / 8).collect();
        // Cut at stanza starts.
        let cuts: Vec<usize> = cuts
            .iter()
            .map(|&c| c + t[c..].windows(2).position(|w| w == b"\nP").unwrap() + 1)
            .collect();
        let first = compress("x", &t, &cuts, Some(1), &[]).unwrap();
        assert_eq!(first.reused, 0);
        assert_eq!(first.chunks.len(), 8);
        let (a, b) = plain_of(&first.gz, &first.xz);
        assert_eq!((a.as_slice(), b.as_slice()), (&t[..], &t[..]));
        // The same text again: every chunk reused, the same bytes.
        let prev = [Previous {
            gz: &first.gz,
            xz: &first.xz,
            chunks: &first.chunks,
            vouched: false,
        }];
        let again = compress("x", &t, &cuts, Some(1), &prev).unwrap();
        assert_eq!(again.reused, 8);
        assert_eq!((&again.gz, &again.xz), (&first.gz, &first.xz));
        // One chunk changed: seven reused, and the bytes are what a fresh
        // compression gives.
        let mut t2 = t.clone();
        t2[cuts[3] + 9] = b'Q';
        let next = compress("x", &t2, &cuts, Some(1), &prev).unwrap();
        assert_eq!(next.reused, 7);
        let fresh = compress("x", &t2, &cuts, Some(1), &[]).unwrap();
        assert_eq!((&next.gz, &next.xz), (&fresh.gz, &fresh.xz));
        let (a, b) = plain_of(&next.gz, &next.xz);
        assert_eq!((a.as_slice(), b.as_slice()), (&t2[..], &t2[..]));
    }

    #[test]
    fn a_chunk_table_that_lies_is_not_believed() {
        let t = text(10);
        let cut = t.windows(2).position(|w| w == b"\nP").unwrap() + 1;
        let first = compress("x", &t, &[cut], Some(1), &[]).unwrap();
        // The table swaps the two chunks' digests.
        let mut lying = first.chunks.clone();
        let (d0, d1) = (lying[0].sha256.clone(), lying[1].sha256.clone());
        lying[0].sha256 = d1;
        lying[1].sha256 = d0;
        let prev = [Previous {
            gz: &first.gz,
            xz: &first.xz,
            chunks: &lying,
            vouched: false,
        }];
        let next = compress("x", &t, &[cut], Some(1), &prev).unwrap();
        assert_eq!(
            next.reused, 0,
            "a chunk that is not its text is compressed again"
        );
        assert_eq!((&next.gz, &next.xz), (&first.gz, &first.xz));
    }

    #[test]
    fn a_vouched_table_is_reused_without_decompressing() {
        let t = text(10);
        let cut = t.windows(2).position(|w| w == b"\nP").unwrap() + 1;
        let first = compress("x", &t, &[cut], Some(1), &[]).unwrap();
        let prev = |vouched| {
            [Previous {
                gz: &first.gz,
                xz: &first.xz,
                chunks: &first.chunks,
                vouched,
            }]
        };
        let again = compress("x", &t, &[cut], Some(1), &prev(true)).unwrap();
        assert_eq!(again.reused, 2);
        assert_eq!((&again.gz, &again.xz), (&first.gz, &first.xz));
        // What vouching skips: with compressed bytes that are not the
        // chunk's, only the unvouched table is caught.
        let mut gz = first.gz.clone();
        gz[12] ^= 1;
        let damaged = |vouched| {
            [Previous {
                gz: &gz,
                xz: &first.xz,
                chunks: &first.chunks,
                vouched,
            }]
        };
        assert_eq!(
            compress("x", &t, &[cut], Some(1), &damaged(false))
                .unwrap()
                .reused,
            1
        );
        assert_eq!(
            compress("x", &t, &[cut], Some(1), &damaged(true))
                .unwrap()
                .reused,
            2
        );
    }
}
