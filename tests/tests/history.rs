//! Incremental history: `pipe promote` (the operator's `.pipe/history`) and
//! `pipe deploy` (the target's cache and remembered head) fetch and verify
//! only the entries after the last head they verified, several at once,
//! counted at the S3 server's door; a store that serves a truncated or
//! forked history is still refused by deploy.

use std::path::Path;
use std::time::Duration;

use pipe_e2e::cli::{Project, Run};
use pipe_e2e::proxy::{Fault, FaultProxy};
use pipe_e2e::s3::MotoServer;

const PIPELINE: &str = r#"[project]
name = "demo"
version = "1.0.0"
source_date_epoch = 1700000000

[store]
STORE_URL

[environments.dev]

[packages.demo]
summary = "Demo"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb"]
files = [{ src = "demo.txt", dst = "/usr/share/demo/demo.txt" }]
"#;

/// Entries added at once; each is one request to read back.
const LONG: usize = 300;

struct Setup {
    p: Project,
    ring: String,
    store: String,
}

impl Setup {
    fn new(store: &str, env: &[(String, String)]) -> Setup {
        let mut p = Project::new();
        p.write(
            "pipeline.toml",
            &PIPELINE.replace("STORE_URL", &format!("url = \"{store}\"")),
        )
        .write("demo.txt", "zero\n");
        for (k, v) in env {
            p.env(k, v);
        }
        p.with_signing_key();
        let ring = p.keyring();
        Setup {
            p,
            ring,
            store: store.to_string(),
        }
    }

    fn build(&self, version: &str) -> String {
        let toml = std::fs::read_to_string(self.p.path().join("pipeline.toml")).unwrap();
        self.p.write(
            "pipeline.toml",
            &toml.replacen(
                "version = \"1.0.0\"",
                &format!("version = \"{version}\""),
                1,
            ),
        );
        self.p.write("demo.txt", &format!("{version}\n"));
        let b = self.p.pipe(&["--json", "build"]).expect_code(0).json()["build"]
            .as_str()
            .unwrap()
            .to_string();
        self.p.pipe(&["publish", &b]).expect_code(0);
        b
    }

    /// Appends `n` signed entries alternating between `builds` to dev.
    fn extend(&self, n: usize, builds: &[&str], env: &[(String, String)]) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_long-history"))
            .current_dir(self.p.path())
            .args([&self.store, "keys/release.key", "dev", &n.to_string()])
            .args(builds)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn deploy(&self, target: &Path, env: &[(&str, &str)]) -> Run {
        let cmd = [
            "deploy",
            "--env",
            "dev",
            "--target",
            target.to_str().unwrap(),
            "--keyring",
            &self.ring,
        ];
        self.p.start(&cmd, env).wait()
    }
}

#[test]
fn on_s3_promote_and_deploy_fetch_only_the_entries_after_the_last_verified_head() {
    let server = MotoServer::start();
    let proxy = FaultProxy::start(server.addr(), Fault::Delay(Duration::ZERO));
    let direct = server.env();
    let s = Setup::new(&format!("s3://{}/demo", server.bucket()), &direct);
    let b1 = s.build("1.0.0");
    s.p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let b2 = s.build("1.0.1");
    s.extend(LONG, &[&b2, &b1], &direct); // ends at b1
    let counted = [("AWS_ENDPOINT_URL", proxy.endpoint())];
    let counted: Vec<(&str, &str)> = counted.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let promote = |build: &str| {
        let before = proxy.requests();
        s.p.start(&["promote", build, "--to", "dev"], &counted)
            .wait()
            .expect_code(0);
        proxy.requests() - before
    };

    // Nothing remembered: every entry is read.
    std::fs::remove_dir_all(s.p.path().join(".pipe/history")).unwrap();
    let cold = promote(&b2);
    // Five entries more: only those are read.
    s.extend(5, &[&b1, &b2], &direct); // ends at b1
    let warm = promote(&b2);
    eprintln!("promote after {LONG} new entries: {cold} requests; after 5: {warm}");
    assert!(cold > LONG as u64, "{cold}");
    assert!(warm + (LONG as u64 - 50) < cold, "cold {cold}, warm {warm}");

    // Deploy: the target's cache and remembered head.
    let target = tempfile::tempdir().unwrap();
    let deploy = || {
        let before = proxy.requests();
        s.deploy(target.path(), &counted).expect_code(0);
        proxy.requests() - before
    };
    let cold = deploy();
    s.extend(5, &[&b1, &b2], &direct);
    let warm = deploy();
    eprintln!(
        "deploy of a history of {}: {cold} requests; 5 entries later: {warm}",
        LONG + 7
    );
    assert!(cold > LONG as u64, "{cold}");
    assert!(warm + (LONG as u64 - 50) < cold, "cold {cold}, warm {warm}");

    // The store truncated back to an older head: refused, exit 3.
    let client = server.client();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = |k: &str| format!("demo/{k}");
    let seq = |n: u64| format!("envs/dev/history/{n:08}.json");
    let head: serde_json::Value = rt.block_on(async {
        let out = client
            .get_object()
            .bucket(server.bucket())
            .key(key("envs/dev/pointer.json"))
            .send()
            .await
            .unwrap();
        serde_json::from_slice(&out.body.collect().await.unwrap().into_bytes()).unwrap()
    });
    let top = head["entry"]["seq"].as_u64().unwrap();
    rt.block_on(async {
        let older = client
            .get_object()
            .bucket(server.bucket())
            .key(key(&seq(top - 3)))
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        for n in top - 2..=top {
            client
                .delete_object()
                .bucket(server.bucket())
                .key(key(&seq(n)))
                .send()
                .await
                .unwrap();
        }
        client
            .put_object()
            .bucket(server.bucket())
            .key(key("envs/dev/pointer.json"))
            .body(older.into())
            .send()
            .await
            .unwrap();
        // Its freshness statement named the newer head; without one the
        // truncation is judged by the remembered head alone.
        client
            .delete_object()
            .bucket(server.bucket())
            .key(key("envs/dev/timestamp.json"))
            .send()
            .await
            .unwrap();
    });
    let run =
        s.p.start(
            &[
                "deploy",
                "--env",
                "dev",
                "--target",
                target.path().to_str().unwrap(),
                "--keyring",
                &s.ring,
                "--allow-expired",
            ],
            &counted,
        )
        .wait();
    run.expect_code(3);
    assert!(run.stderr.contains("older than entry"), "{}", run.stderr);
}

/// A store whose history was replaced from some entry on by another one
/// (signed by the same key: a fork), longer than what the target verified:
/// deploy reads it whole and refuses it, exit 3, and the operator's
/// promote verifies it whole rather than trusting what it remembered.
#[test]
fn a_forked_history_is_refused_by_deploy_after_incremental_reads_local() {
    let s = Setup::new(".pipe/store", &[]);
    let b1 = s.build("1.0.0");
    s.p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let b2 = s.build("1.0.1");
    s.extend(20, &[&b2, &b1], &[]);
    let target = tempfile::tempdir().unwrap();
    s.deploy(target.path(), &[]).expect_code(0);
    s.extend(3, &[&b2], &[]);
    s.deploy(target.path(), &[]).expect_code(0);

    // Fork at entry 10: the pointer goes back to entry 9, the copies after
    // it go, and 30 other entries follow.
    let store = s.p.path().join(".pipe/store");
    let hist = store.join("envs/dev/history");
    let nine = std::fs::read(hist.join(format!("{:08}.json", 9))).unwrap();
    for e in std::fs::read_dir(&hist).unwrap().flatten() {
        let n: u64 = e.file_name().to_str().unwrap()[..8].parse().unwrap();
        if n >= 10 {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    std::fs::write(store.join("envs/dev/pointer.json"), nine).unwrap();
    s.extend(30, &[&b1, &b2, &b2], &[]);
    let run = s.deploy(target.path(), &[]);
    run.expect_code(3);
    assert!(run.stderr.contains("does not extend"), "{}", run.stderr);

    // The operator's remembered history is not believed over the store's
    // signatures: the fork is read and verified whole, and promote goes on
    // from the store's head.
    let run = s.p.pipe(&["--json", "promote", &b1, "--to", "dev"]);
    run.expect_code(0);
    assert_eq!(run.json()["entry"]["seq"], 40, "{}", run.stdout);
    let history = s.p.pipe(&["--json", "history", "dev"]);
    history.expect_code(0);
}
