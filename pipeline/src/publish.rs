//! `pipe publish`: a local build into the store.
//!
//! One read of the package catalog (`catalog`: which bytes every name,
//! version and architecture published stands for, so a version can never be
//! reused for other bytes) and one listing of the blobs, whatever the number
//! of packages; then per new package its blob and its pool copy (two
//! requests); then the manifest's shards the store does not have (one
//! listing says which); then the new versions into the catalog (the changed shards
//! and its root, by compare-and-swap); then the signed manifest and
//! provenance, create-only: a build is visible in the store only once
//! everything it names is there.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use futures::{StreamExt, TryStreamExt, stream};
use serde::Serialize;

use crate::artifact::Artifact;
use crate::kinds;
use crate::records::catalog;
use crate::records::files;
use crate::records::manifest::{build_key, read_local};
use crate::store::{Body, Condition, Listed, Store, layout};
use crate::{Error, Result};

/// What one artifact's upload did.
#[derive(Debug, Clone, Serialize)]
pub struct Uploaded {
    /// Artifact file name.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// False when the store already had the blob.
    pub uploaded: bool,
    /// True when the store's copy was missing or damaged and was uploaded
    /// again (with its pool copy).
    pub repaired: bool,
}

/// What [`publish_with`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PublishReport {
    /// The build id.
    pub build: String,
    /// Per artifact.
    pub artifacts: Vec<Uploaded>,
    /// Bytes sent.
    pub bytes_uploaded: u64,
    /// Bytes the store already had.
    pub bytes_skipped: u64,
    /// Bytes of build metadata written (index, manifest, provenance,
    /// signatures, package catalog).
    pub metadata_uploaded: u64,
    /// False when the build was already published (nothing was written).
    pub newly_published: bool,
}

/// Reports progress in bytes; the CLI turns it into a progress bar.
pub trait Progress: Send + Sync {
    /// `n` more bytes handled (uploaded or found present).
    fn advance(&self, n: u64);
}

/// How many artifacts are checked or sent at once: store round trips
/// overlap (S3 latency, a local store's small-file I/O), and a single
/// upload already streams.
const CONCURRENCY: usize = 16;

/// Publishes the local build in `dir` to `store`; with `read_back`, every
/// blob the store already has is read back and hashed, so a damaged one of
/// the right size is repaired too (without it, a blob missing or of the
/// wrong size is).
pub async fn publish_with(
    dir: &Path,
    store: &Store,
    progress: &dyn Progress,
    read_back: bool,
) -> Result<PublishReport> {
    let (manifest, _) = read_local(dir)?;

    // Refuse before writing anything: a version already published with other
    // bytes. One read of the package catalog answers for every artifact,
    // however many were published before.
    let catalog = catalog::read(store).await?;
    let existing: Vec<Option<&catalog::Entry>> = manifest
        .artifacts
        .iter()
        .map(|a| {
            if kinds::of(a.kind).versioned() {
                catalog.packages.get(&a.name)
            } else {
                None
            }
        })
        .collect();
    for (a, existing) in manifest.artifacts.iter().zip(&existing) {
        if let Some(existing) = existing
            && existing.blob.sha256 != a.blob.sha256
        {
            return Err(Error::Usage {
                message: format!(
                    "`{}` is already published with different content (sha256 {} from build {}; this build has {})",
                    a.name, existing.blob.sha256, existing.build, a.blob.sha256
                ),
                hint: Some(
                    "a version cannot be reused: raise `version` in [project] and build again"
                        .into(),
                ),
            });
        }
    }
    // Which blobs the store has, at which size: one listing instead of a
    // request per artifact. An artifact published before whose blob is
    // missing or of another size is repaired; a new one is sent unless its
    // blob is there already.
    // With when each was written: a blob reused from an earlier build is
    // freshened when old, so that `pipe gc` keeps it until this build's
    // manifest names it.
    let listed: HashMap<String, Listed> = store
        .list_modified(layout::BLOBS)
        .await?
        .into_iter()
        .map(|l| (l.meta.key.clone(), l))
        .collect();
    let listed = &listed;

    let mut report = PublishReport {
        build: manifest.build.clone(),
        artifacts: Vec::new(),
        bytes_uploaded: 0,
        bytes_skipped: 0,
        metadata_uploaded: 0,
        newly_published: false,
    };
    // Blobs, pool copies and the index are many objects that nothing names
    // until the manifest: written without a flush each, then made durable
    // together before the catalog and the manifest go in.
    let batch = store.batch();
    let store = &batch;
    let uploads: Vec<Uploaded> = stream::iter(manifest.artifacts.iter().zip(&existing))
        .map(|(a, existing)| async move {
            let stored = listed.get(&a.blob.key());
            let (uploaded, repaired) = if existing.is_some() {
                // Published before: the store's copy may have been lost or
                // damaged since. Repair it from the local build.
                let r = repair_artifact(dir, store, a, stored, read_back).await?;
                (r, r)
            } else {
                (publish_artifact(dir, store, a, stored).await?, false)
            };
            progress.advance(a.blob.size);
            Ok::<_, Error>(Uploaded {
                name: a.name.clone(),
                size: a.blob.size,
                uploaded,
                repaired,
            })
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    for u in uploads {
        if u.uploaded {
            report.bytes_uploaded += u.size;
        } else {
            report.bytes_skipped += u.size;
        }
        report.artifacts.push(u);
    }

    // The manifest's shards (its artifacts, inputs and index fragments, by
    // bucket), named by their content: one listing says which the store
    // has from earlier builds; only the others are sent.
    let listed_shards: HashSet<String> = store
        .list(layout::MANIFEST_SHARDS)
        .await?
        .into_iter()
        .map(|m| m.key)
        .collect();
    let sent: Vec<u64> = stream::iter(manifest.shards.iter().filter_map(|r| {
        let key = layout::manifest_shard(&r.blob.blake3);
        (!listed_shards.contains(&key)).then_some(key)
    }))
    .map(|key: String| async move {
        let path = dir.join(&key);
        let size = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .len();
        match store
            .put(&key, Body::from_file(path), Condition::IfAbsent)
            .await
        {
            Ok(_) => Ok(size),
            Err(Error::AlreadyExists { .. }) => Ok(0),
            Err(e) => Err(e),
        }
    })
    .buffer_unordered(CONCURRENCY)
    .try_collect()
    .await?;
    report.metadata_uploaded += sent.iter().sum::<u64>();

    store.flush().await?;
    crate::fault::hold("publish-before-manifest");

    // The new versions into the package catalog, before the manifest makes
    // the build visible: a version is claimed once its bytes are stored.
    let new: BTreeMap<String, catalog::Entry> = manifest
        .artifacts
        .iter()
        .zip(&existing)
        .filter(|(a, e)| e.is_none() && kinds::of(a.kind).versioned())
        .map(|(a, _)| {
            (
                a.name.clone(),
                catalog::Entry {
                    blob: a.blob.clone(),
                    build: manifest.build.clone(),
                },
            )
        })
        .collect();
    report.metadata_uploaded += catalog::add(store, catalog.clone(), &new).await?.bytes;

    // The signatures and provenance go in before the manifest: the manifest
    // is what makes a build visible.
    for file in [
        files::PROVENANCE,
        files::PROVENANCE_SIG,
        files::MANIFEST_SIG,
        files::MANIFEST,
    ] {
        let path = dir.join(file);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let size = bytes.len() as u64;
        match store
            .put(
                &build_key(&manifest.build, file),
                Body::from_bytes(bytes),
                Condition::IfAbsent,
            )
            .await
        {
            Ok(_) => {
                report.newly_published = true;
                report.metadata_uploaded += size;
            }
            // Published before (provenance differs per run; the first stays).
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// Stores one artifact not published before: its blob (unless the listing
/// found it, `stored` being its size there), then its copy in the pool:
/// two requests. True when bytes were sent.
async fn publish_artifact(
    dir: &Path,
    store: &Store,
    a: &Artifact,
    stored: Option<&Listed>,
) -> Result<bool> {
    let put = store
        .put_blob_file_listed(&dir.join(&a.name), &a.blob, stored)
        .await?;
    if put.blob != a.blob {
        return Err(local_differs(a, &put.blob, "the file differs"));
    }
    // Each package once in the pool, where apt and yum clients fetch it: a
    // copy made inside the store, never sent again.
    if let Some(pool) = kinds::of(a.kind).pool_key(a) {
        store.copy_if_absent(&a.blob.key(), &pool).await?;
    }
    Ok(put.uploaded)
}

/// The refusal of a local artifact file that is not what the manifest says.
fn local_differs(a: &Artifact, found: &crate::store::BlobRef, what: &str) -> Error {
    Error::Verify {
        what: a.name.clone(),
        detail: format!(
            "{what} from the manifest: expected sha256 {}, found {}",
            a.blob.sha256, found.sha256
        ),
    }
}

/// Checks the store's copy of an artifact published before (its size as
/// listed, `stored`, and
/// with `read_back` its bytes); uploads it again when it is missing or
/// damaged, and remakes its pool copy (a hard link would still hold the
/// damaged bytes). True when it did.
async fn repair_artifact(
    dir: &Path,
    store: &Store,
    a: &Artifact,
    stored: Option<&Listed>,
    read_back: bool,
) -> Result<bool> {
    let key = a.blob.key();
    let intact = match stored {
        Some(l) if l.meta.size == a.blob.size => !read_back || store.blob_intact(&a.blob).await?,
        _ => false,
    };
    if intact {
        // Reused, not written: freshened when old, with its pool copy (its
        // own object on S3), so `pipe gc` keeps both until this build is
        // visible.
        if let Some(l) = stored
            && store.freshen_if_older(l, store.freshen_after()).await?
            && let Some(pool) = kinds::of(a.kind).pool_key(a)
        {
            store.copy_if_absent(&key, &pool).await?;
        }
        return Ok(false);
    }
    let put = store.replace_blob_file(&dir.join(&a.name), &a.blob).await?;
    if put.blob != a.blob {
        return Err(local_differs(
            a,
            &put.blob,
            "the store's copy is missing or damaged, and the local file differs too",
        ));
    }
    if let Some(pool) = kinds::of(a.kind).pool_key(a) {
        store.delete(&pool).await?;
        store.copy_if_absent(&key, &pool).await?;
    }
    Ok(true)
}
