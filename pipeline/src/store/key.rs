//! What a store key may be.

use crate::{Error, Result};

/// Keys the store uses for itself and refuses as user keys.
const RESERVED: &[&str] = &[".tmp", ".locks", ".pipe-probe"];

/// Checks a key: `/`-separated, relative, no empty, `.` or `..` segments, no
/// reserved first segment.
pub(super) fn validate_key(key: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidKey {
            key: key.to_string(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.starts_with('/') {
        return bad("it starts with `/`");
    }
    if key.contains('\\') || key.contains('\0') {
        return bad("it contains `\\` or a NUL byte");
    }
    for seg in key.split('/') {
        match seg {
            "" => return bad("it has an empty segment"),
            "." | ".." => return bad("it has a `.` or `..` segment"),
            _ => {}
        }
    }
    let first = key.split('/').next().unwrap_or_default();
    if RESERVED.contains(&first) {
        return bad("the store reserves this name for itself");
    }
    Ok(())
}

pub(super) fn validate_digest(hex: &str) -> Result<()> {
    if hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(Error::InvalidKey {
            key: hex.to_string(),
            reason: "a BLAKE3 digest is 64 lowercase hex digits".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_keys() {
        for ok in ["a", "a/b.c", "envs/prod.json", ".hidden/x"] {
            validate_key(ok).unwrap();
        }
        for bad in [
            "", "/a", "a//b", "a/", "../a", "a/./b", ".tmp/x", ".locks", "a\\b",
        ] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }
}
