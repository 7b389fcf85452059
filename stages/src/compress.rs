//! Deterministic streaming compressors.
//!
//! The same input gives the same bytes whatever the machine: gzip headers
//! carry no name and mtime 0; xz and zstd run their multithreaded encoders,
//! whose output depends on the block (job) layout but not on the number of
//! workers, and the layout is fixed here.

use std::io::{self, Write};
use std::num::NonZeroU32;

use flate2::write::GzEncoder;
use liblzma::stream::{Check, Filters, LzmaOptions, MtStreamBuilder};
use liblzma::write::XzEncoder;

/// A compression format for the members of a package.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Compression {
    /// No compression.
    None,
    /// gzip (single-threaded: parallel gzip output depends on the split).
    Gzip,
    /// xz, multithreaded with a fixed block size.
    #[default]
    Xz,
    /// zstd, multithreaded.
    Zstd,
}

impl Compression {
    /// Every format, for tests and option parsing.
    pub const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Gzip,
        Compression::Xz,
        Compression::Zstd,
    ];

    /// File name suffix, with its dot (`""` for none).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Xz => ".xz",
            Compression::Zstd => ".zst",
        }
    }

    /// Default level: what dpkg-deb uses (gzip 9, xz 6, zstd 3).
    pub fn default_level(self) -> u32 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 9,
            Compression::Xz => 6,
            Compression::Zstd => 3,
        }
    }

    /// The name dpkg-deb's `-Z` uses.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

/// xz block size. Fixed, because the multithreaded encoder splits the input
/// into blocks of this size whatever the thread count, so fixing it makes
/// the output independent of the machine.
pub(crate) const XZ_BLOCK_SIZE: u64 = 8 << 20;

/// xz dictionary cap. Each xz worker holds its block, a dictionary and a
/// binary-tree match finder of 8 bytes per dictionary byte; with preset 6's
/// 8 MiB dictionary that is ~95 MiB resident per worker, ~55 MiB with
/// 4 MiB. A block of 2x the dictionary is within liblzma's advice (2-4x),
/// and the ratio loss against 8 MiB is small for package payloads.
pub(crate) const XZ_DICT_CAP: u32 = 4 << 20;

/// Threads to use when the caller does not say: every core.
pub(crate) fn default_threads() -> NonZeroU32 {
    std::thread::available_parallelism()
        .ok()
        .and_then(|n| NonZeroU32::new(u32::try_from(n.get()).unwrap_or(u32::MAX)))
        .unwrap_or(NonZeroU32::MIN)
}

/// A compressing writer.
pub(crate) enum Encoder<W: Write> {
    None(W),
    Gzip(GzEncoder<W>),
    Xz(XzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    pub(crate) fn new(
        inner: W,
        compression: Compression,
        level: u32,
        threads: NonZeroU32,
    ) -> io::Result<Self> {
        Self::with_xz_block(inner, compression, level, threads, XZ_BLOCK_SIZE)
    }

    fn with_xz_block(
        inner: W,
        compression: Compression,
        level: u32,
        threads: NonZeroU32,
        xz_block_size: u64,
    ) -> io::Result<Self> {
        Ok(match compression {
            Compression::None => Encoder::None(inner),
            Compression::Gzip => Encoder::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .write(inner, flate2::Compression::new(level.min(9))),
            ),
            Compression::Xz => {
                let mut opts = LzmaOptions::new_preset(level).map_err(io::Error::other)?;
                // The cap lowers presets 6-9; lower presets have smaller
                // dictionaries already.
                let dict = opts_dict_size(level).min(XZ_DICT_CAP);
                opts.dict_size(dict);
                let mut filters = Filters::new();
                filters.lzma2(&opts);
                let stream = MtStreamBuilder::new()
                    .threads(threads.get())
                    .block_size(xz_block_size)
                    .filters(filters)
                    .check(Check::Crc64)
                    .encoder()
                    .map_err(io::Error::other)?;
                Encoder::Xz(XzEncoder::new_stream(inner, stream))
            }
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(inner, level as i32)?;
                // Always at least one worker: zstd's single-threaded mode (0
                // workers) writes different bytes from its multithreaded mode,
                // which is itself independent of the worker count.
                enc.multithread(threads.get())?;
                enc.include_checksum(true)?;
                Encoder::Zstd(enc)
            }
        })
    }

    /// Ends the stream and returns the inner writer.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Xz(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

/// The dictionary size of an xz preset (xz(1), "--list-presets").
fn opts_dict_size(level: u32) -> u32 {
    const MIB: u32 = 1 << 20;
    match level {
        0 => MIB / 4,
        1 => MIB,
        2 => 2 * MIB,
        3..=5 => 4 * MIB,
        6 => 8 * MIB,
        7 => 16 * MIB,
        8 => 32 * MIB,
        _ => 64 * MIB,
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Xz(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Xz(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small xz blocks, so a few MiB make several blocks: the property under
    /// test is the block layout, whatever its size.
    fn compress(c: Compression, threads: u32, data: &[u8]) -> Vec<u8> {
        let mut e = Encoder::with_xz_block(
            Vec::new(),
            c,
            c.default_level(),
            NonZeroU32::new(threads).unwrap(),
            1 << 20,
        )
        .unwrap();
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Several blocks/jobs of text that compresses, but not to nothing.
    fn sample(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut x: u64 = 7;
        while out.len() < len {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            out.extend_from_slice(format!("line {} value {:x}\n", out.len(), x >> 40).as_bytes());
        }
        out
    }

    #[test]
    fn output_does_not_depend_on_thread_count() {
        // zstd's jobs at level 3 are 8 MiB: 20 MiB make three.
        for (c, data) in [
            (Compression::Xz, sample(6 << 20)),
            (Compression::Zstd, sample(20 << 20)),
        ] {
            let one = compress(c, 1, &data);
            assert!(one != compress(c, 1, &data[1..]), "{c:?}: sanity");
            for n in [2, 3, 8] {
                assert!(
                    one == compress(c, n, &data),
                    "{c:?}: 1 vs {n} threads differ"
                );
            }
        }
    }

    #[test]
    fn gzip_header_has_no_name_or_time() {
        let out = compress(Compression::Gzip, 1, b"x");
        assert_eq!(&out[..4], &[0x1f, 0x8b, 8, 0], "no FNAME flag");
        assert_eq!(&out[4..8], &[0, 0, 0, 0], "mtime 0");
    }
}
