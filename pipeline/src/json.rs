//! JSON of pipe's own records, which cannot fail to serialise.
//!
//! `serde_json` fails only on a map whose keys are not strings or a
//! `Serialize` implementation that returns an error; pipe's records are
//! derived structs, enums, strings, numbers and `BTreeMap<String, _>`, so
//! neither happens. These helpers hold that reasoning in one place instead of
//! an `expect` at every call (the workspace denies `expect_used`). A record
//! type that could fail (a map with non-string keys) must not come here.

use serde::Serialize;

/// Compact JSON of a record.
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    #[allow(clippy::expect_used, reason = "see the module documentation")]
    serde_json::to_vec(value).expect("pipe's records serialise")
}

/// Indented JSON of a record (what people read: manifests, states).
pub(crate) fn to_vec_pretty<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    #[allow(clippy::expect_used, reason = "see the module documentation")]
    serde_json::to_vec_pretty(value).expect("pipe's records serialise")
}

/// A record as a JSON value (kept state of a view).
pub(crate) fn to_value<T: Serialize>(value: T) -> serde_json::Value {
    #[allow(clippy::expect_used, reason = "see the module documentation")]
    serde_json::to_value(value).expect("pipe's records serialise")
}
