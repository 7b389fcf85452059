//! The resolve and verify states: the environment's pointer, history and
//! freshness statement and the build's signed records, read from the store
//! or, when it cannot be reached, a target's cache; verified against the
//! operator's keyring; and kept in the cache for the next deploy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use keys::Keyring;
use serde::{Deserialize, Serialize};

use super::select::select;
use super::trusted::{check_remembered, keyring_id, remembered_seq};
use super::unpack::Format;
use super::{CACHE_DIR, Source, Timings, Trust, write_atomic};
use crate::artifact::Artifact;
use crate::build::files;
use crate::build::verify::{SignedBuild, verify_records};
use crate::fault::point as fault_point;
use crate::records::SignedEntry;
use crate::records::history::{
    SignedFreshness, history_since, read_freshness, read_pointer, verify_chain_after,
    verify_freshness,
};
use crate::store::Store;
use crate::{Error, Result};

/// The record files of a build, in the order they are fetched.
const RECORDS: [&str; 4] = [
    files::MANIFEST,
    files::MANIFEST_SIG,
    files::PROVENANCE,
    files::PROVENANCE_SIG,
];

/// The environment's pointer and history, and the build's records, read
/// from the store or a cache and verified.
pub(super) struct Resolved {
    pub(super) head: SignedEntry,
    pub(super) history: Vec<SignedEntry>,
    pub(super) freshness: Option<SignedFreshness>,
    pub(super) records: BTreeMap<String, Vec<u8>>,
    pub(super) signed: SignedBuild,
    pub(super) source: Source,
    /// The selected artifacts and how each is unpacked.
    pub(super) selected: Vec<(Artifact, Format)>,
    /// Which keyring verified it ([`keyring_id`]).
    pub(super) keyring_id: String,
}

/// What a cache keeps of an environment: its verified pointer, history and
/// freshness statement.
#[derive(Serialize, Deserialize)]
struct CachedEnv {
    head: SignedEntry,
    history: Vec<SignedEntry>,
    #[serde(default)]
    freshness: Option<SignedFreshness>,
}

/// True for failures that mean the store is unreachable rather than wrong:
/// only these fall back to the cache.
pub fn unreachable(e: &Error) -> bool {
    matches!(
        e,
        Error::Unreachable { .. } | Error::S3 { .. } | Error::Io { .. }
    )
}

pub(super) async fn resolve(
    store: std::result::Result<&Store, &Error>,
    env: &str,
    keyring: &Keyring,
    trust: Trust,
    targets: &[PathBuf],
    t: &mut Timings,
) -> Result<Resolved> {
    let started = Instant::now();
    let attempt: std::result::Result<(Records, Source), String> = match store {
        Ok(store) => match read_from_store(store, env, &cached_history(targets, env)).await {
            Ok(r) => Ok((
                r,
                Source::Store {
                    url: store.url().to_string(),
                },
            )),
            Err(e) if unreachable(&e) => Err(e.to_string()),
            Err(e) => return Err(e),
        },
        Err(e) if unreachable(e) => Err(e.to_string()),
        Err(e) => {
            return Err(Error::Usage {
                message: e.to_string(),
                hint: e.hint(),
            });
        }
    };
    let ((head, history, records, freshness), source) = match attempt {
        Ok(r) => r,
        Err(reason) => {
            tracing::warn!("the store cannot be reached ({reason}); using the cache");
            let mut found = None;
            for dir in targets.iter().map(|d| d.join(CACHE_DIR)) {
                if let Some(r) = read_from_cache(&dir, env)? {
                    found = Some((
                        r,
                        Source::Cache {
                            dir,
                            reason: reason.clone(),
                        },
                    ));
                    break;
                }
            }
            found.ok_or_else(|| Error::Usage {
                message: format!(
                    "the store cannot be reached ({reason}) and no target has `{env}` in its cache"
                ),
                hint: Some("run `pipe fetch` while the store is reachable".into()),
            })?
        }
    };
    t.resolve += started.elapsed().as_secs_f64();
    fault_point("deploy-resolved");

    let started = Instant::now();
    // Signatures up to the head every target verified before were checked
    // then; the chain of digests binds them to what is checked now.
    let verified_before = targets
        .iter()
        .map(|d| remembered_seq(d, env, &history, &keyring_id(keyring)))
        .min()
        .unwrap_or(0);
    verify_chain_after(env, &history, Some(keyring), verified_before)?;
    match history.last() {
        Some(last) if last.entry == head.entry && last.signature == head.signature => {}
        _ => {
            return Err(Error::Verify {
                what: format!("pointer of `{env}`"),
                detail: format!(
                    "entry {} ({}) is not the newest entry of the history",
                    head.entry.seq, head.entry.build
                ),
            });
        }
    }
    verify_freshness(
        &head.entry,
        freshness.as_ref(),
        keyring,
        std::time::SystemTime::now(),
        trust.allow_expired,
    )?;
    for dir in targets {
        check_remembered(dir, &head, &history, trust.allow_downgrade)?;
    }
    let signed = verify_records(keyring, |name| {
        records
            .get(name)
            .cloned()
            .ok_or_else(|| format!("build `{}` has no `{name}`", head.entry.build))
    })?;
    if signed.manifest.build != head.entry.build {
        return Err(Error::Verify {
            what: files::MANIFEST.into(),
            detail: format!(
                "`{env}` points at build `{}`, but the manifest is build `{}`",
                head.entry.build, signed.manifest.build
            ),
        });
    }
    t.verify += started.elapsed().as_secs_f64();
    // What to install and write comes from the signed build, never from
    // the deploy host's own files.
    let selected = select(
        &signed.manifest.artifacts,
        &signed.manifest.deploy.packages,
        &head.entry.build,
    )?;
    Ok(Resolved {
        head,
        history,
        freshness,
        records,
        signed,
        source,
        selected,
        keyring_id: keyring_id(keyring),
    })
}

/// A pointer, its history, the build's record files and the pointer's
/// freshness statement, as read.
type Records = (
    SignedEntry,
    Vec<SignedEntry>,
    BTreeMap<String, Vec<u8>>,
    Option<SignedFreshness>,
);

/// The history a target's cache holds for `env` (verified when it was
/// saved): the prefix [`history_since`] extends.
fn cached_history(targets: &[PathBuf], env: &str) -> Vec<SignedEntry> {
    targets
        .iter()
        .find_map(|d| read_from_cache(&d.join(CACHE_DIR), env).ok().flatten())
        .map(|(_, history, _, _)| history)
        .unwrap_or_default()
}

async fn read_from_store(store: &Store, env: &str, known: &[SignedEntry]) -> Result<Records> {
    // A local store whose directory is gone (an unmounted share, a machine
    // that only ever had a cache) cannot be reached; an empty one can.
    if let crate::store::StoreUrl::Local(dir) = store.url()
        && !dir.is_dir()
    {
        return Err(Error::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the store directory does not exist",
            ),
        ));
    }
    let (head, _) = read_pointer(store, env).await?;
    let Some(head) = head else {
        return Err(Error::Usage {
            message: format!("`{env}` points at no build in {}", store.url()),
            hint: Some(format!("promote a build first: `pipe promote --to {env}`")),
        });
    };
    let (history, _) = history_since(store, env, known).await?;
    // The records and the manifest's shards, each capped.
    let records = crate::records::index::read_records(store, &head.entry.build).await?;
    let freshness = read_freshness(store, env).await?;
    Ok((head, history, records, freshness))
}

fn read_from_cache(cache: &Path, env: &str) -> Result<Option<Records>> {
    let path = cache.join("envs").join(format!("{env}.json"));
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let cached: CachedEnv = serde_json::from_slice(&bytes).map_err(|e| Error::Verify {
        what: path.display().to_string(),
        detail: format!("not a cached pointer: {e}"),
    })?;
    let dir = cache.join("builds").join(&cached.head.entry.build);
    let mut records = BTreeMap::new();
    for name in RECORDS {
        if let Ok(b) = std::fs::read(dir.join(name)) {
            records.insert(name.to_string(), b);
        }
    }
    let shards = records
        .get(files::MANIFEST)
        .map(|m| crate::records::manifest::shard_names(m))
        .unwrap_or_default();
    for name in shards {
        if let Ok(b) = std::fs::read(dir.join(&name)) {
            records.insert(name, b);
        }
    }
    Ok(Some((
        cached.head,
        cached.history,
        records,
        cached.freshness,
    )))
}

/// Keeps what was verified, so a later deploy can run without the store.
pub(super) fn save_cache(cache: &Path, env: &str, r: &Resolved) -> Result<()> {
    let build_dir = cache.join("builds").join(&r.head.entry.build);
    for (name, bytes) in &r.records {
        write_atomic(&build_dir.join(name), bytes)?;
    }
    let cached = CachedEnv {
        head: r.head.clone(),
        history: r.history.clone(),
        freshness: r.freshness.clone(),
    };
    write_atomic(
        &cache.join("envs").join(format!("{env}.json")),
        &crate::json::to_vec_pretty(&cached),
    )
}
