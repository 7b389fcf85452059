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
//! - Blobs are content addressed by BLAKE3 ([`BlobRef::key`]) and verified
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

mod backend;
mod blob;
pub mod digest;
mod handle;
mod key;
pub mod layout;
mod local;
mod object;
mod options;
mod s3;
mod url;

use backend::Backend;
pub use blob::{BlobPut, BlobReader, BlobRef};
pub use handle::{STORE_FORMAT, Store, StoreRoot};
pub use object::{Body, Condition, Object, ObjectMeta, Upload, Version};
use object::{BodyInner, too_large};
pub(crate) use object::{Listed, MAX_READ, MAX_RECORD, ObjectBody};
pub use options::{
    DEFAULT_ATTEMPTS, DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_TIMEOUT, Network,
    OpenOptions, S3Overrides,
};
pub use url::StoreUrl;
