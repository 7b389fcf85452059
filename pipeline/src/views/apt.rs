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
use crate::store::{Store, digest::spawn_blocking, layout};

/// The apt suite view.
pub(super) struct AptSuite;

/// What the suite keeps between generations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Kept {
    /// Digests of each index (`main/binary-amd64`): plain, gz, xz.
    digests: Vec<(String, [String; 3])>,
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
        let (prior, same_build): (Kept, bool) = files::prior(cx);
        // A refresh or repair lists the same packages: reuse the compressed
        // indices instead of compressing them again.
        let previous = if same_build {
            previous(cx.store, cx.env, &prior).await?
        } else {
            None
        };
        let repo = cx.pipeline.repository.clone();
        let (env, key, now) = (cx.env.to_string(), cx.key.clone(), cx.now);
        let (planned, digests) = spawn_blocking(move || {
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
            let signed = suite.sign(&key, now)?;
            let digests: Vec<(String, [String; 3])> = suite
                .indices
                .iter()
                .map(|s| {
                    (
                        s.dir.clone(),
                        [&s.plain, &s.gz, &s.xz].map(|b| super::sha256_hex(b)),
                    )
                })
                .collect();
            Ok((suite.write_plan(&signed).files, digests))
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
                generation,
            }),
            delete_after: expired,
        })
    }
}

/// The last rendering of `env`'s suite, rebuilt from its by-hash files.
async fn previous(store: &Store, env: &str, kept: &Kept) -> Result<Option<apt::RenderedSuite>> {
    let mut indices = Vec::new();
    for (dir, digests) in &kept.digests {
        let mut parts: Vec<Arc<[u8]>> = Vec::new();
        for d in digests {
            // Only bytes this pipe wrote are signed again: a file changed
            // in the store since is not reused, and gets rewritten.
            match store.get_bytes(&layout::apt_by_hash(env, dir, d)).await? {
                Some((bytes, _)) if super::sha256_hex(&bytes) == *d => {
                    parts.push(Arc::from(&bytes[..]))
                }
                _ => return Ok(None),
            }
        }
        let [plain, gz, xz]: [Arc<[u8]>; 3] = match parts.try_into() {
            Ok(p) => p,
            Err(_) => return Ok(None),
        };
        // The state that names these files is not signed: compressed bytes
        // are signed again only if they decompress to the plain text, whose
        // digest the new rendering must match to reuse it.
        let (p2, g2, x2) = (plain.clone(), gz.clone(), xz.clone());
        let same = spawn_blocking(move || {
            Ok(decompresses_to(flate2::read::GzDecoder::new(&g2[..]), &p2)
                && decompresses_to(liblzma::read::XzDecoder::new(&x2[..]), &p2))
        })
        .await?;
        if !same {
            tracing::warn!(
                env,
                dir,
                "a compressed index in the store is not its plain text; compressing again"
            );
            return Ok(None);
        }
        indices.push(apt::IndexSet {
            dir: dir.clone(),
            plain,
            gz,
            xz,
        });
    }
    Ok((!indices.is_empty()).then(|| apt::RenderedSuite {
        suite_dir: layout::apt_suite(env),
        release: String::new(),
        indices,
    }))
}

/// True when `reader` yields exactly `plain` (reading at most one byte more).
fn decompresses_to(reader: impl std::io::Read, plain: &[u8]) -> bool {
    let mut out = Vec::with_capacity(plain.len());
    std::io::Read::read_to_end(
        &mut std::io::Read::take(reader, plain.len() as u64 + 1),
        &mut out,
    )
    .is_ok()
        && out == plain
}
