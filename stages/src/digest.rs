//! BLAKE3 and SHA-256 of a large file, the two on separate threads, holes
//! not read: what a store names a blob by and what apt, yum and OCI clients
//! check, computed for a machine image while `qemu-img` reads the same file.
//!
//! The file is read extent by extent (`SEEK_DATA`/`SEEK_HOLE`): a hole reads
//! as zeros, so it is fed to both hashers from a static buffer of zeros
//! instead of being read (a 640 MiB raw image is about half holes). The
//! reading thread feeds BLAKE3 and hands each chunk to a second thread for
//! SHA-256, the slower of the two: the digests take about as long as
//! SHA-256 alone.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::sync_channel;

use sha2::{Digest as _, Sha256};

/// Bytes read at a time.
const CHUNK: usize = 1 << 20;
/// Zeros fed for holes.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The digests of a file's bytes, and the file as it was when hashed.
#[derive(Clone, Debug)]
pub struct FileDigest {
    /// BLAKE3, lowercase hex.
    pub blake3: String,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// The number of bytes hashed.
    pub size: u64,
    /// The file's metadata before it was read; the digests are returned
    /// only if it was the same afterwards (device, inode, size,
    /// modification time).
    pub metadata: std::fs::Metadata,
}

/// What the SHA-256 thread is given: the first `.1` bytes of a buffer, or
/// a run of zeros.
enum Piece {
    Data(Arc<Vec<u8>>, usize),
    Zeros(u64),
}

impl Piece {
    fn bytes(buf: &Arc<Vec<u8>>, n: usize) -> &[u8] {
        buf.get(..n).unwrap_or_default()
    }
}

/// Hashes the file at `path`: both digests, the file read once, holes not
/// read. An error if the file changed while it was read (its size or
/// modification time moved, or it got shorter).
pub fn hash_file(path: &Path) -> io::Result<FileDigest> {
    hash_open(&File::open(path)?)
}

/// [`hash_file`] of a file already open (its name may change meanwhile).
pub fn hash_open(file: &File) -> io::Result<FileDigest> {
    let before = file.metadata()?;
    let len = before.len();
    let (tx, rx) = sync_channel::<Piece>(4);
    let (b3, sha) = std::thread::scope(|scope| {
        let sha = scope.spawn(move || {
            let mut h = Sha256::new();
            for piece in rx {
                match piece {
                    Piece::Data(d, n) => h.update(Piece::bytes(&d, n)),
                    Piece::Zeros(n) => feed_zeros(n, |z| h.update(z)),
                }
            }
            h.finalize()
        });
        let b3 = read_extents(file, len, |piece| {
            let sent = match &piece {
                Piece::Data(d, n) => tx.send(Piece::Data(Arc::clone(d), *n)),
                Piece::Zeros(n) => tx.send(Piece::Zeros(*n)),
            };
            sent.map_err(|_| io::Error::other("the SHA-256 thread stopped"))?;
            Ok(piece)
        });
        drop(tx);
        let sha = sha
            .join()
            .map_err(|_| io::Error::other("the SHA-256 thread panicked"));
        (b3, sha)
    });
    let (b3, sha) = (b3?, sha?);
    // The open file's own metadata: the name may have been renamed meanwhile
    // (the raw image is, into place, while it is hashed).
    let after = file.metadata()?;
    if !same_file(&before, &after) {
        return Err(io::Error::other(
            "the file changed while it was being hashed",
        ));
    }
    Ok(FileDigest {
        blake3: b3.to_hex().to_string(),
        sha256: hex(&sha),
        size: len,
        metadata: before,
    })
}

/// True when `a` and `b` are the same file with the same bytes as far as
/// its metadata tells: device, inode, size and modification time (to the
/// nanosecond).
pub fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino(), a.len(), a.mtime(), a.mtime_nsec())
        == (b.dev(), b.ino(), b.len(), b.mtime(), b.mtime_nsec())
}

/// Reads `file` (of `len` bytes) in order, data as chunks and holes as
/// zero counts, each fed to BLAKE3 and passed to `each`; returns the BLAKE3
/// hash.
fn read_extents(
    file: &File,
    len: u64,
    mut each: impl FnMut(Piece) -> io::Result<Piece>,
) -> io::Result<blake3::Hash> {
    let mut b3 = blake3::Hasher::new();
    let mut feed = |piece: Piece, b3: &mut blake3::Hasher| -> io::Result<()> {
        match each(piece)? {
            Piece::Data(d, n) => {
                b3.update(Piece::bytes(&d, n));
            }
            Piece::Zeros(n) => feed_zeros(n, |z| {
                b3.update(z);
            }),
        }
        Ok(())
    };
    // Buffers are reused once the SHA-256 thread is done with them (it
    // holds at most the channel's few).
    let mut pool: Vec<Arc<Vec<u8>>> = Vec::new();
    let mut pos = 0;
    while pos < len {
        let (start, end) = next_extent(file, pos, len)?;
        if start > pos {
            feed(Piece::Zeros(start - pos), &mut b3)?;
        }
        let mut at = start;
        while at < end {
            let want = usize::try_from(end - at).unwrap_or(CHUNK).min(CHUNK);
            let mut shared = match pool.iter().position(|b| Arc::strong_count(b) == 1) {
                Some(i) => pool.swap_remove(i),
                None => Arc::new(vec![0u8; CHUNK]),
            };
            let Some(buf) = Arc::get_mut(&mut shared) else {
                return Err(io::Error::other("a hashing buffer is still in use"));
            };
            let mut filled = 0;
            while filled < want {
                let rest = buf.get_mut(filled..want).unwrap_or_default();
                match file.read_at(rest, at + filled as u64) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file got shorter while it was being hashed",
                        ));
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            feed(Piece::Data(Arc::clone(&shared), want), &mut b3)?;
            pool.push(shared);
            at += want as u64;
        }
        pos = end;
    }
    Ok(b3.finalize())
}

/// The next data extent at or after `pos` as `(start, end)`, `end` at most
/// `len`; `(len, len)` when only a hole is left. A filesystem that cannot
/// tell holes: all of it is data.
fn next_extent(file: &File, pos: u64, len: u64) -> io::Result<(u64, u64)> {
    use rustix::fs::SeekFrom;
    use rustix::io::Errno;
    let start = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
        Ok(start) => start.min(len),
        Err(Errno::NXIO) => return Ok((len, len)),
        Err(Errno::INVAL | Errno::NOTSUP) => return Ok((pos, len)),
        Err(e) => return Err(e.into()),
    };
    let end = match rustix::fs::seek(file, SeekFrom::Hole(start)) {
        Ok(end) => end.min(len),
        Err(Errno::INVAL | Errno::NOTSUP) => len,
        Err(e) => return Err(e.into()),
    };
    Ok((start, end))
}

fn feed_zeros(mut n: u64, mut f: impl FnMut(&[u8])) {
    while n > 0 {
        let k = usize::try_from(n).unwrap_or(ZEROS.len()).min(ZEROS.len());
        f(ZEROS.get(..k).unwrap_or_default());
        n -= k as u64;
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn reference(bytes: &[u8]) -> (String, String) {
        (
            blake3::hash(bytes).to_hex().to_string(),
            hex(&Sha256::digest(bytes)),
        )
    }

    #[test]
    fn a_sparse_file_hashes_as_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let len: u64 = 5 * CHUNK as u64 + 12345;
        let f = File::create(&path).unwrap();
        f.set_len(len).unwrap();
        // Data at the start, in the middle across a chunk boundary, and
        // just before the end (a hole after it).
        let extents: [(u64, Vec<u8>); 3] = [
            (0, vec![1; 5000]),
            (
                CHUNK as u64 * 2 - 100,
                (0..300_000u32).map(|i| i as u8).collect(),
            ),
            (len - 20_000, vec![9; 10_000]),
        ];
        for (at, bytes) in &extents {
            f.write_all_at(bytes, *at).unwrap();
        }
        drop(f);
        let bytes = std::fs::read(&path).unwrap();
        let d = hash_file(&path).unwrap();
        assert_eq!((d.blake3, d.sha256), reference(&bytes));
        assert_eq!(d.size, len);
    }

    #[test]
    fn small_empty_and_dense_files_hash_as_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 63, 64 << 10, CHUNK + 1, 3 * CHUNK] {
            let path = dir.path().join(format!("f{len}"));
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            File::create(&path).unwrap().write_all(&bytes).unwrap();
            let d = hash_file(&path).unwrap();
            assert_eq!((d.blake3, d.sha256), reference(&bytes), "{len} bytes");
        }
        // All hole.
        let path = dir.path().join("holes");
        File::create(&path)
            .unwrap()
            .set_len(2 * CHUNK as u64 + 5)
            .unwrap();
        let d = hash_file(&path).unwrap();
        assert_eq!(
            (d.blake3, d.sha256),
            reference(&vec![0; 2 * CHUNK + 5]),
            "a file that is all hole"
        );
    }
}
