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

pub mod cache;
pub mod epoch;
pub mod packages;
pub mod record;
pub mod steps;
pub mod verify;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use keys::{Encoding, SecretKey};

use crate::model::Pipeline;
use crate::store::{Store, digest};
use crate::{Error, Result};
use epoch::EpochSource;
use packages::Built;
use record::{Input, MANIFEST_FORMAT, Manifest, RunFacts, StepSummary};
use steps::StepOutcome;

/// Folded into every cache key, so a new pipe never reuses an old pipe's
/// outputs.
pub const TOOL_VERSION: &str = concat!("pipe ", env!("CARGO_PKG_VERSION"));

/// Where builds live, relative to the project directory.
pub const BUILDS_DIR: &str = ".pipe/builds";
/// The file in [`BUILDS_DIR`] naming the newest build.
pub const LATEST: &str = "latest";

/// File names inside a build directory.
pub mod files {
    /// The manifest.
    pub const MANIFEST: &str = "manifest.json";
    /// Its detached armored signature.
    pub const MANIFEST_SIG: &str = "manifest.json.asc";
    /// The in-toto statement with the SLSA provenance.
    pub const PROVENANCE: &str = "provenance.json";
    /// Its detached armored signature.
    pub const PROVENANCE_SIG: &str = "provenance.json.asc";
    /// What the apt and yum indices need of every package
    /// ([`crate::repository::BuildIndex`]).
    pub const INDEX: &str = "index.json";
}

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

/// Builds everything `p` declares, signing with `key`.
pub async fn build(p: &Pipeline, store: &Store, key: &SecretKey) -> Result<BuildOutcome> {
    let started = SystemTime::now();
    let (epoch, epoch_source) = epoch::source_date_epoch(p)?;
    // A key that cannot sign now would fail the build at its very end; asking
    // for its signing key checks expiry and revocation without signing.
    key.signing_algorithm(started).map_err(Error::Signing)?;
    // Cache records are believed only when this key signed them.
    let sealer = cache::Sealer::new(key, epoch);
    let steps = steps::run_steps(p, store, epoch, &sealer).await?;

    let builds = p.dir.join(BUILDS_DIR);
    std::fs::create_dir_all(&builds).map_err(|e| Error::io(&builds, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".incoming-")
        .tempdir_in(&builds)
        .map_err(|e| Error::io(&builds, e))?;
    let built =
        packages::build_packages(p, store, epoch, Some(key), &sealer, staging.path()).await?;

    // Every input was hashed (both digests) when its stage was keyed; the
    // manifest takes those digests instead of reading the files again.
    let inputs: Vec<Input> = built
        .iter()
        .flat_map(|b| &b.inputs)
        .chain(steps.iter().flat_map(|s| &s.inputs))
        .map(|i| (i.path.clone(), i.blob.clone()))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .map(|(path, blob)| Input { path, blob })
        .collect();
    // The package index first: the manifest names its digest.
    let index = serde_json::to_vec(&crate::repository::BuildIndex::from_fragments(
        built.iter().map(|b| &b.index),
    ))
    .expect("index serialises");
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        build: String::new(),
        project: p.project.name.clone(),
        version: p.project.version.clone(),
        source_date_epoch: epoch,
        tool: TOOL_VERSION.to_string(),
        pipeline: digest::hash_file(&p.file_abs()).await?,
        artifacts: built.iter().map(|b| b.artifact.clone()).collect(),
        inputs,
        steps: steps
            .iter()
            .map(|s| StepSummary {
                name: s.name.clone(),
                key: s.key.clone(),
            })
            .collect(),
        index: Some(blake3::hash(&index).to_hex().to_string()),
    }
    .seal();

    let manifest_json = manifest.to_json();
    let manifest_sig = key
        .sign_detached(
            &manifest_json[..],
            packages::signature_time(epoch, key),
            Encoding::Armored,
        )
        .map_err(Error::Signing)?;
    let run = RunFacts {
        invocation_id: invocation_id(&manifest.build, started),
        started_on: rfc3339(started),
        finished_on: rfc3339(SystemTime::now()),
        builder_id: builder_id(),
    };
    let mut provenance = serde_json::to_vec_pretty(&record::provenance(&manifest, &run))
        .expect("provenance serialises");
    provenance.push(b'\n');
    let provenance_sig =
        key.sign_detached(&provenance[..], SystemTime::now(), Encoding::Armored)?;

    let stage = staging.path();
    for (name, bytes) in [
        (files::INDEX, &index),
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
pub fn rfc3339(t: SystemTime) -> String {
    keys::Timestamp::from(t).to_string()
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
