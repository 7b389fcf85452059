//! Cache records: what a build step or an artifact stage produced, by its
//! cache key. Written last, after every blob they name; believed only when
//! the project's key signed them.
//!
//! Anyone who can write the store can write `cache/...`: a record names the
//! blobs a build restores instead of running a step or writing an artifact,
//! and the paths and modes it restores them with. So a record is stored as
//! an envelope, `{"payload": "<the record's JSON text>", "signature":
//! "<armored detached signature over exactly those bytes>"}`, and read back
//! only if the signature verifies against the build key's keyring
//! ([`Sealer`]). A record that does not (unsigned, signed by another key,
//! edited, unreadable, too large) is never used: the caller builds again and
//! replaces it, and the forgery is reported by key.

use keys::{Encoding, Keyring, SecretKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::index::Fragment;
use crate::store::{
    BlobRef, Body, Condition, MAX_RECORD, Store, Version, digest::spawn_blocking, layout,
};
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
pub(crate) struct StepRecord {
    /// Step name.
    pub step: String,
    /// Its cache key.
    pub key: String,
    /// Its outputs.
    pub outputs: Vec<OutputFile>,
}

/// `cache/stages/<key>.json`: the artifact an artifact stage wrote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StageRecord {
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
pub(crate) struct StageOutput {
    /// Artifact file name.
    pub name: String,
    /// Its content.
    pub blob: BlobRef,
}

impl StageRecord {
    /// Every output, the first first.
    pub(crate) fn outputs(&self) -> impl Iterator<Item = (&str, &BlobRef)> {
        std::iter::once((self.name.as_str(), &self.blob))
            .chain(self.more.iter().map(|o| (o.name.as_str(), &o.blob)))
    }
}

/// Reads the step record of `key`, if there is one the sealer's keyring
/// vouches for.
pub(crate) async fn step(store: &Store, key: &str, sealer: &Sealer) -> Result<Lookup<StepRecord>> {
    sealer
        .open(store, &layout::step_record(key), "a step record")
        .await
}

/// Reads the stage record of `key`, if there is one the sealer's keyring
/// vouches for.
pub(crate) async fn stage(
    store: &Store,
    key: &str,
    sealer: &Sealer,
) -> Result<Lookup<StageRecord>> {
    sealer
        .open(store, &layout::stage_record(key), "a stage record")
        .await
}

/// Signs and writes a step record: create-only, or replacing the forgery
/// `found` held. Same key, same outputs: a racing machine that wrote it
/// first wrote an equivalent record.
pub(crate) async fn put_step(
    store: &Store,
    record: &StepRecord,
    sealer: &Sealer,
    found: &Lookup<StepRecord>,
) -> Result<()> {
    sealer
        .write(store, &layout::step_record(&record.key), record, found)
        .await
}

/// Signs and writes a stage record under `key` (see [`put_step`]).
pub(crate) async fn put_stage(
    store: &Store,
    key: &str,
    record: &StageRecord,
    sealer: &Sealer,
    found: &Lookup<StageRecord>,
) -> Result<()> {
    sealer
        .write(store, &layout::stage_record(key), record, found)
        .await
}

/// The stored form of a record.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The record's JSON, exactly the bytes signed.
    payload: String,
    /// Armored detached OpenPGP signature over `payload`.
    signature: String,
}

/// Who signs records and whose signatures are believed: the build's key
/// and its public keyring.
#[derive(Clone)]
pub(crate) struct Sealer {
    key: SecretKey,
    keyring: Keyring,
    /// Records are signed at this time, so the same record signed twice has
    /// the same bytes (RSA and Ed25519 signatures are deterministic).
    time: std::time::SystemTime,
}

/// What reading a record found.
#[derive(Debug)]
pub(crate) enum Lookup<T> {
    /// No record under the key.
    Missing,
    /// A record the keyring vouches for.
    Trusted(T),
    /// Something that is not: never used, to be replaced (why is logged
    /// when it is found, by [`forged`]).
    Forged {
        /// Its version, for an `IfMatch` replacement (empty: overwrite).
        version: Version,
    },
}

impl Sealer {
    /// Signs with `key` at `time`, believes `key`'s own signatures.
    pub(crate) fn new(key: &SecretKey, time: std::time::SystemTime) -> Sealer {
        Sealer {
            key: key.clone(),
            keyring: key.public_keyring(),
            time,
        }
    }

    /// Reads the record at `key`; `what` names it in messages (`a step
    /// record`). A forgery is logged (a warning naming the key) and
    /// returned as [`Lookup::Forged`].
    pub(crate) async fn open<T: DeserializeOwned + Send + 'static>(
        &self,
        store: &Store,
        key: &str,
        what: &'static str,
    ) -> Result<Lookup<T>> {
        let (bytes, version) = match store.get_bytes_max(key, MAX_RECORD).await {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(Lookup::Missing),
            Err(Error::TooLarge { size, max, .. }) => {
                return Ok(forged(
                    key,
                    format!("{size} bytes, more than a record's {max}"),
                    None,
                ));
            }
            Err(e) => return Err(e),
        };
        let keyring = self.keyring.clone();
        let checked = spawn_blocking(move || Ok(check::<T>(&keyring, &bytes, what))).await?;
        Ok(match checked {
            Ok(record) => Lookup::Trusted(record),
            Err(reason) => forged(key, reason, Some(version)),
        })
    }

    /// Signs `record` and writes it at `key`: create-only, or replacing the
    /// forgery `found` held. Losing either race is fine: whoever won wrote
    /// a record of the same step or stage.
    pub(crate) async fn write<T: Serialize>(
        &self,
        store: &Store,
        key: &str,
        record: &T,
        found: &Lookup<T>,
    ) -> Result<()> {
        let unserialisable = |e: serde_json::Error| Error::Usage {
            message: format!("cannot serialise the record `{key}`: {e}"),
            hint: None,
        };
        let payload = serde_json::to_string_pretty(record).map_err(unserialisable)?;
        let signature = self
            .key
            .sign_detached(payload.as_bytes(), self.time, Encoding::Armored)
            .map_err(Error::Signing)?;
        let envelope = Envelope {
            payload,
            signature: String::from_utf8_lossy(&signature).into_owned(),
        };
        let bytes = serde_json::to_vec_pretty(&envelope).map_err(unserialisable)?;
        let cond = match found {
            Lookup::Forged { version, .. } if !version.0.is_empty() => {
                Condition::IfMatch(version.clone())
            }
            Lookup::Forged { .. } => Condition::Overwrite,
            _ => Condition::IfAbsent,
        };
        match store.put(key, Body::from_bytes(bytes), cond).await {
            Ok(_) | Err(Error::AlreadyExists { .. } | Error::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The blobs a stored cache record (step or stage) names, read without
/// checking its signature: for `pipe fsck`, which reports references to
/// missing blobs; nothing is restored from it. Empty when it is not a
/// record pipe reads.
pub(crate) fn named_blobs(bytes: &[u8]) -> Vec<BlobRef> {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(bytes) else {
        return Vec::new();
    };
    if let Ok(stage) = serde_json::from_str::<StageRecord>(&envelope.payload) {
        return stage.outputs().map(|(_, b)| b.clone()).collect();
    }
    if let Ok(step) = serde_json::from_str::<StepRecord>(&envelope.payload) {
        return step.outputs.into_iter().map(|o| o.blob).collect();
    }
    Vec::new()
}

/// A record refused: logged, naming the key.
pub(crate) fn forged<T>(key: &str, reason: String, version: Option<Version>) -> Lookup<T> {
    tracing::warn!("ignoring the cache record `{key}` in the store: {reason}; building it again");
    Lookup::Forged {
        version: version.unwrap_or_else(|| Version(String::new())),
    }
}

/// The record in `bytes`, if it is an envelope whose signature `keyring`
/// verifies; otherwise why not.
fn check<T: DeserializeOwned>(
    keyring: &Keyring,
    bytes: &[u8],
    what: &str,
) -> std::result::Result<T, String> {
    let envelope: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a signed record ({e}): pipe never writes an unsigned one"))?;
    keyring
        .verify_detached(
            envelope.payload.as_bytes(),
            envelope.signature.as_bytes(),
            None,
        )
        .map_err(|e| format!("its signature does not verify against the project's key: {e}"))?;
    serde_json::from_str(&envelope.payload)
        .map_err(|e| format!("signed, but not {what} this pipe reads: {e}"))
}
