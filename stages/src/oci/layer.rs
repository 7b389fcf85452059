//! One layer: the files of one package as a tar stream, compressed, hashed
//! twice on the way (the uncompressed tar is the layer's `diff_id`, the
//! compressed bytes its digest) and written to a file in one pass.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};

use sha2::{Digest as _, Sha256};

use super::{BlobRef, LayerCompression, MEDIA_LAYER_GZIP, MEDIA_LAYER_ZSTD, sha256_string};
use crate::compress::{Compression, Encoder, default_threads};
use crate::tarball::{TarEntry, TarKind, TarWriter};
use crate::tree::{Entry, EntryKind};
use crate::{Error, Result};

/// A writer that hashes and counts what passes through it.
pub(crate) struct HashingWriter<W> {
    pub(crate) inner: W,
    pub(crate) sha: Sha256,
    pub(crate) len: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            sha: Sha256::new(),
            len: 0,
        }
    }

    /// `sha256:<hex>`, the size, and the inner writer.
    pub(crate) fn finish(self) -> (String, u64, W) {
        (sha256_string(self.sha.finalize()), self.len, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(crate::io::handled(buf, n)?);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A written layer.
pub(crate) struct WrittenLayer {
    pub(crate) blob: BlobRef,
    pub(crate) diff_id: String,
}

/// What failed while writing a layer: reading a source (blamed on the
/// source) or writing the output (blamed on the output).
enum LayerError {
    Source(Error),
    Write(io::Error),
}

impl From<io::Error> for LayerError {
    fn from(e: io::Error) -> Self {
        LayerError::Write(e)
    }
}

/// Writes `entries` (as [`crate::tree::resolve`] returns them) as a layer
/// into `out`. Names are relative (`usr/bin/hello`, directories with a
/// trailing `/`), every parent directory is present, owners are root and
/// every date is `mtime`: the same tree gives the same bytes.
pub(crate) fn write_layer(
    entries: &[Entry],
    mtime: u64,
    compression: LayerCompression,
    out: &mut File,
    out_name: &std::path::Path,
) -> Result<WrittenLayer> {
    let (format, media_type) = match compression {
        LayerCompression::Gzip => (Compression::Gzip, MEDIA_LAYER_GZIP),
        LayerCompression::Zstd => (Compression::Zstd, MEDIA_LAYER_ZSTD),
    };
    // gzip 6 (what docker and skopeo use) rather than dpkg's 9: layers are
    // pulled far more often than built, but 9 costs twice the time for ~1%.
    let level = match compression {
        LayerCompression::Gzip => 6,
        LayerCompression::Zstd => 3,
    };
    let mut run = || -> std::result::Result<WrittenLayer, LayerError> {
        let compressed = HashingWriter::new(BufWriter::with_capacity(1 << 20, &mut *out));
        let enc = Encoder::new(compressed, format, level, default_threads())?;
        let mut tar = TarWriter::new(HashingWriter::new(enc));
        let mut buf = vec![0u8; 256 << 10];
        for e in entries {
            let rel = e.relative_path();
            if rel.is_empty() {
                continue;
            }
            let (name, kind) = match &e.kind {
                EntryKind::Dir => (format!("{rel}/"), TarKind::Dir),
                EntryKind::File { size, .. } => (rel.to_string(), TarKind::File { size: *size }),
                EntryKind::Symlink { target } => (rel.to_string(), TarKind::Symlink { target }),
            };
            tar.header(&TarEntry {
                name: &name,
                kind,
                mode: e.mode,
                mtime,
            })?;
            let EntryKind::File { src, size } = &e.kind else {
                continue;
            };
            let file = File::open(src).map_err(|err| LayerError::Source(Error::read(src, err)))?;
            let mut file = Flagged {
                inner: file,
                failed: false,
            };
            let copied = tar.data(&mut file, *size, &mut buf).map_err(|err| {
                if file.failed {
                    LayerError::Source(Error::read(src, err))
                } else {
                    LayerError::Write(err)
                }
            })?;
            let grew = copied == *size && file.inner.read(&mut [0u8; 1]).is_ok_and(|n| n > 0);
            if copied != *size || grew {
                let found = std::fs::metadata(src).map(|m| m.len()).unwrap_or(copied);
                return Err(LayerError::Source(Error::SourceChanged {
                    path: src.clone(),
                    expected: *size,
                    found,
                }));
            }
            tar.pad(*size)?;
        }
        let (diff_id, _, enc) = tar.finish()?.finish();
        let (digest, size, mut w) = enc.finish()?.finish();
        w.flush()?;
        Ok(WrittenLayer {
            blob: BlobRef {
                media_type: media_type.to_string(),
                digest,
                size,
            },
            diff_id,
        })
    };
    run().map_err(|e| match e {
        LayerError::Source(e) => e,
        LayerError::Write(e) => Error::write(out_name, e),
    })
}

/// Remembers whether reading failed, so the error is blamed on the source
/// rather than on the output.
struct Flagged {
    inner: File,
    failed: bool,
}

impl Read for Flagged {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|_| self.failed = true)
    }
}
