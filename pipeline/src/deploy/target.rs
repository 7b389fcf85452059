//! One target directory: its lock, releases, `current` switch, `[deploy]
//! after`, pruning, log, and `--check`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::delta::{DebLayout, rpm_sha256s};
use super::unpack::{Format, Recorded, Unpacker, clean, payload_digest, record_parents};
use super::{CURRENT, LOG_FILE, RELEASE_RECORD, RELEASES, STATE_DIR, TargetReport, Timings};
use crate::error::StepFailure;
use crate::fault::{barrier, point as fault_point};
use crate::{Error, Result};

/// What every target of one deploy does.
pub(super) struct Job {
    pub env: String,
    pub build: String,
    /// Artifact name, format, verified file in the cache.
    /// Name, format, whether its package allows special modes, cached file.
    pub artifacts: Vec<(String, Format, bool, PathBuf)>,
    /// `[deploy] files`, rendered: absolute path, content.
    pub rendered: Vec<(String, String)>,
    pub after: Option<String>,
    pub reset: bool,
    pub keep: usize,
    /// False when the artifacts were not fetched and verified because every
    /// target was current before the locks were taken.
    pub artifacts_verified: bool,
    /// Resolve, fetch and verify, shared by all targets.
    pub shared: Timings,
}

/// `.pipe-release.json`: what a release was made from. Small, so telling
/// whether a release is current reads little; what it holds, path by path,
/// is in [`RELEASE_ENTRIES`], which only `--check` reads.
#[derive(Debug, Serialize, Deserialize)]
struct ReleaseRecord {
    env: String,
    build: String,
    /// blake3 of the rendered `[deploy] files`: a release is current only if
    /// its configuration is the one asked for.
    config: String,
    artifacts: Vec<String>,
    rendered: Vec<String>,
    entries: usize,
}

/// Every path of a release as unpacked and rendered, next to the record.
const RELEASE_ENTRIES: &str = ".pipe-entries.json";

/// Per package of a release, its payload's digest and the entries it
/// unpacked to: what the next deploy reuses instead of decompressing a
/// payload again.
const RELEASE_PAYLOADS: &str = ".pipe-payloads.json";

/// One package of a release, in [`RELEASE_PAYLOADS`].
#[derive(Debug, Serialize, Deserialize)]
struct PayloadRecord {
    artifact: String,
    /// blake3 of the payload as archived ([`payload_digest`]).
    payload: String,
    /// Whether its special modes were allowed (they change what is written).
    special: bool,
    /// Its entries, in the order they were written.
    entries: Vec<(String, Recorded)>,
}

/// What the release `current` pointed at can give the next one.
struct Prior {
    root: PathBuf,
    /// By payload digest and `special`.
    payloads: HashMap<(String, bool), Vec<(String, Recorded)>>,
}

/// Largest [`RELEASE_PAYLOADS`] read back.
const MAX_PAYLOADS: u64 = 256 << 20;

/// The previous release's packages, if it recorded them. Packages with a
/// path that `[deploy] files` rendered over are left out (the release
/// holds the rendering there, not the package's file).
fn prior_release(releases: &Path, previous: Option<&str>) -> Option<Prior> {
    let root = releases.join(previous?);
    let path = root.join(RELEASE_PAYLOADS);
    if fs::metadata(&path).ok()?.len() > MAX_PAYLOADS {
        return None;
    }
    let records: Vec<PayloadRecord> = serde_json::from_slice(&fs::read(&path).ok()?).ok()?;
    let rendered: Vec<String> = read_record(&root)?
        .rendered
        .iter()
        .filter_map(|abs| clean(abs.trim_start_matches('/')).ok())
        .collect();
    let payloads = records
        .into_iter()
        .filter(|r| !r.entries.iter().any(|(p, _)| rendered.contains(p)))
        .map(|r| ((r.payload, r.special), r.entries))
        .collect();
    Some(Prior { root, payloads })
}

/// Largest `.pipe-entries.json` of a previous release read back.
const MAX_ENTRIES: u64 = 256 << 20;

/// The entries of the release `previous`, as it recorded them: a hint of
/// which files it has, never trusted for their content.
fn previous_entries(
    releases: &Path,
    previous: Option<&str>,
) -> Option<(PathBuf, BTreeMap<String, Recorded>)> {
    let root = releases.join(previous?);
    let path = root.join(RELEASE_ENTRIES);
    if fs::metadata(&path).ok()?.len() > MAX_ENTRIES {
        return None;
    }
    let entries = serde_json::from_slice(&fs::read(&path).ok()?).ok()?;
    Some((root, entries))
}

/// Writes the `.deb` `name` from its table of contents when it has one and
/// taking what the previous release has saves at least half the decoding
/// ([`super::delta`]). False when it was not (nothing of it is left
/// written): the caller unpacks it whole.
fn from_toc(
    unpacker: &Unpacker,
    name: &str,
    special: bool,
    file: &Path,
    root: &Path,
    entries: &BTreeMap<String, Recorded>,
) -> bool {
    let layout = match DebLayout::open(file) {
        Ok(Some(layout)) => layout,
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!(artifact = name, "{e}; unpacking it whole");
            return false;
        }
    };
    let decode = layout.decode_cost(entries);
    if decode.saturating_mul(2) > layout.toc.tar_size {
        tracing::info!(
            artifact = name,
            decode,
            size = layout.toc.tar_size,
            "most of the package changed; unpacking it whole"
        );
        return false;
    }
    match unpacker.delta(name, special, file, &layout, root, entries) {
        Ok(copied) => {
            tracing::info!(
                artifact = name,
                copied,
                entries = layout.toc.entries.len(),
                decoded_bytes = decode,
                "deployed from its table of contents"
            );
            true
        }
        Err(e) => {
            tracing::warn!(artifact = name, "{e}; unpacking it whole");
            false
        }
    }
}

/// The build `DIR/current` points at, if any.
pub(super) fn current_build(dir: &Path) -> Option<String> {
    let target = fs::read_link(dir.join(CURRENT)).ok()?;
    target
        .strip_prefix(RELEASES)
        .ok()
        .and_then(|p| p.to_str())
        .map(str::to_string)
}

/// True when `dir` runs `build` with the configuration `config`.
pub(super) fn is_current(dir: &Path, build: &str, config: &str) -> bool {
    current_build(dir).as_deref() == Some(build)
        && read_record(&dir.join(RELEASES).join(build)).is_some_and(|r| r.config == config)
}

pub(super) fn config_digest(rendered: &[(String, String)]) -> String {
    let mut h = blake3::Hasher::new();
    for (path, text) in rendered {
        h.update(path.as_bytes());
        h.update(&[0]);
        h.update(text.as_bytes());
        h.update(&[0]);
    }
    h.finalize().to_hex().to_string()
}

/// Takes `DIR/.pipe/lock`, waiting for a deploy that holds it.
fn lock(dir: &Path) -> Result<fs::File> {
    let state = dir.join(STATE_DIR);
    fs::create_dir_all(&state).map_err(|e| Error::io(&state, e))?;
    let path = state.join("lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            tracing::warn!(
                "another deploy into {} is running; waiting for it",
                dir.display()
            );
            fs4::FileExt::lock(&file).map_err(|e| Error::io(&path, e))?;
        }
        Err(fs4::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    Ok(file)
}

/// Deploys `job` into `dir`. Blocking; run on a blocking thread.
pub(super) fn deploy_into(job: &Job, dir: &Path) -> Result<TargetReport> {
    let result = deploy_locked(job, dir);
    let line = match &result {
        Ok(r) => serde_json::json!({
            "at": crate::build::rfc3339(SystemTime::now()),
            "ok": true,
            "env": job.env,
            "build": job.build,
            "action": r.action,
            "previous": r.previous,
            "timings": r.timings,
        }),
        Err(e) => serde_json::json!({
            "at": crate::build::rfc3339(SystemTime::now()),
            "ok": false,
            "env": job.env,
            "build": job.build,
            "error": e.to_string(),
        }),
    };
    append_log(dir, &line);
    result
}

fn append_log(dir: &Path, line: &serde_json::Value) {
    let path = dir.join(LOG_FILE);
    let write = || -> std::io::Result<()> {
        fs::create_dir_all(dir.join(STATE_DIR))?;
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let mut bytes = crate::json::to_vec(line);
        bytes.push(b'\n');
        // One write of one line: concurrent appenders do not interleave.
        f.write_all(&bytes)
    };
    if let Err(e) = write() {
        tracing::warn!("cannot append to {}: {e}", path.display());
    }
}

fn deploy_locked(job: &Job, dir: &Path) -> Result<TargetReport> {
    barrier();
    let _lock = lock(dir)?;
    let releases = dir.join(RELEASES);
    fs::create_dir_all(&releases).map_err(|e| Error::io(&releases, e))?;
    remove_leftovers(dir, &releases);

    let mut timings = job.shared;
    let previous = current_build(dir);
    let release = releases.join(&job.build);
    let config = config_digest(&job.rendered);
    let existing = read_record(&release);
    let is_current = previous.as_deref() == Some(job.build.as_str());
    if !job.reset && is_current && existing.as_ref().is_some_and(|r| r.config == config) {
        return Ok(TargetReport {
            dir: dir.to_path_buf(),
            action: "already current".into(),
            previous,
            release,
            entries: existing.map_or(0, |r| r.entries),
            reused: Vec::new(),
            rendered: job.rendered.iter().map(|(p, _)| p.clone()).collect(),
            pruned: Vec::new(),
            timings,
        });
    }
    if !job.artifacts_verified {
        return Err(Error::Conflict {
            key: dir.join(CURRENT).display().to_string(),
            expected: Some(job.build.clone()),
            found: Some("another release, switched to by a concurrent deploy".into()),
        });
    }
    let action = match (job.reset, is_current) {
        (true, _) => "reset",
        (false, true) => "reconfigured",
        (false, false) => "deployed",
    };

    // Unpack.
    let started = Instant::now();
    let incoming = tempfile::Builder::new()
        .prefix(&format!(".incoming-{}-", job.build))
        .tempdir_in(&releases)
        .map_err(|e| Error::io(&releases, e))?;
    let unpacker = Unpacker::new(incoming.path());
    // `--reset` unpacks everything from the packages.
    let prior = if job.reset {
        None
    } else {
        prior_release(&releases, previous.as_deref())
    };
    // What the current release holds, path by path: which files a package
    // with a table of contents can take from there (checked against the
    // table, never believed; `--reset` takes nothing).
    let hint = if job.reset {
        None
    } else {
        previous_entries(&releases, previous.as_deref())
    };
    // Per artifact: its payload digest, and whether it was reused.
    let unpacked: Vec<(String, bool)> = std::thread::scope(|s| -> Result<Vec<(String, bool)>> {
        let running: Vec<_> = job
            .artifacts
            .iter()
            .map(|(name, format, special, file)| {
                let (unpacker, prior, hint) = (&unpacker, prior.as_ref(), hint.as_ref());
                s.spawn(move || -> Result<(String, bool)> {
                    let payload = payload_digest(name, *format, file)?;
                    if *format == Format::Deb
                        && let Some((root, entries)) = hint
                        && from_toc(unpacker, name, *special, file, root, entries)
                    {
                        return Ok((payload, true));
                    }
                    // An rpm whose payload the previous release unpacked:
                    // its files from there, each checked against the
                    // digest in the (signed) package's header.
                    if *format == Format::Rpm
                        && let Some(p) = prior
                        && let Some(entries) = p.payloads.get(&(payload.clone(), *special))
                        && let Some(signed) = rpm_sha256s(name, file)
                        && unpacker.reuse(name, *special, &p.root, entries, &signed)
                    {
                        return Ok((payload, true));
                    }
                    let f = fs::File::open(file).map_err(|e| Error::io(file, e))?;
                    unpacker.unpack(name, *format, *special, f)?;
                    Ok((payload, false))
                })
            })
            .collect();
        running
            .into_iter()
            .map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })?;
    let mut unpacked_all = unpacker.finish_by_artifact()?;
    let payloads: Vec<PayloadRecord> = job
        .artifacts
        .iter()
        .zip(&unpacked)
        .map(|((name, _, special, _), (payload, _))| PayloadRecord {
            artifact: name.clone(),
            payload: payload.clone(),
            special: *special,
            entries: unpacked_all.by_artifact.remove(name).unwrap_or_default(),
        })
        .collect();
    let reused: Vec<String> = job
        .artifacts
        .iter()
        .zip(&unpacked)
        .filter(|(_, (_, r))| *r)
        .map(|((name, ..), _)| name.clone())
        .collect();
    let mut entries = unpacked_all.entries;
    timings.unpack = started.elapsed().as_secs_f64();
    fault_point("deploy-unpacked");

    // Configure.
    let started = Instant::now();
    let links: Vec<String> = entries
        .iter()
        .filter(|(_, r)| matches!(r, Recorded::Symlink { .. }))
        .map(|(p, _)| p.clone())
        .collect();
    for (abs, text) in &job.rendered {
        let rel = clean(abs.trim_start_matches('/')).map_err(|why| Error::Usage {
            message: format!("deploy file `{abs}` {why}"),
            hint: None,
        })?;
        if let Some(link) = links
            .iter()
            .find(|l| rel == l.as_str() || rel.starts_with(&format!("{l}/")))
        {
            return Err(Error::Verify {
                what: format!("deploy file `{abs}`"),
                detail: format!("the package's symlink `{link}` is in its path; refused"),
            });
        }
        if let Some(Recorded::Dir { .. }) = entries.get(&rel) {
            return Err(Error::Usage {
                message: format!("deploy file `{abs}` is a directory in the packages"),
                hint: Some("give the path of a file in `[deploy] files`".into()),
            });
        }
        let path = incoming.path().join(&rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        // A package file of the same name is replaced, not written through
        // (it may be a hard link to another file).
        let _ = fs::remove_file(&path);
        fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(&path, e))?;
        record_parents(&mut entries, &rel);
        entries.insert(
            rel,
            Recorded::File {
                mode: 0o644,
                size: text.len() as u64,
                blake3: blake3::hash(text.as_bytes()).to_hex().to_string(),
            },
        );
    }
    let record = ReleaseRecord {
        env: job.env.clone(),
        build: job.build.clone(),
        config,
        artifacts: job.artifacts.iter().map(|(n, _, _, _)| n.clone()).collect(),
        rendered: job.rendered.iter().map(|(p, _)| p.clone()).collect(),
        entries: entries.len(),
    };
    for (name, bytes) in [
        (RELEASE_ENTRIES, crate::json::to_vec(&entries)),
        (RELEASE_PAYLOADS, crate::json::to_vec(&payloads)),
        (RELEASE_RECORD, crate::json::to_vec(&record)),
    ] {
        let path = incoming.path().join(name);
        fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
    }
    timings.configure = started.elapsed().as_secs_f64();
    fault_point("deploy-configured");

    // Switch: the release into place, then `current`.
    let started = Instant::now();
    let incoming = incoming.keep();
    let replaced = release.exists();
    if replaced {
        // Swapped in one step, so `current` never names a missing or
        // half-replaced directory; the old content is then removed.
        match exchange(&incoming, &release) {
            Ok(()) => {}
            // A filesystem without RENAME_EXCHANGE: two renames, with a
            // moment in which `releases/BUILD` is missing.
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
                let old = releases.join(format!(".incoming-{}-replaced", job.build));
                fs::rename(&release, &old).map_err(|e| Error::io(&release, e))?;
                fs::rename(&incoming, &release).map_err(|e| Error::io(&release, e))?;
                fs::rename(&old, &incoming).map_err(|e| Error::io(&old, e))?;
            }
            Err(e) => return Err(Error::io(&release, e.into())),
        }
        let _ = fs::remove_dir_all(&incoming);
    } else {
        fs::rename(&incoming, &release).map_err(|e| Error::io(&release, e))?;
    }
    touch(&release);
    fault_point("deploy-released");
    switch(dir, Some(&job.build))?;
    fault_point("deploy-switched");
    if let Some(cmd) = &job.after
        && let Err(failure) = run_after(cmd, dir, job)
    {
        // Back to what was live; a release made by this deploy goes too. (A
        // reset of the live build has nothing older to go back to.)
        if !is_current {
            switch(dir, previous.as_deref())?;
            if !replaced {
                let _ = fs::remove_dir_all(&release);
            }
        }
        return Err(Error::After {
            target: dir.to_path_buf(),
            failure,
            restored: previous.clone(),
        });
    }
    let pruned = prune(&releases, &job.build, job.keep);
    timings.switch = started.elapsed().as_secs_f64();
    Ok(TargetReport {
        dir: dir.to_path_buf(),
        action: action.into(),
        previous,
        release,
        entries: record.entries,
        reused,
        rendered: record.rendered,
        pruned,
        timings,
    })
}

fn read_record(release: &Path) -> Option<ReleaseRecord> {
    let bytes = fs::read(release.join(RELEASE_RECORD)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What a killed deploy may have left: half-unpacked releases and a
/// temporary `current` link. Nothing anyone reads.
fn remove_leftovers(dir: &Path, releases: &Path) {
    let leftovers = |d: &Path, prefix: &str| -> Vec<PathBuf> {
        fs::read_dir(d)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    for p in leftovers(releases, ".incoming-") {
        tracing::info!("removing {} left by an interrupted deploy", p.display());
        let _ = fs::remove_dir_all(&p);
    }
    for p in leftovers(dir, ".current-") {
        let _ = fs::remove_file(&p);
    }
}

/// Points `DIR/current` at `releases/BUILD` (or removes it for `None`) with
/// one rename of a new symlink over the old one.
fn switch(dir: &Path, build: Option<&str>) -> Result<()> {
    let current = dir.join(CURRENT);
    let Some(build) = build else {
        return match fs::remove_file(&current) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&current, e)),
            _ => Ok(()),
        };
    };
    let tmp = dir.join(format!(".current-{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(Path::new(RELEASES).join(build), &tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    fault_point("deploy-switching");
    fs::rename(&tmp, &current).map_err(|e| Error::io(&current, e))?;
    // The rename is durable once the directory is.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Atomically exchanges two directories (`renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> rustix::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE)
}

/// Marks a release as just deployed, for [`prune`]'s order.
fn touch(release: &Path) {
    if let Ok(f) = fs::File::open(release) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Deletes all but the `keep` most recently deployed releases, never `live`.
fn prune(releases: &Path, live: &str, keep: usize) -> Vec<String> {
    let mut all: Vec<(SystemTime, String)> = fs::read_dir(releases)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| {
                    let t = e.metadata().ok()?.modified().ok()?;
                    Some((t, e.file_name().to_string_lossy().into_owned()))
                })
                .collect()
        })
        .unwrap_or_default();
    all.sort_by(|a, b| b.cmp(a));
    let mut pruned = Vec::new();
    for (_, name) in all.into_iter().skip(keep) {
        if name == live {
            continue;
        }
        if fs::remove_dir_all(releases.join(&name)).is_ok() {
            tracing::info!(release = %name, "pruned");
            pruned.push(name);
        }
    }
    pruned
}

/// pipe's standard error, for a child's standard output (null if it cannot
/// be duplicated).
fn stderr_handle() -> Stdio {
    use std::os::fd::AsFd;
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_or_else(|_| Stdio::null(), Stdio::from)
}

/// Runs `[deploy] after` in the new release; its output (standard output
/// too) goes to stderr.
fn run_after(cmd: &str, dir: &Path, job: &Job) -> std::result::Result<(), StepFailure> {
    let release = dir.join(CURRENT);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(&release)
        .env("PIPE_ENV", &job.env)
        .env("PIPE_BUILD", &job.build)
        .env("PIPE_TARGET", dir)
        .env("PIPE_RELEASE", dir.join(RELEASES).join(&job.build))
        .stdin(Stdio::null())
        // Standard output is pipe's: `--json` promises one document there.
        // The command's output goes to stderr instead.
        .stdout(stderr_handle())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(StepFailure::Spawn)?;
    // Its stderr is passed on as it comes, keeping only a bounded tail for
    // the error: a chatty command cannot fill memory.
    const TAIL: usize = 64 * 1024;
    let mut kept: Vec<u8> = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let mut buf = [0u8; 8192];
        loop {
            let n = match e.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = buf.get(..n).unwrap_or_default();
            let _ = std::io::Write::write_all(&mut std::io::stderr(), chunk);
            kept.extend_from_slice(chunk);
            if kept.len() > 2 * TAIL {
                kept.drain(..kept.len() - TAIL);
            }
        }
    }
    let status = child.wait().map_err(StepFailure::Spawn)?;
    if status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&kept);
    let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
    Err(StepFailure::Exited {
        code: status.code(),
        stderr_tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        log: dir.join(LOG_FILE),
    })
}

/// One path of a release that is not what was deployed.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// Path inside the release.
    pub path: String,
    /// `modified`, `missing`, `added`, `mode`, `type`.
    pub what: String,
}

/// What `pipe deploy --check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The target directory.
    pub dir: PathBuf,
    /// The build `current` points at.
    pub build: String,
    /// Every path that differs, sorted.
    pub differences: Vec<Difference>,
}

/// Compares the release `DIR/current` points at with what was unpacked and
/// rendered into it. Reads everything; writes nothing.
pub fn check(dir: &Path) -> Result<CheckReport> {
    let Some(build) = current_build(dir) else {
        return Err(Error::Usage {
            message: format!("{} has no current release", dir.display()),
            hint: Some("deploy into it first".into()),
        });
    };
    let release = dir.join(RELEASES).join(&build);
    let entries: BTreeMap<String, Recorded> = fs::read(release.join(RELEASE_ENTRIES))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Error::Verify {
            what: release.join(RELEASE_ENTRIES).display().to_string(),
            detail: "missing or unreadable; redeploy with `--reset`".into(),
        })?;
    let mut differences = Vec::new();
    let mut differ = |path: &str, what: &str| {
        differences.push(Difference {
            path: path.to_string(),
            what: what.to_string(),
        })
    };
    for (path, expected) in &entries {
        let full = release.join(path);
        let Ok(meta) = fs::symlink_metadata(&full) else {
            differ(path, "missing");
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        match expected {
            Recorded::File {
                mode: m,
                size,
                blake3,
            } => {
                if !meta.is_file() {
                    differ(path, "type");
                } else if meta.len() != *size
                    || crate::store::digest::hash_file_blocking(&full)
                        .map(|b| b.blake3 != *blake3)
                        .unwrap_or(true)
                {
                    differ(path, "modified");
                } else if mode != *m {
                    differ(path, "mode");
                }
            }
            Recorded::Dir { mode: m } => {
                if !meta.is_dir() {
                    differ(path, "type");
                } else if mode != *m {
                    differ(path, "mode");
                }
            }
            Recorded::Symlink { target } => match fs::read_link(&full) {
                Ok(t) if t.as_os_str() == target.as_str() => {}
                Ok(_) => differ(path, "modified"),
                Err(_) => differ(path, "type"),
            },
        }
    }
    for e in walkdir::WalkDir::new(&release).min_depth(1) {
        let Ok(e) = e else { continue };
        #[allow(clippy::expect_used, reason = "walkdir yields paths under its root")]
        let rel = e
            .path()
            .strip_prefix(&release)
            .expect("under the release")
            .to_string_lossy()
            .into_owned();
        if ![RELEASE_RECORD, RELEASE_ENTRIES, RELEASE_PAYLOADS].contains(&rel.as_str())
            && !entries.contains_key(&rel)
        {
            differ(&rel, "added");
        }
    }
    differences.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(CheckReport {
        dir: dir.to_path_buf(),
        build,
        differences,
    })
}
