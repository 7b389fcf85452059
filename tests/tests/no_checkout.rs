//! Commands that read the store need no checkout: `pipe deploy`, `pipe
//! history`, `pipe status` and `pipe verify` work with `--store` from an
//! empty directory (no `pipeline.toml`), on a local store and on S3. What a
//! deploy installs and writes (`[deploy]`) comes from the signed build, not
//! from the deploy host's own file.

use std::path::Path;

use pipe_e2e::cli::{Project, Run};
use pipe_e2e::fixture::Demo;
use pipe_e2e::s3::MotoServer;

/// `[deploy]` of the project: package `demo` only, and a template.
const DEPLOY: &str = r#"
[deploy]
packages = ["demo"]
files = { "/etc/demo/env.conf" = "env={{ env }}\nport={{ port }}\n" }
"#;

/// The demo project: dev, then prod; packages `demo` (deb and rpm) and
/// `extra` (deb), of which deploy installs `demo`.
fn demo() -> Demo {
    Demo::new()
        .env("prod", Some("dev"))
        .package("extra", &["deb"])
        .toml(DEPLOY)
}

/// A project with a key, one release promoted to dev and prod, and the
/// operator's keyring; `store` is `None` for the local default store.
fn released(s3: Option<&MotoServer>) -> (Project, String, String) {
    let p = match s3 {
        Some(server) => demo().s3(server, "store"),
        None => demo(),
    }
    .create();
    let ring = p.keyring();
    let build = p.release("1.0.0");
    p.pipe(&["promote", &build, "--to", "dev"]).expect_code(0);
    p.pipe(&["promote", &build, "--to", "prod"]).expect_code(0);
    (p, ring, build)
}

fn store_url(s3: Option<&MotoServer>, p: &Project) -> String {
    match s3 {
        Some(server) => format!("s3://{}/store", server.bucket()),
        None => p.path().join(".pipe/store").to_string_lossy().into_owned(),
    }
}

/// An empty directory holding only a copy of the operator's keyring, the
/// S3 settings in the environment when the store is on S3.
fn empty_host(s3: Option<&MotoServer>, ring: &str) -> Project {
    let mut host = Project::new();
    if let Some(server) = s3 {
        for (k, v) in server.env() {
            host.env(&k, &v);
        }
    }
    std::fs::copy(ring, host.path().join("ring.asc")).unwrap();
    assert!(!host.path().join("pipeline.toml").exists());
    host
}

/// `pipe --json --store URL verify BUILD --keyring ring.asc` on `host`,
/// which must succeed: its document.
fn verify_published(host: &Project, url: &str, build: &str) -> serde_json::Value {
    ok(host.pipe_here(&[
        "--json",
        "--store",
        url,
        "verify",
        build,
        "--keyring",
        "ring.asc",
    ]))
    .json()
}

fn ok(run: Run) -> Run {
    run.expect_code(0);
    run
}

fn deploy_from_an_empty_directory(s3: Option<&MotoServer>) {
    let (p, ring, build) = released(s3);
    let url = store_url(s3, &p);
    let host = empty_host(s3, &ring);
    // `pipe fetch` too: verified into the target's cache, no checkout.
    ok(host.pipe_here(&[
        "--store",
        &url,
        "fetch",
        "--env",
        "prod",
        "--target",
        "srv",
        "--keyring",
        "ring.asc",
    ]));
    assert!(host.path().join("srv/.pipe/cache").is_dir());
    let run = ok(host.pipe_here(&[
        "--store",
        &url,
        "deploy",
        "--env",
        "prod",
        "--target",
        "srv",
        "--keyring",
        "ring.asc",
        "--set",
        "port=8080",
    ]));
    let current = host.path().join("srv/current");
    assert_eq!(
        std::fs::read_to_string(current.join("etc/demo/env.conf")).unwrap(),
        "env=prod\nport=8080\n",
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(current.join("usr/share/demo/demo.txt")).unwrap(),
        "one\n"
    );
    // `[deploy] packages` of the build: `extra` is not installed.
    assert!(!current.join("usr/share/extra").exists());
    assert!(
        std::fs::read_link(&current)
            .unwrap()
            .to_string_lossy()
            .contains(&build)
    );

    // history, status and verify read the store the same way.
    let history = ok(host.pipe_here(&[
        "--json",
        "--store",
        &url,
        "history",
        "prod",
        "--keyring",
        "ring.asc",
    ]))
    .json();
    assert_eq!(history["entries"][0]["entry"]["build"], build.as_str());
    assert_eq!(history["signatures_checked"], true);
    let status = ok(host.pipe_here(&["--json", "--store", &url, "status"])).json();
    assert!(status.to_string().contains(&build), "{status}");
    let verified = verify_published(&host, &url, &build);
    assert_eq!(verified["build"], build.as_str());
    let checks = verified["checks"].to_string();
    assert!(checks.contains("demo_1.0.0_all.deb"), "{checks}");
    assert!(checks.contains("extra_1.0.0_all.deb"), "{checks}");
    // Without `--store` there is nothing to read: the usual error, exit 2.
    host.pipe_here(&["history", "prod"]).expect_code(2);
}

#[test]
fn deploy_history_status_verify_from_an_empty_directory_on_a_local_store() {
    deploy_from_an_empty_directory(None);
}

#[test]
fn deploy_history_status_verify_from_an_empty_directory_on_s3() {
    let server = MotoServer::start();
    deploy_from_an_empty_directory(Some(&server));
}

/// A deploy host whose own `pipeline.toml` says something else in `[deploy]`
/// (another template, every package) deploys what the build signed.
#[test]
fn a_deploy_follows_the_builds_deploy_section_not_the_hosts_file() {
    let (p, ring, _build) = released(None);
    let changed = demo()
        .pipeline_toml()
        .replace(
            "env={{ env }}\\nport={{ port }}\\n",
            "unsigned={{ env }}\\n",
        )
        .replace("packages = [\"demo\"]\n", "");
    p.write("pipeline.toml", &changed);
    let target = tempfile::tempdir().unwrap();
    let t = target.path().to_str().unwrap();
    ok(p.pipe(&[
        "deploy",
        "--env",
        "dev",
        "--target",
        t,
        "--keyring",
        &ring,
        "--set",
        "port=1",
    ]));
    let current = target.path().join("current");
    assert_eq!(
        std::fs::read_to_string(current.join("etc/demo/env.conf")).unwrap(),
        "env=dev\nport=1\n"
    );
    assert!(!current.join("usr/share/extra").exists());
}

/// A verify of a published build whose blob was changed in the store fails
/// (exit 3), naming the blob.
#[test]
fn verify_of_a_published_build_reads_every_blob() {
    let (p, ring, build) = released(None);
    let host = empty_host(None, &ring);
    let url = store_url(None, &p);
    let verified = verify_published(&host, &url, &build);
    let blake3 = verified["artifacts"][0]["blake3"].as_str().unwrap();
    let blob = Path::new(&url).join(verified["artifacts"][0]["store_key"].as_str().unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let _ = std::fs::remove_file(&blob);
    std::fs::write(&blob, &bytes).unwrap();
    let run = host.pipe_here(&["--store", &url, "verify", &build, "--keyring", "ring.asc"]);
    run.expect_code(3);
    assert!(run.stderr.contains(blake3), "{}", run.stderr);
}
