//! Digests of blobs: BLAKE3 (the address), SHA-256 (what apt, yum and OCI
//! clients check) and the size, all computed in one pass over the bytes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::Digest as _;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::BlobRef;
use crate::{Error, Result};

/// Chunk size for hashing and copying large inputs: big enough that the
/// per-chunk hop to the blocking pool is noise, small enough to bound memory.
pub(crate) const CHUNK: usize = 1 << 20;

/// From this size on, a file's two digests are computed on two threads
/// ([`stages::digest::hash_file`]).
const LARGE: u64 = 8 << 20;

/// BLAKE3 + SHA-256 + size over a stream of bytes.
#[derive(Clone, Default)]
pub(crate) struct Hasher {
    blake3: blake3::Hasher,
    sha256: sha2::Sha256,
    size: u64,
}

impl Hasher {
    /// A hasher that has seen no bytes.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes.
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.blake3.update(bytes);
        self.sha256.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// The digests of everything fed so far.
    pub(crate) fn finalize(self) -> BlobRef {
        BlobRef {
            blake3: self.blake3.finalize().to_hex().to_string(),
            sha256: hex::encode(self.sha256.finalize()),
            size: self.size,
        }
    }
}

/// Digests of an in-memory buffer.
pub fn hash_bytes(bytes: &[u8]) -> BlobRef {
    let mut h = Hasher::new();
    h.update(bytes);
    h.finalize()
}

/// Digests of a file, computed on the blocking pool so a large file does not
/// stall the async runtime.
pub(crate) async fn hash_file(path: &Path) -> Result<BlobRef> {
    let path = path.to_path_buf();
    spawn_blocking(move || hash_file_blocking(&path)).await
}

/// Digests of a file, on the calling thread (for code already on a blocking
/// thread).
pub(crate) fn hash_file_blocking(path: &Path) -> Result<BlobRef> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // A large file (a machine's base tarball, an image): BLAKE3 and SHA-256
    // on two threads, holes not read.
    if file.metadata().map_err(|e| Error::io(path, e))?.len() >= LARGE {
        drop(file);
        let d = stages::digest::hash_file(path).map_err(|e| Error::io(path, e))?;
        return Ok(BlobRef {
            blake3: d.blake3,
            sha256: d.sha256,
            size: d.size,
        });
    }
    let mut h = Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read_retrying(&mut file, &mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(filled(&buf, n).map_err(|e| Error::io(path, e))?);
    }
    Ok(h.finalize())
}

/// Copies `reader` into a new temporary file in `dir` while hashing it, with
/// one chunk in memory at a time. The file is synced before it is returned;
/// it is deleted when the returned path is dropped.
pub(crate) async fn spool_hashed(
    mut reader: impl AsyncRead + Send + Unpin,
    dir: &Path,
) -> Result<(tempfile::TempPath, BlobRef)> {
    let dir_owned = dir.to_path_buf();
    let (file, path) = spawn_blocking(move || {
        std::fs::create_dir_all(&dir_owned).map_err(|e| Error::io(&dir_owned, e))?;
        tempfile::NamedTempFile::new_in(&dir_owned).map_err(|e| Error::io(&dir_owned, e))
    })
    .await?
    .into_parts();
    let mut state = Some((file, Hasher::new(), vec![0u8; CHUNK]));
    loop {
        #[allow(
            clippy::expect_used,
            reason = "the state is put back at the end of every round"
        )]
        let (file, hasher, mut buf) = state.take().expect("state is put back every round");
        let n = fill(&mut reader, &mut buf)
            .await
            .map_err(|e| Error::io(path_of(&path), e))?;
        if n == 0 {
            let p = path_of(&path);
            spawn_blocking(move || file.sync_all().map_err(|e| Error::io(p, e))).await?;
            return Ok((path, hasher.finalize()));
        }
        let p = path_of(&path);
        state = Some(
            spawn_blocking(move || {
                let (mut file, mut hasher) = (file, hasher);
                let chunk = filled(&buf, n).map_err(|e| Error::io(&p, e))?;
                hasher.update(chunk);
                file.write_all(chunk).map_err(|e| Error::io(&p, e))?;
                Ok((file, hasher, buf))
            })
            .await?,
        );
    }
}

/// The first `n` bytes of `buf`, which a read into `buf` reported: a
/// reader that claims more bytes than `buf` holds is an error, not a panic.
pub(crate) fn filled(buf: &[u8], n: usize) -> std::io::Result<&[u8]> {
    buf.get(..n).ok_or_else(|| {
        std::io::Error::other(format!(
            "a read reported {n} bytes into a buffer of {} bytes",
            buf.len()
        ))
    })
}

/// Reads until `buf` is full or the reader is exhausted; returns the count.
pub(crate) async fn fill(
    reader: &mut (impl AsyncRead + Unpin),
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..).filter(|r| !r.is_empty()) {
        match reader.read(rest).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn read_retrying(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn path_of(p: &tempfile::TempPath) -> PathBuf {
    p.to_path_buf()
}

/// Runs blocking work on the blocking pool; a panic there is re-raised here.
pub(crate) async fn spawn_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_of_empty_input() {
        let d = hash_bytes(b"");
        assert_eq!(
            d.blake3,
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(
            d.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.size, 0);
    }

    #[tokio::test]
    async fn file_and_spool_agree_with_bytes() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i * 31 % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, &data).unwrap();
        assert_eq!(hash_file(&f).await.unwrap(), hash_bytes(&data));
        let (tmp, d) = spool_hashed(&data[..], dir.path()).await.unwrap();
        assert_eq!(d, hash_bytes(&data));
        assert_eq!(std::fs::read(&tmp).unwrap(), data);
    }

    #[test]
    fn a_read_claiming_more_than_its_buffer_is_an_error() {
        let buf = [7u8; 4];
        assert_eq!(filled(&buf, 3).unwrap(), &[7, 7, 7]);
        assert_eq!(filled(&buf, 4).unwrap(), &buf);
        let e = filled(&buf, 5).unwrap_err();
        assert!(e.to_string().contains("5 bytes into a buffer of 4"), "{e}");
    }

    #[tokio::test]
    async fn fill_stops_at_the_end_of_the_buffer_or_the_input() {
        let mut buf = [0u8; 8];
        assert_eq!(fill(&mut &b"abc"[..], &mut buf).await.unwrap(), 3);
        assert_eq!(fill(&mut &b"0123456789"[..], &mut buf).await.unwrap(), 8);
        assert_eq!(&buf, b"01234567");
        assert_eq!(fill(&mut &b"x"[..], &mut []).await.unwrap(), 0);
    }
}
