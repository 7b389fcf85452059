//! `_pipe-toc.gz`: the table of contents of a large `.deb`'s `data.tar`,
//! written by pipe after the three members dpkg reads (deb(5): readers
//! ignore members after `data.tar`; `dpkg-sig` appends its own the same
//! way).
//!
//! For every entry of `data.tar`, in archive order: its path, type, mode,
//! and for a file its size, the offset of its bytes in the *uncompressed*
//! tar stream and its blake3. It is part of the package, so whatever signs
//! the package (pipe's manifest names its digest) signs the table too: a
//! deploy can take a file from the previous release when its content has
//! the blake3 the table gives, and decompress only the xz blocks holding the
//! files that changed (the data member is xz in independent blocks,
//! [`crate::compress`]) instead of the whole payload.
//!
//! Written only when it can pay off: xz compression and a payload larger
//! than one xz block. Smaller packages are byte for byte what they were.
//!
//! `lintian` (2.116) reports the member as an error,
//! `misplaced-extra-member-in-deb _pipe-toc.gz (unexpected _member at
//! position 3)`, wherever it is placed: its Debian profile lists no extra
//! member as allowed (`/usr/share/lintian/data/deb-format/extra-members` is
//! empty), so the only ways to silence it are to drop the member or an
//! override the package ships (`usr/share/lintian/overrides/NAME` with
//! `NAME: misplaced-extra-member-in-deb _pipe-toc.gz *`, which lintian then
//! shows as `O:`). dpkg itself ignores it (deb(5)), and `dpkg -i` installs
//! such a package.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

/// The `ar` member name (15 characters at most).
pub const TOC_MEMBER: &str = "_pipe-toc.gz";

/// Format of [`Toc`].
pub const TOC_FORMAT: u32 = 1;

/// The largest table read back (uncompressed): ~100 bytes an entry.
pub const TOC_MAX: u64 = 256 << 20;

/// The table of contents of `data.tar`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toc {
    /// [`TOC_FORMAT`].
    pub format: u32,
    /// Length of the uncompressed `data.tar`.
    pub tar_size: u64,
    /// Every entry but the top directory `./`, in archive order.
    pub entries: Vec<TocEntry>,
}

/// One entry of `data.tar`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TocEntry {
    /// Relative path, without `./` or a trailing `/`.
    #[serde(rename = "p")]
    pub path: String,
    /// What it is.
    #[serde(rename = "k")]
    pub kind: TocKind,
    /// Permission bits, as archived.
    #[serde(rename = "m")]
    pub mode: u32,
}

/// The type of a [`TocEntry`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TocKind {
    /// A directory.
    Dir,
    /// A symbolic link to `target`.
    Symlink {
        /// The link's target, as archived.
        target: String,
    },
    /// A regular file.
    File {
        /// Size in bytes.
        size: u64,
        /// Offset of its first byte in the uncompressed `data.tar`.
        offset: u64,
        /// blake3 (hex) of its content.
        blake3: String,
    },
}

impl Toc {
    /// The member's bytes: gzip of the JSON (deterministic: no name, no
    /// date in the gzip header).
    pub fn encode(&self) -> std::io::Result<Vec<u8>> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(&serde_json::to_vec(self).map_err(std::io::Error::other)?)?;
        gz.finish()
    }

    /// Reads a table from the member's bytes, refusing one that inflates
    /// beyond `TOC_MAX` or has another format.
    pub fn decode(r: impl Read) -> std::result::Result<Toc, String> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(r)
            .take(TOC_MAX + 1)
            .read_to_end(&mut json)
            .map_err(|e| format!("`{TOC_MEMBER}` cannot be read: {e}"))?;
        if json.len() as u64 > TOC_MAX {
            return Err(format!("`{TOC_MEMBER}` is larger than {TOC_MAX} bytes"));
        }
        let toc: Toc = serde_json::from_slice(&json)
            .map_err(|e| format!("`{TOC_MEMBER}` is not a table of contents: {e}"))?;
        if toc.format != TOC_FORMAT {
            return Err(format!(
                "`{TOC_MEMBER}` has format {}, this pipe reads {TOC_FORMAT}",
                toc.format
            ));
        }
        Ok(toc)
    }
}

/// Counts the bytes written through it: the offset in the uncompressed tar.
pub(crate) struct Counting<W> {
    pub(crate) inner: W,
    pub(crate) written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_round_trips_and_another_format_is_refused() {
        let toc = Toc {
            format: TOC_FORMAT,
            tar_size: 10240,
            entries: vec![
                TocEntry {
                    path: "usr".into(),
                    kind: TocKind::Dir,
                    mode: 0o755,
                },
                TocEntry {
                    path: "usr/x".into(),
                    kind: TocKind::File {
                        size: 3,
                        offset: 1536,
                        blake3: "ab".into(),
                    },
                    mode: 0o644,
                },
            ],
        };
        let bytes = toc.encode().unwrap();
        assert_eq!(toc.encode().unwrap(), bytes, "deterministic");
        assert_eq!(Toc::decode(&bytes[..]).unwrap(), toc);
        let other = Toc {
            format: TOC_FORMAT + 1,
            ..toc
        };
        let err = Toc::decode(&other.encode().unwrap()[..]).unwrap_err();
        assert!(err.contains("has format"), "{err}");
    }
}
