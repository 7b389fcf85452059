//! The package index of a build: `builds/<id>/index.json`, what the consumer
//! views need of every artifact (a .deb's `Packages` stanza, an .rpm's
//! `primary`/`filelists`/`other` fragments), recorded when the artifact is
//! built so that no promotion reads an artifact again. The index is not
//! signed itself: [`load`] checks it against the signed manifest.

use std::collections::BTreeMap;
use std::sync::Arc;

use repo_index::{apt, yum};
use serde::{Deserialize, Serialize};

use super::manifest::{Manifest, build_key, files, published_manifest};
use crate::store::Store;
use crate::{Error, Result};

const INDEX_FORMAT: u32 = 1;

/// What the views need of every artifact of one build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildIndex {
    /// Format of this record.
    pub format: u32,
    /// Every .deb.
    pub debs: Vec<IndexedDeb>,
    /// Every .rpm.
    pub rpms: Vec<IndexedRpm>,
    /// Every OCI image (by its manifest artifact).
    #[serde(default)]
    pub images: Vec<IndexedImage>,
    /// Every machine disk image (absent in indexes written before machines).
    #[serde(default)]
    pub machines: Vec<IndexedMachine>,
}

/// An OCI image of the build: the artifact that is its manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexedImage {
    /// The image name (`[images.NAME]`).
    pub image: String,
    /// The manifest's artifact name.
    pub artifact: String,
    /// SHA-256 of the manifest, as in the build manifest: the image digest.
    pub sha256: String,
    /// The manifest's blob in the store.
    pub blob: crate::store::BlobRef,
}

/// A machine disk image: what the machine pointer of an environment says
/// about it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IndexedMachine {
    /// Artifact file name (`web.raw`).
    pub artifact: String,
    /// The machine (`web` of `[machines.web]`).
    pub machine: String,
    /// `raw` or `qcow2`.
    pub format: String,
    /// SHA-256 of the file, as in the build manifest.
    pub sha256: String,
    /// BLAKE3 of the file: its blob's name.
    pub blake3: String,
    /// Size in bytes.
    pub size: u64,
}

/// A .deb's rendered `Packages` stanza.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexedDeb {
    /// Artifact file name.
    pub artifact: String,
    /// SHA-256 of the file, as in the build manifest.
    pub sha256: String,
    /// The stanza.
    pub stanza: apt::Stanza,
}

/// An .rpm's rendered `primary`/`filelists`/`other` fragments.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexedRpm {
    /// Artifact file name.
    pub artifact: String,
    /// SHA-256 of the file, as in the build manifest.
    pub sha256: String,
    /// The fragments.
    pub xml: yum::PackageXml,
}

/// One artifact's part of a [`BuildIndex`], made by its kind
/// ([`crate::kinds::Kind::describe`]) and cached with its stage record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Fragment {
    /// A .deb.
    Deb(IndexedDeb),
    /// An .rpm.
    Rpm(Box<IndexedRpm>),
    /// An OCI image's manifest.
    Image(IndexedImage),
    /// A machine disk image.
    Machine(IndexedMachine),
}

impl BuildIndex {
    /// The index of a build made of these artifacts, in their order.
    pub fn from_fragments<'a>(fragments: impl IntoIterator<Item = &'a Fragment>) -> BuildIndex {
        let mut index = BuildIndex {
            format: INDEX_FORMAT,
            debs: Vec::new(),
            rpms: Vec::new(),
            images: Vec::new(),
            machines: Vec::new(),
        };
        for f in fragments {
            match f {
                Fragment::Deb(d) => index.debs.push(d.clone()),
                Fragment::Rpm(r) => index.rpms.push((**r).clone()),
                Fragment::Image(i) => index.images.push(i.clone()),
                Fragment::Machine(m) => index.machines.push(m.clone()),
            }
        }
        index
    }

    /// Every indexed artifact with its sha256.
    fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.debs
            .iter()
            .map(|d| (d.artifact.as_str(), d.sha256.as_str()))
            .chain(
                self.rpms
                    .iter()
                    .map(|r| (r.artifact.as_str(), r.sha256.as_str())),
            )
            .chain(
                self.images
                    .iter()
                    .map(|i| (i.artifact.as_str(), i.sha256.as_str())),
            )
            .chain(
                self.machines
                    .iter()
                    .map(|m| (m.artifact.as_str(), m.sha256.as_str())),
            )
    }
}

/// A published build: its manifest and its package index, checked against
/// each other. What the views need, loaded before a promotion moves the
/// pointer so that a damaged index stops the promotion instead of leaving
/// an environment whose views cannot follow it.
#[derive(Debug, Clone)]
pub struct Published {
    /// The build id.
    pub build: String,
    /// Its package index.
    pub index: Arc<BuildIndex>,
    /// The blob key of every .rpm, by artifact name, from the signed
    /// manifest: what the yum repository's package copies are made from.
    pub rpm_blobs: Arc<BTreeMap<String, String>>,
}

/// Loads `build`'s manifest and index from the store. Errors when it is not
/// published, and (exit 3) when the index names an artifact the manifest
/// does not, or with another digest.
pub async fn load(store: &Store, build: &str) -> Result<Published> {
    let manifest = published_manifest(store, build)
        .await?
        .ok_or_else(|| Error::Usage {
            message: format!("build `{build}` is not published in {}", store.url()),
            hint: Some("run `pipe publish` first: a promotion only moves metadata".into()),
        })?;
    let index_key = build_key(build, files::INDEX);
    let (index, _) = store
        .get_json::<BuildIndex>(&index_key, "a build index")
        .await?
        .ok_or_else(|| Error::Usage {
            message: format!("build `{build}` has no package index (`{index_key}`)"),
            hint: Some("run `pipe publish` for the build again: it records the index".into()),
        })?;
    check(&index, &manifest, &index_key)?;
    let rpm_blobs = manifest
        .artifacts
        .iter()
        .filter(|a| a.kind == crate::artifact::ArtifactKind::Rpm)
        .map(|a| (a.name.clone(), a.blob.key()))
        .collect();
    Ok(Published {
        build: build.to_string(),
        index: Arc::new(index),
        rpm_blobs: Arc::new(rpm_blobs),
    })
}

/// Every indexed artifact must be an artifact of the signed manifest, with
/// the same digest: the index is not signed itself.
fn check(index: &BuildIndex, manifest: &Manifest, key: &str) -> Result<()> {
    let digests: BTreeMap<&str, &str> = manifest
        .artifacts
        .iter()
        .map(|a| (a.name.as_str(), a.blob.sha256.as_str()))
        .collect();
    for (artifact, sha256) in index.entries() {
        if digests.get(artifact) != Some(&sha256) {
            return Err(Error::Verify {
                what: key.to_string(),
                detail: format!(
                    "lists `{artifact}` with sha256 {sha256}, which the build manifest does not ({})",
                    digests.get(artifact).unwrap_or(&"absent")
                ),
            });
        }
    }
    Ok(())
}
