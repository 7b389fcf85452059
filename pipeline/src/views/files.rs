//! What the views that write index files into the store share: the write
//! order that keeps a reader on the old complete generation or the new one,
//! and the grace period of replaced files.

use std::collections::{BTreeMap, BTreeSet};

use repo_index::PlannedFile;
use serde::{Deserialize, Serialize};

use super::{Context, unix_secs};
use crate::store::{Body, Condition, Store};
use crate::{Result, fault};

/// The content-addressed files of the current generation and of replaced
/// ones (with when they were replaced, Unix seconds).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Generation {
    /// Named by the current generation.
    pub current: BTreeSet<String>,
    /// Named by replaced generations only.
    pub retired: BTreeMap<String, u64>,
}

/// Writes `files`: content-addressed files first (in parallel: nothing names
/// them yet), then the rest in plan order, the signed top files last. A
/// content-addressed file that exists is written again all the same: same
/// bytes for a reader, and a damaged copy is repaired. Returns the count.
pub(super) async fn write(store: &Store, files: &[PlannedFile]) -> Result<usize> {
    // Every file but the last (what clients fetch first: `InRelease`,
    // `repomd.xml`) is written without a flush of its own, then all are
    // made durable together before the last one goes in: one sync instead
    // of one per file (a suite of seven architectures is 40 files).
    let (last, files) = match files.split_last() {
        Some((last, files)) => (Some(last), files),
        None => (None, files),
    };
    let batch = store.batch();
    let written = write_all(&batch, files).await?;
    batch.flush().await?;
    let Some(last) = last else {
        return Ok(written);
    };
    fault::before_write(&last.path);
    store
        .put(
            &last.path,
            Body::from_bytes(last.bytes.to_vec()),
            Condition::Overwrite,
        )
        .await?;
    Ok(written + 1)
}

/// [`write`]'s content-addressed files in parallel, then the rest in order.
/// A file whose bytes are those of a file written before it (the same
/// buffer: the indices of architectures that list the same packages, and
/// their by-hash copies) is copied inside the store from the first one
/// (a hard link, a server-side copy) instead of being written again.
async fn write_all(store: &Store, files: &[PlannedFile]) -> Result<usize> {
    let (named, rest): (Vec<&PlannedFile>, Vec<&PlannedFile>) =
        files.iter().partition(|f| f.content_addressed);
    let sources = copied_from(named.iter().chain(&rest).copied());
    let source = |f: &PlannedFile| sources.get(f.path.as_str()).copied();
    for f in &named {
        fault::before_write(&f.path);
    }
    let (copies, unique): (Vec<&PlannedFile>, Vec<&PlannedFile>) =
        named.iter().copied().partition(|f| source(f).is_some());
    futures::future::try_join_all(unique.iter().map(|f| put(store, f))).await?;
    futures::future::try_join_all(
        copies
            .iter()
            .filter_map(|f| Some(store.copy(source(f)?, &f.path))),
    )
    .await?;
    let mut written = named.len();
    for f in rest {
        fault::before_write(&f.path);
        match source(f) {
            Some(from) => store.copy(from, &f.path).await?,
            None => {
                put(store, f).await?;
            }
        }
        written += 1;
    }
    Ok(written)
}

/// Writes one planned file, replacing what was there.
async fn put(store: &Store, f: &PlannedFile) -> Result<()> {
    store
        .put(
            &f.path,
            Body::from_bytes(f.bytes.to_vec()),
            Condition::Overwrite,
        )
        .await
        .map(|_| ())
}

/// For each file (in write order) whose buffer an earlier file holds, that
/// earlier file's path. Buffers are told apart by address and length: the
/// planner shares one buffer between files of the same bytes.
fn copied_from<'a>(
    files: impl Iterator<Item = &'a PlannedFile>,
) -> std::collections::HashMap<&'a str, &'a str> {
    let mut first: std::collections::HashMap<(usize, usize), &'a str> =
        std::collections::HashMap::new();
    let mut sources = std::collections::HashMap::new();
    for f in files.filter(|f| !f.bytes.is_empty()) {
        let id = (f.bytes.as_ptr() as usize, f.bytes.len());
        let earlier = *first.entry(id).or_insert(f.path.as_str());
        if earlier != f.path {
            sources.insert(f.path.as_str(), earlier);
        }
    }
    sources
}

/// The generation after `prior` when it names `current` at `now` (its
/// content-addressed files, and other immutable objects such as package
/// copies): what the new generation no longer names starts its grace
/// period; what is past it is returned, to be deleted once the state no
/// longer names it.
pub(super) fn next(
    prior: &Generation,
    current: BTreeSet<String>,
    now: u64,
    grace: u64,
) -> (Generation, Vec<String>) {
    let mut retired = prior.retired.clone();
    for path in prior.current.difference(&current) {
        retired.entry(path.clone()).or_insert(now);
    }
    retired.retain(|path, _| !current.contains(path));
    let expired: Vec<String> = retired
        .iter()
        .filter(|(_, at)| **at + grace <= now)
        .map(|(path, _)| path.clone())
        .collect();
    retired.retain(|path, _| !expired.contains(path));
    (Generation { current, retired }, expired)
}

/// Writes a generation of index files for `cx` and works out the next
/// [`Generation`]: (files written, the generation, files to delete once the
/// state no longer names them).
pub(super) async fn publish(
    cx: &Context<'_>,
    prior: &Generation,
    files: &[PlannedFile],
) -> Result<(usize, Generation, Vec<String>)> {
    publish_with(cx, prior, files, Vec::new()).await
}

/// [`publish`] for a generation that also names `also`: immutable objects
/// written before its files (the yum repository's package copies), which
/// follow the grace period like its content-addressed files.
pub(super) async fn publish_with(
    cx: &Context<'_>,
    prior: &Generation,
    files: &[PlannedFile],
    also: Vec<String>,
) -> Result<(usize, Generation, Vec<String>)> {
    let written = write(cx.store, files).await?;
    let current: BTreeSet<String> = files
        .iter()
        .filter(|f| f.content_addressed)
        .map(|f| f.path.clone())
        .chain(also)
        .collect();
    let (generation, expired) = next(
        prior,
        current,
        unix_secs(cx.now),
        cx.pipeline.repository.grace.as_secs(),
    );
    Ok((written, generation, expired))
}

/// What a view kept last time, when this regeneration shows the same build
/// (a refresh or a repair can reuse its compressed indices); `T::default()`
/// and `false` otherwise or when it cannot be read.
pub(super) fn prior<T: serde::de::DeserializeOwned + Default>(cx: &Context<'_>) -> (T, bool) {
    let kept = serde_json::from_value(cx.prior.clone()).unwrap_or_default();
    (kept, cx.prior_build == cx.published.build)
}
