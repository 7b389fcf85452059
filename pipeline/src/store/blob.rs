//! Blobs: content-addressed objects ([`BlobRef`]), how [`Store`] writes
//! them, and [`BlobReader`], which verifies them while they are read.

use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use super::backend::Backend;
use super::key::validate_digest;
use super::{Body, BodyInner, Condition, Listed, ObjectBody, Store, digest, layout};
use crate::{Error, Result};

/// The address and digests of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    /// BLAKE3 of the content, 64 lowercase hex digits; the blob's address.
    pub blake3: String,
    /// SHA-256 of the content, 64 lowercase hex digits.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl BlobRef {
    /// The blob's key in the store.
    pub fn key(&self) -> String {
        layout::blob_key(&self.blake3)
    }
}

/// The result of storing a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobPut {
    /// What was stored.
    pub blob: BlobRef,
    /// `false` when the blob was already in the store and nothing was sent.
    pub uploaded: bool,
}

impl Store {
    /// Stores a file as a blob. Nothing is sent when the blob is already there.
    /// The file must not change during the call.
    pub async fn put_blob_file(&self, path: &Path) -> Result<BlobPut> {
        let blob = digest::hash_file(path).await?;
        self.put_blob_body(blob, Body::from_file(path)).await
    }

    /// [`Store::put_blob_file`] of a file pipe hashed itself as it wrote
    /// it, `blob` its digests (the caller checked that the file is as it
    /// was when hashed): not read again to hash it.
    pub(crate) async fn put_blob_file_hashed(&self, path: &Path, blob: BlobRef) -> Result<BlobPut> {
        self.put_blob_body(blob, Body::from_file(path)).await
    }

    /// Stores a stream as a blob: spooled to a temporary file while it is
    /// hashed (bounded memory), then stored as by [`Store::put_blob_file`].
    pub async fn put_blob(&self, body: impl AsyncRead + Send + Unpin) -> Result<BlobPut> {
        let (tmp, blob) = digest::spool_hashed(body, &self.backend().spool_dir()).await?;
        let b3 = blob.blake3.clone();
        self.put_blob_body(blob, Body(BodyInner::Temp(tmp, Some(b3))))
            .await
    }

    /// Hashes the file at `path` and, when it is `expected`, writes it as
    /// that blob under `cond`; otherwise stores nothing and says what the
    /// file holds.
    async fn write_file_as(
        &self,
        path: &Path,
        expected: &BlobRef,
        cond: Condition,
    ) -> Result<BlobPut> {
        let blob = digest::hash_file(path).await?;
        if blob != *expected {
            return Ok(BlobPut {
                blob,
                uploaded: false,
            });
        }
        self.write_blob(blob, Body::from_file(path), cond).await
    }

    /// Stores the file at `path` as the blob `expected` names (digests
    /// known beforehand, as a build manifest lists them) for a caller that
    /// listed the blobs already: `stored` is what the listing showed of the
    /// blob (`None`: not listed), so nothing is asked before the write. A
    /// blob listed at its size costs no request (but one copy onto itself
    /// when it is older than a quarter of gc's grace, so `pipe gc` keeps
    /// it); one not listed, a create-only write (a blob that appeared
    /// since is left alone).
    pub(crate) async fn put_blob_file_listed(
        &self,
        path: &Path,
        expected: &BlobRef,
        stored: Option<&Listed>,
    ) -> Result<BlobPut> {
        let cond = match stored {
            Some(listed) if listed.meta.size == expected.size => {
                // Reused, not written: freshened when old, so `pipe gc`
                // keeps it until the manifest that names it is stored.
                self.freshen_if_older(listed, self.freshen_after).await?;
                return Ok(BlobPut {
                    blob: expected.clone(),
                    uploaded: false,
                });
            }
            Some(_) => Condition::Overwrite,
            None => Condition::IfAbsent,
        };
        self.before_write().await?;
        self.write_file_as(path, expected, cond).await
    }

    async fn put_blob_body(&self, blob: BlobRef, body: Body) -> Result<BlobPut> {
        match self.blob_write_condition(&blob).await? {
            Some(cond) => self.write_blob(blob, body, cond).await,
            None => Ok(BlobPut {
                blob,
                uploaded: false,
            }),
        }
    }

    /// How to write `blob`: `None` when the store already has it.
    async fn blob_write_condition(&self, blob: &BlobRef) -> Result<Option<Condition>> {
        let key = blob.key();
        self.before_write().await?;
        let found = self.backend().stat(&key).await?;
        Ok(match found.as_ref().map(|l| l.meta.size) {
            Some(size) if size == blob.size => {
                tracing::debug!(%key, "blob already stored");
                if let Some(listed) = &found {
                    self.freshen_if_older(listed, self.freshen_after).await?;
                }
                None
            }
            Some(size) => {
                // Content addressing makes the right bytes known: repair.
                tracing::warn!(%key, size, expected = blob.size, "replacing a damaged blob");
                Some(Condition::Overwrite)
            }
            None => Some(Condition::IfAbsent),
        })
    }

    async fn write_blob(&self, blob: BlobRef, body: Body, cond: Condition) -> Result<BlobPut> {
        let key = blob.key();
        match self.backend().put(&key, body, cond, self.durable).await {
            Ok(_) => {
                tracing::debug!(%key, size = blob.size, "blob stored");
                Ok(BlobPut {
                    blob,
                    uploaded: true,
                })
            }
            // A concurrent writer stored the same bytes first.
            Err(Error::AlreadyExists { .. }) => Ok(BlobPut {
                blob,
                uploaded: false,
            }),
            Err(e) => Err(e),
        }
    }

    /// Reads a blob. The reader fails at the end with an `io::Error` wrapping
    /// [`Error::DigestMismatch`] if the bytes are not the ones `blob` names;
    /// [`Error::NotFound`] if the blob is not in the store.
    pub async fn get_blob(&self, blob: &BlobRef) -> Result<BlobReader> {
        validate_digest(&blob.blake3)?;
        let key = blob.key();
        let Some((size, body)) = self.backend().open(&key).await? else {
            return Err(Error::NotFound { key });
        };
        if size != blob.size {
            return Err(Error::DigestMismatch {
                key,
                expected: format!("{} bytes", blob.size),
                actual: format!("{size} bytes"),
            });
        }
        Ok(BlobReader {
            key,
            expected: blob.clone(),
            inner: body,
            hasher: blake3::Hasher::new(),
            seen: 0,
            done: false,
        })
    }

    /// Reads a blob back whole, hashing it (streaming): `true` when the
    /// store holds exactly the bytes `blob` names, `false` when it is
    /// missing or holds others.
    pub(crate) async fn blob_intact(&self, blob: &BlobRef) -> Result<bool> {
        let mut reader = match self.get_blob(blob).await {
            Ok(r) => r,
            Err(Error::NotFound { .. } | Error::DigestMismatch { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        match tokio::io::copy(&mut reader, &mut tokio::io::sink()).await {
            Ok(_) => Ok(true),
            Err(e) => match blob_read_error(&reader.key, self.backend(), e) {
                Error::DigestMismatch { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    /// Stores the file at `path` as the blob `expected` names over whatever
    /// the store holds under its key (a damaged copy: content addressing
    /// says what the right bytes are). The file is hashed first; if it is
    /// not `expected`, nothing is written and the returned `blob` says what
    /// it holds.
    pub(crate) async fn replace_blob_file(
        &self,
        path: &Path,
        expected: &BlobRef,
    ) -> Result<BlobPut> {
        self.before_write().await?;
        let blob = digest::hash_file(path).await?;
        if blob != *expected {
            return Ok(BlobPut {
                blob,
                uploaded: false,
            });
        }
        tracing::warn!(key = %blob.key(), "replacing a damaged or missing blob");
        self.write_blob(blob, Body::from_file(path), Condition::Overwrite)
            .await
    }

    /// Copies a blob into the file `dest`, which appears only once the bytes
    /// are verified; on [`Error::DigestMismatch`] nothing is left at `dest`.
    pub async fn get_blob_to_file(&self, blob: &BlobRef, dest: &Path) -> Result<()> {
        let mut reader = self.get_blob(blob).await?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let d = dir.clone();
        let (file, tmp) = digest::spawn_blocking(move || {
            tempfile::NamedTempFile::new_in(&d).map_err(|e| Error::io(&d, e))
        })
        .await?
        .into_parts();
        let mut file = tokio::fs::File::from_std(file);
        let mut buf = vec![0u8; digest::CHUNK];
        loop {
            let n = digest::fill(&mut reader, &mut buf)
                .await
                .map_err(|e| blob_read_error(&reader.key, self.backend(), e))?;
            if n == 0 {
                break;
            }
            let chunk = digest::filled(&buf, n).map_err(|e| Error::io(dest, e))?;
            file.write_all(chunk)
                .await
                .map_err(|e| Error::io(dest, e))?;
        }
        file.sync_all().await.map_err(|e| Error::io(dest, e))?;
        drop(file);
        let dest = dest.to_path_buf();
        digest::spawn_blocking(move || tmp.persist(&dest).map_err(|e| Error::io(&dest, e.error)))
            .await
    }
}

/// Recovers the store error a [`BlobReader`] wrapped into an `io::Error`.
fn blob_read_error(key: &str, backend: &dyn Backend, e: std::io::Error) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        #[allow(clippy::expect_used, reason = "the condition checked both")]
        let inner = e.into_inner().expect("checked above");
        #[allow(clippy::expect_used, reason = "the condition checked both")]
        let e = inner.downcast::<Error>().expect("checked above");
        return *e;
    }
    backend.read_error(key, e)
}

/// Streams a blob's bytes and verifies them: at the end of the stream, a
/// BLAKE3 digest or size that differs from the [`BlobRef`] is an
/// `io::Error` of kind `InvalidData` wrapping [`Error::DigestMismatch`]
/// (recover it with `io::Error::into_inner` and `downcast`).
pub struct BlobReader {
    key: String,
    expected: BlobRef,
    inner: ObjectBody,
    hasher: blake3::Hasher,
    seen: u64,
    done: bool,
}

impl BlobReader {
    fn mismatch(&self, expected: String, actual: String) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Error::DigestMismatch {
                key: self.key.clone(),
                expected,
                actual,
            },
        )
    }
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader")
            .field("key", &self.key)
            .field("seen", &self.seen)
            .finish()
    }
}

impl AsyncRead for BlobReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let Some(new) = buf.filled().get(before..) else {
            this.done = true;
            return Poll::Ready(Err(std::io::Error::other(
                "a read shrank the bytes it had already returned",
            )));
        };
        this.seen += new.len() as u64;
        if this.seen > this.expected.size {
            this.done = true;
            let (e, s) = (this.expected.size, this.seen);
            return Poll::Ready(Err(
                this.mismatch(format!("{e} bytes"), format!("at least {s} bytes"))
            ));
        }
        if new.is_empty() {
            this.done = true;
            if this.seen != this.expected.size {
                let (e, s) = (this.expected.size, this.seen);
                return Poll::Ready(Err(
                    this.mismatch(format!("{e} bytes"), format!("{s} bytes"))
                ));
            }
            let actual = this.hasher.finalize().to_hex().to_string();
            if actual != this.expected.blake3 {
                let expected = format!("blake3 {}", this.expected.blake3);
                return Poll::Ready(Err(this.mismatch(expected, format!("blake3 {actual}"))));
            }
            return Poll::Ready(Ok(()));
        }
        this.hasher.update(new);
        Poll::Ready(Ok(()))
    }
}
