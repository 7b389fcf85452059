//! The consumer views of each environment, regenerated from its pointer
//! through one interface, `View`: the apt suite `dists/ENV` and the yum
//! repository `yum/ENV` today; a registry tag and a machine-image pointer
//! are the next two.
//!
//! `run` runs every view after a pointer moved (promote, rollback) and for
//! `pipe refresh`. The pointer is the commit point: a view that fails is
//! reported ([`ViewOutcome::Failed`]) and does not undo it; the next
//! `pipe refresh` (or promotion of the same build) completes it.
//!
//! **Invariant: an older view is never written over a newer one.** Each view
//! of each environment has a state record (`views/ENV/VIEW.json`,
//! `crate::records::view`) naming the history entry it shows. Every write
//! of it is conditional on the version read, and a regeneration goes:
//! 1. read the state; if it shows a newer entry than ours, stop
//!    ([`ViewOutcome::Superseded`]); if another live regeneration holds a
//!    claim on it, wait for it to finish;
//! 2. claim it (a conditional write of the state with our claim): of two
//!    racing regenerations exactly one gets the claim, the other starts
//!    again at 1;
//! 3. write the view's files;
//! 4. write the state with our entry and no claim, conditional on the
//!    version of our claim.
//!
//! A claim whose process is gone (same host, no such pid) or that is older
//! than `CLAIM_LEASE` (any host) is stale and may be taken: a killed
//! regeneration does not block the next one.

pub(crate) mod apt;
mod files;
mod machine;
mod registry;
mod yum;

pub(crate) use machine::MachinePointerDoc;
#[cfg(test)]
pub(crate) use machine::{PointedImage, PointedProvenance};

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use keys::SecretKey;
use serde::Serialize;

use crate::model::Pipeline;
use crate::records::view::{self as state, Claim, ViewState};
use crate::records::{Published, SignedEntry, history, index};
use crate::store::{Store, Version};
use crate::{Error, Result, fault};

/// How long a claim on a view holds at most (the only limit when its
/// process cannot be checked, on another host).
pub(crate) const CLAIM_LEASE: Duration = Duration::from_secs(15 * 60);

/// How long a regeneration waits for another one of the same view to
/// finish before giving up with a conflict.
const CLAIM_WAIT: Duration = Duration::from_secs(120);

/// A kind of consumer view. Its [`name`](ViewKind::name) names its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViewKind {
    /// The apt suite `dists/ENV`.
    AptSuite,
    /// The yum repository `yum/ENV`.
    YumRepository,
    /// The registry tags `IMAGE:ENV`.
    RegistryTag,
    /// The machine-image pointers `machines/NAME/ENV.json`.
    MachinePointer,
}

impl ViewKind {
    /// Every view, in the order they are regenerated.
    pub(crate) const ALL: [ViewKind; 4] = [
        ViewKind::AptSuite,
        ViewKind::YumRepository,
        ViewKind::RegistryTag,
        ViewKind::MachinePointer,
    ];

    /// The view's name (`apt`, `yum`).
    pub fn name(self) -> &'static str {
        match self {
            ViewKind::AptSuite => "apt",
            ViewKind::YumRepository => "yum",
            ViewKind::RegistryTag => "registry",
            ViewKind::MachinePointer => "machines",
        }
    }
}

/// The implementation of `kind`.
pub(crate) fn of(kind: ViewKind) -> &'static dyn View {
    match kind {
        ViewKind::AptSuite => &apt::AptSuite,
        ViewKind::YumRepository => &yum::YumRepository,
        ViewKind::RegistryTag => &registry::RegistryTag,
        ViewKind::MachinePointer => &machine::MachinePointer,
    }
}

/// What a view is given to regenerate.
pub(crate) struct Context<'a> {
    /// The project's configuration (`[repository]`, `[registry]`, ...).
    pub pipeline: &'a Pipeline,
    /// The store.
    pub store: &'a Store,
    /// The key that signs what the view signs.
    pub key: &'a SecretKey,
    /// The environment.
    pub env: &'a str,
    /// The entry the view must show.
    pub head: &'a SignedEntry,
    /// The build it names, its index checked against its manifest.
    pub published: &'a Published,
    /// What the view kept from its last generation (`Null` for none), and
    /// the build that generation showed.
    pub prior: &'a serde_json::Value,
    /// The build the prior generation showed ("" for none).
    pub prior_build: &'a str,
    /// The time of this regeneration.
    pub now: SystemTime,
}

/// What one view did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Generated {
    /// Where consumers find it (`dists/dev`), `None` when the build has
    /// nothing for this view.
    pub location: Option<String>,
    /// Artifacts listed.
    pub packages: usize,
    /// Packages new to the view, copied inside the store under it.
    pub linked: usize,
    /// Objects written.
    pub written: usize,
    /// Files of earlier generations deleted after their grace period.
    pub removed: usize,
    /// When its signature stops being valid (RFC 3339), if it expires.
    pub valid_until: Option<String>,
    /// What to keep for the next generation.
    #[serde(skip)]
    pub keep: serde_json::Value,
    /// Store objects to delete once the new state is written (files of
    /// replaced generations whose grace period is over).
    #[serde(skip)]
    pub delete_after: Vec<String>,
}

impl Generated {
    /// What a view returns when the build has nothing for it: it is left as
    /// it is, and keeps what it kept.
    pub(crate) fn unchanged(cx: &Context<'_>) -> Generated {
        Generated {
            keep: cx.prior.clone(),
            ..Default::default()
        }
    }
}

/// A consumer view of an environment.
///
/// A view may write into the store or talk to something outside it (a
/// registry); either way it must leave its consumers with the old complete
/// view or the new one, never a mix, and may fail on its own: [`run`]
/// reports its error and goes on with the other views.
#[async_trait]
pub(crate) trait View: Send + Sync {
    /// Which view this is.
    fn kind(&self) -> ViewKind;

    /// Makes the view show `cx.published`. A build with nothing for this
    /// view leaves it as it is and returns a [`Generated`] without location.
    async fn regenerate(&self, cx: &Context<'_>) -> Result<Generated>;
}

/// How one view's regeneration ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ViewOutcome {
    /// Regenerated.
    Done(Generated),
    /// Already showing the entry (a promotion that found nothing to do).
    Current,
    /// A newer entry's generation is there; nothing written.
    Superseded {
        /// The entry it shows.
        seq: u64,
    },
    /// Failed; the pointer stays where it is.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// One view's result.
#[derive(Debug, Clone, Serialize)]
pub struct ViewResult {
    /// The view.
    pub view: ViewKind,
    /// Seconds it took, its claim and state write included.
    pub seconds: f64,
    /// Seconds of the view's own work (its files written, its tags moved),
    /// without the claim and the state write around it; `None` when it did
    /// not get that far.
    pub work_seconds: Option<f64>,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: ViewOutcome,
}

/// Every view's result for one environment.
#[derive(Debug, Clone, Serialize)]
pub struct Regenerated {
    /// The environment.
    pub env: String,
    /// The build the views follow.
    pub build: String,
    /// The history entry.
    pub seq: u64,
    /// `dists/ENV`, when the build has .debs and the suite was written.
    pub apt_suite: Option<String>,
    /// `yum/ENV`, when the build has .rpms and the repository was written.
    pub yum_repo: Option<String>,
    /// `HOST/NAMESPACE/IMAGE:ENV` (space-separated), when the build has
    /// images and `[registry]` is set and the tags were moved.
    pub registry_tags: Option<String>,
    /// Artifacts listed, over every view.
    pub packages: usize,
    /// Packages new to a view, copied inside the store under it (the yum
    /// repository's `Packages/`).
    pub linked: usize,
    /// Objects written.
    pub written: usize,
    /// Expired files removed.
    pub removed: usize,
    /// `Valid-Until` of the apt suite.
    pub valid_until: Option<String>,
    /// Seconds spent.
    pub seconds: f64,
    /// Each view.
    pub views: Vec<ViewResult>,
}

impl Regenerated {
    /// The views that failed.
    pub fn failed(&self) -> impl Iterator<Item = (ViewKind, &str)> {
        self.views.iter().filter_map(|v| match &v.outcome {
            ViewOutcome::Failed { error } => Some((v.view, error.as_str())),
            _ => None,
        })
    }
}

/// When to regenerate a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Only views that do not show the entry yet (promote, rollback).
    IfBehind,
    /// Every view, signed anew (refresh).
    Always,
}

/// Regenerates every view of `head.entry.env` to show `head`. Never fails
/// because a view failed: each view's result is in the report.
pub(crate) async fn run(
    p: &Pipeline,
    store: &Store,
    key: &SecretKey,
    head: &SignedEntry,
    published: &Published,
    mode: Mode,
) -> Result<Regenerated> {
    let started = std::time::Instant::now();
    let mut views = Vec::new();
    for kind in ViewKind::ALL {
        let view_started = std::time::Instant::now();
        let mut work_seconds = None;
        let outcome = match run_one(
            p,
            store,
            key,
            head,
            published,
            kind,
            mode,
            &mut work_seconds,
        )
        .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(
                    env = %head.entry.env,
                    view = kind.name(),
                    "`{}` points at `{}`, but its {} view was not regenerated ({e}); `pipe refresh --env {}` finishes the work",
                    head.entry.env, head.entry.build, kind.name(), head.entry.env
                );
                ViewOutcome::Failed {
                    error: e.to_string(),
                }
            }
        };
        views.push(ViewResult {
            view: kind,
            seconds: view_started.elapsed().as_secs_f64(),
            work_seconds,
            outcome,
        });
    }
    let done = |k: ViewKind| {
        views.iter().find_map(|v| match (&v.outcome, v.view == k) {
            (ViewOutcome::Done(g), true) => Some(g),
            _ => None,
        })
    };
    let all_done: Vec<&Generated> = views
        .iter()
        .filter_map(|v| match &v.outcome {
            ViewOutcome::Done(g) => Some(g),
            _ => None,
        })
        .collect();
    Ok(Regenerated {
        env: head.entry.env.clone(),
        build: head.entry.build.clone(),
        seq: head.entry.seq,
        apt_suite: done(ViewKind::AptSuite).and_then(|g| g.location.clone()),
        yum_repo: done(ViewKind::YumRepository).and_then(|g| g.location.clone()),
        registry_tags: done(ViewKind::RegistryTag).and_then(|g| g.location.clone()),
        packages: all_done.iter().map(|g| g.packages).sum(),
        linked: all_done.iter().map(|g| g.linked).sum(),
        written: all_done.iter().map(|g| g.written).sum(),
        removed: all_done.iter().map(|g| g.removed).sum(),
        valid_until: done(ViewKind::AptSuite).and_then(|g| g.valid_until.clone()),
        seconds: started.elapsed().as_secs_f64(),
        views,
    })
}

/// True when every view of `env` shows entry `seq` and none is being
/// regenerated.
pub(crate) async fn all_current(store: &Store, env: &str, seq: u64) -> Result<bool> {
    for kind in ViewKind::ALL {
        let (s, _) = state::read(store, env, kind.name()).await?;
        if s.seq != seq || s.claim.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Regenerates every view of `env` from its pointer with a new date and
/// signature (so `Valid-Until` moves on). `None` when `env` points nowhere.
///
/// Signs nothing it did not verify against `keyring` (the project's keys):
/// the history up to the pointer and the build's records and index. The
/// head's freshness statement is signed again with a new expiry.
pub async fn refresh(
    p: &Pipeline,
    store: &Store,
    key: &SecretKey,
    keyring: &keys::Keyring,
    env: &str,
) -> Result<Option<Regenerated>> {
    let cache = history::HistoryCache::new(&p.dir, store.url());
    let head = history::verified_history_cached(store, env, keyring, Some(&cache))
        .await?
        .pop();
    fault::hold("refresh-read-pointer");
    match head {
        Some(head) => {
            let shards = index::ShardCache::new(&p.dir);
            let published = index::load_cached(store, &head.entry.build, keyring, &shards).await?;
            history::stamp(store, key, &head.entry, p.repository.head_valid_for).await?;
            Ok(Some(
                run(p, store, key, &head, &published, Mode::Always).await?,
            ))
        }
        None => Ok(None),
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    p: &Pipeline,
    store: &Store,
    key: &SecretKey,
    head: &SignedEntry,
    published: &Published,
    kind: ViewKind,
    mode: Mode,
    work_seconds: &mut Option<f64>,
) -> Result<ViewOutcome> {
    let env = head.entry.env.as_str();
    let seq = head.entry.seq;
    let view = kind.name();
    let claim = Claim {
        seq,
        owner: owner_id(),
        host: host(),
        pid: std::process::id(),
        since: unix_secs(SystemTime::now()),
    };
    let deadline = std::time::Instant::now() + CLAIM_WAIT;
    // 1 and 2: read, then claim by a conditional write.
    let (prior, claimed): (ViewState, Version) = loop {
        let (current, version) = state::read(store, env, view).await?;
        if current.seq > seq {
            return Ok(ViewOutcome::Superseded { seq: current.seq });
        }
        if let Some(other) = &current.claim
            && other.seq > seq
            && is_live(other)
        {
            // A newer regeneration is under way: it will show a newer entry.
            return Ok(ViewOutcome::Superseded { seq: other.seq });
        }
        if let Some(other) = &current.claim
            && is_live(other)
        {
            if std::time::Instant::now() > deadline {
                return Err(Error::Conflict {
                    key: crate::store::layout::view_state(env, view),
                    expected: Some(format!("no regeneration of the {view} view under way")),
                    found: Some(format!(
                        "one by pid {} on {} since {} s",
                        other.pid,
                        other.host,
                        unix_secs(SystemTime::now()).saturating_sub(other.since)
                    )),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if mode == Mode::IfBehind
            && current.claim.is_none()
            && current.seq == seq
            && current.build == head.entry.build
        {
            return Ok(ViewOutcome::Current);
        }
        let mut claiming = current.clone();
        claiming.claim = Some(claim.clone());
        match state::put(store, env, view, &claiming, version.as_ref()).await {
            Ok(v) => break (current, v),
            Err(Error::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    };
    fault::hold(&format!("view-claimed:{view}"));

    // 3: the view's files.
    let cx = Context {
        pipeline: p,
        store,
        key,
        env,
        head,
        published,
        prior: &prior.data,
        prior_build: &prior.build,
        now: SystemTime::now(),
    };
    let implementation = of(kind);
    tracing::debug!(view = implementation.kind().name(), env, "regenerating");
    let work = std::time::Instant::now();
    let result = implementation.regenerate(&cx).await;
    *work_seconds = Some(work.elapsed().as_secs_f64());

    // 4: our entry, or on failure the prior state, without our claim.
    let next = match &result {
        Ok(g) => ViewState {
            seq,
            build: head.entry.build.clone(),
            generated_at: crate::build::rfc3339(cx.now),
            claim: None,
            data: g.keep.clone(),
        },
        Err(_) => ViewState {
            claim: None,
            ..prior.clone()
        },
    };
    match state::put(store, env, view, &next, Some(&claimed)).await {
        Ok(_) => {}
        Err(Error::Conflict { .. }) => {
            return Err(Error::Conflict {
                key: crate::store::layout::view_state(env, view),
                expected: Some(format!("our claim (entry {seq})")),
                found: Some("the claim was taken over as stale; the regeneration that took it owns the view now".into()),
            });
        }
        Err(e) => return Err(e),
    }
    let generated = result?;
    // Expired files go only once the state no longer names them: a crash in
    // between leaves files nobody names, never a state naming deleted files.
    // The view state is not signed: only files of this environment's own
    // views are ever deleted, whatever it names.
    let ours = |key: &str| {
        key.starts_with(&format!("{}/", crate::store::layout::apt_suite(env)))
            || key.starts_with(&format!("{}/", crate::store::layout::yum_repo(env)))
    };
    for key in generated.delete_after.iter().filter(|k| ours(k)) {
        store.delete(key).await?;
    }
    Ok(ViewOutcome::Done(generated))
}

/// True when the claim's process may still be running: younger than
/// [`CLAIM_LEASE`] and, on this host, its process still there (a pid that
/// was reused cannot hold a view longer than the lease).
fn is_live(c: &Claim) -> bool {
    let age = unix_secs(SystemTime::now()).saturating_sub(c.since);
    if age >= CLAIM_LEASE.as_secs() {
        return false;
    }
    c.host != host()
        || c.owner == owner_id()
        || std::path::Path::new(&format!("/proc/{}", c.pid)).exists()
}

/// This process, uniquely enough to tell two pipes apart.
fn owner_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let mut h = blake3::Hasher::new();
        h.update(&std::process::id().to_le_bytes());
        h.update(
            &SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
                .to_le_bytes(),
        );
        h.update(host().as_bytes());
        h.finalize().to_hex()[..16].to_string()
    })
    .clone()
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// What a chunk-table signature covers: a label (nothing else pipe signs
/// starts with it), the view, and the table with the digests of the files
/// it describes, as JSON.
fn chunk_table_text(view: ViewKind, table: &impl Serialize) -> Vec<u8> {
    let mut text = format!("pipe chunk table 1\n{}\n", view.name()).into_bytes();
    text.extend_from_slice(&crate::json::to_vec(table));
    text
}

/// The repository key's armored signature over a view's chunk table and
/// the digests of the compressed files it describes (`(digests, chunks)`):
/// with it, the next generation reuses the chunks without decompressing
/// them to check them. `None` when no file has chunks (nothing to reuse).
pub(crate) fn sign_chunk_table(
    key: &SecretKey,
    view: ViewKind,
    digests: &impl Serialize,
    chunks: &[(String, Vec<repo_index::Chunk>)],
    now: SystemTime,
) -> Result<Option<String>> {
    if chunks.iter().all(|(_, c)| c.is_empty()) {
        return Ok(None);
    }
    let text = chunk_table_text(view, &(digests, chunks));
    let sig = key
        .sign_detached(&text[..], now.max(key.created()), keys::Encoding::Armored)
        .map_err(Error::Keys)?;
    Ok(Some(String::from_utf8_lossy(&sig).into_owned()))
}

/// True when `signature` is `key`'s signature over `table` (see
/// [`sign_chunk_table`]). The view state holding both is not signed: a
/// table someone else wrote, or changed, is false here, and its chunks are
/// then checked by decompressing them.
pub(crate) fn chunk_table_vouched(
    key: &SecretKey,
    view: ViewKind,
    table: &impl Serialize,
    signature: Option<&str>,
) -> bool {
    let Some(signature) = signature else {
        return false;
    };
    let text = chunk_table_text(view, table);
    key.public_keyring()
        .verify_detached(&text[..], signature.as_bytes(), None)
        .is_ok()
}

/// Every 64-hex-digit word of a signed text (`InRelease`'s SHA256 lines,
/// `repomd.xml`'s checksums): the digests its signature vouches for.
pub(crate) fn signed_sha256s(text: &[u8]) -> std::collections::HashSet<String> {
    String::from_utf8_lossy(text)
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|w| w.len() == 64)
        .map(str::to_ascii_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_table_is_vouched_for_only_as_signed() {
        let mut opts = keys::GenerateOptions::new("Repo <repo@example.com>");
        opts.algorithm = keys::Algorithm::Ed25519;
        let key = SecretKey::generate(&opts).unwrap();
        let chunk = |sha: &str| -> repo_index::Chunk {
            serde_json::from_value(serde_json::json!({
                "sha256": sha, "plain": 10, "gz": 20, "xz": 24, "xz_unpadded": 22
            }))
            .unwrap()
        };
        let digests = vec![("main/binary-all".to_string(), vec!["aa".to_string()])];
        let chunks = vec![("main/binary-all".to_string(), vec![chunk("11")])];
        let now = SystemTime::now();
        let sig = sign_chunk_table(&key, ViewKind::AptSuite, &digests, &chunks, now)
            .unwrap()
            .unwrap();
        // What the next generation reads back from the view state.
        let vouched =
            |v, d: &Vec<(String, Vec<String>)>, c: &Vec<(String, Vec<repo_index::Chunk>)>| {
                chunk_table_vouched(&key, v, &(d, c), Some(&sig))
            };
        assert!(vouched(ViewKind::AptSuite, &digests, &chunks));
        // Another view, another file digest, another chunk: not vouched.
        assert!(!vouched(ViewKind::YumRepository, &digests, &chunks));
        let other = vec![("main/binary-all".to_string(), vec!["ab".to_string()])];
        assert!(!vouched(ViewKind::AptSuite, &other, &chunks));
        let moved = vec![("main/binary-all".to_string(), vec![chunk("12")])];
        assert!(!vouched(ViewKind::AptSuite, &digests, &moved));
        assert!(!chunk_table_vouched(
            &key,
            ViewKind::AptSuite,
            &(&digests, &chunks),
            None
        ));
        // No chunks: nothing to sign.
        let empty = vec![("main/binary-all".to_string(), Vec::new())];
        assert!(
            sign_chunk_table(&key, ViewKind::AptSuite, &digests, &empty, now)
                .unwrap()
                .is_none()
        );
    }

    fn claim(host: String, pid: u32, age: u64) -> Claim {
        Claim {
            seq: 1,
            owner: "someone".into(),
            host,
            pid,
            since: unix_secs(SystemTime::now()) - age,
        }
    }

    #[test]
    fn claims_go_stale_with_their_process_or_their_lease() {
        let me = std::process::id();
        assert!(is_live(&claim(host(), me, 0)));
        // A pid no process has (above the kernel's pid_max).
        assert!(!is_live(&claim(host(), u32::MAX - 1, 0)));
        assert!(is_live(&claim("elsewhere".into(), 1, 60)));
        let lease = CLAIM_LEASE.as_secs();
        assert!(!is_live(&claim("elsewhere".into(), 1, lease)));
        assert!(!is_live(&claim(host(), me, lease + 1)));
    }
}
