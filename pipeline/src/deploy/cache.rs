//! The fetch state: the selected artifacts downloaded into the first
//! target's cache (`DIR/.pipe/cache/blobs`), verified there, and linked
//! into the other targets' caches.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::resolve::Resolved;
use super::unpack::Format;
use super::{CACHE_DIR, Fetched, Timings, no_target};
use crate::artifact::Artifact;
use crate::build::verify::check_blob;
use crate::fault::point as fault_point;
use crate::store::{BlobRef, Store, digest};
use crate::{Error, Result};

/// The first target's cache, which holds the artifacts (the others get
/// links to them).
pub(super) fn first_cache(targets: &[PathBuf]) -> Result<PathBuf> {
    targets
        .first()
        .map(|t| t.join(CACHE_DIR))
        .ok_or_else(no_target)
}

pub(super) fn blob_file(blob: &BlobRef) -> PathBuf {
    Path::new("blobs").join(&blob.blake3)
}

/// Fetches the selected artifacts into the first target's cache, verifies
/// them there, and links them into the other targets' caches.
pub(super) async fn fetch_into_caches(
    store: Option<&Store>,
    targets: &[PathBuf],
    resolved: &Resolved,
    t: &mut Timings,
) -> Result<Vec<Fetched>> {
    let cache = first_cache(targets)?;
    let started = Instant::now();
    let fetched = fetch_artifacts(store, &cache, &resolved.selected).await?;
    t.fetch += started.elapsed().as_secs_f64();
    fault_point("deploy-fetched");
    let started = Instant::now();
    verify_cached(&cache, &resolved.selected, &fetched).await?;
    t.verify += started.elapsed().as_secs_f64();
    fault_point("deploy-verified");
    for dir in targets.iter().skip(1) {
        share_blobs(&cache, &dir.join(CACHE_DIR), &resolved.selected)?;
    }
    Ok(fetched)
}

async fn fetch_artifacts(
    store: Option<&Store>,
    cache: &Path,
    selected: &[(Artifact, Format)],
) -> Result<Vec<Fetched>> {
    let blobs = cache.join("blobs");
    std::fs::create_dir_all(&blobs).map_err(|e| Error::io(&blobs, e))?;
    let jobs = selected.iter().map(|(a, _)| async {
        let path = cache.join(blob_file(&a.blob));
        let cached = std::fs::metadata(&path).is_ok_and(|m| m.len() == a.blob.size);
        if !cached {
            let Some(store) = store else {
                return Err(Error::Usage {
                    message: format!(
                        "`{}` is not in the cache at {} and the store cannot be reached",
                        a.name,
                        cache.display()
                    ),
                    hint: Some("run `pipe fetch` while the store is reachable".into()),
                });
            };
            tracing::info!(artifact = %a.name, size = a.blob.size, "fetching");
            store.get_blob_to_file(&a.blob, &path).await?;
        }
        Ok(Fetched {
            name: a.name.clone(),
            size: a.blob.size,
            cached,
        })
    });
    futures::future::try_join_all(jobs).await
}

/// Artifacts downloaded just now were checked while streaming; those found
/// in the cache are hashed again (both digests) before they are believed.
async fn verify_cached(
    cache: &Path,
    selected: &[(Artifact, Format)],
    fetched: &[Fetched],
) -> Result<()> {
    for ((a, _), f) in selected.iter().zip(fetched) {
        if f.cached {
            let path = cache.join(blob_file(&a.blob));
            let actual = digest::hash_file(&path).await?;
            if let Err(e) = check_blob(&a.name, &a.blob, &actual) {
                // A damaged cache entry is removed, so the next run fetches it.
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Hard-links (or copies) the selected blobs from one cache into another.
fn share_blobs(from: &Path, to: &Path, selected: &[(Artifact, Format)]) -> Result<()> {
    std::fs::create_dir_all(to.join("blobs")).map_err(|e| Error::io(to, e))?;
    for (a, _) in selected {
        let (src, dst) = (from.join(blob_file(&a.blob)), to.join(blob_file(&a.blob)));
        if std::fs::metadata(&dst).is_ok_and(|m| m.len() == a.blob.size) {
            continue;
        }
        let _ = std::fs::remove_file(&dst);
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&dst, e))?;
        }
    }
    Ok(())
}
