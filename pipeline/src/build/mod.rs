//! `pipe build`: runs the build steps, then the stages, each skipped when its
//! cache key is already built, then writes and signs the build's manifest and
//! provenance.
//!
//! Every stage has a key, the digest of everything that can change its output:
//! its section of `pipeline.toml`, its input files, the timestamp artifacts are
//! clamped to, and the pipe version. Outputs are kept in the store under that
//! key, so a second machine sharing the store restores instead of rebuilding.
//!
//! A build lands in `.pipe/builds/<id>/` (artifacts, `manifest.json`,
//! `provenance.json` and their `.asc` signatures) only when complete: it is
//! assembled in a temporary directory beside it and renamed into place.

pub(crate) mod artifacts;
pub(crate) mod epoch;
pub(crate) mod key;
pub mod plan;
pub(crate) mod record;
pub(crate) mod reuse;
pub mod steps;
pub mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use keys::{Encoding, SecretKey};

use crate::kinds::StageContext;
use crate::model::Pipeline;
use crate::records::cache::Sealer;
use crate::records::manifest::{Part, load_shards, shard};
use crate::records::{DeploySpec, Input, MANIFEST_FORMAT, Manifest, StepSummary};
use crate::store::{Store, digest};
use crate::task::Joined;
use crate::{Error, Result};
use artifacts::Built;
use epoch::EpochSource;
use plan::Plan;
use record::RunFacts;
use steps::StepOutcome;

/// Folded into every cache key, so a new pipe never reuses an old pipe's
/// outputs.
pub(crate) const TOOL_VERSION: &str = concat!("pipe ", env!("CARGO_PKG_VERSION"));

/// Where builds live, relative to the project directory.
pub(crate) const BUILDS_DIR: &str = ".pipe/builds";
/// The file in [`BUILDS_DIR`] naming the newest build.
pub(crate) const LATEST: &str = "latest";

pub(crate) use crate::records::files;

/// What a build produced.
#[derive(Debug)]
pub struct BuildOutcome {
    /// The signed manifest.
    pub manifest: Manifest,
    /// The build directory.
    pub dir: PathBuf,
    /// Where the timestamp came from.
    pub epoch_source: EpochSource,
    /// What each step did.
    pub steps: Vec<StepOutcome>,
    /// Each artifact and whether it was a cache hit.
    pub built: Vec<Built>,
}

/// Sets the thread and memory budget every compressor of this process
/// shares (`None`: the cores; 512 MiB, the default of
/// [`stages::compress::Limits`]). The
/// build also runs at most `threads` artifact writers at once. Artifacts do
/// not depend on it: the compressors' output is the same for any budget.
pub fn set_compressor_limits(threads: Option<u32>, memory: Option<u64>) {
    let default = stages::compress::Limits::default();
    stages::compress::set_limits(stages::compress::Limits {
        threads: threads
            .and_then(std::num::NonZeroU32::new)
            .unwrap_or(default.threads),
        memory: memory.unwrap_or(default.memory),
    });
}

/// The plan of `p` with every key that can be known before anything runs
/// (`Plan::keyed`), as `pipe build --plan` shows it and [`execute`] runs
/// it. Reads and hashes the inputs.
pub async fn plan(p: &Pipeline, key: Option<&SecretKey>) -> Result<(Plan, EpochSource)> {
    let (epoch, source) = epoch::source_date_epoch(p)?;
    let cx = StageContext {
        dir: p.dir.clone(),
        epoch,
        signer: key.cloned(),
    };
    let plan = Plan::new(p)?;
    let p = p.clone();
    let plan = tokio::task::spawn_blocking(move || plan.keyed(&p, &cx))
        .await
        .joined()?;
    Ok((plan, source))
}

/// Executes `plan` (made from `p`), signing with `key`: exactly its steps,
/// in its order, then exactly its artifact nodes; a key the plan knew must
/// not have changed.
pub async fn execute(
    p: &Pipeline,
    plan: &Plan,
    store: &Store,
    key: &SecretKey,
) -> Result<BuildOutcome> {
    let started = SystemTime::now();
    let (epoch, epoch_source) = epoch::source_date_epoch(p)?;
    // A key that cannot sign now would fail the build at its very end; asking
    // for its signing key checks expiry and revocation without signing.
    key.signing_algorithm(started).map_err(Error::Signing)?;
    let order: Vec<&str> = plan.steps.iter().map(|s| s.name.as_str()).collect();
    // Cache records are believed only when this key signed them.
    let sealer = Sealer::new(key, artifacts::signature_time(epoch, key));
    let steps = steps::run_steps(p, &order, store, epoch, &sealer).await?;
    for (planned, ran) in plan.steps.iter().zip(&steps) {
        if let Some(k) = &planned.cache_key
            && *k != ran.key
        {
            return Err(Error::Usage {
                message: format!(
                    "the inputs of step `{}` changed since the plan was made (planned key {k}, now {})",
                    ran.name, ran.key
                ),
                hint: Some("make the plan again: `pipe build` plans and builds in one go".into()),
            });
        }
    }

    let builds = p.dir.join(BUILDS_DIR);
    std::fs::create_dir_all(&builds).map_err(|e| Error::io(&builds, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".incoming-")
        .tempdir_in(&builds)
        .map_err(|e| Error::io(&builds, e))?;
    let _held = Held::take(staging.path())?;
    remove_stale_incoming(&builds);
    let cx = StageContext {
        dir: p.dir.clone(),
        epoch,
        signer: Some(key.clone()),
    };
    let shared = Arc::new(p.clone());
    let built =
        artifacts::build_artifacts(&shared, plan, store, &cx, &sealer, staging.path()).await?;

    // Every input was hashed (both digests) when its stage was keyed; the
    // manifest takes those digests instead of reading the files again. Each
    // artifact goes into its component's shard with its inputs and index
    // fragment; the steps' inputs into a shard of their own.
    let parts: Vec<Part> = built
        .iter()
        .map(|b| Part {
            artifact: b.artifact.clone(),
            inputs: b.inputs.clone(),
            fragment: b.index.clone(),
        })
        .collect();
    let step_inputs: Vec<Input> = steps.iter().flat_map(|s| s.inputs.clone()).collect();
    let sharded = shard(parts, step_inputs);
    let mut manifest = Manifest {
        format: MANIFEST_FORMAT,
        build: String::new(),
        project: p.project.name.clone(),
        version: p.project.version.clone(),
        source_date_epoch: epoch,
        tool: TOOL_VERSION.to_string(),
        pipeline: digest::hash_file(&p.file_abs()).await?,
        shards: sharded.refs,
        artifacts: Vec::new(),
        inputs: Vec::new(),
        steps: steps
            .iter()
            .map(|s| StepSummary {
                name: s.name.clone(),
                key: s.key.clone(),
            })
            .collect(),
        deploy: DeploySpec {
            files: p.deploy.files.clone(),
            packages: p.deploy.packages.clone(),
            after: p.deploy.after.clone(),
            special_modes: p
                .packages
                .values()
                .filter(|pkg| pkg.allow_special_modes)
                .map(|pkg| pkg.name.clone())
                .collect(),
        },
    }
    .seal();
    // The artifacts and inputs as every reader sees them: from the shards.
    let shard_files: BTreeMap<String, Vec<u8>> = sharded.files.into_iter().collect();
    load_shards(&mut manifest, |name| {
        shard_files
            .get(name)
            .cloned()
            .ok_or_else(|| format!("no shard `{name}`"))
    })?;

    let manifest_json = manifest.to_json();
    let run = RunFacts {
        invocation_id: invocation_id(&manifest.build, started),
        started_on: rfc3339(started),
        finished_on: rfc3339(SystemTime::now()),
        builder_id: builder_id(),
    };
    let mut provenance = crate::json::to_vec_pretty(&record::provenance(&manifest, &run));
    provenance.push(b'\n');
    // The two signatures (RSA-4096 by default: milliseconds each) at once.
    let (manifest_sig, provenance_sig) = std::thread::scope(|s| {
        let manifest_sig = s.spawn(|| {
            key.sign_detached(
                &manifest_json[..],
                artifacts::signature_time(epoch, key),
                Encoding::Armored,
            )
        });
        let provenance_sig =
            key.sign_detached(&provenance[..], SystemTime::now(), Encoding::Armored);
        let manifest_sig = manifest_sig
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (manifest_sig, provenance_sig)
    });
    let manifest_sig = manifest_sig.map_err(Error::Signing)?;
    let provenance_sig = provenance_sig?;

    let stage = staging.path();
    for (name, bytes) in &shard_files {
        let path = stage.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
    }
    for (name, bytes) in [
        (files::MANIFEST, &manifest_json),
        (files::MANIFEST_SIG, &manifest_sig),
        (files::PROVENANCE, &provenance),
        (files::PROVENANCE_SIG, &provenance_sig),
    ] {
        let path = stage.join(name);
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
    }

    let dir = builds.join(&manifest.build);
    replace_dir(staging.keep(), &dir)?;
    write_atomic(
        &builds.join(LATEST),
        format!("{}\n", manifest.build).as_bytes(),
    )?;
    Ok(BuildOutcome {
        manifest,
        dir,
        epoch_source,
        steps,
        built,
    })
}

/// The directory of build `id`, or of the latest build when `id` is `None`.
pub fn build_dir(project_dir: &Path, id: Option<&str>) -> Result<PathBuf> {
    let builds = project_dir.join(BUILDS_DIR);
    let id = match id {
        Some(id) => id.to_string(),
        None => {
            let latest = builds.join(LATEST);
            match std::fs::read_to_string(&latest) {
                Ok(s) => s.trim().to_string(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::Usage {
                        message: "no build yet".into(),
                        hint: Some("run `pipe build` first".into()),
                    });
                }
                Err(e) => return Err(Error::io(&latest, e)),
            }
        }
    };
    let dir = builds.join(&id);
    if !dir.join(files::MANIFEST).exists() {
        return Err(Error::Usage {
            message: format!("no build `{id}` in {}", builds.display()),
            hint: Some("`pipe status` lists builds; omit BUILD for the latest".into()),
        });
    }
    Ok(dir)
}

/// Moves a finished build directory into place. A build with the same id has
/// the same artifacts; only its provenance differs, so the new one replaces it.
fn replace_dir(from: PathBuf, to: &Path) -> Result<()> {
    if to.exists() {
        let old = to.with_extension("replaced");
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(to, &old).map_err(|e| Error::io(to, e))?;
        std::fs::rename(&from, to).map_err(|e| Error::io(to, e))?;
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    } else {
        std::fs::rename(&from, to).map_err(|e| Error::io(to, e))?;
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn invocation_id(build: &str, started: SystemTime) -> String {
    let nanos = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let h = blake3::hash(format!("{build}\0{nanos}\0{}", std::process::id()).as_bytes());
    h.to_hex()[..32].to_string()
}

/// `$PIPE_BUILDER_ID`, else `pipe@HOST` (SLSA's builder.id is a URI-like
/// identity of the platform that ran the build).
fn builder_id() -> String {
    if let Ok(id) = std::env::var("PIPE_BUILDER_ID") {
        return id;
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("https://pipe.dev/builder/local#{host}")
}

/// RFC 3339 UTC with second precision (as keys and signatures print times).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    keys::Timestamp::from(t).to_string()
}

/// How old a `.incoming-*` directory without its lock file must be to be
/// taken as left by a killed build (the window between creating the
/// directory and locking is a few microseconds).
const UNLOCKED_INCOMING_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// An exclusive lock on `<staging>.lock`, held while a build fills its
/// staging directory: a build killed mid-way leaves the directory and an
/// unlocked lock file, which the next build removes.
struct Held {
    path: PathBuf,
    _file: std::fs::File,
}

impl Held {
    fn take(staging: &Path) -> Result<Held> {
        let path = lock_path(staging);
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        fs4::FileExt::lock(&file).map_err(|e| Error::io(&path, e))?;
        Ok(Held { path, _file: file })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn lock_path(staging: &Path) -> PathBuf {
    let mut name = staging.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    staging.with_file_name(name)
}

/// Removes the staging directories of builds that are gone: their lock
/// file can be locked, or there is none and the directory is old. Best
/// effort: a failure is logged, the build goes on.
fn remove_stale_incoming(builds: &Path) {
    let Ok(entries) = std::fs::read_dir(builds) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if !name.starts_with(".incoming-") || name.ends_with(".lock") || !path.is_dir() {
            continue;
        }
        let lock = lock_path(&path);
        let stale = match std::fs::OpenOptions::new().write(true).open(&lock) {
            // Locked by a live build: WouldBlock.
            Ok(f) => fs4::FileExt::try_lock(&f).is_ok(),
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > UNLOCKED_INCOMING_AGE),
        };
        if !stale {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                let _ = std::fs::remove_file(&lock);
                tracing::info!(dir = %path.display(), "removed the staging directory of a build that did not finish");
            }
            Err(e) => {
                tracing::warn!(dir = %path.display(), error = %e, "could not remove the staging directory of a build that did not finish")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        let t = |s| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(rfc3339(t(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(t(1_700_000_000)), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(t(951_782_400)), "2000-02-29T00:00:00Z");
    }
}
