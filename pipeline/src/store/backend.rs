//! The interface each backend (`local.rs`, `s3.rs`) implements.

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::{
    Body, Condition, Listed, Object, ObjectBody, ObjectMeta, OpenOptions, Upload, Version,
    too_large,
};
use crate::{Error, Result};

/// The operations each backend provides. Keys given to a backend are already
/// validated; the backend maps them onto its namespace.
#[async_trait]
pub(super) trait Backend: Send + Sync {
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
    /// [`Store::copy_if_absent`](super::Store::copy_if_absent).
    async fn copy_if_absent(&self, from: &str, to: &str, durable: bool) -> Result<bool>;

    /// Makes `to` hold the bytes of `from`, replacing what it held, without
    /// sending them through this process; see [`Store::copy`](super::Store::copy).
    async fn copy(&self, from: &str, to: &str, durable: bool) -> Result<()>;

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
