//! The yum repository of an environment, `yum/ENV`: `repodata/` with
//! checksum-named `primary`, `filelists` and `other`, and `repomd.xml` with
//! its detached signature; packages are named `../../pool/...`.

use std::sync::Arc;

use async_trait::async_trait;
use repo_index::yum;
use serde::{Deserialize, Serialize};

use super::files::{self, Generation};
use super::{Context, Generated, View, ViewKind};
use crate::Result;
use crate::store::{Store, digest::spawn_blocking, layout};

/// The yum repository view.
pub(super) struct YumRepository;

/// What the repository keeps between generations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Kept {
    /// Data files: kind, checksum, open checksum, open size.
    data: Vec<(String, String, String, u64)>,
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
        let previous = if same_build {
            previous(cx.store, cx.env, &prior).await?
        } else {
            None
        };
        let (env, key, now) = (cx.env.to_string(), cx.key.clone(), cx.now);
        let (planned, data) = spawn_blocking(move || {
            let config = yum::RepoConfig {
                dir: layout::yum_repo(&env),
                timestamp: now,
            };
            let xml: Vec<&yum::PackageXml> = index.rpms.iter().map(|r| &r.xml).collect();
            let rendered = yum::render_repo(&config, &xml, previous.as_ref())?;
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
            Ok((rendered.write_plan(&signature).files, data))
        })
        .await?;
        let (written, generation, expired) =
            files::publish(cx, &prior.generation, &planned).await?;
        Ok(Generated {
            location: Some(layout::yum_repo(cx.env)),
            packages: cx.published.index.rpms.len(),
            written,
            removed: expired.len(),
            valid_until: None,
            keep: serde_json::to_value(Kept { data, generation }).expect("serialises"),
            delete_after: expired,
        })
    }
}

/// The last rendering of `env`'s yum data files.
async fn previous(store: &Store, env: &str, kept: &Kept) -> Result<Option<yum::RenderedRepo>> {
    let mut data = Vec::new();
    for (kind, checksum, open_checksum, open_size) in &kept.data {
        let kind: &'static str = match kind.as_str() {
            "primary" => "primary",
            "filelists" => "filelists",
            "other" => "other",
            _ => return Ok(None),
        };
        let href = format!("repodata/{checksum}-{kind}.xml.gz");
        let Some((gz, _)) = store
            .get_bytes(&layout::yum_file(env, &href))
            .await?
            .filter(|(gz, _)| super::sha256_hex(gz) == *checksum)
        else {
            return Ok(None);
        };
        data.push(yum::DataFile {
            kind,
            href,
            gz: Arc::from(&gz[..]),
            checksum: checksum.clone(),
            open_checksum: open_checksum.clone(),
            open_size: *open_size,
        });
    }
    Ok((!data.is_empty()).then(|| yum::RenderedRepo {
        dir: layout::yum_repo(env),
        data,
        repomd: String::new(),
    }))
}
