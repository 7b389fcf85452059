//! `pipe verify`: signed manifest and provenance, every artifact checked
//! against them; GnuPG agrees with pipe's signatures; any tampering exits 3
//! and names what changed.

use std::path::{Path, PathBuf};
use std::process::Command;

use pipe_e2e::cli::Project;
use pipe_e2e::fixture::Demo;

/// The demo project, package `demo` as a .deb whose `demo.txt` says
/// `text`.
fn demo(text: &str) -> Demo {
    Demo::new().formats(&["deb"]).file("demo.txt", text)
}

/// A built project, its build directory and the exported keyring.
fn built() -> (Project, PathBuf, PathBuf) {
    let p = demo("demo\n").create();
    let doc = p.pipe(&["--json", "build"]).expect_code(0).json();
    p.pipe(&["keys", "export", "--out", "release.asc"])
        .expect_code(0);
    let dir = PathBuf::from(doc["dir"].as_str().unwrap());
    let ring = p.path().join("release.asc");
    (p, dir, ring)
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = at.min(bytes.len() - 1);
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_fresh_build_verifies() {
    let (p, _, ring) = built();
    let run = p.pipe(&["verify", "--keyring", ring.to_str().unwrap()]);
    run.expect_code(0);
    assert!(run.stdout.contains("ok  manifest.json"), "{}", run.stdout);
    assert!(run.stdout.contains("ok  provenance.json"), "{}", run.stdout);
    assert!(
        run.stdout.contains("ok  demo_1.0.0_all.deb"),
        "{}",
        run.stdout
    );
    let doc = p
        .pipe(&["--json", "verify", "--keyring", ring.to_str().unwrap()])
        .expect_code(0)
        .json();
    // Two signatures, the shards, the provenance's subjects, the artifact.
    assert_eq!(doc["checks"].as_array().unwrap().len(), 5, "{doc}");
    // What the signed records hold: the artifact with its blob's store key
    // (as `pipe build` named it), its inputs, and the shard that lists them
    // (its key names its digest, and its file is in the build directory).
    let built = p.pipe(&["--json", "build"]).expect_code(0).json();
    let artifacts = doc["artifacts"].as_array().unwrap();
    assert_eq!(artifacts.len(), 1, "{doc}");
    let a = &artifacts[0];
    assert_eq!(a["name"], "demo_1.0.0_all.deb");
    assert_eq!(a["kind"], "deb");
    assert_eq!(a["component"], "package demo");
    assert_eq!(a["store_key"], built["artifacts"][0]["store_key"], "{doc}");
    assert_eq!(a["sha256"], built["artifacts"][0]["sha256"], "{doc}");
    let inputs: Vec<&str> = doc["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert!(inputs.contains(&"demo.txt"), "{doc}");
    let shards = doc["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 1, "{doc}");
    let key = shards[0]["store_key"].as_str().unwrap();
    let blake3 = shards[0]["blake3"].as_str().unwrap();
    assert_eq!(key, format!("manifests/{}/{blake3}.json", &blake3[..2]));
    let dir = std::path::PathBuf::from(built["dir"].as_str().unwrap());
    let shard = std::fs::read(dir.join(key)).unwrap();
    assert_eq!(blake3::hash(&shard).to_hex().as_str(), blake3);
}

#[test]
fn gnupg_verifies_the_manifest_signature_and_provenance_is_slsa_v1() {
    let (_p, dir, ring) = built();
    let home = tempfile::tempdir().unwrap();
    let gpg = |args: &[&str]| {
        Command::new("gpg")
            .env("GNUPGHOME", home.path())
            .args(["--batch", "--no-tty"])
            .args(args)
            .output()
            .expect("gpg is installed by scripts/install-deps.sh test")
    };
    assert!(gpg(&["--import", ring.to_str().unwrap()]).status.success());
    for (sig, data) in [
        ("manifest.json.asc", "manifest.json"),
        ("provenance.json.asc", "provenance.json"),
    ] {
        let out = gpg(&[
            "--verify",
            dir.join(sig).to_str().unwrap(),
            dir.join(data).to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.contains("Good signature"),
            "gpg on {data}: {err}"
        );
    }
    let statement: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("provenance.json")).unwrap()).unwrap();
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    // The subject is the manifest shard that lists the package with its
    // digests (a statement of 20,000 packages names a few hundred shards).
    let shard_name = statement["subject"][0]["name"].as_str().unwrap();
    assert!(shard_name.starts_with("manifests/"), "{statement}");
    let shard_bytes = std::fs::read(dir.join(shard_name)).unwrap();
    assert_eq!(
        statement["subject"][0]["digest"]["sha256"],
        pipe_e2e::consumers::sha256_hex(&shard_bytes)
    );
    let shard: serde_json::Value = serde_json::from_slice(&shard_bytes).unwrap();
    assert_eq!(shard["artifacts"][0]["name"], "demo_1.0.0_all.deb");
    assert_eq!(
        shard["artifacts"][0]["blob"]["sha256"],
        pipe_e2e::consumers::sha256_hex(&std::fs::read(dir.join("demo_1.0.0_all.deb")).unwrap())
    );
    assert_eq!(shard["inputs"][0]["path"], "demo.txt");
    let def = &statement["predicate"]["buildDefinition"];
    assert!(def["buildType"].as_str().unwrap().starts_with("https://"));
    assert_eq!(
        def["externalParameters"]["pipeline"]["uri"],
        "file:pipeline.toml"
    );
    assert_eq!(
        def["resolvedDependencies"][0]["uri"],
        format!("file:{shard_name}")
    );
    let run = &statement["predicate"]["runDetails"];
    assert!(!run["builder"]["id"].as_str().unwrap().is_empty());
    assert_eq!(run["metadata"]["invocationId"].as_str().unwrap().len(), 32);
    assert!(
        run["metadata"]["startedOn"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
}

#[test]
fn a_tampered_artifact_names_the_artifact_and_both_digests() {
    let (p, dir, ring) = built();
    flip_byte(&dir.join("demo_1.0.0_all.deb"), 200);
    let run = p.pipe(&["verify", "--keyring", ring.to_str().unwrap()]);
    run.expect_code(3);
    assert!(
        run.stderr.contains("demo_1.0.0_all.deb: sha256: expected"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(", found "), "{}", run.stderr);
}

#[test]
fn a_tampered_manifest_or_provenance_fails_its_signature() {
    for file in ["manifest.json", "provenance.json"] {
        let (p, dir, ring) = built();
        flip_byte(&dir.join(file), 40);
        let run = p.pipe(&["verify", "--keyring", ring.to_str().unwrap()]);
        run.expect_code(3);
        assert!(
            run.stderr.contains(&format!("signature of {file}")),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn another_keyring_is_refused_naming_the_signer() {
    let (p, _, _) = built();
    let other = demo("demo\n").create();
    other
        .pipe(&["keys", "export", "--out", "other.asc"])
        .expect_code(0);
    let run = p.pipe(&[
        "verify",
        "--keyring",
        other.path().join("other.asc").to_str().unwrap(),
    ]);
    run.expect_code(3);
    assert!(
        run.stderr.contains("signature of manifest.json"),
        "{}",
        run.stderr
    );
    let fpr = p.pipe(&["--json", "keys", "list"]).expect_code(0).json()["keys"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        run.stderr.contains(&fpr),
        "names the unknown signer {fpr}: {}",
        run.stderr
    );
}

#[test]
fn a_missing_build_is_a_usage_error() {
    let (p, _, ring) = built();
    let run = p.pipe(&["verify", "9.9.9-0000", "--keyring", ring.to_str().unwrap()]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("no build `9.9.9-0000`"),
        "{}",
        run.stderr
    );
}

#[test]
fn rotation_keeps_old_builds_valid_and_a_retired_key_cannot_sign_anew() {
    let (p, old_dir, _) = built();
    // Revocation takes effect at the rotation's second; the old build was
    // signed strictly before it.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let old_key = p
        .pipe(&["--json", "keys", "rotate", "--algo", "ed25519", "--retire"])
        .expect_code(0)
        .json()["old_key_path"]
        .as_str()
        .unwrap()
        .to_string();
    p.write("demo.txt", "demo, version two\n");
    let new_dir = PathBuf::from(
        p.pipe(&["--json", "build"]).expect_code(0).json()["dir"]
            .as_str()
            .unwrap(),
    );
    p.pipe(&["keys", "export", "--out", "rotated.asc"])
        .expect_code(0);
    let ring = p.path().join("rotated.asc");
    let ring = ring.to_str().unwrap();

    // Both builds verify against the keyring with both keys.
    let old_id = old_dir.file_name().unwrap().to_str().unwrap();
    let new_id = new_dir.file_name().unwrap().to_str().unwrap();
    p.pipe(&["verify", old_id, "--keyring", ring])
        .expect_code(0);
    let run = p.pipe(&["verify", new_id, "--keyring", ring]);
    run.expect_code(0);

    // Someone still building with the retired key: what it signs now is
    // refused. (The revocation is dated a second after the rotation, so
    // that what the key signed in the rotation's own second stays valid.)
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let mut stale = demo("demo, stale\n").no_key().create();
    stale.env("PIPE_SIGNING_KEY", &old_key);
    stale.pipe(&["build"]).expect_code(0);
    let run = stale.pipe(&["verify", "--keyring", ring]);
    run.expect_code(3);
    assert!(run.stderr.contains("revoked"), "{}", run.stderr);
    assert!(run.stderr.contains("superseded"), "{}", run.stderr);
}

#[test]
fn an_expired_key_cannot_sign_a_build() {
    let p = demo("demo\n").no_key().create();
    p.pipe(&[
        "keys",
        "generate",
        "--uid",
        "Short <s@example.com>",
        "--algo",
        "ed25519",
        "--expires",
        "2s",
    ])
    .expect_code(0);
    let listed = p.pipe(&["--json", "keys", "list"]).expect_code(0).json();
    assert!(!listed["keys"][0]["expires"].is_null(), "{listed}");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let run = p.pipe(&["build"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("cannot sign with the project key"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("expired"), "{}", run.stderr);
    assert!(run.stderr.contains("pipe keys rotate"), "{}", run.stderr);
    assert!(!p.path().join(".pipe/builds/latest").exists());
}
