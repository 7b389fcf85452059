//! Interoperability with real GnuPG (`gpg`, `gpgv`) in a temporary GNUPGHOME.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure, and input is the test's own"
)]

mod common;

use common::*;
use keys::{Algorithm, Encoding, Keyring, SecretKey};

const DATA: &[u8] = b"Origin: pipe\nLabel: hello\nSuite: prod\n\x00\x01binary\xff tail";
const TEXT: &[u8] = b"Origin: pipe\nSuite: prod\n-dash line\nFrom here\ntrailing  \t\nSHA256:\n abc 12 main/binary-amd64/Packages\n";

/// gpg --verify and gpgv --keyring <our binary export> accept our detached
/// signatures, armored and binary, for RSA and Ed25519 keys.
#[test]
fn gnupg_verifies_our_detached_signatures() {
    let gpg = Gpg::new();
    for algo in [Algorithm::Rsa3072, Algorithm::Ed25519] {
        let key = key("Release <release@example.com>", algo);
        let fpr = key.fingerprint();
        let ring = key.public_keyring();
        let binary_ring = gpg.write(
            &format!("{algo}.gpg"),
            &ring.to_bytes(Encoding::Binary).unwrap(),
        );
        let armored_ring = gpg.write(
            &format!("{algo}.asc"),
            &ring.to_bytes(Encoding::Armored).unwrap(),
        );
        gpg.gpg_ok(&["--import", armored_ring.to_str().unwrap()]);
        let data = gpg.write("data", DATA);

        for (encoding, name) in [
            (Encoding::Armored, "sig.asc"),
            (Encoding::Binary, "sig.bin"),
        ] {
            let sig = key.sign_detached(DATA, at(SIGNED), encoding).unwrap();
            let sig = gpg.write(name, &sig);
            let out = gpg.gpg(&["--verify", sig.to_str().unwrap(), data.to_str().unwrap()]);
            assert_valid_sig(&out, &fpr);
            assert!(
                String::from_utf8_lossy(&out.stderr).contains(&format!(" {SIGNED} ")),
                "gpg reports another signing time:\n{}",
                show(&out)
            );
            let out = gpg.gpgv(
                &binary_ring,
                &[sig.to_str().unwrap(), data.to_str().unwrap()],
            );
            assert_valid_sig(&out, &fpr);

            // Sanity of the harness: gpgv rejects altered data.
            let altered = gpg.write("altered", &[DATA, b"x"].concat());
            let out = gpg.gpgv(
                &binary_ring,
                &[sig.to_str().unwrap(), altered.to_str().unwrap()],
            );
            assert!(
                !out.status.success(),
                "gpgv accepted altered data:\n{}",
                show(&out)
            );
        }
    }
}

/// gpg and gpgv accept our clearsigned text (apt `InRelease`), including
/// dash-escaped lines and trailing whitespace, and return the text.
#[test]
fn gnupg_verifies_our_clearsigned_text() {
    let gpg = Gpg::new();
    let key = key("Release <release@example.com>", Algorithm::Rsa3072);
    let fpr = key.fingerprint();
    let ring = gpg.write(
        "ring.gpg",
        &key.public_keyring().to_bytes(Encoding::Binary).unwrap(),
    );
    gpg.gpg_ok(&["--import", ring.to_str().unwrap()]);

    for text in [
        TEXT,
        b"no final newline",
        b"",
        b"\n\n",
        b"crlf\r\nlines\r\n",
    ] {
        let signed = key.clearsign(text, at(SIGNED)).unwrap();
        assert!(signed.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n"));
        let path = gpg.write("InRelease", &signed);
        let out = gpg.gpgv(&ring, &[path.to_str().unwrap()]);
        assert_valid_sig(&out, &fpr);
        let out_file = gpg.path("out");
        let _ = std::fs::remove_file(&out_file);
        let out = gpg.gpg(&[
            "--output",
            out_file.to_str().unwrap(),
            "--decrypt",
            path.to_str().unwrap(),
        ]);
        assert_valid_sig(&out, &fpr);
        // What gpg extracts is what we verify and return.
        let extracted = std::fs::read(&out_file).unwrap();
        let (verified, ours) = key
            .public_keyring()
            .verify_clearsigned(&signed, None)
            .unwrap();
        assert_eq!(verified.fingerprint, fpr);
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&extracted),
            "text for {:?}",
            String::from_utf8_lossy(text)
        );
    }
}

/// `gpg --import` of the armored export shows our fingerprint and user ID,
/// and imports no secret key.
#[test]
fn gnupg_imports_our_export() {
    let gpg = Gpg::new();
    let key = key("Release <release@example.com>", Algorithm::Ed25519);
    let armored = key.public_keyring().to_bytes(Encoding::Armored).unwrap();
    assert!(armored.starts_with(b"-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    let file = gpg.write("pub.asc", &armored);
    gpg.gpg_ok(&["--import", file.to_str().unwrap()]);
    assert_eq!(gpg.fingerprint("release@example.com"), key.fingerprint());
    let listing = String::from_utf8(gpg.gpg_ok(&["--with-colons", "--list-keys"])).unwrap();
    assert!(
        listing.contains("Release <release@example.com>"),
        "{listing}"
    );
    let secret = String::from_utf8(gpg.gpg_ok(&["--with-colons", "--list-secret-keys"])).unwrap();
    assert!(
        !secret.contains("sec:"),
        "secret key leaked into the export:\n{secret}"
    );
    // Binary export: same key.
    let binary = gpg.write(
        "pub.gpg",
        &key.public_keyring().to_bytes(Encoding::Binary).unwrap(),
    );
    let shown =
        String::from_utf8(gpg.gpg_ok(&["--with-colons", "--show-keys", binary.to_str().unwrap()]))
            .unwrap();
    assert!(
        shown.contains(&format!("fpr:::::::::{}:", key.fingerprint())),
        "{shown}"
    );
}

/// We verify GnuPG's detached (armored and binary) and clearsigned
/// signatures against the public key exported by gpg (binary and armored),
/// including signatures by a signing subkey.
#[test]
fn we_verify_gnupg_signatures() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("GPG Signer <gpg@example.com>", "rsa3072", "");
    let data = gpg.write("data", DATA);
    let text = gpg.write("text", TEXT);
    let exported = gpg.gpg_ok(&["--export", &fpr]);
    let armored = gpg.gpg_ok(&["--armor", "--export", &fpr]);

    let check = |ring: &Keyring, signing_key: &str| {
        let sig = gpg.path("d.sig");
        let asc = gpg.path("d.asc");
        let clear = gpg.path("t.asc");
        for p in [&sig, &asc, &clear] {
            let _ = std::fs::remove_file(p);
        }
        let (d, t) = (data.to_str().unwrap(), text.to_str().unwrap());
        gpg.gpg_ok(&[
            "--passphrase",
            "",
            "-u",
            &fpr,
            "--detach-sign",
            "-o",
            sig.to_str().unwrap(),
            d,
        ]);
        gpg.gpg_ok(&[
            "--passphrase",
            "",
            "-u",
            &fpr,
            "--armor",
            "--detach-sign",
            "-o",
            asc.to_str().unwrap(),
            d,
        ]);
        gpg.gpg_ok(&[
            "--passphrase",
            "",
            "-u",
            &fpr,
            "--clearsign",
            "-o",
            clear.to_str().unwrap(),
            t,
        ]);
        for s in [&sig, &asc] {
            let v = ring
                .verify_detached(DATA, &std::fs::read(s).unwrap(), None)
                .unwrap_or_else(|e| panic!("{}: {e}", s.display()));
            assert_eq!(v.fingerprint, fpr);
            assert_eq!(v.signing_key, signing_key);
            assert_eq!(v.user_id.as_deref(), Some("GPG Signer <gpg@example.com>"));
        }
        let (v, body) = ring
            .verify_clearsigned(&std::fs::read(&clear).unwrap(), None)
            .unwrap();
        assert_eq!(v.signing_key, signing_key);
        // gpg strips the trailing whitespace of the one line that has it.
        let expected = String::from_utf8_lossy(TEXT).replace("trailing  \t\n", "trailing\n");
        assert_eq!(String::from_utf8_lossy(&body), expected);
        // And a tampered copy of gpg's clearsigned text fails.
        let tampered = String::from_utf8(std::fs::read(&clear).unwrap())
            .unwrap()
            .replace("Suite: prod", "Suite: prud");
        let err = ring
            .verify_clearsigned(tampered.as_bytes(), None)
            .unwrap_err();
        assert!(matches!(err, keys::Error::BadSignature { .. }), "{err}");
    };

    let ring = Keyring::from_bytes(&exported).unwrap();
    check(&ring, &fpr);
    check(&Keyring::from_bytes(&armored).unwrap(), &fpr);

    // A signing subkey: gpg now signs with it.
    gpg.gpg_ok(&[
        "--passphrase",
        "",
        "--quick-add-key",
        &fpr,
        "ed25519",
        "sign",
        "never",
    ]);
    let listing = String::from_utf8(gpg.gpg_ok(&["--with-colons", "--list-keys", &fpr])).unwrap();
    let subkey = listing
        .lines()
        .filter(|l| l.starts_with("fpr:"))
        .nth(1)
        .and_then(|l| l.split(':').nth(9))
        .unwrap()
        .to_string();
    let ring = Keyring::from_bytes(&gpg.gpg_ok(&["--export", &fpr])).unwrap();
    check(&ring, &subkey);
    let info = &ring.keys()[0];
    assert_eq!(info.subkeys.len(), 1);
    assert_eq!(info.subkeys[0].fingerprint, subkey);
    assert_eq!(info.subkeys[0].algorithm, "ed25519");
    assert_eq!(info.subkeys[0].usage, ["sign"]);
}

/// A key generated by gpg, exported with `--export-secret-keys` (with and
/// without passphrase) and loaded here, signs; gpg and gpgv verify it.
#[test]
fn we_sign_with_a_gnupg_key() {
    let gpg = Gpg::new();
    let fpr = gpg.gen_key("GPG Key <gpgkey@example.com>", "ed25519", "s3cret pass");
    // Signing subkey too, so the newest signing subkey is chosen, like gpg does.
    gpg.gpg_ok(&[
        "--passphrase",
        "s3cret pass",
        "--quick-add-key",
        &fpr,
        "rsa3072",
        "sign",
        "never",
    ]);
    let secret = gpg.gpg_ok(&[
        "--passphrase",
        "s3cret pass",
        "--armor",
        "--export-secret-keys",
        &fpr,
    ]);
    let file = gpg.write("gpg-secret.asc", &secret);

    let err = SecretKey::load(&file, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "secret key {fpr} is passphrase-protected and no passphrase was given \
             (set PIPE_SIGNING_PASSPHRASE)"
        )
    );
    let err = SecretKey::load(&file, Some("wrong")).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("wrong passphrase for secret key {fpr}")
    );
    let key = SecretKey::load(&file, Some("s3cret pass")).unwrap();
    assert_eq!(key.fingerprint(), fpr);
    assert_eq!(
        key.signing_algorithm(at(SIGNED + 1_000_000_000)).unwrap(),
        keys::SignatureAlgorithm::Rsa
    );

    let now = std::time::SystemTime::now();
    let sig = key.sign_detached(DATA, now, Encoding::Armored).unwrap();
    let ring = gpg.write("ring.gpg", &gpg.gpg_ok(&["--export", &fpr]));
    let data = gpg.write("data", DATA);
    let sigf = gpg.write("data.asc", &sig);
    assert_valid_sig(
        &gpg.gpgv(&ring, &[sigf.to_str().unwrap(), data.to_str().unwrap()]),
        &gpg_signing_subkey(&gpg, &fpr),
    );
    assert_valid_sig(
        &gpg.gpg(&["--verify", sigf.to_str().unwrap(), data.to_str().unwrap()]),
        &gpg_signing_subkey(&gpg, &fpr),
    );
    let clear = gpg.write("InRelease", &key.clearsign(TEXT, now).unwrap());
    assert_valid_sig(
        &gpg.gpgv(&ring, &[clear.to_str().unwrap()]),
        &gpg_signing_subkey(&gpg, &fpr),
    );

    // An unprotected export loads without passphrase (and ignores one).
    let fpr2 = gpg.gen_key("Plain <plain@example.com>", "rsa3072", "");
    let secret = gpg.gpg_ok(&["--passphrase", "", "--export-secret-keys", &fpr2]);
    let key2 = SecretKey::from_bytes(&secret, None).unwrap();
    assert_eq!(key2.fingerprint(), fpr2);
    SecretKey::from_bytes(&secret, Some("ignored")).unwrap();
    // Dated after the key was made: under load `now` above can precede its
    // creation time, and a key cannot sign before it exists.
    let sig = key2
        .sign_detached(DATA, std::time::SystemTime::now(), Encoding::Binary)
        .unwrap();
    let sigf = gpg.write("data.sig", &sig);
    assert_valid_sig(
        &gpg.gpg(&["--verify", sigf.to_str().unwrap(), data.to_str().unwrap()]),
        &fpr2,
    );
}

/// The fingerprint of the newest signing subkey of `fpr` in gpg's listing.
fn gpg_signing_subkey(gpg: &Gpg, fpr: &str) -> String {
    let listing = String::from_utf8(gpg.gpg_ok(&["--with-colons", "--list-keys", fpr])).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    let mut best = None;
    for (i, l) in lines.iter().enumerate() {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() == Some(&"sub") && f.get(11).is_some_and(|c| c.contains('s')) {
            let created: u64 = f.get(5).expect("creation time field").parse().unwrap();
            let sub_fpr = lines
                .get(i + 1)
                .expect("an fpr line after the sub line")
                .split(':')
                .nth(9)
                .unwrap()
                .to_string();
            if best.as_ref().is_none_or(|(c, _)| created >= *c) {
                best = Some((created, sub_fpr));
            }
        }
    }
    best.expect("a signing subkey").1
}

/// A passphrase-protected key made here survives write/load, and gpg can
/// import its secret part with the same passphrase.
#[test]
fn gnupg_imports_our_protected_secret_key() {
    let gpg = Gpg::new();
    let mut opts = keys::GenerateOptions::new("Prot <prot@example.com>");
    opts.algorithm = Algorithm::Ed25519;
    opts.passphrase = Some("pw".into());
    let key = SecretKey::generate(&opts).unwrap();
    let file = gpg.path("release.key");
    key.write_new(&file).unwrap();
    gpg.gpg_ok(&["--passphrase", "pw", "--import", file.to_str().unwrap()]);
    let secret = String::from_utf8(gpg.gpg_ok(&["--with-colons", "--list-secret-keys"])).unwrap();
    assert!(secret.contains(&key.fingerprint()), "{secret}");
    // gpg signs with it, we verify.
    let data = gpg.write("data", DATA);
    let sig = gpg.path("data.sig");
    gpg.gpg_ok(&[
        "--passphrase",
        "pw",
        "-u",
        &key.fingerprint(),
        "--detach-sign",
        "-o",
        sig.to_str().unwrap(),
        data.to_str().unwrap(),
    ]);
    let v = key
        .public_keyring()
        .verify_detached(DATA, &std::fs::read(&sig).unwrap(), None)
        .unwrap();
    assert_eq!(v.fingerprint, key.fingerprint());
}
