//! `pipe gc`: deletes what nothing refers to.
//!
//! What stays: every build an environment's pointer names, or one of its
//! newest `keep_history` history entries (so those builds stay deployable
//! and `pipe rollback` can go back to them), or a view state shows; every
//! build, cache record, blob, pool file, repository file and upload written
//! within the grace period; every blob and pool file a kept build or a kept
//! cache record names; every repository file an environment's view state
//! names (its current and its retired generation: `views/files.rs` deletes
//! those after `[repository] grace`); the records that are small and
//! matter forever (pointers, history, version records, view states of
//! environments that have a pointer, keys, the root object).
//!
//! What goes, in an order that never leaves a reference dangling: build
//! records (the manifest first: it is what makes a build visible), cache
//! records, repository files of environments that no longer have a pointer
//! (their signed top files first), content-addressed repository files no
//! view names, pool files, blobs, and uploads started and never finished
//! (S3 multipart uploads; a local store's temporary files).
//!
//! # Against a publish or promote running at the same time
//!
//! - The store is listed first and the references read after (pointers,
//!   history, view states, manifests), so an object written after the
//!   listing is never a candidate, and a build a pointer names by the time
//!   references are read is kept.
//! - Nothing written within the grace period is deleted: a publish's blobs,
//!   pool copies and build records, uploaded before its manifest makes the
//!   build visible, survive as long as a publish takes less than the grace.
//!   A publish that finds a blob already stored instead of uploading it
//!   freshens it when it is older than a quarter of the grace
//!   ([`crate::store::Store::freshening`], `[store] gc_grace`), as git
//!   freshens an object it would write again, so a blob about to be named
//!   again is young again.
//! - Right before deleting, the pointers are read once more: a build a
//!   promotion moved a pointer to meanwhile is kept with what it names.
//!   (A promotion of a build older than the grace that nothing named, whose
//!   pointer write lands between that last read and the deletion of the
//!   build's manifest, can still lose it: promote then fails or the
//!   environment names a deleted build, which `pipe promote` of a
//!   republished build repairs.)
//!
//! A gc killed or failing at any point leaves no reference dangling: what it
//! deleted was unreferenced, in the order above; running it again finishes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt, stream};
use serde::Serialize;

use crate::kinds;
use crate::records::history::{SignedEntry, environments, history_key, read_pointer, unix_secs};
use crate::records::manifest::{build_key, files, load_shards, parse_manifest, shard_names};
use crate::records::view::ViewState;
use crate::store::{Listed, MAX_RECORD, Store, Upload, layout};
use crate::{Error, Result, fault};

/// The grace period unless `[store] gc_grace` or `--grace` say otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2 * 86_400);

/// History entries kept per environment unless `[store] gc_keep_history`
/// or `--keep-history` say otherwise.
pub const DEFAULT_KEEP_HISTORY: u32 = 10;

/// Deletions in flight at once.
const CONCURRENCY: usize = 16;

/// How to collect.
#[derive(Debug, Clone)]
pub struct Options {
    /// Report what would be deleted; delete nothing.
    pub dry_run: bool,
    /// The newest entries of each environment's history whose builds stay
    /// (at least 1: the pointer).
    pub keep_history: u32,
    /// Nothing written more recently is deleted.
    pub grace: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dry_run: false,
            keep_history: DEFAULT_KEEP_HISTORY,
            grace: DEFAULT_GRACE,
        }
    }
}

/// What kind of object a removal is, in the order they are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// A file of `builds/<id>/`.
    BuildRecord,
    /// A step or stage record under `cache/`.
    CacheRecord,
    /// A file of an apt suite or yum repository, or a view's state.
    RepositoryFile,
    /// A package in the shared pool.
    PoolFile,
    /// A content-addressed blob.
    Blob,
    /// An upload started and never finished.
    Upload,
}

impl Class {
    /// As reports name it.
    pub fn name(self) -> &'static str {
        match self {
            Class::BuildRecord => "build record",
            Class::CacheRecord => "cache record",
            Class::RepositoryFile => "repository file",
            Class::PoolFile => "pool file",
            Class::Blob => "blob",
            Class::Upload => "upload",
        }
    }
}

/// One object gc deletes (or would).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Removal {
    /// What it is.
    pub class: Class,
    /// Its key (an upload: the key it was to be written under).
    pub key: String,
    /// Its size in bytes (an S3 multipart upload: the parts uploaded).
    pub size: u64,
    /// Seconds since it was last written (an upload: since it last received
    /// bytes).
    pub age: u64,
    /// The S3 upload id, or the local temporary file's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
}

/// What [`collect`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when nothing was deleted, only reported.
    pub dry_run: bool,
    /// The grace period, seconds.
    pub grace: u64,
    /// History entries kept per environment.
    pub keep_history: u32,
    /// Objects (and uploads) looked at.
    pub scanned: usize,
    /// Builds kept, and why the first reason found.
    pub kept_builds: BTreeMap<String, String>,
    /// Builds whose records are deleted.
    pub removed_builds: Vec<String>,
    /// Every object deleted (or that would be), in deletion order.
    pub removed: Vec<Removal>,
    /// Their total size.
    pub bytes: u64,
}

/// Deletes (or with `dry_run` reports) everything in `store` nothing refers
/// to, as the module says.
pub async fn collect(store: &Store, opts: &Options) -> Result<Report> {
    let now = SystemTime::now();
    let grace = opts.grace;
    let old = |t: SystemTime| now.duration_since(t).is_ok_and(|age| age > grace);
    let age = |t: SystemTime| now.duration_since(t).map_or(0, |d| d.as_secs());

    // 1. What is there, before any reference is read.
    let listing = store.list_modified("").await?;
    let uploads = store.uploads().await?;
    fault::hold("gc-listed");

    // 2. What refers to what, read after the listing.
    let mut refs = References::default();
    let pointers = pointer_builds(store).await?;
    let envs_with_pointer: BTreeSet<String> = pointers.keys().cloned().collect();
    for (env, head) in &pointers {
        refs.keep_build(&head.entry.build, format!("the pointer of `{env}`"));
        let first = head
            .entry
            .seq
            .saturating_sub(u64::from(opts.keep_history.max(1)) - 1)
            .max(1);
        for seq in first..head.entry.seq {
            let key = history_key(env, seq);
            if let Some((e, _)) = store
                .get_json_max::<SignedEntry>(&key, "a history entry", MAX_RECORD)
                .await?
            {
                refs.keep_build(&e.entry.build, format!("entry {seq} of `{env}`"));
            }
        }
    }
    let views = view_states(store).await?;
    for ((env, view), state) in &views {
        if !state.build.is_empty() {
            refs.keep_build(&state.build, format!("the {view} view of `{env}`"));
        }
    }
    // Builds written within the grace period: a publish may be under way.
    let mut builds: BTreeMap<String, Vec<&Listed>> = BTreeMap::new();
    for l in &listing {
        if let Some(b) = layout::build_of(&l.meta.key) {
            builds.entry(b.to_string()).or_default().push(l);
        }
    }
    for (build, objects) in &builds {
        if objects.iter().any(|l| !old(l.modified)) {
            refs.keep_build(build, "written within the grace period".into());
        }
    }
    let kept: Vec<String> = refs.builds.keys().cloned().collect();
    for build in &kept {
        refs.read_build(store, build).await?;
    }

    // Cache records: young ones keep their blobs; an old one stays only
    // when everything it names stays anyway.
    let mut cache_candidates = Vec::new();
    for l in listing.iter().filter(|l| l.meta.key.starts_with("cache/")) {
        let named = cache_blobs(store, &l.meta.key).await?;
        if !old(l.modified) {
            refs.blobs.extend(named);
        } else if named.is_empty() || named.iter().any(|b| !refs.blobs.contains(b)) {
            cache_candidates.push(l);
        }
    }

    // 3. Candidates.
    let mut plan: Vec<(Class, &Listed)> = Vec::new();
    let mut removed_builds = Vec::new();
    for (build, objects) in &builds {
        if refs.builds.contains_key(build) {
            continue;
        }
        removed_builds.push(build.clone());
        // The manifest first: without it the build is not visible.
        let mut objects = objects.clone();
        objects.sort_by_key(|l| !l.meta.key.ends_with(&format!("/{}", files::MANIFEST)));
        plan.extend(objects.into_iter().map(|l| (Class::BuildRecord, l)));
    }
    plan.extend(
        cache_candidates
            .into_iter()
            .map(|l| (Class::CacheRecord, l)),
    );
    let mut repository: Vec<&Listed> = listing
        .iter()
        .filter(|l| old(l.modified))
        .filter(|l| repository_file_unreferenced(&l.meta.key, &envs_with_pointer, &views))
        .collect();
    // Signed top files first, so a client never reads a top file whose
    // indices are gone; a view's state last.
    repository.sort_by_key(|l| (repository_rank(&l.meta.key), l.meta.key.clone()));
    plan.extend(repository.into_iter().map(|l| (Class::RepositoryFile, l)));
    // A kept build whose pool files are unknown keeps them all.
    let all_pool_kept = refs.pool.contains("");
    for l in &listing {
        let key = &l.meta.key;
        if key.starts_with("pool/") && !all_pool_kept && old(l.modified) && !refs.pool.contains(key)
        {
            plan.push((Class::PoolFile, l));
        }
    }
    for l in &listing {
        let key = &l.meta.key;
        if key.starts_with(layout::BLOBS) && old(l.modified) && !refs.blobs.contains(key) {
            plan.push((Class::Blob, l));
        }
    }
    let stale_uploads: Vec<&Upload> = uploads
        .iter()
        .filter(|u| unix_secs(now) > u.last_active.saturating_add(grace.as_secs()))
        .collect();

    // 4. The pointers once more, right before deleting: a build a promotion
    // moved a pointer to meanwhile stays, with what it names.
    fault::hold("gc-deleting");
    if !plan.is_empty() {
        let again = pointer_builds(store).await?;
        let mut late = Vec::new();
        for (env, head) in &again {
            let b = &head.entry.build;
            if !refs.builds.contains_key(b) {
                refs.keep_build(b, format!("the pointer of `{env}` (moved during gc)"));
                late.push(b.clone());
            }
        }
        if !late.is_empty() {
            for b in &late {
                refs.read_build(store, b).await?;
            }
            removed_builds.retain(|b| !refs.builds.contains_key(b));
            plan.retain(|(class, l)| {
                let key = &l.meta.key;
                match class {
                    Class::BuildRecord => {
                        layout::build_of(key).is_none_or(|b| !refs.builds.contains_key(b))
                    }
                    Class::PoolFile => !refs.pool.contains(key) && !refs.pool.contains(""),
                    Class::Blob => !refs.blobs.contains(key),
                    _ => true,
                }
            });
        }
    }

    let mut removed: Vec<Removal> = plan
        .iter()
        .map(|(class, l)| Removal {
            class: *class,
            key: l.meta.key.clone(),
            size: l.meta.size,
            age: age(l.modified),
            upload_id: None,
        })
        .collect();
    removed.extend(stale_uploads.iter().map(|u| Removal {
        class: Class::Upload,
        key: u.key.clone(),
        size: u.size,
        age: unix_secs(now).saturating_sub(u.last_active),
        upload_id: Some(u.id.clone()),
    }));

    // 5. Delete, class by class in the order above.
    if !opts.dry_run {
        for class in [
            Class::BuildRecord,
            Class::CacheRecord,
            Class::RepositoryFile,
            Class::PoolFile,
            Class::Blob,
        ] {
            let keys: Vec<&str> = removed
                .iter()
                .filter(|r| r.class == class)
                .map(|r| r.key.as_str())
                .collect();
            if class == Class::BuildRecord || class == Class::RepositoryFile {
                // In order: manifests and top files first.
                for key in keys {
                    store.delete(key).await?;
                }
            } else {
                if class == Class::Blob {
                    // Records and pool files are gone; blobs next.
                    fault::hold("gc-deleting-blobs");
                }
                stream::iter(keys)
                    .map(|key| store.delete(key))
                    .buffer_unordered(CONCURRENCY)
                    .try_collect::<Vec<()>>()
                    .await?;
            }
        }
        for u in &stale_uploads {
            store.abort_upload(u).await?;
        }
    }

    let bytes = removed.iter().map(|r| r.size).sum();
    Ok(Report {
        dry_run: opts.dry_run,
        grace: grace.as_secs(),
        keep_history: opts.keep_history.max(1),
        scanned: listing.len() + uploads.len(),
        kept_builds: refs.builds,
        removed_builds,
        removed,
        bytes,
    })
}

/// What the kept builds and records name.
#[derive(Default)]
struct References {
    /// Kept builds, with the first reason found.
    builds: BTreeMap<String, String>,
    /// Blob keys named.
    blobs: BTreeSet<String>,
    /// Pool keys named.
    pool: BTreeSet<String>,
}

impl References {
    fn keep_build(&mut self, build: &str, why: String) {
        self.builds.entry(build.to_string()).or_insert(why);
    }

    /// Adds what `build`'s manifest and its shards name (artifacts, inputs
    /// and index fragments live in the shards, `manifests/…`, which gc
    /// never deletes: they are shared between builds). A kept build whose
    /// manifest or one of whose shards cannot be read stops gc: what it
    /// names is unknown.
    async fn read_build(&mut self, store: &Store, build: &str) -> Result<()> {
        let key = build_key(build, files::MANIFEST);
        let records = crate::records::index::read_records(store, build).await?;
        let Some(bytes) = records.get(files::MANIFEST) else {
            // Not published (yet, or its records were lost): names nothing
            // gc can know of.
            return Ok(());
        };
        let unreadable = |what: &str, detail: String| Error::Corrupt {
            url: store.url().to_string(),
            key: what.to_string(),
            detail: format!(
                "{detail}; gc deletes nothing while what a kept build names cannot be read (hint: `pipe fsck` names the damage, `pipe fsck --repair` or a new `pipe publish` of the build restores it)"
            ),
        };
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| unreadable(&key, format!("not a build manifest: {e}")))?;
        blake3_fields(&value, &mut self.blobs);
        for name in shard_names(bytes) {
            let shard = records.get(&name).ok_or_else(|| {
                unreadable(&name, "a shard of the build's manifest is missing".into())
            })?;
            let value: serde_json::Value = serde_json::from_slice(shard)
                .map_err(|e| unreadable(&name, format!("not a manifest shard: {e}")))?;
            blake3_fields(&value, &mut self.blobs);
        }
        let artifacts = parse_manifest(bytes, &key).and_then(|mut m| {
            load_shards(&mut m, |name| {
                records
                    .get(name)
                    .cloned()
                    .ok_or_else(|| "missing".to_string())
            })?;
            Ok(m.artifacts)
        });
        if let Ok(artifacts) = artifacts {
            for a in &artifacts {
                if let Some(pool) = kinds::of(a.kind).pool_key(a) {
                    self.pool.insert(pool);
                }
            }
        } else {
            // Its pool files are unknown: keep every pool file.
            self.pool.insert(String::new());
        }
        Ok(())
    }
}

/// Every environment's pointer, read now.
async fn pointer_builds(store: &Store) -> Result<BTreeMap<String, SignedEntry>> {
    let mut out = BTreeMap::new();
    for env in environments(store).await? {
        if let (Some(head), _) = read_pointer(store, &env).await? {
            out.insert(env, head);
        }
    }
    Ok(out)
}

/// Every view state, by (environment, view).
async fn view_states(store: &Store) -> Result<BTreeMap<(String, String), ViewState>> {
    let mut out = BTreeMap::new();
    for m in store.list("views/").await? {
        let Some((env, file)) = m
            .key
            .strip_prefix("views/")
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        let Some(view) = file.strip_suffix(".json") else {
            continue;
        };
        let state = store
            .get_json_max::<ViewState>(&m.key, "a view state", MAX_RECORD)
            .await
            .ok()
            .flatten()
            .map(|(s, _)| s)
            .unwrap_or_default();
        out.insert((env.to_string(), view.to_string()), state);
    }
    Ok(out)
}

/// The blob keys a cache record names (none when it cannot be read).
async fn cache_blobs(store: &Store, key: &str) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let Ok(Some((bytes, _))) = store.get_bytes_max(key, MAX_RECORD).await else {
        return Ok(out);
    };
    let Ok(envelope) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Ok(out);
    };
    blake3_fields(&envelope, &mut out);
    if let Some(payload) = envelope.get("payload").and_then(|p| p.as_str())
        && let Ok(inner) = serde_json::from_str::<serde_json::Value>(payload)
    {
        blake3_fields(&inner, &mut out);
    }
    Ok(out)
}

/// Every blob a JSON document names: each `"blake3"` field holding a
/// digest, as a blob key.
fn blake3_fields(v: &serde_json::Value, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == "blake3"
                    && let Some(d) = v.as_str()
                    && d.len() == 64
                    && d.bytes().all(|b| b.is_ascii_hexdigit())
                {
                    out.insert(layout::blob_key(d));
                } else {
                    blake3_fields(v, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| blake3_fields(i, out)),
        _ => {}
    }
}

/// The environment and view a repository key belongs to: `dists/ENV/...`
/// (apt), `yum/ENV/...` (yum), `views/ENV/VIEW.json` (a view's state).
fn repository_of(key: &str) -> Option<(&str, &str)> {
    let (top, rest) = key.split_once('/')?;
    let (env, _) = rest.split_once('/')?;
    match top {
        "dists" => Some((env, "apt")),
        "yum" => Some((env, "yum")),
        "views" => Some((env, "")),
        _ => None,
    }
}

/// True when the repository file `key` is named by nothing: its
/// environment has no pointer (the whole repository and the view states
/// go), or it is a content-addressed file its view's state does not name
/// (left by a regeneration that was killed) while no regeneration holds
/// the view.
fn repository_file_unreferenced(
    key: &str,
    envs_with_pointer: &BTreeSet<String>,
    views: &BTreeMap<(String, String), ViewState>,
) -> bool {
    let Some((env, view)) = repository_of(key) else {
        return false;
    };
    if !envs_with_pointer.contains(env) {
        return true;
    }
    if view.is_empty() || layout::object_class(key) != layout::ObjectClass::Immutable {
        return false;
    }
    let Some(state) = views.get(&(env.to_string(), view.to_string())) else {
        return false;
    };
    if state.claim.is_some() {
        return false;
    }
    let Some(generation) = state.data.get("generation") else {
        return false;
    };
    let named = |field: &str| {
        generation.get(field).is_some_and(|g| match g {
            serde_json::Value::Array(a) => a.iter().any(|v| v.as_str() == Some(key)),
            serde_json::Value::Object(o) => o.contains_key(key),
            _ => false,
        })
    };
    !named("current") && !named("retired")
}

/// Deletion order within repository files: signed top files, then plain
/// indices, then content-addressed files, then views' states.
fn repository_rank(key: &str) -> u8 {
    let name = key.rsplit('/').next().unwrap_or(key);
    if key.starts_with("views/") {
        3
    } else if matches!(name, "InRelease" | "Release" | "Release.gpg")
        || name.starts_with("repomd.xml")
    {
        0
    } else if layout::object_class(key) == layout::ObjectClass::Immutable {
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blake3_fields_are_found_at_any_depth() {
        let d = "ab".repeat(32);
        let v = serde_json::json!({"a": [{"blob": {"blake3": d, "size": 1}}], "blake3": "short"});
        let mut out = BTreeSet::new();
        blake3_fields(&v, &mut out);
        assert_eq!(out, BTreeSet::from([layout::blob_key(&d)]));
    }

    #[test]
    fn repository_files_of_environments_without_a_pointer_go_top_files_first() {
        let envs = BTreeSet::from(["dev".to_string()]);
        let views = BTreeMap::new();
        assert!(repository_file_unreferenced(
            "dists/old/InRelease",
            &envs,
            &views
        ));
        assert!(repository_file_unreferenced(
            "views/old/apt.json",
            &envs,
            &views
        ));
        assert!(!repository_file_unreferenced(
            "dists/dev/InRelease",
            &envs,
            &views
        ));
        // No state: nothing is known to be unnamed.
        assert!(!repository_file_unreferenced(
            "dists/dev/main/binary-all/by-hash/SHA256/ff",
            &envs,
            &views
        ));
        assert!(
            repository_rank("dists/old/InRelease")
                < repository_rank("dists/old/main/binary-all/Packages")
        );
        assert!(
            repository_rank("yum/old/repodata/repomd.xml")
                < repository_rank("yum/old/Packages/h/h.rpm")
        );
        assert!(
            repository_rank("yum/old/Packages/h/h.rpm") < repository_rank("views/old/yum.json")
        );
    }
}
