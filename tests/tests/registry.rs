//! The registry client (`pipeline::registry`) against a real registry
//! (`docker-registry`, started per test), read back with skopeo and podman:
//! blobs the registry has are not uploaded again, layers go up in chunks
//! with progress, tags move by a manifest-only push, credentials come from
//! an auth file, provenance is attached and found through the referrers
//! tag, and every failure names the registry and the image and tags
//! nothing.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use pipe_e2e::oci::{Podman, digest_of, skopeo, try_skopeo};
use pipe_e2e::proxy::StoppingProxy;
use pipe_e2e::registry::RegistryServer;
use pipeline::error::RegistryFailure;
use pipeline::registry::{
    BlobOutcome, CredentialSources, DirSource, ImagePush, NoProgress, PushProgress, Registry,
};
use stages::oci::{
    Base, BlobRef, BuiltImage, ImageBlobs, ImageConfig, ImageSpec, Layer, LayerCompression,
    build_image,
};
use stages::tree::{Mapping, resolve};

/// An image of one package holding `payload` (bytes of a file), built into
/// `out`.
fn image(out: &Path, payload: &[u8], extra: Option<&[u8]>) -> BuiltImage {
    let src = out.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("payload"), payload).unwrap();
    let mut layers = vec![Layer {
        package: "app".into(),
        entries: resolve(
            &src,
            &[Mapping {
                src: "payload".into(),
                dst: "/srv/payload".into(),
                mode: None,
                config: false,
            }],
            1_700_000_000,
        )
        .unwrap(),
    }];
    if let Some(extra) = extra {
        fs::write(src.join("extra"), extra).unwrap();
        layers.push(Layer {
            package: "extra".into(),
            entries: resolve(
                &src,
                &[Mapping {
                    src: "extra".into(),
                    dst: "/srv/extra".into(),
                    mode: None,
                    config: false,
                }],
                1_700_000_000,
            )
            .unwrap(),
        });
    }
    build_image(
        &ImageSpec {
            base: Base::Scratch,
            layers,
            config: ImageConfig {
                entrypoint: vec!["/srv/payload".into()],
                ..Default::default()
            },
            created: 1_700_000_000,
            compression: LayerCompression::Gzip,
            architecture: "amd64".into(),
        },
        &out.join("blobs"),
    )
    .unwrap()
}

fn manifest_bytes(img: &BuiltImage) -> Vec<u8> {
    fs::read(img.path(&img.manifest)).unwrap()
}

/// Incompressible bytes (so layers keep their size).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Pushes `img` as `name:tag`.
async fn push_with(
    reg: &Registry,
    img: &BuiltImage,
    name: &str,
    tag: &str,
    mount_from: &[String],
    progress: &dyn PushProgress,
) -> pipeline::Result<pipeline::registry::PushReport> {
    reg.push_image(
        &ImagePush {
            name,
            tag,
            blobs: &ImageBlobs::from(img),
            manifest: &manifest_bytes(img),
            source: &DirSource(img.dir.clone()),
            mount_from,
        },
        progress,
    )
    .await
}

fn anonymous() -> CredentialSources {
    CredentialSources::default()
}

fn docker_ref(r: &RegistryServer, name: &str, tag: &str) -> String {
    format!("docker://{}/team/{name}:{tag}", r.host())
}

async fn push(
    reg: &Registry,
    img: &BuiltImage,
    name: &str,
    tag: &str,
) -> pipeline::registry::PushReport {
    push_with(reg, img, name, tag, &[], &NoProgress)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_the_registry_has_are_not_uploaded_again() {
    let server = RegistryServer::start();
    let reg = Registry::new(&format!("{}/team", server.host()), true, &anonymous()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), &noise(3 << 20, 1), Some(b"extra\n"));
    let layer_bytes: u64 = img.layers.iter().map(|l| l.size).sum::<u64>() + img.config.size;

    let first = push(&reg, &img, "hello", "b1").await;
    assert_eq!(first.bytes_uploaded, layer_bytes);
    assert_eq!(first.blobs_uploaded, 3);
    assert_eq!(first.bytes_skipped, 0);
    assert_eq!(
        first.reference,
        format!("{}/team/hello@{}", server.host(), img.manifest.digest)
    );
    let flags = ["--tls-verify=false"];
    assert_eq!(
        digest_of(&docker_ref(&server, "hello", "b1"), &flags),
        img.manifest.digest
    );

    // The same image again: nothing uploaded, everything reported skipped.
    let again = push(&reg, &img, "hello", "b2").await;
    assert_eq!((again.bytes_uploaded, again.blobs_uploaded), (0, 0));
    assert_eq!(again.bytes_skipped, layer_bytes);

    // A second image sharing the big layer, in another repository: mounted
    // from the first, only its own layer and config uploaded.
    let dir2 = tempfile::tempdir().unwrap();
    let img2 = image(dir2.path(), &noise(3 << 20, 1), Some(b"other extra\n"));
    assert_eq!(img2.layers[0], img.layers[0]);
    let outcomes = Mutex::new(Vec::new());
    struct Record<'a>(&'a Mutex<Vec<(String, BlobOutcome)>>);
    impl PushProgress for Record<'_> {
        fn blob_done(&self, blob: &BlobRef, outcome: BlobOutcome) {
            self.0.lock().unwrap().push((blob.digest.clone(), outcome));
        }
    }
    let r2 = push_with(
        &reg,
        &img2,
        "world",
        "b1",
        &["hello".to_string()],
        &Record(&outcomes),
    )
    .await
    .unwrap();
    let outcomes = outcomes.into_inner().unwrap();
    assert!(
        outcomes.contains(&(img.layers[0].digest.clone(), BlobOutcome::Mounted)),
        "{outcomes:?}"
    );
    assert_eq!(r2.bytes_skipped, img.layers[0].size);
    assert_eq!(
        digest_of(&docker_ref(&server, "world", "b1"), &flags),
        img2.manifest.digest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_layers_go_up_in_chunks_with_progress() {
    let server = RegistryServer::start();
    // Chunks above 1 MiB (1 GiB unless told), so 11 MiB go up in PATCHes.
    let reg = Registry::new(&format!("{}/team", server.host()), true, &anonymous())
        .unwrap()
        .with_monolithic_max(1 << 20);
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), &noise(11 << 20, 7), None);
    struct Count {
        bytes: AtomicU64,
        calls: AtomicU64,
    }
    impl PushProgress for Count {
        fn uploaded(&self, _: &BlobRef, n: u64) {
            self.bytes.fetch_add(n, Ordering::SeqCst);
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
    }
    let count = Count {
        bytes: AtomicU64::new(0),
        calls: AtomicU64::new(0),
    };
    let r = push_with(&reg, &img, "big", "b1", &[], &count)
        .await
        .unwrap();
    assert_eq!(count.bytes.load(Ordering::SeqCst), r.bytes_uploaded);
    assert!(
        count.calls.load(Ordering::SeqCst) >= 11,
        "progress came in pieces"
    );
    // skopeo copies the image out and its layer is whole.
    let out = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &docker_ref(&server, "big", "b1"),
        &format!("dir:{}", out.path().display()),
    ]);
    let layer = fs::read(out.path().join(img.layers[0].hex())).unwrap();
    assert_eq!(layer.len() as u64, img.layers[0].size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_moves_by_a_manifest_only_push_and_podman_pulls_it() {
    let server = RegistryServer::start();
    let reg = Registry::new(&format!("{}/team", server.host()), true, &anonymous()).unwrap();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = image(d1.path(), b"one\n", None);
    let two = image(d2.path(), b"two\n", None);
    push(&reg, &one, "hello", "b1").await;
    push(&reg, &two, "hello", "b2").await;
    let flags = ["--tls-verify=false"];
    assert_eq!(reg.tagged_digest("hello", "prod").await.unwrap(), None);
    for (img, label) in [(&one, "one"), (&two, "two"), (&one, "rollback")] {
        reg.put_manifest(
            "hello",
            "prod",
            &manifest_bytes(img),
            stages::oci::MEDIA_MANIFEST,
        )
        .await
        .unwrap();
        assert_eq!(
            digest_of(&docker_ref(&server, "hello", "prod"), &flags),
            img.manifest.digest,
            "{label}"
        );
        assert_eq!(
            reg.tagged_digest("hello", "prod").await.unwrap().as_deref(),
            Some(img.manifest.digest.as_str())
        );
    }
    let podman = Podman::new();
    podman.run(&[
        "pull",
        "--tls-verify=false",
        &format!("{}/team/hello:prod", server.host()),
    ]);
    assert_eq!(
        podman.digest(&format!("{}/team/hello:prod", server.host())),
        one.manifest.digest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_an_auth_file_and_missing_ones_are_named() {
    let server = RegistryServer::start_with_auth("ci", "s3cret");
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), b"hello\n", None);
    let url = format!("{}/team", server.host());

    // No credentials: refused, the error names registry, image and cause.
    let reg = Registry::new(&url, true, &anonymous()).unwrap();
    let err = push_with(&reg, &img, "hello", "b1", &[], &NoProgress)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            pipeline::Error::Registry {
                kind: RegistryFailure::Unauthorized,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        msg.contains(&server.host()) && msg.contains("team/hello"),
        "{msg}"
    );
    assert!(msg.contains("no credentials"), "{msg}");
    assert!(err.hint().unwrap().contains("login"), "{:?}", err.hint());

    // A wrong password: refused too.
    let wrong = CredentialSources {
        env: Some(("ci".into(), "wrong".into())),
        files: vec![],
    };
    let err = push_result(&Registry::new(&url, true, &wrong).unwrap(), &img).await;
    assert!(
        matches!(
            err,
            Err(pipeline::Error::Registry {
                kind: RegistryFailure::Unauthorized,
                ..
            })
        ),
        "{err:?}"
    );

    // From an auth file, as podman login writes it.
    let auth = server.auth_file(dir.path());
    let sources = CredentialSources {
        env: None,
        files: vec![dir.path().join("missing.json"), auth.clone()],
    };
    let reg = Registry::new(&url, true, &sources).unwrap();
    push_result(&reg, &img).await.unwrap();
    let flags = [
        "--tls-verify=false".to_string(),
        format!("--authfile={}", auth.display()),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    assert_eq!(
        digest_of(&docker_ref(&server, "hello", "b1"), &flags),
        img.manifest.digest
    );
    // skopeo without credentials is refused: the registry really checks.
    let (ok, _) = try_skopeo(&[
        "inspect",
        "--tls-verify=false",
        &docker_ref(&server, "hello", "b1"),
    ]);
    assert!(!ok);
}

async fn push_result(
    reg: &Registry,
    img: &BuiltImage,
) -> pipeline::Result<pipeline::registry::PushReport> {
    push_with(reg, img, "hello", "b1", &[], &NoProgress).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_vanishes_mid_push_leaves_no_tag_and_a_rerun_completes() {
    let server = RegistryServer::start();
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), &noise(6 << 20, 3), None);
    // A proxy that cuts every connection once 2 MiB went through.
    let proxy = StoppingProxy::start(server.addr(), 2 << 20);
    let via = proxy.endpoint().trim_start_matches("http://").to_string();
    let reg = Registry::new(&format!("{via}/team"), true, &anonymous()).unwrap();
    let err = push_result(&reg, &img).await.unwrap_err();
    assert!(proxy.stopped());
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            pipeline::Error::Registry {
                kind: RegistryFailure::Unreachable,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(msg.contains(&via) && msg.contains("team/hello"), "{msg}");
    // Nothing tagged.
    let direct = Registry::new(&format!("{}/team", server.host()), true, &anonymous()).unwrap();
    assert_eq!(direct.tagged_digest("hello", "b1").await.unwrap(), None);
    // The same push again completes.
    push_result(&direct, &img).await.unwrap();
    assert_eq!(
        digest_of(&docker_ref(&server, "hello", "b1"), &["--tls-verify=false"]),
        img.manifest.digest
    );

    // A registry that is down: unreachable, named.
    let mut server = server;
    server.stop();
    let err = push_result(&direct, &img).await.unwrap_err();
    assert!(
        matches!(
            err,
            pipeline::Error::Registry {
                kind: RegistryFailure::Unreachable,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&server.host()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_whose_bytes_do_not_match_its_digest_is_refused_and_nothing_tagged() {
    let server = RegistryServer::start();
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), &noise(100_000, 5), None);
    // Same size, one byte changed: only the digest tells.
    let p = img.path(&img.layers[0]);
    let mut bytes = fs::read(&p).unwrap();
    bytes[500] ^= 1;
    fs::write(&p, &bytes).unwrap();
    // In one request (the registry checks the digest) and in chunks (pipe
    // checks the digest computed from what it sent).
    for (label, monolithic_max) in [("monolithic", 1 << 20), ("chunked", 1024)] {
        let reg = Registry::new(&format!("{}/team", server.host()), true, &anonymous())
            .unwrap()
            .with_monolithic_max(monolithic_max);
        let err = push_result(&reg, &img).await.unwrap_err();
        assert!(
            matches!(
                err,
                pipeline::Error::Registry {
                    kind: RegistryFailure::Refused,
                    ..
                }
            ),
            "{label}: {err:?}"
        );
        assert!(err.to_string().contains("team/hello"), "{label}: {err}");
        assert_eq!(reg.tagged_digest("hello", "b1").await.unwrap(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provenance_is_attached_and_found_through_the_referrers_tag() {
    let server = RegistryServer::start();
    let reg = Registry::new(&format!("{}/team", server.host()), true, &anonymous()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path(), b"x\n", None);
    push(&reg, &img, "hello", "b1").await;
    let statement = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;
    let ann = [(
        "org.opencontainers.image.created".to_string(),
        "2023-11-14T22:13:20Z".to_string(),
    )]
    .into_iter()
    .collect();
    let artifact = reg
        .attach(
            "hello",
            &img.manifest,
            "application/vnd.in-toto+json",
            &[(&statement[..], "application/vnd.in-toto+json")],
            &ann,
        )
        .await
        .unwrap();
    // Twice: idempotent, one entry.
    let again = reg
        .attach(
            "hello",
            &img.manifest,
            "application/vnd.in-toto+json",
            &[(&statement[..], "application/vnd.in-toto+json")],
            &ann,
        )
        .await
        .unwrap();
    assert_eq!(artifact, again);
    let tag = img.manifest.digest.replace(':', "-");
    let index: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &docker_ref(&server, "hello", &tag),
    ]))
    .unwrap();
    let m = index["manifests"].as_array().unwrap();
    assert_eq!(m.len(), 1, "{index}");
    assert_eq!(m[0]["digest"], artifact);
    assert_eq!(m[0]["artifactType"], "application/vnd.in-toto+json");
    // The artifact names the image as its subject, and carries the bytes.
    let raw: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/team/hello@{artifact}", server.host()),
    ]))
    .unwrap();
    assert_eq!(raw["subject"]["digest"], img.manifest.digest);
    let out = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/team/hello@{artifact}", server.host()),
        &format!("dir:{}", out.path().display()),
    ]);
    let layer = raw["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let mut got = Vec::new();
    File::open(out.path().join(layer))
        .unwrap()
        .read_to_end(&mut got)
        .unwrap();
    assert_eq!(got, statement);
}
