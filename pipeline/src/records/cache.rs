//! Cache records: what a build step or an artifact stage produced, by its
//! cache key. Written create-only, last, after every blob they name.

use serde::{Deserialize, Serialize};

use super::index::Fragment;
use crate::store::{BlobRef, Body, Condition, Store, layout};
use crate::{Error, Result};

/// One file a step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Path relative to the project directory.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// The stored content.
    pub blob: BlobRef,
}

/// `cache/steps/<key>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step name.
    pub step: String,
    /// Its cache key.
    pub key: String,
    /// Its outputs.
    pub outputs: Vec<OutputFile>,
}

/// `cache/stages/<key>.json`: the artifact an artifact stage wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    /// Artifact file name.
    pub name: String,
    /// Its content.
    pub blob: BlobRef,
    /// What the consumer views need of it. Absent in records of an older
    /// pipe: then read from the artifact.
    #[serde(default)]
    pub index: Option<Fragment>,
    /// The node's further outputs, for a kind that writes several files
    /// (the first is `name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<StageOutput>,
}

/// One further output of a stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageOutput {
    /// Artifact file name.
    pub name: String,
    /// Its content.
    pub blob: BlobRef,
}

impl StageRecord {
    /// Every output, the first first.
    pub fn outputs(&self) -> impl Iterator<Item = (&str, &BlobRef)> {
        std::iter::once((self.name.as_str(), &self.blob))
            .chain(self.more.iter().map(|o| (o.name.as_str(), &o.blob)))
    }
}

/// Reads the step record of `key`, if there is one.
pub(crate) async fn step(store: &Store, key: &str) -> Result<Option<StepRecord>> {
    Ok(store
        .get_json::<StepRecord>(&layout::step_record(key), "a step record")
        .await?
        .map(|(r, _)| r))
}

/// Reads the stage record of `key`, if there is one.
pub(crate) async fn stage(store: &Store, key: &str) -> Result<Option<StageRecord>> {
    Ok(store
        .get_json::<StageRecord>(&layout::stage_record(key), "a stage record")
        .await?
        .map(|(r, _)| r))
}

/// Writes a step record, create-only. Same key, same outputs: a racing
/// machine that wrote it first wrote an equivalent record.
pub(crate) async fn put_step(store: &Store, record: &StepRecord) -> Result<()> {
    put_once(store, &layout::step_record(&record.key), record).await
}

/// Writes a stage record under `key`, create-only.
pub(crate) async fn put_stage(store: &Store, key: &str, record: &StageRecord) -> Result<()> {
    put_once(store, &layout::stage_record(key), record).await
}

async fn put_once<T: Serialize>(store: &Store, key: &str, record: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(record).expect("record serialises");
    match store
        .put(key, Body::from_bytes(bytes), Condition::IfAbsent)
        .await
    {
        Ok(_) | Err(Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
