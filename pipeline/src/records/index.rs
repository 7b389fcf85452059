//! The package index of a build: what the consumer views need of every
//! artifact (a .deb's `Packages` stanza, an .rpm's `primary`/`filelists`/
//! `other` fragments), recorded when the artifact is built so that no
//! promotion reads an artifact again. It is kept in the manifest's shards,
//! next to the artifacts it describes, which the signed manifest names by
//! digest (`super::manifest::load_shards` checks them).

use std::collections::BTreeMap;
use std::sync::Arc;

use repo_index::{apt, yum};
use serde::{Deserialize, Serialize};

use keys::Keyring;

use super::manifest::{build_key, files};
use crate::build::verify::verify_records_with;
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

impl Fragment {
    /// The artifact it describes, and that artifact's sha256.
    pub(crate) fn entry(&self) -> (&str, &str) {
        match self {
            Fragment::Deb(d) => (&d.artifact, &d.sha256),
            Fragment::Rpm(r) => (&r.artifact, &r.sha256),
            Fragment::Image(i) => (&i.artifact, &i.sha256),
            Fragment::Machine(m) => (&m.artifact, &m.sha256),
        }
    }
}

impl BuildIndex {
    /// The index of a build made of these artifacts, in their order.
    pub(crate) fn from_fragments<'a>(
        fragments: impl IntoIterator<Item = &'a Fragment>,
    ) -> BuildIndex {
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

/// Loads `build`'s signed records and package index from the store, and
/// believes them only once they verify against `keyring` (the project's
/// keys): the manifest and provenance signatures, the manifest's digest
/// being the build id, the index's blake3 being the one the signed manifest
/// names, and every indexed artifact being one of the manifest's with its
/// digest. Anything else is exit 3, before a promotion, rollback or refresh
/// signs anything. Errors (exit 2) when the build is not published.
pub async fn load(store: &Store, build: &str, keyring: &Keyring) -> Result<Published> {
    Ok(load_verified(store, build, keyring).await?.published)
}

/// [`load`], taking the manifest's shards from `cache` where this machine
/// has them (the build's own directory, or shards it read before): only the
/// others are fetched. What a shard's bytes are is decided by the signed
/// manifest alone, so where they come from does not matter: each is checked
/// against the digests the signed root names (`super::manifest::load_shards`),
/// and a local copy that does not have the digest its name says is not used.
pub async fn load_cached(
    store: &Store,
    build: &str,
    keyring: &Keyring,
    cache: &ShardCache,
) -> Result<Published> {
    Ok(load_verified_with(store, build, keyring, Some(cache))
        .await?
        .published)
}

/// What [`load_verified`] checked: the index, and the signed records it was
/// checked against, for a caller that uses them too (the registry push
/// attaches the provenance and reads image parts from the manifest); a
/// second read of the store would be a read nobody verified.
pub(crate) struct Verified {
    /// The build's package index.
    pub published: Published,
    /// The signed manifest.
    pub manifest: super::Manifest,
    /// `provenance.json` and its signature, as verified.
    pub provenance: (bytes::Bytes, bytes::Bytes),
}

/// [`load`], keeping the verified manifest and provenance.
pub(crate) async fn load_verified(
    store: &Store,
    build: &str,
    keyring: &Keyring,
) -> Result<Verified> {
    load_verified_with(store, build, keyring, None).await
}

async fn load_verified_with(
    store: &Store,
    build: &str,
    keyring: &Keyring,
    cache: Option<&ShardCache>,
) -> Result<Verified> {
    let manifest_key = build_key(build, files::MANIFEST);
    if store.head(&manifest_key).await?.is_none() {
        return Err(Error::Usage {
            message: format!("build `{build}` is not published in {}", store.url()),
            hint: Some("run `pipe publish` first: a promotion only moves metadata".into()),
        });
    }
    let (records, fetched) = read_records_with(store, build, cache).await?;
    // The inputs are not needed here (nor read: half of a shard's bytes).
    let signed = verify_records_with(
        keyring,
        |name| {
            records
                .get(name)
                .cloned()
                .ok_or_else(|| format!("`{name}` of build `{build}` is missing"))
        },
        false,
    )
    .map_err(|e| match e {
        Error::Verify { what, detail } => Error::Verify {
            what: format!("build `{build}` in the store, {what}"),
            detail,
        },
        e => e,
    })?;
    let manifest = signed.manifest;
    if let Some(cache) = cache {
        // Verified: the shards fetched are kept for the next load.
        cache.keep(&records, &fetched);
    }
    if manifest.build != build {
        return Err(Error::Verify {
            what: manifest_key,
            detail: format!(
                "is signed, but for build `{}`, not `{build}`",
                manifest.build
            ),
        });
    }
    let rpm_blobs = manifest
        .artifacts
        .iter()
        .filter(|a| a.kind == crate::artifact::ArtifactKind::Rpm)
        .map(|a| (a.name.clone(), a.blob.key()))
        .collect();
    let record = |name: &str| {
        records
            .get(name)
            .map(|b| bytes::Bytes::from(b.clone()))
            .unwrap_or_default()
    };
    Ok(Verified {
        published: Published {
            build: build.to_string(),
            index: Arc::new(signed.index),
            rpm_blobs: Arc::new(rpm_blobs),
        },
        provenance: (record(files::PROVENANCE), record(files::PROVENANCE_SIG)),
        manifest,
    })
}

/// A build's record files as the store has them, each capped: the manifest,
/// the provenance, their signatures, and the shards the (not yet verified)
/// manifest names, by file name ([`files`], [`crate::store::layout::manifest_shard`]).
/// A missing one is left out: the verification says so.
pub(crate) async fn read_records(store: &Store, build: &str) -> Result<BTreeMap<String, Vec<u8>>> {
    Ok(read_records_with(store, build, None).await?.0)
}

/// [`read_records`], the shards `cache` has taken from it; with the names
/// of the shards read from the store.
async fn read_records_with(
    store: &Store,
    build: &str,
    cache: Option<&ShardCache>,
) -> Result<(BTreeMap<String, Vec<u8>>, Vec<String>)> {
    use futures::{StreamExt, TryStreamExt, stream};
    let mut records = BTreeMap::new();
    for name in RECORDS {
        if let Some((bytes, _)) = store
            .get_bytes_max(&build_key(build, name), crate::build::verify::MAX_RECORD)
            .await?
        {
            records.insert(name.to_string(), bytes.to_vec());
        }
    }
    let mut names = records
        .get(files::MANIFEST)
        .map(|m| super::manifest::shard_names(m))
        .unwrap_or_default();
    if let Some(cache) = cache {
        let local: Vec<(String, Vec<u8>)> = {
            let (cache, build, names) = (cache.clone(), build.to_string(), names.clone());
            crate::store::digest::spawn_blocking(move || {
                Ok(names
                    .iter()
                    .filter_map(|n| Some((n.clone(), cache.get(&build, n)?)))
                    .collect())
            })
            .await?
        };
        names.retain(|n| !local.iter().any(|(l, _)| l == n));
        tracing::debug!(
            local = local.len(),
            fetched = names.len(),
            "manifest shards"
        );
        records.extend(local);
    }
    let fetched = names.clone();
    let shards: Vec<(String, Option<Vec<u8>>)> = stream::iter(names)
        .map(|name| async move {
            let bytes = store
                .get_bytes_max(&name, super::manifest::MAX_SHARD)
                .await?
                .map(|(b, _)| b.to_vec());
            Ok::<_, Error>((name, bytes))
        })
        .buffered(16)
        .try_collect()
        .await?;
    for (name, bytes) in shards {
        if let Some(bytes) = bytes {
            records.insert(name, bytes);
        }
    }
    Ok((records, fetched))
}

/// The records of a build [`load`] verifies, besides its shards.
pub(crate) const RECORDS: [&str; 4] = [
    files::MANIFEST,
    files::MANIFEST_SIG,
    files::PROVENANCE,
    files::PROVENANCE_SIG,
];

/// Manifest shards this machine has: those of its own builds
/// (`.pipe/builds/<id>/manifests/…`) and those it read from a store before
/// (`.pipe/shards/manifests/…`). A shard is named by its blake3, and a
/// local copy is used only when its bytes have that digest; the signed
/// manifest's digests are checked after that as for any shard.
#[derive(Debug, Clone)]
pub struct ShardCache {
    project: std::path::PathBuf,
}

/// Shards kept in `.pipe/shards` beyond those of the last build loaded are
/// removed once there are more than this many.
const CACHE_KEEP: usize = 1024;

impl ShardCache {
    /// The shards of the project in `project_dir`.
    pub fn new(project_dir: &std::path::Path) -> ShardCache {
        ShardCache {
            project: project_dir.to_path_buf(),
        }
    }

    fn dir(&self) -> std::path::PathBuf {
        self.project.join(".pipe/shards")
    }

    /// The local copy of shard `name` (`manifests/<fan>/<blake3>.json`) of
    /// `build`, when there is one whose blake3 is the one its name says.
    fn get(&self, build: &str, name: &str) -> Option<Vec<u8>> {
        let want = name
            .strip_prefix(crate::store::layout::MANIFEST_SHARDS)?
            .split_once('/')?
            .1
            .strip_suffix(".json")?;
        [
            self.project
                .join(crate::build::BUILDS_DIR)
                .join(build)
                .join(name),
            self.dir().join(name),
        ]
        .into_iter()
        .find_map(|path| {
            let file = std::fs::File::open(&path).ok()?;
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(file, super::manifest::MAX_SHARD + 1),
                &mut bytes,
            )
            .ok()?;
            (blake3::hash(&bytes).to_hex().as_str() == want).then_some(bytes)
        })
    }

    /// Keeps the shards read from the store (`fetched`, verified: the
    /// manifest that names them is) that `records` holds; failing to is
    /// only logged (the next load fetches them again). Prunes the cache
    /// when it grew past [`CACHE_KEEP`], keeping the shards of `records`.
    fn keep(&self, records: &BTreeMap<String, Vec<u8>>, fetched: &[String]) {
        let dir = self.dir();
        for name in fetched {
            let path = dir.join(name);
            let Some(bytes) = records.get(name) else {
                continue;
            };
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| {
                    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
                    std::io::Write::write_all(&mut tmp, bytes)?;
                    tmp.persist(&path).map(|_| ()).map_err(|e| e.error)
                });
            if let Err(e) = written {
                tracing::debug!(path = %path.display(), error = %e, "manifest shard not cached");
            }
        }
        let kept: Vec<std::path::PathBuf> =
            std::fs::read_dir(dir.join(crate::store::layout::MANIFEST_SHARDS))
                .into_iter()
                .flatten()
                .flatten()
                .flat_map(|fan| {
                    std::fs::read_dir(fan.path())
                        .into_iter()
                        .flatten()
                        .flatten()
                })
                .map(|f| f.path())
                .collect();
        if kept.len() > CACHE_KEEP + records.len() {
            for path in kept {
                let name = path
                    .strip_prefix(&dir)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !records.contains_key(&name) {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
}
