//! The apt suite of an environment, `dists/ENV`: `Packages` indices (plain,
//! gz, xz, and by-hash), `Release`, `InRelease` and `Release.gpg`, signed;
//! packages are named in the shared pool (`pool/main/...`).

use std::sync::Arc;

use async_trait::async_trait;
use repo_index::apt;
use serde::{Deserialize, Serialize};

use super::files::{self, Generation};
use super::{Context, Generated, View, ViewKind};
use crate::Result;
use crate::store::{MAX_RECORD, Store, digest::spawn_blocking, layout};
use keys::SecretKey;

/// The apt suite view.
pub(super) struct AptSuite;

/// What the suite keeps between generations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Kept {
    /// Digests of each index (`main/binary-amd64`): plain, gz, xz.
    digests: Vec<(String, [String; 3])>,
    /// The chunks each index's gz and xz are made of, for the first index
    /// of each distinct set of files (absent in states of an older pipe).
    #[serde(default)]
    chunks: Vec<(String, Vec<repo_index::Chunk>)>,
    /// The repository key's signature over `digests` and `chunks`
    /// ([`super::sign_chunk_table`]): when it verifies, the next generation
    /// reuses the chunks without decompressing them.
    #[serde(default)]
    chunks_signature: Option<String>,
    #[serde(flatten)]
    generation: Generation,
}

#[async_trait]
impl View for AptSuite {
    fn kind(&self) -> ViewKind {
        ViewKind::AptSuite
    }

    async fn regenerate(&self, cx: &Context<'_>) -> Result<Generated> {
        let index = cx.published.index.clone();
        if index.debs.is_empty() {
            return Ok(Generated::unchanged(cx));
        }
        let (prior, _same_build): (Kept, bool) = files::prior(cx);
        // The last generation's compressed indices: their chunks whose text
        // did not change are reused (each checked to decompress to the new
        // text), so a few new packages cost a few chunks' compression.
        let previous = previous(cx.store, cx.env, &prior, cx.key).await?;
        let repo = cx.pipeline.repository.clone();
        let (env, key, now) = (cx.env.to_string(), cx.key.clone(), cx.now);
        let (planned, digests, chunks, chunks_signature) = spawn_blocking(move || {
            let entries: Vec<apt::Entry> = index
                .debs
                .iter()
                .map(|d| apt::Entry {
                    component: layout::APT_COMPONENT,
                    stanza: &d.stanza,
                })
                .collect();
            let mut config = apt::SuiteConfig::new(&env, now);
            config.origin = repo.origin.clone();
            config.label = repo.label.clone();
            config.valid_for = repo.valid_for;
            if let Some(n) = std::env::var(CHUNK_HOOK).ok().and_then(|v| v.parse().ok()) {
                config.chunk_stanzas = n;
            }
            config.components = vec![layout::APT_COMPONENT.into()];
            // Packages of architecture `all` are listed under every
            // architecture; a suite of only those lists the ones its
            // clients run (an arm64 apt skips a suite of amd64 only).
            if index.debs.iter().all(|d| d.stanza.architecture == "all") {
                config.architectures = repo
                    .architectures
                    .iter()
                    .map(|a| a.deb().to_string())
                    .collect();
            }
            let suite = apt::render_suite(&config, &entries, previous.as_ref())?;
            tracing::debug!(
                reused = suite.reused_chunks,
                compressed = suite.compressed_chunks,
                "Packages chunks"
            );
            let signed = suite.sign(&key, now)?;
            let digests: Vec<(String, [String; 3])> = suite.sha256s();
            // Each distinct file's table once: the architectures of a suite
            // of `all` packages share one (at 20,000 packages, seven copies
            // were 0.5 MB of state written twice per promotion).
            let mut tabled = std::collections::HashSet::new();
            let chunks: Vec<(String, Vec<repo_index::Chunk>)> = suite
                .indices
                .iter()
                .zip(&digests)
                .filter(|(_, (_, d))| tabled.insert(d.clone()))
                .map(|(s, _)| (s.dir.clone(), s.chunks.clone()))
                .collect();
            let chunks_signature =
                super::sign_chunk_table(&key, ViewKind::AptSuite, &digests, &chunks, now)?;
            Ok((
                suite.write_plan(&signed).files,
                digests,
                chunks,
                chunks_signature,
            ))
        })
        .await?;
        let (written, generation, expired) =
            files::publish(cx, &prior.generation, &planned).await?;
        Ok(Generated {
            location: Some(layout::apt_suite(cx.env)),
            packages: cx.published.index.debs.len(),
            linked: 0,
            written,
            removed: expired.len(),
            valid_until: Some(crate::build::rfc3339(
                cx.now + cx.pipeline.repository.valid_for,
            )),
            keep: crate::json::to_value(Kept {
                digests,
                chunks,
                chunks_signature,
                generation,
            }),
            delete_after: expired,
        })
    }
}

/// A test hook: stanzas per compressed chunk (`repo_index::apt::SuiteConfig::chunk_stanzas`),
/// so a test with a few packages gets indices of several chunks.
const CHUNK_HOOK: &str = "PIPE_TEST_APT_CHUNK_STANZAS";

/// Largest compressed index read back from the store for reuse.
const MAX_INDEX: u64 = 1 << 30;

/// The last rendering of `env`'s suite, rebuilt from its by-hash `.gz` and
/// `.xz` files and the chunk table the state kept. A file is used only when
/// the suite's `InRelease` in the store is signed by `key` and names its
/// sha256, and its bytes have that digest: the compressed bytes of a reused
/// chunk are then bytes pipe wrote and signed before, never a bucket
/// writer's (the state is not signed). `render_suite` reuses a chunk only
/// once it decompresses to the new text, unless `key` signed the table
/// with those files' digests (then the table is pipe's own account of
/// those bytes). `None` when the state names
/// no chunks, a file is gone, or nothing verifies (all compressed again).
async fn previous(
    store: &Store,
    env: &str,
    kept: &Kept,
    key: &SecretKey,
) -> Result<Option<apt::RenderedSuite>> {
    if kept.chunks.is_empty() {
        return Ok(None);
    }
    // A table signed by the key: its chunks need no decompressing.
    let vouched = super::chunk_table_vouched(
        key,
        ViewKind::AptSuite,
        &(&kept.digests, &kept.chunks),
        kept.chunks_signature.as_deref(),
    );
    let signed = match store
        .get_bytes_max(&format!("{}/InRelease", layout::apt_suite(env)), MAX_RECORD)
        .await
    {
        Ok(Some((bytes, _))) => match key.public_keyring().verify_clearsigned(&bytes, None) {
            Ok((_, text)) => release_sha256(&String::from_utf8_lossy(&text))
                .map(|(sha, _, _)| sha.to_string())
                .collect::<std::collections::HashSet<_>>(),
            Err(e) => {
                tracing::debug!(env, error = %e, "InRelease does not verify: no chunk reused");
                return Ok(None);
            }
        },
        Ok(None) | Err(crate::Error::TooLarge { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut indices = Vec::new();
    // Architectures whose indices are the same text (packages of `all`
    // only) have the same files: each read once.
    let mut seen = std::collections::HashSet::new();
    for (dir, digests) in &kept.digests {
        let Some((_, chunks)) = kept.chunks.iter().find(|(d, _)| d == dir) else {
            continue;
        };
        if chunks.is_empty() || !seen.insert(&digests[1..]) {
            continue;
        }
        let mut parts: Vec<Arc<[u8]>> = Vec::new();
        for d in &digests[1..] {
            if !signed.contains(d.as_str()) {
                return Ok(None);
            }
            match store
                .get_bytes_max(&layout::apt_by_hash(env, dir, d), MAX_INDEX)
                .await
            {
                Ok(Some((bytes, _))) if super::sha256_hex(&bytes) == *d => {
                    parts.push(Arc::from(&bytes[..]))
                }
                Ok(Some(_)) => return Ok(None),
                // Gone, or larger than pipe writes: compressed again.
                Ok(None) | Err(crate::Error::TooLarge { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let [gz, xz]: [Arc<[u8]>; 2] = match parts.try_into() {
            Ok(p) => p,
            Err(_) => return Ok(None),
        };
        indices.push(apt::IndexSet {
            dir: dir.clone(),
            plain: Arc::from(&[][..]),
            gz,
            xz,
            chunks: chunks.clone(),
        });
    }
    Ok((!indices.is_empty()).then(|| apt::RenderedSuite {
        suite_dir: layout::apt_suite(env),
        release: String::new(),
        indices,
        reused_chunks: 0,
        compressed_chunks: 0,
        chunks_vouched: vouched,
    }))
}

/// The `(sha256, size, path)` lines of a `Release` text's `SHA256:`
/// section (what `InRelease` vouches for); other sections and malformed
/// lines are skipped.
pub(crate) fn release_sha256(text: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    let mut in_sha = false;
    text.lines().filter_map(move |line| {
        if line.starts_with("SHA256:") {
            in_sha = true;
            return None;
        }
        if !line.starts_with(' ') {
            in_sha = false;
        }
        if !in_sha {
            return None;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let [sha, size, path] = f[..] else {
            return None;
        };
        Some((sha, size, path))
    })
}
