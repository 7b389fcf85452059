//! `pipe fsck` reads the whole store and finds what someone with write
//! access to it (or a failing disk) damaged: a blob, a deleted blob, a pool
//! file apt fetches, an index file of the apt suite, a forged history entry.
//! Each is exit 3 naming the key; `pipe fsck --repair` mends it from the
//! signed metadata and the local build directory; then fsck is clean and
//! apt reads the suite again. On the local store and on S3 (moto).
//! `pipe build` builds a stage again when the blob its cache record names
//! was lost or damaged.

use std::path::{Path, PathBuf};

use pipe_e2e::cli::Project;
use pipe_e2e::consumers::{Apt, HttpServer, text, try_run};
use pipe_e2e::fixture::{Demo, RSA_KEYRING};
use pipe_e2e::raw::RawStore;
use pipe_e2e::s3::MotoServer;

/// A project signing with RSA 3072 (what apt's gpgv verifies), and its
/// public key for apt.
fn project() -> (Project, PathBuf) {
    let p = Demo::new().rsa_key().create();
    let key = p.path().join(RSA_KEYRING);
    (p, key)
}

/// The store key of the artifact whose name ends with `suffix`, from what
/// `pipe --json build` printed.
fn blob_key(build: &serde_json::Value, suffix: &str) -> String {
    build["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"].as_str().unwrap().ends_with(suffix))
        .unwrap_or_else(|| panic!("no artifact named *{suffix} in {build}"))["store_key"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `pipe fsck` finds a problem of `kind` at `key` (exit 3), `--repair`
/// mends it (exit 0), and a second fsck is clean.
#[track_caller]
fn found_and_repaired(p: &Project, kind: &str, key: &str) {
    let run = p.pipe(&["--json", "fsck"]);
    run.expect_code(3);
    let doc = run.json();
    assert_eq!(doc["ok"], false, "{doc}");
    let problems = doc["report"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|pr| pr["kind"] == kind && pr["key"].as_str().unwrap().starts_with(key)),
        "no {kind} problem at {key}: {doc:#}"
    );
    assert!(
        problems
            .iter()
            .all(|pr| pr["repair"].as_str().unwrap().contains("pipe ")),
        "every problem names the command that repairs it: {doc:#}"
    );
    // The human form says it too, with the hint.
    let run = p.pipe(&["fsck"]);
    run.expect_code(3);
    assert!(run.stdout.contains(key), "{}", run.stdout);
    assert!(run.stderr.contains("pipe fsck --repair"), "{}", run.stderr);

    let run = p.pipe(&["--json", "fsck", "--repair"]);
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["ok"], true, "{doc:#}");
    p.pipe(&["fsck"]).expect_code(0);
}

/// apt-get update and download of `demo` from `url`, trusting `key`: the
/// downloaded bytes, or `None` when apt refused.
fn apt_download(dir: &Path, url: &str, key: &Path) -> Option<Vec<u8>> {
    let apt = Apt::new(dir.to_path_buf(), url, "dev", key);
    let out = apt.update();
    let t = text(&out);
    if !out.status.success() || t.contains("E:") {
        return None;
    }
    let out = try_run(apt.cmd("apt-get").args(["-q", "download", "demo"]));
    if !out.status.success() {
        return None;
    }
    let dl = apt.dir.join("download");
    let file = std::fs::read_dir(&dl).unwrap().next()?.unwrap().path();
    Some(std::fs::read(file).unwrap())
}

fn damage_detect_repair(p: &Project, raw: &RawStore, apt_url: &str, key: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    p.set_version("1.0.0");
    let built = p.pipe(&["--json", "build"]).expect_code(0).json();
    let build = built["build"].as_str().unwrap().to_string();
    p.pipe(&["publish", &build]).expect_code(0);
    p.pipe(&["promote", &build, "--to", "dev"]).expect_code(0);
    let doc = p.pipe(&["--json", "fsck"]).expect_code(0).json();
    let report = &doc["report"];
    assert_eq!(report["builds"], 1, "{doc}");
    assert_eq!(report["environments"], 1, "{doc}");
    assert_eq!(report["views"], 2, "apt and yum: {doc}");
    assert!(report["blobs"].as_u64().unwrap() >= 2, "{doc}");

    let deb = std::fs::read(
        std::fs::read_dir(p.path().join(".pipe/builds").join(&build))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        apt_download(&tmp.path().join("apt-0"), apt_url, key).as_deref(),
        Some(&deb[..])
    );

    // A damaged blob.
    let deb_blob = blob_key(&built, ".deb");
    raw.damage(&deb_blob);
    found_and_repaired(p, "damaged-blob", &deb_blob);
    assert_eq!(raw.get(&deb_blob).unwrap(), deb);

    // A deleted blob.
    let rpm_blob = blob_key(&built, ".rpm");
    raw.delete(&rpm_blob);
    found_and_repaired(p, "missing-blob", &rpm_blob);
    assert!(raw.get(&rpm_blob).is_some());

    // A damaged pool file: apt refuses it, then fetches it again.
    let pool = raw
        .keys("pool/")
        .into_iter()
        .find(|k| k.ends_with(".deb"))
        .unwrap();
    raw.damage(&pool);
    assert_eq!(
        apt_download(&tmp.path().join("apt-1"), apt_url, key),
        None,
        "apt-get took a damaged package"
    );
    found_and_repaired(p, "damaged-pool-file", &pool);
    assert_eq!(
        apt_download(&tmp.path().join("apt-2"), apt_url, key).as_deref(),
        Some(&deb[..])
    );

    // A damaged index file of the suite, plain and by hash.
    let by_hash: Vec<String> = raw
        .keys("dists/dev/main/binary-amd64/by-hash/")
        .into_iter()
        .collect();
    assert!(!by_hash.is_empty());
    for k in &by_hash {
        raw.damage(k);
    }
    assert_eq!(
        apt_download(&tmp.path().join("apt-3"), apt_url, key),
        None,
        "apt-get took a damaged index"
    );
    found_and_repaired(p, "view", "dists/dev/main/binary-amd64/by-hash/");
    raw.damage("dists/dev/main/binary-amd64/Packages");
    found_and_repaired(p, "view", "dists/dev/main/binary-amd64/Packages");
    assert_eq!(
        apt_download(&tmp.path().join("apt-4"), apt_url, key).as_deref(),
        Some(&deb[..])
    );

    // The yum repository: a package copy and a metadata file damaged.
    let copy = raw
        .keys("yum/dev/Packages/")
        .into_iter()
        .find(|k| k.ends_with(".rpm"))
        .unwrap();
    raw.damage(&copy);
    found_and_repaired(p, "damaged-pool-file", &copy);
    let primary = raw
        .keys("yum/dev/repodata/")
        .into_iter()
        .find(|k| k.ends_with("-primary.xml.gz"))
        .unwrap();
    raw.damage(&primary);
    found_and_repaired(p, "view", "yum/dev/repodata/");

    // A forged history entry (its signature no longer covers it).
    let entry_key = "envs/dev/history/00000001.json";
    let mut entry: serde_json::Value =
        serde_json::from_slice(&raw.get(entry_key).unwrap()).unwrap();
    entry["entry"]["actor"] = "mallory@example.com".into();
    raw.put(entry_key, &serde_json::to_vec_pretty(&entry).unwrap());
    found_and_repaired(p, "history", "envs/dev/history/");
    let restored: serde_json::Value = serde_json::from_slice(&raw.get(entry_key).unwrap()).unwrap();
    assert_ne!(restored["entry"]["actor"], "mallory@example.com");

    // A forged pointer: restored from the history, which still verifies.
    let pointer_key = "envs/dev/pointer.json";
    let good_pointer = raw.get(pointer_key).unwrap();
    let mut pointer: serde_json::Value = serde_json::from_slice(&good_pointer).unwrap();
    pointer["entry"]["actor"] = "mallory@example.com".into();
    raw.put(pointer_key, &serde_json::to_vec_pretty(&pointer).unwrap());
    found_and_repaired(p, "history", "envs/dev/history/");
    let restored: serde_json::Value =
        serde_json::from_slice(&raw.get(pointer_key).unwrap()).unwrap();
    assert_ne!(restored["entry"]["actor"], "mallory@example.com");
    assert_eq!(restored["entry"]["build"], build.as_str());

    // Intact: the repair changes nothing.
    let doc = p
        .pipe(&["--json", "fsck", "--repair"])
        .expect_code(0)
        .json();
    assert_eq!(
        doc["repaired"]["objects"].as_array().unwrap().len(),
        0,
        "{doc}"
    );
}

#[test]
fn fsck_finds_and_repairs_damage_on_a_local_store() {
    let (p, key) = project();
    let store = p.path().join(".pipe/store");
    std::fs::create_dir_all(&store).unwrap();
    let server = HttpServer::start(&store);
    let raw = RawStore::local(&store);
    damage_detect_repair(&p, &raw, &server.url(), &key);

    // A blob lost when no build directory holds it any more: not repaired
    // (and said so, exit 3), until a deploy target's cache is given.
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().to_string_lossy().into_owned();
    let ring = key.to_string_lossy().into_owned();
    p.pipe(&[
        "deploy",
        "--env",
        "dev",
        "--target",
        &dir,
        "--keyring",
        &ring,
    ])
    .expect_code(0);
    let cached = std::fs::read_dir(target.path().join(".pipe/cache/blobs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    let lost = format!("blobs/blake3/{}/{cached}", &cached[..2]);
    let bytes = raw.get(&lost).unwrap();
    raw.delete(&lost);
    std::fs::rename(
        p.path().join(".pipe/builds"),
        p.path().join("builds-elsewhere"),
    )
    .unwrap();
    let run = p.pipe(&["fsck", "--repair"]);
    run.expect_code(3);
    assert!(run.stdout.contains("not repaired"), "{}", run.stdout);
    assert!(run.stdout.contains("--from DIR"), "{}", run.stdout);
    assert!(
        run.stderr.contains("remain after the repair"),
        "{}",
        run.stderr
    );
    // A cache file that is not what it is named after is not believed.
    let cache_file = target.path().join(".pipe/cache/blobs").join(&cached);
    let good = std::fs::read(&cache_file).unwrap();
    std::fs::write(&cache_file, b"forged").unwrap();
    p.pipe(&["fsck", "--repair", "--from", &dir]).expect_code(3);
    assert!(raw.get(&lost).is_none());
    std::fs::write(&cache_file, &good).unwrap();
    p.pipe(&["fsck", "--repair", "--from", &dir]).expect_code(0);
    assert_eq!(raw.get(&lost).unwrap(), bytes);
    p.pipe(&["fsck"]).expect_code(0);
}

#[test]
fn fsck_finds_and_repairs_damage_on_s3() {
    let server = MotoServer::start();
    let (mut p, key) = project();
    for (k, v) in server.env() {
        p.env(&k, &v);
    }
    p.env("PIPE_STORE", &format!("s3://{}/repo", server.bucket()));
    server.allow_anonymous_read();
    let base = format!("{}/{}/repo/", server.endpoint(), server.bucket());
    damage_detect_repair(&p, &RawStore::s3(&server, "repo"), &base, &key);
}

/// `pipe build` with nothing changed restores from the cache; when the
/// store lost the blob a cache record names, or holds other bytes, the
/// stage is built again and the blob stored again over the damaged copy
/// (instead of failing "not in the store" or "corrupt").
#[test]
fn build_rebuilds_a_stage_whose_stored_blob_is_missing_or_damaged() {
    let (p, _key) = project();
    let store = p.path().join(".pipe/store");
    let raw = RawStore::local(&store);
    let built = p.pipe(&["--json", "build"]).expect_code(0).json();
    let build = built["build"].as_str().unwrap().to_string();
    let blob = blob_key(&built, ".deb");
    let good = raw.get(&blob).unwrap();
    for (what, damage) in [
        ("deleted", Box::new(|| raw.delete(&blob)) as Box<dyn Fn()>),
        ("damaged", Box::new(|| raw.damage(&blob))),
    ] {
        damage();
        let run = p.pipe(&["--json", "build"]);
        run.expect_code(0);
        let doc = run.json();
        assert_eq!(doc["build"], build.as_str(), "{what}: the same build");
        assert_eq!(raw.get(&blob).unwrap(), good, "{what}: stored again");
        let again = p.pipe(&["--json", "build"]).expect_code(0).json();
        assert!(
            again["artifacts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["cache"] == "hit"),
            "{what}: restored from the cache afterwards: {again}"
        );
    }
    p.pipe(&["fsck"]).expect_code(0);
}
