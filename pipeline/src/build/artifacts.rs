//! The artifact nodes of a plan: each fetched from the cache or written by
//! its kind ([`crate::kinds`]), all in parallel.
//!
//! What is generic to every kind lives here: an output is a file, stored as
//! one blob and listed as one manifest entry; a node's outputs are recorded
//! under `cache/stages/<key>.json` after every blob they name, so a second
//! machine sharing the store restores them instead of rebuilding.
//!
//! A restore copies each output out of the store, checking its digest,
//! unless the project holds a verified copy of it (a large output pipe
//! hashed itself in an earlier build: [`super::reuse`]), which is linked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::plan::{ArtifactNode, Plan};
use super::reuse::Verified;
use crate::artifact::Artifact;
use crate::kinds::{self, Kind, Prepared, StageContext};
use crate::model::Pipeline;
use crate::records::cache::{Lookup, Sealer, StageOutput, StageRecord};
use crate::records::{Fragment, Input};
use crate::store::{BlobRef, Store};
use crate::task::Joined;
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
pub(crate) async fn build_artifacts(
    p: &Arc<Pipeline>,
    plan: &Plan,
    store: &Store,
    cx: &StageContext,
    sealer: &Sealer,
    out_dir: &Path,
) -> Result<Vec<Built>> {
    // Verified copies no build holds any more go first.
    let verified = Verified::new(&cx.dir);
    {
        let v = verified.clone();
        tokio::task::spawn_blocking(move || v.prune())
            .await
            .joined();
    }
    // First every node is resolved and keyed, in parallel: bad input in any
    // (a vanished file, a symlink leaving the project) fails the build
    // before anything is written to the store.
    let mut resolving = tokio::task::JoinSet::new();
    for (i, node) in plan.artifacts.iter().enumerate() {
        let (p, cx, node) = (p.clone(), cx.clone(), node.clone());
        resolving.spawn_blocking(move || {
            let started = Instant::now();
            let prepared = kinds::of(node.kind).prepare(&p, &cx, &node);
            (i, node, prepared, started.elapsed().as_secs_f64())
        });
    }
    // By plan position: every node is in it once the loop is done (or the
    // build failed), so it zips with the plan's nodes below.
    let mut prepared: BTreeMap<usize, (Prepared, f64)> = BTreeMap::new();
    while let Some(joined) = resolving.join_next().await {
        let (i, node, result, seconds) = joined.joined();
        let result = result?;
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
        prepared.insert(i, (result, seconds));
    }

    // Then they are fetched or written, one writer per thread of the
    // compressor budget at most. The writers' compressors share that one
    // budget of threads and memory (`stages::compress`), so memory does not
    // grow with the writers; more writers than threads would only wait.
    let writers = stages::compress::limits().threads.get() as usize;
    let permits = Arc::new(tokio::sync::Semaphore::new(writers));
    let mut tasks = tokio::task::JoinSet::new();
    for (node, (prepared, seconds)) in plan.artifacts.iter().zip(prepared.into_values()) {
        let (p, cx, node, store) = (p.clone(), cx.clone(), node.clone(), store.clone());
        let out_dir = out_dir.to_path_buf();
        let permits = permits.clone();
        let sealer = sealer.clone();
        let verified = verified.clone();
        tasks.spawn(async move {
            #[allow(clippy::expect_used, reason = "the semaphore is never closed")]
            let _permit = permits
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let kind = kinds::of(node.kind);
            run_node(
                kind, p, cx, node, prepared, seconds, &store, &sealer, &verified, &out_dir,
            )
            .await
        });
    }
    let mut built = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        built.extend(joined.joined()?);
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
    verified: &Verified,
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
            match restore(store, verified, blob, &path).await {
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
                _ => describe(a.clone(), path.clone(), cx.epoch).await.joined()?,
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
            let written = {
                let (p, cx, node, out_dir) =
                    (p.clone(), cx.clone(), node.clone(), out_dir.to_path_buf());
                tokio::task::spawn_blocking(move || kind.write(&p, &cx, &node, prepared, &out_dir))
                    .await
                    .joined()?
            };
            // What the kind left to clean up runs while the outputs are
            // stored; waited for below, before the node is done.
            let cleanup = written.cleanup.map(tokio::task::spawn_blocking);
            let hashed = &written.hashed;
            // Every output is hashed and stored at once (each hash is one
            // core's work), unless the kind hashed it as it wrote it.
            let stored = futures::future::try_join_all(outputs.iter().map(|name| {
                let path = out_dir.join(name);
                async move {
                    publishable(&path)?;
                    let before = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
                    let known = hashed.iter().find(|h| {
                        h.name == *name && stages::digest::same_file(&h.metadata, &before)
                    });
                    let put = if repair {
                        let blob = crate::store::digest::hash_file(&path).await?;
                        store.replace_blob_file(&path, &blob).await?
                    } else if let Some(h) = known {
                        store.put_blob_file_hashed(&path, h.blob.clone()).await?
                    } else {
                        store.put_blob_file(&path).await?
                    };
                    let (v, b, p) = (verified.clone(), put.blob.clone(), path.clone());
                    tokio::task::spawn_blocking(move || v.remember(&p, &b, &before))
                        .await
                        .joined();
                    Ok::<_, Error>((path, put.blob))
                }
            }))
            .await;
            if let Some(cleanup) = cleanup {
                cleanup.await.joined()?;
            }
            let stored = stored?;
            for (name, (path, blob)) in outputs.iter().zip(stored) {
                let a = artifact(name, blob);
                let index = describe(a.clone(), path.clone(), cx.epoch).await.joined()?;
                out.push((a, path, index));
            }
            #[allow(
                clippy::expect_used,
                reason = "a node has at least one output: `write` wrote each"
            )]
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
            .joined()?;
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

/// Puts the output `blob` (named by a trusted stage record, present in the
/// store with its size: `restorable`) at `path`: a link to the project's
/// verified copy when there is one, else a copy out of the store with its
/// digest checked, which then becomes the verified copy.
async fn restore(store: &Store, verified: &Verified, blob: &BlobRef, path: &Path) -> Result<()> {
    let (v, b, p) = (verified.clone(), blob.clone(), path.to_path_buf());
    let linked = tokio::task::spawn_blocking(move || v.restore(&b, &p))
        .await
        .joined();
    if linked {
        tracing::debug!(path = %path.display(), "restored from the verified copy");
        return Ok(());
    }
    store.get_blob_to_file(blob, path).await?;
    let before = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let (v, b, p) = (verified.clone(), blob.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || v.remember(&p, &b, &before))
        .await
        .joined();
    Ok(())
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
pub(crate) fn signature_time(epoch: u64, key: &keys::SecretKey) -> SystemTime {
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
    use crate::kinds::{HashedOutput, Written};
    use crate::store::{OpenOptions, StoreUrl};

    /// A kind that writes each output `i` of its node as `body(i)`; with
    /// `prehash`, see [`PREHASHED`].
    struct Writes {
        body: fn(usize) -> Vec<u8>,
        prehash: bool,
    }

    impl Kind for Writes {
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
        ) -> Result<Written> {
            let mut hashed = Vec::new();
            for (i, name) in node.outputs.iter().enumerate() {
                let path = out_dir.join(name);
                std::fs::write(&path, (self.body)(i)).map_err(|e| Error::io(&path, e))?;
                if !self.prehash {
                    continue;
                }
                let d = stages::digest::hash_file(&path).unwrap();
                if i == 0 {
                    // Changed after it was hashed (another length, so the
                    // metadata shows it whatever the clock's tick).
                    std::fs::write(&path, big(7).get(..1 << 20).unwrap()).unwrap();
                }
                hashed.push(HashedOutput {
                    name: name.clone(),
                    blob: BlobRef {
                        blake3: d.blake3,
                        sha256: d.sha256,
                        size: d.size,
                    },
                    metadata: d.metadata,
                });
            }
            if !self.prehash {
                return Ok(Written::default());
            }
            let flag = out_dir.join("cleaned");
            Ok(Written {
                hashed,
                cleanup: Some(Box::new(move || {
                    // Slower than storing the outputs: waited for all the same.
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    std::fs::write(&flag, b"done").map_err(|e| Error::io(&flag, e))
                })),
            })
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

    /// Outputs as [`big`], hashed by the kind as it writes them (as the
    /// machine kind does), with a cleanup: output 0's digests are of what
    /// it held when hashed (rewritten since: stale), output 1's are right.
    /// The cleanup writes `cleaned` beside the outputs.
    static PREHASHED: Writes = Writes {
        body: big,
        prehash: true,
    };

    /// Outputs the kind hashed are stored with its digests when the file is
    /// as it was then, and hashed again when it changed since; the kind's
    /// cleanup has run when the node is done.
    #[tokio::test]
    async fn outputs_hashed_by_the_kind_are_stored_as_they_are_and_cleanup_is_waited_for() {
        let f = Fixture::new(&PREHASHED, &["disk.raw", "disk.qcow2"]).await;
        let built = f.run("one").await;
        assert_eq!(
            std::fs::read(f.dir.path().join("one/cleaned")).unwrap(),
            b"done",
            "the cleanup ran before the node was done"
        );
        let stale = &built[0].artifact.blob;
        let now = std::fs::read(&built[0].path).unwrap();
        assert_eq!(stale.blake3, blake3::hash(&now).to_hex().to_string());
        assert_eq!(stale.size, 1 << 20, "the changed file's own digests");
        assert_eq!(
            built[1].artifact.blob.blake3,
            blake3::hash(&big(1)).to_hex().to_string()
        );
        for b in &built {
            assert!(f.store.blob_intact(&b.artifact.blob).await.unwrap());
        }
    }

    static SEVERAL: Writes = Writes {
        body: |i| format!("part {i}\n").repeat(i + 1).into_bytes(),
        prehash: false,
    };

    /// Outputs large enough to be kept as verified copies.
    static BIG: Writes = Writes {
        body: big,
        prehash: false,
    };

    fn big(i: usize) -> Vec<u8> {
        (0..(3usize << 20)).map(|n| (n * 7 + i) as u8).collect()
    }

    fn prepared() -> Prepared {
        Prepared {
            key: "ab".repeat(32),
            inputs: Vec::new(),
            work: Box::new(()),
            outputs: None,
        }
    }

    /// A project directory with a local store, and one node of `kind`.
    struct Fixture {
        dir: tempfile::TempDir,
        store: Store,
        p: Arc<Pipeline>,
        cx: StageContext,
        node: ArtifactNode,
        sealer: Sealer,
        verified: Verified,
        kind: &'static dyn Kind,
    }

    impl Fixture {
        async fn new(kind: &'static dyn Kind, outputs: &[&str]) -> Fixture {
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
                outputs: outputs.iter().map(|o| o.to_string()).collect(),
                cache_key: None,
            };
            let mut opts = keys::GenerateOptions::new("t <t@example.invalid>");
            opts.algorithm = keys::Algorithm::Ed25519;
            let sealer = Sealer::new(
                &keys::SecretKey::generate(&opts).unwrap(),
                std::time::SystemTime::now(),
            );
            let verified = Verified::new(dir.path());
            Fixture {
                dir,
                store,
                p,
                cx,
                node,
                sealer,
                verified,
                kind,
            }
        }

        /// Runs the node into the new directory `out` of the project.
        async fn try_run(&self, out: &str) -> Result<Vec<Built>> {
            let out = self.dir.path().join(out);
            std::fs::create_dir_all(&out).unwrap();
            run_node(
                self.kind,
                self.p.clone(),
                self.cx.clone(),
                self.node.clone(),
                prepared(),
                0.0,
                &self.store,
                &self.sealer,
                &self.verified,
                &out,
            )
            .await
        }

        async fn run(&self, out: &str) -> Vec<Built> {
            self.try_run(out).await.unwrap()
        }
    }

    #[tokio::test]
    async fn a_node_with_several_outputs_stores_and_restores_each() {
        let f = Fixture::new(&SEVERAL, &["manifest.json", "layer-1.tar", "layer-2.tar"]).await;
        let (store, sealer) = (&f.store, &f.sealer);
        let run = |out| f.try_run(out);
        let first = run("one").await.unwrap();
        let names: Vec<&str> = first.iter().map(|b| b.artifact.name.as_str()).collect();
        assert_eq!(names, ["manifest.json", "layer-1.tar", "layer-2.tar"]);
        assert!(first.iter().all(|b| !b.cache_hit));
        let records::cache::Lookup::Trusted(record) =
            records::cache::stage(store, &"ab".repeat(32), sealer)
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

    fn ino(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    /// A restore links the project's verified copy instead of copying out of
    /// the store, never links a store file, and falls back to a checked copy
    /// when the verified copy changed; a blob the store lost is stored again.
    #[tokio::test]
    async fn a_restore_links_the_verified_copy_and_copies_when_it_changed() {
        let f = Fixture::new(&BIG, &["disk.raw", "disk.qcow2"]).await;
        let (dir, store, verified) = (&f.dir, &f.store, &f.verified);
        let store_dir = dir.path().join("s");
        let run = |out| f.run(out);
        let first = run("one").await;
        assert!(first.iter().all(|b| !b.cache_hit));
        let blob_file = |b: &Built| store_dir.join(b.artifact.blob.key());
        for b in &first {
            let copy = dir
                .path()
                .join(super::super::reuse::DIR)
                .join(&b.artifact.blob.blake3);
            assert_eq!(
                ino(&copy),
                ino(&b.path),
                "the built file is the verified copy"
            );
            assert_ne!(ino(&blob_file(b)), ino(&b.path), "never the store's file");
        }

        // Unchanged: linked, not copied.
        let second = run("two").await;
        assert!(second.iter().all(|b| b.cache_hit));
        for (a, b) in first.iter().zip(&second) {
            assert_eq!(ino(&a.path), ino(&b.path), "{} linked", b.artifact.name);
        }

        // The verified copy written in place (an image mounted read-write):
        // the next restore copies from the store, checking the digest.
        // (After a pause: file times advance in clock ticks.)
        std::thread::sleep(std::time::Duration::from_millis(50));
        {
            use std::io::{Seek, Write};
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&first[0].path)
                .unwrap();
            f.seek(std::io::SeekFrom::Start(1000)).unwrap();
            f.write_all(b"scribbled").unwrap();
        }
        let third = run("three").await;
        assert_ne!(ino(&third[0].path), ino(&first[0].path));
        assert_eq!(std::fs::read(&third[0].path).unwrap(), big(0));
        assert_eq!(
            ino(&third[1].path),
            ino(&first[1].path),
            "the other is still linked"
        );

        // The store's copy damaged: the verified copy (the one the last
        // restore checked) is used, and its bytes are the right ones.
        let damaged = blob_file(&third[0]);
        let mut bytes = std::fs::read(&damaged).unwrap();
        bytes[5] ^= 0xff;
        std::fs::remove_file(&damaged).unwrap();
        std::fs::write(&damaged, &bytes).unwrap();
        let fourth = run("four").await;
        assert_eq!(ino(&fourth[0].path), ino(&third[0].path));
        assert_eq!(std::fs::read(&fourth[0].path).unwrap(), big(0));

        // The store lost a blob: the stage is built again and the blob
        // stored again (the record is not restorable).
        std::fs::remove_file(blob_file(&fourth[1])).unwrap();
        let fifth = run("five").await;
        assert!(fifth.iter().all(|b| !b.cache_hit));
        assert!(store.blob_intact(&fifth[1].artifact.blob).await.unwrap());

        // Build directories removed: a verified copy goes on the next prune
        // once no build holds it.
        let listing = || -> Vec<std::ffi::OsString> {
            std::fs::read_dir(dir.path().join(super::super::reuse::DIR))
                .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
                .unwrap_or_default()
        };
        for d in ["one", "two", "three", "four"] {
            std::fs::remove_dir_all(dir.path().join(d)).unwrap();
        }
        verified.prune();
        assert_eq!(listing().len(), 4, "{:?}", listing());
        std::fs::remove_dir_all(dir.path().join("five")).unwrap();
        verified.prune();
        assert!(listing().is_empty(), "{:?}", listing());

        // Without a verified copy, restored out of the store (repaired by
        // the rebuild above), digest checked.
        std::fs::remove_dir_all(dir.path().join(super::super::reuse::DIR)).unwrap();
        let sixth = run("six").await;
        assert_eq!(std::fs::read(&sixth[0].path).unwrap(), big(0));
        assert!(store.blob_intact(&sixth[0].artifact.blob).await.unwrap());
    }
}
