//! Rollback and freeze protection: the newest head each target verified
//! (`DIR/.pipe/trusted/ENV.json`), checked against every head it is given.

use std::path::Path;

use keys::Keyring;
use serde::{Deserialize, Serialize};

use super::write_atomic;
use crate::records::SignedEntry;
use crate::{Error, Result};

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
pub(super) fn keyring_id(keyring: &Keyring) -> String {
    keyring
        .to_bytes(keys::Encoding::Binary)
        .map(|b| blake3::hash(&b).to_hex().to_string())
        .unwrap_or_default()
}

/// Under a target: the remembered heads, one file per environment.
const TRUSTED_DIR: &str = ".pipe/trusted";

/// The sequence number of the head `target` verified last for `env`, if
/// `history` still has it at that place (0 otherwise: everything is
/// verified, and [`check_remembered`] judges the difference).
pub(super) fn remembered_seq(
    target: &Path,
    env: &str,
    history: &[SignedEntry],
    keyring: &str,
) -> u64 {
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

/// Refuses (exit 3) a verified `head` that is older than the one `target`
/// remembers for its environment, or whose `history` does not pass through
/// it, unless `allow_downgrade`.
pub(super) fn check_remembered(
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
pub(super) fn remember(target: &Path, head: &SignedEntry, keyring_id: &str) -> Result<()> {
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
