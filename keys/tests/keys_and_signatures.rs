//! Key files, error messages, determinism and tamper detection.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure, and input is the test's own"
)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use keys::{Algorithm, Encoding, Error, GenerateOptions, Keyring, SecretKey, Timestamp};

const DATA: &[u8] = b"some artifact bytes\n\x00\x01\x02 and more";

/// Default algorithm is RSA 4096; the file is written with mode 0600 and
/// never overwritten; it loads back as the same key; `info` serialises.
#[test]
fn generate_write_load_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("release.key");
    let mut opts = GenerateOptions::new("Release Signing <release@example.com>");
    opts.creation_time = Some(at(KEY_CREATED));
    assert_eq!(opts.algorithm, Algorithm::Rsa4096);
    let key = SecretKey::generate(&opts).unwrap();
    key.write_new(&path).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let written = std::fs::read(&path).unwrap();
    assert!(written.starts_with(b"-----BEGIN PGP PRIVATE KEY BLOCK-----"));

    // Never overwrite, not even with the same key.
    let err = SecretKey::generate(&GenerateOptions::new("Other <o@example.com>"))
        .unwrap()
        .write_new(&path)
        .unwrap_err();
    assert!(matches!(err, Error::FileExists { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "refusing to overwrite {}: the file already exists (move it away or choose another path)",
            path.display()
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), written);

    let loaded = SecretKey::load(&path, None).unwrap();
    assert_eq!(loaded.fingerprint(), key.fingerprint());
    assert_eq!(loaded.created(), at(KEY_CREATED));
    let info = loaded.info();
    assert_eq!(info.algorithm, "rsa4096");
    assert_eq!(info.usage, ["certify", "sign"]);
    assert_eq!(info.user_ids, ["Release Signing <release@example.com>"]);
    assert_eq!(info.created, Timestamp::from_unix(KEY_CREATED));
    assert_eq!(info.expires, None);
    assert!(info.secret && info.subkeys.is_empty() && info.revoked.is_none());
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["fingerprint"], key.fingerprint());
    assert_eq!(json["created"], "2020-09-13T12:26:40Z");
    assert_eq!(json["expires"], serde_json::Value::Null);
    assert_eq!(json["algorithm"], "rsa4096");
    assert_eq!(
        loaded.signing_algorithm(at(SIGNED)).unwrap(),
        keys::SignatureAlgorithm::Rsa
    );

    // The public keyring lists the same key, without secret.
    let public = key.public_keyring().keys();
    assert_eq!(public.len(), 1);
    assert!(!public[0].secret);
    assert_eq!(public[0].fingerprint, key.fingerprint());

    // Algorithm names for the CLI.
    assert_eq!("ED25519".parse::<Algorithm>().unwrap(), Algorithm::Ed25519);
    let err = "dsa1024".parse::<Algorithm>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown key algorithm \"dsa1024\": expected one of rsa4096, rsa3072, ed25519"
    );
}

/// Passphrase-protected keys: stored encrypted; missing and wrong
/// passphrases are clear errors; the right one unlocks.
#[test]
fn passphrase_protected_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("release.key");
    let mut opts = GenerateOptions::new("Prot <prot@example.com>");
    opts.algorithm = Algorithm::Ed25519;
    opts.passphrase = Some("correct horse".into());
    opts.creation_time = Some(at(KEY_CREATED));
    let key = SecretKey::generate(&opts).unwrap();
    key.write_new(&path).unwrap();
    let fpr = key.fingerprint();

    let err = SecretKey::load(&path, None).unwrap_err();
    assert!(matches!(err, Error::PassphraseRequired { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "secret key {fpr} is passphrase-protected and no passphrase was given (set PIPE_SIGNING_PASSPHRASE)"
        )
    );
    let err = SecretKey::load(&path, Some("wrong horse")).unwrap_err();
    assert!(matches!(&err, Error::WrongPassphrase { fingerprint } if *fingerprint == fpr));
    assert_eq!(
        err.to_string(),
        format!("wrong passphrase for secret key {fpr}")
    );

    let loaded = SecretKey::load(&path, Some("correct horse")).unwrap();
    let sig = loaded
        .sign_detached(DATA, at(SIGNED), Encoding::Binary)
        .unwrap();
    let v = key
        .public_keyring()
        .verify_detached(DATA, &sig, None)
        .unwrap();
    assert_eq!(v.fingerprint, fpr);
    // The key in memory signs like the key from the file.
    assert_eq!(
        key.sign_detached(DATA, at(SIGNED), Encoding::Binary)
            .unwrap(),
        sig
    );
}

/// Unreadable, corrupt, truncated, public-only and multi-key files.
#[test]
fn bad_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let key = key("K <k@example.com>", Algorithm::Ed25519);
    let good = dir.path().join("good.key");
    key.write_new(&good).unwrap();
    let armored = std::fs::read(&good).unwrap();
    let fpr = key.fingerprint();

    let missing = dir.path().join("missing.key");
    let err = SecretKey::load(&missing, None).unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert!(
        err.to_string()
            .starts_with(&format!("cannot read key file {}: ", missing.display()))
    );

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("garbage", b"this is not a key at all\n".to_vec()),
        (
            "random",
            (0..200u32).map(|i| (i * 37 % 251) as u8).collect(),
        ),
        ("truncated-armor", armored[..armored.len() / 2].to_vec()),
        ("truncated-binary", {
            let binary = dearmor(&armored);
            binary[..binary.len() - 20].to_vec()
        }),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let err = SecretKey::load(&path, None).unwrap_err();
        assert!(matches!(err, Error::CorruptKey { .. }), "{name}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "{} is not a usable OpenPGP key file: ",
                path.display()
            )),
            "{name}: {msg}"
        );
        assert!(
            msg.len() > path.display().to_string().len() + 40,
            "{name}: no detail: {msg}"
        );
    }

    // A public key where a secret key is needed.
    let public = dir.path().join("public.asc");
    std::fs::write(
        &public,
        key.public_keyring().to_bytes(Encoding::Armored).unwrap(),
    )
    .unwrap();
    let err = SecretKey::load(&public, None).unwrap_err();
    assert!(matches!(err, Error::NotASecretKey { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{} holds only the public key {fpr}, but a secret key is needed: give the secret key \
             file (from `pipe keys generate` or `gpg --export-secret-keys`)",
            public.display()
        )
    );

    // Two keys in one file.
    let other = key_b();
    let both = dir.path().join("both.key");
    key.write_new(&both.with_extension("a")).unwrap();
    other.write_new(&both.with_extension("b")).unwrap();
    let mut bytes = std::fs::read(both.with_extension("a")).unwrap();
    bytes.extend(std::fs::read(both.with_extension("b")).unwrap());
    std::fs::write(&both, bytes).unwrap();
    let err = SecretKey::load(&both, None).unwrap_err();
    assert!(
        matches!(err, Error::AmbiguousKey { ref fingerprints, .. } if fingerprints.len() == 2),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("a signing key file must hold exactly one")
    );

    // Keyrings: garbage is rejected, secret material is dropped.
    let err = Keyring::from_bytes(b"garbage").unwrap_err();
    assert!(matches!(err, Error::InvalidKeyring { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("not a usable OpenPGP keyring: ")
    );
    let ring = Keyring::from_bytes(&armored).unwrap();
    assert!(!ring.keys()[0].secret);
    let exported = ring.to_bytes(Encoding::Armored).unwrap();
    assert!(!String::from_utf8_lossy(&exported).contains("PRIVATE"));
}

fn key_b() -> SecretKey {
    key("B <b@example.com>", Algorithm::Ed25519)
}

fn dearmor(armored: &[u8]) -> Vec<u8> {
    // Round-trip through sequoia: an armored TSK to its binary form.
    use sequoia_openpgp::Cert;
    use sequoia_openpgp::parse::Parse;
    use sequoia_openpgp::serialize::SerializeInto;
    Cert::from_bytes(armored)
        .unwrap()
        .as_tsk()
        .to_vec()
        .unwrap()
}

/// Invalid user IDs are rejected with the reason.
#[test]
fn invalid_user_ids() {
    for (uid, why) in [
        ("", "it is empty"),
        ("  ", "it is empty"),
        ("a\nb <x@y>", "control characters"),
    ] {
        let err = SecretKey::generate(&GenerateOptions::new(uid)).unwrap_err();
        assert!(
            matches!(err, Error::InvalidUserId { .. }),
            "{uid:?}: {err:?}"
        );
        assert!(err.to_string().contains(why), "{uid:?}: {err}");
    }
}

/// Same key, same time, same data: the same bytes (RSA and Ed25519,
/// detached armored/binary and clearsigned), also after a reload from the
/// file. Another time or other data gives other bytes.
#[test]
fn signatures_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    for algo in [Algorithm::Rsa3072, Algorithm::Ed25519] {
        let key = key("D <d@example.com>", algo);
        let path = dir.path().join(format!("{algo}.key"));
        key.write_new(&path).unwrap();
        let reloaded = SecretKey::load(&path, None).unwrap();
        for encoding in [Encoding::Armored, Encoding::Binary] {
            let a = key.sign_detached(DATA, at(SIGNED), encoding).unwrap();
            let b = key.sign_detached(DATA, at(SIGNED), encoding).unwrap();
            let c = reloaded.sign_detached(DATA, at(SIGNED), encoding).unwrap();
            assert_eq!(a, b, "{algo} {encoding:?}");
            assert_eq!(a, c, "{algo} {encoding:?} after reload");
            assert_ne!(
                a,
                key.sign_detached(DATA, at(SIGNED + 1), encoding).unwrap()
            );
            assert_ne!(
                a,
                key.sign_detached(&b"other"[..], at(SIGNED), encoding)
                    .unwrap()
            );
        }
        let a = key.clearsign(b"Suite: prod\n", at(SIGNED)).unwrap();
        assert_eq!(a, reloaded.clearsign(b"Suite: prod\n", at(SIGNED)).unwrap());
        // Sub-second parts of the time do not matter (OpenPGP has seconds).
        let frac = at(SIGNED) + std::time::Duration::from_millis(999);
        assert_eq!(
            key.sign_detached(DATA, frac, Encoding::Binary).unwrap(),
            key.sign_detached(DATA, at(SIGNED), Encoding::Binary)
                .unwrap()
        );

        // And they verify, with the signer and time reported.
        let ring = key.public_keyring();
        let sig = key
            .sign_detached(DATA, at(SIGNED), Encoding::Armored)
            .unwrap();
        let v = ring.verify_detached(DATA, &sig, None).unwrap();
        assert_eq!(v.fingerprint, key.fingerprint());
        assert_eq!(v.signing_key, key.fingerprint());
        assert_eq!(v.signed_at, Timestamp::from_unix(SIGNED));
        assert_eq!(v.user_id.as_deref(), Some("D <d@example.com>"));
    }
}

/// Signatures are v4, SHA-256, binary-document (detached) or text
/// (clearsigned), and carry no salt notation.
#[test]
fn signature_packet_shape() {
    use sequoia_openpgp::Packet;
    use sequoia_openpgp::parse::Parse;
    use sequoia_openpgp::types::{HashAlgorithm, SignatureType};
    let key = key("S <s@example.com>", Algorithm::Rsa3072);
    let sig = key
        .sign_detached(DATA, at(SIGNED), Encoding::Binary)
        .unwrap();
    let Packet::Signature(sig) = Packet::from_bytes(&sig).unwrap() else {
        panic!("not a signature packet")
    };
    assert_eq!(sig.version(), 4);
    assert_eq!(sig.hash_algo(), HashAlgorithm::SHA256);
    assert_eq!(sig.typ(), SignatureType::Binary);
    assert_eq!(sig.notation_data().count(), 0);
    assert_eq!(sig.unhashed_area().iter().count(), 0);
}

/// Altering any single byte of the data or of the signature is detected;
/// a signature by a key outside the keyring is `UnknownSigner`.
#[test]
fn tampering_and_unknown_signers() {
    let key = key("T <t@example.com>", Algorithm::Rsa3072);
    let ring = key.public_keyring();
    let sig = key
        .sign_detached(DATA, at(SIGNED), Encoding::Binary)
        .unwrap();
    ring.verify_detached(DATA, &sig, None).unwrap();

    for i in 0..DATA.len() {
        let mut data = DATA.to_vec();
        data[i] ^= 0x01;
        let err = ring.verify_detached(&data[..], &sig, None).unwrap_err();
        assert!(
            matches!(err, Error::BadSignature { .. }),
            "data byte {i}: {err:?}"
        );
        assert!(err.is_verification_failure());
    }
    let err = ring
        .verify_detached(&DATA[..DATA.len() - 1], &sig, None)
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("bad signature by key {}: ", key.fingerprint())),
        "{err}"
    );

    for i in 0..sig.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = sig.clone();
            bad[i] ^= bit;
            let err = ring
                .verify_detached(DATA, &bad, None)
                .err()
                .unwrap_or_else(|| panic!("signature byte {i} ^ {bit:#x} went unnoticed"));
            assert!(err.is_verification_failure(), "signature byte {i}: {err:?}");
        }
    }
    let armored = key
        .sign_detached(DATA, at(SIGNED), Encoding::Armored)
        .unwrap();
    let body_start = armored.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    for i in (body_start..armored.len() - 40).step_by(7) {
        let mut bad = armored.clone();
        bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
        if bad == armored || armored[i] == b'\n' {
            continue;
        }
        assert!(
            ring.verify_detached(DATA, &bad, None).is_err(),
            "armored byte {i}"
        );
    }

    // Clearsigned text: one altered byte in the text.
    let signed = key
        .clearsign(b"Origin: pipe\nSuite: prod\n", at(SIGNED))
        .unwrap();
    let altered = String::from_utf8(signed.clone())
        .unwrap()
        .replace("prod", "prud");
    let err = ring
        .verify_clearsigned(altered.as_bytes(), None)
        .unwrap_err();
    assert!(matches!(err, Error::BadSignature { .. }), "{err:?}");
    let (v, text) = ring.verify_clearsigned(&signed, None).unwrap();
    assert_eq!(text, b"Origin: pipe\nSuite: prod\n");
    assert_eq!(v.fingerprint, key.fingerprint());

    // Another keyring: UnknownSigner naming the issuer fingerprint.
    let other = key_b().public_keyring();
    let err = other.verify_detached(DATA, &sig, None).unwrap_err();
    assert!(
        matches!(&err, Error::UnknownSigner { issuer } if *issuer == key.fingerprint()),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "signature made by key {}, which is not in the trusted keyring",
            key.fingerprint()
        )
    );
    let err = other.verify_clearsigned(&signed, None).unwrap_err();
    assert!(matches!(err, Error::UnknownSigner { .. }), "{err:?}");

    // Merged keyrings know both.
    let mut both = other.clone();
    both.merge(&ring).unwrap();
    assert_eq!(both.keys().len(), 2);
    both.verify_detached(DATA, &sig, None).unwrap();
    let reparsed = Keyring::from_bytes(&both.to_bytes(Encoding::Binary).unwrap()).unwrap();
    assert_eq!(reparsed.keys(), both.keys());

    // Not a signature at all; unsigned text.
    for junk in [
        &b""[..],
        b"garbage",
        b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n",
    ] {
        let err = ring.verify_detached(DATA, junk, None).unwrap_err();
        assert!(
            matches!(err, Error::BadSignature { .. }),
            "{junk:?}: {err:?}"
        );
    }
    let err = ring.verify_clearsigned(b"Suite: prod\n", None).unwrap_err();
    assert!(matches!(err, Error::BadSignature { .. }), "{err:?}");
    // A detached signature is not a clearsigned document.
    let err = ring
        .verify_clearsigned(
            &key.sign_detached(DATA, at(SIGNED), Encoding::Armored)
                .unwrap(),
            None,
        )
        .unwrap_err();
    assert!(matches!(err, Error::BadSignature { .. }), "{err:?}");
}

/// Signing before the key existed is refused (a clamped SOURCE_DATE_EPOCH
/// older than the key), and a signature dated after the reference time is
/// rejected.
#[test]
fn signature_times() {
    let key = key("Time <t@example.com>", Algorithm::Ed25519);
    let err = key
        .sign_detached(DATA, at(KEY_CREATED - 1), Encoding::Binary)
        .unwrap_err();
    assert!(matches!(err, Error::KeyNotYetValid { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "key {} was created at 2020-09-13T12:26:40Z, after the signature time 2020-09-13T12:26:39Z \
             (if the time comes from SOURCE_DATE_EPOCH, clamp it to the key's creation time)",
            key.fingerprint()
        )
    );
    // Exactly at creation is fine.
    let sig = key
        .sign_detached(DATA, key.created(), Encoding::Binary)
        .unwrap();
    key.public_keyring()
        .verify_detached(DATA, &sig, None)
        .unwrap();

    // Reference time: a signature from "the future" is rejected.
    let sig = key
        .sign_detached(DATA, at(SIGNED), Encoding::Binary)
        .unwrap();
    let ring = key.public_keyring();
    ring.verify_detached(DATA, &sig, Some(at(SIGNED))).unwrap();
    let err = ring
        .verify_detached(DATA, &sig, Some(at(SIGNED - 86_400)))
        .unwrap_err();
    assert!(matches!(err, Error::BadSignature { .. }), "{err:?}");
}

/// v6 (RFC 9580) keys are refused for signing: their signatures are
/// salted, so they could not be reproducible.
#[test]
fn v6_keys_are_refused() {
    use sequoia_openpgp::cert::{CertBuilder, CipherSuite};
    use sequoia_openpgp::serialize::SerializeInto;
    let (cert, _) = CertBuilder::general_purpose(Some("V6 <v6@example.com>"))
        .set_profile(sequoia_openpgp::Profile::RFC9580)
        .unwrap()
        .set_cipher_suite(CipherSuite::Cv25519)
        .set_creation_time(at(KEY_CREATED))
        .set_validity_period(None)
        .generate()
        .unwrap();
    let key = SecretKey::from_bytes(&cert.as_tsk().to_vec().unwrap(), None).unwrap();
    let err = key
        .sign_detached(DATA, at(SIGNED), Encoding::Binary)
        .unwrap_err();
    assert!(matches!(err, Error::UnusableKey { .. }), "{err:?}");
    assert!(
        err.to_string().contains("only v4 keys are supported"),
        "{err}"
    );
}

/// A failing data stream is an I/O error, not a verification failure.
#[test]
fn unreadable_data() {
    struct Broken;
    impl std::io::Read for Broken {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    let key = key("R <r@example.com>", Algorithm::Ed25519);
    let sig = key
        .sign_detached(DATA, at(SIGNED), Encoding::Binary)
        .unwrap();
    let err = key
        .public_keyring()
        .verify_detached(Broken, &sig, None)
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(!err.is_verification_failure());
    assert_eq!(err.to_string(), "cannot read the signed data: disk on fire");
    let err = key
        .sign_detached(Broken, at(SIGNED), Encoding::Binary)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read the data to sign: disk on fire"
    );
}
