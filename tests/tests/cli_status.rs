//! `pipe status` reads the store (local here; S3 in `store_cli_s3.rs`) and
//! never writes to it.

use pipe_e2e::cli::Project;
use pipeline::store::{OpenOptions, Store, StoreUrl};

const PIPELINE: &str = r#"[project]
name = "demo"
version = "1.0.0"

[environments.dev]
[environments.staging]
from = "dev"
[environments.prod]
from = "staging"
"#;

#[test]
fn empty_store_lists_declared_environments_in_promotion_order() {
    let p = Project::new();
    p.write("pipeline.toml", PIPELINE);
    let run = p.pipe(&["status"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("(empty: nothing published yet)"),
        "{}",
        run.stdout
    );
    let dev = run.stdout.find("  dev ").expect("dev listed");
    let staging = run.stdout.find("  staging ").expect("staging listed");
    let prod = run.stdout.find("  prod ").expect("prod listed");
    assert!(dev < staging && staging < prod, "{}", run.stdout);
    assert!(
        !p.path().join(".pipe").exists(),
        "status must not create the store"
    );

    let doc = p.pipe(&["--json", "status"]).expect_code(0).json();
    assert_eq!(doc["store"]["format"], serde_json::Value::Null);
    assert_eq!(doc["environments"][1]["name"], "staging");
    assert_eq!(doc["environments"][1]["from"], "dev");
    assert_eq!(doc["environments"][1]["build"], serde_json::Value::Null);
}

#[test]
fn status_counts_what_the_store_holds() {
    let p = Project::new();
    p.write("pipeline.toml", PIPELINE);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = StoreUrl::parse(".pipe/store", p.path()).unwrap();
        let store = Store::open(&url, &OpenOptions::default()).await.unwrap();
        store.put_blob(&b"first blob"[..]).await.unwrap();
        store.put_blob(&b"second blob!"[..]).await.unwrap();
        // The same content again is the same blob.
        store.put_blob(&b"first blob"[..]).await.unwrap();
    });
    let doc = p.pipe(&["--json", "status"]).expect_code(0).json();
    assert_eq!(doc["store"]["format"], 1);
    assert_eq!(doc["blobs"]["count"], 2);
    assert_eq!(doc["blobs"]["bytes"], 22);
}

#[test]
fn a_store_from_a_newer_pipe_is_refused() {
    let p = Project::new();
    p.write("pipeline.toml", PIPELINE)
        .write(".pipe/store/pipe-store.json", r#"{"format": 99}"#);
    let run = p.pipe(&["status"]);
    run.expect_code(1);
    assert!(
        run.stderr
            .contains("has format 99; this pipe reads format 1 at most"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint: upgrade pipe"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(p.path().join(".pipe/store/pipe-store.json")).unwrap(),
        r#"{"format": 99}"#
    );
}

#[test]
fn store_flag_overrides_the_file_and_works_without_one() {
    let p = Project::new();
    p.write(
        "pipeline.toml",
        &PIPELINE.replace(
            "[environments.dev]",
            "[store]\nurl = \"elsewhere\"\n\n[environments.dev]",
        ),
    );
    let doc = p
        .pipe(&["--json", "--store", "other/store", "status"])
        .expect_code(0)
        .json();
    assert!(
        doc["store"]["url"]
            .as_str()
            .unwrap()
            .ends_with("other/store"),
        "{doc}"
    );
    let doc = p.pipe(&["--json", "status"]).expect_code(0).json();
    assert!(
        doc["store"]["url"].as_str().unwrap().ends_with("elsewhere"),
        "{doc}"
    );

    // No pipeline.toml at all, but an explicit store: still answers.
    let bare = Project::new();
    let doc = bare
        .pipe(&["--json", "--store", "s", "status"])
        .expect_code(0)
        .json();
    assert_eq!(doc["environments"].as_array().unwrap().len(), 0);
}

/// The same command against a real S3 server: the CLI takes the standard AWS
/// settings from the environment.
#[test]
fn status_reads_an_s3_store() {
    let server = pipe_e2e::s3::MotoServer::start();
    let mut p = Project::new();
    p.write("pipeline.toml", PIPELINE);
    for (k, v) in server.env() {
        p.env(&k, &v);
    }
    let url = format!("s3://{}/team/app", server.bucket());
    let doc = p
        .pipe(&["--json", "--store", &url, "status"])
        .expect_code(0)
        .json();
    assert_eq!(doc["store"]["format"], serde_json::Value::Null, "{doc}");
    assert_eq!(doc["blobs"]["count"], 0);

    // Blobs written through the library to the bucket are seen by the CLI.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = Store::open_with(
            &server.store_url("team/app"),
            &OpenOptions::default(),
            &server.overrides(),
        )
        .await
        .unwrap();
        store.put_blob(&b"one"[..]).await.unwrap();
    });
    let doc = p
        .pipe(&["--json", "--store", &url, "status"])
        .expect_code(0)
        .json();
    assert_eq!(doc["store"]["format"], 1, "{doc}");
    assert_eq!(doc["blobs"]["count"], 1, "{doc}");
}

#[test]
fn an_unreachable_s3_endpoint_names_endpoint_and_bucket() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut p = Project::new();
    p.write("pipeline.toml", PIPELINE);
    p.env("AWS_ENDPOINT_URL", &format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "2");
    let run = p.pipe(&["--store", "s3://nowhere/x", "status"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains(&format!("http://127.0.0.1:{port}")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("`nowhere`"), "{}", run.stderr);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
}
