//! `pipe deploy` and `pipe fetch`: what an environment points at, verified
//! against the operator's keyring, unpacked into a release directory and
//! switched to atomically. A deploy never builds.
//!
//! The states, each timed:
//! 1. **resolve**: read the environment's pointer and history, and the
//!    build's signed records, from the store; when the store cannot be
//!    reached, from the target's cache (`DIR/.pipe/cache`, filled by every
//!    fetch and deploy), and say so.
//! 2. **verify**: the history chain and every entry's signature, the pointer
//!    being the newest entry, the manifest and provenance signatures and the
//!    build they name (one implementation with `pipe verify`,
//!    [`crate::build::verify::verify_records`]), and each cached artifact's
//!    digests. Only keys in the operator's keyring count.
//! 3. **fetch**: each selected package into the cache, its blake3 and size
//!    checked while streaming (a mismatch leaves nothing in the cache).
//! 4. **unpack**: the packages' payloads into `DIR/releases/.incoming-*`,
//!    refusing hostile entries ([`unpack`]).
//! 5. **configure**: the `[deploy] files` rendered for the environment, and
//!    the release record (`.pipe-release.json`, and `.pipe-entries.json`,
//!    what `--check` compares against);
//!    then the directory is renamed to `DIR/releases/BUILD`.
//! 6. **switch**: `DIR/current`, a symlink, replaced by rename; the optional
//!    `[deploy] after` command runs, and its failure switches back.
//!
//! A deploy holds an exclusive lock on `DIR/.pipe/lock` throughout, so two
//! deploys into one directory run one after the other. Until the rename of
//! `current` nothing a reader of `current` sees has changed; a crash leaves at
//! most an `.incoming-*` directory, which the next deploy removes.

mod delta;
mod machine;
mod target;
pub mod template;
pub mod unpack;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use keys::{Keyring, Verified};
use serde::{Deserialize, Serialize};

use crate::artifact::{Artifact, ArtifactKind};
use crate::build::files;
use crate::build::verify::{SignedBuild, check_blob, verify_records};
use crate::fault::point as fault_point;
use crate::records::SignedEntry;
use crate::records::history::{
    SignedFreshness, history_since, read_freshness, read_pointer, verify_chain_after,
    verify_freshness,
};
use crate::store::{BlobRef, Store, digest};
use crate::{Error, Result};
pub use machine::{FetchedImage, MachineReport, MachineRequest, deploy_machine};
pub use target::{CheckReport, Difference, check};
use unpack::Format;

/// Inside a target directory: deploy's own files.
pub const STATE_DIR: &str = ".pipe";
/// The cache of records and artifacts, under [`STATE_DIR`].
pub const CACHE_DIR: &str = ".pipe/cache";
/// One JSON line per deploy, under the target directory.
pub const LOG_FILE: &str = ".pipe/deploys.jsonl";
/// The symlink to the live release.
pub const CURRENT: &str = "current";
/// Where releases are, one directory per build.
pub const RELEASES: &str = "releases";
/// The record of a release, at its top.
pub const RELEASE_RECORD: &str = ".pipe-release.json";

/// The record files of a build, in the order they are fetched.
const RECORDS: [&str; 4] = [
    files::MANIFEST,
    files::MANIFEST_SIG,
    files::PROVENANCE,
    files::PROVENANCE_SIG,
];

/// What a deploy asks for.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The environment whose pointer names the build.
    pub env: &'a str,
    /// The directories to deploy into (each gets `releases/` and `current`).
    pub targets: &'a [PathBuf],
    /// The keys to trust; nothing found in the store is.
    pub keyring: &'a Keyring,
    /// `--set NAME=VALUE`, in order.
    pub sets: &'a [(String, String)],
    /// Re-create the release even if it is current.
    pub reset: bool,
    /// Releases to keep per target (the current one included).
    pub keep: usize,
    /// What to accept that rollback and freeze protection refuses.
    pub trust: Trust,
}

/// Exceptions to rollback and freeze protection, each an explicit flag.
///
/// Each target remembers the newest head it verified per environment
/// (`DIR/.pipe/trusted/ENV.json`: sequence number and entry digest). A head
/// with a lower sequence number, or a history that does not pass through
/// the remembered entry, is a store serving an older or another history:
/// refused unless `allow_downgrade`. The head must be vouched for by a
/// signed, unexpired freshness statement ([`crate::promote::Freshness`]):
/// a store that keeps serving an old head is refused once it expires,
/// unless `allow_expired`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Trust {
    /// `--allow-downgrade`: accept a head older than, or not descending
    /// from, the one a target verified last.
    pub allow_downgrade: bool,
    /// `--allow-expired`: accept a head whose freshness statement expired
    /// or is missing.
    pub allow_expired: bool,
}

/// What a target remembers of the newest head it verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Remembered {
    env: String,
    seq: u64,
    digest: String,
    build: String,
    /// The keyring the head was verified with ([`keyring_id`]): a later
    /// deploy skips the signatures up to it only with the same keyring.
    /// Empty in files of an older pipe.
    #[serde(default)]
    keyring: String,
}

/// A digest of the keyring's bytes: which keys verified a remembered head.
fn keyring_id(keyring: &Keyring) -> String {
    keyring
        .to_bytes(keys::Encoding::Binary)
        .map(|b| blake3::hash(&b).to_hex().to_string())
        .unwrap_or_default()
}

/// Under a target: the remembered heads, one file per environment.
const TRUSTED_DIR: &str = ".pipe/trusted";

/// Seconds spent in each state.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Reading the pointer, history and records.
    pub resolve: f64,
    /// Downloading artifacts into the cache.
    pub fetch: f64,
    /// Checking signatures, the chain and digests.
    pub verify: f64,
    /// Unpacking payloads.
    pub unpack: f64,
    /// Rendering `[deploy] files` and writing the release record.
    pub configure: f64,
    /// Renaming the release and `current` into place, and `[deploy] after`.
    pub switch: f64,
}

impl Timings {
    /// All states together.
    pub fn total(&self) -> f64 {
        self.resolve + self.fetch + self.verify + self.unpack + self.configure + self.switch
    }
}

/// Where the pointer and records came from.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "from", rename_all = "lowercase")]
pub enum Source {
    /// The store, reachable.
    Store {
        /// Its URL.
        url: String,
    },
    /// The target's cache, because the store could not be reached.
    Cache {
        /// The cache directory.
        dir: PathBuf,
        /// Why the store was not used.
        reason: String,
    },
}

/// One selected package artifact and whether it had to be downloaded.
#[derive(Debug, Clone, Serialize)]
pub struct Fetched {
    /// Artifact file name.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// True when it was already in the cache (and verified there).
    pub cached: bool,
}

/// What happened in one target directory.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The target directory.
    pub dir: PathBuf,
    /// `deployed`, `already current`, `reset` or `reconfigured`.
    pub action: String,
    /// The build `current` pointed at before.
    pub previous: Option<String>,
    /// The release directory.
    pub release: PathBuf,
    /// Entries unpacked (files, directories, links).
    pub entries: usize,
    /// Packages not decompressed: their payload was one the previous
    /// release had unpacked, and its files were taken from there (reflink
    /// or copy, each checked against its recorded digest).
    pub reused: Vec<String>,
    /// The `[deploy] files` written.
    pub rendered: Vec<String>,
    /// Releases deleted by `--keep`.
    pub pruned: Vec<String>,
    /// Time per state (resolve, fetch and verify are shared by all targets).
    pub timings: Timings,
}

/// What [`deploy`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The environment.
    pub env: String,
    /// The build deployed.
    pub build: String,
    /// Who signed the build's manifest.
    pub signer: Verified,
    /// Where the pointer and records came from.
    pub source: Source,
    /// The selected artifacts.
    pub artifacts: Vec<Fetched>,
    /// Per target, in the order given.
    pub targets: Vec<TargetReport>,
}

/// What [`plan`] would do, without doing it.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The environment.
    pub env: String,
    /// The build it points at.
    pub build: String,
    /// Where the pointer and records came from.
    pub source: Source,
    /// The artifacts that would be used (`cached`: no download needed in the
    /// first target).
    pub artifacts: Vec<Fetched>,
    /// The `[deploy] files` that would be written, rendered.
    pub files: BTreeMap<String, String>,
    /// Per target: the build `current` points at now.
    pub current: Vec<(PathBuf, Option<String>)>,
}

/// The environment's pointer and history, and the build's records, read
/// from the store or a cache and verified.
struct Resolved {
    head: SignedEntry,
    history: Vec<SignedEntry>,
    freshness: Option<SignedFreshness>,
    records: BTreeMap<String, Vec<u8>>,
    signed: SignedBuild,
    source: Source,
    /// The selected artifacts and how each is unpacked.
    selected: Vec<(Artifact, Format)>,
    /// Which keyring verified it ([`keyring_id`]).
    keyring_id: String,
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

/// Deploys what `req.env` points at into every target.
pub async fn deploy(store: std::result::Result<Store, Error>, req: &Request<'_>) -> Result<Report> {
    let targets = absolute_targets(req.targets)?;
    let mut shared = Timings::default();
    let resolved = resolve(
        store.as_ref(),
        req.env,
        req.keyring,
        req.trust,
        &targets,
        &mut shared,
    )
    .await?;
    let build = resolved.head.entry.build.clone();
    let rendered = render_files(req.env, &resolved, req.sets)?;

    // The cache of the first target holds the artifacts; the others get
    // hard links (or copies) of them, so each can redeploy offline.
    let cache = targets[0].join(CACHE_DIR);
    // When every target already runs this build with this configuration,
    // nothing is fetched or hashed: that is what makes a repeated deploy
    // cheap. (Each target checks again under its lock.)
    let config = target::config_digest(&rendered);
    let needed = req.reset
        || !targets
            .iter()
            .all(|t| target::is_current(t, &build, &config));
    let fetched = if needed {
        fetch_into_caches(store.as_ref().ok(), &targets, &resolved, &mut shared).await?
    } else {
        Vec::new()
    };
    for t in &targets {
        save_cache(&t.join(CACHE_DIR), req.env, &resolved)?;
        remember(t, &resolved.head, &resolved.keyring_id)?;
    }

    let job = std::sync::Arc::new(target::Job {
        env: req.env.to_string(),
        build: build.clone(),
        artifacts: resolved
            .selected
            .iter()
            .map(|(a, f)| {
                // The signed manifest says which packages allow special
                // modes (`allow_special_modes`, as validate checked).
                let special = a.component.package().is_some_and(|n| {
                    resolved
                        .signed
                        .manifest
                        .deploy
                        .special_modes
                        .iter()
                        .any(|s| s == n)
                });
                (a.name.clone(), *f, special, cache.join(blob_file(&a.blob)))
            })
            .collect(),
        rendered,
        after: resolved.signed.manifest.deploy.after.clone(),
        reset: req.reset,
        keep: req.keep.max(1),
        artifacts_verified: needed,
        shared,
    });
    let mut running = tokio::task::JoinSet::new();
    for (i, t) in targets.iter().enumerate() {
        let (job, t) = (job.clone(), t.clone());
        running.spawn_blocking(move || (i, target::deploy_into(&job, &t)));
    }
    let mut reports: Vec<Option<TargetReport>> = targets.iter().map(|_| None).collect();
    let mut first_error = None;
    while let Some(joined) = running.join_next().await {
        let (i, result) = joined.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        match result {
            Ok(r) => reports[i] = Some(r),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    // Every slot is filled: the loop above reports each target or returns.
    let targets = reports.into_iter().flatten().collect();
    Ok(Report {
        env: req.env.to_string(),
        build,
        signer: resolved.signed.signer,
        source: resolved.source,
        artifacts: fetched,
        targets,
    })
}

/// `pipe fetch`: resolves, verifies and downloads into the first target's
/// cache (linked into the others) without touching any release.
pub async fn fetch(
    store: std::result::Result<Store, Error>,
    env: &str,
    targets: &[PathBuf],
    keyring: &Keyring,
    trust: Trust,
) -> Result<(Report, Timings)> {
    let targets = absolute_targets(targets)?;
    let mut t = Timings::default();
    let resolved = resolve(store.as_ref(), env, keyring, trust, &targets, &mut t).await?;
    let fetched = fetch_into_caches(store.as_ref().ok(), &targets, &resolved, &mut t).await?;
    for dir in &targets {
        save_cache(&dir.join(CACHE_DIR), env, &resolved)?;
        remember(dir, &resolved.head, &resolved.keyring_id)?;
    }
    Ok((
        Report {
            env: env.to_string(),
            build: resolved.head.entry.build.clone(),
            signer: resolved.signed.signer,
            source: resolved.source,
            artifacts: fetched,
            targets: Vec::new(),
        },
        t,
    ))
}

/// `pipe deploy --plan`: resolves and verifies, and says what would be
/// fetched and written. Writes nothing.
pub async fn plan(store: std::result::Result<Store, Error>, req: &Request<'_>) -> Result<Plan> {
    let targets = absolute_targets(req.targets)?;
    let mut t = Timings::default();
    let resolved = resolve(
        store.as_ref(),
        req.env,
        req.keyring,
        req.trust,
        &targets,
        &mut t,
    )
    .await?;
    let files = render_files(req.env, &resolved, req.sets)?
        .into_iter()
        .collect();
    let cache = targets[0].join(CACHE_DIR);
    let artifacts = resolved
        .selected
        .iter()
        .map(|(a, _)| Fetched {
            name: a.name.clone(),
            size: a.blob.size,
            cached: std::fs::metadata(cache.join(blob_file(&a.blob)))
                .is_ok_and(|m| m.len() == a.blob.size),
        })
        .collect();
    Ok(Plan {
        env: req.env.to_string(),
        build: resolved.head.entry.build,
        source: resolved.source,
        artifacts,
        files,
        current: targets
            .iter()
            .map(|t| (t.clone(), target::current_build(t)))
            .collect(),
    })
}

fn absolute_targets(targets: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if targets.is_empty() {
        return Err(Error::Usage {
            message: "no target directory".into(),
            hint: Some("pass `--target DIR` (several times for several targets)".into()),
        });
    }
    let mut out = Vec::new();
    for t in targets {
        let abs = std::path::absolute(t).map_err(|e| Error::io(t, e))?;
        if out.contains(&abs) {
            return Err(Error::Usage {
                message: format!("target {} is given twice", abs.display()),
                hint: None,
            });
        }
        out.push(abs);
    }
    Ok(out)
}

/// True for failures that mean the store is unreachable rather than wrong:
/// only these fall back to the cache.
pub fn unreachable(e: &Error) -> bool {
    matches!(
        e,
        Error::Unreachable { .. } | Error::S3 { .. } | Error::Io { .. }
    )
}

async fn resolve(
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

/// The sequence number of the head `target` verified last for `env`, if
/// `history` still has it at that place (0 otherwise: everything is
/// verified, and [`check_remembered`] judges the difference).
fn remembered_seq(target: &Path, env: &str, history: &[SignedEntry], keyring: &str) -> u64 {
    let path = target.join(TRUSTED_DIR).join(format!("{env}.json"));
    let Some(known) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Remembered>(&b).ok())
    else {
        return 0;
    };
    if known.keyring.is_empty() || known.keyring != keyring {
        return 0;
    }
    let at = usize::try_from(known.seq)
        .ok()
        .and_then(|s| s.checked_sub(1));
    match at.and_then(|i| history.get(i)) {
        Some(e) if e.entry.seq == known.seq && e.entry.digest() == known.digest => known.seq,
        _ => 0,
    }
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
fn save_cache(cache: &Path, env: &str, r: &Resolved) -> Result<()> {
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

/// Refuses (exit 3) a verified `head` that is older than the one `target`
/// remembers for its environment, or whose `history` does not pass through
/// it, unless `allow_downgrade`.
fn check_remembered(
    target: &Path,
    head: &SignedEntry,
    history: &[SignedEntry],
    allow_downgrade: bool,
) -> Result<()> {
    let env = &head.entry.env;
    let path = target.join(TRUSTED_DIR).join(format!("{env}.json"));
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let known: Remembered = serde_json::from_slice(&bytes).map_err(|e| Error::Verify {
        what: path.display().to_string(),
        detail: format!("not a remembered head: {e}"),
    })?;
    let problem = if head.entry.seq < known.seq {
        Some(format!(
            "the store serves entry {} ({}), older than entry {} ({}) this target verified before",
            head.entry.seq, head.entry.build, known.seq, known.build
        ))
    } else {
        let at = usize::try_from(known.seq)
            .ok()
            .and_then(|s| s.checked_sub(1));
        match at.and_then(|i| history.get(i)) {
            Some(e) if e.entry.digest() == known.digest => None,
            found => Some(format!(
                "the history does not extend the entry {} ({}, digest {}) this target verified before: entry {} there has digest {}",
                known.seq,
                known.build,
                known.digest,
                known.seq,
                found.map_or_else(|| "(none)".to_string(), |e| e.entry.digest())
            )),
        }
    };
    match problem {
        Some(detail) if !allow_downgrade => Err(Error::Verify {
            what: format!("head of `{env}` for {}", target.display()),
            detail: format!(
                "{detail}; a rollback is a new entry (`pipe rollback`), and `--allow-downgrade` accepts this one"
            ),
        }),
        Some(detail) => {
            tracing::warn!("{detail}; accepted (--allow-downgrade)");
            Ok(())
        }
        None => Ok(()),
    }
}

/// Records `head` as the newest head `target` verified.
fn remember(target: &Path, head: &SignedEntry, keyring_id: &str) -> Result<()> {
    let e = &head.entry;
    let known = Remembered {
        env: e.env.clone(),
        seq: e.seq,
        digest: e.digest(),
        build: e.build.clone(),
        keyring: keyring_id.to_string(),
    };
    write_atomic(
        &target.join(TRUSTED_DIR).join(format!("{}.json", e.env)),
        &crate::json::to_vec_pretty(&known),
    )
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    std::fs::write(tmp.path(), bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

fn blob_file(blob: &BlobRef) -> PathBuf {
    Path::new("blobs").join(&blob.blake3)
}

/// The architectures this machine runs: Debian's and rpm's name, and the
/// architecture-independent ones.
fn host_arches() -> [&'static str; 4] {
    let (deb, rpm) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", "x86_64"),
        "aarch64" => ("arm64", "aarch64"),
        "arm" => ("armhf", "armv7hl"),
        "x86" => ("i386", "i686"),
        "powerpc64" => ("ppc64el", "ppc64le"),
        "s390x" => ("s390x", "s390x"),
        "riscv64" => ("riscv64", "riscv64"),
        other => (other, other),
    };
    [deb, rpm, "all", "noarch"]
}

/// Per package (all of the build's, or `[deploy] packages`), the artifact for
/// this machine: the `.deb` when there is one, else the `.rpm`.
fn select(
    artifacts: &[Artifact],
    wanted: &[String],
    build: &str,
) -> Result<Vec<(Artifact, Format)>> {
    let arches = host_arches();
    let mut by_package: BTreeMap<&str, Vec<&Artifact>> = BTreeMap::new();
    for a in artifacts {
        if let Some(name) = a.component.package() {
            by_package.entry(name).or_default().push(a);
        }
    }
    let names: Vec<&str> = if wanted.is_empty() {
        by_package.keys().copied().collect()
    } else {
        wanted.iter().map(String::as_str).collect()
    };
    let mut out = Vec::new();
    for name in names {
        let Some(candidates) = by_package.get(name) else {
            return Err(Error::Usage {
                message: format!(
                    "`[deploy] packages` names `{name}`, which build `{build}` does not contain"
                ),
                hint: Some(
                    "deploy a build that has it, or remove it from `[deploy] packages`".into(),
                ),
            });
        };
        let arch_of = |a: &Artifact| -> Option<(String, Format)> {
            let arch = crate::kinds::of(a.kind).deploy_arch(a)?;
            let format = match a.kind {
                ArtifactKind::Deb => Format::Deb,
                ArtifactKind::Rpm => Format::Rpm,
                // deploy_arch is None for images: never reached.
                ArtifactKind::OciImage => return None,
                // `deploy_arch` is `None` for machine images: never here.
                ArtifactKind::MachineImage => return None,
            };
            Some((arch, format))
        };
        let mut fitting: Vec<(&Artifact, Format)> = candidates
            .iter()
            .filter_map(|a| {
                let (arch, format) = arch_of(a)?;
                arches.contains(&arch.as_str()).then_some((*a, format))
            })
            .collect();
        fitting.sort_by_key(|(_, f)| *f != Format::Deb);
        match fitting.first() {
            Some((a, f)) => out.push(((*a).clone(), *f)),
            None => {
                return Err(Error::Usage {
                    message: format!(
                        "package `{name}` of build `{build}` has no artifact for this machine ({} or {})",
                        arches[0], arches[2]
                    ),
                    hint: Some(format!(
                        "its artifacts: {}",
                        candidates
                            .iter()
                            .map(|a| a.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                });
            }
        }
    }
    Ok(out)
}

fn render_files(
    env: &str,
    r: &Resolved,
    sets: &[(String, String)],
) -> Result<Vec<(String, String)>> {
    let values = template::values(
        [
            ("env", env),
            ("build", &r.head.entry.build),
            ("version", &r.signed.manifest.version),
        ],
        // `vars()` panics on a variable that is not UTF-8; such a variable
        // is no template value.
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        sets,
    )?;
    r.signed
        .manifest
        .deploy
        .files
        .iter()
        .map(|(path, text)| Ok((path.clone(), template::render(path, text, &values)?)))
        .collect()
}

/// Fetches the selected artifacts into the first target's cache, verifies
/// them there, and links them into the other targets' caches.
async fn fetch_into_caches(
    store: Option<&Store>,
    targets: &[PathBuf],
    resolved: &Resolved,
    t: &mut Timings,
) -> Result<Vec<Fetched>> {
    let cache = targets[0].join(CACHE_DIR);
    let started = Instant::now();
    let fetched = fetch_artifacts(store, &cache, &resolved.selected).await?;
    t.fetch += started.elapsed().as_secs_f64();
    fault_point("deploy-fetched");
    let started = Instant::now();
    verify_cached(&cache, &resolved.selected, &fetched).await?;
    t.verify += started.elapsed().as_secs_f64();
    fault_point("deploy-verified");
    for dir in &targets[1..] {
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
