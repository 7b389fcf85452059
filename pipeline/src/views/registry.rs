//! The registry tags of an environment: `IMAGE:ENV` for every image of the
//! build the environment points at, moved by a manifest-only push (no blob
//! moves: `pipe publish` pushed them under the build id). The registry
//! checks that every blob a manifest names is there before it moves a tag,
//! and a manifest `PUT` is atomic, so a tag names the old image or the new
//! one, never a half-pushed image. A registry that is down or refuses makes
//! the view fail: the pointer stays moved and `pipe refresh --env ENV`
//! finishes the work.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::json;

use super::{Context, Generated, View, ViewKind};
use crate::Result;
use crate::registry::{CredentialSources, Registry, move_tags_known};

/// The registry tag view.
pub(super) struct RegistryTag;

#[async_trait]
impl View for RegistryTag {
    fn kind(&self) -> ViewKind {
        ViewKind::RegistryTag
    }

    async fn regenerate(&self, cx: &Context<'_>) -> Result<Generated> {
        let images = &cx.published.index.images;
        let Some(config) = &cx.pipeline.registry else {
            return Ok(Generated {
                keep: cx.prior.clone(),
                ..Default::default()
            });
        };
        if images.is_empty() {
            return Ok(Generated {
                keep: cx.prior.clone(),
                ..Default::default()
            });
        }
        let reg = Registry::new(&config.url, config.insecure, &CredentialSources::from_env())?;
        // Where the last generation left the tags: a tag that must move is
        // moved by its `PUT` alone, without a `HEAD` before it.
        let known: BTreeMap<String, String> = cx
            .prior
            .get("tags")
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .unwrap_or_default();
        let moved = move_tags_known(&reg, cx.store, images, cx.env, Some(&known)).await?;
        let location = moved
            .iter()
            .map(|t| t.tag.clone())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Generated {
            location: Some(location),
            packages: moved.len(),
            written: moved.iter().filter(|t| t.moved).count(),
            keep: json!({
                "tags": moved
                    .iter()
                    .map(|t| (t.tag.clone(), t.digest.clone()))
                    .collect::<BTreeMap<_, _>>(),
            }),
            ..Default::default()
        })
    }
}
