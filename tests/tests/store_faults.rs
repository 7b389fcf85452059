//! An S3 store that does not answer, answers late, or throttles: every
//! request has a connect and a per-request timeout, throttling and 5xx are
//! retried with backoff, and each store operation has a deadline. A command
//! either succeeds after retries or fails within its deadline, naming the
//! endpoint and the operation. Real moto behind a misbehaving proxy
//! (`tests/src/proxy.rs`); the only time limits checked are "within the
//! configured deadline plus a generous margin".

use std::path::Path;
use std::time::{Duration, Instant};

use pipe_e2e::cli::Project;
use pipe_e2e::proxy::{Fault, FaultProxy};
use pipe_e2e::s3::{MotoServer, overrides_for};
use pipeline::Error;
use pipeline::store::{Network, OpenOptions, Store, StoreUrl};

const PIPELINE: &str = r#"[project]
name = "demo"
version = "1.0.0"

[environments.dev]
"#;

/// Slack on top of a configured deadline: process start, a loaded machine.
const MARGIN: Duration = Duration::from_secs(30);

/// A project whose AWS settings point at `endpoint` with the test credentials.
fn project_at(endpoint: &str, server: &MotoServer, toml: &str) -> Project {
    let mut p = Project::new();
    p.write("pipeline.toml", toml);
    for (k, v) in server.env() {
        p.env(&k, &v);
    }
    p.env("AWS_ENDPOINT_URL", endpoint);
    p
}

#[test]
fn an_endpoint_that_never_answers_fails_within_the_deadline_naming_it() {
    let server = MotoServer::start();
    let proxy = FaultProxy::start(server.addr(), Fault::Silent);
    let url = format!("s3://{}/demo", server.bucket());

    // Flags.
    let p = project_at(&proxy.endpoint(), &server, PIPELINE);
    let started = Instant::now();
    let run = p.pipe(&[
        "--store",
        &url,
        "--request-timeout",
        "1s",
        "--timeout",
        "4s",
        "status",
    ]);
    let took = started.elapsed();
    run.expect_code(1);
    assert!(took < Duration::from_secs(4) + MARGIN, "took {took:?}");
    for part in [
        proxy.endpoint().as_str(),
        "GetObject",
        "pipe-store.json",
        "did not answer",
        "hint:",
    ] {
        assert!(run.stderr.contains(part), "{part}: {}", run.stderr);
    }
    assert!(proxy.requests() >= 1);

    // The same from `[store]`, and `--json` gets the error as a document.
    let toml = format!(
        "{PIPELINE}\n[store]\nurl = \"{url}\"\nrequest_timeout = \"1s\"\ntimeout = \"3s\"\nattempts = 2\n"
    );
    let p = project_at(&proxy.endpoint(), &server, &toml);
    let started = Instant::now();
    let run = p.pipe(&["--json", "status"]);
    let took = started.elapsed();
    run.expect_code(1);
    assert!(took < Duration::from_secs(3) + MARGIN, "took {took:?}");
    let doc = run.json();
    assert_eq!(doc["ok"], false);
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains(&proxy.endpoint()), "{message}");
    assert!(message.contains("GetObject"), "{message}");
}

#[test]
fn a_slow_endpoint_works_within_the_timeouts_and_fails_past_them() {
    let server = MotoServer::start();
    let proxy = FaultProxy::start(server.addr(), Fault::Delay(Duration::from_millis(1500)));
    let url = format!("s3://{}/demo", server.bucket());
    let p = project_at(&proxy.endpoint(), &server, PIPELINE);

    // Answers come 1.5 s late: within a 10 s request timeout, status works.
    let run = p.pipe(&["--store", &url, "--request-timeout", "10s", "status"]);
    run.expect_code(0);
    assert!(proxy.faulted() >= 1);

    // With 1 s per request and a 5 s deadline, every attempt times out.
    let started = Instant::now();
    let run = p.pipe(&[
        "--store",
        &url,
        "--request-timeout",
        "1s",
        "--timeout",
        "5s",
        "status",
    ]);
    let took = started.elapsed();
    run.expect_code(1);
    assert!(took < Duration::from_secs(5) + MARGIN, "took {took:?}");
    assert!(run.stderr.contains(&proxy.endpoint()), "{}", run.stderr);
    assert!(run.stderr.contains("GetObject"), "{}", run.stderr);
}

#[test]
fn throttling_is_retried_with_backoff_until_the_attempts_run_out() {
    let server = MotoServer::start();
    let url = StoreUrl::parse(&format!("s3://{}/demo", server.bucket()), Path::new("/")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // Three 503 SlowDown answers, then the server: reads and writes succeed
    // with the default five attempts.
    let proxy = FaultProxy::start(server.addr(), Fault::Unavailable(3));
    rt.block_on(async {
        let store = Store::open_with(
            &url,
            &OpenOptions::default(),
            &overrides_for(&proxy.endpoint()),
        )
        .await
        .unwrap();
        let put = store.put_blob(&b"through throttling"[..]).await.unwrap();
        assert!(put.uploaded);
        let mut r = store.get_blob(&put.blob).await.unwrap();
        let mut back = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut r, &mut back)
            .await
            .unwrap();
        assert_eq!(back, b"through throttling");
    });
    assert_eq!(proxy.faulted(), 3);

    // The CLI too, through a fresh run of throttling.
    let proxy = FaultProxy::start(server.addr(), Fault::Unavailable(2));
    let p = project_at(&proxy.endpoint(), &server, PIPELINE);
    let doc = p
        .pipe(&["--json", "--store", &url.to_string(), "status"])
        .expect_code(0)
        .json();
    assert_eq!(doc["blobs"]["count"], 1, "{doc}");
    assert_eq!(proxy.faulted(), 2);

    // Throttling that outlasts the attempts: the error names the endpoint,
    // the operation and what the server said.
    let proxy = FaultProxy::start(server.addr(), Fault::Unavailable(u64::MAX));
    rt.block_on(async {
        let opts = OpenOptions {
            network: Network {
                attempts: Some(2),
                ..Network::default()
            },
            ..OpenOptions::default()
        };
        let err = Store::open_with(&url, &opts, &overrides_for(&proxy.endpoint()))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::S3 { .. }), "{err:?}");
        assert!(msg.contains(&proxy.endpoint()), "{msg}");
        assert!(msg.contains("GetObject") && msg.contains("503"), "{msg}");
    });
    assert_eq!(proxy.faulted(), 2, "two attempts, no more");
}

#[test]
fn store_settings_are_validated_with_positions() {
    let p = Project::new();
    p.write(
        "pipeline.toml",
        "[project]\nname = \"demo\"\nversion = \"1.0.0\"\n\n[store]\ntimeout = \"soon\"\nattempts = 0\nno_sign = \"yes\"\nrequest_timeout = 30\n",
    );
    let run = p.pipe(&["validate"]);
    run.expect_code(2);
    for part in [
        "pipeline.toml:6:11",
        "`store.timeout`",
        "pipeline.toml:7:12",
        "`store.attempts` is 0",
        "pipeline.toml:8:11",
        "`store.no_sign`",
        "pipeline.toml:9:19",
        "`store.request_timeout` must be a string",
    ] {
        assert!(run.stderr.contains(part), "{part}: {}", run.stderr);
    }
    // A flag checks its value as clap does: a usage error.
    let run = p.pipe(&["--timeout", "0s", "status"]);
    run.expect_code(2);
    assert!(run.stderr.contains("is zero"), "{}", run.stderr);
}

/// `pipe publish` of a build already published repairs the store's copy of
/// a blob that was lost (or is of the wrong size); `--read-back` also finds
/// one damaged at the same size, by reading every blob back. The pool copy
/// apt and dnf fetch is remade with it.
#[test]
fn publish_uploads_again_a_blob_lost_or_damaged_in_the_store() {
    let server = MotoServer::start();
    let mut p = Project::new();
    let toml = format!(
        "[project]\nname = \"demo\"\nversion = \"1.0.0\"\nsource_date_epoch = 1700000000\n\n[store]\nurl = \"s3://{}/demo\"\n\n[environments.dev]\n\n[packages.demo]\nsummary = \"Demo\"\narch = \"all\"\nmaintainer = \"Ops <ops@example.com>\"\nformats = [\"deb\"]\nfiles = [{{ src = \"demo.txt\", dst = \"/usr/share/demo/demo.txt\" }}]\n",
        server.bucket()
    );
    p.write("pipeline.toml", &toml).write("demo.txt", "one\n");
    for (k, v) in server.env() {
        p.env(&k, &v);
    }
    p.with_signing_key();
    let ring = p.keyring();
    let doc = p.pipe(&["--json", "build"]).expect_code(0).json();
    let build = doc["build"].as_str().unwrap().to_string();
    let blob_key = format!(
        "demo/{}",
        doc["artifacts"][0]["store_key"].as_str().unwrap()
    );
    let deb = std::fs::read(doc["artifacts"][0]["path"].as_str().unwrap()).unwrap();
    p.pipe(&["publish", &build]).expect_code(0);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = server.client();
    let bucket = server.bucket().to_string();
    let get = |key: &str| -> Option<Vec<u8>> {
        rt.block_on(async {
            let out = client
                .get_object()
                .bucket(&bucket)
                .key(key)
                .send()
                .await
                .ok()?;
            Some(out.body.collect().await.unwrap().into_bytes().to_vec())
        })
    };
    let put = |key: &str, bytes: Vec<u8>| {
        rt.block_on(
            client
                .put_object()
                .bucket(&bucket)
                .key(key)
                .body(bytes.into())
                .send(),
        )
        .unwrap();
    };
    let pool_key = rt.block_on(async {
        let listed = client
            .list_objects_v2()
            .bucket(&bucket)
            .prefix("demo/pool/")
            .send()
            .await
            .unwrap();
        listed.contents()[0].key().unwrap().to_string()
    });
    let verify = || {
        p.pipe(&[
            "verify",
            &build,
            "--keyring",
            &ring,
            "--store",
            &format!("s3://{bucket}/demo"),
        ])
    };
    verify().expect_code(0);

    // Lost: the next publish notices and uploads it again.
    rt.block_on(client.delete_object().bucket(&bucket).key(&blob_key).send())
        .unwrap();
    let run = verify();
    run.expect_code(1);
    assert!(run.stderr.contains("is not in the store"), "{}", run.stderr);
    assert!(
        run.stderr.contains("pipe publish BUILD"),
        "the hint names the repair: {}",
        run.stderr
    );
    let doc = p.pipe(&["--json", "publish", &build]).expect_code(0).json();
    assert_eq!(doc["report"]["artifacts"][0]["repaired"], true, "{doc}");
    assert_eq!(get(&blob_key).unwrap(), deb);
    verify().expect_code(0);

    // Damaged at the same size, blob and pool copy: a plain publish checks
    // sizes only; --read-back reads every blob and repairs both.
    let mut bad = deb.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    put(&blob_key, bad.clone());
    put(&pool_key, bad);
    let run = verify();
    run.expect_code(3);
    assert!(
        run.stderr.contains("--read-back"),
        "the hint names the repair: {}",
        run.stderr
    );
    let doc = p.pipe(&["--json", "publish", &build]).expect_code(0).json();
    assert_eq!(doc["report"]["artifacts"][0]["repaired"], false, "{doc}");
    let doc = p
        .pipe(&["--json", "publish", &build, "--read-back"])
        .expect_code(0)
        .json();
    assert_eq!(doc["report"]["artifacts"][0]["repaired"], true, "{doc}");
    assert_eq!(get(&blob_key).unwrap(), deb);
    assert_eq!(get(&pool_key).unwrap(), deb, "the pool copy is remade");
    verify().expect_code(0);
    // Intact: nothing is sent again.
    let doc = p
        .pipe(&["--json", "publish", &build, "--read-back"])
        .expect_code(0)
        .json();
    assert_eq!(doc["report"]["bytes_uploaded"], 0, "{doc}");
}
