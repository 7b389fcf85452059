//! Version records: `packages/<artifact>.json`, which bytes a published
//! artifact name stands for. Create-only, so a version is never reused for
//! other bytes.

use serde::{Deserialize, Serialize};

use crate::artifact::Artifact;
use crate::store::{BlobRef, Body, Condition, MAX_RECORD, Store, layout};
use crate::{Error, Result};

/// What a package name, version, architecture and format stand for, once
/// published.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Artifact file name.
    pub artifact: String,
    /// Its content.
    pub blob: BlobRef,
    /// The build that published it first.
    pub build: String,
}

/// The version record of artifact `name`, if it was published.
pub(crate) async fn read(store: &Store, name: &str) -> Result<Option<VersionRecord>> {
    Ok(store
        .get_json_max(
            &layout::version_record(name),
            "a version record",
            MAX_RECORD,
        )
        .await?
        .map(|(v, _)| v))
}

/// Records that `a` stands for its bytes, create-only. A record that was
/// there already with the same bytes is fine (a racing publisher); other
/// bytes are a conflict.
pub(crate) async fn put(store: &Store, a: &Artifact, build: &str) -> Result<()> {
    let record = VersionRecord {
        artifact: a.name.clone(),
        blob: a.blob.clone(),
        build: build.to_string(),
    };
    let key = layout::version_record(&a.name);
    match store
        .put(
            &key,
            Body::from_bytes(crate::json::to_vec_pretty(&record)),
            Condition::IfAbsent,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(Error::AlreadyExists { .. }) => {
            // Gone again by now (deleted behind our back): a conflict,
            // not a panic.
            let found = read(store, &a.name).await?.map(|e| e.blob.sha256);
            if found.as_deref() != Some(a.blob.sha256.as_str()) {
                return Err(Error::Conflict {
                    key,
                    expected: Some(a.blob.sha256.clone()),
                    found,
                });
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}
