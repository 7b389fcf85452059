//! The package catalog: which bytes every published artifact name stands
//! for, so a version is never reused for other bytes. It replaces one
//! record per package (`packages/<artifact>.json`, which cost publish one
//! read per package already published and one write per new one) by a
//! small root and a fixed number of content-addressed shards:
//!
//! - `packages/catalog.json` ([`Root`]): the blake3 of every shard, by
//!   bucket; replaced by compare-and-swap only, so two publishers never
//!   both claim a name: the loser reads the new catalog and checks again;
//! - `packages/catalog/<blake3>.json` ([`Shard`]): the artifacts whose
//!   name falls in one of [`BUCKETS`] buckets (by the blake3 of the name),
//!   written create-only and never changed. A publish that adds one package
//!   rewrites one shard and the root, whatever the number of packages.
//!
//! Every shard read is capped in size and checked against the digest the
//! root names before it is believed. The catalog is not signed (neither
//! were the version records): it keeps honest publishers from reusing a
//! version; what hosts install is checked against the signed manifest.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt, stream};
use serde::{Deserialize, Serialize};

use crate::store::{BlobRef, Body, Condition, MAX_RECORD, Store, Version, layout};
use crate::{Error, Result};

/// How many shards the catalog is cut into: at 20,000 packages a shard is
/// about 75 KB, so a one-package publish writes about 80 KB of catalog,
/// and a publish reads the catalog in `1 + BUCKETS` requests.
pub(crate) const BUCKETS: u8 = 64;

const CATALOG_FORMAT: u32 = 1;

/// Largest shard or root read.
const MAX_SHARD: u64 = MAX_RECORD;

/// `packages/catalog.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Root {
    /// Format of the catalog.
    pub format: u32,
    /// The blake3 of each non-empty bucket's shard, by bucket (`00`…`3f`).
    pub shards: BTreeMap<String, String>,
}

/// One bucket of the catalog.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Shard {
    /// Format of the catalog.
    pub format: u32,
    /// Every artifact of the bucket, by file name.
    pub packages: BTreeMap<String, Entry>,
}

/// What an artifact name stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// Its content.
    pub blob: BlobRef,
    /// The build that published it first.
    pub build: String,
}

/// A version record of an older pipe (`packages/<artifact>.json`), read once
/// into the catalog by the first publish that finds no catalog.
#[derive(Debug, Clone, Deserialize)]
struct LegacyRecord {
    artifact: String,
    blob: BlobRef,
    build: String,
}

/// The catalog as read: every entry, and the root's version (for the
/// compare-and-swap that replaces it).
#[derive(Debug, Clone, Default)]
pub(crate) struct Catalog {
    /// Every published artifact, by name.
    pub packages: BTreeMap<String, Entry>,
    /// The shard of each bucket as read, for reuse when unchanged.
    shards: BTreeMap<String, String>,
    /// `None`: there was no catalog.
    version: Option<Version>,
}

/// The bucket of artifact `name`.
pub(crate) fn bucket(name: &str) -> String {
    let b = blake3::hash(name.as_bytes()).as_bytes()[0] % BUCKETS;
    format!("{b:02x}")
}

fn shard_bytes(shard: &Shard) -> Vec<u8> {
    crate::json::to_vec(shard)
}

/// How many shards are read at once.
const CONCURRENCY: usize = 16;

/// Reads the catalog: the root, then every shard it names, each capped and
/// checked against its digest. A store without a catalog but with version
/// records of an older pipe has them read (once: the next publish writes
/// the catalog).
pub(crate) async fn read(store: &Store) -> Result<Catalog> {
    let root_key = layout::catalog_root();
    let Some((root, version)) = store
        .get_json_max::<Root>(&root_key, "a package catalog", MAX_SHARD)
        .await?
    else {
        return read_legacy(store).await;
    };
    if root.format != CATALOG_FORMAT {
        return Err(Error::Corrupt {
            url: store.url().to_string(),
            key: root_key,
            detail: format!(
                "catalog format {}, this pipe reads {CATALOG_FORMAT}",
                root.format
            ),
        });
    }
    let shards: Vec<(String, String, Shard)> = stream::iter(root.shards.clone())
        .map(|(bucket, digest)| async move {
            let shard = read_shard(store, &digest).await?;
            Ok::<_, Error>((bucket, digest, shard))
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut packages = BTreeMap::new();
    for (b, digest, shard) in shards {
        for (name, entry) in shard.packages {
            if bucket(&name) != b {
                return Err(Error::Corrupt {
                    url: store.url().to_string(),
                    key: layout::catalog_shard(&digest),
                    detail: format!("lists `{name}`, which belongs in bucket {}", bucket(&name)),
                });
            }
            packages.insert(name, entry);
        }
    }
    Ok(Catalog {
        packages,
        shards: root.shards,
        version: Some(version),
    })
}

async fn read_shard(store: &Store, digest: &str) -> Result<Shard> {
    let key = layout::catalog_shard(digest);
    let (bytes, _) = store
        .get_bytes_max(&key, MAX_SHARD)
        .await?
        .ok_or_else(|| Error::Corrupt {
            url: store.url().to_string(),
            key: key.clone(),
            detail: "named by the package catalog, but missing".into(),
        })?;
    let found = blake3::hash(&bytes).to_hex().to_string();
    if found != digest {
        return Err(Error::Corrupt {
            url: store.url().to_string(),
            key,
            detail: format!("blake3 {found}, but the catalog names {digest}"),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        url: store.url().to_string(),
        key,
        detail: format!("not a catalog shard: {e}"),
    })
}

async fn read_legacy(store: &Store) -> Result<Catalog> {
    let listed = store.list(layout::LEGACY_VERSION_RECORDS).await?;
    let legacy: Vec<_> = listed
        .into_iter()
        .filter(|m| layout::is_legacy_version_record(&m.key))
        .collect();
    if !legacy.is_empty() {
        tracing::info!(
            records = legacy.len(),
            "reading the version records of an older pipe into the package catalog"
        );
    }
    let records: Vec<Option<LegacyRecord>> = stream::iter(legacy)
        .map(|m| async move {
            Ok::<_, Error>(
                store
                    .get_json_max::<LegacyRecord>(&m.key, "a version record", MAX_RECORD)
                    .await?
                    .map(|(r, _)| r),
            )
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let packages = records
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r.artifact,
                Entry {
                    blob: r.blob,
                    build: r.build,
                },
            )
        })
        .collect();
    Ok(Catalog {
        packages,
        shards: BTreeMap::new(),
        version: None,
    })
}

/// What [`add`] did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Added {
    /// Shards written.
    pub shards: usize,
    /// Bytes of catalog written (shards and root).
    pub bytes: u64,
}

/// Adds `new` (artifact name → entry) to the catalog, starting from `base`
/// (what the caller read and checked): writes the shards of the buckets that
/// change, then replaces the root by compare-and-swap. When another publish
/// replaced the root meanwhile, the catalog is read again and the entries
/// checked against it: the same bytes are fine (a racing publisher of the
/// same build), other bytes are [`Error::Conflict`].
pub(crate) async fn add(
    store: &Store,
    mut base: Catalog,
    new: &BTreeMap<String, Entry>,
) -> Result<Added> {
    let mut added = Added::default();
    loop {
        let fresh: BTreeMap<&String, &Entry> = new
            .iter()
            .filter(|(name, _)| !base.packages.contains_key(*name))
            .collect();
        for (name, entry) in new {
            if let Some(found) = base.packages.get(name)
                && found.blob.sha256 != entry.blob.sha256
            {
                return Err(Error::Conflict {
                    key: layout::catalog_root(),
                    expected: Some(format!("`{name}` absent or sha256 {}", entry.blob.sha256)),
                    found: Some(format!(
                        "`{name}` sha256 {} (build {})",
                        found.blob.sha256, found.build
                    )),
                });
            }
        }
        // A catalog of an older pipe's records is written whole the first time.
        if fresh.is_empty() && (base.version.is_some() || base.packages.is_empty()) {
            return Ok(added);
        }
        let changed: std::collections::BTreeSet<String> = if base.version.is_none() {
            base.packages
                .keys()
                .chain(fresh.keys().copied())
                .map(|n| bucket(n))
                .collect()
        } else {
            fresh.keys().map(|n| bucket(n)).collect()
        };
        let mut shards = base.shards.clone();
        let mut writes = Vec::new();
        for b in &changed {
            let mut shard = Shard {
                format: CATALOG_FORMAT,
                packages: base
                    .packages
                    .iter()
                    .filter(|(n, _)| bucket(n) == *b)
                    .map(|(n, e)| (n.clone(), e.clone()))
                    .collect(),
            };
            for (n, e) in &fresh {
                if bucket(n) == *b {
                    shard.packages.insert((*n).clone(), (*e).clone());
                }
            }
            let bytes = shard_bytes(&shard);
            let digest = blake3::hash(&bytes).to_hex().to_string();
            shards.insert(b.clone(), digest.clone());
            writes.push((digest, bytes));
        }
        let written: Vec<u64> = stream::iter(writes)
            .map(|(digest, bytes)| async move {
                let n = bytes.len() as u64;
                match store
                    .put(
                        &layout::catalog_shard(&digest),
                        Body::from_bytes(bytes),
                        Condition::IfAbsent,
                    )
                    .await
                {
                    Ok(_) | Err(Error::AlreadyExists { .. }) => Ok::<_, Error>(n),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let root = Root {
            format: CATALOG_FORMAT,
            shards,
        };
        let root_bytes = crate::json::to_vec_pretty(&root);
        let root_len = root_bytes.len() as u64;
        let cond = match &base.version {
            Some(v) => Condition::IfMatch(v.clone()),
            None => Condition::IfAbsent,
        };
        match store
            .put(&layout::catalog_root(), Body::from_bytes(root_bytes), cond)
            .await
        {
            Ok(_) => {
                added.shards += written.len();
                added.bytes += written.iter().sum::<u64>() + root_len;
                return Ok(added);
            }
            Err(Error::Conflict { .. } | Error::AlreadyExists { .. }) => {
                tracing::debug!("the package catalog changed meanwhile; reading it again");
                base = read(store).await?;
            }
            Err(e) => return Err(e),
        }
    }
}
