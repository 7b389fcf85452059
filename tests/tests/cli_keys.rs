//! `pipe keys`: generate, export for apt/rpm/gpg, list, rotate; and the errors
//! an operator meets with the wrong key file.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use pipe_e2e::cli::Project;

const PIPELINE: &str = r#"[project]
name = "demo"
version = "1.0.0"

[signing]
key = "keys/release.key"
"#;

fn project() -> Project {
    let p = Project::new();
    p.write("pipeline.toml", PIPELINE);
    p
}

fn gpg(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--batch", "--no-tty"])
        .args(args)
        .output()
        .expect("gpg is installed by scripts/install-deps.sh test")
}

#[test]
fn generate_writes_a_0600_rsa_key_and_never_overwrites() {
    let p = project();
    let doc = p
        .pipe(&[
            "--json",
            "keys",
            "generate",
            "--uid",
            "Release <release@example.com>",
        ])
        .expect_code(0)
        .json();
    assert_eq!(doc["key"]["algorithm"], "rsa4096");
    let key = p.path().join("keys/release.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = std::fs::read(&key).unwrap();

    let again = p.pipe(&["keys", "generate", "--uid", "Other <o@example.com>"]);
    again.expect_code(2);
    assert!(
        again.stderr.contains("refusing to overwrite"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);

    // gpg imports the armored export and sees the same fingerprint.
    let fpr = doc["key"]["fingerprint"].as_str().unwrap().to_string();
    let armored = p
        .pipe(&["keys", "export", "--armor"])
        .expect_code(0)
        .stdout
        .clone();
    assert!(
        armored.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"),
        "{armored}"
    );
    assert!(!armored.contains("PRIVATE"), "{armored}");
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("release.asc"), &armored).unwrap();
    let import = gpg(
        home.path(),
        &[
            "--import",
            home.path().join("release.asc").to_str().unwrap(),
        ],
    );
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let listed = gpg(home.path(), &["--with-colons", "--fingerprint"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&fpr));

    // The binary export is what apt's signed-by= takes: gpgv accepts it as a keyring.
    p.pipe(&["keys", "export", "--binary", "--out", "release.gpg"])
        .expect_code(0);
    let bin = std::fs::read(p.path().join("release.gpg")).unwrap();
    assert!(
        !bin.starts_with(b"-----"),
        "binary export must not be armored"
    );
    let gpgv = Command::new("gpgv")
        .args([
            "--keyring",
            p.path().join("release.gpg").to_str().unwrap(),
            "/dev/null",
        ])
        .output()
        .expect("gpgv");
    // No signature given: gpgv fails, but must have read the keyring without complaint.
    assert!(
        !String::from_utf8_lossy(&gpgv.stderr).contains("keyblock resource"),
        "{}",
        String::from_utf8_lossy(&gpgv.stderr)
    );
}

#[test]
fn passphrase_protected_keys() {
    let mut p = project();
    p.env("PIPE_SIGNING_PASSPHRASE", "correct horse");
    p.pipe(&[
        "keys",
        "generate",
        "--uid",
        "R <r@example.com>",
        "--algo",
        "ed25519",
    ])
    .expect_code(0);
    let text = std::fs::read_to_string(p.path().join("keys/release.key")).unwrap();
    assert!(text.contains("PRIVATE KEY BLOCK"), "{text}");
    p.pipe(&["keys", "list"]).expect_code(0);

    let mut wrong = project();
    wrong.write("keys/release.key", &text);
    wrong.env("PIPE_SIGNING_PASSPHRASE", "battery staple");
    let run = wrong.pipe(&["keys", "list"]);
    run.expect_code(2);
    assert!(
        run.stderr.to_lowercase().contains("passphrase"),
        "{}",
        run.stderr
    );

    let none = project();
    none.write("keys/release.key", &text);
    let run = none.pipe(&["keys", "export"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("PIPE_SIGNING_PASSPHRASE"),
        "{}",
        run.stderr
    );
}

#[test]
fn wrong_key_files_are_clear_errors() {
    let p = project();
    p.pipe(&[
        "keys",
        "generate",
        "--uid",
        "R <r@example.com>",
        "--algo",
        "ed25519",
    ])
    .expect_code(0);
    let public = p.pipe(&["keys", "export"]).expect_code(0).stdout.clone();

    let q = project();
    q.write("keys/release.key", &public);
    let run = q.pipe(&["keys", "export"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("holds only the public key"),
        "{}",
        run.stderr
    );

    let full = std::fs::read_to_string(p.path().join("keys/release.key")).unwrap();
    q.write("keys/release.key", &full[..full.len() / 2]);
    let run = q.pipe(&["keys", "list"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("is not a usable OpenPGP key file"),
        "{}",
        run.stderr
    );

    let missing = project();
    let run = missing.pipe(&["keys", "export"]);
    run.expect_code(2);
    assert!(run.stderr.contains("no signing key at"), "{}", run.stderr);
    assert!(run.stderr.contains("pipe keys generate"), "{}", run.stderr);
}

#[test]
fn rotate_keeps_the_old_key_and_publishes_both() {
    let p = project();
    let old = p
        .pipe(&[
            "--json",
            "keys",
            "generate",
            "--uid",
            "R <r@example.com>",
            "--algo",
            "ed25519",
        ])
        .expect_code(0)
        .json()["key"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let doc = p
        .pipe(&["--json", "keys", "rotate", "--algo", "ed25519", "--retire"])
        .expect_code(0)
        .json();
    let new = doc["new_key"]["fingerprint"].as_str().unwrap().to_string();
    assert_ne!(old, new);
    assert_eq!(doc["new_key"]["certified_by"][0], old.as_str());
    let retired = doc["old_key_path"].as_str().unwrap();
    assert!(
        std::path::Path::new(retired).exists(),
        "old key kept at {retired}"
    );

    // The keyring in the store and the export both hold both keys.
    let stored = std::fs::read(p.path().join(".pipe/store/keys/keyring.asc")).unwrap();
    let ring = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ring.path(), &stored).unwrap();
    let listed = p
        .pipe(&[
            "--json",
            "keys",
            "list",
            "--keyring",
            ring.path().to_str().unwrap(),
        ])
        .expect_code(0)
        .json();
    let fprs: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["fingerprint"].as_str().unwrap())
        .collect();
    assert!(
        fprs.contains(&old.as_str()) && fprs.contains(&new.as_str()),
        "{fprs:?}"
    );
    let revoked = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["fingerprint"] == old.as_str())
        .unwrap();
    assert!(
        revoked["revoked"]["reason"]
            .as_str()
            .unwrap()
            .contains("superseded"),
        "{revoked}"
    );

    let export = p.pipe(&["--json", "keys", "export"]).expect_code(0).json();
    assert_eq!(export["keys"].as_array().unwrap().len(), 2, "{export}");
}
