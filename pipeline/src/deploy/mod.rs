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
//!    `crate::build::verify::verify_records`), and each cached artifact's
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

mod cache;
mod delta;
mod machine;
mod report;
mod resolve;
mod select;
mod target;
pub mod template;
mod trusted;
pub mod unpack;

use std::path::{Path, PathBuf};

use keys::Keyring;

use crate::store::Store;
use crate::{Error, Result};
use cache::{blob_file, fetch_into_caches, first_cache};
pub use machine::{FetchedImage, MachineReport, MachineRequest, deploy_machine};
pub use report::{Fetched, Plan, Report, Source, TargetReport, Timings};
pub use resolve::unreachable;
use resolve::{Resolved, resolve, save_cache};
pub use target::{CheckReport, Difference, check};
use trusted::remember;

/// Inside a target directory: deploy's own files.
pub(crate) const STATE_DIR: &str = ".pipe";
/// The cache of records and artifacts, under [`STATE_DIR`].
pub(crate) const CACHE_DIR: &str = ".pipe/cache";
/// One JSON line per deploy, under the target directory.
pub(crate) const LOG_FILE: &str = ".pipe/deploys.jsonl";
/// The symlink to the live release.
pub(crate) const CURRENT: &str = "current";
/// Where releases are, one directory per build.
pub(crate) const RELEASES: &str = "releases";
/// The record of a release, at its top.
pub(crate) const RELEASE_RECORD: &str = ".pipe-release.json";

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
/// signed, unexpired freshness statement ([`crate::records::history::Freshness`]):
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
    let cache = first_cache(&targets)?;
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
            Ok(r) => {
                if let Some(slot) = reports.get_mut(i) {
                    *slot = Some(r);
                }
            }
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
    let cache = first_cache(&targets)?;
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

/// A deploy, fetch or plan given no target directory.
fn no_target() -> Error {
    Error::Usage {
        message: "no target directory".into(),
        hint: Some("pass `--target DIR` (several times for several targets)".into()),
    }
}

fn absolute_targets(targets: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if targets.is_empty() {
        return Err(no_target());
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

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    std::fs::write(tmp.path(), bytes).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}
