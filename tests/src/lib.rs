//! Harness for pipe's end-to-end tests: locates the `pipe` binary, makes
//! scratch projects, and starts real servers (an S3-compatible server, proxies
//! that misbehave on purpose) on 127.0.0.1.

pub mod attacker;
pub mod cli;
pub mod consumers;
pub mod fixture;
pub mod machine;
pub mod oci;
pub mod proxy;
pub mod raw;
pub mod registry;
pub mod s3;

/// `pipe --json verify BUILD` of `p`'s local build `build` against the
/// project's own keyring (exported to `ring.asc`): the signed records'
/// `artifacts` (each with its `store_key`), `inputs` and `shards` (each with
/// its `store_key`). Where a test finds what to tamper with, before it does.
pub fn verified(p: &cli::Project, build: &str) -> serde_json::Value {
    let ring = p.keyring();
    let run = p.pipe(&["--json", "verify", build, "--keyring", &ring]);
    run.expect_code(0);
    run.json()
}

/// The store key of the first shard in `verified` (a `pipe --json verify`
/// document) that holds artifacts (not the steps' inputs): where a test
/// forges what the views render from.
pub fn artifact_shard(verified: &serde_json::Value) -> String {
    verified["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["bucket"] != "steps")
        .expect("a shard with artifacts")["store_key"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The artifact of `verified` (a `pipe --json verify` document) whose kind
/// is `kind` (the first of them).
pub fn artifact_of_kind<'a>(verified: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    verified["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} artifact in {verified:#}"))
}
