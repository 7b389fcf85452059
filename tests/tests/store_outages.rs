//! Faults of the real S3 server (moto) while a command runs, through
//! `tests/src/proxy.rs` `SwitchProxy`: the server stopped (connections cut,
//! port closed) in the middle of a publish, a promote and a deploy's fetch;
//! `500`/`503` answers for a while; a slow server. In every case the
//! command succeeds after retries or fails within its deadline with a
//! message naming the endpoint and the operation; `pipe fsck` is then
//! clean; the same command run again (server back) completes.

use std::time::{Duration, Instant};

use pipe_e2e::cli::{Project, Run};
use pipe_e2e::proxy::{Mode, SwitchProxy};
use pipe_e2e::s3::MotoServer;

/// The deadline of one store operation, retries included (`[store]
/// timeout`).
const DEADLINE: Duration = Duration::from_secs(6);
/// Slack on top of it: process start, a loaded machine.
const MARGIN: Duration = Duration::from_secs(30);

/// The S3 operations pipe names in its errors.
const OPERATIONS: [&str; 6] = [
    "GetObject",
    "PutObject",
    "HeadObject",
    "CopyObject",
    "ListObjectsV2",
    "DeleteObject",
];

struct Setup {
    // Dropped last: the proxy and the project talk to it.
    proxy: SwitchProxy,
    p: Project,
    ring: String,
    _server: MotoServer,
}

fn setup() -> Setup {
    let server = MotoServer::start();
    let proxy = SwitchProxy::start(server.addr());
    let mut p = Project::new();
    p.write(
        "pipeline.toml",
        &format!(
            r#"[project]
name = "demo"
version = "1.0.0"
source_date_epoch = 1700000000

[store]
url = "s3://{}/outages"
connect_timeout = "1s"
request_timeout = "2s"
timeout = "6s"
attempts = 3

[environments.dev]

[packages.demo]
summary = "Demo"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb", "rpm"]
files = [{{ src = "demo.txt", dst = "/usr/share/demo/demo.txt" }}]

[packages.demo-extra]
summary = "More"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb", "rpm"]
files = [{{ src = "demo.txt", dst = "/usr/share/demo/extra.txt" }}]
"#,
            server.bucket()
        ),
    );
    for (k, v) in server.env() {
        p.env(&k, &v);
    }
    p.env("AWS_ENDPOINT_URL", &proxy.endpoint());
    p.with_signing_key();
    let ring = p.keyring();
    Setup {
        proxy,
        p,
        ring,
        _server: server,
    }
}

impl Setup {
    /// Builds `version` (uploading its blobs) and returns the build id.
    fn build(&self, version: &str) -> String {
        let toml = std::fs::read_to_string(self.p.path().join("pipeline.toml")).unwrap();
        let toml = toml
            .lines()
            .map(|l| {
                if l.starts_with("version = ") {
                    format!("version = \"{version}\"\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect::<String>();
        self.p
            .write("pipeline.toml", &toml)
            .write("demo.txt", &format!("{version}\n"));
        self.p.pipe(&["--json", "build"]).expect_code(0).json()["build"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Runs `args`, stops the server when a request `method … part` comes,
    /// waits for the command, starts the server again.
    fn stopped_at(&self, args: &[&str], method: &str, part: &str) -> (Run, Duration) {
        let skip = self.proxy.requests();
        let child = self.p.start(args, &[]);
        self.proxy.wait_for_request(skip, method, part);
        self.proxy.stop();
        let stopped = Instant::now();
        let run = child.wait();
        let took = stopped.elapsed();
        self.proxy.restart();
        (run, took)
    }

    /// `pipe fsck` is clean.
    #[track_caller]
    fn fsck_clean(&self) {
        self.p.pipe(&["fsck"]).expect_code(0);
    }

    fn deploy(&self, target: &str) -> Vec<String> {
        [
            "deploy",
            "--env",
            "dev",
            "--target",
            target,
            "--keyring",
            &self.ring,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

/// A failure within the deadline, naming the endpoint and an S3 operation.
#[track_caller]
fn failed_naming_it(s: &Setup, run: &Run, took: Duration, what: &str) {
    assert_ne!(
        run.code, 0,
        "{what} succeeded with the server stopped: {run:?}"
    );
    assert_ne!(run.code, -1, "{what} was killed: {run:?}");
    assert!(
        took < DEADLINE + MARGIN,
        "{what} took {took:?} after the server stopped"
    );
    assert!(
        run.stderr.contains(&s.proxy.endpoint()),
        "{what}: the endpoint is named: {}",
        run.stderr
    );
    assert!(
        OPERATIONS.iter().any(|op| run.stderr.contains(op)),
        "{what}: the operation is named: {}",
        run.stderr
    );
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
}

#[test]
fn the_server_stopped_midway_through_publish_promote_and_deploy() {
    let s = setup();
    let b1 = s.build("1.0.0");
    s.p.pipe(&["publish", &b1]).expect_code(0);
    s.p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let t1 = tempfile::tempdir().unwrap();
    let d1 = t1.path().to_string_lossy().into_owned();
    let deploy1 = s.deploy(&d1);
    let args: Vec<&str> = deploy1.iter().map(String::as_str).collect();
    s.p.pipe(&args).expect_code(0);

    // Publish: stopped when it copies its first package into the pool.
    let b2 = s.build("1.1.0");
    let (run, took) = s.stopped_at(&["publish", &b2], "PUT", "/pool/");
    failed_naming_it(&s, &run, took, "publish");
    s.fsck_clean();
    s.p.pipe(&["publish", &b2]).expect_code(0);
    s.p.pipe(&[
        "verify",
        &b2,
        "--keyring",
        &s.ring,
        "--store",
        &store_url(&s),
    ])
    .expect_code(0);

    // Promote: stopped when the views are being written (after the
    // pointer moved, the commit point).
    let (run, took) = s.stopped_at(&["promote", &b2, "--to", "dev"], "PUT", "/dists/dev/");
    failed_naming_it(&s, &run, took, "promote");
    s.fsck_clean();
    let doc =
        s.p.pipe(&["--json", "promote", &b2, "--to", "dev"])
            .expect_code(0)
            .json();
    assert_eq!(doc["entry"]["build"], b2.as_str(), "{doc}");
    let doc = s.p.pipe(&["--json", "fsck"]).expect_code(0).json();
    assert_eq!(
        doc["report"]["pending_views"],
        serde_json::json!([]),
        "{doc}"
    );

    // Deploy: stopped when it fetches its first package, into a target
    // with nothing cached.
    let t2 = tempfile::tempdir().unwrap();
    let d2 = t2.path().to_string_lossy().into_owned();
    let deploy2 = s.deploy(&d2);
    let args: Vec<&str> = deploy2.iter().map(String::as_str).collect();
    let (run, took) = s.stopped_at(&args, "GET", "/blobs/");
    failed_naming_it(&s, &run, took, "deploy");
    assert!(!t2.path().join("current").exists(), "nothing switched to");
    s.fsck_clean();
    s.p.pipe(&args).expect_code(0);
    assert_eq!(
        std::fs::read_to_string(t2.path().join("current/usr/share/demo/demo.txt")).unwrap(),
        "1.1.0\n"
    );
    println!(
        "server stopped: 3 times (publish, promote, deploy), 3 failures within the deadline naming endpoint and operation, 3 reruns completed, fsck clean each time"
    );
}

fn store_url(s: &Setup) -> String {
    let toml = std::fs::read_to_string(s.p.path().join("pipeline.toml")).unwrap();
    toml.lines()
        .find_map(|l| l.strip_prefix("url = "))
        .unwrap()
        .trim_matches('"')
        .to_string()
}

/// `500 InternalError` and `503 SlowDown` for a while, in the middle of each
/// command: retried with backoff, the command succeeds.
#[test]
fn errors_for_a_while_are_retried_and_the_commands_succeed() {
    let s = setup();
    let mut survived = 0;
    let b1 = s.build("1.0.0");
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_string_lossy().into_owned();
    let deploy = s.deploy(&dir);
    let deploy: Vec<&str> = deploy.iter().map(String::as_str).collect();
    for (args, method, part, status) in [
        (vec!["publish", b1.as_str()], "PUT", "/pool/", 503),
        (
            vec!["promote", b1.as_str(), "--to", "dev"],
            "PUT",
            "/dists/dev/",
            500,
        ),
        (deploy.clone(), "GET", "/blobs/", 500),
    ] {
        let before = s.proxy.faulted();
        // The first two matching requests (after the command's earlier
        // ones) fail: one request gets both, its third attempt goes
        // through. Armed before the command starts, so a fast command
        // cannot finish before the fault.
        s.proxy.fail_matching(method, part, 2, status);
        let run = s.p.pipe(&args);
        run.expect_code(0);
        let faults = s.proxy.faulted() - before;
        assert_eq!(faults, 2, "{args:?}: both errors were answered");
        survived += faults;
        s.fsck_clean();
    }
    assert_eq!(
        std::fs::read_to_string(t.path().join("current/usr/share/demo/demo.txt")).unwrap(),
        "1.0.0\n"
    );
    // Errors that outlast the attempts: a failure naming the endpoint and
    // the operation, then the rerun completes.
    let b2 = s.build("1.1.0");
    let skip = s.proxy.requests();
    let child = s.p.start(&["publish", &b2], &[]);
    s.proxy.wait_for_request(skip, "PUT", "/pool/");
    s.proxy.fail_next(1_000, 503);
    let started = Instant::now();
    let run = child.wait();
    failed_naming_it(&s, &run, started.elapsed(), "publish");
    assert!(run.stderr.contains("503"), "{}", run.stderr);
    s.proxy.set(Mode::Forward);
    s.fsck_clean();
    s.p.pipe(&["publish", &b2]).expect_code(0);
    s.fsck_clean();
    println!(
        "500/503 answers: {survived} survived by retries, 1 outlasting failure named, rerun completed"
    );
}

/// Every answer late: within the request timeout the commands succeed;
/// later than it, they fail within the deadline naming the endpoint and
/// the operation, and succeed again once the server is quick.
#[test]
fn a_slow_server_is_waited_for_within_the_timeouts() {
    let s = setup();
    let b1 = s.build("1.0.0");
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().to_string_lossy().into_owned();
    let deploy = s.deploy(&dir);
    let deploy: Vec<&str> = deploy.iter().map(String::as_str).collect();
    s.proxy.set(Mode::Delay(Duration::from_millis(200)));
    s.p.pipe(&["publish", &b1]).expect_code(0);
    s.p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    s.p.pipe(&deploy).expect_code(0);
    assert!(s.proxy.faulted() > 10, "answers were late");
    s.proxy.set(Mode::Forward);
    s.fsck_clean();

    // Later than the 2 s request timeout.
    let b2 = s.build("1.1.0");
    s.proxy.set(Mode::Delay(Duration::from_secs(3)));
    let started = Instant::now();
    let run = s.p.pipe(&["publish", &b2]);
    failed_naming_it(&s, &run, started.elapsed(), "publish");
    s.proxy.set(Mode::Forward);
    s.fsck_clean();
    s.p.pipe(&["publish", &b2]).expect_code(0);
    s.fsck_clean();
}
