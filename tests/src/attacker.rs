//! What someone who can write the store but holds no key can do: read,
//! write and delete any object behind pipe's back, on either backend. The
//! trust tests use it to plant forgeries and to show that a refused command
//! left every object as it was.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::cli::Project;
use crate::s3::MotoServer;

/// Raw access to a store: a local directory, or a prefix of an S3 bucket.
pub enum Bucket {
    /// A local store directory.
    Local(PathBuf),
    /// `s3://bucket/prefix` on a moto server.
    S3 {
        /// The SDK client.
        client: aws_sdk_s3::Client,
        /// The bucket.
        bucket: String,
        /// The prefix, without a trailing `/`.
        prefix: String,
    },
}

/// A project whose store is `backend`: the project's own `.pipe/store`, or
/// `s3://<bucket>/store` on a fresh moto server (returned, so it lives as
/// long as the test). The project has the pipeline `toml`, the `files`
/// (path, contents) it names, and an Ed25519 signing key.
pub fn project_on(
    s3: bool,
    toml: &str,
    files: &[(&str, &str)],
) -> (Project, Bucket, Option<MotoServer>) {
    let mut p = Project::new();
    p.write("pipeline.toml", toml);
    for (path, contents) in files {
        p.write(path, contents);
    }
    if s3 {
        let server = MotoServer::start();
        for (k, v) in server.env() {
            p.env(&k, &v);
        }
        p.env("PIPE_STORE", &format!("s3://{}/store", server.bucket()));
        let bucket = Bucket::S3 {
            client: server.client(),
            bucket: server.bucket().to_string(),
            prefix: "store".into(),
        };
        p.with_signing_key();
        (p, bucket, Some(server))
    } else {
        let dir = p.path().join(".pipe/store");
        p.with_signing_key();
        (p, Bucket::Local(dir), None)
    }
}

/// Another checkout of `first` (the same `files`, the same signing key, as
/// CI runners share it) whose store is the same: `first`'s local store, or
/// the same S3 prefix.
pub fn second_checkout(
    first: &Project,
    server: Option<&MotoServer>,
    toml: &str,
    files: &[(&str, &str)],
) -> Project {
    let mut p = Project::new();
    p.write("pipeline.toml", toml);
    for (path, contents) in files {
        p.write(path, contents);
    }
    std::fs::create_dir_all(p.path().join("keys")).unwrap();
    std::fs::copy(
        first.path().join("keys/release.key"),
        p.path().join("keys/release.key"),
    )
    .unwrap();
    match server {
        Some(server) => {
            for (k, v) in server.env() {
                p.env(&k, &v);
            }
            p.env("PIPE_STORE", &format!("s3://{}/store", server.bucket()));
        }
        None => {
            let store = first.path().join(".pipe/store");
            p.env("PIPE_STORE", store.to_str().unwrap());
        }
    }
    p
}

/// An Ed25519 key that is not the project's: what an attacker signs with.
pub fn attacker_key() -> keys::SecretKey {
    let mut opts = keys::GenerateOptions::new("Mallory <mallory@example.invalid>");
    opts.algorithm = keys::Algorithm::Ed25519;
    keys::SecretKey::generate(&opts).expect("generate key")
}

/// A signed-record envelope around `payload`, signed by `key`.
pub fn envelope(payload: &serde_json::Value, key: &keys::SecretKey) -> Vec<u8> {
    let text = serde_json::to_string_pretty(payload).unwrap();
    let sig = key
        .sign_detached(
            text.as_bytes(),
            std::time::SystemTime::now(),
            keys::Encoding::Armored,
        )
        .unwrap();
    serde_json::to_vec_pretty(&serde_json::json!({
        "payload": text,
        "signature": String::from_utf8(sig).unwrap(),
    }))
    .unwrap()
}

/// Uploads `bytes` as a content-addressed blob, as pipe would; returns its
/// reference (`blake3`, `sha256`, `size`).
pub fn plant_blob(bucket: &Bucket, bytes: &[u8]) -> serde_json::Value {
    use sha2::Digest;
    let b3 = blake3::hash(bytes).to_hex().to_string();
    bucket.write(&format!("blobs/blake3/{}/{b3}", &b3[..2]), bytes);
    serde_json::json!({
        "blake3": b3,
        "sha256": hex::encode(sha2::Sha256::digest(bytes)),
        "size": bytes.len(),
    })
}

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

impl Bucket {
    /// The bytes at `key`, if any.
    pub fn read(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            Bucket::Local(dir) => std::fs::read(dir.join(key)).ok(),
            Bucket::S3 {
                client,
                bucket,
                prefix,
            } => block(async {
                let out = client
                    .get_object()
                    .bucket(bucket)
                    .key(format!("{prefix}/{key}"))
                    .send()
                    .await
                    .ok()?;
                Some(out.body.collect().await.ok()?.into_bytes().to_vec())
            }),
        }
    }

    /// Writes `bytes` at `key`, unconditionally.
    pub fn write(&self, key: &str, bytes: &[u8]) {
        match self {
            Bucket::Local(dir) => {
                let path = dir.join(key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                // A new inode, as an attacker's tool would leave.
                let _ = std::fs::remove_file(&path);
                std::fs::write(path, bytes).unwrap();
            }
            Bucket::S3 {
                client,
                bucket,
                prefix,
            } => block(async {
                client
                    .put_object()
                    .bucket(bucket)
                    .key(format!("{prefix}/{key}"))
                    .body(bytes.to_vec().into())
                    .send()
                    .await
                    .expect("the attacker's put");
            }),
        }
    }

    /// Removes `key`.
    pub fn delete(&self, key: &str) {
        match self {
            Bucket::Local(dir) => {
                let _ = std::fs::remove_file(dir.join(key));
            }
            Bucket::S3 {
                client,
                bucket,
                prefix,
            } => block(async {
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(format!("{prefix}/{key}"))
                    .send()
                    .await
                    .expect("the attacker's delete");
            }),
        }
    }

    /// Every object (key → bytes), to compare before and after a command.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        match self {
            Bucket::Local(dir) => {
                let mut out = BTreeMap::new();
                walk(dir, dir, &mut out);
                out
            }
            Bucket::S3 {
                client,
                bucket,
                prefix,
            } => block(async {
                let mut out = BTreeMap::new();
                let mut pages = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(format!("{prefix}/"))
                    .into_paginator()
                    .send();
                let mut keys = Vec::new();
                while let Some(page) = pages.next().await {
                    for o in page.unwrap().contents() {
                        keys.push(o.key().unwrap().to_string());
                    }
                }
                for k in keys {
                    let body = client
                        .get_object()
                        .bucket(bucket)
                        .key(&k)
                        .send()
                        .await
                        .unwrap()
                        .body
                        .collect()
                        .await
                        .unwrap()
                        .into_bytes()
                        .to_vec();
                    out.insert(k[prefix.len() + 1..].to_string(), body);
                }
                out
            }),
        }
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            walk(root, &path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            let key = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            // The local backend's lock and temporary files are not objects.
            if !key.starts_with(".locks/") && !key.starts_with(".tmp/") {
                out.insert(key, bytes);
            }
        }
    }
}

/// Panics naming every key that differs between two snapshots.
#[track_caller]
pub fn assert_unchanged(before: &BTreeMap<String, Vec<u8>>, after: &BTreeMap<String, Vec<u8>>) {
    let mut diff = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diff.push(format!("removed {k}")),
            Some(w) if w != v => diff.push(format!("changed {k}")),
            _ => {}
        }
    }
    for k in after.keys() {
        if !before.contains_key(k) {
            diff.push(format!("added {k}"));
        }
    }
    assert!(diff.is_empty(), "the store changed:\n{}", diff.join("\n"));
}
