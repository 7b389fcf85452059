//! The yum repository of an environment, `yum/ENV`: `repodata/` with
//! checksum-named `primary`, `filelists` and `other`, and `repomd.xml` with
//! its detached signature; and `Packages/<l>/<artifact>`, every package it
//! lists, under its base URL, so a mirror that copies a repository by its
//! base URL (`dnf reposync`, Pulp, Artifactory) gets all of it.
//!
//! Each package is a copy made inside the store from its blob (a hard link
//! locally, a server-side copy on S3): no byte passes through pipe. It is
//! made when the package is new to the environment, before any index names
//! it; one the environment no longer lists follows the grace period like a
//! replaced index file.

use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use repo_index::yum;
use serde::{Deserialize, Serialize};

use super::files::{self, Generation};
use super::{Context, Generated, View, ViewKind};
use crate::records::Published;
use crate::store::{MAX_RECORD, Store, digest::spawn_blocking, layout};
use crate::{Error, Result, fault};
use keys::SecretKey;

/// The yum repository view.
pub(super) struct YumRepository;

/// What the repository keeps between generations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Kept {
    /// Data files: kind, checksum, open checksum, open size.
    data: Vec<(String, String, String, u64)>,
    /// The gzip members of each data file, by kind (absent in states of an
    /// older pipe).
    #[serde(default)]
    chunks: Vec<(String, Vec<repo_index::Chunk>)>,
    /// The repository key's signature over `data` and `chunks`
    /// ([`super::sign_chunk_table`]): when it verifies, the next generation
    /// reuses the members without decompressing them.
    #[serde(default)]
    chunks_signature: Option<String>,
    #[serde(flatten)]
    generation: Generation,
}

#[async_trait]
impl View for YumRepository {
    fn kind(&self) -> ViewKind {
        ViewKind::YumRepository
    }

    async fn regenerate(&self, cx: &Context<'_>) -> Result<Generated> {
        let index = cx.published.index.clone();
        if index.rpms.is_empty() {
            return Ok(Generated::unchanged(cx));
        }
        let (prior, same_build): (Kept, bool) = files::prior(cx);
        // The packages first: before any index names them.
        let placed = place_packages(
            cx.store,
            cx.env,
            cx.published,
            &prior.generation,
            same_build,
        )
        .await?;
        // The last generation's data files: their members whose text did
        // not change are reused, each checked to decompress to it unless
        // the key signed their table.
        let previous = previous(cx.store, cx.env, &prior, cx.key).await?;
        let (env, key, now) = (cx.env.to_string(), cx.key.clone(), cx.now);
        let (planned, data, chunks, chunks_signature) = spawn_blocking(move || {
            let config = yum::RepoConfig {
                dir: layout::yum_repo(&env),
                timestamp: now,
            };
            // Listed where this repository has them, whatever location the
            // recorded fragment names (builds published by an earlier pipe
            // name the shared pool, `../../pool/...`).
            let located = index
                .rpms
                .iter()
                .map(|r| r.xml.with_location(&layout::yum_package_href(&r.artifact)))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let xml: Vec<&yum::PackageXml> = located.iter().collect();
            let chunk = std::env::var(CHUNK_HOOK)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(yum::DEFAULT_CHUNK_PACKAGES);
            let rendered = yum::render_repo_chunked(&config, &xml, previous.as_ref(), chunk)?;
            let signature = rendered.sign(&key, now)?;
            let data = rendered
                .data
                .iter()
                .map(|d| {
                    (
                        d.kind.to_string(),
                        d.checksum.clone(),
                        d.open_checksum.clone(),
                        d.open_size,
                    )
                })
                .collect::<Vec<_>>();
            let chunks = rendered
                .data
                .iter()
                .map(|d| (d.kind.to_string(), d.chunks.clone()))
                .collect::<Vec<_>>();
            let chunks_signature =
                super::sign_chunk_table(&key, ViewKind::YumRepository, &data, &chunks, now)?;
            Ok((
                rendered.write_plan(&signature).files,
                data,
                chunks,
                chunks_signature,
            ))
        })
        .await?;
        let (written, generation, expired) =
            files::publish_with(cx, &prior.generation, &planned, placed.keys).await?;
        Ok(Generated {
            location: Some(layout::yum_repo(cx.env)),
            packages: cx.published.index.rpms.len(),
            linked: placed.linked,
            written,
            removed: expired.len(),
            valid_until: None,
            keep: crate::json::to_value(Kept {
                data,
                chunks,
                chunks_signature,
                generation,
            }),
            delete_after: expired,
        })
    }
}

/// The packages a regeneration placed under the repository.
struct Placed {
    /// The key of every package the repository lists.
    keys: Vec<String>,
    /// How many were new to it.
    linked: usize,
}

/// How many package copies are made at once.
const PLACE_CONCURRENCY: usize = 16;

/// Makes every .rpm of `published` reachable under `env`'s repository, as a
/// copy made inside the store from its blob (named by the signed manifest).
/// Only packages the prior generation did not list are copied; a
/// regeneration of the build shown already (`repair`: a refresh, a
/// completion) checks every one, so a deleted copy comes back.
async fn place_packages(
    store: &Store,
    env: &str,
    published: &Published,
    prior: &Generation,
    repair: bool,
) -> Result<Placed> {
    let mut linked = 0;
    let mut keys = Vec::new();
    let mut todo = Vec::new();
    for r in &published.index.rpms {
        let key = layout::yum_file(env, &layout::yum_package_href(&r.artifact));
        let new = !prior.current.contains(&key);
        if new {
            linked += 1;
        }
        if new || repair {
            let blob = published
                .rpm_blobs
                .get(&r.artifact)
                .ok_or_else(|| Error::Verify {
                    what: layout::build_file(&published.build, crate::records::files::MANIFEST),
                    detail: format!(
                        "its shards index `{}`, which they do not list as an artifact",
                        r.artifact
                    ),
                })?;
            todo.push((blob.clone(), key.clone()));
        }
        keys.push(key);
    }
    // Without a flush each (a first promotion of 20,000 packages made
    // 20,000 directory syncs), then made durable together before any index
    // names them.
    let batch = store.batch();
    let store = &batch;
    futures::stream::iter(todo)
        .map(|(blob, key)| async move {
            fault::before_write(&key);
            store.copy_if_absent(&blob, &key).await
        })
        .buffer_unordered(PLACE_CONCURRENCY)
        .try_collect::<Vec<bool>>()
        .await?;
    batch.flush().await?;
    Ok(Placed { keys, linked })
}

/// A test hook: packages per gzip member of the data files
/// (`repo_index::yum::render_repo_chunked`).
const CHUNK_HOOK: &str = "PIPE_TEST_YUM_CHUNK_PACKAGES";

/// Largest data file read back from the store for reuse.
const MAX_DATA: u64 = 1 << 30;

/// The last rendering of `env`'s yum data files and the members the state
/// says they are made of. Nothing in it is believed: `render_repo_chunked`
/// reuses a member only once it decompresses to the new text. A data file
/// gone from the store, or without members in the state, is left out.
///
/// A data file is used only when `repomd.xml` in the store carries a
/// signature by `key` (`repomd.xml.asc`) and names its checksum, and its
/// bytes have that checksum: a reused member's compressed bytes are bytes
/// pipe wrote and signed before, never a bucket writer's.
async fn previous(
    store: &Store,
    env: &str,
    kept: &Kept,
    key: &SecretKey,
) -> Result<Option<yum::RenderedRepo>> {
    if kept.chunks.is_empty() {
        return Ok(None);
    }
    // A table signed by the key: its members need no decompressing.
    let vouched = super::chunk_table_vouched(
        key,
        ViewKind::YumRepository,
        &(&kept.data, &kept.chunks),
        kept.chunks_signature.as_deref(),
    );
    let read = |name: &'static str| async move {
        match store
            .get_bytes_max(&layout::yum_file(env, name), MAX_RECORD)
            .await
        {
            Ok(Some((bytes, _))) => Ok(Some(bytes)),
            Ok(None) | Err(crate::Error::TooLarge { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let (Some(repomd), Some(asc)) = (
        read("repodata/repomd.xml").await?,
        read("repodata/repomd.xml.asc").await?,
    ) else {
        return Ok(None);
    };
    if let Err(e) = key
        .public_keyring()
        .verify_detached(&repomd[..], &asc, None)
    {
        tracing::debug!(env, error = %e, "repomd.xml does not verify: no member reused");
        return Ok(None);
    }
    let signed = super::signed_sha256s(&repomd);
    let mut data = Vec::new();
    for (kind, checksum, open_checksum, open_size) in &kept.data {
        let kind: &'static str = match kind.as_str() {
            "primary" => "primary",
            "filelists" => "filelists",
            "other" => "other",
            _ => continue,
        };
        let Some((_, chunks)) = kept.chunks.iter().find(|(k, _)| k == kind) else {
            continue;
        };
        if chunks.is_empty() {
            continue;
        }
        if !signed.contains(checksum.as_str()) {
            continue;
        }
        let href = format!("repodata/{checksum}-{kind}.xml.gz");
        let gz = match store
            .get_bytes_max(&layout::yum_file(env, &href), MAX_DATA)
            .await
        {
            Ok(Some((gz, _))) if super::sha256_hex(&gz) == *checksum => gz,
            Ok(Some(_)) => continue,
            Ok(None) | Err(crate::Error::TooLarge { .. }) => continue,
            Err(e) => return Err(e),
        };
        data.push(yum::DataFile {
            kind,
            href,
            gz: Arc::from(&gz[..]),
            checksum: checksum.clone(),
            open_checksum: open_checksum.clone(),
            open_size: *open_size,
            chunks: chunks.clone(),
        });
    }
    Ok((!data.is_empty()).then(|| yum::RenderedRepo {
        dir: layout::yum_repo(env),
        data,
        repomd: String::new(),
        chunks_vouched: vouched,
    }))
}
