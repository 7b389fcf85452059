//! One set of store tests, run against every backend: `local::*` on a
//! temporary directory, `s3::*` against a fresh moto server and bucket.
//! Backend-specific failure modes (a server that goes away, one that ignores
//! conditional writes, a closed port, refused credentials) follow.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use pipe_e2e::proxy::{HeaderDroppingProxy, ResponseLosingProxy, StoppingProxy};
use pipe_e2e::s3::{MotoServer, free_port, overrides_for};
use pipeline::Error;
use pipeline::store::{
    Body, Condition, OpenOptions, S3Overrides, STORE_FORMAT, Store, StoreUrl, Version, layout,
};
use tokio::io::AsyncReadExt;

/// A backend under test: its store, and a way around the store to look at
/// and tamper with what it wrote.
struct Env {
    url: StoreUrl,
    s3: S3Overrides,
    raw: Raw,
    _dir: tempfile::TempDir,
}

enum Raw {
    Local(PathBuf),
    S3 {
        moto: MotoServer,
        client: aws_sdk_s3::Client,
    },
}

impl Env {
    fn local() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        Env {
            url: StoreUrl::Local(root.clone()),
            s3: S3Overrides::default(),
            raw: Raw::Local(root),
            _dir: dir,
        }
    }

    fn s3() -> Env {
        let moto = MotoServer::start();
        Env {
            url: moto.store_url("some/prefix"),
            s3: moto.overrides(),
            raw: Raw::S3 {
                client: moto.client(),
                moto,
            },
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn open(&self) -> Store {
        self.open_with(&OpenOptions::default()).await.unwrap()
    }

    async fn open_with(&self, opts: &OpenOptions) -> pipeline::Result<Store> {
        Store::open_with(&self.url, opts, &self.s3).await
    }

    fn scratch(&self) -> &Path {
        self._dir.path()
    }

    /// Writes bytes under `key` behind the store's back.
    async fn raw_put(&self, key: &str, bytes: Vec<u8>) {
        match &self.raw {
            Raw::Local(root) => {
                let p = root.join(key);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, bytes).unwrap();
            }
            Raw::S3 { moto, client } => {
                client
                    .put_object()
                    .bucket(moto.bucket())
                    .key(format!("some/prefix/{key}"))
                    .body(bytes.into())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    /// Every key in the backend, looked up without the store.
    async fn raw_keys(&self) -> Vec<String> {
        match &self.raw {
            Raw::Local(root) => {
                let mut out = Vec::new();
                let mut stack = vec![root.clone()];
                while let Some(d) = stack.pop() {
                    let Ok(rd) = std::fs::read_dir(&d) else {
                        continue;
                    };
                    for e in rd {
                        let p = e.unwrap().path();
                        let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
                        if rel.starts_with(".tmp") || rel.starts_with(".locks") {
                            continue;
                        }
                        if p.is_dir() {
                            stack.push(p);
                        } else {
                            out.push(rel);
                        }
                    }
                }
                out.sort();
                out
            }
            Raw::S3 { moto, client } => {
                let out = client
                    .list_objects_v2()
                    .bucket(moto.bucket())
                    .send()
                    .await
                    .unwrap();
                let mut keys: Vec<String> = out
                    .contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .filter_map(|k| k.strip_prefix("some/prefix/"))
                    .filter(|k| !k.starts_with(".pipe-probe/"))
                    .map(str::to_string)
                    .collect();
                keys.sort();
                keys
            }
        }
    }

    /// Leftover temporary files (local only: S3 has none in the bucket).
    fn temp_files(&self) -> usize {
        match &self.raw {
            Raw::Local(root) => std::fs::read_dir(root.join(".tmp"))
                .map(|d| d.count())
                .unwrap_or(0),
            Raw::S3 { .. } => 0,
        }
    }
}

/// Generates `local::NAME` and `s3::NAME` for each `async fn NAME(env: Env)`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Env::local()).await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::Env::s3()).await
                }
            )*
        }
    };
}

conformance!(
    round_trip,
    open_writes_nothing_and_first_write_creates_root,
    head_list_delete,
    list_paginates,
    missing_and_invalid_keys,
    put_if_absent_race,
    compare_and_swap_race,
    blob_put_twice_uploads_once,
    copy_made_inside_the_store,
    copy_replaces_and_stays_apart,
    batch_writes_then_flush,
    corrupted_blob_detected,
    failing_stream_leaves_nothing,
    newer_format_refused,
);

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32) as u8
        })
        .collect()
}

async fn read_all(store: &Store, key: &str) -> Vec<u8> {
    let mut obj = store.get(key).await.unwrap().expect("the key exists");
    let mut buf = Vec::new();
    obj.body.read_to_end(&mut buf).await.unwrap();
    assert_eq!(buf.len() as u64, obj.meta.size);
    buf
}

async fn round_trip(env: Env) {
    let store = env.open().await;
    // Bytes.
    let v1 = store
        .put(
            "a/bytes",
            Body::from_bytes(b"hello".to_vec()),
            Condition::Overwrite,
        )
        .await
        .unwrap();
    let (b, v) = store.get_bytes("a/bytes").await.unwrap().unwrap();
    assert_eq!(&b[..], b"hello");
    assert_eq!(v, v1);
    // A file bigger than one copy chunk.
    let data = pattern(3 << 20 | 123, 1);
    let f = env.scratch().join("file");
    std::fs::write(&f, &data).unwrap();
    store
        .put("a/file", Body::from_file(&f), Condition::IfAbsent)
        .await
        .unwrap();
    assert_eq!(read_all(&store, "a/file").await, data);
    // A stream.
    let data2 = pattern(2 << 20, 2);
    store
        .put(
            "a/stream",
            Body::from_reader(std::io::Cursor::new(data2.clone())),
            Condition::Overwrite,
        )
        .await
        .unwrap();
    assert_eq!(read_all(&store, "a/stream").await, data2);
    // The empty object.
    store
        .put(
            "a/empty",
            Body::from_bytes(Bytes::new()),
            Condition::Overwrite,
        )
        .await
        .unwrap();
    assert_eq!(read_all(&store, "a/empty").await, b"");
    // Overwrite changes the version; the same content read twice keeps it.
    let v2 = store
        .put(
            "a/bytes",
            Body::from_bytes(&b"world"[..]),
            Condition::Overwrite,
        )
        .await
        .unwrap();
    assert_ne!(v1, v2);
    assert_eq!(store.head("a/bytes").await.unwrap().unwrap().version, v2);
    // Blobs: from a file and from a stream, read back verified.
    let put = store.put_blob_file(&f).await.unwrap();
    assert!(put.uploaded);
    assert_eq!(put.blob, pipeline::store::digest::hash_bytes(&data));
    let mut r = store.get_blob(&put.blob).await.unwrap();
    let mut back = Vec::new();
    r.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, data);
    let put2 = store.put_blob(&data2[..]).await.unwrap();
    assert!(put2.uploaded);
    let dest = env.scratch().join("out/blob");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    store.get_blob_to_file(&put2.blob, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data2);
    assert_eq!(env.temp_files(), 0, "temporary files left behind");
}

async fn open_writes_nothing_and_first_write_creates_root(env: Env) {
    let store = env.open().await;
    assert_eq!(store.root().await.unwrap(), None);
    assert!(store.list("").await.unwrap().is_empty());
    assert!(env.raw_keys().await.is_empty(), "open wrote something");
    store
        .put("x", Body::from_bytes(&b"1"[..]), Condition::IfAbsent)
        .await
        .unwrap();
    let root = store
        .root()
        .await
        .unwrap()
        .expect("the first write made the root");
    assert_eq!(root.format, STORE_FORMAT);
    assert_eq!(
        env.raw_keys().await,
        vec![layout::ROOT.to_string(), "x".into()]
    );
    // A second store on the same location sees it and keeps it.
    let again = env.open().await;
    again
        .put("y", Body::from_bytes(&b"2"[..]), Condition::IfAbsent)
        .await
        .unwrap();
    assert_eq!(again.root().await.unwrap(), Some(root));
}

async fn head_list_delete(env: Env) {
    let store = env.open().await;
    for k in [
        "envs/prod.json",
        "builds/b/manifest.json",
        "builds/a/manifest.json",
        "builds2/x",
        "envs/dev.json",
    ] {
        store
            .put(
                k,
                Body::from_bytes(k.as_bytes().to_vec()),
                Condition::IfAbsent,
            )
            .await
            .unwrap();
    }
    let meta = store.head("envs/prod.json").await.unwrap().unwrap();
    assert_eq!(meta.key, "envs/prod.json");
    assert_eq!(meta.size, "envs/prod.json".len() as u64);
    assert_eq!(
        meta.version,
        store.get_bytes("envs/prod.json").await.unwrap().unwrap().1
    );

    let keys =
        |v: Vec<pipeline::store::ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
    assert_eq!(
        keys(store.list("builds/").await.unwrap()),
        vec!["builds/a/manifest.json", "builds/b/manifest.json"]
    );
    assert_eq!(
        keys(store.list("builds").await.unwrap()),
        vec![
            "builds/a/manifest.json",
            "builds/b/manifest.json",
            "builds2/x"
        ]
    );
    assert_eq!(
        keys(store.list("envs/p").await.unwrap()),
        vec!["envs/prod.json"]
    );
    let all = store.list("").await.unwrap();
    assert_eq!(
        keys(all.clone()),
        vec![
            "builds/a/manifest.json",
            "builds/b/manifest.json",
            "builds2/x",
            "envs/dev.json",
            "envs/prod.json",
            layout::ROOT,
        ]
    );
    let listed = all.iter().find(|m| m.key == "envs/prod.json").unwrap();
    assert_eq!(listed, &meta, "list and head agree on size and version");

    store.delete("envs/prod.json").await.unwrap();
    assert_eq!(store.head("envs/prod.json").await.unwrap(), None);
    assert_eq!(
        store.get("envs/prod.json").await.unwrap().map(|o| o.meta),
        None
    );
    store.delete("envs/prod.json").await.unwrap(); // deleting again is fine
    assert_eq!(
        keys(store.list("envs/").await.unwrap()),
        vec!["envs/dev.json"]
    );
}

async fn list_paginates(env: Env) {
    let store = env.open().await;
    // More than one S3 page (1000 keys).
    let n = 1050;
    let store2 = store.clone();
    futures::future::try_join_all((0..n).map(|i| {
        let s = store2.clone();
        async move {
            s.put(
                &format!("many/{i:05}"),
                Body::from_bytes(Vec::new()),
                Condition::IfAbsent,
            )
            .await
        }
    }))
    .await
    .unwrap();
    let listed = store.list("many/").await.unwrap();
    assert_eq!(listed.len(), n);
    let expected: Vec<String> = (0..n).map(|i| format!("many/{i:05}")).collect();
    assert_eq!(
        listed.into_iter().map(|m| m.key).collect::<Vec<_>>(),
        expected
    );
}

async fn missing_and_invalid_keys(env: Env) {
    let store = env.open().await;
    assert!(store.get("nope").await.unwrap().is_none());
    assert!(store.get_bytes("no/pe").await.unwrap().is_none());
    assert!(store.head("nope").await.unwrap().is_none());
    let blob = pipeline::store::digest::hash_bytes(b"never stored");
    match store.get_blob(&blob).await {
        Err(Error::NotFound { key }) => assert_eq!(key, blob.key()),
        other => panic!("expected NotFound, got {other:?}"),
    }
    for bad in ["", "/abs", "a/../b", "a//b", ".tmp/x", ".locks/x"] {
        match store
            .put(bad, Body::from_bytes(&b"x"[..]), Condition::Overwrite)
            .await
        {
            Err(Error::InvalidKey { .. }) => {}
            other => panic!("key {bad:?}: expected InvalidKey, got {other:?}"),
        }
        assert!(matches!(
            store.get(bad).await,
            Err(Error::InvalidKey { .. })
        ));
    }
    match store
        .put(
            "k",
            Body::from_bytes(&b"x"[..]),
            Condition::IfMatch(Version("\"nope\"".into())),
        )
        .await
    {
        Err(Error::Conflict { key, .. }) => assert_eq!(key, "k"),
        other => panic!("IfMatch on a missing key: expected Conflict, got {other:?}"),
    }
}

async fn put_if_absent_race(env: Env) {
    let store = env.open().await;
    // The root object is made by the first write; make it now so that the
    // race is about the key only.
    store
        .put("warm", Body::from_bytes(Vec::new()), Condition::Overwrite)
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16u8)
        .map(|i| {
            let (s, b) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                b.wait().await;
                s.put(
                    "race/key",
                    Body::from_bytes(vec![i; 1000]),
                    Condition::IfAbsent,
                )
                .await
                .map(|_| i)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(i) => winners.push(i),
            Err(Error::AlreadyExists { key }) => assert_eq!(key, "race/key"),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one creator wins: {winners:?}");
    let (b, _) = store.get_bytes("race/key").await.unwrap().unwrap();
    assert_eq!(&b[..], &vec![winners[0]; 1000][..]);
}

async fn compare_and_swap_race(env: Env) {
    let store = env.open().await;
    store
        .put("ptr", Body::from_bytes(&b"0"[..]), Condition::IfAbsent)
        .await
        .unwrap();
    let mut history = vec!["0".to_string()];
    for round in 1..=4 {
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let (s, b) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    let (old, version) = s.get_bytes("ptr").await.unwrap().unwrap();
                    // Everyone has read the same version before anyone writes.
                    b.wait().await;
                    let new = format!("{}>{round}.{i}", String::from_utf8_lossy(&old));
                    s.put(
                        "ptr",
                        Body::from_bytes(new.clone()),
                        Condition::IfMatch(version),
                    )
                    .await
                    .map(|v| (new, v))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(w) => winners.push(w),
                Err(Error::Conflict { key, expected, .. }) => {
                    assert_eq!(key, "ptr");
                    assert!(expected.is_some());
                }
                Err(e) => panic!("round {round}: unexpected error: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one wins");
        let (value, version) = winners.pop().unwrap();
        let (now, now_version) = store.get_bytes("ptr").await.unwrap().unwrap();
        assert_eq!(String::from_utf8_lossy(&now), value);
        assert_eq!(now_version, version);
        assert!(value.starts_with(history.last().unwrap().as_str()));
        history.push(value);
    }
}

/// A pool copy of a blob: made inside the store, the same bytes; a second
/// copy to the same key is harmless.
async fn copy_made_inside_the_store(env: Env) {
    let store = env.open().await;
    let data = pattern(300_000, 5);
    let put = store.put_blob(&data[..]).await.unwrap();
    let to = "pool/main/d/demo/demo_1.0.0~rc1+b2_all.deb";
    assert!(store.copy_if_absent(&put.blob.key(), to).await.unwrap());
    assert_eq!(read_all(&store, to).await, data);
    store.copy_if_absent(&put.blob.key(), to).await.unwrap();
    assert_eq!(read_all(&store, to).await, data);
    assert_eq!(
        env.raw_keys().await,
        vec![put.blob.key(), layout::ROOT.to_string(), to.to_string()]
    );
    // A missing source is an error, and leaves nothing behind.
    assert!(
        store
            .copy_if_absent("blobs/blake3/00/none", "pool/x")
            .await
            .is_err()
    );
    assert!(store.head("pool/x").await.unwrap().is_none());
}

/// `Store::copy` (index files of the same bytes): `to` gets `from`'s bytes,
/// replacing what it held; replacing `from` afterwards leaves `to` as it was
/// (locally the two share a file until one is replaced, always by a new
/// file); a missing source is an error and leaves `to` alone.
async fn copy_replaces_and_stays_apart(env: Env) {
    let store = env.open().await;
    let put = |key: &'static str, bytes: &'static [u8]| {
        let store = &store;
        async move {
            store
                .put(key, Body::from_bytes(bytes.to_vec()), Condition::Overwrite)
                .await
                .unwrap();
        }
    };
    put("dists/dev/main/binary-amd64/Packages", b"new index\n").await;
    put("dists/dev/main/binary-arm64/Packages", b"old index\n").await;
    store
        .copy(
            "dists/dev/main/binary-amd64/Packages",
            "dists/dev/main/binary-arm64/Packages",
        )
        .await
        .unwrap();
    assert_eq!(
        read_all(&store, "dists/dev/main/binary-arm64/Packages").await,
        b"new index\n"
    );
    put("dists/dev/main/binary-amd64/Packages", b"next index\n").await;
    assert_eq!(
        read_all(&store, "dists/dev/main/binary-arm64/Packages").await,
        b"new index\n",
        "replacing the source does not reach the copy"
    );
    assert!(
        store
            .copy("dists/dev/none", "dists/dev/main/binary-arm64/Packages")
            .await
            .is_err()
    );
    assert_eq!(
        read_all(&store, "dists/dev/main/binary-arm64/Packages").await,
        b"new index\n"
    );
}

/// Writes through a batch handle are visible at once to every handle, and
/// `flush` succeeds.
async fn batch_writes_then_flush(env: Env) {
    let store = env.open().await;
    let batch = store.batch();
    for i in 0..20 {
        batch
            .put(
                &format!("records/{i:02}.json"),
                Body::from_bytes(format!("{{\"n\":{i}}}").into_bytes()),
                Condition::IfAbsent,
            )
            .await
            .unwrap();
    }
    batch.flush().await.unwrap();
    assert_eq!(store.list("records/").await.unwrap().len(), 20);
    assert_eq!(read_all(&store, "records/07.json").await, b"{\"n\":7}");
    match batch
        .put(
            "records/07.json",
            Body::from_bytes(&b"x"[..]),
            Condition::IfAbsent,
        )
        .await
    {
        Err(Error::AlreadyExists { .. }) => {}
        other => panic!("a batch handle keeps the conditions: {other:?}"),
    }
}

async fn blob_put_twice_uploads_once(env: Env) {
    let store = env.open().await;
    let data = pattern(1 << 20, 3);
    let f = env.scratch().join("blob");
    std::fs::write(&f, &data).unwrap();
    let first = store.put_blob_file(&f).await.unwrap();
    assert!(first.uploaded);
    let version = store
        .head(&first.blob.key())
        .await
        .unwrap()
        .unwrap()
        .version;
    let second = store.put_blob_file(&f).await.unwrap();
    assert!(!second.uploaded, "the blob was uploaded again");
    assert_eq!(second.blob, first.blob);
    let third = store.put_blob(&data[..]).await.unwrap();
    assert!(!third.uploaded);
    assert_eq!(
        store
            .head(&first.blob.key())
            .await
            .unwrap()
            .unwrap()
            .version,
        version
    );
    assert_eq!(
        env.raw_keys().await,
        vec![first.blob.key(), layout::ROOT.to_string()]
    );
    assert_eq!(env.temp_files(), 0);
}

async fn corrupted_blob_detected(env: Env) {
    let store = env.open().await;
    let data = pattern(300_000, 4);
    let put = store.put_blob(&data[..]).await.unwrap();
    let key = put.blob.key();

    // Same size, one byte flipped: only the digest can tell.
    let mut bad = data.clone();
    bad[150_000] ^= 1;
    env.raw_put(&key, bad).await;
    let mut r = store.get_blob(&put.blob).await.unwrap();
    let err = r.read_to_end(&mut Vec::new()).await.unwrap_err();
    let inner = err.into_inner().expect("a wrapped store error");
    match *inner.downcast::<Error>().unwrap() {
        Error::DigestMismatch { key: k, .. } => assert_eq!(k, key),
        other => panic!("expected DigestMismatch, got {other}"),
    }
    let out = env.scratch().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let dest = out.join("dest");
    match store.get_blob_to_file(&put.blob, &dest).await {
        Err(e @ Error::DigestMismatch { .. }) => {
            assert!(e.to_string().contains(&key), "{e}");
            assert_eq!(e.exit_code(), pipeline::error::EXIT_VERIFY);
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(!dest.exists(), "a corrupt blob reached its destination");
    let leftovers: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // Truncated: the size tells, before any byte is read.
    env.raw_put(&key, data[..1000].to_vec()).await;
    match store.get_blob_to_file(&put.blob, &dest).await {
        Err(Error::DigestMismatch { key: k, .. }) => assert_eq!(k, key),
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(!dest.exists());

    // Publishing the blob again repairs it.
    let again = store.put_blob(&data[..]).await.unwrap();
    assert!(again.uploaded);
    store.get_blob_to_file(&put.blob, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

/// Yields some bytes, then fails.
struct FailingReader {
    left: usize,
}

impl tokio::io::AsyncRead for FailingReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("the source broke")));
        }
        let n = self.left.min(buf.remaining()).min(64 << 10);
        buf.put_slice(&vec![7u8; n]);
        self.left -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

async fn failing_stream_leaves_nothing(env: Env) {
    let store = env.open().await;
    let err = store
        .put(
            "broken",
            Body::from_reader(FailingReader { left: 3 << 20 }),
            Condition::Overwrite,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the source broke"), "{err}");
    let err = store
        .put_blob(FailingReader { left: 3 << 20 })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the source broke"), "{err}");
    assert!(store.head("broken").await.unwrap().is_none());
    let keys = env.raw_keys().await;
    assert!(
        keys.iter().all(|k| k == layout::ROOT),
        "something became visible: {keys:?}"
    );
    assert_eq!(env.temp_files(), 0);
}

async fn newer_format_refused(env: Env) {
    let root = serde_json::json!({ "format": STORE_FORMAT + 1, "created_by": "pipe 99" });
    env.raw_put(layout::ROOT, serde_json::to_vec(&root).unwrap())
        .await;
    match env.open_with(&OpenOptions::default()).await {
        Err(e @ Error::StoreFormat { .. }) => {
            assert!(
                e.to_string()
                    .contains(&format!("format {}", STORE_FORMAT + 1)),
                "{e}"
            );
        }
        other => panic!("expected StoreFormat, got {other:?}"),
    }
    // A store opened before the format changed refuses to write after it did.
    let fresh = Env {
        url: env.url.clone(),
        s3: env.s3.clone(),
        raw: env.raw,
        _dir: env._dir,
    };
    fresh
        .raw_put(layout::ROOT, br#"{"format": 1}"#.to_vec())
        .await;
    let store = fresh.open().await;
    fresh
        .raw_put(layout::ROOT, serde_json::to_vec(&root).unwrap())
        .await;
    match store
        .put("k", Body::from_bytes(&b"x"[..]), Condition::Overwrite)
        .await
    {
        Err(Error::StoreFormat { found, .. }) => assert_eq!(found, STORE_FORMAT + 1),
        other => panic!("expected StoreFormat, got {other:?}"),
    }
}

// S3 failure modes.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_server_gone_mid_upload_leaves_nothing() {
    let moto = MotoServer::start();
    let url = moto.store_url("p");
    // Let the root object and the probe through, then die inside the body.
    let proxy = StoppingProxy::start(moto.addr(), 4 << 20);
    let store = Store::open_with(
        &url,
        &OpenOptions::default(),
        &overrides_for(&proxy.endpoint()),
    )
    .await
    .unwrap();
    let err = store
        .put(
            "big",
            Body::from_bytes(pattern(16 << 20, 5)),
            Condition::IfAbsent,
        )
        .await
        .unwrap_err();
    eprintln!("{err}");
    assert!(proxy.stopped());
    assert!(
        matches!(err, Error::Unreachable { .. } | Error::S3 { .. }),
        "expected Unreachable or S3, got {err:?}"
    );
    assert!(err.to_string().contains(&proxy.endpoint()), "{err}");
    let listed = moto
        .client()
        .list_objects_v2()
        .bucket(moto.bucket())
        .prefix("p/big")
        .send()
        .await
        .unwrap();
    assert!(
        listed.contents().is_empty(),
        "a partial object is visible: {listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_server_ignoring_conditional_writes_is_refused() {
    let moto = MotoServer::start();
    let url = moto.store_url("p");
    let proxy = HeaderDroppingProxy::start(moto.addr());
    let ov = overrides_for(&proxy.endpoint());
    let store = Store::open_with(&url, &OpenOptions::default(), &ov)
        .await
        .unwrap();
    match store
        .put("k", Body::from_bytes(&b"x"[..]), Condition::Overwrite)
        .await
    {
        Err(e @ Error::CasUnsupported { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&proxy.endpoint()) && msg.contains(moto.bucket()),
                "{msg}"
            );
            assert!(e.hint().unwrap().contains("--unsafe-no-cas"));
        }
        other => panic!("expected CasUnsupported, got {other:?}"),
    }
    assert!(proxy.dropped_headers() >= 2);
    // Nothing was written but the probe.
    assert!(store.list("").await.unwrap().is_empty());

    let opts = OpenOptions {
        unsafe_no_cas: true,
        ..OpenOptions::default()
    };
    let store = Store::open_with(&url, &opts, &ov).await.unwrap();
    store
        .put("k", Body::from_bytes(&b"x"[..]), Condition::Overwrite)
        .await
        .unwrap();
    assert_eq!(&store.get_bytes("k").await.unwrap().unwrap().0[..], b"x");

    // The same server without the proxy passes the probe.
    let direct = Store::open_with(&url, &OpenOptions::default(), &moto.overrides())
        .await
        .unwrap();
    direct
        .put("k2", Body::from_bytes(&b"y"[..]), Condition::IfAbsent)
        .await
        .unwrap();
}

/// A compare-and-swap that landed but whose response was lost: the SDK
/// retries, the retry finds the condition no longer holds (412), and the
/// store must see that the object holds exactly what it wrote and report
/// success, not a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_compare_and_swap_whose_response_was_lost_succeeds() {
    let moto = MotoServer::start();
    let proxy = ResponseLosingProxy::start(moto.addr());
    let store = Store::open_with(
        &moto.store_url("p"),
        &OpenOptions::default(),
        &overrides_for(&proxy.endpoint()),
    )
    .await
    .unwrap();
    let v1 = store
        .put("ptr", Body::from_bytes(&b"one"[..]), Condition::Overwrite)
        .await
        .unwrap();
    store
        .put(
            "ptr",
            Body::from_bytes(&b"two"[..]),
            Condition::IfMatch(v1.clone()),
        )
        .await
        .expect("the write landed; the lost response must not turn into a conflict");
    assert_eq!(
        proxy.lost(),
        1,
        "the proxy lost no response: the test proved nothing"
    );
    assert_eq!(
        &store.get_bytes("ptr").await.unwrap().unwrap().0[..],
        b"two"
    );
    // A real conflict stays one.
    match store
        .put(
            "ptr",
            Body::from_bytes(&b"three"[..]),
            Condition::IfMatch(v1),
        )
        .await
    {
        Err(Error::Conflict { .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        &store.get_bytes("ptr").await.unwrap().unwrap().0[..],
        b"two"
    );
}

/// The same for a create-only write (`If-None-Match: *`): the retry finds
/// the object, and the store reads it back: our bytes, written after we sent
/// them, are the success they were. An object that was there before, or
/// holds other bytes, stays a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_create_if_absent_whose_response_was_lost_succeeds() {
    let moto = MotoServer::start();
    let proxy = ResponseLosingProxy::start_matching(moto.addr(), "if-none-match", "/new");
    let store = Store::open_with(
        &moto.store_url("p"),
        &OpenOptions::default(),
        &overrides_for(&proxy.endpoint()),
    )
    .await
    .unwrap();
    store
        .put("new", Body::from_bytes(&b"one"[..]), Condition::IfAbsent)
        .await
        .expect("the write landed; the lost response must not turn into `already exists`");
    assert_eq!(
        proxy.lost(),
        1,
        "the proxy lost no response: the test proved nothing"
    );
    assert_eq!(
        &store.get_bytes("new").await.unwrap().unwrap().0[..],
        b"one"
    );
    for body in [&b"two"[..], &b"one"[..]] {
        if body == b"one" {
            // Written before this request: not ours.
            tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
        }
        match store
            .put("new", Body::from_bytes(body), Condition::IfAbsent)
            .await
        {
            Err(Error::AlreadyExists { .. }) => {}
            other => panic!("expected `already exists`, got {other:?}"),
        }
    }
}

/// A local key's version tokens never repeat (issue 12): many replacements
/// of the same size, in quick succession, even with the same content, each
/// get a new one, and a compare-and-swap against an earlier token fails. (An
/// S3 ETag is a digest of the content: the same bytes again give the same
/// token, which for a compare-and-swap is the same state.)
async fn versions_never_repeat(env: Env) {
    let store = env.open().await;
    let mut seen = std::collections::BTreeSet::new();
    let mut first = None;
    for i in 0..200u32 {
        let v = store
            .put(
                "ptr",
                Body::from_bytes(format!("{:08}", i % 2).into_bytes()),
                Condition::Overwrite,
            )
            .await
            .unwrap();
        assert!(
            seen.insert(v.0.clone()),
            "version {v:?} came back at write {i}"
        );
        assert_eq!(store.head("ptr").await.unwrap().unwrap().version, v);
        first.get_or_insert(v);
    }
    match store
        .put(
            "ptr",
            Body::from_bytes(&b"00000000"[..]),
            Condition::IfMatch(first.unwrap()),
        )
        .await
    {
        Err(Error::Conflict { .. }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_versions_never_repeat() {
    versions_never_repeat(Env::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_unreachable_endpoint_is_named() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let url = StoreUrl::parse("s3://nobody-home/x", Path::new("/")).unwrap();
    let err = Store::open_with(&url, &OpenOptions::default(), &overrides_for(&endpoint))
        .await
        .unwrap_err();
    match &err {
        Error::Unreachable {
            endpoint: e,
            bucket,
            ..
        } => {
            assert_eq!(e, &endpoint);
            assert_eq!(bucket, "nobody-home");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(
        msg.contains(&endpoint) && msg.contains("nobody-home"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_wrong_credentials_are_access_denied() {
    // With INITIAL_NO_AUTH_ACTION_COUNT=0, moto checks every request's
    // credentials against its IAM users, of which there are none.
    let moto = MotoServer::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")], false);
    let url = StoreUrl::parse("s3://some-bucket/x", Path::new("/")).unwrap();
    let err = Store::open_with(&url, &OpenOptions::default(), &moto.overrides())
        .await
        .unwrap_err();
    assert!(err.hint().unwrap().contains("AWS_ACCESS_KEY_ID"));
    match &err {
        Error::AccessDenied {
            endpoint, bucket, ..
        } => {
            assert_eq!(endpoint, &moto.endpoint());
            assert_eq!(bucket, "some-bucket");
        }
        other => panic!("expected AccessDenied, got {other:?}"),
    }
}

// Large streams, in a process of their own so the peak memory is theirs.

const GIB: u64 = 1 << 30;
const PEAK_LIMIT_KIB: u64 = 100 * 1024;

fn stream_gib(url: &str, env: &[(String, String)], cwd: &Path) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_store-stream"))
        .args([url, &GIB.to_string()])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("TMPDIR", cwd)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "store-stream failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn expected_gib_blake3() -> String {
    let mut xof = blake3::Hasher::new()
        .update(b"pipe store-stream")
        .finalize_xof();
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..(GIB >> 20) {
        xof.fill(&mut buf);
        h.update(&buf);
    }
    h.finalize().to_hex().to_string()
}

fn check_stream_report(report: &serde_json::Value, backend: &str) {
    eprintln!("{backend}: {report}");
    let expected = expected_gib_blake3();
    assert_eq!(report["blob"]["size"], GIB);
    assert_eq!(report["blob"]["blake3"], expected.as_str());
    assert_eq!(report["read_size"], GIB);
    assert_eq!(report["read_blake3"], expected.as_str());
    assert_eq!(report["uploaded"], true);
    let hwm = report["vm_hwm_kib"].as_u64().unwrap();
    assert!(
        hwm < PEAK_LIMIT_KIB,
        "{backend}: peak memory {} MiB for a 1 GiB stream (limit 100 MiB)",
        hwm / 1024
    );
}

#[test]
fn local_gib_streams_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let report = stream_gib(store.to_str().unwrap(), &[], dir.path());
    check_stream_report(&report, "local");
}

#[test]
fn s3_gib_streams_in_bounded_memory() {
    let moto = MotoServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("s3://{}/big", moto.bucket());
    let report = stream_gib(&url, &moto.env(), dir.path());
    check_stream_report(&report, "s3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_multipart_is_conditional_and_aborted_on_failure() {
    let moto = MotoServer::start();
    let store = Store::open_with(
        &moto.store_url("p"),
        &OpenOptions::default(),
        &moto.overrides(),
    )
    .await
    .unwrap();
    // Above the multipart threshold (64 MiB).
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big");
    let data = pattern((64 << 20) + 12345, 6);
    std::fs::write(&f, &data).unwrap();
    store
        .put("big", Body::from_file(&f), Condition::IfAbsent)
        .await
        .unwrap();
    match store
        .put("big", Body::from_file(&f), Condition::IfAbsent)
        .await
    {
        Err(Error::AlreadyExists { key }) => assert_eq!(key, "big"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let uploads = moto
        .client()
        .list_multipart_uploads()
        .bucket(moto.bucket())
        .send()
        .await
        .unwrap();
    assert!(
        uploads.uploads().is_empty(),
        "a refused upload was not aborted: {uploads:?}"
    );
    assert_eq!(read_all(&store, "big").await.len(), data.len());
    let blob = store.put_blob_file(&f).await.unwrap();
    // A multipart upload carries the headers of a small write: a blob is
    // immutable for a cache in front of the bucket.
    let head = moto
        .client()
        .head_object()
        .bucket(moto.bucket())
        .key(format!("p/{}", blob.blob.key()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (head.cache_control(), head.content_type()),
        (
            Some("public, max-age=31536000, immutable"),
            Some("application/octet-stream")
        )
    );
    let dest = dir.path().join("back");
    store.get_blob_to_file(&blob.blob, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}
