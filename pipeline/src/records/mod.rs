//! Every record pipe writes to the store, and how it is read back: the one
//! owner of records. Keys come from [`crate::store::layout`]; no other module
//! formats one.
//!
//! | record | key | written by |
//! | --- | --- | --- |
//! | [`Manifest`] (+ provenance, signatures) | `builds/<id>/…` | build, publish |
//! | `manifest::Shard` (artifacts, inputs, [`BuildIndex`] fragments) | `manifests/<fan>/<blake3>.json` | build, publish |
//! | `cache::StepRecord`, `cache::StageRecord` | `cache/steps/…`, `cache/stages/…` | build |
//! | `catalog::Root`, `catalog::Shard` | `packages/catalog.json`, `packages/catalog/<blake3>.json` | publish |
//! | [`SignedEntry`] (pointer, history) | `envs/<env>/…` | promote, rollback |
//! | `view::ViewState` | `views/<env>/<view>.json` | the views |
//!
//! Dependencies point one way: `build`, `publish`, `promote`, `views` and
//! `deploy` use this module; it uses only the store (and `artifact`, the
//! types its records name).

pub(crate) mod cache;
pub(crate) mod catalog;
pub mod history;
pub mod index;
pub(crate) mod manifest;
pub(crate) mod view;

pub use history::{Action, Entry, SignedEntry};
pub(crate) use index::{
    BuildIndex, Fragment, IndexedDeb, IndexedImage, IndexedMachine, IndexedRpm, Published,
};
pub use manifest::{DeploySpec, Input, Manifest, ShardRef, StepSummary};
pub(crate) use manifest::{MANIFEST_FORMAT, files};
