//! A store's objects read and written behind pipe's back, on either
//! backend: what a test uses to damage, delete or forge what pipe wrote,
//! as someone with write access to the directory or bucket could.

use std::path::{Path, PathBuf};

use crate::s3::MotoServer;

/// The raw objects of a store: a local directory, or a prefix of a bucket.
pub enum RawStore<'a> {
    /// A local store directory.
    Local(PathBuf),
    /// `s3://BUCKET/PREFIX` on a moto server.
    S3 {
        /// The server.
        server: &'a MotoServer,
        /// The key prefix (no trailing `/`).
        prefix: String,
        /// A runtime for the SDK calls.
        rt: tokio::runtime::Runtime,
    },
}

impl<'a> RawStore<'a> {
    /// The local store at `dir`.
    pub fn local(dir: &Path) -> RawStore<'a> {
        RawStore::Local(dir.to_path_buf())
    }

    /// The store `s3://BUCKET/PREFIX` of `server`.
    pub fn s3(server: &'a MotoServer, prefix: &str) -> RawStore<'a> {
        RawStore::S3 {
            server,
            prefix: prefix.to_string(),
            rt: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    /// The object's bytes, if it exists.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self {
            RawStore::Local(dir) => std::fs::read(dir.join(key)).ok(),
            RawStore::S3 { server, prefix, rt } => rt.block_on(async {
                let out = server
                    .client()
                    .get_object()
                    .bucket(server.bucket())
                    .key(format!("{prefix}/{key}"))
                    .send()
                    .await
                    .ok()?;
                Some(out.body.collect().await.unwrap().into_bytes().to_vec())
            }),
        }
    }

    /// Writes the object (locally as a new file: a hard-linked copy of it
    /// elsewhere keeps its bytes).
    pub fn put(&self, key: &str, bytes: &[u8]) {
        match self {
            RawStore::Local(dir) => {
                let path = dir.join(key);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let _ = std::fs::remove_file(&path);
                std::fs::write(&path, bytes).unwrap();
            }
            RawStore::S3 { server, prefix, rt } => {
                rt.block_on(
                    server
                        .client()
                        .put_object()
                        .bucket(server.bucket())
                        .key(format!("{prefix}/{key}"))
                        .body(bytes.to_vec().into())
                        .send(),
                )
                .unwrap();
            }
        }
    }

    /// Deletes the object.
    pub fn delete(&self, key: &str) {
        match self {
            RawStore::Local(dir) => {
                let _ = std::fs::remove_file(dir.join(key));
            }
            RawStore::S3 { server, prefix, rt } => {
                rt.block_on(
                    server
                        .client()
                        .delete_object()
                        .bucket(server.bucket())
                        .key(format!("{prefix}/{key}"))
                        .send(),
                )
                .unwrap();
            }
        }
    }

    /// Every key under `under` (relative to the store), sorted.
    pub fn keys(&self, under: &str) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            RawStore::Local(dir) => walk(dir, &dir.join(under), &mut out),
            RawStore::S3 { server, prefix, rt } => rt.block_on(async {
                let mut pages = server
                    .client()
                    .list_objects_v2()
                    .bucket(server.bucket())
                    .prefix(format!("{prefix}/{under}"))
                    .into_paginator()
                    .send();
                while let Some(page) = pages.next().await {
                    for o in page.unwrap().contents() {
                        let k = o.key().unwrap();
                        out.push(k[prefix.len() + 1..].to_string());
                    }
                }
            }),
        }
        out.sort();
        out
    }

    /// Flips one byte in the middle of the object (same size).
    pub fn damage(&self, key: &str) {
        let mut bytes = self
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not in the store"));
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x5a;
        self.put(key, &bytes);
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if rel.starts_with(".tmp") || rel.starts_with(".locks") {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            walk(root, &path, out);
        } else {
            out.push(rel);
        }
    }
}
