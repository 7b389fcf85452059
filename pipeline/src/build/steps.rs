//! Build steps: commands run at build time, skipped when the digest of their
//! command, environment and inputs is already built.
//!
//! A step's outputs go into the store as blobs, listed by a record under
//! `cache/steps/<key>.json`; another machine sharing the store restores the
//! outputs from there instead of running the step. A record is written only
//! after the command succeeded and every output is stored, so a failed step
//! leaves nothing behind in the store.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use globset::{GlobBuilder, GlobMatcher};
use serde::Serialize;

use super::TOOL_VERSION;
use crate::error::StepFailure;
use crate::model::{Pipeline, Step};
use crate::records::Input;
use crate::records::cache::{Lookup, Sealer, StepRecord};
use crate::store::{Store, digest, layout};
use crate::task::Joined;
use crate::{Error, Result, records};

/// `PATH` inside a step: the system directories only, so a step does not
/// depend on whoever happens to run the build. A step that needs more sets
/// `PATH` in its `env`.
const STEP_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Directories never read as step inputs: pipe's own state and git's.
const IGNORED_DIRS: [&str; 2] = [".pipe", ".git"];

/// What happened to one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    /// Step name.
    pub name: String,
    /// Its cache key (hex blake3).
    pub key: String,
    /// Ran, restored from the store, or already up to date on disk.
    pub status: StepStatus,
    /// Seconds spent.
    pub seconds: f64,
    /// The files it produced.
    pub outputs: Vec<OutputFile>,
    /// The files its input globs matched (relative to the project directory)
    /// with their digests, for the manifest.
    pub inputs: Vec<Input>,
}

/// How a step's outputs came to be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The command ran.
    Ran,
    /// The outputs were fetched from the store (built elsewhere or earlier).
    Restored,
    /// The outputs on disk already match the cache record.
    UpToDate,
}

pub use crate::records::cache::OutputFile;

/// Runs the steps named by `order` (the plan's order: a step that reads
/// another's outputs runs after it), skipping those whose key is already
/// built. Records are believed only when `sealer`'s keyring verifies them,
/// and only within the step's declared outputs.
pub(crate) async fn run_steps(
    p: &Pipeline,
    order: &[&str],
    store: &Store,
    epoch: u64,
    sealer: &Sealer,
) -> Result<Vec<StepOutcome>> {
    let mut outcomes = Vec::new();
    for name in order {
        let step = declared(p, name)?;
        outcomes.push(run_step(p, step, store, epoch, sealer).await?);
    }
    Ok(outcomes)
}

/// The step `name` of `p`, or an error if a plan names a step that
/// pipeline.toml does not declare (a plan made from another version of it).
pub(crate) fn declared<'p>(p: &'p Pipeline, name: &str) -> Result<&'p Step> {
    p.steps.get(name).ok_or_else(|| Error::Usage {
        message: format!("the plan names step `{name}`, which pipeline.toml does not declare"),
        hint: Some("make the plan again from this pipeline.toml".into()),
    })
}

/// Every step in run order with the steps whose outputs it reads.
pub(crate) fn dependencies(p: &Pipeline) -> Result<Vec<(&Step, Vec<String>)>> {
    Ok(order(p)?
        .into_iter()
        .map(|(s, needs)| (s, needs.iter().map(|d| d.to_string()).collect()))
        .collect())
}

async fn run_step(
    p: &Pipeline,
    step: &Step,
    store: &Store,
    epoch: u64,
    sealer: &Sealer,
) -> Result<StepOutcome> {
    let started = Instant::now();
    let dir = p.dir.clone();
    let owned = step.clone();
    let (key, inputs) = tokio::task::spawn_blocking(move || key(&dir, &owned, epoch))
        .await
        .joined()?;
    let mut found = records::cache::step(store, &key, sealer).await?;
    if let Lookup::Trusted(record) = &found
        && let Err(reason) = check_record(step, record)
    {
        found = records::cache::forged(&layout::step_record(&key), reason, None);
    }
    let record = match &found {
        Lookup::Trusted(record) => Some(record.clone()),
        _ => None,
    };

    let (status, outputs) = match record {
        Some(record) if outputs_match(&p.dir, &record.outputs)? => {
            (StepStatus::UpToDate, record.outputs)
        }
        Some(record) => {
            clear_outputs(&p.dir, step)?;
            for out in &record.outputs {
                let path = p.dir.join(&out.path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
                }
                store.get_blob_to_file(&out.blob, &path).await?;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(out.mode))
                    .map_err(|e| Error::io(&path, e))?;
            }
            (StepStatus::Restored, record.outputs)
        }
        None => {
            clear_outputs(&p.dir, step)?;
            let dir = p.dir.clone();
            let owned = step.clone();
            tokio::task::spawn_blocking(move || execute(&dir, &owned, epoch))
                .await
                .joined()?;
            let outputs = store_outputs(p, step, store).await?;
            let record = StepRecord {
                step: step.name.clone(),
                key: key.clone(),
                outputs: outputs.clone(),
            };
            records::cache::put_step(store, &record, sealer, &found).await?;
            (StepStatus::Ran, outputs)
        }
    };
    Ok(StepOutcome {
        name: step.name.clone(),
        key,
        status,
        seconds: started.elapsed().as_secs_f64(),
        outputs,
        inputs,
    })
}

/// A signed record still only restores into the step's declared outputs,
/// with permission bits only: a relative path of plain components under
/// one of `step.outputs`, a mode within `0o777`.
fn check_record(step: &Step, record: &StepRecord) -> std::result::Result<(), String> {
    for out in &record.outputs {
        let plain = Path::new(&out.path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        let declared = step.outputs.iter().any(|o| {
            let o = o.trim_end_matches('/');
            out.path == o || out.path.starts_with(&format!("{o}/"))
        });
        if out.path.is_empty() || !plain || !declared {
            return Err(format!(
                "it restores `{}`, which is not inside the step's declared outputs",
                out.path
            ));
        }
        if out.mode & !0o777 != 0 {
            return Err(format!(
                "it restores `{}` with mode {:o}: only permission bits (0777) are restored",
                out.path, out.mode
            ));
        }
    }
    Ok(())
}

/// Steps in an order where each comes after the steps whose outputs its
/// inputs match, each with the names of those steps.
fn order(p: &Pipeline) -> Result<Vec<(&Step, BTreeSet<&str>)>> {
    let mut pending: Vec<(&Step, BTreeSet<&str>)> = Vec::new();
    for step in p.steps.values() {
        let matchers = matchers(step)?;
        let mut needs = BTreeSet::new();
        for other in p.steps.values().filter(|o| o.name != step.name) {
            let produces = other.outputs.iter().any(|out| {
                let out = out.trim_end_matches('/');
                matchers.iter().any(|(_, m)| {
                    m.is_match(out) || m.glob().glob().starts_with(&format!("{out}/"))
                })
            });
            if produces {
                needs.insert(other.name.as_str());
            }
        }
        pending.push((step, needs));
    }
    let mut done: Vec<(&Step, BTreeSet<&str>)> = Vec::new();
    while !pending.is_empty() {
        let (ready, rest): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(_, needs)| needs.iter().all(|d| done.iter().any(|(x, _)| x.name == *d)));
        if ready.is_empty() {
            let stuck: Vec<String> = rest.iter().map(|(s, _)| s.name.clone()).collect();
            return Err(Error::Usage {
                message: format!(
                    "steps {} read each other's outputs in a cycle",
                    stuck.join(", ")
                ),
                hint: Some("split the steps so their inputs and outputs do not overlap".into()),
            });
        }
        done.extend(ready);
        pending = rest;
    }
    Ok(done)
}

fn matchers(step: &Step) -> Result<Vec<(String, GlobMatcher)>> {
    step.inputs
        .iter()
        .map(|g| {
            GlobBuilder::new(g)
                .literal_separator(true)
                .build()
                .map(|glob| (g.clone(), glob.compile_matcher()))
                .map_err(|e| Error::Usage {
                    message: format!(
                        "input `{g}` of step `{}` is not a valid glob: {e}",
                        step.name
                    ),
                    hint: Some("`*` matches within a directory, `**` across directories".into()),
                })
        })
        .collect()
}

/// The digest of everything that can change the step's outputs, and the
/// input files it covers.
pub(crate) fn key(dir: &Path, step: &Step, epoch: u64) -> Result<(String, Vec<Input>)> {
    let mut h = super::key::KeyBuilder::new();
    let mut field = |name: &str, value: &[u8]| {
        h.field(name, value);
    };
    field("tool", TOOL_VERSION.as_bytes());
    field("run", step.run.as_bytes());
    field("epoch", epoch.to_string().as_bytes());
    for (k, v) in &step.env {
        field("env", format!("{k}={v}").as_bytes());
    }
    for out in &step.outputs {
        field("output", out.as_bytes());
    }
    let files = input_files(dir, step)?;
    for f in &files {
        field(
            "input",
            format!("{}\0{:o}\0{}", f.input.path, f.mode, f.key_digest).as_bytes(),
        );
    }
    let inputs = files.into_iter().map(|f| f.input).collect();
    Ok((h.finish(), inputs))
}

/// Files matched by the step's input globs, sorted, with mode and digest.
/// The step's own outputs are not its inputs.
fn input_files(dir: &Path, step: &Step) -> Result<Vec<InputFile>> {
    let matchers = matchers(step)?;
    let own: Vec<String> = step
        .outputs
        .iter()
        .map(|o| o.trim_end_matches('/').to_string())
        .collect();
    let mut hits: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut used = vec![false; matchers.len()];
    let walker = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            !(e.depth() == 1 && IGNORED_DIRS.contains(&name.as_ref()))
        });
    for entry in walker {
        let entry = entry.map_err(|e| {
            let path = e
                .path()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dir.to_path_buf());
            Error::io(path, e.into())
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        #[allow(clippy::expect_used, reason = "walkdir yields paths under its root")]
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("walk stays under dir");
        let Some(rel) = rel.to_str() else { continue };
        if own
            .iter()
            .any(|o| rel == o || rel.starts_with(&format!("{o}/")))
        {
            continue;
        }
        for ((_, m), used) in matchers.iter().zip(used.iter_mut()) {
            if m.is_match(rel) {
                *used = true;
                hits.insert(rel.to_string(), entry.path().to_path_buf());
            }
        }
    }
    if let Some(((glob, _), _)) = matchers.iter().zip(&used).find(|(_, u)| !**u) {
        return Err(Error::Step {
            step: step.name.clone(),
            failure: StepFailure::NoInput { glob: glob.clone() },
        });
    }
    hits.into_iter()
        .map(|(rel, path)| {
            let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
            // The manifest records what the file holds (through a link); the
            // key of a link is its target text, so retargeting it counts.
            let blob = digest::hash_file_blocking(&path)?;
            let key_digest = if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).map_err(|e| Error::io(&path, e))?;
                blake3::hash(target.as_os_str().as_encoded_bytes())
                    .to_hex()
                    .to_string()
            } else {
                blob.blake3.clone()
            };
            Ok(InputFile {
                mode: meta.permissions().mode() & 0o7777,
                key_digest,
                input: Input { path: rel, blob },
            })
        })
        .collect()
}

/// One file a step reads.
struct InputFile {
    mode: u32,
    /// What the step key covers: the content digest, or a link's target.
    key_digest: String,
    input: Input,
}

/// Removes declared outputs, so nothing stale survives into a run or a
/// restore.
fn clear_outputs(dir: &Path, step: &Step) -> Result<()> {
    for out in &step.outputs {
        let path = dir.join(out.trim_end_matches('/'));
        let result = match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(_) => Ok(()),
        };
        result.map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

fn execute(dir: &Path, step: &Step, epoch: u64) -> Result<()> {
    let logs = dir.join(".pipe/logs");
    std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
    let log = logs.join(format!("step-{}.log", step.name));
    let err_log = logs.join(format!("step-{}.stderr", step.name));
    let stdout = std::fs::File::create(&log).map_err(|e| Error::io(&log, e))?;
    let stderr = std::fs::File::create(&err_log).map_err(|e| Error::io(&err_log, e))?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(&step.run)
        .current_dir(dir)
        .env_clear()
        .env("PATH", STEP_PATH)
        .env("LC_ALL", "C.UTF-8")
        .env("TZ", "UTC")
        .env("SOURCE_DATE_EPOCH", epoch.to_string())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    cmd.envs(&step.env);
    tracing::info!(step = %step.name, "running `{}`", step.run);
    let status = cmd.status().map_err(|e| Error::Step {
        step: step.name.clone(),
        failure: StepFailure::Spawn(e),
    })?;
    if !status.success() {
        return Err(Error::Step {
            step: step.name.clone(),
            failure: StepFailure::Exited {
                code: status.code(),
                stderr_tail: tail(&err_log, 20),
                log: err_log,
            },
        });
    }
    for out in &step.outputs {
        if std::fs::symlink_metadata(dir.join(out.trim_end_matches('/'))).is_err() {
            return Err(Error::Step {
                step: step.name.clone(),
                failure: StepFailure::MissingOutput { path: out.clone() },
            });
        }
    }
    Ok(())
}

/// The last `lines` lines of a file, reading at most its last 64 KiB.
fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let all: Vec<String> = std::io::BufReader::new(&buf[..])
        .lines()
        .map_while(|l| l.ok())
        .collect();
    all.iter()
        .skip(all.len().saturating_sub(lines))
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Puts every output file in the store, in path order.
async fn store_outputs(p: &Pipeline, step: &Step, store: &Store) -> Result<Vec<OutputFile>> {
    let mut files = Vec::new();
    for out in &step.outputs {
        let root = p.dir.join(out.trim_end_matches('/'));
        for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
            let entry = entry.map_err(|e| Error::io(&root, e.into()))?;
            if entry.file_type().is_dir() {
                continue;
            }
            if entry.file_type().is_symlink() {
                return Err(Error::Usage {
                    message: format!(
                        "step `{}` wrote a symlink, `{}`, into its outputs",
                        step.name,
                        entry.path().display()
                    ),
                    hint: Some("step outputs are regular files; package symlinks from the source tree instead".into()),
                });
            }
            files.push(entry.path().to_path_buf());
        }
    }
    let mut outputs = Vec::with_capacity(files.len());
    for path in files {
        let mode = std::fs::metadata(&path)
            .map_err(|e| Error::io(&path, e))?
            .permissions()
            .mode()
            & 0o777;
        let put = store.put_blob_file(&path).await?;
        #[allow(
            clippy::expect_used,
            reason = "outputs are paths joined to the project directory"
        )]
        let rel = path
            .strip_prefix(&p.dir)
            .expect("output under project")
            .to_string_lossy()
            .into_owned();
        outputs.push(OutputFile {
            path: rel,
            mode,
            blob: put.blob,
        });
    }
    Ok(outputs)
}

/// True when every recorded output is on disk with the recorded content and
/// mode.
fn outputs_match(dir: &Path, outputs: &[OutputFile]) -> Result<bool> {
    for out in outputs {
        let path = dir.join(&out.path);
        let Ok(meta) = std::fs::metadata(&path) else {
            return Ok(false);
        };
        if meta.len() != out.blob.size || meta.permissions().mode() & 0o777 != out.mode {
            return Ok(false);
        }
        if blake3_file(&path)? != out.blob.blake3 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The blake3 digest (hex) of a file's content, read in one streaming pass.
fn blake3_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    Ok(h.finalize().to_hex().to_string())
}
