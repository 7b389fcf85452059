//! Signed cache records: what a step or a stage left in the store under its
//! cache key, believed only when the project's key signed it.
//!
//! Anyone who can write the store can write `cache/...`: a record names the
//! blobs a build restores instead of running a step or writing a package,
//! and the paths and modes it restores them with. So a record is stored as
//! an envelope, `{"payload": "<the record's JSON text>", "signature":
//! "<armored detached signature over exactly those bytes>"}`, and read back
//! only if the signature verifies against the signer's keyring. A record
//! that does not (unsigned, signed by another key, edited, unreadable) is
//! never used: the caller builds again and replaces it, and the forgery is
//! reported by key.

use keys::{Encoding, Keyring, SecretKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::{Body, Condition, MAX_RECORD, Store, Version, digest::spawn_blocking};
use crate::{Error, Result};

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
pub struct Sealer {
    key: SecretKey,
    keyring: Keyring,
    /// Records are signed at this time, so the same record signed twice has
    /// the same bytes (RSA and Ed25519 signatures are deterministic).
    time: std::time::SystemTime,
}

/// What reading a record found.
#[derive(Debug)]
pub enum Lookup<T> {
    /// No record under the key.
    Missing,
    /// A record the keyring vouches for.
    Trusted(T),
    /// Something that is not: never used, to be replaced (the version is
    /// what a replacement compares against).
    Forged {
        /// Why it was refused.
        reason: String,
        /// Its version, for an `IfMatch` replacement.
        version: Version,
    },
}

impl Sealer {
    /// Signs with `key`, believes `key`'s own signatures; `epoch` dates the
    /// signatures.
    pub fn new(key: &SecretKey, epoch: u64) -> Sealer {
        Sealer {
            key: key.clone(),
            keyring: key.public_keyring(),
            time: super::packages::signature_time(epoch, key),
        }
    }

    /// Reads the record at `key`; `what` names it in messages (`a step
    /// record`). A forgery is logged (a warning naming the key) and
    /// returned as [`Lookup::Forged`].
    pub async fn open<T: DeserializeOwned + Send + 'static>(
        &self,
        store: &Store,
        key: &str,
        what: &'static str,
    ) -> Result<Lookup<T>> {
        let (bytes, version) = match store.get_bytes_max(key, MAX_RECORD).await {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(Lookup::Missing),
            Err(Error::TooLarge { size, max, .. }) => {
                return Ok(self.forged(
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
            Err(reason) => self.forged(key, reason, Some(version)),
        })
    }

    fn forged<T>(&self, key: &str, reason: String, version: Option<Version>) -> Lookup<T> {
        tracing::warn!(
            "ignoring the cache record `{key}` in the store: {reason}; building it again"
        );
        Lookup::Forged {
            reason,
            version: version.unwrap_or_else(|| Version(String::new())),
        }
    }

    /// Signs `record` and writes it at `key`: create-only, or replacing the
    /// forgery `found` held. Losing either race is fine: whoever won wrote
    /// a record of the same step or stage.
    pub async fn write<T: Serialize>(
        &self,
        store: &Store,
        key: &str,
        record: &T,
        found: &Lookup<impl Sized>,
    ) -> Result<()> {
        let payload = serde_json::to_string_pretty(record).map_err(|e| Error::Usage {
            message: format!("cannot serialise the record `{key}`: {e}"),
            hint: None,
        })?;
        let signature = self
            .key
            .sign_detached(payload.as_bytes(), self.time, Encoding::Armored)
            .map_err(Error::Signing)?;
        let envelope = Envelope {
            payload,
            signature: String::from_utf8_lossy(&signature).into_owned(),
        };
        let bytes = serde_json::to_vec_pretty(&envelope).map_err(|e| Error::Usage {
            message: format!("cannot serialise the record `{key}`: {e}"),
            hint: None,
        })?;
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
