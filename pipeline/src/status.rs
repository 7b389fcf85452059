//! `pipe status`: what the store holds (blobs, published builds), the builds
//! made in a project directory, and what each environment points at. Reads
//! only; never writes to the store. Needs no `pipeline.toml`: with one, its
//! environments come first, in promotion order.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use crate::Result;
use crate::build::{BUILDS_DIR, LATEST, files};
use crate::model::Pipeline;
use crate::records::Entry;
use crate::records::history::read_pointer;
use crate::store::{Store, layout};

/// What [`status`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The store's format, `None` when nothing was ever written to it.
    pub format: Option<u64>,
    /// Blobs in the store.
    pub blobs: usize,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Published builds, sorted.
    pub builds: Vec<String>,
    /// Builds in the project directory's `.pipe/builds/`, sorted.
    pub local_builds: Vec<String>,
    /// The latest local build.
    pub latest: Option<String>,
    /// Declared environments in promotion order, then those only the store
    /// knows.
    pub environments: Vec<EnvStatus>,
}

/// One environment.
#[derive(Debug, Clone, Serialize)]
pub struct EnvStatus {
    /// Its name.
    pub name: String,
    /// The environment it takes builds from, when declared.
    pub from: Option<String>,
    /// Its pointer's entry (not verified: `pipe history --keyring` does).
    pub head: Option<Entry>,
    /// Its images, by digest, as consumers name them:
    /// `HOST/NAMESPACE/NAME@sha256:…` (`NAME@sha256:…` without `[registry]`).
    pub images: Vec<String>,
}

/// Reads the status of `store`, with `pipeline` (if any) for the declared
/// environments and `project_dir` for local builds.
pub async fn status(
    store: &Store,
    pipeline: Option<&Pipeline>,
    project_dir: &Path,
    keyring: Option<&keys::Keyring>,
) -> Result<Status> {
    let root = store.root().await?;
    let blobs = store.list(layout::BLOBS).await?;
    let builds: BTreeSet<String> = store
        .list(layout::BUILDS)
        .await?
        .iter()
        .filter_map(|o| layout::build_of(&o.key).map(str::to_string))
        .collect();
    let mut envs: Vec<(String, Option<String>)> = pipeline
        .map(|p| {
            p.promotion_order()
                .iter()
                .map(|e| (e.name.clone(), e.from.clone()))
                .collect()
        })
        .unwrap_or_default();
    for name in crate::records::history::environments(store).await? {
        if !envs.iter().any(|(n, _)| *n == name) {
            envs.push((name, None));
        }
    }
    let dir = project_dir.join(BUILDS_DIR);
    let latest = std::fs::read_to_string(dir.join(LATEST))
        .map(|s| s.trim().to_string())
        .ok();
    let mut local_builds: Vec<String> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join(files::MANIFEST).exists())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    local_builds.sort();
    let registry = pipeline.and_then(|p| p.registry.as_ref());
    let mut environments = Vec::new();
    for (name, from) in envs {
        let (head, _) = read_pointer(store, &name).await?;
        let mut images = Vec::new();
        // Image digests come only from a build index the project's keys
        // signed: without the keyring, none are shown.
        if let Some(h) = &head
            && let Some(ring) = keyring
            && let Ok(published) = crate::records::index::load(store, &h.entry.build, ring).await
        {
            for i in &published.index.images {
                let digest = format!("sha256:{}", i.sha256);
                images.push(match registry {
                    Some(r) => format!("{}/{}@{digest}", r.url.trim_end_matches('/'), i.image),
                    None => format!("{}@{digest}", i.image),
                });
            }
        }
        environments.push(EnvStatus {
            name,
            from,
            head: head.map(|h| h.entry),
            images,
        });
    }
    Ok(Status {
        format: root.map(|r| r.format),
        blobs: blobs.len(),
        blob_bytes: blobs.iter().map(|b| b.size).sum(),
        builds: builds.into_iter().collect(),
        local_builds,
        latest,
        environments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{Action, history};
    use crate::store::{Body, Condition, OpenOptions, StoreUrl};

    #[tokio::test]
    async fn declared_environments_first_then_those_only_the_store_knows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &StoreUrl::Local(dir.path().join("s")),
            &OpenOptions::default(),
        )
        .await
        .unwrap();
        let toml = "[project]\nname = \"d\"\nversion = \"1.0.0\"\n[environments.prod]\nfrom = \"dev\"\n[environments.dev]\n";
        let p = Pipeline::from_source(&dir.path().join("pipeline.toml"), dir.path(), toml).unwrap();
        let mut opts = keys::GenerateOptions::new("T <t@example.com>");
        opts.algorithm = "ed25519".parse().unwrap();
        let key = keys::SecretKey::generate(&opts).unwrap();
        for env in ["dev", "old"] {
            let signed = Entry::next(None, env, "1.0.0-abc", Action::Promote, false)
                .sign(&key)
                .unwrap();
            history::put_pointer(&store, &signed, None, None)
                .await
                .unwrap();
        }
        store
            .put(
                &layout::build_file("1.0.0-abc", files::MANIFEST),
                Body::from_bytes(b"{}".to_vec()),
                Condition::IfAbsent,
            )
            .await
            .unwrap();
        let s = status(&store, Some(&p), dir.path(), None).await.unwrap();
        let names: Vec<&str> = s.environments.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["dev", "prod", "old"]);
        assert_eq!(s.environments[0].head.as_ref().unwrap().build, "1.0.0-abc");
        assert!(s.environments[1].head.is_none());
        assert_eq!(s.environments[1].from.as_deref(), Some("dev"));
        assert_eq!(s.builds, ["1.0.0-abc"]);
        let without = status(&store, None, dir.path(), None).await.unwrap();
        let names: Vec<&str> = without
            .environments
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["dev", "old"]);
    }
}
