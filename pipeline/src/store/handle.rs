//! [`Store`]: opening a store, its root object, and the operations on
//! objects by key (blobs are in `blob.rs`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::backend::Backend;
use super::key::validate_key;
use super::{
    Body, Condition, Listed, MAX_READ, Object, ObjectMeta, OpenOptions, S3Overrides, StoreUrl,
    Upload, Version, layout, local, s3,
};
use crate::{Error, Result};

/// The newest store format this pipe reads and writes.
pub const STORE_FORMAT: u64 = 1;

/// The root object of a store, [`layout::ROOT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreRoot {
    /// The store format; pipe refuses to read a format newer than
    /// [`STORE_FORMAT`].
    pub format: u64,
    /// The pipe that created the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Fields written by other versions of pipe, kept as they are.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// A store: cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// Writes through this handle are durable when they return; see
    /// [`Store::batch`].
    pub(super) durable: bool,
    /// A blob found in the store instead of written is freshened when it
    /// was last written longer ago than this ([`Store::freshening`]).
    pub(super) freshen_after: Duration,
}

/// How old a reused blob may be before a write of it freshens it, unless
/// [`Store::freshening`] says otherwise: a quarter of `pipe gc`'s default
/// grace period of 2 days.
pub(crate) const DEFAULT_FRESHEN_AFTER: Duration = Duration::from_secs(12 * 3600);

struct Inner {
    url: StoreUrl,
    opts: OpenOptions,
    backend: Box<dyn Backend>,
    /// Set once the CAS probe passed and the root object is known good.
    writable: tokio::sync::OnceCell<()>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.inner.url)
            .finish()
    }
}

impl Store {
    /// Opens a store. Performs no write; reads the root object if there is one
    /// and refuses a store of a newer format ([`Error::StoreFormat`]).
    pub async fn open(url: &StoreUrl, opts: &OpenOptions) -> Result<Store> {
        Self::open_with(url, opts, &S3Overrides::default()).await
    }

    /// Like [`Store::open`], with S3 settings that take precedence over the
    /// AWS environment (ignored for a local store).
    pub async fn open_with(url: &StoreUrl, opts: &OpenOptions, s3: &S3Overrides) -> Result<Store> {
        let backend: Box<dyn Backend> = match url {
            StoreUrl::Local(dir) => Box::new(local::LocalBackend::new(dir.clone())),
            StoreUrl::S3 { bucket, prefix } => {
                Box::new(s3::S3Backend::new(bucket.clone(), prefix.clone(), opts, s3).await?)
            }
        };
        let store = Store {
            durable: true,
            freshen_after: DEFAULT_FRESHEN_AFTER,
            inner: Arc::new(Inner {
                url: url.clone(),
                opts: opts.clone(),
                backend,
                writable: tokio::sync::OnceCell::new(),
            }),
        };
        store.root().await?;
        Ok(store)
    }

    /// Where the store lives.
    pub(crate) fn url(&self) -> &StoreUrl {
        &self.inner.url
    }

    pub(super) fn backend(&self) -> &dyn Backend {
        &*self.inner.backend
    }

    /// The root object; `None` when nothing was ever written to the store.
    /// [`Error::StoreFormat`] when its format is newer than [`STORE_FORMAT`].
    pub async fn root(&self) -> Result<Option<StoreRoot>> {
        let Some((root, _)) = self
            .get_json::<StoreRoot>(layout::ROOT, "a pipe store root object")
            .await?
        else {
            return Ok(None);
        };
        if root.format > STORE_FORMAT {
            return Err(Error::StoreFormat {
                url: self.inner.url.to_string(),
                found: root.format,
                supported: STORE_FORMAT,
            });
        }
        Ok(Some(root))
    }

    /// Runs once per store before its first write: the CAS probe, then the
    /// root object (created if missing, format checked if present).
    pub(super) async fn before_write(&self) -> Result<()> {
        self.inner
            .writable
            .get_or_try_init(|| async {
                self.backend().prepare_write(&self.inner.opts).await?;
                if self.root().await?.is_some() {
                    return Ok(());
                }
                let root = StoreRoot {
                    format: STORE_FORMAT,
                    created_by: Some(format!("pipe {}", env!("CARGO_PKG_VERSION"))),
                    extra: Default::default(),
                };
                let json = crate::json::to_vec_pretty(&root);
                match self
                    .backend()
                    .put(
                        layout::ROOT,
                        Body::from_bytes(json),
                        Condition::IfAbsent,
                        true,
                    )
                    .await
                {
                    Ok(_) => {
                        tracing::info!(store = %self.inner.url, "created the store");
                        Ok(())
                    }
                    // Another writer created it first; its format is what counts.
                    Err(Error::AlreadyExists { .. }) => self.root().await.map(|_| ()),
                    Err(e) => Err(e),
                }
            })
            .await
            .map(|_| ())
    }

    /// Reads an object, streaming; `None` if the key does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Object>> {
        validate_key(key)?;
        self.backend().get(key).await
    }

    /// Reads a (small) object whole; `None` if the key does not exist.
    pub async fn get_bytes(&self, key: &str) -> Result<Option<(Bytes, Version)>> {
        self.get_bytes_max(key, MAX_READ).await
    }

    /// [`Store::get_bytes`], refusing ([`Error::TooLarge`]) an object larger
    /// than `max` bytes before reading more than `max + 1` of it: what a
    /// store holds is not trusted until its signature is checked, and that
    /// needs it in memory.
    pub(crate) async fn get_bytes_max(
        &self,
        key: &str,
        max: u64,
    ) -> Result<Option<(Bytes, Version)>> {
        validate_key(key)?;
        self.backend().get_bytes(key, max).await
    }

    /// Reads a small JSON object pipe wrote (a record, a pointer); `None` if
    /// the key does not exist, [`Error::Corrupt`] naming the key if it is not
    /// `what` (e.g. "a pointer").
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        what: &str,
    ) -> Result<Option<(T, Version)>> {
        self.get_json_max(key, what, MAX_READ).await
    }

    /// [`Store::get_json`] of an object at most `max` bytes long (a pointer,
    /// a history entry, a cache record: [`MAX_RECORD`]).
    pub(crate) async fn get_json_max<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        what: &str,
        max: u64,
    ) -> Result<Option<(T, Version)>> {
        let Some((bytes, version)) = self.get_bytes_max(key, max).await? else {
            return Ok(None);
        };
        let value = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            url: self.inner.url.to_string(),
            key: key.to_string(),
            detail: format!("not {what}: {e}"),
        })?;
        Ok(Some((value, version)))
    }

    /// The size and version of an object; `None` if the key does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        validate_key(key)?;
        self.backend().head(key).await
    }

    /// Writes an object if `cond` holds. The object appears whole or not at
    /// all: a reader never sees a partial write.
    pub async fn put(&self, key: &str, body: Body, cond: Condition) -> Result<Version> {
        validate_key(key)?;
        self.before_write().await?;
        self.backend().put(key, body, cond, self.durable).await
    }

    /// Every object whose key starts with `prefix`, sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        if !prefix.is_empty() {
            validate_key(prefix.trim_end_matches('/'))?;
        }
        let mut all = self.backend().list(prefix).await?;
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(all)
    }

    /// [`Store::list`] with when each object was last written (one
    /// listing: on S3 the same requests; locally one `stat` per object).
    pub(crate) async fn list_modified(&self, prefix: &str) -> Result<Vec<Listed>> {
        if !prefix.is_empty() {
            validate_key(prefix.trim_end_matches('/'))?;
        }
        let mut all = self.backend().list_modified(prefix).await?;
        all.sort_by(|a, b| a.meta.key.cmp(&b.meta.key));
        Ok(all)
    }

    /// Makes the object `listed` describes look just written when it was
    /// last written more than `after` ago (S3: a copy onto itself; local:
    /// its modification time), bytes unchanged; true when it did. What
    /// `pipe publish` does to an immutable object it reuses instead of
    /// writing, as git freshens an object it would write again: `pipe gc`
    /// deletes nothing written within its grace period, so a blob a
    /// publish relies on survives until the build that names it is visible.
    pub(crate) async fn freshen_if_older(&self, listed: &Listed, after: Duration) -> Result<bool> {
        let age = listed.modified.elapsed().unwrap_or_default();
        if age <= after {
            return Ok(false);
        }
        validate_key(&listed.meta.key)?;
        self.before_write().await?;
        tracing::debug!(key = %listed.meta.key, age = age.as_secs(), "freshening a reused object");
        self.backend().freshen(&listed.meta.key).await?;
        Ok(true)
    }

    /// Uploads started and never finished, oldest first (see [`Upload`]).
    pub async fn uploads(&self) -> Result<Vec<Upload>> {
        let mut all = self.backend().uploads().await?;
        all.sort_by(|a, b| (a.last_active, &a.key).cmp(&(b.last_active, &b.key)));
        Ok(all)
    }

    /// Abandons an unfinished upload (S3: AbortMultipartUpload; local: the
    /// temporary file is removed). One already finished or gone is not an
    /// error.
    pub(crate) async fn abort_upload(&self, upload: &Upload) -> Result<()> {
        self.before_write().await?;
        self.backend().abort_upload(upload).await
    }

    /// Deletes an object; deleting a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        self.before_write().await?;
        self.backend().delete(key).await
    }

    /// Makes `to` an immutable copy of `from` (`to` must not be replaced
    /// later), made inside the store: no byte passes through this process.
    /// Returns `false` when `to` already existed and was left alone; on S3
    /// an existing `to` is copied over (with the same bytes, as it is only
    /// ever a copy of `from`) and the answer is always `true`.
    pub async fn copy_if_absent(&self, from: &str, to: &str) -> Result<bool> {
        validate_key(from)?;
        validate_key(to)?;
        self.before_write().await?;
        self.backend().copy_if_absent(from, to, self.durable).await
    }

    /// Makes `to` hold the bytes of `from` (an object written before and
    /// never written in place), replacing what `to` held as
    /// [`Condition::Overwrite`] does, made inside the store: a hard link
    /// moved into place on a local store (the two keys share the file until
    /// either is replaced, which is always by a new file), a server-side
    /// copy on S3 (with `to`'s own headers). For the index files of a view
    /// that several keys hold the same bytes of.
    pub async fn copy(&self, from: &str, to: &str) -> Result<()> {
        validate_key(from)?;
        validate_key(to)?;
        self.before_write().await?;
        self.backend().copy(from, to, self.durable).await
    }

    /// A handle on the same store whose writes skip the flush to disk each
    /// one costs on a local store (30,000 small objects: 30,000 fsyncs).
    /// For many objects nothing names yet; [`Store::flush`] then makes them
    /// all durable at once, before anything that names them is written. A
    /// killed process loses nothing either way; this is about power loss.
    /// On S3 a write is durable when it returns, and nothing changes.
    pub fn batch(&self) -> Store {
        Store {
            inner: self.inner.clone(),
            durable: false,
            freshen_after: self.freshen_after,
        }
    }

    /// A handle on the same store whose blob writes freshen a blob they
    /// find already stored (instead of writing it) when it was last written
    /// more than `after` ago: a quarter of the grace period `pipe gc` runs
    /// with (`[store] gc_grace`), so a gc never deletes a blob that a
    /// running publish found and relies on.
    pub fn freshening(&self, after: Duration) -> Store {
        Store {
            inner: self.inner.clone(),
            durable: self.durable,
            freshen_after: after,
        }
    }

    /// The age past which this handle freshens a blob it reuses.
    pub(crate) fn freshen_after(&self) -> Duration {
        self.freshen_after
    }

    /// Makes every write made so far durable (see [`Store::batch`]).
    pub async fn flush(&self) -> Result<()> {
        self.backend().flush().await
    }
}
