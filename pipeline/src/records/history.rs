//! Environment pointers and their signed, hash-chained history.
//!
//! An environment's pointer (`envs/<env>/pointer.json`) *is* its newest
//! history entry, signed. A promotion replaces it with one compare-and-swap:
//! that write is the commit point, so of two concurrent promotions exactly one
//! wins and the other has written nothing. The entry is then copied to
//! `envs/<env>/history/<seq>.json`; a process killed before the copy leaves
//! the pointer ahead of the copies, and the next promotion (or `pipe history`)
//! writes the missing copy first.
//!
//! Each entry names the digest of the entry before it, so the history is a
//! chain: removing, reordering or editing an entry breaks it, and every entry
//! is signed by the project key.

use std::collections::BTreeSet;
use std::time::SystemTime;

use keys::{Encoding, Keyring, SecretKey};
use serde::{Deserialize, Serialize};

use crate::store::{Body, Condition, MAX_RECORD, Store, Version, layout};
use crate::{Error, Result};

/// One move of an environment's pointer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the environment's history, from 1.
    pub seq: u64,
    /// The environment.
    pub env: String,
    /// The build it points at from now on.
    pub build: String,
    /// blake3 (hex) of the previous entry's canonical bytes; `None` for the first.
    pub previous: Option<String>,
    /// Who moved it: `$PIPE_ACTOR`, else `user@host`.
    pub actor: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// `promote` or `rollback`.
    pub action: String,
    /// True when the promotion path was bypassed with `--force`.
    pub forced: bool,
    /// Unique per promotion, so two promotions of the same build in the
    /// same second never write byte-identical entries: a writer that finds
    /// its exact bytes in the pointer knows the write was its own (S3
    /// retries after a lost response rely on it). Absent in entries of an
    /// older pipe.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub nonce: String,
}

impl Entry {
    /// The bytes that are signed and chained: compact JSON, fields in
    /// declaration order.
    pub(crate) fn canonical(&self) -> Vec<u8> {
        crate::json::to_vec(self)
    }

    /// The digest the next entry names as `previous`.
    pub(crate) fn digest(&self) -> String {
        blake3::hash(&self.canonical()).to_hex().to_string()
    }
}

/// An entry and its detached armored signature over `Entry::canonical`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedEntry {
    /// The entry.
    pub entry: Entry,
    /// Armored OpenPGP signature.
    pub signature: String,
}

/// A signed statement that an environment's head is a given entry, valid
/// until a time (TUF's timestamp role, with the project key): it binds the
/// head so a store that keeps serving an old one is noticed once the
/// statement expires. `pipe promote` writes it, `pipe refresh` renews it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freshness {
    /// The environment.
    pub env: String,
    /// The head's sequence number.
    pub seq: u64,
    /// The head's digest (`Entry::digest`).
    pub head: String,
    /// Unix seconds after which deploy refuses the head.
    pub expires: u64,
    /// The same, RFC 3339, for people.
    pub expires_at: String,
}

impl Freshness {
    /// The bytes that are signed: compact JSON, fields in declaration order.
    pub(crate) fn canonical(&self) -> Vec<u8> {
        crate::json::to_vec(self)
    }
}

/// A [`Freshness`] and its detached armored signature.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedFreshness {
    /// The statement.
    pub freshness: Freshness,
    /// Armored OpenPGP signature over `Freshness::canonical`.
    pub signature: String,
}

/// Store key of an environment's signed freshness statement.
pub(crate) fn freshness_key(env: &str) -> String {
    layout::freshness(env)
}

/// Signs and writes that `head` is `env`'s head until `valid_for` from now.
pub async fn stamp(
    store: &Store,
    key: &SecretKey,
    head: &Entry,
    valid_for: std::time::Duration,
) -> Result<SignedFreshness> {
    let now = SystemTime::now();
    let until = now.checked_add(valid_for).ok_or_else(|| Error::Usage {
        message: format!(
            "a head validity of {} s ends after the year 9999",
            valid_for.as_secs()
        ),
        hint: Some("shorten `[repository] head_valid_for`".into()),
    })?;
    let freshness = Freshness {
        env: head.env.clone(),
        seq: head.seq,
        head: head.digest(),
        expires: unix_secs(until),
        expires_at: crate::build::rfc3339(until),
    };
    let signature = key
        .sign_detached(&freshness.canonical()[..], now, Encoding::Armored)
        .map_err(Error::Signing)?;
    let signed = SignedFreshness {
        freshness,
        signature: String::from_utf8_lossy(&signature).into_owned(),
    };
    let bytes = serde_json::to_vec_pretty(&signed).unwrap_or_default();
    store
        .put(
            &freshness_key(&head.env),
            Body::from_bytes(bytes),
            Condition::Overwrite,
        )
        .await?;
    Ok(signed)
}

/// The freshness statement of `env`, as the store has it.
pub(crate) async fn read_freshness(store: &Store, env: &str) -> Result<Option<SignedFreshness>> {
    Ok(store
        .get_json_max(&freshness_key(env), "a freshness statement", MAX_RECORD)
        .await?
        .map(|(f, _)| f))
}

/// Checks that `signed` is signed by a key of `keyring`, is about `head`,
/// and has not expired at `now` (unless `allow_expired`). Exit 3 otherwise.
pub(crate) fn verify_freshness(
    head: &Entry,
    signed: Option<&SignedFreshness>,
    keyring: &Keyring,
    now: SystemTime,
    allow_expired: bool,
) -> Result<()> {
    let what = format!("freshness of `{}` ({})", head.env, freshness_key(&head.env));
    let Some(signed) = signed else {
        if allow_expired {
            return Ok(());
        }
        return Err(Error::Verify {
            what,
            detail: "missing: nothing says the head is current (`pipe refresh` signs one; `--allow-expired` deploys without)".into(),
        });
    };
    keyring
        .verify_detached(
            &signed.freshness.canonical()[..],
            signed.signature.as_bytes(),
            None,
        )
        .map_err(|e| Error::Verify {
            what: what.clone(),
            detail: format!("signature: {e}"),
        })?;
    let f = &signed.freshness;
    if f.env != head.env || f.seq != head.seq || f.head != head.digest() {
        return Err(Error::Verify {
            what,
            detail: format!(
                "vouches for entry {} of `{}` ({}), but the head is entry {} ({})",
                f.seq,
                f.env,
                f.head,
                head.seq,
                head.digest()
            ),
        });
    }
    let now_secs = unix_secs(now);
    if now_secs >= f.expires && !allow_expired {
        return Err(Error::Verify {
            what,
            detail: format!(
                "expired at {}: the store may be serving an old head (`pipe refresh` renews it; `--allow-expired` deploys anyway)",
                f.expires_at
            ),
        });
    }
    Ok(())
}

/// Store key of an environment's pointer.
pub fn pointer_key(env: &str) -> String {
    layout::pointer(env)
}

/// Store key of a history entry.
pub fn history_key(env: &str, seq: u64) -> String {
    layout::history_entry(env, seq)
}

/// Why a pointer moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `pipe promote`.
    Promote,
    /// `pipe rollback`.
    Rollback,
}

impl Action {
    /// As entries record it.
    pub fn name(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Rollback => "rollback",
        }
    }
}

impl Entry {
    /// The entry after `head` (or the first) moving `env` to `build`.
    pub fn next(
        head: Option<&SignedEntry>,
        env: &str,
        build: &str,
        action: Action,
        forced: bool,
    ) -> Entry {
        Entry {
            seq: head.map_or(1, |h| h.entry.seq + 1),
            env: env.to_string(),
            build: build.to_string(),
            previous: head.map(|h| h.entry.digest()),
            actor: actor(),
            at: keys::Timestamp::from(SystemTime::now()).to_string(),
            action: action.name().to_string(),
            forced,
            nonce: nonce(),
        }
    }

    /// Signs the entry with `key`.
    pub fn sign(self, key: &SecretKey) -> Result<SignedEntry> {
        let signature = key
            .sign_detached(&self.canonical()[..], SystemTime::now(), Encoding::Armored)
            .map_err(Error::Signing)?;
        Ok(SignedEntry {
            entry: self,
            signature: String::from_utf8_lossy(&signature).into_owned(),
        })
    }
}

impl SignedEntry {
    /// The bytes stored for the pointer and the history copy.
    pub fn to_bytes(&self) -> Vec<u8> {
        crate::json::to_vec_pretty(self)
    }
}

/// Replaces `env`'s pointer with `signed`, if it still is the one read with
/// `version` (`None`: if there is none yet). The commit point of a
/// promotion: of two concurrent writers exactly one wins; the other gets
/// [`Error::Conflict`] and has written nothing.
pub(crate) async fn put_pointer(
    store: &Store,
    signed: &SignedEntry,
    head: Option<&SignedEntry>,
    version: Option<&Version>,
) -> Result<()> {
    let cond = match version {
        Some(v) => Condition::IfMatch(v.clone()),
        None => Condition::IfAbsent,
    };
    let key = pointer_key(&signed.entry.env);
    let bytes = signed.to_bytes();
    match store.put(&key, Body::from_bytes(bytes.clone()), cond).await {
        Ok(_) => Ok(()),
        // A write whose response was lost and that was sent again finds
        // its own bytes (the nonce makes them unique): it landed.
        Err(Error::Conflict { .. } | Error::AlreadyExists { .. })
            if landed(store, &key, &bytes).await? =>
        {
            tracing::debug!(%key, "a retried pointer write found its own entry");
            Ok(())
        }
        Err(Error::Conflict { key, .. } | Error::AlreadyExists { key }) => Err(Error::Conflict {
            key,
            expected: head.map(|h| format!("seq {} ({})", h.entry.seq, h.entry.build)),
            found: Some("a newer entry written by a concurrent promotion".into()),
        }),
        Err(e) => Err(e),
    }
}

/// True when `key` holds exactly `bytes`.
async fn landed(store: &Store, key: &str, bytes: &[u8]) -> Result<bool> {
    Ok(store
        .get_bytes_max(key, MAX_RECORD)
        .await?
        .is_some_and(|(found, _)| found == bytes))
}

/// Writes the history copy of `signed` (create-only). A copy already there
/// must be the same entry: another one at that sequence number forks the
/// history, and is an error naming both.
pub(crate) async fn write_history_copy(store: &Store, signed: &SignedEntry) -> Result<()> {
    let bytes = signed.to_bytes();
    let key = history_key(&signed.entry.env, signed.entry.seq);
    match store
        .put(&key, Body::from_bytes(bytes.to_vec()), Condition::IfAbsent)
        .await
    {
        Ok(_) => Ok(()),
        Err(Error::AlreadyExists { .. }) => {
            let found = store
                .get_json_max::<SignedEntry>(&key, "a history entry", MAX_RECORD)
                .await?;
            match found {
                Some((found, _)) if found.entry == signed.entry => Ok(()),
                found => Err(Error::Verify {
                    what: key,
                    detail: format!(
                        "holds another entry (digest {}) than the pointer's (digest {}): the history is forked",
                        found.map_or_else(|| "(unreadable)".into(), |(f, _)| f.entry.digest()),
                        signed.entry.digest()
                    ),
                }),
            }
        }
        Err(e) => Err(e),
    }
}

/// Writes the head's history copy if a killed promotion left it out.
pub(crate) async fn repair_history(store: &Store, head: &SignedEntry) -> Result<()> {
    if store
        .head(&history_key(&head.entry.env, head.entry.seq))
        .await?
        .is_none()
    {
        tracing::info!(env = %head.entry.env, seq = head.entry.seq, "repairing the history copy of the current entry");
        write_history_copy(store, head).await?;
    }
    Ok(())
}

/// Every environment the store has anything of (a pointer, a history
/// entry, a freshness statement), sorted: what `pipe fsck`, `pipe gc` and
/// `pipe status` walk.
pub(crate) async fn environments(store: &Store) -> Result<BTreeSet<String>> {
    Ok(store
        .list(layout::ENVS)
        .await?
        .iter()
        .filter_map(|m| layout::env_of(&m.key).map(str::to_string))
        .collect())
}

/// The pointer of `env` and its version token, if it has one.
pub async fn read_pointer(
    store: &Store,
    env: &str,
) -> Result<(Option<SignedEntry>, Option<Version>)> {
    Ok(
        match store
            .get_json_max(&pointer_key(env), "a pointer", MAX_RECORD)
            .await?
        {
            Some((entry, version)) => (Some(entry), Some(version)),
            None => (None, None),
        },
    )
}

/// `env`'s history, oldest first, verified against `keyring`: an unbroken
/// chain from entry 1, every entry signed by a key of the keyring, ending at
/// the pointer. Exit 3 otherwise.
pub(crate) async fn verified_history(
    store: &Store,
    env: &str,
    keyring: &Keyring,
) -> Result<Vec<SignedEntry>> {
    let entries = history(store, env).await?;
    verify_chain(env, &entries, Some(keyring))?;
    let (head, _) = read_pointer(store, env).await?;
    check_head_is_last(env, head.as_ref(), &entries)?;
    Ok(entries)
}

/// The pointer of `env`, once its history verifies against `keyring`.
pub(crate) async fn verified_head(
    store: &Store,
    env: &str,
    keyring: &Keyring,
) -> Result<Option<SignedEntry>> {
    Ok(verified_history(store, env, keyring).await?.pop())
}

/// Checks that `head` (the pointer as read) ends `env`'s history and that
/// the history verifies against `keyring`.
pub(crate) async fn check_head(
    store: &Store,
    env: &str,
    head: Option<&SignedEntry>,
    keyring: &Keyring,
) -> Result<()> {
    let entries = history(store, env).await?;
    verify_chain(env, &entries, Some(keyring))?;
    match (head, entries.last()) {
        // Moved on since the pointer was read: a concurrent promotion.
        (Some(h), Some(last)) if last.entry.seq > h.entry.seq => Err(Error::Conflict {
            key: pointer_key(env),
            expected: Some(format!("seq {} ({})", h.entry.seq, h.entry.build)),
            found: Some(format!("seq {} ({})", last.entry.seq, last.entry.build)),
        }),
        _ => check_head_is_last(env, head, &entries),
    }
}

fn check_head_is_last(
    env: &str,
    head: Option<&SignedEntry>,
    entries: &[SignedEntry],
) -> Result<()> {
    match (head, entries.last()) {
        (None, None) => Ok(()),
        (Some(h), Some(last)) if h.entry == last.entry && h.signature == last.signature => Ok(()),
        (Some(h), _) => Err(Error::Verify {
            what: format!("pointer of `{env}`"),
            detail: format!(
                "entry {} ({}) is not the newest entry of the history",
                h.entry.seq, h.entry.build
            ),
        }),
        (None, Some(last)) => Err(Error::Verify {
            what: format!("pointer of `{env}`"),
            detail: format!(
                "is missing, but the history goes up to entry {} ({})",
                last.entry.seq, last.entry.build
            ),
        }),
    }
}

/// History entries fetched at once: each is a small object, and on S3 a
/// round trip each.
const FETCH_CONCURRENCY: usize = 16;

/// Reads the entries at `keys`, [`FETCH_CONCURRENCY`] at a time; a key
/// gone meanwhile is skipped (the chain check notices the gap).
async fn fetch_entries(store: &Store, keys: Vec<String>) -> Result<Vec<SignedEntry>> {
    use futures::{StreamExt, TryStreamExt};
    let found: Vec<Option<SignedEntry>> = futures::stream::iter(keys)
        .map(|key| async move {
            Ok::<_, Error>(
                store
                    .get_json_max::<SignedEntry>(&key, "a history entry", MAX_RECORD)
                    .await?
                    .map(|(e, _)| e),
            )
        })
        .buffered(FETCH_CONCURRENCY)
        .try_collect()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// Every entry of `env`'s history, oldest first, including a head whose copy
/// a killed promotion left out.
pub async fn history(store: &Store, env: &str) -> Result<Vec<SignedEntry>> {
    let prefix = layout::history_prefix(env);
    let keys = store
        .list(&prefix)
        .await?
        .into_iter()
        .map(|m| m.key)
        .collect();
    let mut out = fetch_entries(store, keys).await?;
    out.sort_by_key(|e| e.entry.seq);
    if let (Some(head), _) = read_pointer(store, env).await?
        && out
            .last()
            .is_none_or(|last| last.entry.seq < head.entry.seq)
    {
        out.push(head);
    }
    Ok(out)
}

/// `env`'s history as the store serves it now, reusing `known`: a prefix
/// of it verified before (a deploy target's cache, the operator's
/// [`HistoryCache`]). Only the entries after `known`'s last are fetched,
/// several at once: the pointer, then the copies in between. When what the
/// store serves does not extend `known` (an older head, another head at
/// the same sequence number, an entry after it naming another previous
/// digest), the whole history is read instead, for the caller's checks
/// (the chain, the anti-rollback rules) to judge. Returns the history and
/// how many of its first entries are `known`'s.
pub(crate) async fn history_since(
    store: &Store,
    env: &str,
    known: &[SignedEntry],
) -> Result<(Vec<SignedEntry>, usize)> {
    let full = || async { Ok((history(store, env).await?, 0)) };
    let Some(last) = known.last() else {
        return full().await;
    };
    let (Some(head), _) = read_pointer(store, env).await? else {
        return full().await;
    };
    let (from, to) = (last.entry.seq, head.entry.seq);
    if to < from || (to == from && !same(&head, last)) {
        return full().await;
    }
    let keys = (from + 1..to).map(|seq| history_key(env, seq)).collect();
    let mut new = fetch_entries(store, keys).await?;
    if to > from {
        new.push(head);
    }
    let mut previous = &last.entry;
    for e in &new {
        if e.entry.seq != previous.seq + 1 || e.entry.previous != Some(previous.digest()) {
            tracing::info!(
                env,
                seq = e.entry.seq,
                "the store's history does not extend the one verified before; reading it whole"
            );
            return full().await;
        }
        previous = &e.entry;
    }
    tracing::debug!(
        env,
        reused = known.len(),
        fetched = new.len(),
        "history read from the last verified head"
    );
    let mut out = known.to_vec();
    out.extend(new);
    Ok((out, known.len()))
}

fn same(a: &SignedEntry, b: &SignedEntry) -> bool {
    a.entry == b.entry && a.signature == b.signature
}

/// Histories verified on this machine, remembered between runs of `pipe
/// promote`, `rollback` and `refresh` (`.pipe/history/<store>/<env>.json`
/// next to `pipeline.toml`): the next run fetches and verifies only the
/// entries after the last one it verified ([`history_since`]). A cache: a
/// history the store serves that does not extend it is read and verified
/// whole, and an unreadable file is ignored.
#[derive(Debug, Clone)]
pub(crate) struct HistoryCache {
    dir: std::path::PathBuf,
}

impl HistoryCache {
    /// The cache of histories of the store at `url`, for the project in
    /// `project_dir`.
    pub(crate) fn new(project_dir: &std::path::Path, url: &crate::store::StoreUrl) -> HistoryCache {
        let id = blake3::hash(url.to_string().as_bytes()).to_hex();
        HistoryCache {
            dir: project_dir.join(".pipe/history").join(&id[..16]),
        }
    }

    fn path(&self, env: &str) -> std::path::PathBuf {
        self.dir.join(format!("{env}.json"))
    }

    /// What was verified of `env`'s history last time with `keyring`
    /// (empty if nothing, or if another keyring verified it).
    pub(crate) fn load(&self, env: &str, keyring: &Keyring) -> Vec<SignedEntry> {
        std::fs::read(self.path(env))
            .ok()
            .and_then(|b| serde_json::from_slice::<Cached>(&b).ok())
            .filter(|c| !c.keyring.is_empty() && c.keyring == keyring_digest(keyring))
            .map(|c| c.entries)
            .unwrap_or_default()
    }

    /// Remembers `entries`, verified with `keyring`. Failing to is only
    /// logged: the next run verifies more.
    pub(crate) fn save(&self, env: &str, keyring: &Keyring, entries: &[SignedEntry]) {
        let path = self.path(env);
        let cached = CachedRef {
            keyring: keyring_digest(keyring),
            entries,
        };
        let written = std::fs::create_dir_all(&self.dir).and_then(|()| {
            let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
            std::io::Write::write_all(&mut tmp, &serde_json::to_vec(&cached).unwrap_or_default())?;
            tmp.persist(&path).map(|_| ()).map_err(|e| e.error)
        });
        if let Err(e) = written {
            tracing::debug!(path = %path.display(), error = %e, "could not remember the verified history");
        }
    }
}

/// A [`HistoryCache`] file.
#[derive(Deserialize)]
struct Cached {
    keyring: String,
    entries: Vec<SignedEntry>,
}

#[derive(Serialize)]
struct CachedRef<'a> {
    keyring: String,
    entries: &'a [SignedEntry],
}

/// A digest of the keyring's bytes: which keys verified a cached history.
fn keyring_digest(keyring: &Keyring) -> String {
    keyring
        .to_bytes(Encoding::Binary)
        .map(|b| blake3::hash(&b).to_hex().to_string())
        .unwrap_or_default()
}

/// [`verified_history`] reusing what `cache` remembers: only entries after
/// the last one verified before are fetched and their signatures checked
/// (the remembered ones are bound to them by the hash chain); the whole
/// chain's structure is checked, and the pointer must end it.
pub(crate) async fn verified_history_cached(
    store: &Store,
    env: &str,
    keyring: &Keyring,
    cache: Option<&HistoryCache>,
) -> Result<Vec<SignedEntry>> {
    let Some(cache) = cache else {
        return verified_history(store, env, keyring).await;
    };
    let known = cache.load(env, keyring);
    let (entries, reused) = history_since(store, env, &known).await?;
    verify_chain_after(env, &entries, Some(keyring), reused as u64)?;
    let (head, _) = read_pointer(store, env).await?;
    check_head_is_last(env, head.as_ref(), &entries)?;
    cache.save(env, keyring, &entries);
    Ok(entries)
}

/// [`check_head`] reusing what `cache` remembers ([`verified_history_cached`]).
pub(crate) async fn check_head_cached(
    store: &Store,
    env: &str,
    head: Option<&SignedEntry>,
    keyring: &Keyring,
    cache: Option<&HistoryCache>,
) -> Result<()> {
    let Some(cache) = cache else {
        return check_head(store, env, head, keyring).await;
    };
    let known = cache.load(env, keyring);
    let (entries, reused) = history_since(store, env, &known).await?;
    verify_chain_after(env, &entries, Some(keyring), reused as u64)?;
    match (head, entries.last()) {
        (Some(h), Some(last)) if last.entry.seq > h.entry.seq => Err(Error::Conflict {
            key: pointer_key(env),
            expected: Some(format!("seq {} ({})", h.entry.seq, h.entry.build)),
            found: Some(format!("seq {} ({})", last.entry.seq, last.entry.build)),
        }),
        _ => {
            check_head_is_last(env, head, &entries)?;
            cache.save(env, keyring, &entries);
            Ok(())
        }
    }
}

/// Checks the chain (sequence numbers, `previous` digests, environment
/// names) and, with a keyring, every signature. Returns the first break.
pub fn verify_chain(env: &str, entries: &[SignedEntry], keyring: Option<&Keyring>) -> Result<()> {
    verify_chain_after(env, entries, keyring, 0)
}

/// [`verify_chain`], checking signatures only of entries after sequence
/// number `signed_before`: those up to it were verified before, and the
/// chain of digests, checked whole, binds them to the first entry checked
/// now.
pub(crate) fn verify_chain_after(
    env: &str,
    entries: &[SignedEntry],
    keyring: Option<&Keyring>,
    signed_before: u64,
) -> Result<()> {
    let mut previous: Option<&Entry> = None;
    for (i, signed) in entries.iter().enumerate() {
        let e = &signed.entry;
        let broken = |detail: String| Error::Verify {
            what: format!("history of `{env}`, entry {}", e.seq),
            detail,
        };
        if e.seq != i as u64 + 1 {
            return Err(broken(format!(
                "expected sequence number {}, found {}",
                i + 1,
                e.seq
            )));
        }
        if e.env != env {
            return Err(broken(format!("belongs to environment `{}`", e.env)));
        }
        let expected = previous.map(Entry::digest);
        if e.previous != expected {
            return Err(broken(format!(
                "names previous entry {}, but the entry before it has digest {}",
                e.previous.as_deref().unwrap_or("(none)"),
                expected.as_deref().unwrap_or("(none)")
            )));
        }
        if let Some(ring) = keyring.filter(|_| e.seq > signed_before) {
            ring.verify_detached(&e.canonical()[..], signed.signature.as_bytes(), None)
                .map_err(|err| broken(format!("signature: {err}")))?;
        }
        previous = Some(e);
    }
    Ok(())
}

/// 16 hex digits no other promotion has: a digest of this process, the
/// host and the time in nanoseconds.
fn nonce() -> String {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut h = blake3::Hasher::new();
    h.update(&now.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(actor().as_bytes());
    h.finalize().to_hex()[..16].to_string()
}

/// Seconds since the Unix epoch (0 before it).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `$PIPE_ACTOR`, else `user@host`: the user from `$USER` or `$LOGNAME`,
/// else the name of the process's uid (cron sets neither), else `uid N`.
fn actor() -> String {
    if let Ok(a) = std::env::var("PIPE_ACTOR")
        && !a.is_empty()
    {
        return a;
    }
    let user = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|u| !u.is_empty())
        .unwrap_or_else(uid_name);
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// The login name of the real uid from `/etc/passwd`, else `uidN`.
fn uid_name() -> String {
    let uid = rustix::process::getuid().as_raw();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| passwd_name(&passwd, uid))
        .unwrap_or_else(|| format!("uid{uid}"))
}

/// The name of `uid` in the text of a passwd(5) file.
fn passwd_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse() == Ok(uid) && !name.is_empty()).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OpenOptions, StoreUrl};

    fn entry(seq: u64, build: &str) -> SignedEntry {
        SignedEntry {
            entry: Entry {
                seq,
                env: "dev".into(),
                build: build.into(),
                previous: None,
                actor: "test".into(),
                at: "2026-01-01T00:00:00Z".into(),
                action: "promote".into(),
                forced: false,
                nonce: build.into(),
            },
            signature: String::new(),
        }
    }

    /// Writes a chain of `n` unsigned entries of `dev` (pointer last);
    /// returns them.
    async fn chain(
        store: &Store,
        from: Option<SignedEntry>,
        n: u64,
        tag: &str,
    ) -> Vec<SignedEntry> {
        let mut head = from;
        let mut out = Vec::new();
        for i in 0..n {
            let mut e = entry(
                head.as_ref().map_or(1, |h| h.entry.seq + 1),
                &format!("{tag}{i}"),
            );
            e.entry.previous = head.as_ref().map(|h| h.entry.digest());
            store
                .put(
                    &history_key("dev", e.entry.seq),
                    Body::from_bytes(e.to_bytes()),
                    Condition::Overwrite,
                )
                .await
                .unwrap();
            store
                .put(
                    &pointer_key("dev"),
                    Body::from_bytes(e.to_bytes()),
                    Condition::Overwrite,
                )
                .await
                .unwrap();
            head = Some(e.clone());
            out.push(e);
        }
        out
    }

    /// What was verified before is extended by the entries after it only;
    /// a store whose history does not extend it (a fork, a truncation) is
    /// read whole.
    #[tokio::test]
    async fn history_since_reads_only_what_extends_the_known_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &StoreUrl::Local(dir.path().join("store")),
            &OpenOptions::default(),
        )
        .await
        .unwrap();
        let first = chain(&store, None, 10, "a").await;
        let (all, reused) = history_since(&store, "dev", &[]).await.unwrap();
        assert_eq!((all.len(), reused), (10, 0));
        let more = chain(&store, first.last().cloned(), 5, "b").await;
        // The entries before the known head are never read again: gone
        // from the store, the history still extends.
        store.delete(&history_key("dev", 3)).await.unwrap();
        let (all, reused) = history_since(&store, "dev", &first).await.unwrap();
        assert_eq!((all.len(), reused), (15, 10));
        assert!(all[10..].iter().zip(&more).all(|(a, b)| a.entry == b.entry));
        // Up to date: nothing but the pointer is read.
        let (all, reused) = history_since(&store, "dev", &all).await.unwrap();
        assert_eq!((all.len(), reused), (15, 15));
        // A fork after entry 8: read whole (and the gap at 3 shows).
        chain(&store, Some(first[7].clone()), 9, "fork").await;
        let (all, reused) = history_since(&store, "dev", &first).await.unwrap();
        assert_eq!(reused, 0);
        assert!(verify_chain("dev", &all, None).is_err());
        // Truncated below the known head: read whole.
        store
            .put(
                &pointer_key("dev"),
                Body::from_bytes(first[4].to_bytes()),
                Condition::Overwrite,
            )
            .await
            .unwrap();
        let (_, reused) = history_since(&store, "dev", &first).await.unwrap();
        assert_eq!(reused, 0);
    }

    /// A history copy already there with another entry is a fork: an
    /// error naming both digests, and the copy is left as found.
    #[tokio::test]
    async fn a_history_copy_with_other_bytes_is_an_error_naming_both_digests() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &StoreUrl::Local(dir.path().join("store")),
            &OpenOptions::default(),
        )
        .await
        .unwrap();
        let theirs = entry(2, "b-theirs");
        let theirs_bytes = theirs.to_bytes();
        write_history_copy(&store, &theirs).await.unwrap();
        // The same entry again is fine (a repaired or retried copy).
        write_history_copy(&store, &theirs).await.unwrap();
        let ours = entry(2, "b-ours");
        let err = write_history_copy(&store, &ours).await.unwrap_err();
        let text = err.to_string();
        assert_eq!(err.exit_code(), crate::error::EXIT_VERIFY, "{text}");
        assert!(
            text.contains(&theirs.entry.digest()) && text.contains(&ours.entry.digest()),
            "{text}"
        );
        assert_eq!(
            &store
                .get_bytes(&history_key("dev", 2))
                .await
                .unwrap()
                .unwrap()
                .0[..],
            &theirs_bytes[..]
        );
    }

    #[test]
    fn passwd_name_finds_the_uid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      broken\n\
                      ops:x:1000:1000::/home/ops:/bin/sh\n";
        assert_eq!(passwd_name(passwd, 0).as_deref(), Some("root"));
        assert_eq!(passwd_name(passwd, 1000).as_deref(), Some("ops"));
        assert_eq!(passwd_name(passwd, 1001), None);
    }
}
