//! What `pipe publish` costs in S3 requests (issue 15): a new package two
//! (its blob and its pool copy), a package published before none, whatever
//! their number; the package catalog a fixed number, one listing of the
//! blobs one. Counted from the request log of the real S3 server (moto).

use pipe_e2e::cli::Project;
use pipe_e2e::raw::RawStore;
use pipe_e2e::s3::MotoServer;

fn pipeline_toml(packages: std::ops::Range<usize>) -> String {
    let mut t = String::from(
        "[project]\nname = \"many\"\nversion = \"1.0.0\"\nsource_date_epoch = 1700000000\n\n[environments.dev]\n",
    );
    for i in packages {
        t.push_str(&format!(
            "\n[packages.p{i:03}]\nsummary = \"Package {i}\"\narch = \"all\"\nmaintainer = \"Ops <ops@example.com>\"\nformats = [\"deb\"]\nfiles = [{{ src = \"f{i:03}.txt\", dst = \"/usr/share/many/f{i:03}.txt\" }}]\n"
        ));
    }
    t
}

fn project(server: &MotoServer, packages: std::ops::Range<usize>) -> Project {
    let mut p = Project::new();
    for (k, v) in server.env() {
        p.env(&k, &v);
    }
    p.with_signing_key();
    for i in packages.clone() {
        p.write(&format!("f{i:03}.txt"), &format!("file {i}\n"));
    }
    p.write("pipeline.toml", &pipeline_toml(packages));
    p
}

/// Builds `packages` in `p` and publishes the build to `url`; the requests
/// the publish made, and its JSON report.
fn build_and_publish(
    p: &Project,
    server: &MotoServer,
    url: &str,
    packages: std::ops::Range<usize>,
) -> (Vec<String>, serde_json::Value) {
    for i in packages.clone() {
        p.write(&format!("f{i:03}.txt"), &format!("file {i}\n"));
    }
    p.write("pipeline.toml", &pipeline_toml(packages));
    let build = p.pipe(&["--json", "build"]).expect_code(0).json()["build"]
        .as_str()
        .unwrap()
        .to_string();
    let before = server.requests().len();
    let doc = p
        .pipe(&["--json", "--store", url, "publish", &build])
        .expect_code(0)
        .json();
    (server.requests()[before..].to_vec(), doc)
}

fn count(reqs: &[String], f: impl Fn(&str, &str) -> bool) -> usize {
    reqs.iter()
        .filter(|r| {
            let (m, path) = r.split_once(' ').unwrap();
            f(m, path)
        })
        .count()
}

#[test]
fn a_new_package_costs_two_requests_and_a_published_one_none() {
    let server = MotoServer::start();
    let url = format!("s3://{}/demo", server.bucket());
    let p = project(&server, 0..20);
    let b = server.bucket().to_string();
    let under = |path: &str, prefix: &str| path.starts_with(&format!("/{b}/demo/{prefix}"));

    let (first, doc) = build_and_publish(&p, &server, &url, 0..20);
    assert_eq!(doc["report"]["artifacts"].as_array().unwrap().len(), 20);
    // Every package: its blob and its pool copy, each one PUT, nothing asked
    // first.
    let per_package = |reqs: &[String]| {
        count(reqs, |_, path| {
            under(path, "blobs/blake3/") || under(path, "pool/")
        })
    };
    assert_eq!(per_package(&first), 40, "{first:#?}");
    assert_eq!(
        count(&first, |m, path| m != "PUT"
            && (under(path, "blobs/blake3/") || under(path, "pool/"))),
        0,
        "{first:#?}"
    );

    // The shards the catalog's root names (`packages/catalog.json`: the
    // blake3 of each non-empty bucket's shard): what the next publish reads.
    let root = RawStore::s3(&server, "demo")
        .get("packages/catalog.json")
        .expect("the catalog's root");
    let root: serde_json::Value = serde_json::from_slice(&root).unwrap();
    let named = root["shards"].as_object().unwrap().len();
    assert!((1..=20).contains(&named), "{root:#}");

    // Twenty packages more, the first twenty unchanged: the new ones cost
    // two requests each, the published ones nothing at all.
    let (second, doc) = build_and_publish(&p, &server, &url, 0..40);
    let report = &doc["report"]["artifacts"];
    assert_eq!(report.as_array().unwrap().len(), 40);
    for old in 0..20 {
        let name = format!("p{old:03}_");
        assert!(
            !second.iter().any(|r| r.contains(&name)),
            "published before, yet asked about: {name} in {second:#?}"
        );
    }
    assert_eq!(per_package(&second), 40, "{second:#?}");
    // The catalog: its root read and replaced, its shards read once each and
    // the changed ones written; the blobs listed once; the build's own
    // records (index and four signed files).
    let shard_reads = count(&second, |m, path| {
        m == "GET" && under(path, "packages/catalog/")
    });
    let shard_writes = count(&second, |m, path| {
        m == "PUT" && under(path, "packages/catalog/")
    });
    assert!(
        shard_reads <= named && shard_writes <= 20,
        "{named} shards named: {second:#?}"
    );
    assert_eq!(
        count(&second, |_, path| under(path, "packages/catalog.json")),
        2,
        "{second:#?}"
    );
    let listings = count(&second, |m, path| {
        m == "GET" && path.contains("list-type=2")
    });
    assert_eq!(
        listings, 2,
        "one listing of the blobs, one of the manifest shards: {second:#?}"
    );
    // The manifest's shards: one per bucket of the new packages at most,
    // the unchanged ones not sent again.
    let manifest_shards = count(&second, |m, path| m == "PUT" && under(path, "manifests/"));
    assert!(manifest_shards <= 20, "{second:#?}");
    let rest = second.len()
        - per_package(&second)
        - shard_reads
        - shard_writes
        - 2
        - listings
        - manifest_shards;
    assert!(
        rest <= 12,
        "the store's root and write probe, the build's records (manifest, provenance, signatures), nothing more: {second:#?}"
    );
    // Not a byte of the published packages' metadata is written again but
    // the catalog's changed shards.
    assert!(
        doc["report"]["metadata_uploaded"].as_u64().unwrap() > 0,
        "{doc}"
    );

    // One package more in an environment of forty: a fixed cost, whatever
    // the number of packages published before.
    let (third, doc) = build_and_publish(&p, &server, &url, 0..41);
    let metadata = doc["report"]["metadata_uploaded"].as_u64().unwrap();
    assert!(
        metadata < 64 << 10,
        "a one-package change uploads little metadata: {metadata} bytes"
    );
    assert_eq!(per_package(&third), 2, "{third:#?}");
    let shard_writes = count(&third, |m, path| {
        m == "PUT" && under(path, "packages/catalog/")
    });
    assert_eq!(shard_writes, 1, "one shard changes: {third:#?}");

    // A version reused with other bytes is refused before anything is sent.
    p.write("f005.txt", "other bytes\n");
    let build = p.pipe(&["--json", "build"]).expect_code(0).json()["build"]
        .as_str()
        .unwrap()
        .to_string();
    let before = server.requests().len();
    let run = p.pipe(&["--store", &url, "publish", &build]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("already published with different content"),
        "{}",
        run.stderr
    );
    let refused = server.requests()[before..].to_vec();
    assert_eq!(
        count(&refused, |m, _| m == "PUT"),
        0,
        "nothing written: {refused:#?}"
    );
}
