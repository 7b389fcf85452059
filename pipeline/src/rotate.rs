//! `pipe keys rotate`: a new signing key, certified by the old one, with the
//! keyring consumers must trust from now on published in the store.
//!
//! **Invariant: the key file always holds a usable key.** The new key is
//! written beside the old one and read back (unlocked, its fingerprint
//! compared, its signing subkey checked) before anything moves; the old key
//! is then linked to its retired name and the new one renamed over the key
//! file in one step. A failure at any point leaves the old key where it was
//! (and, after the keyring went to the store, a keyring naming a key that is
//! not in use yet, which is harmless: it only adds trust in a key nobody
//! signs with).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use keys::{Encoding, KeyInfo, Keyring, RotateOptions, SecretKey};
use serde::Serialize;

use crate::store::{Body, Condition, Store, layout};
use crate::{Error, Result};

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct Rotated {
    /// The new signing key, now at `key_path`.
    pub new_key: KeyInfo,
    /// The old one.
    pub old_key: KeyInfo,
    /// The key file.
    pub key_path: PathBuf,
    /// Where the old key file went.
    pub old_key_path: PathBuf,
    /// The local keyring with every key (`keyring.asc` beside the key).
    pub keyring: PathBuf,
    /// The same keyring in the store.
    pub store_keyring: &'static str,
    /// True when the old key was revoked as superseded.
    pub retired: bool,
}

/// The keyring `rotate` keeps beside the key file (old keys stay trusted
/// for what they signed).
pub fn local_keyring_path(key_path: &Path) -> PathBuf {
    key_path.with_file_name("keyring.asc")
}

/// Rotates the key at `key_path` (loaded as `old`, its passphrase
/// `passphrase`, which the new key gets too when `opts` says so): generates
/// and certifies the new key, publishes the keyring to `store`, then
/// replaces the key file (see the module's invariant).
pub async fn rotate(
    store: &Store,
    key_path: &Path,
    old: &SecretKey,
    opts: &RotateOptions,
) -> Result<Rotated> {
    let old_info = old.info();
    let rotation = old.rotate(opts)?;
    let name = key_path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("release.key")
        .to_string();
    // The old key file is moved aside, never overwritten or deleted: what it
    // signed must stay verifiable, and an operator may need it.
    let retired = key_path.with_file_name(format!(
        "{name}.{}.old",
        &old_info.fingerprint[old_info.fingerprint.len() - 16..]
    ));
    if retired.exists() {
        return Err(keys::Error::FileExists { path: retired }.into());
    }
    let mut ring = rotation.keyring.clone();
    let local = local_keyring_path(key_path);
    if local.exists() {
        let mut merged = Keyring::load(&local)?;
        merged.merge(&ring)?;
        ring = merged;
    }
    let armored = ring.to_bytes(Encoding::Armored)?;

    // Publish first: if the store refuses, nothing local has changed yet.
    store
        .put(
            layout::KEYRING,
            Body::from_bytes(armored.clone()),
            Condition::Overwrite,
        )
        .await?;

    // The new key, written and checked before the old one moves.
    let incoming = key_path.with_file_name(format!(".{name}.new"));
    match std::fs::remove_file(&incoming) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&incoming, e)),
    }
    rotation.new_key.write_new(&incoming)?;
    let checked = check_written(
        &incoming,
        &rotation.new_key,
        opts.new_key.passphrase.as_deref(),
    );
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&incoming);
        return Err(e);
    }

    // The old key under its retired name (a second link: the key file is
    // never without a key), then the new key over the key file.
    std::fs::hard_link(key_path, &retired)
        .or_else(|_| std::fs::copy(key_path, &retired).map(|_| ()))
        .map_err(|e| Error::io(&retired, e))?;
    std::fs::rename(&incoming, key_path).map_err(|e| Error::io(key_path, e))?;
    let tmp = local.with_extension("asc.tmp");
    std::fs::write(&tmp, &armored).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &local).map_err(|e| Error::io(&local, e))?;

    Ok(Rotated {
        new_key: rotation.new_key.info(),
        old_key: old_info,
        key_path: key_path.to_path_buf(),
        old_key_path: retired,
        keyring: local,
        store_keyring: layout::KEYRING,
        retired: opts.retire_old,
    })
}

/// Reads the key written at `path` back: it must unlock with `passphrase`,
/// be `expected`, and be able to sign now.
fn check_written(path: &Path, expected: &SecretKey, passphrase: Option<&str>) -> Result<()> {
    let back = SecretKey::load(path, passphrase)?;
    if back.fingerprint() != expected.fingerprint() {
        return Err(Error::Verify {
            what: path.display().to_string(),
            detail: format!(
                "the key written is {}, expected {}",
                back.fingerprint(),
                expected.fingerprint()
            ),
        });
    }
    back.signing_algorithm(SystemTime::now())
        .map_err(Error::Signing)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OpenOptions, StoreUrl};

    fn key(uid: &str) -> SecretKey {
        let mut opts = keys::GenerateOptions::new(uid);
        opts.algorithm = "ed25519".parse().unwrap();
        SecretKey::generate(&opts).unwrap()
    }

    fn options() -> RotateOptions {
        let mut new_key = keys::GenerateOptions::new("New <new@example.com>");
        new_key.algorithm = "ed25519".parse().unwrap();
        RotateOptions {
            new_key,
            retire_old: false,
        }
    }

    async fn store(dir: &Path) -> Store {
        Store::open(&StoreUrl::Local(dir.join("store")), &OpenOptions::default())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_new_key_replaces_the_old_one_which_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.key");
        let old = key("Old <old@example.com>");
        old.write_new(&path).unwrap();
        let store = store(dir.path()).await;
        let r = rotate(&store, &path, &old, &options()).await.unwrap();
        let now = SecretKey::load(&path, None).unwrap();
        assert_eq!(now.fingerprint(), r.new_key.fingerprint);
        assert_ne!(now.fingerprint(), old.fingerprint());
        let kept = SecretKey::load(&r.old_key_path, None).unwrap();
        assert_eq!(kept.fingerprint(), old.fingerprint());
        let ring = Keyring::load(&r.keyring).unwrap();
        let fprs: Vec<String> = ring.keys().into_iter().map(|k| k.fingerprint).collect();
        assert!(fprs.contains(&old.fingerprint()) && fprs.contains(&now.fingerprint()));
        assert!(store.head(layout::KEYRING).await.unwrap().is_some());
        assert!(!dir.path().join(".release.key.new").exists());
    }

    /// A new key that cannot be written leaves the old key in place, usable,
    /// and no retired copy.
    #[tokio::test]
    async fn a_failed_write_leaves_the_old_key_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("release.key");
        let old = key("Old <old@example.com>");
        old.write_new(&path).unwrap();
        let store = store(dir.path()).await;
        // Where the new key is written first, a directory with an entry
        // (so it can be neither removed as a file nor written).
        let incoming = dir.path().join(".release.key.new");
        std::fs::create_dir(&incoming).unwrap();
        std::fs::write(incoming.join("x"), b"x").unwrap();
        let err = rotate(&store, &path, &old, &options()).await.unwrap_err();
        assert!(err.to_string().contains(".release.key.new"), "{err}");
        let still = SecretKey::load(&path, None).unwrap();
        assert_eq!(still.fingerprint(), old.fingerprint());
        still.signing_algorithm(SystemTime::now()).unwrap();
        let retired: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".old"))
            .collect();
        assert!(retired.is_empty());
    }

    /// A new key whose passphrase does not unlock it (read back with the
    /// wrong one) is refused before the old key moves.
    #[test]
    fn a_written_key_is_checked_before_it_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = keys::GenerateOptions::new("P <p@example.com>");
        opts.algorithm = "ed25519".parse().unwrap();
        opts.passphrase = Some("right".into());
        let k = SecretKey::generate(&opts).unwrap();
        let path = dir.path().join("k");
        k.write_new(&path).unwrap();
        assert!(check_written(&path, &k, Some("right")).is_ok());
        assert!(check_written(&path, &k, Some("wrong")).is_err());
        let other = key("O <o@example.com>");
        assert!(check_written(&path, &other, Some("right")).is_err());
    }
}
