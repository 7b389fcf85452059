//! The consumer views of an environment run after its pointer moved, each
//! through one interface, and regenerations of one environment are
//! serialised by conditional writes on each view's state
//! (`views/ENV/VIEW.json`): a refresh racing a promotion never writes an
//! older view over a newer one. Two real processes, stopped at named points
//! (`PIPE_TEST_HOLD`) so the interleaving is the one under test.

use std::path::Path;

use pipe_e2e::cli::{Project, wait_for};
use pipe_e2e::fixture::Demo;
use pipe_e2e::s3::MotoServer;

fn project() -> Project {
    Demo::new().create()
}

/// The same project with its store in a moto bucket.
fn s3_project(server: &MotoServer) -> Project {
    Demo::new().s3(server, "store").create()
}

/// Reads `key` of the store: the local default store, or the bucket.
fn read_key(p: &Project, s3: Option<&MotoServer>, key: &str) -> Vec<u8> {
    match s3 {
        None => std::fs::read(p.path().join(".pipe/store").join(key)).unwrap(),
        Some(server) => tokio::runtime::Runtime::new().unwrap().block_on(async {
            let out = server
                .client()
                .get_object()
                .bucket(server.bucket())
                .key(format!("store/{key}"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("get {key}: {e}"));
            out.body.collect().await.unwrap().into_bytes().to_vec()
        }),
    }
}

fn release(p: &Project, version: &str) -> String {
    p.write("demo.txt", &format!("{version}\n"));
    p.release(version)
}

/// The state of `view` of dev: (entry, build, claimed).
fn state(p: &Project, view: &str) -> (u64, String, bool) {
    state_in(p, None, view)
}

fn state_in(p: &Project, s3: Option<&MotoServer>, view: &str) -> (u64, String, bool) {
    let bytes = read_key(p, s3, &format!("views/dev/{view}.json"));
    let s: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    (
        s["seq"].as_u64().unwrap(),
        s["build"].as_str().unwrap().to_string(),
        !s["claim"].is_null(),
    )
}

/// The version the apt suite and the yum repository of dev list.
fn listed(p: &Project) -> (String, String) {
    listed_in(p, None)
}

fn listed_in(p: &Project, s3: Option<&MotoServer>) -> (String, String) {
    let packages =
        String::from_utf8(read_key(p, s3, "dists/dev/main/binary-amd64/Packages")).unwrap();
    let version = packages
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap()
        .to_string();
    let repomd = String::from_utf8(read_key(p, s3, "yum/dev/repodata/repomd.xml")).unwrap();
    (version, repomd)
}

fn hold(dir: &Path, point: &str) -> String {
    format!("{point}={}", dir.display())
}

/// A refresh that read the pointer (entry 1) before a promotion moved it
/// (entry 2) and regenerated the views finds the newer views when it comes
/// to write, and writes nothing.
#[test]
fn a_refresh_racing_a_promotion_never_writes_an_older_view() {
    refresh_racing_a_promotion(&project(), None);
}

/// The same on S3, where the state's conditional writes are `If-Match` and
/// `If-None-Match` on PutObject.
#[test]
fn a_refresh_racing_a_promotion_never_writes_an_older_view_on_s3() {
    let server = MotoServer::start();
    refresh_racing_a_promotion(&s3_project(&server), Some(&server));
}

fn refresh_racing_a_promotion(p: &Project, s3: Option<&MotoServer>) {
    let state = |p: &Project, view: &str| state_in(p, s3, view);
    let listed = |p: &Project| listed_in(p, s3);
    let b1 = release(p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let b2 = release(p, "1.1.0");
    let holds = tempfile::tempdir().unwrap();

    let refresh = p.start(
        &["--json", "refresh", "--env", "dev"],
        &[(
            "PIPE_TEST_HOLD",
            &hold(holds.path(), "refresh-read-pointer"),
        )],
    );
    wait_for(&holds.path().join("refresh-read-pointer.reached"));
    // The refresh holds entry 1; the promotion moves dev to entry 2 and
    // regenerates every view.
    p.pipe(&["promote", &b2, "--to", "dev"]).expect_code(0);
    assert_eq!(state(p, "apt"), (2, b2.clone(), false));
    let (version, repomd) = listed(p);
    assert_eq!(version, "1.1.0");

    std::fs::write(holds.path().join("refresh-read-pointer.go"), b"").unwrap();
    let out = refresh.wait();
    out.expect_code(0);
    let doc = out.json();
    let views = doc["refreshed"][0]["views"].as_array().unwrap();
    assert_eq!(
        views.len(),
        4,
        "apt, yum, registry, machine pointers: {doc}"
    );
    for v in views {
        assert_eq!(v["status"], "superseded", "{doc}");
        assert_eq!(v["seq"], 2, "{doc}");
    }
    // Nothing older was written over the promotion's views.
    assert_eq!(state(p, "apt"), (2, b2.clone(), false));
    assert_eq!(state(p, "yum"), (2, b2.clone(), false));
    let (version_after, repomd_after) = listed(p);
    assert_eq!(version_after, "1.1.0");
    assert_eq!(repomd_after, repomd, "repomd.xml was rewritten");
}

/// A refresh that starts while a promotion is regenerating (it holds the
/// claim on the apt view) waits for it, then regenerates after it: the two
/// never write the same view at once, and the last word is the newest.
#[test]
fn a_refresh_waits_for_a_promotion_regenerating_the_same_view() {
    let p = project();
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let b2 = release(&p, "1.1.0");
    let holds = tempfile::tempdir().unwrap();

    let promote = p.start(
        &["--json", "promote", &b2, "--to", "dev"],
        &[("PIPE_TEST_HOLD", &hold(holds.path(), "view-claimed:apt"))],
    );
    wait_for(&holds.path().join("view-claimed-apt.reached"));
    // The promotion moved the pointer and claimed the apt view, but has
    // written none of its files yet.
    assert_eq!(state(&p, "apt"), (1, b1.clone(), true));
    let mut refresh = p.start(&["--json", "refresh", "--env", "dev"], &[]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        !refresh.exited(),
        "the refresh did not wait for the promotion's claim"
    );
    assert_eq!(state(&p, "apt"), (1, b1.clone(), true));

    std::fs::write(holds.path().join("view-claimed-apt.go"), b"").unwrap();
    let promoted = promote.wait();
    promoted.expect_code(0);
    let refreshed = refresh.wait();
    refreshed.expect_code(0);
    let doc = refreshed.json();
    for v in doc["refreshed"][0]["views"].as_array().unwrap() {
        assert_eq!(v["status"], "done", "{doc}");
    }
    assert_eq!(state(&p, "apt"), (2, b2.clone(), false));
    assert_eq!(state(&p, "yum"), (2, b2.clone(), false));
    assert_eq!(listed(&p).0, "1.1.0");
}

/// A claim left by a killed process does not block the next regeneration.
#[test]
fn a_claim_left_by_a_killed_promotion_is_taken_over() {
    let mut p = project();
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let b2 = release(&p, "1.1.0");
    p.env("PIPE_FAULT", "write:1");
    let out = p.pipe(&["promote", &b2, "--to", "dev"]);
    assert_eq!(out.code, 137, "{}", out.stderr);
    p.env("PIPE_FAULT", "none");
    assert_eq!(state(&p, "apt"), (1, b1.clone(), true));
    let started = std::time::Instant::now();
    p.pipe(&["promote", &b2, "--to", "dev"]).expect_code(0);
    assert!(started.elapsed().as_secs() < 30, "waited for a dead claim");
    assert_eq!(state(&p, "apt"), (2, b2.clone(), false));
    assert_eq!(listed(&p).0, "1.1.0");
}

/// A view that fails is reported (exit 1, naming it and `pipe refresh`),
/// does not undo the pointer nor stop the other views, and `pipe refresh`
/// completes it.
#[test]
fn a_failed_view_keeps_the_pointer_and_refresh_completes_it() {
    let p = project();
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let b2 = release(&p, "1.1.0");
    // The yum repository cannot be written: a file stands where its
    // directory goes.
    let yum = p.path().join(".pipe/store/yum/dev");
    std::fs::rename(&yum, p.path().join("yum-dev-moved")).unwrap();
    std::fs::write(&yum, b"in the way").unwrap();

    let out = p.pipe(&["--json", "promote", &b2, "--to", "dev"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("pipe refresh --env dev"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("yum"), "{}", out.stderr);
    let doc = out.json();
    assert_eq!(doc["moved"], true, "{doc}");
    let views = doc["repositories"]["views"].as_array().unwrap();
    assert_eq!(views[0]["view"], "apt-suite");
    assert_eq!(views[0]["status"], "done");
    assert_eq!(views[1]["view"], "yum-repository");
    assert_eq!(views[1]["status"], "failed");
    // The pointer stays; apt follows it; yum's state still names entry 1.
    let status = p.pipe(&["--json", "status"]).expect_code(0).json();
    let dev = status["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "dev")
        .unwrap()
        .clone();
    assert!(dev["build"].as_str().unwrap().starts_with(&b2), "{status}");
    assert_eq!(state(&p, "apt"), (2, b2.clone(), false));
    assert_eq!(state(&p, "yum"), (1, b1.clone(), false));

    std::fs::remove_file(&yum).unwrap();
    std::fs::rename(p.path().join("yum-dev-moved"), &yum).unwrap();
    p.pipe(&["refresh", "--env", "dev"]).expect_code(0);
    assert_eq!(state(&p, "yum"), (2, b2.clone(), false));
    let (_, repomd) = listed(&p);
    let primary = repomd
        .split("href=\"")
        .find_map(|s| {
            s.split('"')
                .next()
                .filter(|h| h.ends_with("-primary.xml.gz"))
        })
        .unwrap()
        .to_string();
    assert!(p.path().join(".pipe/store/yum/dev").join(&primary).exists());
}
