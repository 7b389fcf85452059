//! The machine-image pointer of each environment: for every machine of the
//! build an environment points at, `machines/NAME/ENV.json` (plain JSON, for
//! convenience) and `machines/NAME/ENV.json.asc` (the same text,
//! clearsigned with the project key: the authoritative one). What an
//! autoscaler reads to start new machines from the promoted image, as it
//! would read a snapshot id:
//!
//! ```json
//! {
//!   "format": 1,
//!   "machine": "web",
//!   "env": "prod",
//!   "build": "<build id>",
//!   "seq": 7,
//!   "images": {
//!     "raw": { "key": "blobs/blake3/ab/ab12...", "size": 536870912, "sha256": "...", "blake3": "..." },
//!     "qcow2": { ... }
//!   },
//!   "provenance": { "key": "builds/<id>/provenance.json", "sha256": "..." }
//! }
//! ```
//!
//! The image digests come from the build's index, checked against its
//! signed manifest before the pointer moved; the provenance is read back and
//! its signature checked with the project key before its digest is signed.
//! The signed object is written first, then the plain one. A machine that a
//! newer build no longer has loses its pointer in that environment.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{Context, Generated, View, ViewKind};
use crate::records::files;
use crate::store::{Condition, layout};
use crate::{Error, Result};

/// Largest provenance document read back (it lists inputs, not contents).
const PROVENANCE_LIMIT: u64 = 64 << 20;

/// The machine pointer view.
pub(super) struct MachinePointer;

/// What the view keeps between generations: the machines it wrote.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Kept {
    machines: Vec<String>,
}

/// One image in a pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PointedImage {
    /// The blob's store key: what a cloud's disk import reads.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256.
    pub sha256: String,
    /// BLAKE3 (the blob's name).
    pub blake3: String,
}

/// The provenance of the build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PointedProvenance {
    /// Its store key.
    pub key: String,
    /// Its SHA-256.
    pub sha256: String,
}

/// `machines/NAME/ENV.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MachinePointerDoc {
    /// Format of this document.
    pub format: u32,
    /// The machine.
    pub machine: String,
    /// The environment.
    pub env: String,
    /// The build.
    pub build: String,
    /// The history entry of the environment that promoted it.
    pub seq: u64,
    /// Per disk format (`raw`, `qcow2`).
    pub images: std::collections::BTreeMap<String, PointedImage>,
    /// The build's provenance.
    pub provenance: PointedProvenance,
}

#[async_trait]
impl View for MachinePointer {
    fn kind(&self) -> ViewKind {
        ViewKind::MachinePointer
    }

    async fn regenerate(&self, cx: &Context<'_>) -> Result<Generated> {
        let prior: Kept = serde_json::from_value(cx.prior.clone()).unwrap_or_default();
        let index = cx.published.index.clone();
        let mut machines: Vec<String> = index.machines.iter().map(|m| m.machine.clone()).collect();
        machines.sort();
        machines.dedup();
        let gone: Vec<String> = prior
            .machines
            .iter()
            .filter(|m| !machines.contains(m))
            .cloned()
            .collect();
        let mut delete_after = Vec::new();
        for m in &gone {
            delete_after.push(layout::machine_pointer(m, cx.env));
            delete_after.push(layout::machine_pointer_signed(m, cx.env));
        }
        if machines.is_empty() {
            return Ok(Generated {
                keep: crate::json::to_value(Kept::default()),
                delete_after,
                ..Default::default()
            });
        }
        let build = &cx.published.build;
        let provenance = provenance(cx, build).await?;
        let mut written = 0;
        for name in &machines {
            let doc = MachinePointerDoc {
                format: 1,
                machine: name.clone(),
                env: cx.env.to_string(),
                build: build.clone(),
                seq: cx.head.entry.seq,
                images: index
                    .machines
                    .iter()
                    .filter(|m| &m.machine == name)
                    .map(|m| {
                        (
                            m.format.clone(),
                            PointedImage {
                                key: layout::blob_key(&m.blake3),
                                size: m.size,
                                sha256: m.sha256.clone(),
                                blake3: m.blake3.clone(),
                            },
                        )
                    })
                    .collect(),
                provenance: provenance.clone(),
            };
            let mut text = crate::json::to_vec_pretty(&doc);
            text.push(b'\n');
            let (key, now, signed_text) = (cx.key.clone(), cx.now, text.clone());
            let signed = crate::store::digest::spawn_blocking(move || {
                key.clearsign(&signed_text, now).map_err(Error::Signing)
            })
            .await?;
            cx.store
                .put(
                    &layout::machine_pointer_signed(name, cx.env),
                    signed.into(),
                    Condition::Overwrite,
                )
                .await?;
            cx.store
                .put(
                    &layout::machine_pointer(name, cx.env),
                    text.into(),
                    Condition::Overwrite,
                )
                .await?;
            written += 2;
        }
        Ok(Generated {
            location: Some(format!("machines/*/{}.json", cx.env)),
            // Images are not packages; the count is of packages listed.
            packages: 0,
            linked: 0,
            written,
            removed: delete_after.len(),
            valid_until: None,
            keep: crate::json::to_value(Kept { machines }),
            delete_after,
        })
    }
}

/// The build's provenance, its signature checked with the project key, and
/// its digest.
async fn provenance(cx: &Context<'_>, build: &str) -> Result<PointedProvenance> {
    let key = layout::build_file(build, files::PROVENANCE);
    let sig_key = layout::build_file(build, files::PROVENANCE_SIG);
    let read = |k: String| async move {
        let (bytes, _) = cx.store.get_bytes(&k).await?.ok_or_else(|| Error::Verify {
            what: k.clone(),
            detail: "the build's provenance is missing from the store".into(),
        })?;
        if bytes.len() as u64 > PROVENANCE_LIMIT {
            return Err(Error::Verify {
                what: k.clone(),
                detail: format!(
                    "{} bytes, more than the {PROVENANCE_LIMIT} a provenance may have",
                    bytes.len()
                ),
            });
        }
        Ok::<_, Error>(bytes)
    };
    let doc = read(key.clone()).await?;
    let sig = read(sig_key.clone()).await?;
    let keyring = cx.key.public_keyring();
    let (doc2, now) = (doc.clone(), cx.now);
    crate::store::digest::spawn_blocking(move || {
        keyring
            .verify_detached(&doc2[..], &sig, Some(now))
            .map(|_| ())
            .map_err(|e| Error::Verify {
                what: sig_key,
                detail: e.to_string(),
            })
    })
    .await?;
    use sha2::Digest;
    Ok(PointedProvenance {
        key,
        sha256: hex::encode(sha2::Sha256::digest(&doc)),
    })
}
