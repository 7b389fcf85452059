//! `pipe fsck`: reads the whole store and reports what does not verify.
//!
//! What is checked, on either backend, streaming (one object in memory at a
//! time, blobs hashed as they stream), `CONCURRENCY` objects at once:
//! - every blob hashes to its key;
//! - every published build's signed records verify against the keyring
//!   (`records::index::load_verified`), and every blob its manifest names
//!   is there; every pool file is the blob its build names;
//! - every cache record names blobs that are there;
//! - every environment's history verifies up to its pointer
//!   (`records::history::verified_history`);
//! - every apt suite and yum repository: the signed top file
//!   (`InRelease`, `repomd.xml` + `.asc`) verifies, every file it names is
//!   there with its digest, and what it lists is exactly the package index
//!   of the signed build its state says it shows; every yum package copy
//!   is its blob.
//!
//! Not corruption, reported as counts: objects nothing refers to (what an
//! interrupted publish leaves; `pipe gc` deletes them) and views behind
//! their pointer or in the middle of a regeneration (what an interrupted
//! promotion leaves; `pipe refresh` or the same promotion completes them).
//!
//! [`repair`] mends what can be mended without trusting the store: views
//! are regenerated from the signed build (what `pipe refresh` does), blobs
//! and pool files re-uploaded from local build directories that hold them
//! (what `pipe publish` does), a build's records copied again from its local
//! build directory, and a history copy or pointer restored from the other
//! when one of them still verifies. Then the store is checked again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt, stream};
use keys::{Keyring, SecretKey};
use serde::Serialize;
use tokio::io::AsyncReadExt;

use crate::artifact::Artifact;
use crate::kinds;
use crate::model::Pipeline;
use crate::records::history::{self, SignedEntry};
use crate::records::manifest::{build_key, read_local};
use crate::records::{Published, cache, files, index, view};
use crate::store::{BlobRef, Body, Condition, MAX_RECORD, Store, layout};
use crate::views::ViewKind;
use crate::{Error, Result};

/// How many objects are read at once.
pub(crate) const CONCURRENCY: usize = 16;

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// A blob whose bytes do not hash to its key.
    DamagedBlob,
    /// A blob a build or cache record names is not in the store.
    MissingBlob,
    /// A pool file (or yum package copy) that is not its blob's bytes.
    DamagedPoolFile,
    /// A pool file (or yum package copy) a build or view names is missing.
    MissingPoolFile,
    /// A build's signed records or index do not verify.
    Build,
    /// An environment's history or pointer does not verify.
    History,
    /// A repository view whose files do not match its signed top file, or
    /// whose signed top file does not list the build it says it shows.
    View,
    /// An object under a key pipe owns that is not what pipe writes there.
    Stray,
}

/// One thing wrong, and what repairs it.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// What kind of damage.
    pub kind: ProblemKind,
    /// The store key (or prefix) concerned.
    pub key: String,
    /// Expected against found.
    pub detail: String,
    /// The command that repairs it.
    pub repair: String,
}

/// What [`check`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The store.
    pub store: String,
    /// Blobs read and hashed.
    pub blobs: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Published builds checked.
    pub builds: u64,
    /// Pool files and yum package copies read and hashed.
    pub pool_files: u64,
    /// Cache records read.
    pub cache_records: u64,
    /// Environments whose history was checked.
    pub environments: u64,
    /// Repository views checked (apt suites, yum repositories).
    pub views: u64,
    /// Objects nothing refers to: blobs, pool files and build records of
    /// a publish that did not finish (`pipe gc` deletes them).
    pub unreferenced: u64,
    /// Their bytes.
    pub unreferenced_bytes: u64,
    /// Views behind their pointer or in the middle of a regeneration
    /// (`env/view`): `pipe refresh --env ENV` completes them.
    pub pending_views: Vec<String>,
    /// What is wrong.
    pub problems: Vec<Problem>,
}

impl Report {
    /// True when nothing is wrong.
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What `fsck --repair` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Repaired {
    /// Objects written again (blobs, pool files, records, history copies).
    pub objects: Vec<String>,
    /// Environments whose views were regenerated.
    pub environments: Vec<String>,
    /// What could not be repaired here, and why.
    pub left: Vec<String>,
}

/// Where repairs come from: the project (for the views' configuration),
/// its signing key, local build directories and deploy caches
/// ([`repair_sources`]).
pub struct RepairFrom<'a> {
    /// `pipeline.toml`.
    pub pipeline: &'a Pipeline,
    /// The key that signs regenerated views.
    pub key: &'a SecretKey,
    /// Directories holding build directories (`<dir>/<build id>/`) or a
    /// deploy cache (`<dir>/.pipe/cache`).
    pub builds: Vec<PathBuf>,
}

/// Reads the whole store and reports what does not verify against
/// `keyring`. Fails only when the store cannot be read (unreachable,
/// refused); damage is in the report.
pub async fn check(store: &Store, keyring: &Keyring) -> Result<Report> {
    let mut report = Report {
        store: store.url().to_string(),
        ..Default::default()
    };

    // Blobs: every one hashed.
    let listed = store.list(layout::BLOBS).await?;
    let mut present: HashMap<String, u64> = HashMap::new();
    let mut blob_keys = Vec::new();
    for meta in listed {
        let digest = meta.key.rsplit('/').next().unwrap_or_default().to_string();
        if !is_hex64(&digest) || layout::blob_key(&digest) != meta.key {
            report.problems.push(Problem {
                kind: ProblemKind::Stray,
                key: meta.key.clone(),
                detail: "not a blob key (blobs/blake3/<2 hex>/<64 hex>)".into(),
                repair: "pipe gc (or delete it): pipe never writes it".into(),
            });
            continue;
        }
        present.insert(digest.clone(), meta.size);
        blob_keys.push((digest, meta.size));
    }
    let intact: Vec<(String, u64, bool)> = stream::iter(blob_keys)
        .map(|(digest, size)| async move {
            let blob = BlobRef {
                blake3: digest.clone(),
                sha256: String::new(),
                size,
            };
            Ok::<_, Error>((digest, size, store.blob_intact(&blob).await?))
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut damaged: HashSet<String> = HashSet::new();
    for (digest, size, ok) in intact {
        report.blobs += 1;
        report.blob_bytes += size;
        if !ok {
            report.problems.push(Problem {
                kind: ProblemKind::DamagedBlob,
                key: layout::blob_key(&digest),
                detail: format!("its bytes do not hash to blake3 {digest}"),
                repair: REPUBLISH.into(),
            });
            damaged.insert(digest);
        }
    }

    // Builds: signed records, their blobs, their pool files.
    let mut referenced: HashSet<String> = HashSet::new();
    let mut pool: BTreeMap<String, Artifact> = BTreeMap::new();
    let mut published: HashMap<String, Published> = HashMap::new();
    let builds: BTreeSet<String> = store
        .list(layout::BUILDS)
        .await?
        .iter()
        .filter_map(|m| layout::build_of(&m.key).map(str::to_string))
        .collect();
    // Each build's records read and verified, several at once.
    let loaded: Vec<(String, Loaded)> = stream::iter(builds)
        .map(|build| async move {
            let manifest_key = build_key(&build, files::MANIFEST);
            if store.head(&manifest_key).await?.is_none() {
                // A publish that did not finish: the manifest goes in last.
                let left = store.list(&layout::build_file(&build, "")).await?;
                return Ok::<_, Error>((
                    build,
                    Loaded::Unfinished(left.iter().map(|m| m.size).collect()),
                ));
            }
            let loaded = match index::load_verified(store, &build, keyring).await {
                Ok(v) => Loaded::Verified(Box::new(v)),
                Err(e) if is_damage(&e) => Loaded::Damaged(e.to_string()),
                Err(e) => return Err(e),
            };
            Ok((build, loaded))
        })
        .buffer_unordered(CONCURRENCY / 2)
        .try_collect()
        .await?;
    for (build, loaded) in loaded {
        let verified = match loaded {
            Loaded::Unfinished(sizes) => {
                report.unreferenced += sizes.len() as u64;
                report.unreferenced_bytes += sizes.iter().sum::<u64>();
                continue;
            }
            Loaded::Damaged(detail) => {
                report.builds += 1;
                report.problems.push(Problem {
                    kind: ProblemKind::Build,
                    key: layout::build_file(&build, ""),
                    detail,
                    repair: format!(
                        "pipe fsck --repair, run where the build directory .pipe/builds/{build} is"
                    ),
                });
                continue;
            }
            Loaded::Verified(v) => v,
        };
        report.builds += 1;
        for a in &verified.manifest.artifacts {
            referenced.insert(a.blob.blake3.clone());
            if !present.contains_key(&a.blob.blake3) {
                report.problems.push(Problem {
                    kind: ProblemKind::MissingBlob,
                    key: a.blob.key(),
                    detail: format!("build `{build}` names it (`{}`)", a.name),
                    repair: REPUBLISH.into(),
                });
            }
            if let Some(key) = kinds::of(a.kind).pool_key(a) {
                pool.entry(key).or_insert_with(|| a.clone());
            }
        }
        published.insert(build, verified.published);
    }
    let pool_checks: Vec<Option<Problem>> = stream::iter(pool.iter())
        .map(|(key, a)| async move { check_copy(store, key, &a.blob, REPUBLISH).await })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    report.pool_files += pool.len() as u64;
    report.problems.extend(pool_checks.into_iter().flatten());
    for m in store.list(layout::POOL).await? {
        if !pool.contains_key(&m.key) {
            report.unreferenced += 1;
            report.unreferenced_bytes += m.size;
        }
    }

    // Cache records: the blobs a build would restore.
    for m in store.list(layout::CACHE).await? {
        report.cache_records += 1;
        let Some((bytes, _)) = store.get_bytes_max(&m.key, MAX_RECORD).await? else {
            continue;
        };
        // Read for the references only: a build believes a record once its
        // signature verifies, and builds again otherwise.
        for blob in cache::named_blobs(&bytes) {
            referenced.insert(blob.blake3.clone());
            if !present.contains_key(&blob.blake3) {
                report.problems.push(Problem {
                    kind: ProblemKind::MissingBlob,
                    key: blob.key(),
                    detail: format!("the cache record `{}` names it", m.key),
                    repair: "pipe build (builds it again and stores it), or pipe fsck --repair where a build directory holds it".into(),
                });
            }
        }
    }
    for (digest, size) in &present {
        if !referenced.contains(digest) {
            report.unreferenced += 1;
            report.unreferenced_bytes += size;
        }
    }

    // Environments: history, then the views of their builds.
    for env in history::environments(store).await? {
        report.environments += 1;
        let head = match history::verified_history(store, &env, keyring).await {
            Ok(mut entries) => entries.pop(),
            Err(e) if is_damage(&e) => {
                report.problems.push(Problem {
                    kind: ProblemKind::History,
                    key: layout::history_prefix(&env),
                    detail: e.to_string(),
                    repair: "pipe fsck --repair (restores a history copy from a pointer that verifies, or the pointer from the history); else restore the entry from a backup".into(),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(head) = head else { continue };
        check_views(store, keyring, &env, &head, &published, &mut report).await?;
    }
    report
        .problems
        .sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
    Ok(report)
}

/// Runs [`check`], repairs what it can from `from`, and checks again.
/// Returns what was repaired and the report of the second check.
pub async fn repair(
    store: &Store,
    keyring: &Keyring,
    from: &RepairFrom<'_>,
) -> Result<(Repaired, Report)> {
    let local = LocalBuilds::scan(&from.builds);
    let mut done = Repaired::default();
    let mut report = check(store, keyring).await?;
    // A repair can uncover more to check (the views of an environment
    // whose history did not verify): again while it makes progress.
    for _ in 0..REPAIR_PASSES {
        if report.clean() && report.pending_views.is_empty() {
            break;
        }
        let mut pass = Repaired::default();
        repair_pass(store, keyring, from, &local, &report, &mut pass).await?;
        let progress = !pass.objects.is_empty() || !pass.environments.is_empty();
        done.objects.extend(pass.objects);
        done.environments.extend(pass.environments);
        report = check(store, keyring).await?;
        if !progress || report.clean() {
            done.left = pass.left;
            break;
        }
        done.left = pass.left;
    }
    done.objects.sort();
    done.objects.dedup();
    done.environments.sort();
    done.environments.dedup();
    Ok((done, report))
}

/// How many times [`repair`] repairs and checks again at most.
const REPAIR_PASSES: usize = 3;

async fn repair_pass(
    store: &Store,
    keyring: &Keyring,
    from: &RepairFrom<'_>,
    local: &LocalBuilds,
    before: &Report,
    done: &mut Repaired,
) -> Result<()> {
    // Blobs first: pool files and views are copies of them.
    let mut blobs: BTreeSet<String> = BTreeSet::new();
    let mut copies: BTreeSet<String> = BTreeSet::new();
    let mut builds: BTreeSet<String> = BTreeSet::new();
    let mut histories: BTreeSet<String> = BTreeSet::new();
    let mut envs: BTreeSet<String> = BTreeSet::new();
    for p in &before.problems {
        match p.kind {
            ProblemKind::DamagedBlob | ProblemKind::MissingBlob => {
                blobs.insert(p.key.clone());
            }
            ProblemKind::DamagedPoolFile | ProblemKind::MissingPoolFile => {
                copies.insert(p.key.clone());
            }
            ProblemKind::Build => {
                if let Some(b) = layout::build_of(&p.key) {
                    builds.insert(b.to_string());
                }
            }
            ProblemKind::History => {
                if let Some(e) = layout::env_of(&p.key) {
                    histories.insert(e.to_string());
                }
            }
            ProblemKind::View => {
                if let Some(e) = view_env(&p.key) {
                    envs.insert(e.to_string());
                }
            }
            ProblemKind::Stray => {}
        }
    }
    for key in &blobs {
        let digest = key.rsplit('/').next().unwrap_or_default();
        match local.by_blob.get(digest) {
            Some((path, a)) => {
                let put = store.replace_blob_file(path, &a.blob).await?;
                if put.blob == a.blob {
                    done.objects.push(key.clone());
                } else {
                    done.left.push(format!(
                        "{key}: the local file {} differs too",
                        path.display()
                    ));
                }
            }
            None => match local.cached.get(digest) {
                // A deploy target's cache: named by the digest, believed
                // only once the file hashes to it.
                Some(path) => {
                    let blob = crate::store::digest::hash_file(path).await?;
                    if blob.blake3 == digest {
                        store.replace_blob_file(path, &blob).await?;
                        done.objects.push(key.clone());
                    } else {
                        done.left.push(format!(
                            "{key}: the cached file {} differs too",
                            path.display()
                        ));
                    }
                }
                None => done.left.push(format!(
                    "{key}: no local build directory or deploy cache holds it ({REPUBLISH}, or pipe fsck --repair --from DIR where DIR is a deploy target)"
                )),
            },
        }
    }
    for b in &builds {
        match local.dirs.get(b) {
            Some(dir) => {
                // The manifest's shards (content-addressed, shared), then
                // the records.
                let shards = std::fs::read(dir.join(files::MANIFEST))
                    .map(|m| crate::records::manifest::shard_names(&m))
                    .unwrap_or_default();
                for key in shards {
                    let path = dir.join(&key);
                    if path.exists() {
                        store
                            .put(&key, Body::from_file(&path), Condition::Overwrite)
                            .await?;
                        done.objects.push(key);
                    }
                }
                for file in [
                    files::PROVENANCE,
                    files::PROVENANCE_SIG,
                    files::MANIFEST_SIG,
                    files::MANIFEST,
                ] {
                    let path = dir.join(file);
                    if !path.exists() {
                        continue;
                    }
                    let key = build_key(b, file);
                    // The provenance differs per run: the store's copy
                    // stays when it still verifies with the manifest.
                    store
                        .put(&key, Body::from_file(&path), Condition::Overwrite)
                        .await?;
                    done.objects.push(key);
                }
            }
            None => done.left.push(format!(
                "build `{b}`: no local build directory holds it; build and publish it again"
            )),
        }
    }
    for env in &histories {
        match repair_history(store, keyring, env).await? {
            Some(key) => done.objects.push(key),
            None => done.left.push(format!(
                "history of `{env}`: neither the pointer nor the history copies verify past the break; restore them from a backup"
            )),
        }
        envs.insert(env.clone());
    }
    // Copies of blobs (pool files, yum package copies): made again inside
    // the store from the blob, once the blob is intact.
    for key in &copies {
        let Some(blob) = copy_source(store, keyring, key).await? else {
            continue;
        };
        if !store.blob_intact(&blob).await? {
            done.left
                .push(format!("{key}: its blob is missing or damaged too"));
            continue;
        }
        store.delete(key).await?;
        store.copy_if_absent(&blob.key(), key).await?;
        done.objects.push(key.clone());
    }
    // Views: regenerated from the signed build, as `pipe refresh` does
    // (pending ones too).
    for pending in &before.pending_views {
        if let Some((env, _)) = pending.split_once('/') {
            envs.insert(env.to_string());
        }
    }
    for env in &envs {
        match crate::views::refresh(from.pipeline, store, from.key, keyring, env).await {
            Ok(Some(r)) if r.failed().next().is_none() => done.environments.push(env.clone()),
            Ok(Some(r)) => {
                for (v, e) in r.failed() {
                    done.left.push(format!("{env}/{}: {e}", v.name()));
                }
            }
            Ok(None) => {}
            Err(e) if is_damage(&e) => done.left.push(format!("{env}: {e}")),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A build as [`check`] found it.
enum Loaded {
    /// No manifest: the sizes of what an unfinished publish wrote.
    Unfinished(Vec<u64>),
    /// Its records do not verify: why.
    Damaged(String),
    /// Verified.
    Verified(Box<index::Verified>),
}

const REPUBLISH: &str =
    "pipe fsck --repair (or pipe publish BUILD --read-back), run where the build directory is";

/// Damage, as opposed to a store that cannot be read.
fn is_damage(e: &Error) -> bool {
    matches!(
        e,
        Error::Verify { .. }
            | Error::Corrupt { .. }
            | Error::TooLarge { .. }
            | Error::DigestMismatch { .. }
            | Error::NotFound { .. }
            | Error::Usage { .. }
            | Error::Keys(_)
            | Error::Index(_)
    )
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// blake3 and size of the object at `key`, streamed; `None` if missing.
async fn hash_object(store: &Store, key: &str) -> Result<Option<(String, u64)>> {
    let Some(obj) = store.get(key).await? else {
        return Ok(None);
    };
    let mut body = obj.body;
    let mut hasher = blake3::Hasher::new();
    let mut buf = Vec::with_capacity(256 << 10);
    let mut size = 0u64;
    loop {
        buf.clear();
        let n = body.read_buf(&mut buf).await.map_err(|e| Error::Corrupt {
            url: store.url().to_string(),
            key: key.to_string(),
            detail: format!("cannot be read: {e}"),
        })?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf);
    }
    Ok(Some((hasher.finalize().to_hex().to_string(), size)))
}

/// Checks that `key` holds exactly the bytes of `blob`.
async fn check_copy(
    store: &Store,
    key: &str,
    blob: &BlobRef,
    repair: &str,
) -> Result<Option<Problem>> {
    Ok(match hash_object(store, key).await? {
        None => Some(Problem {
            kind: ProblemKind::MissingPoolFile,
            key: key.to_string(),
            detail: format!("a copy of {} is missing", blob.key()),
            repair: repair.into(),
        }),
        Some((digest, size)) if digest != blob.blake3 || size != blob.size => Some(Problem {
            kind: ProblemKind::DamagedPoolFile,
            key: key.to_string(),
            detail: format!(
                "expected the bytes of {} (blake3 {}, {} bytes), found blake3 {digest}, {size} bytes",
                blob.key(),
                blob.blake3,
                blob.size
            ),
            repair: repair.into(),
        }),
        Some(_) => None,
    })
}

/// The blob a damaged copy must hold: from the verified build that names
/// its pool key, or the build a yum repository lists it for.
async fn copy_source(store: &Store, keyring: &Keyring, key: &str) -> Result<Option<BlobRef>> {
    let builds: BTreeSet<String> = store
        .list(layout::BUILDS)
        .await?
        .iter()
        .filter_map(|m| layout::build_of(&m.key).map(str::to_string))
        .collect();
    for build in builds {
        let Ok(v) = index::load_verified(store, &build, keyring).await else {
            continue;
        };
        for a in &v.manifest.artifacts {
            let in_pool = kinds::of(a.kind).pool_key(a).as_deref() == Some(key);
            let in_yum = key.starts_with(layout::YUM)
                && key.ends_with(&format!("/{}", layout::yum_package_href(&a.name)));
            if in_pool || in_yum {
                return Ok(Some(a.blob.clone()));
            }
        }
    }
    Ok(None)
}

/// The environment of a view problem's key (`dists/ENV/...`, `yum/ENV/...`,
/// `views/ENV/...`).
fn view_env(key: &str) -> Option<&str> {
    let mut parts = key.split('/');
    match parts.next()? {
        "dists" | "yum" | "views" => parts.next(),
        "machines" => {
            parts.next()?;
            let file = parts.next()?;
            file.strip_suffix(".json.asc")
                .or_else(|| file.strip_suffix(".json"))
        }
        _ => None,
    }
}

/// Restores `env`'s history copy of its head from a pointer that verifies,
/// or its pointer from a history that verifies; the key written.
async fn repair_history(store: &Store, keyring: &Keyring, env: &str) -> Result<Option<String>> {
    let (pointer, version) = match history::read_pointer(store, env).await {
        Ok(p) => p,
        Err(e) if is_damage(&e) => (None, None),
        Err(e) => return Err(e),
    };
    // The history copies as they are, each parsed on its own.
    let mut copies: Vec<SignedEntry> = Vec::new();
    for m in store.list(&layout::history_prefix(env)).await? {
        if let Ok(Some((e, _))) = store
            .get_json_max::<SignedEntry>(&m.key, "a history entry", MAX_RECORD)
            .await
        {
            copies.push(e);
        }
    }
    copies.sort_by_key(|e| e.entry.seq);
    // 1. The pointer verifies and chains onto the copies before it: its
    //    own copy was damaged or forged.
    if let Some(head) = &pointer {
        let mut chain: Vec<SignedEntry> = copies
            .iter()
            .filter(|e| e.entry.seq < head.entry.seq)
            .cloned()
            .collect();
        chain.push(head.clone());
        if history::verify_chain(env, &chain, Some(keyring)).is_ok() {
            let key = history::history_key(env, head.entry.seq);
            store
                .put(
                    &key,
                    Body::from_bytes(head.to_bytes()),
                    Condition::Overwrite,
                )
                .await?;
            // Copies past the head are forgeries (a history never passes
            // its pointer for long: the copy goes in before the pointer).
            return Ok(Some(key));
        }
    }
    // 2. The copies verify up to their last: the pointer was damaged.
    if let Some(last) = copies.last()
        && history::verify_chain(env, &copies, Some(keyring)).is_ok()
    {
        let key = history::pointer_key(env);
        let cond = match version {
            Some(v) => Condition::IfMatch(v),
            None => Condition::Overwrite,
        };
        store
            .put(&key, Body::from_bytes(last.to_bytes()), cond)
            .await?;
        return Ok(Some(key));
    }
    Ok(None)
}

/// The build directories under `dirs` (`<dir>/<id>/manifest.json`), which
/// local file holds each blob they name, and the deploy caches of `dirs`.
struct LocalBuilds {
    dirs: HashMap<String, PathBuf>,
    by_blob: HashMap<String, (PathBuf, Artifact)>,
    /// Files of deploy targets' caches (`DIR/.pipe/cache/blobs/<blake3>`),
    /// by the digest they are named by (checked before use).
    cached: HashMap<String, PathBuf>,
}

impl LocalBuilds {
    fn scan(dirs: &[PathBuf]) -> LocalBuilds {
        let mut out = LocalBuilds {
            dirs: HashMap::new(),
            by_blob: HashMap::new(),
            cached: HashMap::new(),
        };
        for dir in dirs {
            let cache = dir.join(crate::deploy::CACHE_DIR).join("blobs");
            for e in std::fs::read_dir(&cache).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if is_hex64(&name) {
                    out.cached.insert(name, e.path());
                }
            }
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                let path = e.path();
                // The manifest with its shards' artifacts (a local build:
                // what the store's copy is repaired from).
                let Ok((m, _)) = read_local(&path) else {
                    continue;
                };
                for a in &m.artifacts {
                    let file = path.join(&a.name);
                    if file.exists() {
                        out.by_blob
                            .entry(a.blob.blake3.clone())
                            .or_insert((file, a.clone()));
                    }
                }
                out.dirs.insert(m.build.clone(), path);
            }
        }
        out
    }
}

/// Checks the repository views of `env`, whose verified head is `head`.
async fn check_views(
    store: &Store,
    keyring: &Keyring,
    env: &str,
    head: &SignedEntry,
    published: &HashMap<String, Published>,
    report: &mut Report,
) -> Result<()> {
    for kind in ViewKind::ALL {
        let (state, _) = view::read(store, env, kind.name()).await?;
        if state.seq != head.entry.seq || state.claim.is_some() {
            report.pending_views.push(format!("{env}/{}", kind.name()));
        }
        if state.seq == 0 || kind == ViewKind::RegistryTag {
            // The registry's tags are outside the store.
            continue;
        }
        // What the view shows must be the build its state names; while a
        // regeneration is under way, the head's build is fine too.
        let mut shown: Vec<&Published> = published.get(&state.build).into_iter().collect();
        if state.claim.is_some()
            && let Some(p) = published.get(&head.entry.build)
        {
            shown.push(p);
        }
        if shown.is_empty() {
            report.problems.push(Problem {
                kind: ProblemKind::View,
                key: layout::view_state(env, kind.name()),
                detail: format!(
                    "shows build `{}`, which is not a published build that verifies",
                    state.build
                ),
                repair: format!("pipe refresh --env {env} (or pipe fsck --repair)"),
            });
            continue;
        }
        let mid_write = state.claim.is_some();
        let found = match kind {
            ViewKind::AptSuite => {
                if shown.iter().all(|p| p.index.debs.is_empty()) {
                    continue;
                }
                check_apt(store, keyring, env, &shown, mid_write).await?
            }
            ViewKind::YumRepository => {
                if shown.iter().all(|p| p.index.rpms.is_empty()) {
                    continue;
                }
                check_yum(store, keyring, env, &shown, mid_write).await?
            }
            _ => {
                if shown.iter().all(|p| p.index.machines.is_empty()) {
                    continue;
                }
                check_machines(store, keyring, env, &shown, mid_write).await?
            }
        };
        report.views += 1;
        let repair = format!("pipe refresh --env {env} (or pipe fsck --repair)");
        for (key, detail, kind) in found {
            report.problems.push(Problem {
                kind,
                key,
                detail,
                repair: if kind == ProblemKind::View {
                    repair.clone()
                } else {
                    "pipe fsck --repair".into()
                },
            });
        }
    }
    Ok(())
}

type Found = Vec<(String, String, ProblemKind)>;

/// The apt suite `dists/ENV`: `InRelease` verifies; every file it names is
/// there (its by-hash copy always; the plain file unless a regeneration is
/// under way, which writes plain files before `InRelease`); the stanzas of
/// its `Packages` files are exactly the build's.
async fn check_apt(
    store: &Store,
    keyring: &Keyring,
    env: &str,
    shown: &[&Published],
    mid_write: bool,
) -> Result<Found> {
    let mut found = Found::new();
    // The build the pointer names first, then one a regeneration may still
    // show; nothing shown, nothing to compare.
    let [first, ..] = shown else {
        return Ok(found);
    };
    let suite = layout::apt_suite(env);
    let top = format!("{suite}/InRelease");
    let Some((signed, _)) = store.get_bytes_max(&top, MAX_RECORD).await? else {
        found.push((top, "missing".into(), ProblemKind::View));
        return Ok(found);
    };
    let text = match keyring.verify_clearsigned(&signed, None) {
        Ok((_, text)) => String::from_utf8_lossy(&text).into_owned(),
        Err(e) => {
            found.push((
                top,
                format!("its signature does not verify: {e}"),
                ProblemKind::View,
            ));
            return Ok(found);
        }
    };
    let mut stanzas: BTreeSet<String> = BTreeSet::new();
    for (sha, size, path) in crate::views::apt::release_sha256(&text) {
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let by_hash = layout::apt_by_hash(env, dir, sha);
        let bytes = match store.get_bytes(&by_hash).await? {
            Some((b, _)) if crate::views::sha256_hex(&b) == sha && b.len().to_string() == size => b,
            Some(_) => {
                found.push((
                    by_hash,
                    format!("differs from the sha256 {sha} InRelease names"),
                    ProblemKind::View,
                ));
                continue;
            }
            None => {
                found.push((by_hash, "missing".into(), ProblemKind::View));
                continue;
            }
        };
        let plain = format!("{suite}/{path}");
        if !mid_write {
            match store.get_bytes(&plain).await? {
                Some((b, _)) if b == bytes => {}
                Some(_) => found.push((
                    plain.clone(),
                    format!("differs from the sha256 {sha} InRelease names"),
                    ProblemKind::View,
                )),
                None => found.push((plain.clone(), "missing".into(), ProblemKind::View)),
            }
        }
        if path.ends_with("/Packages") {
            for s in String::from_utf8_lossy(&bytes).split("\n\n") {
                let s = s.trim_end();
                if !s.is_empty() {
                    stanzas.insert(format!("{s}\n"));
                }
            }
        }
    }
    let matches = shown.iter().any(|p| {
        let expected: BTreeSet<String> = p
            .index
            .debs
            .iter()
            .map(|d| format!("{}\n", d.stanza.text.trim_end()))
            .collect();
        expected == stanzas
    });
    if !matches {
        found.push((
            top,
            format!(
                "lists {} package(s) that are not the package index of build `{}`",
                stanzas.len(),
                first.build
            ),
            ProblemKind::View,
        ));
    }
    Ok(found)
}

/// The yum repository `yum/ENV`: `repomd.xml.asc` verifies over
/// `repomd.xml` (unless a regeneration is under way, which writes them one
/// after the other); every data file it names is there with its checksum;
/// their uncompressed checksums are those of the build's rendering; every
/// package copy is its blob.
async fn check_yum(
    store: &Store,
    keyring: &Keyring,
    env: &str,
    shown: &[&Published],
    mid_write: bool,
) -> Result<Found> {
    let mut found = Found::new();
    // The build the pointer names first, then one a regeneration may still
    // show; nothing shown, nothing to compare.
    let [first, ..] = shown else {
        return Ok(found);
    };
    let repo = layout::yum_repo(env);
    let top = format!("{repo}/repodata/repomd.xml");
    let (Some((repomd, _)), Some((sig, _))) = (
        store.get_bytes_max(&top, MAX_RECORD).await?,
        store
            .get_bytes_max(&format!("{top}.asc"), MAX_RECORD)
            .await?,
    ) else {
        found.push((top, "missing, or its .asc is".into(), ProblemKind::View));
        return Ok(found);
    };
    if let Err(e) = keyring.verify_detached(&repomd[..], &sig, None) {
        if !mid_write {
            found.push((
                top,
                format!("its signature (repomd.xml.asc) does not verify: {e}"),
                ProblemKind::View,
            ));
        }
        return Ok(found);
    }
    let text = String::from_utf8_lossy(&repomd).into_owned();
    let mut open: BTreeMap<String, String> = BTreeMap::new();
    for block in text.split("<data type=\"").skip(1) {
        let kind = block.split('"').next().unwrap_or_default().to_string();
        let field = |start: &str, end: &str| -> String {
            block
                .split_once(start)
                .and_then(|(_, rest)| rest.split_once(end))
                .map(|(v, _)| v.to_string())
                .unwrap_or_default()
        };
        let checksum = field("<checksum type=\"sha256\">", "<");
        let open_checksum = field("<open-checksum type=\"sha256\">", "<");
        let href = field("<location href=\"", "\"");
        let key = layout::yum_file(env, &href);
        match store.get_bytes(&key).await? {
            Some((b, _)) if crate::views::sha256_hex(&b) == checksum => {}
            Some(_) => found.push((
                key,
                format!("differs from the sha256 {checksum} repomd.xml names"),
                ProblemKind::View,
            )),
            None => found.push((key, "missing".into(), ProblemKind::View)),
        }
        open.insert(kind, open_checksum);
    }
    let mut matched = None;
    for p in shown {
        let expected = rendered_open_checksums(env, p).await?;
        if expected == open {
            matched = Some(*p);
            break;
        }
    }
    let Some(p) = matched else {
        found.push((
            top,
            format!(
                "its metadata is not the package index of build `{}`",
                first.build
            ),
            ProblemKind::View,
        ));
        return Ok(found);
    };
    for r in &p.index.rpms {
        let key = layout::yum_file(env, &layout::yum_package_href(&r.artifact));
        let Some(blob_key) = p.rpm_blobs.get(&r.artifact) else {
            continue;
        };
        let digest = blob_key.rsplit('/').next().unwrap_or_default();
        match hash_object(store, &key).await? {
            Some((d, _)) if d == digest => {}
            Some(_) => found.push((
                key,
                format!("is not the bytes of {blob_key}"),
                ProblemKind::DamagedPoolFile,
            )),
            None => found.push((key, "missing".into(), ProblemKind::MissingPoolFile)),
        }
    }
    Ok(found)
}

/// The machine pointers `machines/NAME/ENV.json.asc` of the machines of
/// the build shown: each verifies, names `env` and a build shown, and
/// signs exactly the images that build's index lists for the machine (the
/// index was checked against the signed manifest); the plain `.json` is
/// the signed text (unless a regeneration is under way: the signed one is
/// written first).
async fn check_machines(
    store: &Store,
    keyring: &Keyring,
    env: &str,
    shown: &[&Published],
    mid_write: bool,
) -> Result<Found> {
    let mut found = Found::new();
    // The build the pointer names first, then one a regeneration may still
    // show; nothing shown, nothing to compare.
    let [first, ..] = shown else {
        return Ok(found);
    };
    let machines: BTreeSet<&str> = first
        .index
        .machines
        .iter()
        .map(|m| m.machine.as_str())
        .collect();
    for machine in machines {
        let key = layout::machine_pointer_signed(machine, env);
        let Some((signed, _)) = store.get_bytes_max(&key, MAX_RECORD).await? else {
            found.push((key, "missing".into(), ProblemKind::View));
            continue;
        };
        let text = match keyring.verify_clearsigned(&signed, None) {
            Ok((_, text)) => text,
            Err(e) => {
                found.push((
                    key,
                    format!("its signature does not verify: {e}"),
                    ProblemKind::View,
                ));
                continue;
            }
        };
        let doc: crate::views::MachinePointerDoc = match serde_json::from_slice(&text) {
            Ok(d) => d,
            Err(e) => {
                found.push((
                    key,
                    format!("signed, but not a machine pointer: {e}"),
                    ProblemKind::View,
                ));
                continue;
            }
        };
        let images = |p: &Published| -> BTreeMap<String, (String, String, u64)> {
            p.index
                .machines
                .iter()
                .filter(|m| m.machine == machine)
                .map(|m| {
                    (
                        m.format.clone(),
                        (m.blake3.clone(), m.sha256.clone(), m.size),
                    )
                })
                .collect()
        };
        let pointed: BTreeMap<String, (String, String, u64)> = doc
            .images
            .iter()
            .map(|(f, i)| (f.clone(), (i.blake3.clone(), i.sha256.clone(), i.size)))
            .collect();
        let keys_right = doc
            .images
            .values()
            .all(|i| i.key == layout::blob_key(&i.blake3));
        let matches = doc.env == env
            && doc.machine == machine
            && keys_right
            && shown
                .iter()
                .any(|p| p.build == doc.build && images(p) == pointed);
        if !matches {
            found.push((
                key.clone(),
                format!(
                    "signs build `{}` with images that are not those the index of build `{}` lists for `{machine}` in `{env}`",
                    doc.build, first.build
                ),
                ProblemKind::View,
            ));
        }
        if !mid_write {
            let plain = layout::machine_pointer(machine, env);
            match store.get_bytes_max(&plain, MAX_RECORD).await? {
                Some((b, _)) if b[..] == text[..] => {}
                Some(_) => found.push((
                    plain,
                    "differs from the signed pointer".into(),
                    ProblemKind::View,
                )),
                None => found.push((plain, "missing".into(), ProblemKind::View)),
            }
        }
    }
    Ok(found)
}

/// The uncompressed checksums of `primary`, `filelists` and `other` as the
/// yum view renders `p` for `env`.
async fn rendered_open_checksums(env: &str, p: &Published) -> Result<BTreeMap<String, String>> {
    let index = p.index.clone();
    let env = env.to_string();
    crate::store::digest::spawn_blocking(move || {
        let located = index
            .rpms
            .iter()
            .map(|r| r.xml.with_location(&layout::yum_package_href(&r.artifact)))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let xml: Vec<&repo_index::yum::PackageXml> = located.iter().collect();
        let config = repo_index::yum::RepoConfig {
            dir: layout::yum_repo(&env),
            timestamp: std::time::SystemTime::UNIX_EPOCH,
        };
        let rendered = repo_index::yum::render_repo(&config, &xml, None)?;
        Ok(rendered
            .data
            .iter()
            .map(|d| (d.kind.to_string(), d.open_checksum.clone()))
            .collect())
    })
    .await
}

/// Where [`repair`] looks for bytes: the project's build directories
/// (`DIR/.pipe/builds`), and for each of `more` the directory itself (a
/// directory of build directories), its `.pipe/builds` and its deploy
/// cache (`.pipe/cache`, a deploy target's).
pub fn repair_sources(project: &Path, more: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = vec![project.join(".pipe/builds")];
    for d in more {
        out.push(d.clone());
        out.push(d.join(".pipe/builds"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::records::{BuildIndex, IndexedMachine};
    use crate::store::{OpenOptions, StoreUrl};
    use crate::views::{MachinePointerDoc, PointedImage, PointedProvenance};

    fn key(uid: &str) -> SecretKey {
        let mut opts = keys::GenerateOptions::new(uid);
        opts.algorithm = keys::Algorithm::Ed25519;
        SecretKey::generate(&opts).unwrap()
    }

    fn published(sha256: &str) -> Published {
        Published {
            build: "1.0.0-b1".into(),
            index: Arc::new(BuildIndex {
                format: 1,
                debs: Vec::new(),
                rpms: Vec::new(),
                images: Vec::new(),
                machines: vec![IndexedMachine {
                    artifact: "web.raw".into(),
                    machine: "web".into(),
                    format: "raw".into(),
                    sha256: sha256.into(),
                    blake3: "b".repeat(64),
                    size: 10,
                }],
            }),
            rpm_blobs: Arc::new(BTreeMap::new()),
        }
    }

    fn doc(sha256: &str) -> Vec<u8> {
        let d = MachinePointerDoc {
            format: 1,
            machine: "web".into(),
            env: "dev".into(),
            build: "1.0.0-b1".into(),
            seq: 1,
            images: [(
                "raw".to_string(),
                PointedImage {
                    key: layout::blob_key(&"b".repeat(64)),
                    size: 10,
                    sha256: sha256.into(),
                    blake3: "b".repeat(64),
                },
            )]
            .into(),
            provenance: PointedProvenance {
                key: "builds/1.0.0-b1/provenance.json".into(),
                sha256: "c".repeat(64),
            },
        };
        let mut text = serde_json::to_vec_pretty(&d).unwrap();
        text.push(b'\n');
        text
    }

    async fn put(store: &Store, key: &str, bytes: Vec<u8>) {
        store
            .put(key, Body::from_bytes(bytes), Condition::Overwrite)
            .await
            .unwrap();
    }

    /// A machine pointer is believed when its signature verifies and it
    /// signs the images the build's index lists; anything else is damage.
    #[tokio::test]
    async fn machine_pointers_are_checked_against_the_signed_build() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreUrl::Local(dir.path().into()), &OpenOptions::default())
            .await
            .unwrap();
        let signer = key("Release <r@example.com>");
        let ring = signer.public_keyring();
        let good = "a".repeat(64);
        let p = published(&good);
        let signed = layout::machine_pointer_signed("web", "dev");
        let plain = layout::machine_pointer("web", "dev");
        let now = std::time::SystemTime::now();
        let check = || async {
            check_machines(&store, &ring, "dev", &[&p], false)
                .await
                .unwrap()
        };

        assert_eq!(check().await.len(), 1, "missing");
        put(&store, &signed, signer.clearsign(&doc(&good), now).unwrap()).await;
        put(&store, &plain, doc(&good)).await;
        assert!(check().await.is_empty(), "{:?}", check().await);

        // The plain copy edited: found, except while a regeneration runs.
        put(&store, &plain, doc(&"d".repeat(64))).await;
        let found = check().await;
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, plain);
        let mid = check_machines(&store, &ring, "dev", &[&p], true)
            .await
            .unwrap();
        assert!(mid.is_empty(), "{mid:?}");
        put(&store, &plain, doc(&good)).await;

        // Signed, but another image than the build's.
        put(
            &store,
            &signed,
            signer.clearsign(&doc(&"d".repeat(64)), now).unwrap(),
        )
        .await;
        let found = check().await;
        assert!(
            found
                .iter()
                .any(|f| f.0 == signed && f.1.contains("not those")),
            "{found:?}"
        );

        // The right document signed by another key.
        let other = key("Mallory <m@example.com>");
        put(&store, &signed, other.clearsign(&doc(&good), now).unwrap()).await;
        let found = check().await;
        assert!(
            found
                .iter()
                .any(|f| f.0 == signed && f.1.contains("signature")),
            "{found:?}"
        );
        assert_eq!(view_env(&signed), Some("dev"));
        assert_eq!(view_env("dists/prod/InRelease"), Some("prod"));
    }
}
