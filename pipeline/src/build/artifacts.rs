//! The artifact nodes of a plan: each fetched from the cache or written by
//! its kind ([`crate::kinds`]), all in parallel.
//!
//! What is generic to every kind lives here: an output is a file, stored as
//! one blob and listed as one manifest entry; a node's outputs are recorded
//! under `cache/stages/<key>.json` after every blob they name, so a second
//! machine sharing the store restores them instead of rebuilding.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::plan::{ArtifactNode, Plan};
use crate::artifact::Artifact;
use crate::kinds::{self, Kind, Prepared, StageContext};
use crate::model::Pipeline;
use crate::records::cache::{Lookup, Sealer, StageOutput, StageRecord};
use crate::records::{Fragment, Input};
use crate::store::{BlobRef, Store};
use crate::{Error, Result, records};

/// An artifact and how this build obtained it.
#[derive(Debug, Clone)]
pub struct Built {
    /// The artifact.
    pub artifact: Artifact,
    /// Where it is on disk.
    pub path: PathBuf,
    /// True when it came from the cache rather than being built.
    pub cache_hit: bool,
    /// Seconds spent.
    pub seconds: f64,
    /// The files that went into it (relative to the project directory), with
    /// their digests.
    pub inputs: Vec<Input>,
    /// What the consumer views need of it.
    pub index: Option<Fragment>,
}

impl Built {
    /// Where the artifact is in the finished build directory `dir` (`path`
    /// points into the directory the build was assembled in).
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(&self.artifact.name)
    }
}

/// Builds (or fetches from the cache) every artifact node of `plan`, in
/// parallel, into `out_dir`.
pub async fn build_artifacts(
    p: &Arc<Pipeline>,
    plan: &Plan,
    store: &Store,
    cx: &StageContext,
    sealer: &Sealer,
    out_dir: &Path,
) -> Result<Vec<Built>> {
    // First every node is resolved and keyed, in parallel: bad input in any
    // (a vanished file, a symlink leaving the project) fails the build
    // before anything is written to the store.
    let mut resolving = tokio::task::JoinSet::new();
    for (i, node) in plan.artifacts.iter().enumerate() {
        let (p, cx, node) = (p.clone(), cx.clone(), node.clone());
        resolving.spawn_blocking(move || {
            let started = Instant::now();
            let prepared = kinds::of(node.kind).prepare(&p, &cx, &node);
            (i, prepared, started.elapsed().as_secs_f64())
        });
    }
    let mut prepared: Vec<Option<(Prepared, f64)>> = plan.artifacts.iter().map(|_| None).collect();
    while let Some(joined) = resolving.join_next().await {
        let (i, result, seconds) = joined.expect("prepare task panicked");
        let result = result?;
        let node = &plan.artifacts[i];
        if let Some(planned) = &node.cache_key
            && *planned != result.key
        {
            return Err(Error::Usage {
                message: format!(
                    "the inputs of `{}` changed since the plan was made (planned key {planned}, now {})",
                    node.id, result.key
                ),
                hint: Some("make the plan again: `pipe build` plans and builds in one go".into()),
            });
        }
        prepared[i] = Some((result, seconds));
    }

    // Then they are fetched or written, one writer per thread of the
    // compressor budget at most. The writers' compressors share that one
    // budget of threads and memory (`stages::compress`), so memory does not
    // grow with the writers; more writers than threads would only wait.
    let writers = stages::compress::limits().threads.get() as usize;
    let permits = Arc::new(tokio::sync::Semaphore::new(writers));
    let mut tasks = tokio::task::JoinSet::new();
    for (node, prepared) in plan.artifacts.iter().zip(prepared) {
        let (prepared, seconds) = prepared.expect("every node was prepared");
        let (p, cx, node, store) = (p.clone(), cx.clone(), node.clone(), store.clone());
        let out_dir = out_dir.to_path_buf();
        let permits = permits.clone();
        let sealer = sealer.clone();
        tasks.spawn(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let kind = kinds::of(node.kind);
            run_node(
                kind, p, cx, node, prepared, seconds, &store, &sealer, &out_dir,
            )
            .await
        });
    }
    let mut built = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        built.extend(joined.expect("artifact task panicked")?);
    }
    built.sort_by(|a, b| a.artifact.name.cmp(&b.artifact.name));
    Ok(built)
}

/// Fetches the node's outputs from the cache, or writes, stores and records
/// them.
#[allow(clippy::too_many_arguments)]
async fn run_node(
    kind: &'static dyn Kind,
    p: Arc<Pipeline>,
    cx: StageContext,
    node: ArtifactNode,
    prepared: Prepared,
    prepare_seconds: f64,
    store: &Store,
    sealer: &Sealer,
    out_dir: &Path,
) -> Result<Vec<Built>> {
    let started = Instant::now();
    let key = prepared.key.clone();
    let inputs = prepared.inputs.clone();
    let outputs = prepared
        .outputs
        .clone()
        .unwrap_or_else(|| node.outputs.clone());
    let artifact = |name: &str, blob: BlobRef| Artifact {
        name: name.to_string(),
        kind: node.kind,
        component: node.component.clone(),
        blob,
        cache_key: key.clone(),
    };
    let describe = |a: Artifact, path: PathBuf, epoch: u64| {
        tokio::task::spawn_blocking(move || kind.describe(&path, &a, epoch))
    };

    let mut out = Vec::new();
    let cache_hit;
    let mut found = records::cache::stage(store, &key, sealer).await?;
    // A record whose blob the store lost or damaged: built again, and the
    // blob stored again over the damaged copy.
    let mut lost = match &found {
        Lookup::Trusted(record) => restorable(store, record).await?,
        _ => None,
    };
    let mut restored = None;
    if let (Lookup::Trusted(record), None) = (&found, &lost)
        && record.outputs().count() == outputs.len()
    {
        let mut files = Vec::new();
        for (i, (name, blob)) in record.outputs().enumerate() {
            let path = out_dir.join(name);
            match store.get_blob_to_file(blob, &path).await {
                Ok(()) => {}
                Err(Error::DigestMismatch { key, .. }) => {
                    lost = Some(key);
                    break;
                }
                Err(e) => return Err(e),
            }
            publishable(&path)?;
            let a = artifact(name, blob.clone());
            // The main output's view metadata is cached with the record;
            // a record of an older pipe lacks it: read the artifact.
            let index = match (i, &record.index) {
                (0, Some(index)) => Some(index.clone()),
                _ => describe(a.clone(), path.clone(), cx.epoch)
                    .await
                    .expect("describe task panicked")?,
            };
            files.push((a, path, index));
        }
        if lost.is_none() {
            restored = Some(files);
        }
    }
    let repair = lost.is_some();
    if let Some(lost) = lost {
        found = records::cache::forged(
            &crate::store::layout::stage_record(&key),
            format!("its blob `{lost}` is missing or damaged in the store"),
            None,
        );
    }
    match restored {
        Some(files) => {
            cache_hit = true;
            out = files;
        }
        _ => {
            cache_hit = false;
            {
                let (p, cx, node, out_dir) =
                    (p.clone(), cx.clone(), node.clone(), out_dir.to_path_buf());
                tokio::task::spawn_blocking(move || kind.write(&p, &cx, &node, prepared, &out_dir))
                    .await
                    .expect("artifact writer panicked")?;
            }
            for name in &outputs {
                let path = out_dir.join(name);
                publishable(&path)?;
                let put = if repair {
                    let blob = crate::store::digest::hash_file(&path).await?;
                    store.replace_blob_file(&path, &blob).await?
                } else {
                    store.put_blob_file(&path).await?
                };
                let a = artifact(name, put.blob);
                let index = describe(a.clone(), path.clone(), cx.epoch)
                    .await
                    .expect("describe task panicked")?;
                out.push((a, path, index));
            }
            let (first, rest) = out.split_first().expect("a node has an output");
            let record = StageRecord {
                name: first.0.name.clone(),
                blob: first.0.blob.clone(),
                index: first.2.clone(),
                more: rest
                    .iter()
                    .map(|(a, _, _)| StageOutput {
                        name: a.name.clone(),
                        blob: a.blob.clone(),
                    })
                    .collect(),
            };
            records::cache::put_stage(store, &key, &record, sealer, &found).await?;
        }
    }
    {
        let artifacts: Vec<Artifact> = out.iter().map(|(a, _, _)| a.clone()).collect();
        let (p, node, out_dir) = (p.clone(), node.clone(), out_dir.to_path_buf());
        tokio::task::spawn_blocking(move || kind.assemble(&p, &node, &artifacts, &out_dir))
            .await
            .expect("assembling task panicked")?;
    }
    let seconds = prepare_seconds + started.elapsed().as_secs_f64();
    Ok(out
        .into_iter()
        .map(|(artifact, path, index)| Built {
            artifact,
            path,
            cache_hit,
            seconds,
            inputs: inputs.clone(),
            index,
        })
        .collect())
}

/// The key of a blob `record` names that the store lost or holds with
/// another size (one of the right size but other bytes fails its digest
/// check when restored).
async fn restorable(store: &Store, record: &StageRecord) -> Result<Option<String>> {
    for (_, blob) in record.outputs() {
        match store.head(&blob.key()).await? {
            Some(meta) if meta.size == blob.size => {}
            _ => return Ok(Some(blob.key())),
        }
    }
    Ok(None)
}

/// When a signature made for a build is dated: the build's timestamp, so
/// signatures are reproducible, but never before the key existed (a key
/// cannot sign before its creation).
pub fn signature_time(epoch: u64, key: &keys::SecretKey) -> SystemTime {
    let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(epoch);
    at.max(key.created())
}

/// Artifacts are world-readable like any package in a repository; the
/// temporary files they were written through are private.
fn publishable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    //! A kind whose node writes several outputs (as an OCI image's layers,
    //! config and manifest will): each is stored as its own blob, the stage
    //! record lists them in order, and a second run restores them all.

    use super::*;
    use crate::artifact::{ArtifactKind, Component};
    use crate::store::{OpenOptions, StoreUrl};

    struct Several;

    impl Kind for Several {
        fn kind(&self) -> ArtifactKind {
            ArtifactKind::Deb
        }
        fn nodes(&self, _: &Pipeline) -> Vec<ArtifactNode> {
            Vec::new()
        }
        fn prepare(&self, _: &Pipeline, _: &StageContext, _: &ArtifactNode) -> Result<Prepared> {
            unreachable!("the test prepares the node itself")
        }
        fn write(
            &self,
            _: &Pipeline,
            _: &StageContext,
            node: &ArtifactNode,
            _: Prepared,
            out_dir: &Path,
        ) -> Result<()> {
            for (i, name) in node.outputs.iter().enumerate() {
                let path = out_dir.join(name);
                std::fs::write(&path, format!("part {i}\n").repeat(i + 1))
                    .map_err(|e| Error::io(&path, e))?;
            }
            Ok(())
        }
        fn describe(&self, _: &Path, _: &Artifact, _: u64) -> Result<Option<Fragment>> {
            Ok(None)
        }
        fn pool_key(&self, _: &Artifact) -> Option<String> {
            None
        }
        fn deploy_arch(&self, _: &Artifact) -> Option<String> {
            None
        }
    }

    static SEVERAL: Several = Several;

    fn prepared() -> Prepared {
        Prepared {
            key: "ab".repeat(32),
            inputs: Vec::new(),
            work: Box::new(()),
            outputs: None,
        }
    }

    #[tokio::test]
    async fn a_node_with_several_outputs_stores_and_restores_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &StoreUrl::Local(dir.path().join("s")),
            &OpenOptions::default(),
        )
        .await
        .unwrap();
        let toml = "[project]\nname = \"d\"\nversion = \"1.0.0\"\n";
        let p = Arc::new(
            Pipeline::from_source(&dir.path().join("pipeline.toml"), dir.path(), toml).unwrap(),
        );
        let cx = StageContext {
            dir: dir.path().to_path_buf(),
            epoch: 0,
            signer: None,
        };
        let node = ArtifactNode {
            id: "test img".into(),
            kind: ArtifactKind::Deb,
            component: Component::Package("img".into()),
            inputs: Vec::new(),
            after_steps: Vec::new(),
            outputs: vec![
                "manifest.json".into(),
                "layer-1.tar".into(),
                "layer-2.tar".into(),
            ],
            cache_key: None,
        };
        let mut opts = keys::GenerateOptions::new("t <t@example.invalid>");
        opts.algorithm = keys::Algorithm::Ed25519;
        let sealer = Sealer::new(
            &keys::SecretKey::generate(&opts).unwrap(),
            std::time::SystemTime::now(),
        );
        let run = |out: &str| {
            let out = dir.path().join(out);
            std::fs::create_dir_all(&out).unwrap();
            let (p, cx, node, store) = (p.clone(), cx.clone(), node.clone(), store.clone());
            let sealer = sealer.clone();
            async move {
                run_node(
                    &SEVERAL,
                    p,
                    cx,
                    node,
                    prepared(),
                    0.0,
                    &store,
                    &sealer,
                    &out,
                )
                .await
            }
        };
        let first = run("one").await.unwrap();
        let names: Vec<&str> = first.iter().map(|b| b.artifact.name.as_str()).collect();
        assert_eq!(names, ["manifest.json", "layer-1.tar", "layer-2.tar"]);
        assert!(first.iter().all(|b| !b.cache_hit));
        let records::cache::Lookup::Trusted(record) =
            records::cache::stage(&store, &"ab".repeat(32), &sealer)
                .await
                .unwrap()
        else {
            panic!("the stage record is signed and read back");
        };
        let recorded: Vec<&str> = record.outputs().map(|(n, _)| n).collect();
        assert_eq!(recorded, names);
        for b in &first {
            assert!(store.head(&b.artifact.blob.key()).await.unwrap().is_some());
        }

        let second = run("two").await.unwrap();
        assert!(second.iter().all(|b| b.cache_hit));
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(a.artifact.blob, b.artifact.blob);
            assert_eq!(
                std::fs::read(&a.path).unwrap(),
                std::fs::read(&b.path).unwrap()
            );
        }
    }
}
