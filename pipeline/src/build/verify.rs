//! `pipe verify`: a build's signatures, and every artifact's digests and size
//! against them, checked against a keyring the caller gives, never one found
//! next to the build.

use std::path::Path;

use keys::{Keyring, Verified};
use serde::Serialize;
use serde_json::Value;

use super::files;
use super::record::Manifest;
use crate::artifact::Artifact;
use crate::records::manifest::{Input, ShardRef, build_key};
use crate::store::{BlobRef, Store, digest};
use crate::{Error, Result};

/// One check that passed.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// What was found.
    pub detail: String,
}

/// Everything [`verify_build`] checked, and what the build holds: the
/// records `pipe verify --json` lists (a script finds an artifact's blob or
/// a shard's key there, from records whose signature was just checked).
#[derive(Debug, Serialize)]
pub struct Report {
    /// The build id.
    pub build: String,
    /// Who signed the manifest.
    pub signer: Verified,
    /// Every check, in the order made.
    pub checks: Vec<Check>,
    /// Every artifact, from the verified shards.
    pub artifacts: Vec<Artifact>,
    /// Every input file, from the verified shards.
    pub inputs: Vec<Input>,
    /// The shards the signed manifest names.
    pub shards: Vec<ShardRef>,
}

impl Report {
    fn new(manifest: Manifest, signer: Verified, checks: Vec<Check>) -> Report {
        Report {
            build: manifest.build,
            signer,
            checks,
            artifacts: manifest.artifacts,
            inputs: manifest.inputs,
            shards: manifest.shards,
        }
    }
}

/// A build's manifest whose signature, and whose provenance's signature and
/// subjects, verified against a keyring.
#[derive(Debug)]
pub(crate) struct SignedBuild {
    /// The manifest, believed, with the artifacts and inputs of its shards.
    pub manifest: Manifest,
    /// What the views need of its artifacts, from the same shards.
    pub index: crate::records::BuildIndex,
    /// Who signed it.
    pub signer: Verified,
    /// Every check made, in order.
    pub checks: Vec<Check>,
}

/// Verifies the build in `dir` against `keyring`. The first failure is the
/// error; it names the file and what differed.
pub async fn verify_build(dir: &Path, keyring: &Keyring) -> Result<Report> {
    let SignedBuild {
        manifest,
        signer,
        mut checks,
        ..
    } = verify_records(keyring, |name| {
        std::fs::read(dir.join(name)).map_err(|e| e.to_string())
    })?;
    for a in &manifest.artifacts {
        let path = dir.join(&a.name);
        let actual = digest::hash_file(&path).await.map_err(|e| Error::Verify {
            what: a.name.clone(),
            detail: format!("cannot be read: {e}"),
        })?;
        checks.push(check_blob(&a.name, &a.blob, &actual)?);
    }
    Ok(Report::new(manifest, signer, checks))
}

/// The largest build record (manifest, provenance, signature) read from a
/// store: a manifest of 20,000 packages is about 35 MB.
pub(crate) const MAX_RECORD: u64 = 256 << 20;

/// Verifies the published build `build` in `store` against `keyring`: its
/// records as [`verify_build`] does, then every artifact's blob, streamed
/// and hashed (a blob whose bytes differ from its digest fails, naming its
/// key). Needs no checkout and no local build.
pub async fn verify_published(store: &Store, build: &str, keyring: &Keyring) -> Result<Report> {
    let manifest_key = build_key(build, files::MANIFEST);
    if store.head(&manifest_key).await?.is_none() {
        return Err(Error::Usage {
            message: format!(
                "build `{build}` is not published in {} (no `{manifest_key}`)",
                store.url()
            ),
            hint: Some("`pipe status --store URL` lists the published builds".into()),
        });
    }
    // Each record capped ([`MAX_RECORD`], a shard
    // [`crate::records::manifest::MAX_SHARD`]), a larger one refused.
    let records = crate::records::index::read_records(store, build).await?;
    let SignedBuild {
        manifest,
        signer,
        mut checks,
        ..
    } = verify_records(keyring, |name| {
        records
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no `{name}`"))
    })?;
    if manifest.build != build {
        return Err(Error::Verify {
            what: build_key(build, files::MANIFEST),
            detail: format!("is the manifest of build `{}`", manifest.build),
        });
    }
    for a in &manifest.artifacts {
        let mut reader = store.get_blob(&a.blob).await?;
        tokio::io::copy(&mut reader, &mut tokio::io::sink())
            .await
            .map_err(|e| Error::Verify {
                what: a.name.clone(),
                detail: format!("its blob `{}`: {e}", a.blob.key()),
            })?;
        checks.push(Check {
            what: a.name.clone(),
            detail: format!(
                "{} bytes, sha256 {} (blob {} read and hashed)",
                a.blob.size,
                a.blob.sha256,
                a.blob.key()
            ),
        });
    }
    Ok(Report::new(manifest, signer, checks))
}

/// Verifies a build's records (the files of [`files`], each got by `read`,
/// which says why it could not when it cannot): the signatures of the
/// manifest and the provenance against `keyring`, that the manifest's
/// content is the build it names, and that the provenance's subjects are the
/// manifest's artifacts. Shared by `pipe verify` (a local build directory)
/// and `pipe deploy` (a build in the store), so both trust the same things.
pub(crate) fn verify_records(
    keyring: &Keyring,
    read: impl FnMut(&str) -> std::result::Result<Vec<u8>, String>,
) -> Result<SignedBuild> {
    verify_records_with(keyring, read, true)
}

/// [`verify_records`]; without `inputs`, the manifest's inputs are not read
/// ([`crate::records::manifest::load_shards_with`]).
pub(crate) fn verify_records_with(
    keyring: &Keyring,
    mut read: impl FnMut(&str) -> std::result::Result<Vec<u8>, String>,
    inputs: bool,
) -> Result<SignedBuild> {
    let mut checks = Vec::new();
    // The manifest and the provenance: each read whole and its detached
    // signature checked before anything in it is believed.
    let mut signed = |name: &str, sig: &str| -> Result<(Vec<u8>, Verified)> {
        let mut read = |name: &str| {
            read(name).map_err(|e| Error::Verify {
                what: name.to_string(),
                detail: format!("cannot be read ({e}); a build is only trusted whole"),
            })
        };
        let bytes = read(name)?;
        let signer = verify_signature(keyring, name, &bytes, &read(sig)?)?;
        checks.push(Check {
            what: name.into(),
            detail: format!(
                "signature by {} made {}",
                signer.fingerprint, signer.signed_at
            ),
        });
        Ok((bytes, signer))
    };
    let (manifest_bytes, signer) = signed(files::MANIFEST, files::MANIFEST_SIG)?;
    let (provenance_bytes, _) = signed(files::PROVENANCE, files::PROVENANCE_SIG)?;

    let mut manifest = crate::records::manifest::parse_manifest(&manifest_bytes, files::MANIFEST)
        .map_err(|e| match e {
        Error::Verify { detail, .. } => Error::Verify {
            what: files::MANIFEST.into(),
            detail: format!("signed, but {detail}"),
        },
        e => e,
    })?;
    let resealed = manifest.clone().seal();
    if resealed.build != manifest.build {
        return Err(Error::Verify {
            what: files::MANIFEST.into(),
            detail: format!(
                "names build `{}` but its content is build `{}`",
                manifest.build, resealed.build
            ),
        });
    }
    // The shards: each checked against the digests the signed root names
    // before anything in it is used.
    let index = crate::records::manifest::load_shards_with(&mut manifest, &mut read, inputs)?;
    checks.push(Check {
        what: files::SHARDS.into(),
        detail: format!(
            "{} shard(s) match the digests the manifest names: {} artifact(s), {} input(s)",
            manifest.shards.len(),
            manifest.artifacts.len(),
            manifest.inputs.len()
        ),
    });

    let provenance: Value =
        serde_json::from_slice(&provenance_bytes).map_err(|e| Error::Verify {
            what: files::PROVENANCE.into(),
            detail: format!("signed, but not JSON: {e}"),
        })?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let mut subjects: Vec<(String, String)> = provenance
        .get("subject")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        text(s.get("name")),
                        text(s.get("digest").and_then(|d| d.get("sha256"))),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut expected = super::record::subjects(&manifest);
    subjects.sort();
    expected.sort();
    if subjects != expected {
        return Err(Error::Verify {
            what: files::PROVENANCE.into(),
            detail: "its subjects are not the manifest's shards and images".into(),
        });
    }
    checks.push(Check {
        what: files::PROVENANCE.into(),
        detail: format!("{} subject(s) match the manifest", subjects.len()),
    });
    Ok(SignedBuild {
        manifest,
        index,
        signer,
        checks,
    })
}

/// Compares an artifact's digests and size (`actual`) with what the manifest
/// records (`expected`); the error names the artifact and the first field
/// that differs.
pub(crate) fn check_blob(name: &str, expected: &BlobRef, actual: &BlobRef) -> Result<Check> {
    let compared = [
        ("size", expected.size.to_string(), actual.size.to_string()),
        ("sha256", expected.sha256.clone(), actual.sha256.clone()),
        ("blake3", expected.blake3.clone(), actual.blake3.clone()),
    ];
    for (what, expected, found) in compared {
        if expected != found {
            return Err(Error::Verify {
                what: name.to_string(),
                detail: format!("{what}: expected {expected}, found {found}"),
            });
        }
    }
    Ok(Check {
        what: name.to_string(),
        detail: format!("{} bytes, sha256 {}", expected.size, expected.sha256),
    })
}

fn verify_signature(keyring: &Keyring, what: &str, data: &[u8], sig: &[u8]) -> Result<Verified> {
    keyring
        .verify_detached(data, sig, None)
        .map_err(|e| Error::Verify {
            what: format!("signature of {what}"),
            detail: e.to_string(),
        })
}
