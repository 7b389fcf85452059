//! `pipe publish`: a local build into the store.
//!
//! Blobs first (each skipped when the store has it), then, per package, a
//! create-only record of which bytes a name, version and architecture stand
//! for (so a version can never be reused for other bytes), then the signed
//! manifest and provenance, create-only: a build is visible in the store only
//! once everything it names is there.

use std::path::Path;

use futures::{StreamExt, TryStreamExt, stream};
use serde::Serialize;

use crate::artifact::Artifact;
use crate::kinds;
use crate::records::manifest::{build_key, parse_manifest};
use crate::records::version::{self, VersionRecord};
use crate::records::{BuildIndex, Fragment, Manifest, files};
use crate::store::{Body, Condition, Store, digest::spawn_blocking};
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

/// What [`publish`] did.
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

/// Publishes the build in `dir` (a `.pipe/builds/<id>/` directory).
pub async fn publish(dir: &Path, store: &Store, progress: &dyn Progress) -> Result<PublishReport> {
    publish_with(dir, store, progress, false).await
}

/// [`publish`]; with `read_back`, every blob the store already has is read
/// back and hashed, so a damaged one of the right size is repaired too
/// (without it, a blob missing or of the wrong size is).
pub async fn publish_with(
    dir: &Path,
    store: &Store,
    progress: &dyn Progress,
    read_back: bool,
) -> Result<PublishReport> {
    let manifest_bytes = std::fs::read(dir.join(files::MANIFEST))
        .map_err(|e| Error::io(dir.join(files::MANIFEST), e))?;
    let manifest = parse_manifest(
        &manifest_bytes,
        &dir.join(files::MANIFEST).display().to_string(),
    )?;

    // Refuse before writing anything: a version already published with other
    // bytes. An artifact whose version record names these bytes was
    // published before, blob and pool copy included (both are written
    // before the record), so it needs nothing more.
    let existing: Vec<Option<VersionRecord>> = stream::iter(&manifest.artifacts)
        .map(|a| async move {
            if kinds::of(a.kind).versioned() {
                version::read(store, &a.name).await
            } else {
                Ok(None)
            }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
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

    let mut report = PublishReport {
        build: manifest.build.clone(),
        artifacts: Vec::new(),
        bytes_uploaded: 0,
        bytes_skipped: 0,
        newly_published: false,
    };
    // Blobs, pool copies, version records and the index are many objects
    // that nothing names until the manifest: written without a flush each,
    // then made durable together before the manifest goes in.
    let batch = store.batch();
    let store = &batch;
    let build = manifest.build.as_str();
    let uploads: Vec<Uploaded> = stream::iter(manifest.artifacts.iter().zip(&existing))
        .map(|(a, existing)| async move {
            let (uploaded, repaired) = if existing.is_some() {
                // Published before: the store's copy may have been lost or
                // damaged since. Repair it from the local build.
                let r = repair_artifact(dir, store, a, read_back).await?;
                (r, r)
            } else {
                (publish_artifact(dir, store, a, build).await?, false)
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

    // What the repository indices need of each package: recorded by the
    // build (or read from the packages now, for a build made before that),
    // so that no promotion reads a package again.
    let index_key = build_key(&manifest.build, files::INDEX);
    if store.head(&index_key).await?.is_none() {
        let local = dir.join(files::INDEX);
        let body = if local.exists() {
            Body::from_file(local)
        } else {
            let (dir_owned, manifest_owned) = (dir.to_path_buf(), manifest.clone());
            let index = spawn_blocking(move || describe_build(&dir_owned, &manifest_owned)).await?;
            Body::from_bytes(serde_json::to_vec(&index).expect("serialises"))
        };
        match store.put(&index_key, body, Condition::IfAbsent).await {
            Ok(_) | Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }

    store.flush().await?;
    crate::fault::hold("publish-before-manifest");

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
        match store
            .put(
                &build_key(&manifest.build, file),
                Body::from_bytes(bytes),
                Condition::IfAbsent,
            )
            .await
        {
            Ok(_) => report.newly_published = true,
            // Published before (provenance differs per run; the first stays).
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}

/// Stores one artifact not published before: its blob (unless the store
/// has it), its copy in the pool, then its version record. True when bytes
/// were sent.
async fn publish_artifact(dir: &Path, store: &Store, a: &Artifact, build: &str) -> Result<bool> {
    let put = store.put_blob_file_as(&dir.join(&a.name), &a.blob).await?;
    if put.blob != a.blob {
        return Err(local_differs(a, &put.blob, "the file differs"));
    }
    let uploaded = put.uploaded;
    // Each package once in the pool, where apt and yum clients fetch it: a
    // copy made inside the store, never sent again.
    if let Some(pool) = kinds::of(a.kind).pool_key(a) {
        store.copy_if_absent(&a.blob.key(), &pool).await?;
    }
    if kinds::of(a.kind).versioned() {
        version::put(store, a, build).await?;
    }
    Ok(uploaded)
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

/// Checks the store's copy of an artifact published before (its size, and
/// with `read_back` its bytes); uploads it again when it is missing or
/// damaged, and remakes its pool copy (a hard link would still hold the
/// damaged bytes). True when it did.
async fn repair_artifact(dir: &Path, store: &Store, a: &Artifact, read_back: bool) -> Result<bool> {
    let key = a.blob.key();
    let found = store.stat(&key).await?;
    let intact = match &found {
        Some(l) if l.meta.size == a.blob.size => !read_back || store.blob_intact(&a.blob).await?,
        _ => false,
    };
    if intact {
        // Reused, not written: freshened when old, with its pool copy (its
        // own object on S3), so `pipe gc` keeps both until this build is
        // visible.
        if let Some(l) = &found
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

/// Records what the views need of every artifact of the build in `dir` (a
/// `.pipe/builds/<id>/` directory), reading each one, on all cores.
/// Blocking. For builds made before the stages recorded their [`Fragment`].
fn describe_build(dir: &Path, manifest: &Manifest) -> Result<BuildIndex> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let artifacts = &manifest.artifacts;
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(artifacts.len().max(1));
    let mut done: Vec<(usize, Result<Option<Fragment>>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(a) = artifacts.get(i) else { break };
                        let path = dir.join(&a.name);
                        out.push((
                            i,
                            kinds::of(a.kind).describe(&path, a, manifest.source_date_epoch),
                        ));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("recording thread panicked"))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    let fragments = done
        .into_iter()
        .map(|(_, f)| f)
        .collect::<Result<Vec<_>>>()?;
    Ok(BuildIndex::from_fragments(fragments.iter().flatten()))
}
