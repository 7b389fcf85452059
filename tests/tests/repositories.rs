//! The apt and yum repositories `pipe promote` writes per environment, read
//! by real `apt-get` and `dnf` over HTTP on 127.0.0.1: served from the local
//! store by a static web server, and straight from an S3 bucket by the S3
//! server's own endpoint (anonymous read). Each sees the promoted build, the
//! next promotion's build after that, refuses tampered indices, and a
//! promotion killed before any of its writes leaves a repository apt accepts.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use pipe_e2e::cli::Project;
use pipe_e2e::consumers::{Apt, Dnf, HttpServer, mkdir, run, sha256_hex, text};
use pipe_e2e::s3::MotoServer;

const PIPELINE: &str = r#"[project]
name = "demo"
version = "1.0.0"
source_date_epoch = 1700000000

[repository]
origin = "Demo"
label = "Demo packages"
valid_for = "3d"

[environments.dev]
[environments.prod]
from = "dev"

[packages.demo]
summary = "Demo service"
description = "Shows that apt and dnf read what pipe promotes."
arch = "all"
license = "MIT"
maintainer = "Ops <ops@example.com>"
formats = ["deb", "rpm"]
files = [
  { src = "demo.txt", dst = "/usr/share/demo/demo.txt" },
  { src = "demo.conf", dst = "/etc/demo/demo.conf", config = true },
]
"#;

/// A project signing with RSA 3072 (what apt's gpgv, dnf and rpm all
/// verify), and its public key exported for the consumers.
fn project() -> (Project, PathBuf) {
    let p = Project::new();
    p.write("pipeline.toml", PIPELINE)
        .write("demo.txt", "one\n")
        .write("demo.conf", "greeting=hello\n");
    let key = p.with_rsa_key();
    (p, key)
}

/// A project whose store is a prefix of a moto bucket that everyone may
/// read, and the URL clients read it at.
fn s3_project() -> (MotoServer, Project, PathBuf, String) {
    let server = MotoServer::start();
    let (mut p, key) = project();
    for (k, v) in server.env() {
        p.env(&k, &v);
    }
    p.env("PIPE_STORE", &format!("s3://{}/repo", server.bucket()));
    // apt and dnf send no credentials: without this moto answers them 403,
    // as S3 does.
    server.allow_anonymous_read();
    let base = format!("{}/{}/repo/", server.endpoint(), server.bucket());
    (server, p, key, base)
}

fn release(p: &Project, version: &str) -> String {
    p.write("demo.txt", &format!("{version}\n"));
    p.release(version)
}

/// `apt-get update` must succeed without a warning or error.
fn apt_update_ok(apt: &Apt) {
    let out = apt.update();
    let t = text(&out);
    assert!(
        out.status.success() && !t.contains("W:") && !t.contains("E:"),
        "apt-get update:\n{t}"
    );
}

/// The version of `demo` apt would install.
fn apt_candidate(apt: &Apt) -> String {
    let out = run(apt.cmd("apt-cache").args(["policy", "demo"]));
    let t = text(&out);
    t.lines()
        .find_map(|l| l.trim().strip_prefix("Candidate: "))
        .unwrap_or_else(|| panic!("no candidate in:\n{t}"))
        .to_string()
}

/// Downloads `demo` with apt-get (which checks size and SHA256 against the
/// signed index) and returns the file's bytes.
fn apt_fetch(apt: &Apt) -> Vec<u8> {
    let name = apt.download("demo");
    std::fs::read(apt.dir.join("download").join(name)).unwrap()
}

fn artifact(p: &Project, build: &str, suffix: &str) -> Vec<u8> {
    let dir = p.path().join(".pipe/builds").join(build);
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.to_string_lossy().ends_with(suffix) {
            return std::fs::read(path).unwrap();
        }
    }
    panic!("no {suffix} in {}", dir.display());
}

/// Installs (or upgrades to) the newest `demo` with dnf, with gpgcheck and
/// repo_gpgcheck, and returns the installed `/usr/share/demo/demo.txt`.
fn dnf_install(dnf: &Dnf) -> String {
    dnf.ok(&["makecache"]);
    let installed = dnf.dir.join("root/usr/share/demo/demo.txt");
    if installed.exists() {
        dnf.ok(&["upgrade", "demo"]);
    } else {
        dnf.ok(&["install", "demo"]);
    }
    std::fs::read_to_string(installed).unwrap()
}

/// Every file an `InRelease` names by hash (`by-hash/SHA256/<digest>`
/// under each index's directory), relative to the repository root.
fn by_hash_paths(in_release: &str, suite: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sha = false;
    for line in in_release.lines() {
        if line.starts_with("SHA256:") {
            in_sha = true;
            continue;
        }
        if !line.starts_with(' ') {
            in_sha = false;
        }
        if in_sha {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (digest, name) = (f[0], f[2]);
            let dir = Path::new(name).parent().unwrap().to_string_lossy();
            out.push(format!("dists/{suite}/{dir}/by-hash/SHA256/{digest}"));
        }
    }
    assert!(!out.is_empty(), "no SHA256 list in:\n{in_release}");
    out
}

fn gunzip(bytes: &[u8]) -> String {
    let mut s = String::new();
    // Every member: pipe's data files are made of several (as zlib, and so
    // dnf, reads them).
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_string(&mut s)
        .unwrap();
    s
}

/// The `<data type="primary">` location named by a `repomd.xml`.
fn primary_href(repomd: &str) -> String {
    let at = repomd.find("<data type=\"primary\">").unwrap();
    let rest = &repomd[at..];
    let start = rest.find("href=\"").unwrap() + 6;
    let end = rest[start..].find('"').unwrap();
    rest[start..start + end].to_string()
}

#[test]
fn local_store_apt_and_dnf_follow_promotions_and_refuse_tampering() {
    let (p, key) = project();
    let store = p.path().join(".pipe/store");
    let b1 = release(&p, "1.0.0");
    let out = p.pipe(&["--json", "promote", &b1, "--to", "dev"]);
    out.expect_code(0);
    let doc = out.json();
    assert_eq!(doc["repositories"]["apt_suite"], "dists/dev");
    assert_eq!(doc["repositories"]["yum_repo"], "yum/dev");

    let server = HttpServer::start(&store);
    let tmp = tempfile::tempdir().unwrap();
    let apt = Apt::new(tmp.path().join("apt"), &server.url(), "dev", &key);
    apt_update_ok(&apt);
    assert_eq!(apt_candidate(&apt), "1.0.0");
    assert_eq!(apt_fetch(&apt), artifact(&p, &b1, ".deb"));
    let dnf = Dnf::new(
        tmp.path().join("dnf"),
        &format!("{}yum/dev", server.url()),
        &key,
    );
    assert_eq!(dnf_install(&dnf), "1.0.0\n");
    let release_text = std::fs::read_to_string(store.join("dists/dev/Release")).unwrap();
    for field in [
        "Origin: Demo",
        "Label: Demo packages",
        "Suite: dev",
        "Codename: dev",
        // Packages of `all` only: every architecture clients run.
        "Architectures: amd64 arm64 armhf i386 ppc64el s390x riscv64",
        "Components: main",
        "Acquire-By-Hash: yes",
        "Valid-Until: ",
    ] {
        assert!(release_text.contains(field), "{field} in:\n{release_text}");
    }

    // A web server running as another user can read everything it serves.
    for path in [
        "dists/dev/InRelease",
        "yum/dev/repodata/repomd.xml",
        "pool/main/d/demo/demo_1.0.0_all.deb",
    ] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(store.join(path)).unwrap().permissions(),
        );
        assert_eq!(mode & 0o044, 0o044, "{path} is mode {mode:o}");
    }

    // The pool holds each package once; the suite names it there.
    let packages =
        std::fs::read_to_string(store.join("dists/dev/main/binary-amd64/Packages")).unwrap();
    assert!(
        packages.contains("Filename: pool/main/d/demo/demo_1.0.0_all.deb"),
        "{packages}"
    );

    // A second build: the next update sees it; everything the previous
    // InRelease named is still there for a client that fetched it just
    // before.
    let old_in_release = std::fs::read_to_string(store.join("dists/dev/InRelease")).unwrap();
    let b2 = release(&p, "1.1.0");
    p.pipe(&["promote", &b2, "--to", "dev"]).expect_code(0);
    for path in by_hash_paths(&old_in_release, "dev") {
        assert_eq!(
            server.get(&path).0,
            200,
            "{path} of the previous generation"
        );
    }
    // (A second apt: the first would ask with If-Modified-Since, which a
    // web server with one-second timestamps can answer wrongly.)
    let apt = Apt::new(tmp.path().join("apt-2"), &server.url(), "dev", &key);
    apt_update_ok(&apt);
    assert_eq!(apt_candidate(&apt), "1.1.0");
    assert_eq!(apt_fetch(&apt), artifact(&p, &b2, ".deb"));
    assert_eq!(dnf_install(&dnf), "1.1.0\n");

    // pipe's own primary.xml says what createrepo_c says of the same .rpm.
    compare_with_createrepo_c(&p, &b2, &store);

    // prod takes builds from dev: the same pool files, its own suite.
    p.pipe(&["promote", &b2, "--to", "prod"]).expect_code(0);
    let apt_prod = Apt::new(tmp.path().join("apt-prod"), &server.url(), "prod", &key);
    apt_update_ok(&apt_prod);
    assert_eq!(apt_candidate(&apt_prod), "1.1.0");

    // Tampering with the index apt reads (plain and by-hash alike): refused.
    let in_release = std::fs::read_to_string(store.join("dists/dev/InRelease")).unwrap();
    for path in by_hash_paths(&in_release, "dev")
        .into_iter()
        .chain(["dists/dev/main/binary-amd64/Packages".to_string()])
    {
        let file = store.join(&path);
        let bytes = std::fs::read(&file).unwrap();
        if bytes.starts_with(b"Package:") {
            let forged = String::from_utf8(bytes)
                .unwrap()
                .replace("Version: 1.1.0", "Version: 9.9.9");
            std::fs::write(&file, forged).unwrap();
        } else {
            std::fs::write(&file, b"not what was signed").unwrap();
        }
    }
    let apt_t = Apt::new(tmp.path().join("apt-tampered"), &server.url(), "dev", &key);
    let out = apt_t.update();
    let t = text(&out);
    assert!(
        !out.status.success() || t.contains("E:") || t.contains("W:"),
        "apt-get update accepted a tampered Packages:\n{t}"
    );
    assert!(
        t.contains("Hash Sum mismatch") || t.contains("File has unexpected size"),
        "{t}"
    );

    // Tampering with yum's primary.xml.gz and with repomd.xml: refused.
    let repomd_path = store.join("yum/dev/repodata/repomd.xml");
    let repomd = std::fs::read_to_string(&repomd_path).unwrap();
    let primary = store.join("yum/dev").join(primary_href(&repomd));
    let original_primary = std::fs::read(&primary).unwrap();
    let forged = gunzip(&original_primary).replace("1.1.0", "9.9.9");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, forged.as_bytes()).unwrap();
    std::fs::write(&primary, gz.finish().unwrap()).unwrap();
    let dnf_t = Dnf::new(
        tmp.path().join("dnf-tampered"),
        &format!("{}yum/dev", server.url()),
        &key,
    );
    let out = dnf_t.run(&["makecache"]);
    assert!(
        !out.status.success(),
        "dnf accepted a tampered primary.xml.gz:\n{}",
        text(&out)
    );
    std::fs::write(&primary, &original_primary).unwrap();
    std::fs::write(&repomd_path, repomd.replace("<revision>", "<revision>1")).unwrap();
    let out = Dnf::new(
        tmp.path().join("dnf-tampered-repomd"),
        &format!("{}yum/dev", server.url()),
        &key,
    )
    .run(&["makecache"]);
    assert!(
        !out.status.success(),
        "dnf accepted a tampered repomd.xml:\n{}",
        text(&out)
    );

    // `pipe refresh` re-signs from the pointer and rewrites what was
    // damaged: both clients accept the repository again.
    let out = p.pipe(&["--json", "refresh", "--env", "dev"]);
    out.expect_code(0);
    assert_eq!(out.json()["refreshed"][0]["build"], b2.as_str());
    let apt_r = Apt::new(tmp.path().join("apt-repaired"), &server.url(), "dev", &key);
    apt_update_ok(&apt_r);
    assert_eq!(apt_candidate(&apt_r), "1.1.0");
    Dnf::new(
        tmp.path().join("dnf-repaired"),
        &format!("{}yum/dev", server.url()),
        &key,
    )
    .ok(&["makecache"]);
}

/// Runs createrepo_c on the build's .rpm and compares its `<package>`
/// element with pipe's, but for the two fields that depend on where the
/// file is (`location`) and when it was written (`time file`).
fn compare_with_createrepo_c(p: &Project, build: &str, store: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = mkdir(tmp.path().join("repo"));
    // Where pipe lists it: under the repository, `Packages/<l>/<file>`.
    let name = format!("demo-{}-1.noarch.rpm", build.split('-').next().unwrap());
    mkdir(dir.join("Packages/d"));
    std::fs::write(
        dir.join("Packages/d").join(&name),
        artifact(p, build, ".rpm"),
    )
    .unwrap();
    run(Command::new("createrepo_c")
        .args(["--quiet", "--no-database"])
        .arg(&dir));
    let theirs_md = std::fs::read_to_string(dir.join("repodata/repomd.xml")).unwrap();
    let theirs = gunzip(&std::fs::read(dir.join(primary_href(&theirs_md))).unwrap());
    let ours_md = std::fs::read_to_string(store.join("yum/dev/repodata/repomd.xml")).unwrap();
    let ours = gunzip(&std::fs::read(store.join("yum/dev").join(primary_href(&ours_md))).unwrap());
    let normalise = |xml: &str| -> String {
        let start = xml.find("<package ").expect("a package");
        let end = xml.rfind("</package>").unwrap();
        xml[start..end]
            .lines()
            .filter(|l| !l.contains("<time "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(normalise(&ours), normalise(&theirs));
    assert!(
        ours.contains(&format!("<location href=\"Packages/d/{name}\"/>")),
        "{ours}"
    );
}

#[test]
fn s3_bucket_serves_apt_and_dnf_anonymously() {
    let (server, p, key, base) = s3_project();
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let tmp = tempfile::tempdir().unwrap();
    let apt = Apt::new(tmp.path().join("apt"), &base, "dev", &key);
    apt_update_ok(&apt);
    assert_eq!(apt_candidate(&apt), "1.0.0");
    assert_eq!(apt_fetch(&apt), artifact(&p, &b1, ".deb"));
    let dnf = Dnf::new(tmp.path().join("dnf"), &format!("{base}yum/dev"), &key);
    assert_eq!(dnf_install(&dnf), "1.0.0\n");

    let b2 = release(&p, "1.1.0");
    p.pipe(&["promote", &b2, "--to", "dev"]).expect_code(0);
    let apt = Apt::new(tmp.path().join("apt-2"), &base, "dev", &key);
    apt_update_ok(&apt);
    assert_eq!(apt_candidate(&apt), "1.1.0");
    assert_eq!(dnf_install(&dnf), "1.1.0\n");

    // Tampered Packages in the bucket: refused.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = server.client();
    let in_release = rt
        .block_on(
            client
                .get_object()
                .bucket(server.bucket())
                .key("repo/dists/dev/InRelease")
                .send(),
        )
        .unwrap();
    let in_release = String::from_utf8(
        rt.block_on(in_release.body.collect())
            .unwrap()
            .into_bytes()
            .to_vec(),
    )
    .unwrap();
    for path in by_hash_paths(&in_release, "dev") {
        rt.block_on(
            client
                .put_object()
                .bucket(server.bucket())
                .key(format!("repo/{path}"))
                .body(b"Package: demo\nVersion: 9.9.9\n".to_vec().into())
                .send(),
        )
        .unwrap();
    }
    let apt_t = Apt::new(tmp.path().join("apt-tampered"), &base, "dev", &key);
    let out = apt_t.update();
    let t = text(&out);
    assert!(
        t.contains("Hash Sum mismatch") || t.contains("File has unexpected size"),
        "apt-get update accepted a tampered Packages from the bucket:\n{t}"
    );
}

/// Ready for a CDN: after a publish and a promote every object in the
/// bucket carries `Cache-Control` and `Content-Type`, read back from the S3
/// server: what is named by its content (blobs, by-hash indices,
/// checksum-named yum data, pool files, yum package copies) is immutable for
/// a year, what is replaced in place (`InRelease`, `Release*`,
/// `repomd.xml*`, the pointer, records) is revalidated on every use.
#[test]
fn s3_objects_carry_cache_headers_for_a_cdn() {
    const IMMUTABLE: &str = "public, max-age=31536000, immutable";
    let (server, p, _key, base) = s3_project();
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = server.client();
    let listed = rt
        .block_on(
            client
                .list_objects_v2()
                .bucket(server.bucket())
                .prefix("repo/")
                .send(),
        )
        .unwrap();
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .filter(|k| !k.starts_with("repo/.pipe-probe/"))
        .map(|k| k["repo/".len()..].to_string())
        .collect();
    assert!(!listed.is_truncated().unwrap_or(false));
    let mut seen = std::collections::BTreeSet::new();
    for key in &keys {
        let head = rt
            .block_on(
                client
                    .head_object()
                    .bucket(server.bucket())
                    .key(format!("repo/{key}"))
                    .send(),
            )
            .unwrap();
        let cache = head.cache_control().unwrap_or("(none)");
        let ty = head.content_type().unwrap_or("(none)");
        let name = key.rsplit('/').next().unwrap();
        let checksum_named = name
            .split_once('-')
            .is_some_and(|(s, _)| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        let (class, want_cache, want_type) = if key.starts_with("blobs/blake3/") {
            ("blob", IMMUTABLE, "application/octet-stream")
        } else if key.starts_with("pool/") && key.ends_with(".deb") {
            (
                "pool .deb",
                IMMUTABLE,
                "application/vnd.debian.binary-package",
            )
        } else if key.starts_with("pool/") && key.ends_with(".rpm") {
            ("pool .rpm", IMMUTABLE, "application/x-rpm")
        } else if key.starts_with("dists/dev/") && key.contains("/by-hash/SHA256/") {
            ("by-hash", IMMUTABLE, "application/octet-stream")
        } else if key == "dists/dev/InRelease" {
            ("InRelease", "no-cache", "text/plain; charset=utf-8")
        } else if key == "dists/dev/Release" {
            ("Release", "no-cache", "text/plain; charset=utf-8")
        } else if key == "dists/dev/Release.gpg" {
            ("Release.gpg", "no-cache", "application/pgp-signature")
        } else if key.starts_with("yum/dev/repodata/") && checksum_named {
            ("yum data", IMMUTABLE, "application/gzip")
        } else if key == "yum/dev/repodata/repomd.xml" {
            ("repomd.xml", "no-cache", "application/xml")
        } else if key == "yum/dev/repodata/repomd.xml.asc" {
            ("repomd.xml.asc", "no-cache", "application/pgp-signature")
        } else if key.starts_with("yum/dev/Packages/") && key.ends_with(".rpm") {
            ("yum package", IMMUTABLE, "application/x-rpm")
        } else if key == "envs/dev/pointer.json" {
            ("pointer", "no-cache", "application/json")
        } else if key.starts_with("manifests/") || key.starts_with("packages/catalog/") {
            ("manifest or catalog shard", IMMUTABLE, "application/json")
        } else if key.ends_with(".json") {
            ("record", "no-cache", "application/json")
        } else {
            ("other", "no-cache", ty)
        };
        assert_eq!(
            (cache, ty),
            (want_cache, want_type),
            "{key} ({class}): Cache-Control and Content-Type"
        );
        seen.insert(class);
    }
    for class in [
        "blob",
        "pool .deb",
        "by-hash",
        "InRelease",
        "Release",
        "Release.gpg",
        "yum data",
        "repomd.xml",
        "repomd.xml.asc",
        "yum package",
        "pointer",
        "record",
    ] {
        assert!(seen.contains(class), "no {class} object in {keys:#?}");
    }

    // What a client behind a CDN gets over plain HTTP: the same headers.
    let out = run(Command::new("curl").args([
        "-sS",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("{base}dists/dev/InRelease"),
    ]));
    let headers = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        headers.starts_with("http/1.1 200") && headers.contains("cache-control: no-cache"),
        "InRelease over HTTP:\n{headers}"
    );
}

/// Kills `pipe promote` before each of its writes in turn (the pointer, the
/// history copy, every package copy and repository file): after each crash
/// `apt-get update` accepts the repository (the old generation or the new,
/// never a mix), the yum repository names only packages it has, and the
/// next `pipe promote` completes it.
#[test]
fn promotion_killed_at_every_write_leaves_a_repository_apt_accepts() {
    let (p, key) = project();
    let server = HttpServer::start(&p.path().join(".pipe/store"));
    crash_at_every_write(p, &key, &server.url());
}

/// The same on S3, the bucket read anonymously through the S3 endpoint.
#[test]
fn promotion_killed_at_every_write_on_s3_leaves_a_repository_apt_accepts() {
    let (_server, p, key, base) = s3_project();
    crash_at_every_write(p, &key, &base);
}

/// GET `url` with curl: (HTTP status, body).
fn http_get(url: &str) -> (u16, Vec<u8>) {
    let out = run(Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
        .arg(url));
    let body = out.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap();
    let code = String::from_utf8_lossy(&body[split + 1..]).parse().unwrap();
    (code, body[..split].to_vec())
}

/// The yum repository of `env` names only packages that are there, under
/// its base URL, with the digest it states.
fn assert_yum_complete(base_url: &str, env: &str, point: &str) {
    let repo = format!("{base_url}yum/{env}/");
    let (code, repomd) = http_get(&format!("{repo}repodata/repomd.xml"));
    assert_eq!(code, 200, "{point}: repomd.xml");
    let repomd = String::from_utf8(repomd).unwrap();
    let (code, primary) = http_get(&format!("{repo}{}", primary_href(&repomd)));
    assert_eq!(code, 200, "{point}: primary");
    let primary = gunzip(&primary);
    let packages: Vec<&str> = primary.split("<package type=\"rpm\">").skip(1).collect();
    assert!(!packages.is_empty(), "{point}: {primary}");
    for p in packages {
        let field = |start: &str| p.split(start).nth(1).unwrap().split('"').next().unwrap();
        let href = field("<location href=\"");
        assert!(href.starts_with("Packages/"), "{point}: {href}");
        let digest = p
            .split("pkgid=\"YES\">")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap();
        let (code, rpm) = http_get(&format!("{repo}{href}"));
        assert_eq!(code, 200, "{point}: {href} is named but not there");
        assert_eq!(sha256_hex(&rpm), digest, "{point}: {href}");
    }
}

fn crash_at_every_write(mut p: Project, key: &Path, base_url: &str) {
    let b1 = release(&p, "1.0.0");
    let b2 = release(&p, "1.1.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let tmp = tempfile::tempdir().unwrap();

    let mut points: Vec<String> = ["before-pointer", "after-pointer", "after-history"]
        .map(String::from)
        .to_vec();
    points.extend((1..=40).map(|n| format!("write:{n}")));
    let mut crashed = 0;
    for (i, point) in points.iter().enumerate() {
        p.env("PIPE_FAULT", point);
        let out = p.pipe(&["promote", &b2, "--to", "dev"]);
        p.env("PIPE_FAULT", "none");
        if out.code == 0 {
            // Past the last write: nothing left to interrupt.
            assert!(point.starts_with("write:"), "{point} never fired");
            break;
        }
        assert_eq!(out.code, 137, "{point}: {}", out.stderr);
        crashed += 1;
        // A fresh apt each time: apt asks with If-Modified-Since, and a file
        // rewritten within the same second as the last fetch would look
        // unchanged to a web server with one-second timestamps.
        let fresh_apt = |what: &str| {
            let apt = Apt::new(
                tmp.path().join(format!("apt-{i}-{what}")),
                base_url,
                "dev",
                key,
            );
            apt_update_ok(&apt);
            apt
        };
        let apt = fresh_apt("crashed");
        assert_yum_complete(base_url, "dev", point);
        let seen = apt_candidate(&apt);
        assert!(seen == "1.0.0" || seen == "1.1.0", "{point}: {seen}");
        assert_eq!(
            sha256_hex(&apt_fetch(&apt)),
            sha256_hex(&artifact(
                &p,
                if seen == "1.0.0" { &b1 } else { &b2 },
                ".deb"
            ))
        );

        // The next promotion finishes the work.
        p.pipe(&["promote", &b2, "--to", "dev"]).expect_code(0);
        assert_eq!(
            apt_candidate(&fresh_apt("repaired")),
            "1.1.0",
            "after repairing {point}"
        );
        // Back to the first build for the next round.
        p.pipe(&["rollback", "--env", "dev"]).expect_code(0);
        assert_eq!(apt_candidate(&fresh_apt("rolled-back")), "1.0.0");
    }
    assert!(crashed > 10, "only {crashed} crash points fired");
    let ring = key.to_string_lossy().into_owned();
    p.pipe(&["history", "dev", "--keyring", &ring])
        .expect_code(0);
}

/// What a machine that did not build `build` has: no copy of its manifest
/// shards of its own (`.pipe/builds/<id>/manifests`, `.pipe/shards`), so
/// a promotion reads them from the store. (The machine that built it takes
/// its own copies, checked by digest, and never reads the store's: that is
/// `trust.rs` `local_shard_copies_are_used_only_with_their_digest_*`.)
fn forget_local_shards(p: &Project, build: &str) {
    for dir in [
        p.path().join(".pipe/builds").join(build).join("manifests"),
        p.path().join(".pipe/shards"),
    ] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

/// The package index a build publishes (in its manifest's shards) is not
/// signed itself, but the signed manifest names each shard's digest: a
/// promotion checks them before it moves anything, and refuses a changed
/// one with exit code 3.
#[test]
fn a_tampered_build_index_stops_the_promotion_before_anything_moves() {
    let (p, _key) = project();
    let store = p.path().join(".pipe/store");
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let b2 = release(&p, "1.1.0");
    let shard_key = pipe_e2e::artifact_shard(&pipe_e2e::verified(&p, &b2));
    let index_path = store.join(&shard_key);
    let index = std::fs::read_to_string(&index_path).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&index).unwrap();
    doc["index"][0]["sha256"] = serde_json::Value::String("0".repeat(64));
    std::fs::write(&index_path, doc.to_string()).unwrap();

    let before: Vec<(String, Vec<u8>)> = [
        "envs/dev/pointer.json",
        "dists/dev/InRelease",
        "yum/dev/repodata/repomd.xml",
    ]
    .iter()
    .map(|k| (k.to_string(), std::fs::read(store.join(k)).unwrap()))
    .collect();
    forget_local_shards(&p, &b2);
    let out = p.pipe(&["promote", &b2, "--to", "dev"]);
    out.expect_code(3);
    assert!(
        out.stderr.contains(&shard_key) && out.stderr.contains("the signed manifest names"),
        "{}",
        out.stderr
    );
    for (key, bytes) in before {
        assert_eq!(
            std::fs::read(store.join(&key)).unwrap(),
            bytes,
            "{key} changed"
        );
    }
}

/// Index files a new generation no longer names stay for the grace period
/// (a client may hold the `InRelease` that names them), and go after it.
#[test]
fn replaced_index_files_stay_for_the_grace_period_then_go() {
    let (p, _key) = project();
    let store = p.path().join(".pipe/store");
    let toml = std::fs::read_to_string(p.path().join("pipeline.toml")).unwrap();
    p.write(
        "pipeline.toml",
        &toml.replace("valid_for = \"3d\"", "valid_for = \"3d\"\ngrace = \"2s\""),
    );
    let generation = |p: &Project, version: &str| -> (Vec<String>, String) {
        let b = release(p, version);
        p.pipe(&["promote", &b, "--to", "dev", "--force"])
            .expect_code(0);
        let in_release = std::fs::read_to_string(store.join("dists/dev/InRelease")).unwrap();
        let repomd = std::fs::read_to_string(store.join("yum/dev/repodata/repomd.xml")).unwrap();
        (
            by_hash_paths(&in_release, "dev"),
            format!("yum/dev/{}", primary_href(&repomd)),
        )
    };
    let exists = |path: &str| store.join(path).exists();

    let (apt1, yum1) = generation(&p, "1.0.0");
    let (apt2, yum2) = generation(&p, "1.1.0");
    for path in apt1.iter().chain([&yum1]) {
        assert!(exists(path), "{path} went before its grace period ended");
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (apt3, yum3) = generation(&p, "1.2.0");
    for path in apt1.iter().chain([&yum1]) {
        assert!(!exists(path), "{path} outlived its grace period");
    }
    // Replaced just now: still in its grace period.
    for path in apt2.iter().chain([&yum2]).chain(&apt3).chain([&yum3]) {
        assert!(exists(path), "{path}");
    }
}

/// A package index in the store that names another location for a package,
/// outside the repository, never reaches the signed `primary.xml`: the index
/// is bound by digest to the signed manifest, so promote refuses it (exit 3)
/// and writes nothing.
#[test]
fn a_forged_location_in_the_build_index_is_not_signed() {
    let (p, _) = project();
    let store = p.path().join(".pipe/store");
    let b1 = release(&p, "1.0.0");
    let index_path = store.join(pipe_e2e::artifact_shard(&pipe_e2e::verified(&p, &b1)));
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index_path).unwrap()).unwrap();
    let rpm = doc["index"]
        .as_array()
        .unwrap()
        .iter()
        .position(|f| f["kind"] == "rpm")
        .unwrap();
    let primary = doc["index"][rpm]["xml"]["primary"]
        .as_str()
        .unwrap()
        .to_string();
    let href = "Packages/d/demo-1.0.0-1.noarch.rpm";
    assert!(
        primary.contains(&format!("<location href=\"{href}\"/>")),
        "{primary}"
    );
    doc["index"][rpm]["xml"]["primary"] =
        serde_json::Value::String(primary.replace(href, "../../../evil/demo-1.0.0-1.noarch.rpm"));
    std::fs::write(&index_path, doc.to_string()).unwrap();

    // The shard is bound by digest to the signed manifest: a forged one is
    // refused before anything is signed (exit 3), and nothing is written.
    forget_local_shards(&p, &b1);
    let r = p.pipe(&["promote", &b1, "--to", "dev"]);
    r.expect_code(3);
    assert!(r.stderr.contains("manifests/"), "{}", r.stderr);
    assert!(!store.join("yum/dev").exists());
    assert!(!store.join("envs/dev/pointer.json").exists());
}

/// `apt-get upgrade` and `dnf upgrade` never downgrade: after `pipe
/// rollback`, hosts that took the newer build keep it. What the rollback
/// prints makes them follow: checked with the real apt (the pin at priority
/// 1000, and `apt-get install --allow-downgrades`, simulated against a
/// status that has the newer build installed) and the real dnf
/// (`distro-sync` in its install root).
#[test]
fn hosts_follow_a_rollback_with_what_pipe_rollback_prints() {
    let (p, key) = project();
    let store = p.path().join(".pipe/store");
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let b2 = release(&p, "1.1.0");
    p.pipe(&["promote", &b2, "--to", "dev"]).expect_code(0);

    let server = HttpServer::start(&store);
    let tmp = tempfile::tempdir().unwrap();
    let apt = Apt::new(tmp.path().join("apt"), &server.url(), "dev", &key);
    // The apt host has 1.1.0 installed.
    std::fs::write(
        apt.dir.join("state/status"),
        "Package: demo\nStatus: install ok installed\nPriority: optional\nSection: misc\nMaintainer: Ops <ops@example.com>\nArchitecture: all\nVersion: 1.1.0\nDescription: Demo service\n",
    )
    .unwrap();
    let dnf = Dnf::new(
        tmp.path().join("dnf"),
        &format!("{}yum/dev", server.url()),
        &key,
    );
    assert_eq!(dnf_install(&dnf), "1.1.0\n");

    let doc = p
        .pipe(&["--json", "rollback", "--env", "dev"])
        .expect_code(0)
        .json();
    let hosts = &doc["hosts"];
    assert_eq!(
        hosts["apt_install"], "apt-get install --allow-downgrades demo=1.0.0",
        "{doc}"
    );
    assert_eq!(hosts["dnf_distro_sync"], "dnf distro-sync demo", "{doc}");
    assert_eq!(
        hosts["apt_pin"][0], "/etc/apt/preferences.d/Demo.pref",
        "{doc}"
    );
    let pin = hosts["apt_pin"][1].as_str().unwrap();

    // apt: the suite now lists 1.0.0, and upgrade keeps 1.1.0.
    apt_update_ok(&apt);
    assert_eq!(apt_candidate(&apt), "1.1.0");
    let sim = text(&run(apt.cmd("apt-get").args(["-s", "upgrade"])));
    assert!(!sim.contains("Inst demo"), "{sim}");
    // The install command pipe printed downgrades.
    let sim = text(&run(apt.cmd("apt-get").args([
        "-s",
        "install",
        "--allow-downgrades",
        "demo=1.0.0",
    ])));
    assert!(sim.contains("Inst demo [1.1.0] (1.0.0"), "{sim}");
    // With the pin pipe printed, `apt-get upgrade` follows by itself.
    let pin_file = apt.dir.join("Demo.pref");
    std::fs::write(&pin_file, pin).unwrap();
    let conf = apt.dir.join("apt.conf");
    let mut c = std::fs::read_to_string(&conf).unwrap();
    c.push_str(&format!(
        "Dir::Etc::Preferences \"{}\";\n",
        pin_file.display()
    ));
    std::fs::write(&conf, c).unwrap();
    assert_eq!(apt_candidate(&apt), "1.0.0");
    let sim = text(&run(apt.cmd("apt-get").args(["-s", "upgrade"])));
    assert!(sim.contains("Inst demo [1.1.0] (1.0.0"), "{sim}");

    // dnf: upgrade keeps 1.1.0, distro-sync goes back.
    dnf.ok(&["makecache"]);
    dnf.ok(&["upgrade", "demo"]);
    let installed = dnf.dir.join("root/usr/share/demo/demo.txt");
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), "1.1.0\n");
    dnf.ok(&["distro-sync", "demo"]);
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), "1.0.0\n");
}

/// `Packages.gz`, `Packages.xz` and the yum data files are made of chunks
/// compressed on their own (gzip members; blocks of one xz stream), so a
/// promotion that adds a package recompresses only the chunks whose text
/// changed. Real apt (either compression) and dnf read them, from one
/// generation to the next, and the chunks of unchanged packages are
/// byte-for-byte the last generation's.
#[test]
fn chunked_indices_are_read_by_apt_and_dnf_and_kept_across_generations() {
    let (mut p, key) = project();
    // One chunk per stanza, so five packages make five chunks.
    p.env("PIPE_TEST_APT_CHUNK_STANZAS", "1");
    p.env("PIPE_TEST_YUM_CHUNK_PACKAGES", "1");
    let store = p.path().join(".pipe/store");
    let extra = |names: &[&str]| -> String {
        let mut t = PIPELINE.to_string();
        for n in names {
            t.push_str(&format!(
                "\n[packages.{n}]\nsummary = \"{n}\"\narch = \"all\"\nmaintainer = \"Ops <ops@example.com>\"\nlicense = \"MIT\"\nformats = [\"deb\", \"rpm\"]\nfiles = [{{ src = \"demo.txt\", dst = \"/usr/share/{n}/demo.txt\" }}]\n"
            ));
        }
        t
    };
    p.write(
        "pipeline.toml",
        &extra(&["alpha", "bravo", "delta", "echo"]),
    );
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    let dir = store.join("dists/dev/main/binary-amd64");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let (plain1, gz1, xz1) = (read("Packages"), read("Packages.gz"), read("Packages.xz"));
    let members = |gz: &[u8]| -> Vec<Vec<u8>> {
        // Each member on its own: a single-member decoder stops at its end.
        let mut out = Vec::new();
        let mut rest = gz;
        while !rest.is_empty() {
            let mut d = flate2::bufread::GzDecoder::new(rest);
            std::io::copy(&mut d, &mut std::io::sink()).unwrap();
            let left = d.into_inner().len();
            out.push(rest[..rest.len() - left].to_vec());
            rest = &rest[rest.len() - left..];
        }
        out
    };
    assert_eq!(members(&gz1).len(), 5, "one gzip member per stanza");
    // dnf reads a primary.xml.gz of members: header, one per package,
    // footer.
    let primary = |store: &Path| -> Vec<u8> {
        let repomd = std::fs::read_to_string(store.join("yum/dev/repodata/repomd.xml")).unwrap();
        std::fs::read(store.join("yum/dev").join(primary_href(&repomd))).unwrap()
    };
    let primary1 = primary(&store);
    assert_eq!(members(&primary1).len(), 7, "header, five packages, footer");
    let mut whole = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz1[..])
        .read_to_end(&mut whole)
        .unwrap();
    assert_eq!(whole, plain1);
    let xz_list = |path: &Path| -> String {
        let out = run(Command::new("xz").args(["--robot", "--list"]).arg(path));
        text(&out)
    };
    let listed = xz_list(&dir.join("Packages.xz"));
    assert!(
        listed.lines().any(|l| l.starts_with("file\t1\t5\t")),
        "one xz stream of five blocks:\n{listed}"
    );
    let mut whole = Vec::new();
    liblzma::read::XzDecoder::new(&xz1[..])
        .read_to_end(&mut whole)
        .unwrap();
    assert_eq!(whole, plain1);

    let server = HttpServer::start(&store);
    let tmp = tempfile::tempdir().unwrap();
    for order in ["xz", "gz"] {
        let apt = Apt::new(
            tmp.path().join(format!("apt-{order}")),
            &server.url(),
            "dev",
            &key,
        );
        let out = run(apt.cmd("apt-get").args([
            "-o",
            &format!("Acquire::CompressionTypes::Order::={order}"),
            "update",
        ]));
        let t = text(&out);
        assert!(
            out.status.success() && !t.contains("W:") && !t.contains("E:"),
            "apt-get update ({order}):\n{t}"
        );
        assert!(
            t.contains(&format!("Packages.{order}")) || t.contains("Packages"),
            "{t}"
        );
        let pol = text(&run(apt.cmd("apt-cache").args(["policy", "echo", "alpha"])));
        assert_eq!(pol.matches("Candidate: 1.0.0").count(), 2, "{pol}");
    }
    let dnf = Dnf::new(
        tmp.path().join("dnf"),
        &format!("{}yum/dev", server.url()),
        &key,
    );
    dnf.ok(&["install", "echo"]);
    assert!(dnf.dir.join("root/usr/share/echo/demo.txt").exists());

    // One package more: its chunk is new, the other five are the last
    // generation's bytes.
    p.write(
        "pipeline.toml",
        &extra(&["alpha", "bravo", "charlie", "delta", "echo"]),
    );
    let b2 = release(&p, "1.0.0");
    // The suite says how many chunks it reused (a debug line): the
    // unchanged ones were, so the forging below is a real attack on reuse.
    p.env("PIPE_LOG", "pipeline::views::apt=debug");
    let promoted = p.pipe(&["promote", &b2, "--to", "dev"]);
    promoted.expect_code(0);
    let reused: usize = promoted
        .stderr
        .split("reused=")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no chunk count logged:\n{}", promoted.stderr));
    assert!(reused >= 5, "{}", promoted.stderr);
    let gz2 = read("Packages.gz");
    let (old, new) = (members(&gz1), members(&gz2));
    assert_eq!(new.len(), 6);
    let kept = new.iter().filter(|m| old.contains(m)).count();
    assert_eq!(kept, 5, "the unchanged stanzas' chunks are kept");
    let listed = xz_list(&dir.join("Packages.xz"));
    assert!(
        listed.lines().any(|l| l.starts_with("file\t1\t6\t")),
        "{listed}"
    );
    let apt = Apt::new(tmp.path().join("apt-next"), &server.url(), "dev", &key);
    apt_update_ok(&apt);
    let pol = text(&run(apt.cmd("apt-cache").args(["policy", "charlie"])));
    assert!(pol.contains("Candidate: 1.0.0"), "{pol}");
    // The package members of primary.xml.gz and its footer are kept; the
    // header (which counts the packages) and the new package's are new.
    let (old, new) = (members(&primary1), members(&primary(&store)));
    assert_eq!(new.len(), 8);
    assert_eq!(new.iter().filter(|m| old.contains(m)).count(), 6);
    let dnf = Dnf::new(
        tmp.path().join("dnf-next"),
        &format!("{}yum/dev", server.url()),
        &key,
    );
    dnf.ok(&["install", "charlie"]);
    assert!(dnf.dir.join("root/usr/share/charlie/demo.txt").exists());

    // A bucket writer rewrites the stored gzip files in place with bytes of
    // their choosing that decompress to the same text (each member's MTIME
    // field, same length, so the kept chunk table still fits). The next
    // generation must not carry those bytes into what it signs: a file is
    // reused only when the last signed InRelease / repomd.xml names its
    // digest.
    let forge = |path: &Path| {
        let mut bytes = std::fs::read(path).unwrap();
        let mut at = 0;
        for m in members(&bytes.clone()) {
            bytes[at + 4..at + 8].copy_from_slice(b"EVIL");
            at += m.len();
        }
        std::fs::write(path, bytes).unwrap();
    };
    // apt: the suite's reuse reads the by-hash file the (unsigned) view state
    // names and checks its bytes against that digest, so forging the file
    // in place is refused by that check alone. The writer also writes the
    // forged bytes under their own by-hash name and points the state at
    // it: only the check against the signed InRelease refuses that.
    let gz_digest = sha256_hex(&read("Packages.gz"));
    let forged_gz = dir.join("by-hash/SHA256").join(&gz_digest);
    forge(&forged_gz);
    forge(&dir.join("Packages.gz"));
    let forged_digest = sha256_hex(&std::fs::read(&forged_gz).unwrap());
    assert_ne!(forged_digest, gz_digest);
    // Every architecture's index is the same text (packages of `all`), and
    // the state names each one's by-hash file.
    for arch in std::fs::read_dir(store.join("dists/dev/main")).unwrap() {
        let by_hash = arch.unwrap().path().join("by-hash/SHA256");
        std::fs::copy(&forged_gz, by_hash.join(&forged_digest)).unwrap();
    }
    let state_path = store.join("views/dev/apt.json");
    let state = std::fs::read_to_string(&state_path).unwrap();
    assert!(state.contains(&gz_digest), "{state}");
    std::fs::write(&state_path, state.replace(&gz_digest, &forged_digest)).unwrap();
    let repomd = std::fs::read_to_string(store.join("yum/dev/repodata/repomd.xml")).unwrap();
    forge(&store.join("yum/dev").join(primary_href(&repomd)));
    p.write(
        "pipeline.toml",
        &extra(&["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]),
    );
    let b3 = release(&p, "1.0.0");
    p.pipe(&["promote", &b3, "--to", "dev"]).expect_code(0);
    let evil = |bytes: &[u8]| bytes.windows(4).any(|w| w == b"EVIL");
    assert!(
        !evil(&read("Packages.gz")),
        "a forged gzip member was signed into the suite"
    );
    assert!(
        !evil(&primary(&store)),
        "a forged gzip member was signed into repomd.xml"
    );
    let apt = Apt::new(tmp.path().join("apt-third"), &server.url(), "dev", &key);
    apt_update_ok(&apt);
    let pol = text(&run(apt.cmd("apt-cache").args(["policy", "foxtrot"])));
    assert!(pol.contains("Candidate: 1.0.0"), "{pol}");
}

/// A view keeps its chunk table signed by the repository key, and the next
/// generation reuses those chunks without decompressing them. A table a
/// bucket writer changed (its signature kept) no longer verifies: its chunks
/// are checked by decompressing them again, and the lie reaches nothing
/// signed. Here the lie swaps the text digests of two chunks: believed, the
/// new `Packages.gz`, `Packages.xz` and `primary.xml.gz` would list the
/// stanzas in the wrong order (or twice) and differ from what they claim.
#[test]
fn a_chunk_table_changed_in_the_store_is_checked_again() {
    let (mut p, _key) = project();
    p.env("PIPE_TEST_APT_CHUNK_STANZAS", "1");
    p.env("PIPE_TEST_YUM_CHUNK_PACKAGES", "1");
    p.env("PIPE_LOG", "pipeline::views::apt=debug");
    let store = p.path().join(".pipe/store");
    let with = |names: &[&str]| -> String {
        let mut t = PIPELINE.to_string();
        for n in names {
            t.push_str(&format!(
                "\n[packages.{n}]\nsummary = \"{n}\"\narch = \"all\"\nmaintainer = \"Ops <ops@example.com>\"\nlicense = \"MIT\"\nformats = [\"deb\", \"rpm\"]\nfiles = [{{ src = \"demo.txt\", dst = \"/usr/share/{n}/demo.txt\" }}]\n"
            ));
        }
        t
    };
    let reused = |out: &pipe_e2e::cli::Run| -> usize {
        out.stderr
            .split("reused=")
            .nth(1)
            .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no chunk count logged:\n{}", out.stderr))
    };
    let dir = store.join("dists/dev/main/binary-amd64");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let whole = |gz: &[u8], xz: &[u8]| {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        flate2::read::MultiGzDecoder::new(gz)
            .read_to_end(&mut a)
            .unwrap();
        liblzma::read::XzDecoder::new(xz)
            .read_to_end(&mut b)
            .unwrap();
        (a, b)
    };
    p.write("pipeline.toml", &with(&["alpha", "bravo", "delta"]));
    let b1 = release(&p, "1.0.0");
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    // A signed table is reused as it is: every unchanged chunk, none
    // decompressed (the count is the same either way; the output below
    // shows what a wrong belief would do).
    p.write("pipeline.toml", &with(&["alpha", "bravo", "delta", "echo"]));
    let b2 = release(&p, "1.0.0");
    let out = p.pipe(&["promote", &b2, "--to", "dev"]);
    out.expect_code(0);
    assert!(reused(&out) >= 3, "{}", out.stderr);
    let state_path = store.join("views/dev/apt.json");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
    assert!(
        state["data"]["chunks_signature"].is_string(),
        "the apt state carries a signature over its chunk table: {state}"
    );
    let yum_path = store.join("views/dev/yum.json");
    let yum: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&yum_path).unwrap()).unwrap();
    assert!(yum["data"]["chunks_signature"].is_string(), "{yum}");

    // The writer swaps the digests of the first two chunks of every table.
    let swap = |path: &Path| {
        let mut state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        for table in state["data"]["chunks"].as_array_mut().unwrap() {
            let chunks = table[1].as_array_mut().unwrap();
            let a = chunks[0]["sha256"].clone();
            chunks[0]["sha256"] = chunks[1]["sha256"].clone();
            chunks[1]["sha256"] = a;
        }
        std::fs::write(path, serde_json::to_vec(&state).unwrap()).unwrap();
    };
    swap(&state_path);
    swap(&yum_path);
    p.write(
        "pipeline.toml",
        &with(&["alpha", "bravo", "delta", "echo", "foxtrot"]),
    );
    let b3 = release(&p, "1.0.0");
    let out = p.pipe(&["promote", &b3, "--to", "dev"]);
    out.expect_code(0);
    let plain = read("Packages");
    let (gz, xz) = whole(&read("Packages.gz"), &read("Packages.xz"));
    assert!(gz == plain, "Packages.gz is not Packages");
    assert!(xz == plain, "Packages.xz is not Packages");
    // The yum data: primary.xml.gz decompresses to what repomd.xml says.
    let repomd = std::fs::read_to_string(store.join("yum/dev/repodata/repomd.xml")).unwrap();
    let primary = std::fs::read(store.join("yum/dev").join(primary_href(&repomd))).unwrap();
    let mut xml = Vec::new();
    flate2::read::MultiGzDecoder::new(&primary[..])
        .read_to_end(&mut xml)
        .unwrap();
    let open = repomd
        .split("<data type=\"primary\">")
        .nth(1)
        .and_then(|t| t.split("<open-checksum type=\"sha256\">").nth(1))
        .and_then(|t| t.split('<').next())
        .unwrap();
    assert_eq!(
        sha256_hex(&xml),
        open,
        "primary.xml.gz is what repomd.xml says"
    );
    let names: Vec<&str> = ["alpha", "bravo", "delta", "echo", "foxtrot"].to_vec();
    let listed = String::from_utf8_lossy(&plain);
    for n in names {
        assert_eq!(
            listed.matches(&format!("Package: {n}\n")).count(),
            1,
            "{n} listed once:\n{listed}"
        );
    }
}
