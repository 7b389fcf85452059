//! `pipe deploy` and `pipe fetch`: what an environment points at, verified
//! against the operator's keyring, unpacked and switched to atomically.
//! Every refusal exits 2 or 3 with `current` untouched and nothing written
//! outside the target; a deploy killed at any step leaves the old release
//! live and the next deploy succeeds; a fetched build deploys offline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;
use std::time::SystemTime;

use pipe_e2e::cli::{Project, Run};
use pipe_e2e::fixture::Demo;

/// `[deploy]` of the demo project: a template.
const DEPLOY: &str = r#"
[deploy]
files = { "/etc/demo/env.conf" = "env={{ env }}\nbuild={{ build }}\nport={{ port }}\n" }
"#;

/// The demo project (dev, then prod; package `demo`, deb and rpm), whose
/// package also installs `run.sh` as `/usr/bin/demo`, with [`DEPLOY`].
static PIPELINE: LazyLock<String> = LazyLock::new(|| {
    Demo::new()
        .env("prod", Some("dev"))
        .toml(DEPLOY)
        .pipeline_toml()
        .replace(
            "files = [{ src = \"demo.txt\", dst = \"/usr/share/demo/demo.txt\" }]",
            "files = [\n  { src = \"demo.txt\", dst = \"/usr/share/demo/demo.txt\" },\n  { src = \"run.sh\", dst = \"/usr/bin/demo\", mode = \"0755\" },\n]",
        )
});

/// A project with a signing key, a target directory, and the operator's
/// keyring.
struct Setup {
    p: Project,
    ring: String,
    target: tempfile::TempDir,
}

impl Setup {
    /// The demo project with `run.sh`, whose `pipeline.toml` is
    /// `pipeline_toml` ([`PIPELINE`] or a variant of it).
    fn new(pipeline_toml: &str) -> Setup {
        let p = Demo::new()
            .file("run.sh", "#!/bin/sh\necho demo\n")
            .create();
        p.write("pipeline.toml", pipeline_toml);
        let ring = p.keyring();
        Setup {
            p,
            ring,
            target: tempfile::tempdir().unwrap(),
        }
    }

    /// [`Setup::new`] with the store in `server`'s bucket (`[store]` gets
    /// `store_keys` too) and its settings in the environment.
    fn on_s3(server: &pipe_e2e::s3::MotoServer, store_keys: &str) -> Setup {
        let store = format!("s3://{}/demo", server.bucket());
        let mut s = Setup::new(&PIPELINE.replace(
            "[environments.dev]",
            &format!("[store]\nurl = \"{store}\"\n{store_keys}\n[environments.dev]"),
        ));
        for (k, v) in server.env() {
            s.p.env(&k, &v);
        }
        s
    }

    fn dir(&self) -> &Path {
        self.target.path()
    }

    /// Builds version `version` with `content`, publishes it and points dev
    /// at it; returns the build id.
    fn release(&self, version: &str, content: &str) -> String {
        let toml = std::fs::read_to_string(self.p.path().join("pipeline.toml")).unwrap();
        let toml = toml.replacen(
            &toml
                .lines()
                .find(|l| l.starts_with("version = "))
                .unwrap()
                .to_string(),
            &format!("version = \"{version}\""),
            1,
        );
        self.p
            .write("pipeline.toml", &toml)
            .write("demo.txt", content);
        let build = self.p.pipe(&["--json", "build"]).expect_code(0).json()["build"]
            .as_str()
            .unwrap()
            .to_string();
        self.publish_and_promote(&build);
        build
    }

    fn publish_and_promote(&self, build: &str) {
        self.p.pipe(&["publish", build]).expect_code(0);
        self.p
            .pipe(&["promote", build, "--to", "dev"])
            .expect_code(0);
    }

    /// `pipe deploy --env dev --target DIR --keyring RING --set port=80 EXTRA`.
    fn deploy(&self, extra: &[&str]) -> Run {
        let mut args = vec!["--set", "port=80"];
        args.extend_from_slice(extra);
        self.deploy_to(self.dir().to_str().unwrap(), &self.ring, &args)
    }

    /// `pipe deploy --env dev --target DIR --keyring RING EXTRA`.
    fn deploy_to(&self, dir: &str, ring: &str, extra: &[&str]) -> Run {
        let mut args = vec!["deploy", "--env", "dev", "--target", dir, "--keyring", ring];
        args.extend_from_slice(extra);
        self.p.pipe(&args)
    }

    /// `pipe [--json] fetch --env dev --target DIR --keyring RING`.
    fn fetch(&self, dir: &str, json: bool) -> Run {
        let args = [
            "--json",
            "fetch",
            "--env",
            "dev",
            "--target",
            dir,
            "--keyring",
            &self.ring,
        ];
        self.p.pipe(if json { &args } else { &args[1..] })
    }

    /// `pipe deploy --check --target DIR`.
    fn check(&self, dir: &Path) -> Run {
        self.p
            .pipe(&["deploy", "--check", "--target", dir.to_str().unwrap()])
    }

    fn current(&self) -> Option<String> {
        current(self.dir())
    }
}

/// A keyring of another project's key (kept alive with its project).
fn stranger_ring() -> (Project, String) {
    let stranger = Project::new();
    stranger.with_signing_key();
    let ring = stranger.keyring();
    (stranger, ring)
}

fn current(dir: &Path) -> Option<String> {
    std::fs::read_link(dir.join("current")).ok().map(|t| {
        t.strip_prefix("releases")
            .unwrap()
            .to_string_lossy()
            .into_owned()
    })
}

fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join("current").join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The example pipeline in one `format`, with a second package `assets`
/// shipping the project's `assets/` under `/srv/assets/`.
fn with_assets(format: &str) -> String {
    PIPELINE
        .replace(
            "formats = [\"deb\", \"rpm\"]",
            &format!("formats = [\"{format}\"]"),
        )
        .replace(
            "[deploy]",
            &format!(
                r#"[packages.assets]
summary = "Assets"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["{format}"]
files = [ {{ src = "assets/", dst = "/srv/assets/" }} ]

[deploy]"#
            ),
        )
}

/// The packages a `--json` deploy took from the previous release.
fn reused(run: &serde_json::Value) -> Vec<String> {
    run["report"]["targets"][0]["reused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Nothing half-made is left in the target.
fn no_leftovers(dir: &Path) {
    for (d, prefix) in [
        (dir.join("releases"), ".incoming-"),
        (dir.to_path_buf(), ".current-"),
    ] {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                assert!(
                    !name.starts_with(prefix),
                    "leftover {name} in {}",
                    d.display()
                );
            }
        }
    }
}

#[test]
fn deploys_renders_switches_records_timings_and_is_idempotent() {
    let s = Setup::new(&PIPELINE);
    let b1 = s.release("1.0.0", "one\n");
    let run = s.deploy(&[]);
    run.expect_code(0);
    for state in [
        "resolve",
        "verify",
        "fetch",
        "unpack",
        "configure",
        "switch",
        "total",
    ] {
        assert!(
            run.stdout.contains(state),
            "no {state} timing in:\n{}",
            run.stdout
        );
    }
    assert!(
        run.stdout.contains("demo_1.0.0_all.deb"),
        "the .deb is preferred:\n{}",
        run.stdout
    );
    assert_eq!(s.current().as_deref(), Some(b1.as_str()));
    assert_eq!(read(s.dir(), "usr/share/demo/demo.txt"), "one\n");
    assert_eq!(
        read(s.dir(), "etc/demo/env.conf"),
        format!("env=dev\nbuild={b1}\nport=80\n")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.dir().join("current/usr/bin/demo"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);

    // Again: nothing to do, and it says so.
    let again = s.deploy(&["--json"]).expect_code(0).json();
    assert_eq!(again["report"]["targets"][0]["action"], "already current");
    assert_eq!(
        again["report"]["artifacts"].as_array().unwrap().len(),
        0,
        "nothing fetched"
    );
    for state in [
        "resolve",
        "fetch",
        "verify",
        "unpack",
        "configure",
        "switch",
    ] {
        assert!(
            again["report"]["targets"][0]["timings"][state].is_number(),
            "{again}"
        );
    }
    // Another value is another configuration of the same build.
    let reconf = s
        .deploy(&["--json", "--set", "port=81"])
        .expect_code(0)
        .json();
    assert_eq!(
        reconf["report"]["targets"][0]["action"], "reconfigured",
        "{reconf}"
    );
    assert!(read(s.dir(), "etc/demo/env.conf").contains("port=81"));

    // Every deploy is logged with its timings.
    let log = std::fs::read_to_string(s.dir().join(".pipe/deploys.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert_eq!(lines[0]["action"], "deployed");
    assert!(lines[0]["timings"]["unpack"].is_number());
    assert_eq!(lines[1]["action"], "already current");

    // A new build; the old release stays until pruned.
    let b2 = s.release("1.0.1", "two\n");
    s.deploy(&[]).expect_code(0);
    assert_eq!(s.current().as_deref(), Some(b2.as_str()));
    assert_eq!(read(s.dir(), "usr/share/demo/demo.txt"), "two\n");
    assert!(s.dir().join("releases").join(&b1).is_dir());
    let b3 = s.release("1.0.2", "three\n");
    let run = s.deploy(&["--keep", "2", "--json"]).expect_code(0).json();
    assert_eq!(
        run["report"]["targets"][0]["pruned"],
        serde_json::json!([b1]),
        "{run}"
    );
    assert!(!s.dir().join("releases").join(&b1).exists());
    assert!(s.dir().join("releases").join(&b2).is_dir());
    assert_eq!(s.current().as_deref(), Some(b3.as_str()));
    no_leftovers(s.dir());
}

#[test]
fn plan_writes_nothing() {
    let s = Setup::new(&PIPELINE);
    let b1 = s.release("1.0.0", "one\n");
    let target = s.dir().join("new");
    let t = target.to_str().unwrap();
    let plan =
        s.p.pipe(&[
            "--json",
            "deploy",
            "--plan",
            "--env",
            "dev",
            "--target",
            t,
            "--keyring",
            &s.ring,
            "--set",
            "port=1",
        ])
        .expect_code(0)
        .json();
    assert_eq!(plan["plan"]["build"], b1.as_str());
    assert_eq!(plan["plan"]["artifacts"][0]["name"], "demo_1.0.0_all.deb");
    assert_eq!(plan["plan"]["artifacts"][0]["cached"], false);
    assert!(
        plan["plan"]["files"]["/etc/demo/env.conf"]
            .as_str()
            .unwrap()
            .contains("port=1")
    );
    assert!(!target.exists(), "--plan created the target");
}

#[test]
fn check_lists_changed_files_and_reset_restores_them() {
    let s = Setup::new(&PIPELINE);
    s.release("1.0.0", "one\n");
    s.deploy(&[]).expect_code(0);
    s.check(s.dir()).expect_code(0);

    std::fs::write(s.dir().join("current/usr/share/demo/demo.txt"), "edited\n").unwrap();
    std::fs::remove_file(s.dir().join("current/etc/demo/env.conf")).unwrap();
    std::fs::write(s.dir().join("current/usr/share/demo/extra"), "x").unwrap();
    let run = s.check(s.dir());
    run.expect_code(3);
    for expected in [
        "usr/share/demo/demo.txt (modified)",
        "etc/demo/env.conf (missing)",
        "usr/share/demo/extra (added)",
        "3 path(s) differ",
    ] {
        assert!(
            run.stderr.contains(expected),
            "{expected:?} in:\n{}",
            run.stderr
        );
    }
    // A plain deploy sees the same build and configuration: nothing to do.
    let again = s.deploy(&["--json"]).expect_code(0).json();
    assert_eq!(again["report"]["targets"][0]["action"], "already current");
    // --reset re-creates the release from the artifacts.
    let reset = s.deploy(&["--json", "--reset"]).expect_code(0).json();
    assert_eq!(reset["report"]["targets"][0]["action"], "reset");
    s.check(s.dir()).expect_code(0);
    assert_eq!(read(s.dir(), "usr/share/demo/demo.txt"), "one\n");
    assert!(!s.dir().join("current/usr/share/demo/extra").exists());
    no_leftovers(s.dir());
}

#[test]
fn rpm_only_packages_are_unpacked_from_the_cpio_payload() {
    let s = Setup::new(&PIPELINE.replace("formats = [\"deb\", \"rpm\"]", "formats = [\"rpm\"]"));
    s.release("1.0.0", "from rpm\n");
    let run = s.deploy(&[]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("demo-1.0.0-1.noarch.rpm"),
        "{}",
        run.stdout
    );
    assert_eq!(read(s.dir(), "usr/share/demo/demo.txt"), "from rpm\n");
    assert_eq!(read(s.dir(), "usr/bin/demo"), "#!/bin/sh\necho demo\n");
    s.check(s.dir()).expect_code(0);
}

#[test]
fn several_targets_are_deployed_with_one_fetch() {
    let s = Setup::new(&PIPELINE);
    let b1 = s.release("1.0.0", "one\n");
    let other = tempfile::tempdir().unwrap();
    let list = s.p.path().join("targets.txt");
    std::fs::write(&list, format!("# the fleet\n{}\n", other.path().display())).unwrap();
    let dir = s.dir().to_str().unwrap();
    let doc =
        s.p.pipe(&[
            "--json",
            "deploy",
            "--env",
            "dev",
            "--target",
            dir,
            "--targets-file",
            list.to_str().unwrap(),
            "--keyring",
            &s.ring,
            "--set",
            "port=80",
        ])
        .expect_code(0)
        .json();
    assert_eq!(
        doc["report"]["artifacts"].as_array().unwrap().len(),
        1,
        "fetched once: {doc}"
    );
    assert_eq!(doc["report"]["targets"].as_array().unwrap().len(), 2);
    for d in [s.dir(), other.path()] {
        assert_eq!(current(d).as_deref(), Some(b1.as_str()));
        assert_eq!(read(d, "usr/share/demo/demo.txt"), "one\n");
        let blobs = std::fs::read_dir(d.join(".pipe/cache/blobs"))
            .unwrap()
            .count();
        assert_eq!(blobs, 1, "each target can redeploy from its own cache");
    }
}

#[test]
fn two_deploys_into_one_directory_run_one_after_the_other() {
    let s = Setup::new(&PIPELINE);
    let b1 = s.release("1.0.0", "one\n");
    let dir = s.dir().to_str().unwrap().to_string();
    let runs = s.p.race(
        2,
        &[
            "--json",
            "deploy",
            "--env",
            "dev",
            "--target",
            &dir,
            "--keyring",
            &s.ring,
            "--set",
            "port=80",
        ],
        &[],
    );
    let mut actions: Vec<String> = runs
        .iter()
        .map(|r| {
            r.expect_code(0);
            r.json()["report"]["targets"][0]["action"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    actions.sort();
    assert_eq!(
        actions,
        ["already current", "deployed"],
        "the second waited for the first"
    );
    assert_eq!(s.current().as_deref(), Some(b1.as_str()));
    s.check(s.dir()).expect_code(0);
    no_leftovers(s.dir());
}

#[test]
fn a_deploy_killed_at_any_step_leaves_the_old_release_live() {
    let points = [
        "deploy-resolved",
        "deploy-fetched",
        "deploy-verified",
        "deploy-unpacked",
        "deploy-configured",
        "deploy-released",
        "deploy-switching",
        "deploy-switched",
    ];
    let mut s = Setup::new(&PIPELINE);
    let mut old = s.release("1.0.0", "v0\n");
    s.deploy(&[]).expect_code(0);
    for (i, point) in points.iter().enumerate() {
        let new = s.release(&format!("1.0.{}", i + 1), &format!("v{}\n", i + 1));
        s.p.env("PIPE_FAULT", point);
        let killed = s.deploy(&[]);
        assert_eq!(killed.code, 137, "{point}: {}", killed.stderr);
        // `current` is the commit point: before its rename the old release
        // is live, whole.
        let live = if *point == "deploy-switched" {
            &new
        } else {
            &old
        };
        assert_eq!(s.current().as_ref(), Some(live), "{point}");
        s.p.env("PIPE_FAULT", "none");
        s.check(s.dir()).expect_code(0);
        // The next deploy finishes the job and cleans up.
        s.deploy(&[]).expect_code(0);
        assert_eq!(s.current().as_ref(), Some(&new), "{point}");
        assert_eq!(
            read(s.dir(), "usr/share/demo/demo.txt"),
            format!("v{}\n", i + 1)
        );
        s.check(s.dir()).expect_code(0);
        no_leftovers(s.dir());
        old = new;
    }
}

#[test]
fn after_runs_in_the_new_release_and_its_failure_switches_back() {
    let toml = PIPELINE.replace("[deploy]\n", "[deploy]\nafter = \"test -f usr/bin/demo && grep -q two usr/share/demo/demo.txt || { echo 'health check failed' >&2; exit 7; }\"\n");
    let s = Setup::new(&toml);
    let b1 = s.release("1.0.0", "one\n");
    // The first deploy's check fails: there is nothing to switch back to.
    let run = s.deploy(&[]);
    run.expect_code(1);
    assert!(run.stderr.contains("`[deploy] after`"), "{}", run.stderr);
    assert!(run.stderr.contains("exited with code 7"), "{}", run.stderr);
    assert!(run.stderr.contains("health check failed"), "{}", run.stderr);
    assert_eq!(s.current(), None);
    assert!(
        !s.dir().join("releases").join(&b1).exists(),
        "the failed release is removed"
    );

    let b2 = s.release("1.0.1", "two\n");
    s.deploy(&[]).expect_code(0);
    assert_eq!(s.current().as_deref(), Some(b2.as_str()));
    let b3 = s.release("1.0.2", "three\n");
    let run = s.deploy(&[]);
    run.expect_code(1);
    assert!(
        run.stderr.contains(&format!("switched back to {b2}")),
        "{}",
        run.stderr
    );
    assert_eq!(s.current().as_deref(), Some(b2.as_str()));
    assert!(!s.dir().join("releases").join(&b3).exists());
    let log = std::fs::read_to_string(s.dir().join(".pipe/deploys.jsonl")).unwrap();
    assert!(
        log.lines().last().unwrap().contains("\"ok\":false"),
        "{log}"
    );
}

/// Deploys b1, then makes `tamper` break something, then expects the deploy
/// of what dev points at now to fail with `code` and `message`, b1 still
/// live and whole.
fn refused(s: &Setup, code: i32, message: &str, extra: &[&str]) {
    let before = s.current();
    let run = s.deploy(extra);
    run.expect_code(code);
    assert!(
        run.stderr.contains(message),
        "{message:?} not in:\n{}",
        run.stderr
    );
    assert_eq!(s.current(), before, "current changed");
    if before.is_some() {
        s.check(s.dir()).expect_code(0);
    }
    no_leftovers(s.dir());
}

#[test]
fn refusals_name_the_reason_and_leave_current_alone() {
    let s = Setup::new(&PIPELINE);
    let b1 = s.release("1.0.0", "one\n");
    s.deploy(&[]).expect_code(0);
    let b2 = s.release("1.0.1", "two\n");
    let store = s.p.path().join(".pipe/store");

    // Usage: an undeclared environment, a template value nobody gave.
    let dir = s.dir().to_str().unwrap();
    let run = s.p.pipe(&[
        "deploy",
        "--env",
        "qa",
        "--target",
        dir,
        "--keyring",
        &s.ring,
    ]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("environment `qa` is not declared"),
        "{}",
        run.stderr
    );
    let run = s.deploy_to(dir, &s.ring, &[]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("template for `/etc/demo/env.conf` uses `{{ port }}`, which has no value"),
        "{}",
        run.stderr
    );
    assert_eq!(s.current().as_deref(), Some(b1.as_str()));
    let run = s.deploy(&["--set", "env=prod"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("`env` is set by deploy itself"),
        "{}",
        run.stderr
    );

    // A keyring without the project key.
    let (_stranger, other_ring) = stranger_ring();
    let run = s.deploy_to(dir, &other_ring, &["--set", "port=80"]);
    run.expect_code(3);
    assert!(
        run.stderr.contains("history of `dev`, entry 1"),
        "{}",
        run.stderr
    );
    assert_eq!(s.current().as_deref(), Some(b1.as_str()));

    // A tampered artifact in the store: refused while streaming, nothing cached.
    let verified = pipe_e2e::verified(&s.p, &b2);
    let deb = pipe_e2e::artifact_of_kind(&verified, "deb");
    let deb_blake3 = deb["blake3"].as_str().unwrap();
    let blob = store.join(deb["store_key"].as_str().unwrap());
    let good = std::fs::read(&blob).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    std::fs::write(&blob, &bad).unwrap();
    refused(&s, 3, "is corrupt: expected blake3", &[]);
    assert!(!s.dir().join(".pipe/cache/blobs").join(deb_blake3).exists());
    std::fs::write(&blob, &good).unwrap();

    // A tampered cache entry is hashed again and refused (then dropped).
    s.deploy(&["--plan"]).expect_code(0);
    let p = s.fetch(dir, false);
    p.expect_code(0);
    let cached = s.dir().join(".pipe/cache/blobs").join(deb_blake3);
    std::fs::write(&cached, &bad).unwrap();
    refused(&s, 3, "demo_1.0.1_all.deb: sha256: expected", &[]);
    assert!(!cached.exists());

    // A manifest edited in the store fails its signature.
    let mpath = store.join(format!("builds/{b2}/manifest.json"));
    let text = std::fs::read_to_string(&mpath).unwrap();
    std::fs::write(&mpath, text.replace("\"demo\"", "\"dem0\"")).unwrap();
    refused(&s, 3, "signature of manifest.json", &[]);
    std::fs::write(&mpath, text).unwrap();

    // A provenance that is missing: a build is only trusted whole.
    let ppath = store.join(format!("builds/{b2}/provenance.json"));
    let prov = std::fs::read(&ppath).unwrap();
    std::fs::remove_file(&ppath).unwrap();
    refused(&s, 3, "provenance.json: cannot be read", &[]);
    std::fs::write(&ppath, prov).unwrap();

    // A broken history chain: an entry removed. A target that verified
    // that entry before reads only the entries after it (the new head,
    // chained to it by digest); a new target reads the history whole and
    // refuses it.
    let h1 = store.join("envs/dev/history/00000001.json");
    let entry = std::fs::read(&h1).unwrap();
    std::fs::remove_file(&h1).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let run = s.deploy_to(
        fresh.path().to_str().unwrap(),
        &s.ring,
        &["--set", "port=80"],
    );
    run.expect_code(3);
    assert!(
        run.stderr
            .contains("history of `dev`, entry 2: expected sequence number 1"),
        "{}",
        run.stderr
    );
    assert_eq!(s.current().as_deref(), Some(b1.as_str()));
    std::fs::write(&h1, entry).unwrap();

    // A pointer re-aimed at another build without a signature for it.
    let pointer = store.join("envs/dev/pointer.json");
    let text = std::fs::read_to_string(&pointer).unwrap();
    std::fs::write(&pointer, text.replace(&b2, &b1)).unwrap();
    refused(&s, 3, "pointer of `dev`: entry 2", &[]);
    std::fs::write(&pointer, text).unwrap();

    // All repaired: the deploy goes through.
    s.deploy(&[]).expect_code(0);
    assert_eq!(s.current().as_deref(), Some(b2.as_str()));
}

/// An `ar` member as dpkg writes it.
fn ar_member(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    out.extend_from_slice(
        format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            name,
            0,
            0,
            0,
            "100644",
            data.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(b'\n');
    }
}

/// One raw tar entry: the name and link name are written as given, so they
/// can say what `tar::Builder` would refuse to.
fn tar_entry(
    tar: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    mode: u32,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    {
        let g = h.as_gnu_mut().unwrap();
        g.name[..name.len()].copy_from_slice(name.as_bytes());
        g.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    tar.append(&h, data).unwrap();
}

/// A tar entry to craft: name, type, mode, link target.
type RawEntry<'a> = (&'a str, tar::EntryType, u32, &'a str);

/// A .deb whose data.tar holds `entries` after a good file.
fn hostile_deb(entries: &[RawEntry]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    tar_entry(
        &mut tar,
        "./usr/",
        tar::EntryType::Directory,
        0o755,
        "",
        b"",
    );
    tar_entry(
        &mut tar,
        "./usr/good",
        tar::EntryType::Regular,
        0o644,
        "",
        b"good\n",
    );
    for (name, kind, mode, link) in entries {
        let data: &[u8] = if *kind == tar::EntryType::Regular {
            b"evil\n"
        } else {
            b""
        };
        tar_entry(&mut tar, name, *kind, *mode, link, data);
    }
    let data = tar.into_inner().unwrap();
    let mut deb = b"!<arch>\n".to_vec();
    ar_member(&mut deb, "debian-binary", b"2.0\n");
    // A real control file: publishing records it for the apt index.
    let mut control = tar::Builder::new(Vec::new());
    tar_entry(
        &mut control,
        "./control",
        tar::EntryType::Regular,
        0o644,
        "",
        b"Package: demo\nVersion: 6.6.6\nArchitecture: all\nMaintainer: Evil <evil@example.com>\nDescription: hostile\n",
    );
    ar_member(&mut deb, "control.tar", &control.into_inner().unwrap());
    ar_member(&mut deb, "data.tar", &data);
    deb
}

/// Replaces the .deb of the local build `build` with `deb` under a new
/// artifact name, re-seals and re-signs the manifest and provenance with the
/// project key (as a compromised build machine would), publishes the result
/// and points dev at it. Returns the new build id.
///
/// Written as such a machine would, from the records' formats alone: the
/// deb's entry and its `Packages` stanza in its manifest shard get the new
/// name, digests and size; the shard is renamed by its new digest; the
/// signed root (`manifest.json`, canonical pretty JSON) and the provenance
/// name the new shard; the build id is `VERSION-` and the first 16 hex
/// digits of the blake3 of the root with `build` empty.
fn doctored_build(s: &Setup, build: &str, n: usize, deb: &[u8]) -> String {
    use sha2::Digest;
    let builds = s.p.path().join(".pipe/builds");
    let old_dir = builds.join(build);
    let verified = pipe_e2e::verified(&s.p, build);
    let old = pipe_e2e::artifact_of_kind(&verified, "deb");
    let text = |v: &serde_json::Value| v.as_str().unwrap().to_string();
    let (old_name, old_blake3, old_sha256, old_size) = (
        text(&old["name"]),
        text(&old["blake3"]),
        text(&old["sha256"]),
        old["size"].as_u64().unwrap(),
    );
    let old_bytes = std::fs::read(old_dir.join(&old_name)).unwrap();
    let name = format!("demo_6.6.{n}_all.deb");
    let blake3 = blake3::hash(deb).to_hex().to_string();
    let sha256 = hex::encode(sha2::Sha256::digest(deb));
    let md5 = |b: &[u8]| hex::encode(<md5::Md5 as md5::Digest>::digest(b));
    // `"size":N` after the digest it belongs to (its blob's last field).
    let resize = |json: &str, after: &str, from: u64, to: u64| -> String {
        let at = json.find(after).expect("the digest") + after.len();
        let rest = &json[at..];
        let size = rest.find("\"size\":").unwrap() + "\"size\":".len();
        let digits = rest[size..].trim_start();
        let skipped = rest[size..].len() - digits.len();
        let old = format!("{from}");
        assert!(digits.starts_with(&old), "{}", &rest[..size + 20]);
        let cut = at + size + skipped;
        format!("{}{to}{}", &json[..cut], &json[cut + old.len()..])
    };

    // The shard that holds the deb.
    let shards = verified["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 1, "one package, no steps: {verified:#}");
    let shard_key = text(&shards[0]["store_key"]);
    let (old_shard_blake3, old_shard_sha256) =
        (text(&shards[0]["blake3"]), text(&shards[0]["sha256"]));
    let old_shard_size = shards[0]["size"].as_u64().unwrap();
    let shard = std::fs::read_to_string(old_dir.join(&shard_key)).unwrap();
    let shard = shard
        .replace(&old_name, &name)
        .replace(&old_blake3, &blake3)
        .replace(&old_sha256, &sha256)
        .replace(&md5(&old_bytes), &md5(deb))
        .replace(
            &format!("Size: {old_size}\\n"),
            &format!("Size: {}\\n", deb.len()),
        );
    let shard = resize(&shard, &sha256, old_size, deb.len() as u64);
    let shard_blake3 = blake3::hash(shard.as_bytes()).to_hex().to_string();
    let shard_sha256 = hex::encode(sha2::Sha256::digest(shard.as_bytes()));
    let new_shard_key = format!("manifests/{}/{shard_blake3}.json", &shard_blake3[..2]);

    // The signed root, sealed again.
    let root = std::fs::read_to_string(old_dir.join("manifest.json")).unwrap();
    let root = root
        .replace(&old_shard_blake3, &shard_blake3)
        .replace(&old_shard_sha256, &shard_sha256);
    let root = resize(&root, &shard_sha256, old_shard_size, shard.len() as u64);
    let unsealed = root.replace(&format!("\"build\": \"{build}\""), "\"build\": \"\"");
    assert_ne!(unsealed, root);
    let version = build.rsplit_once('-').unwrap().0;
    let id = format!(
        "{version}-{}",
        &blake3::hash(unsealed.as_bytes()).to_hex()[..16]
    );
    let root = unsealed.replace("\"build\": \"\"", &format!("\"build\": \"{id}\""));
    let provenance = std::fs::read_to_string(old_dir.join("provenance.json"))
        .unwrap()
        .replace(&shard_key, &new_shard_key)
        .replace(&old_shard_blake3, &shard_blake3)
        .replace(&old_shard_sha256, &shard_sha256);

    let dir = builds.join(&id);
    std::fs::create_dir_all(dir.join(&new_shard_key).parent().unwrap()).unwrap();
    std::fs::write(dir.join(&new_shard_key), &shard).unwrap();
    std::fs::write(dir.join(&name), deb).unwrap();
    let key = keys::SecretKey::load(&s.p.path().join("keys/release.key"), None).unwrap();
    let sign = |bytes: &[u8]| {
        key.sign_detached(bytes, SystemTime::now(), keys::Encoding::Armored)
            .unwrap()
    };
    for (name, bytes) in [
        ("manifest.json", root.as_bytes()),
        ("provenance.json", provenance.as_bytes()),
    ] {
        std::fs::write(dir.join(name), bytes).unwrap();
        std::fs::write(dir.join(format!("{name}.asc")), sign(bytes)).unwrap();
    }
    // The doctored build is whole: its signatures and shard verify.
    let doctored = pipe_e2e::verified(&s.p, &id);
    assert_eq!(
        pipe_e2e::artifact_of_kind(&doctored, "deb")["name"],
        name.as_str()
    );
    s.publish_and_promote(&id);
    id
}

#[test]
fn hostile_archives_are_refused_naming_the_entry() {
    use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};
    let s = Setup::new(&PIPELINE.replace("formats = [\"deb\", \"rpm\"]", "formats = [\"deb\"]"));
    let good = s.release("1.0.0", "one\n");
    s.deploy(&[]).expect_code(0);
    // Outside the target, next to it: where an escape would land.
    let outside: PathBuf = s.dir().join("releases");
    let cases: Vec<(Vec<RawEntry>, &str, &str)> = vec![
        (
            vec![("./../../escape", Regular, 0o644, "")],
            "./../../escape",
            "has a `..` component",
        ),
        (
            vec![("/tmp/absolute", Regular, 0o644, "")],
            "/tmp/absolute",
            "is an absolute path",
        ),
        (
            vec![("./usr/abs-link", Symlink, 0o777, "/etc/passwd")],
            "./usr/abs-link",
            "absolute path `/etc/passwd`",
        ),
        (
            vec![("./usr/up", Symlink, 0o777, "../../../escape")],
            "usr/up",
            "resolves outside the release",
        ),
        (
            vec![
                ("./d", Symlink, 0o777, "."),
                ("./x", Symlink, 0o777, "d/../escape"),
            ],
            "x",
            "resolves outside the release",
        ),
        (
            vec![
                ("./sub", Symlink, 0o777, ".."),
                ("./sub/escape", Regular, 0o644, ""),
            ],
            "./sub/escape",
            "would be written through the symlink `sub`",
        ),
        (
            vec![("./usr/hard", Link, 0o644, "/etc/passwd")],
            "./usr/hard",
            "hard link to `/etc/passwd`",
        ),
        (
            vec![("./usr/hard", Link, 0o644, "../escape")],
            "./usr/hard",
            "hard link to `../escape`",
        ),
        (
            vec![("./usr/hard", Link, 0o644, "./usr/missing")],
            "./usr/hard",
            "not a file unpacked before it",
        ),
        (
            vec![("./dev/null", Char, 0o666, "")],
            "./dev/null",
            "is a character device",
        ),
        (
            vec![("./dev/sda", Block, 0o660, "")],
            "./dev/sda",
            "is a block device",
        ),
        (
            vec![("./usr/pipe", Fifo, 0o644, "")],
            "./usr/pipe",
            "is a FIFO",
        ),
        (
            vec![("./usr/su", Regular, 0o4755, "")],
            "./usr/su",
            "setuid or setgid bit",
        ),
        (
            vec![("./usr/sg", Directory, 0o2755, "")],
            "./usr/sg",
            "setuid or setgid bit",
        ),
        (
            vec![("./usr/good", Regular, 0o644, "")],
            "./usr/good",
            "is written twice",
        ),
    ];
    for (n, (entries, entry, reason)) in cases.iter().enumerate() {
        let build = doctored_build(&s, &good, n, &hostile_deb(entries));
        let run = s.deploy(&[]);
        run.expect_code(3);
        assert!(
            run.stderr.contains(&format!("entry `{entry}`")) && run.stderr.contains(reason),
            "case {n}: entry `{entry}`, {reason:?} not in:\n{}",
            run.stderr
        );
        assert_eq!(s.current().as_deref(), Some(good.as_str()), "case {n}");
        assert!(
            !s.dir().join("releases").join(&build).exists(),
            "case {n}: a partial release"
        );
        no_leftovers(s.dir());
        for escaped in [
            s.dir().join("escape"),
            s.dir().parent().unwrap().join("escape"),
            outside.join("escape"),
        ] {
            assert!(
                !escaped.exists(),
                "case {n}: {} was written",
                escaped.display()
            );
        }
    }
    s.check(s.dir()).expect_code(0);
    // A harmless doctored archive (links inside, a hard link to a file
    // before it) deploys: the checks are not merely refusing everything.
    let fine = doctored_build(
        &s,
        &good,
        99,
        &hostile_deb(&[
            ("./usr/lib", Symlink, 0o777, "good"),
            ("./usr/hard", Link, 0o644, "./usr/good"),
            ("./usr/bin/", Directory, 0o755, ""),
            ("./usr/bin/rel", Symlink, 0o777, "../good"),
        ]),
    );
    s.deploy(&[]).expect_code(0);
    assert_eq!(s.current().as_deref(), Some(fine.as_str()));
    assert_eq!(read(s.dir(), "usr/hard"), "good\n");
    assert_eq!(read(s.dir(), "usr/bin/rel"), "good\n");
}

#[test]
fn on_s3_deploys_and_a_fetched_build_deploys_offline_from_the_cache() {
    let server = pipe_e2e::s3::MotoServer::start();
    let mut s = Setup::on_s3(&server, "");
    let b1 = s.release("1.0.0", "one\n");
    let run = s.deploy(&[]);
    run.expect_code(0);
    assert_eq!(s.current().as_deref(), Some(b1.as_str()));
    assert_eq!(read(s.dir(), "usr/share/demo/demo.txt"), "one\n");

    // Fetch ahead into another target, then lose the store.
    let offline = tempfile::tempdir().unwrap();
    let o = offline.path().to_str().unwrap();
    let fetched = s.fetch(o, true);
    fetched.expect_code(0);
    assert_eq!(fetched.json()["report"]["artifacts"][0]["cached"], false);
    drop(server);
    s.p.env("AWS_MAX_ATTEMPTS", "1");
    let run = s.deploy_to(o, &s.ring, &["--set", "port=80"]);
    run.expect_code(0);
    assert!(run.stdout.contains("used the cache"), "{}", run.stdout);
    assert!(
        run.stdout.contains("from the cache, verified"),
        "{}",
        run.stdout
    );
    assert_eq!(current(offline.path()).as_deref(), Some(b1.as_str()));
    assert_eq!(read(offline.path(), "usr/share/demo/demo.txt"), "one\n");
    // The cache is still checked against the keyring: a stranger's is refused.
    let (_stranger, other) = stranger_ring();
    let run = s.deploy_to(o, &other, &["--set", "port=80", "--reset"]);
    run.expect_code(3);
    // Nothing cached for a target that never fetched: a clear failure.
    let empty = tempfile::tempdir().unwrap();
    let run = s.deploy_to(
        empty.path().to_str().unwrap(),
        &s.ring,
        &["--set", "port=80"],
    );
    run.expect_code(2);
    assert!(
        run.stderr.contains("no target has `dev` in its cache"),
        "{}",
        run.stderr
    );
}

#[test]
fn on_s3_a_store_that_does_not_answer_deploys_from_the_cache_within_the_deadline() {
    let server = pipe_e2e::s3::MotoServer::start();
    let mut s = Setup::on_s3(&server, "request_timeout = \"1s\"\ntimeout = \"3s\"\n");
    let b1 = s.release("1.0.0", "one\n");
    let offline = tempfile::tempdir().unwrap();
    let o = offline.path().to_str().unwrap();
    s.fetch(o, false).expect_code(0);

    // The endpoint now accepts connections and never answers.
    let proxy = pipe_e2e::proxy::FaultProxy::start(server.addr(), pipe_e2e::proxy::Fault::Silent);
    s.p.env("AWS_ENDPOINT_URL", &proxy.endpoint());
    let started = std::time::Instant::now();
    let run = s.deploy_to(o, &s.ring, &["--set", "port=80"]);
    let took = started.elapsed();
    run.expect_code(0);
    assert!(
        took < std::time::Duration::from_secs(3 + 30),
        "a 3 s deadline took {took:?}"
    );
    assert!(run.stdout.contains("used the cache"), "{}", run.stdout);
    assert!(run.stdout.contains(&proxy.endpoint()), "{}", run.stdout);
    assert!(proxy.requests() >= 1);
    assert_eq!(current(offline.path()).as_deref(), Some(b1.as_str()));
}

#[test]
fn on_s3_a_deploy_host_without_credentials_reads_an_anonymous_bucket_with_no_sign() {
    let server = pipe_e2e::s3::MotoServer::start();
    let mut s = Setup::on_s3(&server, "");
    let b1 = s.release("1.0.0", "one\n");
    server.allow_anonymous_read_and_list();

    // A deploy host: no credentials anywhere (nor an instance to ask).
    let home = tempfile::tempdir().unwrap();
    let none = home.path().join("none");
    for (k, v) in [
        ("AWS_ACCESS_KEY_ID", ""),
        ("AWS_SECRET_ACCESS_KEY", ""),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", none.to_str().unwrap()),
        ("AWS_SHARED_CREDENTIALS_FILE", none.to_str().unwrap()),
        ("HOME", home.path().to_str().unwrap()),
    ] {
        s.p.env(k, v);
    }
    // Without --no-sign: one cause, one message and one exit code, whatever
    // the command; no request was sent, so nothing was "refused".
    for args in [
        vec!["status"],
        vec!["history", "dev"],
        vec![
            "fetch",
            "--env",
            "dev",
            "--target",
            s.dir().to_str().unwrap(),
            "--keyring",
            &s.ring,
        ],
        vec![
            "deploy",
            "--env",
            "dev",
            "--target",
            s.dir().to_str().unwrap(),
            "--keyring",
            &s.ring,
            "--set",
            "port=80",
        ],
    ] {
        let run = s.p.pipe(&args);
        run.expect_code(2);
        assert!(
            run.stderr.contains("no S3 credentials were found"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains("--no-sign"), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("refused"), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("WARN"), "{args:?}: {}", run.stderr);
    }
    assert_eq!(s.current(), None);

    // With --no-sign (or `[store] no_sign`), unsigned reads are enough.
    let doc =
        s.p.pipe(&["--json", "--no-sign", "status"])
            .expect_code(0)
            .json();
    assert_eq!(doc["environments"][0]["build"], b1.as_str(), "{doc}");
    let fetched = tempfile::tempdir().unwrap();
    s.p.pipe(&[
        "--no-sign",
        "fetch",
        "--env",
        "dev",
        "--target",
        fetched.path().to_str().unwrap(),
        "--keyring",
        &s.ring,
    ])
    .expect_code(0);
    let run = s.deploy(&["--no-sign"]);
    run.expect_code(0);
    assert_eq!(s.current().as_deref(), Some(b1.as_str()));
    // Writing still needs credentials: the server refuses an unsigned one.
    let run = s.p.pipe(&["--no-sign", "promote", &b1, "--to", "prod"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
}

#[test]
fn deploy_packages_selects_and_foreign_architectures_are_refused() {
    let two = PIPELINE.replace(
        "[deploy]\n",
        "[packages.extra]\nsummary = \"Extra\"\narch = \"all\"\nmaintainer = \"Ops <ops@example.com>\"\nformats = [\"deb\"]\nfiles = [{ src = \"demo.txt\", dst = \"/usr/share/extra/extra.txt\" }]\n\n[deploy]\npackages = [\"demo\"]\n",
    );
    let s = Setup::new(&two);
    s.release("1.0.0", "one\n");
    let doc = s.deploy(&["--json"]).expect_code(0).json();
    let names: Vec<&str> = doc["report"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["demo_1.0.0_all.deb"], "{doc}");
    assert!(s.dir().join("current/usr/share/demo/demo.txt").exists());
    assert!(!s.dir().join("current/usr/share/extra").exists());

    // Every package (no `[deploy] packages`) when the key is absent.
    let all = Setup::new(&two.replace("packages = [\"demo\"]\n", ""));
    all.release("1.0.0", "one\n");
    all.deploy(&[]).expect_code(0);
    assert!(all.dir().join("current/usr/share/extra/extra.txt").exists());

    // A package built only for another architecture cannot be deployed here.
    let foreign_arch = if std::env::consts::ARCH == "aarch64" {
        "amd64"
    } else {
        "arm64"
    };
    let foreign =
        Setup::new(&PIPELINE.replace("arch = \"all\"", &format!("arch = \"{foreign_arch}\"")));
    foreign.release("1.0.0", "one\n");
    let run = foreign.deploy(&[]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("package `demo` of build")
            && run.stderr.contains("has no artifact for this machine"),
        "{}",
        run.stderr
    );
    assert_eq!(foreign.current(), None);
}

#[test]
fn with_the_local_store_gone_a_fetched_build_deploys_from_the_cache() {
    let s = Setup::new(&PIPELINE);
    let b1 = s.release("1.0.0", "one\n");
    let dir = s.dir().to_str().unwrap();
    s.fetch(dir, false).expect_code(0);
    let store = s.p.path().join(".pipe/store");
    std::fs::rename(&store, s.p.path().join("store-elsewhere")).unwrap();
    let run = s.deploy(&[]);
    run.expect_code(0);
    assert!(run.stdout.contains("used the cache"), "{}", run.stdout);
    assert!(
        run.stdout.contains("the store directory does not exist"),
        "{}",
        run.stdout
    );
    assert_eq!(s.current().as_deref(), Some(b1.as_str()));
    s.check(s.dir()).expect_code(0);
    let log = std::fs::read_to_string(s.dir().join(".pipe/deploys.jsonl")).unwrap();
    assert!(log.contains("\"ok\":true"), "{log}");
}

/// A package whose payload the previous release unpacked is not decompressed
/// again: its files come from that release (reflink or copy, each checked
/// against the digest recorded when it was unpacked), never hard-linked, so
/// the releases stay independent; a copy changed since is not trusted (the
/// package is unpacked instead), and `--reset` and `--check` keep their
/// meaning.
#[test]
fn unchanged_packages_come_from_the_previous_release_checked_and_independent() {
    // rpm packages: their changelog is in the header, so a package that did
    // not change has the same payload in the next version. (A .deb's
    // generated changelog names the version: its payload always changes.)
    let toml = with_assets("rpm");
    let s = Setup::new(&toml);
    s.p.write("assets/a.txt", "alpha\n")
        .write("assets/sub/b.txt", "beta\n")
        .write("assets/big.bin", &"0123456789abcdef".repeat(40_000));
    std::os::unix::fs::symlink("a.txt", s.p.path().join("assets/link")).unwrap();

    let b1 = s.release("1.0.0", "one\n");
    let first = s.deploy(&["--json"]).expect_code(0).json();
    assert_eq!(reused(&first), Vec::<String>::new(), "nothing to reuse yet");

    // A new version changing one file of `demo`: `assets` (the same
    // payload) comes from the previous release.
    let b2 = s.release("1.0.1", "two\n");
    let second = s.deploy(&["--json"]).expect_code(0).json();
    let r2 = reused(&second);
    assert_eq!(r2.len(), 1, "{second}");
    assert!(r2[0].starts_with("assets"), "{r2:?}");
    assert_eq!(read(s.dir(), "usr/share/demo/demo.txt"), "two\n");
    assert_eq!(read(s.dir(), "srv/assets/a.txt"), "alpha\n");
    assert_eq!(read(s.dir(), "srv/assets/sub/b.txt"), "beta\n");
    assert_eq!(
        std::fs::read_link(s.dir().join("current/srv/assets/link")).unwrap(),
        Path::new("a.txt")
    );
    s.check(s.dir()).expect_code(0);
    // Independent files: not hard links, and changing the old release's
    // copy leaves the new one alone.
    use std::os::unix::fs::MetadataExt;
    let (old, new) = (
        s.dir()
            .join("releases")
            .join(&b1)
            .join("srv/assets/big.bin"),
        s.dir()
            .join("releases")
            .join(&b2)
            .join("srv/assets/big.bin"),
    );
    let (mo, mn) = (
        std::fs::metadata(&old).unwrap(),
        std::fs::metadata(&new).unwrap(),
    );
    assert_ne!(mo.ino(), mn.ino());
    assert_eq!((mo.nlink(), mn.nlink()), (1, 1));
    assert_eq!(mn.mode() & 0o7777, mo.mode() & 0o7777);
    std::fs::write(&old, "changed in the old release\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(&new).unwrap(),
        "0123456789abcdef".repeat(40_000)
    );

    // A copy changed in the live release is not trusted: the package is
    // unpacked from its archive, and the new release has the package's file.
    std::fs::write(s.dir().join("current/srv/assets/a.txt"), "edited\n").unwrap();
    s.release("1.0.2", "three\n");
    let third = s.deploy(&["--json"]).expect_code(0).json();
    assert_eq!(reused(&third), Vec::<String>::new(), "{third}");
    assert_eq!(read(s.dir(), "srv/assets/a.txt"), "alpha\n");
    assert_eq!(read(s.dir(), "usr/share/demo/demo.txt"), "three\n");
    s.check(s.dir()).expect_code(0);
    no_leftovers(s.dir());

    // From that release, the next one reuses again; `--reset` never does.
    s.release("1.0.3", "four\n");
    let fourth = s.deploy(&["--json"]).expect_code(0).json();
    assert_eq!(reused(&fourth).len(), 1, "{fourth}");
    // A local tamperer of the live release who changes a file and the
    // release's own records of it to match gets nothing in: what a copy is
    // checked against is the digest in the signed package's header.
    let live = s.dir().join("current");
    let (good, evil) = (
        blake3::hash(b"alpha\n").to_hex().to_string(),
        blake3::hash(b"EVIL!\n").to_hex().to_string(),
    );
    std::fs::write(live.join("srv/assets/a.txt"), "EVIL!\n").unwrap();
    for record in [".pipe-payloads.json", ".pipe-entries.json"] {
        let text = std::fs::read_to_string(live.join(record)).unwrap();
        assert!(text.contains(&good), "{record}");
        std::fs::write(live.join(record), text.replace(&good, &evil)).unwrap();
    }
    s.release("1.0.4", "five\n");
    let fifth = s.deploy(&["--json"]).expect_code(0).json();
    assert_eq!(reused(&fifth), Vec::<String>::new(), "{fifth}");
    assert_eq!(read(s.dir(), "srv/assets/a.txt"), "alpha\n");
    s.check(s.dir()).expect_code(0);
    let reset = s.deploy(&["--json", "--reset"]).expect_code(0).json();
    assert_eq!(reset["report"]["targets"][0]["action"], "reset");
    assert_eq!(reused(&reset), Vec::<String>::new());
    s.check(s.dir()).expect_code(0);
    assert_eq!(read(s.dir(), "srv/assets/a.txt"), "alpha\n");
}

/// A .deb with more than one xz block of payload carries a table of
/// contents (`_pipe-toc.gz`, inside the signed package; dpkg-deb reads the
/// package as before). A new version deploys each unchanged file from the
/// current release (copied, checked against the table's blake3) and decodes
/// only the blocks holding what changed (here the changed file and the
/// version-bearing changelog): the releases stay independent, a copy changed
/// in the old release (its record left as it was) gets none of its bytes in,
/// `--check` is clean and `--reset` takes nothing from the old release.
#[test]
fn a_large_deb_deploys_what_changed_and_checks_every_copy_against_its_signed_table() {
    let toml = with_assets("deb");
    let s = Setup::new(&toml);
    // 9 MiB: two xz blocks of 8 MiB.
    let big: String = (0..300_000)
        .map(|i| format!("line {i:>10} of the big file\n"))
        .collect();
    assert!(big.len() > 8 << 20);
    s.p.write("assets/a.txt", "alpha\n")
        .write("assets/sub/b.txt", "beta\n")
        .write("assets/big.txt", &big);
    std::os::unix::fs::symlink("a.txt", s.p.path().join("assets/link")).unwrap();

    let b1 = s.release("1.0.0", "one\n");
    let first = s.deploy(&["--json"]).expect_code(0).json();
    assert_eq!(reused(&first), Vec::<String>::new(), "nothing to reuse yet");
    // The table is a member after data.tar; dpkg-deb reads the package.
    let deb =
        s.p.path()
            .join(".pipe/builds")
            .join(&b1)
            .join("assets_1.0.0_all.deb");
    let members = Command::new("ar").arg("t").arg(&deb).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&members.stdout),
        "debian-binary\ncontrol.tar.xz\ndata.tar.xz\n_pipe-toc.gz\n"
    );
    for args in [["--info"], ["--contents"]] {
        let out = Command::new("dpkg-deb")
            .args(args)
            .arg(&deb)
            .output()
            .unwrap();
        assert!(out.status.success(), "dpkg-deb {args:?}: {out:?}");
        assert!(out.stderr.is_empty(), "dpkg-deb {args:?}: {out:?}");
    }

    // One file changed: the package is written from its table, the rest
    // copied from the live release.
    s.p.write("assets/a.txt", "alpha two\n");
    let b2 = s.release("1.0.1", "two\n");
    let second = s.deploy(&["--json"]).expect_code(0).json();
    let r2 = reused(&second);
    assert_eq!(r2, vec!["assets_1.0.1_all.deb".to_string()], "{second}");
    assert_eq!(read(s.dir(), "srv/assets/a.txt"), "alpha two\n");
    assert_eq!(read(s.dir(), "srv/assets/sub/b.txt"), "beta\n");
    assert_eq!(read(s.dir(), "srv/assets/big.txt"), big);
    assert_eq!(read(s.dir(), "usr/share/demo/demo.txt"), "two\n");
    assert_eq!(
        std::fs::read_link(s.dir().join("current/srv/assets/link")).unwrap(),
        Path::new("a.txt")
    );
    s.check(s.dir()).expect_code(0);
    use std::os::unix::fs::MetadataExt;
    let at = |b: &str| s.dir().join("releases").join(b).join("srv/assets/big.txt");
    let (mo, mn) = (
        std::fs::metadata(at(&b1)).unwrap(),
        std::fs::metadata(at(&b2)).unwrap(),
    );
    assert_ne!(mo.ino(), mn.ino());
    assert_eq!((mo.nlink(), mn.nlink()), (1, 1));
    std::fs::write(at(&b1), "changed in the old release\n").unwrap();
    assert_eq!(std::fs::read_to_string(at(&b2)).unwrap(), big);

    // A tamperer of the live release changes a file and leaves its record
    // (which still names the package's digest): the copy does not hash to
    // the signed table, so the file is decoded from the package.
    std::fs::write(s.dir().join("current/srv/assets/sub/b.txt"), "EVIL\n").unwrap();
    std::fs::write(s.dir().join("current/srv/assets/big.txt"), "EVIL\n").unwrap();
    s.release("1.0.2", "three\n");
    let third = s.deploy(&["--json"]).expect_code(0).json();
    assert_eq!(
        reused(&third),
        vec!["assets_1.0.2_all.deb".to_string()],
        "{third}"
    );
    assert_eq!(read(s.dir(), "srv/assets/sub/b.txt"), "beta\n");
    assert_eq!(read(s.dir(), "srv/assets/big.txt"), big);
    assert_eq!(read(s.dir(), "srv/assets/a.txt"), "alpha two\n");
    s.check(s.dir()).expect_code(0);
    no_leftovers(s.dir());

    // `--reset` unpacks everything from the packages.
    let reset = s.deploy(&["--json", "--reset"]).expect_code(0).json();
    assert_eq!(reset["report"]["targets"][0]["action"], "reset");
    assert_eq!(reused(&reset), Vec::<String>::new());
    assert_eq!(read(s.dir(), "srv/assets/big.txt"), big);
    s.check(s.dir()).expect_code(0);
}
