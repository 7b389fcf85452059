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

/// The manifest of `build` published in the local store at `store`, with
/// the artifacts and inputs of its shards (not verified: for a test that
/// looks up what to tamper with).
pub fn published_manifest(store: &std::path::Path, build: &str) -> pipeline::records::Manifest {
    let path = store.join(format!("builds/{build}/manifest.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut m = pipeline::records::manifest::parse_manifest(&bytes, "manifest.json").unwrap();
    pipeline::records::manifest::load_shards(&mut m, |name| {
        std::fs::read(store.join(name)).map_err(|e| e.to_string())
    })
    .unwrap();
    m
}

/// The path, in the local store at `store`, of the first shard of build
/// `build`'s manifest that holds artifacts (not the steps' inputs): where a
/// test forges what the views render from.
pub fn artifact_shard(store: &std::path::Path, build: &str) -> std::path::PathBuf {
    let path = store.join(format!("builds/{build}/manifest.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let m = pipeline::records::manifest::parse_manifest(&bytes, "manifest.json").unwrap();
    let shard = m
        .shards
        .iter()
        .find(|s| s.bucket != pipeline::records::manifest::STEPS_BUCKET)
        .expect("a shard with artifacts");
    store.join(pipeline::store::layout::manifest_shard(&shard.blob.blake3))
}
