//! The objects a store holds and the bytes of a write: [`Version`],
//! [`Condition`], [`ObjectMeta`], [`Listed`], [`Upload`], [`Object`],
//! [`Body`], and the read limits [`MAX_READ`] and [`MAX_RECORD`].

use std::fmt;
use std::path::PathBuf;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use crate::{Error, Result};

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
pub(crate) struct Listed {
    /// Key, size, version.
    pub(crate) meta: ObjectMeta,
    /// When it was last written (or freshened,
    /// [`Store::freshen_if_older`](super::Store::freshen_if_older)).
    pub(crate) modified: std::time::SystemTime,
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
pub(crate) type ObjectBody = Box<dyn AsyncRead + Send + Unpin>;

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
pub struct Body(pub(super) BodyInner);

pub(super) enum BodyInner {
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

/// The largest object [`Store::get_bytes`](super::Store::get_bytes) reads
/// whole: a build's manifest or package index (about 1.7 KiB per package)
/// of a very large build.
pub(crate) const MAX_READ: u64 = 512 << 20;
/// The largest small record read whole: a pointer, a history entry, a
/// cache or version record, a repository state.
pub(crate) const MAX_RECORD: u64 = 16 << 20;

pub(super) fn too_large(key: &str, size: u64, max: u64) -> Result<()> {
    if size > max {
        return Err(Error::TooLarge {
            key: key.to_string(),
            size,
            max,
        });
    }
    Ok(())
}
