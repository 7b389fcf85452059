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

use std::time::SystemTime;

use keys::{Encoding, Keyring, SecretKey};
use serde::{Deserialize, Serialize};

use crate::store::{Body, Condition, Store, Version, layout};
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
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("entry serialises")
    }

    /// The digest the next entry names as `previous`.
    pub fn digest(&self) -> String {
        blake3::hash(&self.canonical()).to_hex().to_string()
    }
}

/// An entry and its detached armored signature over [`Entry::canonical`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedEntry {
    /// The entry.
    pub entry: Entry,
    /// Armored OpenPGP signature.
    pub signature: String,
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
            signature: String::from_utf8(signature).expect("armor is ASCII"),
        })
    }
}

impl SignedEntry {
    /// The bytes stored for the pointer and the history copy.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("serialises")
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
    match store
        .put(
            &pointer_key(&signed.entry.env),
            Body::from_bytes(signed.to_bytes()),
            cond,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(Error::Conflict { key, .. } | Error::AlreadyExists { key }) => Err(Error::Conflict {
            key,
            expected: head.map(|h| format!("seq {} ({})", h.entry.seq, h.entry.build)),
            found: Some("a newer entry written by a concurrent promotion".into()),
        }),
        Err(e) => Err(e),
    }
}

/// Writes the history copy of `signed` (create-only).
pub(crate) async fn write_history_copy(store: &Store, signed: &SignedEntry) -> Result<()> {
    let bytes = signed.to_bytes();
    let key = history_key(&signed.entry.env, signed.entry.seq);
    match store
        .put(&key, Body::from_bytes(bytes.to_vec()), Condition::IfAbsent)
        .await
    {
        Ok(_) | Err(Error::AlreadyExists { .. }) => Ok(()),
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

/// The pointer of `env` and its version token, if it has one.
pub async fn read_pointer(
    store: &Store,
    env: &str,
) -> Result<(Option<SignedEntry>, Option<Version>)> {
    Ok(
        match store.get_json(&pointer_key(env), "a pointer").await? {
            Some((entry, version)) => (Some(entry), Some(version)),
            None => (None, None),
        },
    )
}

/// Every entry of `env`'s history, oldest first, including a head whose copy
/// a killed promotion left out.
pub async fn history(store: &Store, env: &str) -> Result<Vec<SignedEntry>> {
    let prefix = layout::history_prefix(env);
    let mut out = Vec::new();
    for meta in store.list(&prefix).await? {
        if let Some((entry, _)) = store
            .get_json::<SignedEntry>(&meta.key, "a history entry")
            .await?
        {
            out.push(entry);
        }
    }
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

/// Checks the chain (sequence numbers, `previous` digests, environment
/// names) and, with a keyring, every signature. Returns the first break.
pub fn verify_chain(env: &str, entries: &[SignedEntry], keyring: Option<&Keyring>) -> Result<()> {
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
        if let Some(ring) = keyring {
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

/// The login name of the real uid from the password database, else
/// `uidN`.
fn uid_name() -> String {
    // SAFETY: getuid cannot fail; getpwuid_r writes only into `pwd` and
    // `buf`, both alive and sized as passed, and `pw_name` points into
    // `buf` when `result` is non-null.
    unsafe {
        let uid = libc::getuid();
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result);
        if rc == 0
            && !result.is_null()
            && !pwd.pw_name.is_null()
            && let Ok(name) = std::ffi::CStr::from_ptr(pwd.pw_name).to_str()
            && !name.is_empty()
        {
            return name.to_string();
        }
        format!("uid{uid}")
    }
}
