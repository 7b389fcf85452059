//! OCI images end to end: `pipe build` writes `NAME.oci.tar` (deterministic,
//! read by skopeo and podman), `pipe publish` stores layers as blobs and
//! pushes to a real registry (`docker-registry`) tagged with the build id,
//! with the provenance attached; `pipe promote` moves `IMAGE:ENV` (skopeo
//! and podman see the promoted digest), rollback moves it back, a registry
//! that is down fails the view and `pipe refresh` completes it;
//! `pipe registry seed` fills an empty registry from the store alone;
//! `docker load` (a daemon of the test's own) reads the build's tarball.

use std::path::Path;

use pipe_e2e::cli::Project;
use pipe_e2e::oci::{Podman, digest_of, inspect, listing, skopeo, umoci_unpack};
use pipe_e2e::proxy::{Fault, FaultProxy};
use pipe_e2e::registry::RegistryServer;

/// Points `[registry] url` of `p` at `host` (`127.0.0.1:PORT`).
fn registry_at(p: &Project, host: &str) {
    let toml = std::fs::read_to_string(p.path().join("pipeline.toml")).unwrap();
    let old = toml
        .lines()
        .find(|l| l.starts_with("url = \"127.0.0.1:"))
        .unwrap()
        .to_string();
    p.write(
        "pipeline.toml",
        &toml.replace(&old, &format!("url = \"{host}/team\"")),
    );
}

/// A proxy in front of `registry` that counts the requests it forwards.
fn counting(registry: &RegistryServer) -> (FaultProxy, String) {
    let proxy = FaultProxy::start(registry.addr(), Fault::Delay(std::time::Duration::ZERO));
    let host = proxy.endpoint().trim_start_matches("http://").to_string();
    (proxy, host)
}

/// A project with two packages (two layers) and one image, pushing to
/// `registry` (`HOST:PORT`) under namespace `team`.
fn project(registry: &str) -> Project {
    let mut p = Project::new();
    let toml = format!(
        r#"[project]
name = "shop"
version = "1.0.0"
source_date_epoch = 1700000000

[registry]
url = "{registry}/team"
insecure = true

[environments.dev]
[environments.prod]
from = "dev"

[packages.web]
summary = "Web"
maintainer = "Ops <ops@example.com>"
arch = "amd64"
formats = ["deb"]
files = [
  {{ src = "bin/web", dst = "/usr/bin/web", mode = "0755" }},
  {{ src = "etc/web.conf", dst = "/etc/web/web.conf", config = true }},
]

[packages.assets]
summary = "Assets"
maintainer = "Ops <ops@example.com>"
arch = "all"
formats = ["deb"]
files = [ {{ src = "assets/", dst = "/srv/assets/" }} ]

[images.web]
packages = ["web", "assets"]
entrypoint = ["/usr/bin/web"]
cmd = ["--port", "8080"]
env = {{ PORT = "8080" }}
expose = [8080]
workdir = "/srv"
user = "1000"
labels = {{ team = "shop" }}
"#
    );
    p.write("pipeline.toml", &toml)
        .write("bin/web", "#!/bin/sh\necho web\n")
        .write("etc/web.conf", "port=8080\n")
        .write("assets/index.html", "<h1>shop</h1>\n")
        .write("assets/big.bin", "");
    // Incompressible, so the layer keeps its size.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let noise: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(p.path().join("assets/big.bin"), noise).unwrap();
    // No credentials from the machine: only what a test gives.
    let none = p.path().join(".no-auth");
    std::fs::create_dir_all(&none).unwrap();
    let none = none.display().to_string();
    p.env("REGISTRY_AUTH_FILE", &format!("{none}/auth.json"))
        .env("XDG_RUNTIME_DIR", &none)
        .env("DOCKER_CONFIG", &none);
    p.with_signing_key();
    p
}

fn build(p: &Project) -> (String, serde_json::Value) {
    let run = p.pipe(&["--json", "build"]);
    run.expect_code(0);
    let j = run.json();
    (j["build"].as_str().unwrap().to_string(), j)
}

fn build_dir(p: &Project, build: &str) -> std::path::PathBuf {
    p.path().join(".pipe/builds").join(build)
}

/// The image's manifest artifact of a build: (name, sha256).
fn image_manifest(p: &Project, build: &str) -> (String, String) {
    let verified = pipe_e2e::verified(p, build);
    let a = verified["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            a["kind"] == "oci-image" && a["name"].as_str().unwrap().ends_with(".manifest.json")
        })
        .expect("an image manifest artifact");
    (
        a["name"].as_str().unwrap().to_string(),
        format!("sha256:{}", a["sha256"].as_str().unwrap()),
    )
}

fn tarball(p: &Project, build: &str) -> String {
    format!(
        "oci-archive:{}",
        build_dir(p, build).join("web.oci.tar").display()
    )
}

const TLS: [&str; 1] = ["--tls-verify=false"];

#[test]
fn build_writes_a_deterministic_image_that_skopeo_umoci_and_podman_read() {
    let p = project("127.0.0.1:9");
    let (id, _) = build(&p);
    let (_, digest) = image_manifest(&p, &id);
    // The tarball's image is the manifest artifact: its digest is the SLSA
    // subject, and the provenance names it.
    assert_eq!(digest_of(&tarball(&p, &id), &[]), digest);
    let prov = std::fs::read_to_string(build_dir(&p, &id).join("provenance.json")).unwrap();
    assert!(
        prov.contains(digest.trim_start_matches("sha256:")),
        "subject in {prov}"
    );
    let info = inspect(&tarball(&p, &id), &[]);
    assert_eq!(info["Labels"]["org.opencontainers.image.version"], "1.0.0");
    assert_eq!(info["Labels"]["team"], "shop");
    assert!(info["Labels"]["dev.pipe.stage-key"].is_string(), "{info}");
    let config = inspect(&tarball(&p, &id), &["--config"]);
    assert_eq!(
        config["config"]["Cmd"],
        serde_json::json!(["--port", "8080"])
    );
    assert_eq!(config["config"]["WorkingDir"], "/srv");
    assert_eq!(config["config"]["User"], "1000");

    // Exactly the packages' files, with the .deb's modes.
    let out = tempfile::tempdir().unwrap();
    let rootfs = umoci_unpack(&tarball(&p, &id), out.path());
    let files = listing(&rootfs);
    let kinds: Vec<(&str, &str)> = files
        .iter()
        .map(|(k, v)| (k.as_str(), v.0.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("etc", "d0755"),
            ("etc/web", "d0755"),
            ("etc/web/web.conf", "f0644"),
            ("srv", "d0755"),
            ("srv/assets", "d0755"),
            ("srv/assets/big.bin", "f0644"),
            ("srv/assets/index.html", "f0644"),
            ("usr", "d0755"),
            ("usr/bin", "d0755"),
            ("usr/bin/web", "f0755"),
        ]
    );

    // podman load reads the tarball and records the same digest.
    let podman = Podman::new();
    podman.run(&[
        "load",
        "-i",
        &build_dir(&p, &id).join("web.oci.tar").display().to_string(),
    ]);
    let listed = podman.run(&["images", "--digests", "--format", "{{.Digest}}"]);
    assert_eq!(listed.trim(), digest);

    // Same inputs in another directory, later: same image, same tarball.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let q = project("127.0.0.1:9");
    let (id2, _) = build(&q);
    assert_eq!(id2, id);
    assert_eq!(image_manifest(&q, &id2).1, digest);
    assert_eq!(
        std::fs::read(build_dir(&p, &id).join("web.oci.tar")).unwrap(),
        std::fs::read(build_dir(&q, &id2).join("web.oci.tar")).unwrap()
    );

    // The tarball is made again from the store: with the build directory
    // gone, a rebuild restores the layers from the store (cache hit) and
    // writes the same bytes.
    let before = std::fs::read(build_dir(&p, &id).join("web.oci.tar")).unwrap();
    std::fs::remove_dir_all(p.path().join(".pipe/builds")).unwrap();
    let (id3, j) = build(&p);
    assert_eq!(id3, id);
    let hits: Vec<bool> = j["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "oci-image")
        .map(|a| a["cache"] == "hit")
        .collect();
    assert!(!hits.is_empty() && hits.iter().all(|h| *h), "{j}");
    assert_eq!(
        std::fs::read(build_dir(&p, &id).join("web.oci.tar")).unwrap(),
        before
    );
}

#[test]
fn publish_pushes_by_build_id_and_promote_moves_the_tag() {
    let registry = RegistryServer::start();
    let p = project(&registry.host());
    let (b1, _) = build(&p);
    let (_, d1) = image_manifest(&p, &b1);
    let run = p.pipe(&["--json", "publish"]);
    run.expect_code(0);
    let j = run.json();
    let pushed = &j["images"][0];
    assert_eq!(
        pushed["reference"],
        format!("{}/team/web@{d1}", registry.host())
    );
    let up1 = pushed["report"]["bytes_uploaded"].as_u64().unwrap();
    assert!(up1 > 0 && pushed["report"]["bytes_skipped"] == 0, "{j}");
    let repo = format!("docker://{}/team/web", registry.host());
    assert_eq!(digest_of(&format!("{repo}:{b1}"), &TLS), d1);

    // The provenance is attached: the referrers tag lists it, subject = image.
    let tag = d1.replace(':', "-");
    let index: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("{repo}:{tag}"),
    ]))
    .unwrap();
    assert_eq!(
        index["manifests"][0]["artifactType"], "application/vnd.in-toto+json",
        "{index}"
    );
    let artifact = index["manifests"][0]["digest"].as_str().unwrap();
    let raw: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("{repo}@{artifact}"),
    ]))
    .unwrap();
    assert_eq!(raw["subject"]["digest"], d1);

    // Publishing again uploads nothing, and costs the registry one request
    // (the `HEAD` of the build tag, pushed last), counted by a proxy.
    let (proxy, via) = counting(&registry);
    registry_at(&p, &via);
    let again = p.pipe(&["--json", "publish"]).expect_code(0).json();
    assert_eq!(again["images"][0]["report"]["bytes_uploaded"], 0, "{again}");
    assert!(
        again["images"][0]["report"]["bytes_skipped"]
            .as_u64()
            .unwrap()
            > 200_000,
        "{again}"
    );
    assert_eq!(proxy.requests(), 1, "one request for an unchanged publish");
    registry_at(&p, &registry.host());

    // A second build changing one package: the other layer is reused, in
    // the store and in the registry.
    p.write("bin/web", "#!/bin/sh\necho web 2\n");
    p.write(
        "pipeline.toml",
        &std::fs::read_to_string(p.path().join("pipeline.toml"))
            .unwrap()
            .replace("version = \"1.0.0\"", "version = \"1.0.1\""),
    );
    let (b2, _) = build(&p);
    let (_, d2) = image_manifest(&p, &b2);
    assert_ne!(d1, d2);
    let j2 = p.pipe(&["--json", "publish"]).expect_code(0).json();
    let r2 = &j2["images"][0]["report"];
    assert!(
        r2["bytes_skipped"].as_u64().unwrap() > 200_000,
        "the assets layer is reused: {j2}"
    );
    assert!(r2["bytes_uploaded"].as_u64().unwrap() < up1 / 2, "{j2}");

    // Promote: IMAGE:ENV names the build's image, moved by one request (the
    // manifest `PUT`), counted by a proxy; promote's timings show the tag
    // move on its own, inside the view's time (claim and state included).
    let (proxy, via) = counting(&registry);
    registry_at(&p, &via);
    let promote = p
        .pipe(&["--json", "promote", &b1, "--to", "dev"])
        .expect_code(0)
        .json();
    assert_eq!(proxy.requests(), 1, "a tag move is one request");
    registry_at(&p, &registry.host());
    let view = promote["repositories"]["views"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["view"] == "registry-tag")
        .unwrap();
    let (work, all) = (
        view["work_seconds"].as_f64().unwrap(),
        view["seconds"].as_f64().unwrap(),
    );
    assert!(work > 0.0 && work <= all, "{view}");
    assert_eq!(view["written"], 1, "{view}");
    assert_eq!(digest_of(&format!("{repo}:dev"), &TLS), d1);
    let promote = p.pipe(&["promote", &b1, "--to", "prod"]);
    promote.expect_code(0);
    assert!(
        promote.stdout.contains(":prod (1 tag(s) moved in "),
        "{}",
        promote.stdout
    );
    assert_eq!(digest_of(&format!("{repo}:prod"), &TLS), d1);
    p.pipe(&["promote", &b2, "--to", "dev"]).expect_code(0);
    p.pipe(&["promote", &b2, "--to", "prod"]).expect_code(0);
    assert_eq!(digest_of(&format!("{repo}:prod"), &TLS), d2);
    let podman = Podman::new();
    let prod = format!("{}/team/web:prod", registry.host());
    podman.run(&["pull", "--tls-verify=false", &prod]);
    assert_eq!(podman.digest(&prod), d2);
    let status = p.pipe(&["--json", "status"]).expect_code(0).json();
    let prod_env = status["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "prod")
        .unwrap();
    assert_eq!(
        prod_env["images"][0],
        format!("{}/team/web@{d2}", registry.host())
    );

    // Rollback retags.
    p.pipe(&["rollback", "--env", "prod"]).expect_code(0);
    assert_eq!(digest_of(&format!("{repo}:prod"), &TLS), d1);

    // A tag moved behind pipe's back: the view's state says where pipe left
    // it, so refresh checks it (`HEAD`) and moves it back.
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("{repo}:{b2}"),
        &format!("{repo}:prod"),
    ]);
    assert_eq!(digest_of(&format!("{repo}:prod"), &TLS), d2);
    p.pipe(&["refresh", "--env", "prod"]).expect_code(0);
    assert_eq!(digest_of(&format!("{repo}:prod"), &TLS), d1);
}

#[test]
fn a_registry_down_at_promotion_fails_the_view_and_refresh_completes_it() {
    let mut registry = RegistryServer::start();
    let p = project(&registry.host());
    let (b1, _) = build(&p);
    let (_, d1) = image_manifest(&p, &b1);
    p.pipe(&["publish"]).expect_code(0);
    registry.stop();
    let run = p.pipe(&["promote", &b1, "--to", "dev"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("registry") && run.stderr.contains("pipe refresh"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&registry.host()), "{}", run.stderr);
    // The pointer moved all the same.
    let status = p.pipe(&["--json", "status"]).expect_code(0).json();
    assert!(
        status["environments"][0]["build"]
            .as_str()
            .unwrap()
            .starts_with(&b1),
        "{status}"
    );
    registry.restart();
    // Nothing was tagged while it was down; refresh completes the view.
    let repo = format!("docker://{}/team/web", registry.host());
    assert!(
        !pipe_e2e::oci::try_skopeo(&["inspect", "--tls-verify=false", &format!("{repo}:dev")]).0
    );
    p.pipe(&["refresh", "--env", "dev"]).expect_code(0);
    assert_eq!(digest_of(&format!("{repo}:dev"), &TLS), d1);
}

#[test]
fn an_empty_registry_is_seeded_from_the_store_alone() {
    let first = RegistryServer::start();
    let p = project(&first.host());
    let (b1, _) = build(&p);
    let (_, d1) = image_manifest(&p, &b1);
    p.pipe(&["publish"]).expect_code(0);
    p.pipe(&["promote", &b1, "--to", "dev"]).expect_code(0);
    drop(first);

    // A new, empty registry; no build directory: only the store.
    std::fs::remove_dir_all(p.path().join(".pipe/builds")).unwrap();
    let second = RegistryServer::start();
    registry_at(&p, &second.host());
    let seeded = p
        .pipe(&["--json", "registry", "seed"])
        .expect_code(0)
        .json();
    assert_eq!(
        seeded["report"]["pushed"].as_array().unwrap().len(),
        1,
        "{seeded}"
    );
    let repo = format!("docker://{}/team/web", second.host());
    assert_eq!(digest_of(&format!("{repo}:{b1}"), &TLS), d1);
    assert_eq!(digest_of(&format!("{repo}:dev"), &TLS), d1);
    // The provenance came along.
    let tag = d1.replace(':', "-");
    let index: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("{repo}:{tag}"),
    ]))
    .unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index}");
    // podman pulls what the seed pushed.
    let podman = Podman::new();
    let dev = format!("{}/team/web:dev", second.host());
    podman.run(&["pull", "--tls-verify=false", &dev]);
    assert_eq!(podman.digest(&dev), d1);

    // Everything there: nothing pushed, nothing moved, and one request per
    // manifest (the build tag and `dev`), counted by a proxy.
    let (proxy, via) = counting(&second);
    registry_at(&p, &via);
    let again = p
        .pipe(&["--json", "registry", "seed"])
        .expect_code(0)
        .json();
    assert_eq!(again["report"]["pushed"], serde_json::json!([]), "{again}");
    assert_eq!(again["report"]["present"], 1);
    assert_eq!(again["report"]["tags"][0]["moved"], false);
    assert_eq!(again["report"]["tags"].as_array().unwrap().len(), 1);
    assert_eq!(proxy.requests(), 2, "one request per manifest");
}

#[test]
fn credentials_are_required_and_read_from_the_auth_file() {
    let registry = RegistryServer::start_with_auth("ci", "pw");
    let mut p = project(&registry.host());
    build(&p);
    let run = p.pipe(&["publish"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains(&registry.host()) && run.stderr.contains("team/web"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("no credentials") && run.stderr.contains("login"),
        "{}",
        run.stderr
    );
    let auth = registry.auth_file(p.path());
    p.env("REGISTRY_AUTH_FILE", &auth.display().to_string());
    p.pipe(&["publish"]).expect_code(0);
    let flags = [
        "--tls-verify=false".to_string(),
        format!("--authfile={}", auth.display()),
    ];
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let (id, _) = build(&p);
    let (_, d) = image_manifest(&p, &id);
    assert_eq!(
        digest_of(
            &format!("docker://{}/team/web:{id}", registry.host()),
            &flags
        ),
        d
    );
}

#[test]
fn a_base_that_is_not_an_image_fails_the_build() {
    let p = project("127.0.0.1:9");
    p.write("base.tar", "not a tarball at all");
    let toml = std::fs::read_to_string(p.path().join("pipeline.toml")).unwrap();
    p.write(
        "pipeline.toml",
        &toml.replace(
            "[images.web]\n",
            "[images.web]\nbase = \"oci-archive:base.tar\"\n",
        ),
    );
    let run = p.pipe(&["build"]);
    run.expect_code(1);
    assert!(
        run.stderr.contains("base.tar") && run.stderr.contains("is not an image"),
        "{}",
        run.stderr
    );
    assert!(!Path::new(&p.path().join(".pipe/builds/latest")).exists());
}

#[test]
fn the_base_is_an_input_of_the_image() {
    // A base: an image pipe built, re-exported by skopeo as an OCI layout
    // and as a `docker save` archive.
    let base_project = project("127.0.0.1:9");
    let (bid, _) = build(&base_project);
    let p = project("127.0.0.1:9");
    let oci = p.path().join("base.oci.tar");
    let docker = p.path().join("base.docker.tar");
    skopeo(&[
        "copy",
        &tarball(&base_project, &bid),
        &format!("oci-archive:{}", oci.display()),
    ]);
    skopeo(&[
        "copy",
        &tarball(&base_project, &bid),
        &format!("docker-archive:{}:base:1", docker.display()),
    ]);
    let toml = std::fs::read_to_string(p.path().join("pipeline.toml")).unwrap();
    let with_base = |base: &str| {
        p.write(
            "pipeline.toml",
            &toml.replace(
                "[images.web]\n",
                &format!("[images.web]\nbase = \"{base}\"\n"),
            ),
        );
        let (id, j) = build(&p);
        let (_, digest) = image_manifest(&p, &id);
        let layers = inspect(&tarball(&p, &id), &[])["Layers"]
            .as_array()
            .unwrap()
            .len();
        (id, digest, layers, j)
    };
    let (id1, d1, layers1, j1) = with_base("oci-archive:base.oci.tar");
    assert_eq!(layers1, 4, "the base's two layers, then ours");
    // The base is an input of the manifest shard, which is a resolved
    // dependency of the provenance.
    let verified = pipe_e2e::verified(&p, &id1);
    assert!(
        verified["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["path"] == "base.oci.tar"),
        "{:#}",
        verified["inputs"]
    );
    let prov = std::fs::read_to_string(build_dir(&p, &id1).join("provenance.json")).unwrap();
    assert!(prov.contains("file:manifests/"), "{prov}");
    let _ = j1;
    // Another base: another image.
    let (_, d2, layers2, _) = with_base("docker-archive:base.docker.tar");
    assert_eq!(layers2, 4);
    assert_ne!(
        d1, d2,
        "skopeo's docker archive has other layer bytes (uncompressed)"
    );
    // Back to the first base: the same image as before, from the cache.
    let (_, d3, _, j3) = with_base("oci-archive:base.oci.tar");
    assert_eq!(d3, d1);
    assert!(
        j3["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == "oci-image")
            .all(|a| a["cache"] == "hit"),
        "{j3}"
    );
}

#[test]
fn docker_loads_the_build_tarball() {
    // A docker daemon of the test's own (no container is started): `docker
    // load` of NAME.oci.tar gives the image whose ID is the configuration's
    // digest, with the configuration's layers, and exactly the packages'
    // files with their modes.
    let p = project("127.0.0.1:1");
    let (b1, _) = build(&p);
    let tar = build_dir(&p, &b1).join("web.oci.tar");
    let docker = pipe_e2e::oci::Docker::start();
    let loaded = docker.run(&["load", "-i", &tar.display().to_string()]);
    let name = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .unwrap_or_else(|| panic!("no image named in {loaded:?}"))
        .trim()
        .to_string();
    assert_eq!(name, "web:1.0.0");
    let config = inspect(&tarball(&p, &b1), &["--config"]);
    let inspected: serde_json::Value =
        serde_json::from_str(&docker.run(&["image", "inspect", &name])).unwrap();
    let image = &inspected[0];
    let (_, manifest) = image_manifest(&p, &b1);
    let raw: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--raw", &tarball(&p, &b1)])).unwrap();
    assert_eq!(image["Id"], raw["config"]["digest"], "{image}");
    assert_ne!(image["Id"].as_str().unwrap(), manifest);
    assert_eq!(image["RootFS"]["Layers"], config["rootfs"]["diff_ids"]);
    assert_eq!(
        image["Config"]["Entrypoint"],
        serde_json::json!(["/usr/bin/web"])
    );
    assert_eq!(image["Config"]["User"], "1000");

    // The files, through a created (never started) container's export.
    let out = tempfile::tempdir().unwrap();
    let export = out.path().join("rootfs.tar");
    docker.run(&["create", "--name", "exported", &name]);
    docker.run(&["export", "-o", &export.display().to_string(), "exported"]);
    let mut files = std::collections::BTreeMap::new();
    let mut ar = tar::Archive::new(std::fs::File::open(&export).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        if e.header().entry_type().is_file() {
            let mode = e.header().mode().unwrap() & 0o7777;
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut body).unwrap();
            files.insert(path, (mode, body));
        }
    }
    assert_eq!(
        files["usr/bin/web"],
        (0o755, b"#!/bin/sh\necho web\n".to_vec())
    );
    assert_eq!(files["etc/web/web.conf"].1, b"port=8080\n");
    assert_eq!(files["srv/assets/index.html"].1, b"<h1>shop</h1>\n");
    assert_eq!(files["srv/assets/big.bin"].1.len(), 200_000);
    // Nothing but the packages' files, besides the mount points docker adds
    // to every container.
    let docker_own = [
        ".dockerenv",
        "dev/console",
        "etc/hostname",
        "etc/hosts",
        "etc/resolv.conf",
    ];
    let ours: Vec<&String> = files
        .keys()
        .filter(|f| !docker_own.contains(&f.as_str()))
        .collect();
    assert_eq!(
        ours,
        [
            "etc/web/web.conf",
            "srv/assets/big.bin",
            "srv/assets/index.html",
            "usr/bin/web"
        ]
    );
}
