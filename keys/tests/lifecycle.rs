//! Expiry, revocation and rotation.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure, and input is the test's own"
)]

mod common;

use std::time::Duration;

use common::*;
use keys::{
    Algorithm, Encoding, Error, GenerateOptions, Keyring, RotateOptions, SecretKey, Timestamp,
};
use sequoia_openpgp as openpgp;

const DATA: &[u8] = b"artifact";
const DAY: u64 = 86_400;

/// A signature made with sequoia's low-level API, bypassing this crate's
/// checks, to get signatures this crate refuses to make (after expiry).
fn raw_signature(key: &SecretKey, time: u64) -> Vec<u8> {
    use openpgp::parse::Parse;
    use openpgp::serialize::SerializeInto;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    key.write_new(&path).unwrap();
    let cert = openpgp::Cert::from_file(&path).unwrap();
    let mut signer = cert
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .unwrap()
        .into_keypair()
        .unwrap();
    let sig =
        openpgp::packet::signature::SignatureBuilder::new(openpgp::types::SignatureType::Binary)
            .set_signature_creation_time(at(time))
            .unwrap()
            .sign_message(&mut signer, DATA)
            .unwrap();
    openpgp::Packet::from(sig).to_vec().unwrap()
}

/// A key valid for one day: signatures made in that day verify forever
/// after; signing after expiry is refused, and a signature dated after
/// expiry does not verify, naming the key and its expiry time.
#[test]
fn expired_key() {
    let mut opts = GenerateOptions::new("Short <short@example.com>");
    opts.algorithm = Algorithm::Ed25519;
    opts.creation_time = Some(at(KEY_CREATED));
    opts.validity = Some(Duration::from_secs(DAY));
    let key = SecretKey::generate(&opts).unwrap();
    let fpr = key.fingerprint();
    let ring = key.public_keyring();
    assert_eq!(
        ring.keys()[0].expires,
        Some(Timestamp::from_unix(KEY_CREATED + DAY))
    );

    // Made while valid, verified now (years after expiry) and at any time.
    let sig = key
        .sign_detached(DATA, at(KEY_CREATED + 3600), Encoding::Binary)
        .unwrap();
    let v = ring.verify_detached(DATA, &sig, None).unwrap();
    assert_eq!(v.signed_at, Timestamp::from_unix(KEY_CREATED + 3600));
    ring.verify_detached(DATA, &sig, Some(at(KEY_CREATED + 10 * DAY)))
        .unwrap();

    // Signing after expiry is refused.
    let err = key
        .sign_detached(DATA, at(KEY_CREATED + 2 * DAY), Encoding::Binary)
        .unwrap_err();
    assert!(matches!(err, Error::KeyExpired { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "key {fpr} expired at 2020-09-14T12:26:40Z; the signature is dated 2020-09-15T12:26:40Z"
        )
    );

    // A signature made after expiry anyway does not verify.
    let late = raw_signature(&key, KEY_CREATED + 2 * DAY);
    let err = ring.verify_detached(DATA, &late, None).unwrap_err();
    match &err {
        Error::KeyExpired {
            fingerprint,
            at,
            signed_at,
        } => {
            assert_eq!(*fingerprint, fpr);
            assert_eq!(*at, Timestamp::from_unix(KEY_CREATED + DAY));
            assert_eq!(*signed_at, Timestamp::from_unix(KEY_CREATED + 2 * DAY));
        }
        other => panic!("expected KeyExpired, got {other:?}"),
    }
    assert!(err.is_verification_failure());
    // ... while the same low-level signature dated within validity does.
    ring.verify_detached(DATA, &raw_signature(&key, KEY_CREATED + 60), None)
        .unwrap();
}

/// Rotation: the new key is certified by the old; the keyring holds both;
/// old signatures still verify, new ones by the new key verify, and the
/// retired old key's signatures made after the rotation are rejected with
/// the revocation reason. GnuPG sees the certification and the revocation.
#[test]
fn rotation() {
    let gpg = Gpg::new();
    let old = key("Release <release@example.com>", Algorithm::Ed25519);
    let before = old
        .sign_detached(DATA, at(SIGNED), Encoding::Binary)
        .unwrap();
    let rotated_at = SIGNED + DAY;

    let mut new_opts = GenerateOptions::new("Release 2 <release@example.com>");
    new_opts.algorithm = Algorithm::Rsa3072;
    new_opts.creation_time = Some(at(rotated_at));
    let rotation = old
        .rotate(&RotateOptions {
            new_key: new_opts.clone(),
            retire_old: true,
        })
        .unwrap();
    let new = &rotation.new_key;
    let ring = &rotation.keyring;
    let (old_fpr, new_fpr) = (old.fingerprint(), new.fingerprint());

    let infos = ring.keys();
    assert_eq!(
        infos
            .iter()
            .map(|k| k.fingerprint.as_str())
            .collect::<Vec<_>>(),
        [old_fpr.as_str(), new_fpr.as_str()]
    );
    let revoked = infos[0].revoked.as_ref().expect("old key retired");
    assert_eq!(
        revoked.reason,
        format!("Key is superseded: superseded by {new_fpr}")
    );
    // Dated a second after the rotation: what the old key signed in the
    // rotation's own second stays valid (issue 12).
    assert_eq!(revoked.at, Some(Timestamp::from_unix(rotated_at + 1)));
    let same_second = old
        .sign_detached(DATA, at(rotated_at), Encoding::Binary)
        .unwrap();
    assert_eq!(
        ring.verify_detached(DATA, &same_second, None)
            .unwrap()
            .fingerprint,
        old_fpr
    );
    assert_eq!(infos[1].certified_by, [old_fpr.as_str()]);
    assert!(infos[1].revoked.is_none());
    assert_eq!(new.info().certified_by, [old_fpr.as_str()]);

    // Old artifacts still verify against the new keyring.
    assert_eq!(
        ring.verify_detached(DATA, &before, None)
            .unwrap()
            .fingerprint,
        old_fpr
    );
    // New artifacts are signed by the new key.
    let after = new
        .sign_detached(DATA, at(rotated_at + 60), Encoding::Binary)
        .unwrap();
    assert_eq!(
        ring.verify_detached(DATA, &after, None)
            .unwrap()
            .fingerprint,
        new_fpr
    );
    // The old key file still signs (it does not know it was retired), but
    // consumers with the new keyring reject what it signs after rotation.
    let stale = old
        .sign_detached(DATA, at(rotated_at + 60), Encoding::Binary)
        .unwrap();
    let err = ring.verify_detached(DATA, &stale, None).unwrap_err();
    match &err {
        Error::KeyRevoked {
            fingerprint,
            reason,
            at,
            signed_at,
        } => {
            assert_eq!(*fingerprint, old_fpr);
            assert!(
                reason.contains(&format!("superseded by {new_fpr}")),
                "{reason}"
            );
            assert_eq!(*at, Some(Timestamp::from_unix(rotated_at + 1)));
            assert_eq!(*signed_at, Timestamp::from_unix(rotated_at + 60));
        }
        other => panic!("expected KeyRevoked, got {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "key {old_fpr} is revoked since 2023-11-15T22:13:21Z (Key is superseded: superseded by \
             {new_fpr}); the signature is dated 2023-11-15T22:14:20Z"
        )
    );
    // The old public keyring alone (no revocation) still accepts it: the
    // revocation lives in the rotated keyring.
    old.public_keyring()
        .verify_detached(DATA, &stale, None)
        .unwrap();

    // The new key, written and reloaded, keeps the certification.
    let dir = tempfile::tempdir().unwrap();
    new.write_new(&dir.path().join("new.key")).unwrap();
    let reloaded = SecretKey::load(&dir.path().join("new.key"), None).unwrap();
    assert_eq!(reloaded.info().certified_by, [old_fpr.as_str()]);

    // The keyring survives both encodings.
    for enc in [Encoding::Armored, Encoding::Binary] {
        let again = Keyring::from_bytes(&ring.to_bytes(enc).unwrap()).unwrap();
        assert_eq!(again.keys(), infos);
    }

    // GnuPG: the new key carries a valid certification by the old key, the
    // old key is revoked, and gpgv verifies new signatures with the keyring.
    let binary = gpg.write("rotated.gpg", &ring.to_bytes(Encoding::Binary).unwrap());
    gpg.gpg_ok(&["--import", binary.to_str().unwrap()]);
    // (Listing all keys: gpg 2.2 reports "missing key" for a certification
    // by a revoked key when only the certified key is listed.)
    let sigs = String::from_utf8(gpg.gpg_ok(&["--with-colons", "--check-sigs"])).unwrap();
    let new_block = sigs
        .split("\npub:")
        .find(|block| block.contains(&format!("fpr:::::::::{new_fpr}:")))
        .expect("new key listed");
    let old_keyid = &old_fpr[24..];
    assert!(
        new_block
            .lines()
            .any(|l| l.starts_with("sig:!:") && l.contains(old_keyid)),
        "no valid certification by {old_keyid}:\n{sigs}"
    );
    let old_listing =
        String::from_utf8(gpg.gpg_ok(&["--with-colons", "--list-keys", &old_fpr])).unwrap();
    assert!(
        old_listing.lines().any(|l| l.starts_with("pub:r:")),
        "{old_listing}"
    );
    let data = gpg.write("data", DATA);
    let sig = gpg.write("after.sig", &after);
    assert_valid_sig(
        &gpg.gpgv(&binary, &[sig.to_str().unwrap(), data.to_str().unwrap()]),
        &new_fpr,
    );

    // Without retiring, the old key keeps working after rotation.
    let mut opts = new_opts;
    opts.algorithm = Algorithm::Ed25519;
    let kept = old
        .rotate(&RotateOptions {
            new_key: opts,
            retire_old: false,
        })
        .unwrap();
    assert!(kept.keyring.keys()[0].revoked.is_none());
    assert_eq!(
        kept.keyring
            .verify_detached(DATA, &stale, None)
            .unwrap()
            .fingerprint,
        old_fpr
    );
}

/// A hard revocation (GnuPG's revocation certificate, reason "no reason
/// specified") invalidates every signature of the key, even older ones,
/// and the error says so.
#[test]
fn hard_revocation_by_gnupg() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("Doomed <doomed@example.com>", "ed25519", "");
    let data = gpg.write("data", DATA);
    let sig = gpg.path("data.sig");
    gpg.gpg_ok(&[
        "--passphrase",
        "",
        "-u",
        &fpr,
        "--detach-sign",
        "-o",
        sig.to_str().unwrap(),
        data.to_str().unwrap(),
    ]);
    let sig = std::fs::read(&sig).unwrap();
    let ring = Keyring::from_bytes(&gpg.gpg_ok(&["--export", &fpr])).unwrap();
    ring.verify_detached(DATA, &sig, None).unwrap();

    // GnuPG wrote a revocation certificate at key generation; its armor
    // line is prefixed with ':' against accidental import.
    let rev = std::fs::read_to_string(
        gpg.home()
            .join("openpgp-revocs.d")
            .join(format!("{fpr}.rev")),
    )
    .unwrap();
    let rev = rev.replace(
        ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----",
    );
    let rev_file = gpg.write("key.rev", rev.as_bytes());
    gpg.gpg_ok(&["--import", rev_file.to_str().unwrap()]);
    let revoked_ring = Keyring::from_bytes(&gpg.gpg_ok(&["--export", &fpr])).unwrap();
    let info = &revoked_ring.keys()[0];
    assert!(info.revoked.is_some(), "{info:?}");

    let err = revoked_ring.verify_detached(DATA, &sig, None).unwrap_err();
    match &err {
        Error::KeyRevoked {
            fingerprint,
            reason,
            ..
        } => {
            assert_eq!(*fingerprint, fpr);
            assert_eq!(reason, "No reason specified");
        }
        other => panic!("expected KeyRevoked, got {other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with(&format!("key {fpr} is revoked since ")),
        "{err}"
    );

    // Merging the revocation into the unrevoked keyring has the same effect.
    let mut merged = ring.clone();
    merged.merge(&revoked_ring).unwrap();
    assert!(matches!(
        merged.verify_detached(DATA, &sig, None),
        Err(Error::KeyRevoked { .. })
    ));
}
