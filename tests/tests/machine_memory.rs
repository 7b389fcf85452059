//! A 2 GiB machine image goes through build, publish to S3 (multipart, on a
//! moto server on 127.0.0.1), promote and `pipe deploy --machine` with every
//! `pipe` process's peak memory under 200 MiB: the image is streamed, never
//! held.
//!
//! One test in its own binary: `getrusage(RUSAGE_CHILDREN)` reports the
//! largest peak RSS among the children this process has waited for (the
//! `pipe` runs and what they ran: mke2fs, debugfs, qemu-img; the S3 server
//! is waited for only after the measurement). The base is the small
//! synthetic root filesystem, so the image is mostly empty, sparse on disk,
//! yet pipe hashes, uploads and downloads all 2 GiB of it.

use std::path::Path;

use pipe_e2e::machine::{assert_images_sound, debugfs_cat, tiny_project};

const LIMIT_MIB: i64 = 200;
const GIB: u64 = 1 << 30;

#[test]
fn a_two_gib_image_is_built_published_to_s3_promoted_and_deployed_in_bounded_memory() {
    let server = pipe_e2e::s3::MotoServer::start();
    let store = format!("s3://{}/machines-test", server.bucket());
    let mut p = tiny_project(
        "big",
        Some(&store),
        r#"[machines.big]
base = "rootfs:tiny-rootfs.tar"
size = "2G"
formats = ["raw", "qcow2"]

[deploy]
files = { "/etc/big.conf" = "env={{ env }}\n" }
"#,
    );
    for (k, v) in server.env() {
        p.env(&k, &v);
    }
    p.with_signing_key();
    let keyring = p.keyring();

    let doc = p.pipe(&["--json", "build"]).expect_code(0).json();
    let build = doc["build"].as_str().unwrap().to_string();
    let dir = Path::new(doc["dir"].as_str().unwrap()).to_path_buf();
    let raw = dir.join("big.raw");
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 2 * GIB);
    assert_images_sound(Some(&raw), Some(&dir.join("big.qcow2")));
    assert_eq!(debugfs_cat(&raw, "/home/ann/notes.txt").unwrap(), b"kept\n");

    let published = p.pipe(&["--json", "publish", &build]).expect_code(0).json();
    assert!(published.to_string().contains("big.raw"), "{published}");
    p.pipe(&["promote", &build, "--to", "dev"]).expect_code(0);

    // The pointer is in the bucket, signed, naming the uploaded image.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = server.client();
    let get = |key: String| {
        rt.block_on(async {
            let o = client
                .get_object()
                .bucket(server.bucket())
                .key(&key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{key}: {e:?}"));
            o.body.collect().await.unwrap().into_bytes().to_vec()
        })
    };
    let signed = get("machines-test/machines/big/dev.json.asc".into());
    let ring = keys::Keyring::load(Path::new(&keyring)).unwrap();
    let (_, text) = ring.verify_clearsigned(&signed, None).unwrap();
    let pointer: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(pointer["build"], build.as_str());
    assert_eq!(pointer["images"]["raw"]["size"], 2 * GIB);
    let head = rt
        .block_on(
            client
                .head_object()
                .bucket(server.bucket())
                .key(format!(
                    "machines-test/{}",
                    pointer["images"]["raw"]["key"].as_str().unwrap()
                ))
                .send(),
        )
        .unwrap();
    assert_eq!(head.content_length(), Some((2 * GIB) as i64));

    // Deploy the machine from S3: the image, verified, and the seed.
    p.pipe(&[
        "deploy",
        "--env",
        "dev",
        "--machine",
        "big",
        "--out",
        "out",
        "--keyring",
        &keyring,
        "--seed",
        "vfat",
    ])
    .expect_code(0);
    let out = p.path().join("out");
    assert_eq!(
        std::fs::metadata(out.join("big.raw")).unwrap().len(),
        2 * GIB
    );
    let ud = pipe_e2e::consumers::run(
        std::process::Command::new("mtype")
            .arg("-i")
            .arg(out.join("seed.vfat"))
            .arg("::user-data")
            .env("MTOOLS_SKIP_CHECK", "1"),
    );
    assert!(
        String::from_utf8_lossy(&ud.stdout).contains("content: \"env=dev\\n\""),
        "{}",
        String::from_utf8_lossy(&ud.stdout)
    );

    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    let peak_mib = usage.ru_maxrss / 1024;
    eprintln!("2 GiB machine image, build + S3 publish + deploy: peak RSS {peak_mib} MiB");
    assert!(
        peak_mib < LIMIT_MIB,
        "peak RSS {peak_mib} MiB is over {LIMIT_MIB} MiB: the image is not streamed"
    );
    drop(server);
}
