//! The content-addressed store.
//!
//! One interface, two backends: a local directory (the default, `.pipe/store`)
//! and S3 (`s3://bucket/prefix`, any S3-compatible service). Nothing above this
//! module knows which backend it talks to.
//!
//! - Keys are `/`-separated relative paths ([`layout`] names them).
//! - Every object has a [`Version`], an opaque token that changes whenever the
//!   content does (the ETag on S3, the BLAKE3 digest of the content on a local
//!   directory); [`Condition::IfMatch`] writes only if the version is still
//!   the one read, which is how pointers are moved with compare-and-swap.
//! - Blobs are content addressed by BLAKE3 ([`layout::blob_key`]) and verified
//!   on every read.
//!   On a local store the version is computed by reading the object, so
//!   `get`, `head` and `list` read whole objects: use them on pointers and
//!   metadata, and [`Store::get_blob`] for blobs.
//! - The root object [`layout::ROOT`] records the store format. Opening refuses
//!   a store of a newer format; the first write creates the root object.
//!
//! # S3 settings
//!
//! Region, credentials and endpoint come from the standard AWS settings
//! (`AWS_REGION`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`,
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_S3`, `AWS_MAX_ATTEMPTS`, the
//! profile's `endpoint_url`). Requests use path-style addressing
//! (`http://host/bucket/key`) when a custom endpoint is configured or
//! `PIPE_S3_PATH_STYLE=1`; `PIPE_S3_PATH_STYLE=0` forces virtual-hosted style.
//! Timeouts, retries, the deadline of an operation and unsigned requests
//! come from [`OpenOptions::network`] ([`Network`]).
//!
//! The first write through an S3 store checks that the server honours
//! conditional writes (see [`OpenOptions::unsafe_no_cas`]).

pub mod digest;
pub mod layout;
mod local;
mod s3;

use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};

use crate::{Error, Result};

/// The newest store format this pipe reads and writes.
pub const STORE_FORMAT: u64 = 1;

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A directory on this machine (absolute).
    Local(PathBuf),
    /// A bucket, and a prefix inside it (no leading or trailing `/`; empty for
    /// the whole bucket).
    S3 {
        /// The bucket name.
        bucket: String,
        /// The key prefix, without leading or trailing `/`.
        prefix: String,
    },
}

impl StoreUrl {
    /// Parses `s3://bucket[/prefix]` or a directory path; a relative path is
    /// resolved against `base_dir`.
    pub fn parse(s: &str, base_dir: &Path) -> Result<StoreUrl> {
        let bad = |reason: &str| Error::StoreUrl {
            url: s.to_string(),
            reason: reason.to_string(),
        };
        if s.trim().is_empty() {
            return Err(bad("it is empty"));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("the bucket name is missing"));
            }
            let valid_char =
                |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
            if !(3..=63).contains(&bucket.len())
                || !bucket.chars().all(valid_char)
                || !bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            {
                return Err(bad(
                    "a bucket name is 3 to 63 characters: lowercase letters, digits, `-` and `.`, starting with a letter or digit",
                ));
            }
            let prefix = prefix.trim_end_matches('/');
            if !prefix.is_empty() {
                validate_key(prefix).map_err(|e| match e {
                    Error::InvalidKey { reason, .. } => bad(&format!("the prefix: {reason}")),
                    other => other,
                })?;
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(bad(&format!(
                "the scheme `{scheme}://` is not supported (only `s3://` and directory paths)"
            )));
        }
        let path = Path::new(s);
        Ok(StoreUrl::Local(if path.is_absolute() {
            path.to_path_buf()
        } else {
            base_dir.join(path)
        }))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Local(p) => write!(f, "{}", p.display()),
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Accept an S3 server that ignores conditional writes. Compare-and-swap
    /// then silently degrades to last-writer-wins; a warning is logged.
    pub unsafe_no_cas: bool,
    /// Timeouts, retries and signing of requests to an S3 store.
    pub network: Network,
}

/// Connect timeout unless [`Network::connect_timeout`] says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-request timeout (until the first byte of the answer; between two
/// bytes of a body read) unless [`Network::request_timeout`] says otherwise.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline of one store operation, retries included, unless
/// [`Network::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);
/// Attempts per request unless [`Network::attempts`], `AWS_MAX_ATTEMPTS` or
/// the profile say otherwise: rides out throttling and 5xx without hiding a
/// dead endpoint for long.
pub const DEFAULT_ATTEMPTS: u32 = 5;

/// How requests to an S3 store are made (`[store]` keys and the global
/// flags); `None` takes the default. A local store ignores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Network {
    /// Limit on opening a connection ([`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Option<Duration>,
    /// Limit on one attempt waiting for the first byte of its answer (an
    /// upload's body is sent within it), and on a body read stalling
    /// ([`DEFAULT_REQUEST_TIMEOUT`]).
    pub request_timeout: Option<Duration>,
    /// Deadline of one store operation, every retry included
    /// ([`DEFAULT_TIMEOUT`]); reached, the operation fails with
    /// [`Error::Unreachable`] naming the endpoint and the operation.
    pub timeout: Option<Duration>,
    /// Attempts per request, the first included; throttling, 5xx answers,
    /// timeouts and broken connections are retried with exponential backoff
    /// ([`DEFAULT_ATTEMPTS`]).
    pub attempts: Option<u32>,
    /// Send requests unsigned and look for no credentials, as `aws s3
    /// --no-sign-request`: reads of a bucket that allows anonymous reads.
    pub no_sign: bool,
}

impl Network {
    /// The request timeout in force.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT)
    }
}

/// Settings that take precedence over the standard AWS environment for one
/// S3 store. The CLI leaves them empty; tests and embedders use them to point
/// stores in one process at different servers.
#[derive(Debug, Clone, Default)]
pub struct S3Overrides {
    /// The endpoint URL (like `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
    /// The region (like `AWS_REGION`).
    pub region: Option<String>,
    /// Static credentials (like `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`).
    pub credentials: Option<(String, String)>,
    /// Total attempts per request, retries included (like `AWS_MAX_ATTEMPTS`).
    pub max_attempts: Option<u32>,
}

/// An opaque version token: changes whenever the object's content does.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version(pub String);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a write requires of the key's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Write whatever is there.
    Overwrite,
    /// Write only if the key does not exist ([`Error::AlreadyExists`] otherwise).
    IfAbsent,
    /// Write only if the key exists at this version ([`Error::Conflict`]
    /// otherwise).
    IfMatch(Version),
}

/// What is known about an object without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The store key.
    pub key: String,
    /// The size in bytes.
    pub size: u64,
    /// The version token.
    pub version: Version,
}

/// An object as a listing shows it, with when it was last written (S3's
/// `Last-Modified`; a local file's modification time), which is what
/// `pipe gc`'s grace period is measured from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Key, size, version.
    pub meta: ObjectMeta,
    /// When it was last written (or freshened, [`Store::freshen_if_older`]).
    pub modified: std::time::SystemTime,
}

/// An upload started and never finished: an S3 multipart upload (its parts
/// are stored, and billed, until it is completed or aborted), or a local
/// store's temporary file under `.tmp/` that a killed writer left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upload {
    /// The key it was to be written under (local: `.tmp/NAME`).
    pub key: String,
    /// The S3 upload id (local: the file name).
    pub id: String,
    /// When it started or last received bytes (S3: the later of its
    /// `Initiated` and its newest part's `LastModified`; local: the file's
    /// modification time), Unix seconds: `pipe gc` aborts only uploads
    /// idle longer than its grace period.
    pub last_active: u64,
    /// Bytes it holds so far (S3: its parts; local: the file's size).
    pub size: u64,
}

/// A streaming reader of an object's bytes.
pub type ObjectBody = Box<dyn AsyncRead + Send + Unpin>;

/// An object being read.
pub struct Object {
    /// Its key, size and version.
    pub meta: ObjectMeta,
    /// Its bytes, streamed.
    pub body: ObjectBody,
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Object").field("meta", &self.meta).finish()
    }
}

/// The bytes of a write.
pub struct Body(BodyInner);

enum BodyInner {
    Bytes(Bytes),
    File(PathBuf),
    Reader(ObjectBody),
    /// A spooled file the backend may consume; `blake3` when already known.
    Temp(tempfile::TempPath, Option<String>),
}

impl Body {
    /// Bytes in memory.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Body {
        Body(BodyInner::Bytes(bytes.into()))
    }

    /// The content of a file, read when the write happens; it must not change
    /// during the write.
    pub fn from_file(path: impl Into<PathBuf>) -> Body {
        Body(BodyInner::File(path.into()))
    }

    /// A stream, read to its end. It is spooled to a temporary file, never held
    /// in memory whole; if it fails, nothing is written.
    pub fn from_reader(reader: impl AsyncRead + Send + Unpin + 'static) -> Body {
        Body(BodyInner::Reader(Box::new(reader)))
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body::from_bytes(b)
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Body {
        Body::from_bytes(b)
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::from_bytes(s)
    }
}

impl From<&'static [u8]> for Body {
    fn from(b: &'static [u8]) -> Body {
        Body::from_bytes(b)
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::from_bytes(s)
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            BodyInner::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
            BodyInner::File(p) => write!(f, "Body::File({})", p.display()),
            BodyInner::Reader(_) => f.write_str("Body::Reader"),
            BodyInner::Temp(p, _) => write!(f, "Body::Temp({})", p.display()),
        }
    }
}

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

/// The largest object [`Store::get_bytes`] reads whole: a build's manifest
/// or package index (about 1.7 KiB per package) of a very large build.
pub const MAX_READ: u64 = 512 << 20;
/// The largest small record read whole: a pointer, a history entry, a
/// cache or version record, a repository state.
pub const MAX_RECORD: u64 = 16 << 20;

fn too_large(key: &str, size: u64, max: u64) -> Result<()> {
    if size > max {
        return Err(Error::TooLarge {
            key: key.to_string(),
            size,
            max,
        });
    }
    Ok(())
}

/// The operations each backend provides. Keys given to a backend are already
/// validated; the backend maps them onto its namespace.
#[async_trait]
trait Backend: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<Object>>;

    /// The whole object, refused once it is larger than `max` bytes
    /// (whatever size the store claims: the read stops at `max + 1`).
    async fn get_bytes(&self, key: &str, max: u64) -> Result<Option<(Bytes, Version)>> {
        let Some(obj) = self.get(key).await? else {
            return Ok(None);
        };
        too_large(key, obj.meta.size, max)?;
        let mut buf = Vec::with_capacity(obj.meta.size.min(max).min(1 << 24) as usize);
        obj.body
            .take(max.saturating_add(1))
            .read_to_end(&mut buf)
            .await
            .map_err(|e| self.read_error(key, e))?;
        too_large(key, buf.len() as u64, max)?;
        Ok(Some((buf.into(), obj.meta.version)))
    }

    /// Like `get` without the version, which may be costly (local: a digest).
    async fn open(&self, key: &str) -> Result<Option<(u64, ObjectBody)>> {
        Ok(self.get(key).await?.map(|o| (o.meta.size, o.body)))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// `durable`: the object survives a power loss once this returns;
    /// otherwise only once [`Backend::flush`] returns.
    async fn put(&self, key: &str, body: Body, cond: Condition, durable: bool) -> Result<Version>;

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// Like `list`, with when each object was last written.
    async fn list_modified(&self, prefix: &str) -> Result<Vec<Listed>>;

    /// One object's metadata and when it was last written.
    async fn stat(&self, key: &str) -> Result<Option<Listed>>;

    /// Makes the object's last-written time now, bytes unchanged.
    async fn freshen(&self, key: &str) -> Result<()>;

    /// Uploads started and never finished (S3 multipart uploads; a local
    /// store's temporary files).
    async fn uploads(&self) -> Result<Vec<Upload>>;

    /// Abandons an upload; one already gone is not an error.
    async fn abort_upload(&self, upload: &Upload) -> Result<()>;

    async fn delete(&self, key: &str) -> Result<()>;

    /// Makes `to` hold the bytes of `from` without sending them through this
    /// process (a hard link; a server-side copy); see
    /// [`Store::copy_if_absent`].
    async fn copy_if_absent(&self, from: &str, to: &str, durable: bool) -> Result<bool>;

    /// Makes every write so far durable.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// A directory for temporary files; on the same filesystem as the store
    /// when there is one, so a spooled file can be moved into place.
    fn spool_dir(&self) -> PathBuf;

    /// Runs before the first write: checks that the backend keeps its
    /// compare-and-swap promise, tidies what a killed process left behind.
    async fn prepare_write(&self, _opts: &OpenOptions) -> Result<()> {
        Ok(())
    }

    /// Turns an error met while reading an object's body into a store error.
    fn read_error(&self, key: &str, e: std::io::Error) -> Error;
}

/// A store: cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    /// Writes through this handle are durable when they return; see
    /// [`Store::batch`].
    durable: bool,
    /// A blob found in the store instead of written is freshened when it
    /// was last written longer ago than this ([`Store::freshening`]).
    freshen_after: Duration,
}

/// How old a reused blob may be before a write of it freshens it, unless
/// [`Store::freshening`] says otherwise: a quarter of `pipe gc`'s default
/// grace period of 2 days.
pub const DEFAULT_FRESHEN_AFTER: Duration = Duration::from_secs(12 * 3600);

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
    pub fn url(&self) -> &StoreUrl {
        &self.inner.url
    }

    fn backend(&self) -> &dyn Backend {
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
    async fn before_write(&self) -> Result<()> {
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
    pub async fn get_bytes_max(&self, key: &str, max: u64) -> Result<Option<(Bytes, Version)>> {
        validate_key(key)?;
        self.backend().get_bytes(key, max).await
    }

    /// Reads a small JSON object pipe wrote (a record, a pointer); `None` if
    /// the key does not exist, [`Error::Corrupt`] naming the key if it is not
    /// `what` (e.g. "a pointer").
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
        what: &str,
    ) -> Result<Option<(T, Version)>> {
        self.get_json_max(key, what, MAX_READ).await
    }

    /// [`Store::get_json`] of an object at most `max` bytes long (a pointer,
    /// a history entry, a cache record: [`MAX_RECORD`]).
    pub async fn get_json_max<T: serde::de::DeserializeOwned>(
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
    pub async fn list_modified(&self, prefix: &str) -> Result<Vec<Listed>> {
        if !prefix.is_empty() {
            validate_key(prefix.trim_end_matches('/'))?;
        }
        let mut all = self.backend().list_modified(prefix).await?;
        all.sort_by(|a, b| a.meta.key.cmp(&b.meta.key));
        Ok(all)
    }

    /// An object's metadata and when it was last written; `None` if the key
    /// does not exist.
    pub async fn stat(&self, key: &str) -> Result<Option<Listed>> {
        validate_key(key)?;
        self.backend().stat(key).await
    }

    /// Makes the object `listed` describes look just written when it was
    /// last written more than `after` ago (S3: a copy onto itself; local:
    /// its modification time), bytes unchanged; true when it did. What
    /// `pipe publish` does to an immutable object it reuses instead of
    /// writing, as git freshens an object it would write again: `pipe gc`
    /// deletes nothing written within its grace period, so a blob a
    /// publish relies on survives until the build that names it is visible.
    pub async fn freshen_if_older(&self, listed: &Listed, after: Duration) -> Result<bool> {
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
    pub async fn abort_upload(&self, upload: &Upload) -> Result<()> {
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
    pub fn freshen_after(&self) -> Duration {
        self.freshen_after
    }

    /// Makes every write made so far durable (see [`Store::batch`]).
    pub async fn flush(&self) -> Result<()> {
        self.backend().flush().await
    }

    /// Stores a file as a blob. Nothing is sent when the blob is already there.
    /// The file must not change during the call.
    pub async fn put_blob_file(&self, path: &Path) -> Result<BlobPut> {
        let blob = digest::hash_file(path).await?;
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

    /// Stores the file at `path` as the blob `expected` names, when the
    /// digests are known beforehand (a build manifest lists them). The store
    /// is asked first, so a blob already there costs one lookup and no read
    /// of the file. Otherwise the file is hashed while nothing is written;
    /// if it is not `expected`, nothing is stored and the returned `blob`
    /// says what the file holds.
    pub async fn put_blob_file_as(&self, path: &Path, expected: &BlobRef) -> Result<BlobPut> {
        let Some(cond) = self.blob_write_condition(expected).await? else {
            return Ok(BlobPut {
                blob: expected.clone(),
                uploaded: false,
            });
        };
        self.write_file_as(path, expected, cond).await
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

    /// [`Store::put_blob_file_as`] for a caller that listed the blobs
    /// already: `stored` is what the listing showed of the blob (`None`: not
    /// listed), so nothing is asked before the write. A blob listed at its
    /// size costs no request (but one copy onto itself when it is older
    /// than a quarter of gc's grace, so `pipe gc` keeps it); one not
    /// listed, a create-only write (a blob that appeared since is left
    /// alone).
    pub async fn put_blob_file_listed(
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
    pub async fn blob_intact(&self, blob: &BlobRef) -> Result<bool> {
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
    pub async fn replace_blob_file(&self, path: &Path, expected: &BlobRef) -> Result<BlobPut> {
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
            file.write_all(&buf[..n])
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
    /// The store key being read.
    pub fn key(&self) -> &str {
        &self.key
    }

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
        let new = &buf.filled()[before..];
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

/// Keys the store uses for itself and refuses as user keys.
const RESERVED: &[&str] = &[".tmp", ".locks", ".pipe-probe"];

/// Checks a key: `/`-separated, relative, no empty, `.` or `..` segments, no
/// reserved first segment.
fn validate_key(key: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidKey {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.starts_with('/') {
        return bad("it starts with `/`");
    }
    if key.contains('\\') || key.contains('\0') {
        return bad("it contains `\\` or a NUL byte");
    }
    for seg in key.split('/') {
        match seg {
            "" => return bad("it has an empty segment"),
            "." | ".." => return bad("it has a `.` or `..` segment"),
            _ => {}
        }
    }
    let first = key.split('/').next().unwrap_or_default();
    if RESERVED.contains(&first) {
        return bad("the store reserves this name for itself");
    }
    Ok(())
}

fn validate_digest(hex: &str) -> Result<()> {
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(Error::InvalidKey {
            key: hex.to_string(),
            reason: "a BLAKE3 digest is 64 lowercase hex digits".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let base = Path::new("/proj");
        assert_eq!(
            StoreUrl::parse(".pipe/store", base).unwrap(),
            StoreUrl::Local("/proj/.pipe/store".into())
        );
        assert_eq!(
            StoreUrl::parse("/abs", base).unwrap(),
            StoreUrl::Local("/abs".into())
        );
        let s3 = StoreUrl::parse("s3://my-bucket/a/b/", base).unwrap();
        assert_eq!(
            s3,
            StoreUrl::S3 {
                bucket: "my-bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(s3.to_string(), "s3://my-bucket/a/b");
        assert_eq!(
            StoreUrl::parse("s3://my-bucket", base).unwrap().to_string(),
            "s3://my-bucket"
        );
        for bad in [
            "",
            "s3://",
            "s3://B",
            "s3://-bucket",
            "s3://ok-bucket/a/../b",
            "gs://x/y",
        ] {
            assert!(
                matches!(StoreUrl::parse(bad, base), Err(Error::StoreUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn validates_keys() {
        for ok in ["a", "a/b.c", "envs/prod.json", ".hidden/x"] {
            validate_key(ok).unwrap();
        }
        for bad in [
            "", "/a", "a//b", "a/", "../a", "a/./b", ".tmp/x", ".locks", "a\\b",
        ] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }
}
