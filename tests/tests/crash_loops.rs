//! Crash loops: `pipe publish`, `pipe promote` and `pipe deploy` killed
//! with SIGKILL (`kill -9`) at random moments, many times each. After every
//! kill `pipe fsck` finds the store clean (what the killed command left is
//! at most unreferenced objects or views behind their pointer, never
//! damage), the same command run again completes, and nothing is lost: the
//! build verifies from the store, the pointer names it, apt-get reads the
//! suite, the deploy target is a complete release.
//!
//! The delays are random but seeded: the seed is printed, and
//! `PIPE_CRASH_SEED=<seed>` replays a run; `PIPE_CRASH_RUNS` sets the number
//! of kills per command (default 50). Each loop prints its figures (runs,
//! commands killed while running, interrupted states seen by fsck, reruns
//! that completed).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pipe_e2e::cli::{Project, Run};
use pipe_e2e::consumers::{Apt, HttpServer, run, text};
use pipe_e2e::fixture::{Demo, RSA_KEYRING};
use pipe_e2e::raw::RawStore;
use pipe_e2e::s3::MotoServer;

/// A small seeded generator (xorshift64*): the same seed, the same delays.
struct Rng(u64);

impl Rng {
    /// From `PIPE_CRASH_SEED`, else the clock; printed either way.
    fn new(name: &str) -> Rng {
        let seed = std::env::var("PIPE_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("{name}: PIPE_CRASH_SEED={seed}");
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A delay in `[0, max)`.
    fn delay(&mut self, max: Duration) -> Duration {
        let micros = max.as_micros().max(1) as u64;
        Duration::from_micros(self.next() % micros)
    }
}

fn runs() -> usize {
    std::env::var("PIPE_CRASH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50)
}

/// What a loop saw.
#[derive(Default, Debug)]
struct Figures {
    runs: usize,
    /// Killed while still running (the others had finished first).
    killed: usize,
    /// Kills after which fsck saw work left half done (unreferenced
    /// objects, views behind their pointer, a release being unpacked).
    interrupted: usize,
    /// fsck runs that found the store clean (exit 0).
    fsck_clean: usize,
    /// Reruns that completed.
    reruns_ok: usize,
}

impl Figures {
    /// One run of the loop: `pipe ARGS` killed after a random delay of the
    /// window, then `pipe fsck`, which must find the store clean.
    fn kill_then_fsck(&mut self, p: &Project, args: &[&str], rng: &mut Rng, window: &mut Window) {
        self.runs += 1;
        let killed = kill_after(p, args, rng.delay(window.0));
        window.after(killed);
        if killed {
            self.killed += 1;
        }
        if fsck_clean(p) {
            self.interrupted += 1;
        }
        self.fsck_clean += 1;
    }

    fn print(&self, what: &str, took: Duration) {
        let line = format!(
            "{what}: {} runs, {} killed while running, {} interrupted states seen by fsck, {} fsck clean, {} reruns completed, {:.1} s",
            self.runs,
            self.killed,
            self.interrupted,
            self.fsck_clean,
            self.reruns_ok,
            took.as_secs_f64()
        );
        println!("{line}");
    }
}

/// A project of two packages signing with RSA 3072 (apt's gpgv verifies
/// it), its keyring.
fn project() -> (Project, PathBuf) {
    let p = Demo::new()
        .file("demo.txt", "0\n")
        .package("extra", &["deb", "rpm"])
        .rsa_key()
        .create();
    let key = p.path().join(RSA_KEYRING);
    (p, key)
}

/// Builds version `version` (demo.txt says it) and returns the build id.
fn build(p: &Project, version: &str) -> String {
    p.write("demo.txt", &format!("{version}\n"));
    p.build(version)
}

/// Starts `pipe ARGS`, kills it after `delay` if it is still running:
/// true when it was killed; a run that finished first must have succeeded.
fn kill_after(p: &Project, args: &[&str], delay: Duration) -> bool {
    let mut child = p.start(args, &[]);
    let until = Instant::now() + delay;
    while Instant::now() < until {
        if child.exited() {
            let run = child.wait();
            run.expect_code(0);
            return false;
        }
        std::thread::sleep(Duration::from_micros(200).min(until - Instant::now()));
    }
    if child.exited() {
        child.wait().expect_code(0);
        return false;
    }
    let run = child.kill();
    // It may have finished between the last look and the kill.
    match run.code {
        -1 => true,
        0 => false,
        _ => panic!("neither killed nor successful: {run:?}"),
    }
}

/// The range kill delays are drawn from, adapted to how long the command
/// takes on this machine now: shorter after a run that finished before its
/// kill, longer after one that was killed, so most kills land while the
/// command runs, anywhere from its start to its end.
struct Window(Duration);

impl Window {
    fn after(&mut self, killed: bool) {
        self.0 = if killed {
            self.0.mul_f64(1.1)
        } else {
            self.0.mul_f64(0.8)
        };
    }
}

/// How long `pipe ARGS` takes when left alone (the range delays are drawn
/// from), having run it.
fn timed(p: &Project, args: &[&str]) -> (Duration, Run) {
    let started = Instant::now();
    let run = p.pipe(args);
    (started.elapsed(), run)
}

/// `pipe fsck`: clean (exit 0); true when it saw something left half done.
#[track_caller]
fn fsck_clean(p: &Project) -> bool {
    let run = p.pipe(&["--json", "fsck"]);
    run.expect_code(0);
    let doc = run.json();
    let r = &doc["report"];
    r["unreferenced"].as_u64().unwrap() > 0 || !r["pending_views"].as_array().unwrap().is_empty()
}

/// apt-get reads `dev` from `url` and would install `version` of `demo`.
fn apt_reads(dir: &Path, url: &str, key: &Path, version: &str) {
    let apt = Apt::new(dir.to_path_buf(), url, "dev", key);
    let out = apt.update();
    let t = text(&out);
    assert!(
        out.status.success() && !t.contains("E:") && !t.contains("W:"),
        "apt-get update:\n{t}"
    );
    let out = run(apt.cmd("apt-cache").args(["policy", "demo"]));
    let t = text(&out);
    let candidate = t
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: "))
        .unwrap_or_else(|| panic!("no candidate in:\n{t}"));
    assert_eq!(candidate, version, "{t}");
    apt.download("demo");
}

/// Publish killed at random moments: each run publishes a new build (its
/// blobs are in the local store already, from the build: publish writes the
/// pool copies, version records, package index, then the signed records).
fn publish_loop(p: &Project, key: &Path, store_url: &str, n: usize, rng: &mut Rng) -> Figures {
    let ring = key.to_string_lossy().into_owned();
    let mut f = Figures::default();
    let first = build(p, "1.0.0");
    let (took, run) = timed(p, &["publish", &first]);
    run.expect_code(0);
    let mut window = Window(took);
    let mut last = (first, "1.0.0".to_string());
    for i in 1..=n {
        let version = format!("1.{i}.0");
        let b = build(p, &version);
        f.kill_then_fsck(p, &["publish", &b], rng, &mut window);
        p.pipe(&["publish", &b]).expect_code(0);
        f.reruns_ok += 1;
        // Nothing lost: the build verifies from the store, every blob read.
        p.pipe(&["verify", &b, "--keyring", &ring, "--store", store_url])
            .expect_code(0);
        last = (b, version);
    }
    p.pipe(&["promote", &last.0, "--to", "dev"]).expect_code(0);
    f
}

#[test]
fn publish_killed_at_random_moments_loses_nothing() {
    let started = Instant::now();
    let (p, key) = project();
    let store = p.path().join(".pipe/store");
    let mut rng = Rng::new("publish");
    let n = runs();
    let f = publish_loop(&p, &key, &store.to_string_lossy(), n, &mut rng);
    std::fs::create_dir_all(&store).unwrap();
    let server = HttpServer::start(&store);
    let tmp = tempfile::tempdir().unwrap();
    apt_reads(
        &tmp.path().join("apt"),
        &server.url(),
        &key,
        &format!("1.{n}.0"),
    );
    assert_eq!(f.fsck_clean, n);
    assert_eq!(f.reruns_ok, n);
    assert!(f.killed > 0, "no run was killed while running: {f:?}");
    f.print("publish (local store)", started.elapsed());
}

/// Promote killed at random moments, moving `dev` between builds; the
/// rerun of the same promotion completes what the killed one left (the
/// pointer, the history copy, the apt and yum views).
fn promote_loop(
    p: &Project,
    builds: &[(String, String)],
    n: usize,
    rng: &mut Rng,
) -> (Figures, String) {
    let mut f = Figures::default();
    let (took, run) = timed(p, &["promote", &builds[0].0, "--to", "dev"]);
    run.expect_code(0);
    let mut window = Window(took);
    let mut version = builds[0].1.clone();
    for i in 1..=n {
        let (b, v) = &builds[i % builds.len()];
        f.kill_then_fsck(p, &["promote", b, "--to", "dev"], rng, &mut window);
        let doc = p
            .pipe(&["--json", "promote", b, "--to", "dev"])
            .expect_code(0)
            .json();
        assert_eq!(doc["entry"]["build"], b.as_str(), "{doc}");
        f.reruns_ok += 1;
        version = v.clone();
    }
    // Every view shows the pointer: nothing pending, nothing damaged.
    let doc = p.pipe(&["--json", "fsck"]).expect_code(0).json();
    assert_eq!(
        doc["report"]["pending_views"],
        serde_json::json!([]),
        "{doc}"
    );
    (f, version)
}

#[test]
fn promote_killed_at_random_moments_loses_nothing() {
    let started = Instant::now();
    let (p, key) = project();
    let store = p.path().join(".pipe/store");
    let builds: Vec<(String, String)> = ["1.0.0", "1.1.0", "1.2.0"]
        .iter()
        .map(|v| {
            let b = build(&p, v);
            p.pipe(&["publish", &b]).expect_code(0);
            (b, v.to_string())
        })
        .collect();
    let mut rng = Rng::new("promote");
    let n = runs();
    let (f, version) = promote_loop(&p, &builds, n, &mut rng);
    let server = HttpServer::start(&store);
    let tmp = tempfile::tempdir().unwrap();
    apt_reads(&tmp.path().join("apt"), &server.url(), &key, &version);
    // The history verifies with every entry the reruns wrote.
    p.pipe(&["history", "dev", "--keyring", &key.to_string_lossy()])
        .expect_code(0);
    assert!(f.killed > 0, "no run was killed while running: {f:?}");
    f.print("promote (local store)", started.elapsed());
}

/// Deploy killed at random moments; between runs `dev` moves to the other
/// build, so each deploy has a release to fetch, unpack and switch to.
#[test]
fn deploy_killed_at_random_moments_leaves_a_complete_release() {
    let started = Instant::now();
    let (p, key) = project();
    let ring = key.to_string_lossy().into_owned();
    let builds: Vec<(String, String)> = ["1.0.0", "1.1.0"]
        .iter()
        .map(|v| {
            let b = build(&p, v);
            p.pipe(&["publish", &b]).expect_code(0);
            (b, v.to_string())
        })
        .collect();
    let target = tempfile::tempdir().unwrap();
    let dir = target.path().to_string_lossy().into_owned();
    let deploy = [
        "deploy",
        "--env",
        "dev",
        "--target",
        &dir,
        "--keyring",
        &ring,
    ];
    p.pipe(&["promote", &builds[0].0, "--to", "dev"])
        .expect_code(0);
    let (took, run) = timed(&p, &deploy);
    run.expect_code(0);
    let mut window = Window(took);
    let mut rng = Rng::new("deploy");
    let n = runs();
    let mut f = Figures::default();
    for i in 1..=n {
        let (b, v) = &builds[i % builds.len()];
        p.pipe(&["promote", b, "--to", "dev"]).expect_code(0);
        f.runs += 1;
        let killed = kill_after(&p, &deploy, rng.delay(window.0));
        window.after(killed);
        if killed {
            f.killed += 1;
        }
        let releases = target.path().join("releases");
        let half_done = std::fs::read_dir(&releases)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".incoming-"))
            })
            .unwrap_or(false);
        // What is live is a whole release: the old one or the new one.
        let live =
            std::fs::read_to_string(target.path().join("current/usr/share/demo/demo.txt")).unwrap();
        assert!(
            builds.iter().any(|(_, v)| live == format!("{v}\n")),
            "current holds {live:?}"
        );
        if fsck_clean(&p) || half_done {
            f.interrupted += 1;
        }
        f.fsck_clean += 1;
        p.pipe(&deploy).expect_code(0);
        f.reruns_ok += 1;
        p.pipe(&["deploy", "--check", "--target", &dir])
            .expect_code(0);
        assert_eq!(
            std::fs::read_to_string(target.path().join("current/usr/share/demo/demo.txt")).unwrap(),
            format!("{v}\n")
        );
        assert!(
            target
                .path()
                .join("releases")
                .join(b)
                .join("usr/share/extra/extra.txt")
                .exists(),
            "the release is complete"
        );
        let left: Vec<String> = std::fs::read_dir(&releases)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".incoming-"))
            .collect();
        assert!(left.is_empty(), "leftovers after the rerun: {left:?}");
    }
    assert!(f.killed > 0, "no run was killed while running: {f:?}");
    f.print("deploy (local store)", started.elapsed());
}

/// A smaller loop on S3 (moto): publish and promote killed at random
/// moments, fsck clean after each, the rerun completes, apt-get reads the
/// suite from the bucket.
#[test]
fn publish_and_promote_killed_at_random_moments_on_s3() {
    let started = Instant::now();
    let server = MotoServer::start();
    let (mut p, key) = project();
    for (k, v) in server.env() {
        p.env(&k, &v);
    }
    let url = format!("s3://{}/crash", server.bucket());
    p.env("PIPE_STORE", &url);
    server.allow_anonymous_read();
    let n = (runs() / 10).max(3);
    let mut rng = Rng::new("s3");
    let f = publish_loop(&p, &key, &url, n, &mut rng);
    f.print("publish (S3)", started.elapsed());
    let builds: Vec<(String, String)> = (n.saturating_sub(1)..=n)
        .map(|i| {
            let v = format!("1.{i}.0");
            let manifest_build = RawStore::s3(&server, "crash")
                .keys("builds/")
                .into_iter()
                .filter(|k| k.ends_with("/manifest.json"))
                .map(|k| k.split('/').nth(1).unwrap().to_string())
                .find(|b| b.starts_with(&format!("{v}-")))
                .unwrap();
            (manifest_build, v)
        })
        .collect();
    let started = Instant::now();
    let (g, version) = promote_loop(&p, &builds, n, &mut rng);
    let base = format!("{}/{}/crash/", server.endpoint(), server.bucket());
    let tmp = tempfile::tempdir().unwrap();
    apt_reads(&tmp.path().join("apt"), &base, &key, &version);
    g.print("promote (S3)", started.elapsed());
}
