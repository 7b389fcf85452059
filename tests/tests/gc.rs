//! `pipe gc`: what no pointer, kept history entry, view or young object
//! refers to is deleted, with sizes; what is referenced still deploys and
//! rolls back afterwards; a dry run deletes nothing; a publish or promote
//! running at the same time (another process) loses nothing; unfinished
//! uploads a killed publish left are aborted; a gc killed at random moments
//! or cut off from its S3 server leaves nothing dangling and the rerun
//! completes; a local store on a full disk fails cleanly. Both backends.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pipe_e2e::cli::{Project, Run, pipe_bin, wait_for};
use pipe_e2e::fixture::Demo;
use pipe_e2e::proxy::StoppingProxy;
use pipe_e2e::s3::MotoServer;
use pipeline::store::{OpenOptions, Store, StoreUrl, Upload};

/// `gc_grace` is 3 s here: publishes of these small builds take well
/// under it, and tests wait it out to make objects old.
const GRACE: Duration = Duration::from_secs(3);

/// The project: `dev` and `prod`, package `demo` (deb and rpm), objects
/// old after 3 s, the store given by `url` (a `[store]` line) if any.
fn demo(url: Option<&str>) -> Demo {
    let demo = Demo::new()
        .store("gc_grace = \"3s\"")
        .env("prod", Some("dev"))
        .file("demo.txt", "zero\n")
        .file("extra.txt", "extra\n");
    match url {
        Some(line) => demo.store(line),
        None => demo,
    }
}

const EXTRA: &str = r#"
[packages.extra]
summary = "Extra"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb"]
files = [{ src = "extra.txt", dst = "/usr/share/extra/extra.txt" }]
"#;

const BIG: &str = r#"
[packages.big]
summary = "Big"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb"]
compression = "none"
files = [{ src = "big.bin", dst = "/usr/share/big/big.bin" }]
"#;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Local,
    S3,
}

struct Setup {
    p: Project,
    ring: String,
    server: Option<MotoServer>,
    url: StoreUrl,
    rt: tokio::runtime::Runtime,
    targets: tempfile::TempDir,
}

impl Setup {
    fn new(backend: Backend) -> Setup {
        Self::with_store(backend, None)
    }

    /// A project whose store is `local_store` (a directory) when given.
    fn with_store(backend: Backend, local_store: Option<&Path>) -> Setup {
        let server = (backend == Backend::S3).then(MotoServer::start);
        let line = match (&server, local_store) {
            (Some(s), _) => Some(format!("url = \"s3://{}/demo\"", s.bucket())),
            (None, Some(dir)) => Some(format!("url = \"{}\"", dir.display())),
            (None, None) => None,
        };
        let p = demo(line.as_deref()).create();
        let url = match (&server, local_store) {
            (Some(s), _) => s.store_url("demo"),
            (None, Some(dir)) => StoreUrl::Local(dir.to_path_buf()),
            (None, None) => StoreUrl::Local(p.path().join(".pipe/store")),
        };
        let ring = p.keyring();
        let mut s = Setup {
            p,
            ring,
            server,
            url,
            rt: tokio::runtime::Runtime::new().unwrap(),
            targets: tempfile::tempdir().unwrap(),
        };
        if let Some(server) = &s.server {
            for (k, v) in server.env() {
                s.p.env(&k, &v);
            }
        }
        s
    }

    fn toml(&self) -> String {
        std::fs::read_to_string(self.p.path().join("pipeline.toml")).unwrap()
    }

    /// Builds version `version` with `content`; returns the build id.
    fn build(&self, version: &str, content: &str) -> String {
        self.p.write("demo.txt", content);
        self.p.build(version)
    }

    fn publish(&self, build: &str) {
        self.p.pipe(&["publish", build]).expect_code(0);
    }

    fn promote(&self, build: &str, env: &str) {
        self.p.pipe(&["promote", build, "--to", env]).expect_code(0);
    }

    /// Built, published and promoted to dev.
    fn release(&self, version: &str, content: &str) -> String {
        let b = self.build(version, content);
        self.publish(&b);
        self.promote(&b, "dev");
        b
    }

    /// Builds version `version` against another store than the project's
    /// (a build stores its artifacts too), so a publish uploads them.
    fn build_elsewhere(&self, version: &str) -> String {
        self.p.set_version(version);
        let elsewhere = self.targets.path().join(format!("store-{version}"));
        self.p
            .pipe(&["--json", "--store", elsewhere.to_str().unwrap(), "build"])
            .expect_code(0)
            .json()["build"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Built and published, never promoted: garbage once the grace passed.
    fn garbage(&self, version: &str, content: &str) -> String {
        let b = self.build(version, content);
        self.publish(&b);
        b
    }

    /// Deploys `env` into a new target directory: every blob of its build
    /// is fetched from the store and verified against the keyring.
    fn deploy(&self, env: &str) -> Run {
        let dir = tempfile::tempdir_in(self.targets.path()).unwrap();
        let dir = dir.keep();
        self.p.pipe(&[
            "deploy",
            "--env",
            env,
            "--target",
            dir.to_str().unwrap(),
            "--keyring",
            &self.ring,
        ])
    }

    fn gc(&self, args: &[&str]) -> Run {
        let mut all = vec!["--json", "gc"];
        all.extend_from_slice(args);
        self.p.pipe(&all)
    }

    fn store(&self) -> Store {
        let ov = self
            .server
            .as_ref()
            .map(|s| s.overrides())
            .unwrap_or_default();
        self.rt
            .block_on(Store::open_with(&self.url, &OpenOptions::default(), &ov))
            .unwrap()
    }

    /// Every key in the store, with its size.
    fn objects(&self) -> BTreeMap<String, u64> {
        let store = self.store();
        self.rt
            .block_on(store.list(""))
            .unwrap()
            .into_iter()
            .map(|m| (m.key, m.size))
            .collect()
    }

    fn uploads(&self) -> Vec<Upload> {
        let store = self.store();
        self.rt.block_on(store.uploads()).unwrap()
    }

    /// The blob keys the build's signed manifest names (its artifacts,
    /// listed in the manifest's shards; `pipe --json verify` of the local
    /// build lists each with its store key).
    fn blobs_of(&self, build: &str) -> BTreeSet<String> {
        let run = self
            .p
            .pipe(&["--json", "verify", build, "--keyring", &self.ring]);
        run.expect_code(0);
        run.json()["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["store_key"].as_str().unwrap().to_string())
            .collect()
    }

    fn wait_grace(&self) {
        std::thread::sleep(GRACE + Duration::from_millis(600));
    }
}

fn removed_builds(doc: &serde_json::Value) -> BTreeSet<String> {
    doc["report"]["removed_builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().to_string())
        .collect()
}

fn removed_keys(doc: &serde_json::Value, class: &str) -> Vec<String> {
    doc["report"]["removed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["class"] == class)
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect()
}

fn has_build(objects: &BTreeMap<String, u64>, build: &str) -> bool {
    objects
        .keys()
        .any(|k| k.starts_with(&format!("builds/{build}/")))
}

fn keeps_what_is_referenced_and_deletes_the_rest(backend: Backend) {
    let s = Setup::new(backend);
    let b1 = s.release("1.0.0", "one\n"); // dev entry 1
    let b2 = s.release("1.0.1", "two\n"); // dev entry 2
    s.promote(&b2, "prod"); // prod entry 1
    let b3 = s.garbage("1.0.2", "three\n"); // never promoted
    let b4 = s.release("1.0.3", "four\n"); // dev entry 3
    s.wait_grace();

    // A dry run reports, with sizes, and deletes nothing.
    let before = s.objects();
    let dry = s.gc(&["--dry-run", "--keep-history", "2"]);
    dry.expect_code(0);
    let dry = dry.json();
    assert_eq!(dry["report"]["dry_run"], true);
    assert_eq!(
        removed_builds(&dry),
        BTreeSet::from([b1.clone(), b3.clone()]),
        "{dry}"
    );
    assert!(dry["report"]["bytes"].as_u64().unwrap() > 0, "{dry}");
    assert_eq!(s.objects(), before, "a dry run deleted something");
    let human = s.p.pipe(&["gc", "--dry-run", "--keep-history", "2"]);
    human.expect_code(0);
    assert!(
        human.stdout.contains("would delete blob") && human.stdout.contains(" B "),
        "{}",
        human.stdout
    );
    assert_eq!(s.objects(), before, "a dry run deleted something");

    let run = s.gc(&["--keep-history", "2"]);
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(
        removed_builds(&doc),
        BTreeSet::from([b1.clone(), b3.clone()])
    );
    let after = s.objects();
    for r in doc["report"]["removed"].as_array().unwrap() {
        let key = r["key"].as_str().unwrap();
        assert!(!after.contains_key(key), "{key} was reported deleted");
        assert_eq!(r["size"].as_u64(), before.get(key).copied(), "{key}");
    }
    // What the dry run announced is what went.
    let listed = |d: &serde_json::Value| -> Vec<(String, String, u64)> {
        d["report"]["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["class"].as_str().unwrap().to_string(),
                    r["key"].as_str().unwrap().to_string(),
                    r["size"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(listed(&doc), listed(&dry));
    assert!(!has_build(&after, &b1) && !has_build(&after, &b3));
    assert!(has_build(&after, &b2) && has_build(&after, &b4));
    for class in ["build-record", "pool-file", "blob"] {
        assert!(!removed_keys(&doc, class).is_empty(), "no {class}: {doc}");
    }
    assert!(
        !after.contains_key("pool/main/d/demo/demo_1.0.0_all.deb")
            && after.contains_key("pool/main/d/demo/demo_1.0.3_all.deb"),
        "{after:?}"
    );
    for b in [&b2, &b4] {
        for blob in s.blobs_of(b) {
            assert!(after.contains_key(&blob), "{blob} of kept build {b}");
        }
    }
    // Pointers, history, version records and view states stay.
    for key in before
        .keys()
        .filter(|k| k.starts_with("envs/") || k.starts_with("packages/") || k.starts_with("views/"))
    {
        assert!(after.contains_key(key), "{key}");
    }

    // The kept builds deploy, and rollback reaches the kept entry.
    s.deploy("dev").expect_code(0);
    s.deploy("prod").expect_code(0);
    let back = s.p.pipe(&["--json", "rollback", "--env", "dev"]);
    back.expect_code(0);
    assert!(back.stdout.contains(&b2), "{}", back.stdout);
    s.deploy("dev").expect_code(0);
    // Nothing more to collect.
    let again = s.gc(&["--keep-history", "2"]);
    again.expect_code(0);
    assert_eq!(again.json()["report"]["removed"], serde_json::json!([]));
}

#[test]
fn gc_keeps_what_is_referenced_and_deletes_the_rest_local() {
    keeps_what_is_referenced_and_deletes_the_rest(Backend::Local);
}

#[test]
fn on_s3_gc_keeps_what_is_referenced_and_deletes_the_rest() {
    keeps_what_is_referenced_and_deletes_the_rest(Backend::S3);
}

/// A publish stopped after its blobs and before its manifest (another
/// process) reuses the blob of a build that is garbage and uploads a new
/// one; a gc run meanwhile keeps both (the reused one because the publish
/// freshened it), and the publish then completes into a deployable build.
fn keeps_the_blobs_of_a_running_publish(backend: Backend) {
    let s = Setup::new(backend);
    s.release("1.0.0", "zero\n");
    let garbage = s.garbage("1.0.1", "one\n");
    let reused = s.blobs_of(&garbage);
    s.wait_grace();

    // The same package bytes in a new build (pipeline.toml changed
    // elsewhere), plus a new package.
    s.p.write("pipeline.toml", &format!("{}{EXTRA}", s.toml()));
    let next = s.build("1.0.1", "one\n");
    assert_ne!(next, garbage);
    let hold = tempfile::tempdir().unwrap();
    let spec = format!("publish-before-manifest={}", hold.path().display());
    let publish =
        s.p.start(&["publish", &next], &[("PIPE_TEST_HOLD", spec.as_str())]);
    wait_for(&hold.path().join("publish-before-manifest.reached"));

    let run = s.gc(&[]);
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(
        removed_builds(&doc),
        BTreeSet::from([garbage.clone()]),
        "{doc}"
    );
    let objects = s.objects();
    for blob in &reused {
        if blob.contains("rpm") {
            continue;
        }
        assert!(
            objects.contains_key(blob),
            "the reused blob {blob} was deleted under a running publish: {doc}"
        );
    }

    std::fs::write(hold.path().join("publish-before-manifest.go"), b"").unwrap();
    publish.wait().expect_code(0);
    for blob in s.blobs_of(&next) {
        assert!(s.objects().contains_key(&blob), "{blob}");
    }
    s.promote(&next, "dev");
    s.deploy("dev").expect_code(0);
}

#[test]
fn gc_keeps_the_blobs_of_a_running_publish_local() {
    keeps_the_blobs_of_a_running_publish(Backend::Local);
}

#[test]
fn on_s3_gc_keeps_the_blobs_of_a_running_publish() {
    keeps_the_blobs_of_a_running_publish(Backend::S3);
}

/// A promotion (another process) of a build that is garbage, while gc is
/// stopped after listing (`gc-listed`) or right before deleting
/// (`gc-deleting`): the build stays, and deploys.
fn keeps_a_build_promoted_during_gc(backend: Backend, point: &str) {
    let s = Setup::new(backend);
    s.release("1.0.0", "zero\n");
    let target = s.garbage("1.0.1", "one\n");
    let other = s.garbage("1.0.2", "two\n");
    s.wait_grace();

    let hold = tempfile::tempdir().unwrap();
    let spec = format!("{point}={}", hold.path().display());
    let gc =
        s.p.start(&["--json", "gc"], &[("PIPE_TEST_HOLD", spec.as_str())]);
    wait_for(&hold.path().join(format!("{point}.reached")));
    s.promote(&target, "dev");
    std::fs::write(hold.path().join(format!("{point}.go")), b"").unwrap();
    let run = gc.wait();
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(removed_builds(&doc), BTreeSet::from([other]), "{doc}");
    assert!(
        doc["report"]["kept_builds"][&target]
            .as_str()
            .unwrap()
            .contains("pointer of `dev`"),
        "{doc}"
    );
    for blob in s.blobs_of(&target) {
        assert!(s.objects().contains_key(&blob), "{blob}");
    }
    s.deploy("dev").expect_code(0);
}

#[test]
fn gc_keeps_a_build_promoted_after_it_listed_local() {
    keeps_a_build_promoted_during_gc(Backend::Local, "gc-listed");
}

#[test]
fn gc_keeps_a_build_promoted_right_before_it_deletes_local() {
    keeps_a_build_promoted_during_gc(Backend::Local, "gc-deleting");
}

#[test]
fn on_s3_gc_keeps_a_build_promoted_after_it_listed() {
    keeps_a_build_promoted_during_gc(Backend::S3, "gc-listed");
}

#[test]
fn on_s3_gc_keeps_a_build_promoted_right_before_it_deletes() {
    keeps_a_build_promoted_during_gc(Backend::S3, "gc-deleting");
}

/// Deterministic bytes that no compressor shrinks.
fn noise(path: &Path, len: usize, seed: u64) {
    let mut x = seed | 1;
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    buf.truncate(len);
    std::fs::write(path, buf).unwrap();
}

/// A `pipe` process whose pid the test can kill.
fn spawn_pipe(s: &Setup, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    Command::new(pipe_bin())
        .arg("-C")
        .arg(s.p.path())
        .args(args)
        .envs(s.server.as_ref().map(|srv| srv.env()).unwrap_or_default())
        .envs(env.iter().copied())
        .env_remove("PIPE_STORE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn kill9(child: &mut std::process::Child) -> bool {
    let running = child.try_wait().unwrap().is_none();
    // SAFETY: kill(2) on the pid of a child we have not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    running
}

/// A publish killed (`SIGKILL`) in the middle of uploading a large blob
/// leaves an upload (S3: a multipart upload; local: a temporary file); gc
/// keeps it within the grace period, aborts it after, and the publish run
/// again completes.
fn aborts_the_uploads_a_killed_publish_left(backend: Backend) {
    let s = Setup::new(backend);
    s.release("1.0.0", "zero\n");
    s.p.write("pipeline.toml", &format!("{}{BIG}", s.toml()));
    noise(&s.p.path().join("big.bin"), 160 << 20, 7);
    let big = s.build_elsewhere("1.1.0");

    let mut publish = spawn_pipe(&s, &["publish", &big], &[]);
    let tmp = s.p.path().join(".pipe/store/.tmp");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let started = match backend {
            Backend::S3 => !s.uploads().is_empty(),
            Backend::Local => std::fs::read_dir(&tmp).is_ok_and(|d| {
                d.flatten()
                    .any(|e| e.metadata().is_ok_and(|m| m.len() > (8 << 20)))
            }),
        };
        if started {
            break;
        }
        assert!(
            publish.try_wait().unwrap().is_none(),
            "the publish ended before its upload was seen"
        );
        assert!(Instant::now() < deadline, "no upload started");
        std::thread::sleep(Duration::from_millis(if backend == Backend::S3 {
            20
        } else {
            1
        }));
    }
    assert!(kill9(&mut publish), "the publish was still running");
    let left = s.uploads();
    assert!(!left.is_empty(), "the killed publish left no upload");
    let bytes_left: u64 = left.iter().map(|u| u.size).sum();

    // Young: kept. (moto reports every upload as started in 2010 and
    // answers ListParts with XML the SDK cannot read, so on it an upload's
    // age is not known and this cannot be checked.)
    if backend == Backend::Local {
        let run = s.gc(&[]);
        run.expect_code(0);
        assert!(removed_keys(&run.json(), "upload").is_empty());
        assert_eq!(s.uploads().len(), left.len());
    }

    // Uploads' ages are whole seconds (S3's listing): a second more.
    s.wait_grace();
    std::thread::sleep(Duration::from_secs(1));
    let run = s.gc(&[]);
    run.expect_code(0);
    let doc = run.json();
    let aborted = removed_keys(&doc, "upload");
    assert_eq!(aborted.len(), left.len(), "{doc}");
    let sizes: u64 = doc["report"]["removed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["class"] == "upload")
        .map(|r| r["size"].as_u64().unwrap())
        .sum();
    assert_eq!(sizes, bytes_left, "{doc}");
    if backend == Backend::Local {
        assert!(sizes > 0, "{doc}");
    }
    assert!(s.uploads().is_empty(), "{:?}", s.uploads());
    let human = s.p.pipe(&["gc"]);
    human.expect_code(0);

    s.publish(&big);
    s.promote(&big, "dev");
    s.deploy("dev").expect_code(0);
}

#[test]
fn gc_removes_the_temporary_files_a_killed_publish_left_local() {
    aborts_the_uploads_a_killed_publish_left(Backend::Local);
}

#[test]
fn on_s3_gc_aborts_the_multipart_uploads_a_killed_publish_left() {
    aborts_the_uploads_a_killed_publish_left(Backend::S3);
}

/// The S3 server goes away (the endpoint gc talks to stops answering)
/// after gc deleted the records and pool files, before the blobs: gc fails within its deadline naming the
/// endpoint and the operation, everything referenced still deploys, and gc
/// run again completes.
#[test]
fn on_s3_a_server_stopped_in_the_middle_of_gc_loses_nothing_referenced() {
    let s = Setup::new(Backend::S3);
    let server = s.server.as_ref().unwrap();
    s.release("1.0.0", "zero\n");
    let b1 = s.release("1.0.1", "one\n");
    s.promote(&b1, "prod");
    let g1 = s.garbage("1.0.2", "two\n");
    let g2 = s.garbage("1.0.3", "three\n");
    s.wait_grace();

    let proxy = StoppingProxy::start(server.addr(), u64::MAX);
    let hold = tempfile::tempdir().unwrap();
    let spec = format!("gc-deleting-blobs={}", hold.path().display());
    let endpoint = proxy.endpoint();
    let gc = s.p.start(
        &[
            "gc",
            "--timeout",
            "5s",
            "--attempts",
            "2",
            "--connect-timeout",
            "1s",
        ],
        &[
            ("PIPE_TEST_HOLD", spec.as_str()),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ],
    );
    wait_for(&hold.path().join("gc-deleting-blobs.reached"));
    drop(proxy);
    let stopped = Instant::now();
    std::fs::write(hold.path().join("gc-deleting-blobs.go"), b"").unwrap();
    let run = gc.wait();
    run.expect_code(1);
    assert!(
        stopped.elapsed() < Duration::from_secs(30),
        "gc took {:?} after the server stopped",
        stopped.elapsed()
    );
    assert!(run.stderr.contains(&endpoint), "{}", run.stderr);
    assert!(run.stderr.contains("DeleteObject"), "{}", run.stderr);

    s.deploy("dev").expect_code(0);
    s.deploy("prod").expect_code(0);
    let again = s.gc(&[]);
    again.expect_code(0);
    let objects = s.objects();
    assert!(!has_build(&objects, &g1) && !has_build(&objects, &g2));
    let last = s.gc(&[]);
    last.expect_code(0);
    assert_eq!(last.json()["report"]["removed"], serde_json::json!([]));
    s.deploy("dev").expect_code(0);
    s.deploy("prod").expect_code(0);
}

/// A small deterministic generator, so a failing run can be repeated
/// (`PIPE_TEST_SEED`).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

fn copy_tree(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let ok = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a {} {}", from.display(), to.display());
}

/// `kill -9` at random moments of `pipe gc`, at least 50 times, each on the
/// same store full of garbage: after each, both environments deploy (every
/// blob of their builds fetched and verified), the kept history entry's
/// build is still whole, and gc run again completes.
#[test]
fn gc_killed_at_random_moments_leaves_everything_referenced_local() {
    let seed: u64 = std::env::var("PIPE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16_003);
    eprintln!("PIPE_TEST_SEED={seed}");
    let mut rng = Rng(seed);
    let s = Setup::new(Backend::Local);
    let b0 = s.release("1.0.0", "zero\n");
    let b1 = s.release("1.0.1", "one\n");
    s.promote(&b1, "prod");
    let mut garbage = Vec::new();
    for i in 0..6 {
        garbage.push(s.garbage(&format!("1.1.{i}"), &format!("garbage {i}\n")));
    }
    s.wait_grace();
    let store = s.p.path().join(".pipe/store");
    let snapshot = s.p.path().join("snapshot");
    copy_tree(&store, &snapshot);

    // How long a whole gc takes, to kill within it.
    let started = Instant::now();
    s.gc(&[]).expect_code(0);
    let mut full = started.elapsed().as_millis() as u64;
    eprintln!("a whole gc: {full} ms");

    let deadline = Instant::now() + Duration::from_secs(400);
    let (mut kills, mut runs) = (0, 0);
    while kills < 50 {
        assert!(
            Instant::now() < deadline,
            "only {kills} kills landed in {runs} runs"
        );
        runs += 1;
        copy_tree(&snapshot, &store);
        let mut gc = spawn_pipe(&s, &["gc"], &[]);
        std::thread::sleep(Duration::from_millis(rng.below(full + 1)));
        if kill9(&mut gc) {
            kills += 1;
        } else {
            // It finished first: kill sooner (the first run was measured
            // on a cold cache).
            full = (full * 4 / 5).max(5);
        }
        // Whatever moment the kill hit, the store is consistent: nothing
        // referenced is missing or damaged, every pointer verifies.
        let fsck = s.p.pipe(&["fsck"]);
        assert_eq!(
            fsck.code, 0,
            "run {runs}: fsck after the kill:\n{}\n{}",
            fsck.stdout, fsck.stderr
        );
        s.deploy("dev").expect_code(0);
        s.deploy("prod").expect_code(0);
        for b in [&b0, &b1] {
            for blob in s.blobs_of(b) {
                assert!(store.join(&blob).exists(), "run {runs}: {blob} of {b}");
            }
        }
        let again = s.gc(&[]);
        again.expect_code(0);
        s.p.pipe(&["fsck"]).expect_code(0);
        let objects = s.objects();
        for g in &garbage {
            assert!(!has_build(&objects, g), "run {runs}: {g} left");
        }
    }
    eprintln!("{kills} kills in {runs} runs (seed {seed})");
}

/// Unmounts a tmpfs when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount tmpfs (the test runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(dir.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A local store on a small tmpfs that a publish fills: the error names
/// ENOSPC with a hint, nothing half-written is left (no object under its
/// final key that is not whole, no temporary file, no manifest, the
/// pointer and history untouched), and once space is freed the publish
/// run again completes and deploys.
#[test]
fn a_publish_that_fills_the_disk_fails_cleanly_and_the_rerun_completes_local() {
    let mnt = tempfile::tempdir().unwrap();
    let _mount = Mount::tmpfs(mnt.path(), "24m");
    let store_dir = mnt.path().join("store");
    let s = Setup::with_store(Backend::Local, Some(&store_dir));
    let b0 = s.release("1.0.0", "zero\n");
    let filler = mnt.path().join("filler");
    noise(&filler, 10 << 20, 3);
    let before = s.objects();
    let pointer = std::fs::read(store_dir.join("envs/dev/pointer.json")).unwrap();

    s.p.write("pipeline.toml", &format!("{}{BIG}", s.toml()));
    noise(&s.p.path().join("big.bin"), 16 << 20, 5);
    // The publish is what fills the store.
    let big = s.build_elsewhere("1.1.0");
    let run = s.p.pipe(&["publish", &big]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("No space left on device") && run.stderr.contains("ENOSPC"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);

    let after = s.objects();
    assert!(!has_build(&after, &big), "{after:?}");
    // Whatever landed is whole: each new object is a blob of the build of
    // its full size, or a small record.
    let verified = s.p.pipe(&["--json", "verify", &big, "--keyring", &s.ring]);
    verified.expect_code(0);
    let sizes: BTreeMap<String, u64> = verified.json()["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["store_key"].as_str().unwrap().to_string(),
                a["size"].as_u64().unwrap(),
            )
        })
        .collect();
    for (key, size) in after.iter().filter(|(k, _)| !before.contains_key(*k)) {
        if key.starts_with("blobs/") {
            assert_eq!(sizes.get(key), Some(size), "{key} is not whole");
        }
    }
    let tmp_left: Vec<_> = std::fs::read_dir(store_dir.join(".tmp"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(tmp_left.is_empty(), "temporary files left: {tmp_left:?}");
    assert_eq!(
        std::fs::read(store_dir.join("envs/dev/pointer.json")).unwrap(),
        pointer
    );
    s.deploy("dev").expect_code(0);

    std::fs::remove_file(&filler).unwrap();
    s.publish(&big);
    s.promote(&big, "dev");
    s.deploy("dev").expect_code(0);
    assert_ne!(big, b0);
}

/// `[store] gc_grace` and `gc_keep_history` are checked with the rest of
/// `pipeline.toml`: a bad value is an error at its line and column, exit 2.
#[test]
fn gc_settings_are_checked_with_positions() {
    let p = Demo::new()
        .store("gc_grace = \"soon\"")
        .store("gc_keep_history = 0")
        .env("prod", Some("dev"))
        .no_key()
        .create();
    let run = p.pipe(&["gc", "--dry-run"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("pipeline.toml:7:12") && run.stderr.contains("`store.gc_grace`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("pipeline.toml:8:19")
            && run.stderr.contains("`store.gc_keep_history` is 0"),
        "{}",
        run.stderr
    );
    // Flags are checked too.
    let run = p.pipe(&["gc", "--grace", "0s"]);
    run.expect_code(2);
}
