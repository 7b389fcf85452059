//! The OCI image stage (`stages::oci`) against the real consumers: the
//! layout tarball it writes is read by `skopeo` (inspect, copy), `umoci`
//! (unpack: exactly the packages' files with their modes) and `podman load`
//! (same digest); same inputs give the same bytes; bases are read from OCI
//! layouts and `docker save` archives, and anything else is refused.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pipe_e2e::oci::{Podman, digest_of, inspect, listing, skopeo, try_skopeo, umoci_unpack};
use stages::oci::{
    Base, BuiltImage, ImageBlobs, ImageConfig, ImageSpec, Layer, LayerCompression, build_image,
    write_layout,
};
use stages::tree::{Mapping, resolve};

const EPOCH: u64 = 1_700_000_000;

/// A project with two packages' worth of files.
fn project(dir: &Path) {
    let w = |rel: &str, body: &[u8], mode: u32| {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    };
    w("bin/hello", b"#!/bin/sh\necho hello\n", 0o700);
    w("etc/hello.conf", b"port=8080\n", 0o600);
    w("share/doc/README", b"read me\n", 0o644);
    w("share/doc/deep/x", b"x\n", 0o664);
    std::os::unix::fs::symlink("README", dir.join("share/doc/LINK")).unwrap();
    w("lib/libworld.so", &vec![7u8; 300_000], 0o644);
}

fn mapping(src: &str, dst: &str, mode: Option<u32>) -> Mapping {
    Mapping {
        src: src.into(),
        dst: dst.into(),
        mode,
        config: false,
    }
}

fn layers(dir: &Path) -> Vec<Layer> {
    vec![
        Layer {
            package: "hello".into(),
            entries: resolve(
                dir,
                &[
                    mapping("bin/hello", "/usr/bin/hello", Some(0o755)),
                    mapping("etc/hello.conf", "/etc/hello/hello.conf", None),
                    mapping("share/doc", "/usr/share/doc/hello", None),
                ],
                EPOCH,
            )
            .unwrap(),
        },
        Layer {
            package: "libworld".into(),
            entries: resolve(
                dir,
                &[mapping("lib/libworld.so", "/usr/lib/libworld.so", None)],
                EPOCH,
            )
            .unwrap(),
        },
    ]
}

fn spec(dir: &Path, base: Base, compression: LayerCompression) -> ImageSpec {
    ImageSpec {
        base,
        layers: layers(dir),
        config: ImageConfig {
            entrypoint: vec!["/usr/bin/hello".into()],
            cmd: vec!["--serve".into()],
            env: [("PORT".to_string(), "8080".to_string())].into(),
            expose: vec![8080],
            working_dir: Some("/srv".into()),
            user: Some("1000:1000".into()),
            labels: [(
                "org.opencontainers.image.version".to_string(),
                "1.2.0".to_string(),
            )]
            .into(),
        },
        created: EPOCH,
        compression,
        architecture: "amd64".into(),
    }
}

/// Builds and writes `NAME.oci.tar`; returns the image and the tarball.
fn build(
    dir: &Path,
    out: &Path,
    base: Base,
    compression: LayerCompression,
) -> (BuiltImage, PathBuf) {
    let image = build_image(&spec(dir, base, compression), &out.join("blobs")).unwrap();
    let tar = out.join("hello.oci.tar");
    write_layout(&tar, &ImageBlobs::from(&image), "hello", "1.2.0", |b| {
        Ok(Box::new(File::open(image.path(b))?) as Box<dyn Read>)
    })
    .unwrap();
    (image, tar)
}

fn archive(p: &Path) -> String {
    format!("oci-archive:{}", p.display())
}

/// What the two package layers must unpack to (plus the parents they
/// imply), with the modes the .deb has.
fn expected_files() -> BTreeMap<&'static str, &'static str> {
    [
        ("etc", "d0755"),
        ("etc/hello", "d0755"),
        ("etc/hello/hello.conf", "f0644"),
        ("usr", "d0755"),
        ("usr/bin", "d0755"),
        ("usr/bin/hello", "f0755"),
        ("usr/lib", "d0755"),
        ("usr/lib/libworld.so", "f0644"),
        ("usr/share", "d0755"),
        ("usr/share/doc", "d0755"),
        ("usr/share/doc/hello", "d0755"),
        ("usr/share/doc/hello/LINK", "l0777"),
        ("usr/share/doc/hello/README", "f0644"),
        ("usr/share/doc/hello/deep", "d0755"),
        ("usr/share/doc/hello/deep/x", "f0644"),
    ]
    .into()
}

#[test]
fn layout_tarball_is_read_by_skopeo_umoci_and_podman() {
    let src = tempfile::tempdir().unwrap();
    project(src.path());
    let out = tempfile::tempdir().unwrap();
    let (image, tar) = build(
        src.path(),
        out.path(),
        Base::Scratch,
        LayerCompression::Gzip,
    );

    // skopeo reads the archive and computes the same manifest digest.
    let info = inspect(&archive(&tar), &[]);
    assert_eq!(info["Digest"], image.manifest.digest, "{info}");
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(info["Labels"]["org.opencontainers.image.version"], "1.2.0");
    let config = inspect(&archive(&tar), &["--config"]);
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/usr/bin/hello"]));
    assert_eq!(c["Cmd"], serde_json::json!(["--serve"]));
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["User"], "1000:1000");
    assert!(c["ExposedPorts"]["8080/tcp"].is_object(), "{c}");
    assert!(
        c["Env"].as_array().unwrap().contains(&"PORT=8080".into()),
        "{c}"
    );
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");

    // skopeo copies it into an OCI directory; umoci unpacks exactly the
    // packages' files, with their modes, owned by root.
    let rootfs = umoci_unpack(&archive(&tar), out.path());
    let got = listing(&rootfs);
    let kinds: BTreeMap<&str, &str> = got
        .iter()
        .map(|(k, v)| (k.as_str(), v.0.as_str()))
        .collect();
    assert_eq!(kinds, expected_files());
    assert!(got.values().all(|v| v.2 == 0), "all owned by root");
    assert_eq!(got["usr/bin/hello"].1, b"#!/bin/sh\necho hello\n");
    assert_eq!(got["usr/share/doc/hello/LINK"].1, b"README");
    assert_eq!(got["usr/lib/libworld.so"].1.len(), 300_000);

    // podman loads it and records the same digest.
    let podman = Podman::new();
    let loaded = podman.run(&["load", "-i", &tar.display().to_string()]);
    assert!(loaded.contains("Loaded image"), "{loaded}");
    let id = podman.run(&["images", "-q", "--no-trunc"]);
    let id = id
        .lines()
        .next()
        .expect("podman lists the loaded image")
        .trim();
    assert_eq!(
        id, image.config.digest,
        "podman's image ID is the config digest"
    );
    assert_eq!(podman.digest(id), image.manifest.digest);
}

#[test]
fn docker_load_manifest_names_config_and_layers() {
    // `docker load` reads `manifest.json` (tests/image.rs loads a build's
    // tarball into a real daemon): it must name the config and the layers in order, by
    // paths present in the archive, and tag the image.
    let src = tempfile::tempdir().unwrap();
    project(src.path());
    let out = tempfile::tempdir().unwrap();
    let (image, tar) = build(
        src.path(),
        out.path(),
        Base::Scratch,
        LayerCompression::Gzip,
    );
    let mut ar = tar::Archive::new(File::open(&tar).unwrap());
    let mut names = Vec::new();
    let mut manifest = String::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        if name == "manifest.json" {
            e.read_to_string(&mut manifest).unwrap();
        }
        names.push(name);
    }
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m[0]["RepoTags"], serde_json::json!(["hello:1.2.0"]));
    assert_eq!(
        m[0]["Config"],
        format!("blobs/sha256/{}", image.config.hex())
    );
    let layers: Vec<String> = image
        .layers
        .iter()
        .map(|l| format!("blobs/sha256/{}", l.hex()))
        .collect();
    assert_eq!(m[0]["Layers"], serde_json::json!(layers));
    for l in &layers {
        assert!(names.contains(l), "{l} in {names:?}");
    }
    assert!(names.contains(&"oci-layout".to_string()));
    assert!(names.contains(&"index.json".to_string()));
}

#[test]
fn same_inputs_give_the_same_bytes_elsewhere_and_later() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    project(a.path());
    project(b.path());
    // Other dates on disk, another umask-ish mode on a file whose mode the
    // mapping does not set: nothing of it may reach the image.
    let old = filetime(b.path().join("lib/libworld.so"));
    assert!(old);
    let (oa, ob) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for compression in [LayerCompression::Gzip, LayerCompression::Zstd] {
        let (ia, ta) = build(a.path(), oa.path(), Base::Scratch, compression);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let (ib, tb) = build(b.path(), ob.path(), Base::Scratch, compression);
        assert_eq!(ia.manifest, ib.manifest, "{compression:?}");
        assert_eq!(
            fs::read(&ta).unwrap(),
            fs::read(&tb).unwrap(),
            "{compression:?}"
        );
    }
}

/// Sets a file's mtime far in the past; true when done.
fn filetime(p: PathBuf) -> bool {
    let c = std::ffi::CString::new(p.display().to_string()).unwrap();
    let times = [
        libc::timespec {
            tv_sec: 1_000_000,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: 1_000_000,
            tv_nsec: 0,
        },
    ];
    unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) == 0 }
}

#[test]
fn zstd_layers_are_read_by_skopeo_and_umoci() {
    let src = tempfile::tempdir().unwrap();
    project(src.path());
    let out = tempfile::tempdir().unwrap();
    let (image, tar) = build(
        src.path(),
        out.path(),
        Base::Scratch,
        LayerCompression::Zstd,
    );
    let raw = inspect(&archive(&tar), &["--raw"]);
    for l in raw["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    assert_eq!(digest_of(&archive(&tar), &[]), image.manifest.digest);
    // umoci 0.4 has no zstd: skopeo copies the layers to a directory and
    // GNU tar (through zstd(1)) extracts them.
    let dir = out.path().join("dir");
    skopeo(&["copy", &archive(&tar), &format!("dir:{}", dir.display())]);
    let rootfs = out.path().join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    for l in &image.layers {
        pipe_e2e::consumers::run(
            std::process::Command::new("tar")
                .args(["--zstd", "-x", "-p", "-f"])
                .arg(dir.join(l.hex()))
                .arg("-C")
                .arg(&rootfs),
        );
    }
    let got = listing(&rootfs);
    let kinds: BTreeMap<&str, &str> = got
        .iter()
        .map(|(k, v)| (k.as_str(), v.0.as_str()))
        .collect();
    assert_eq!(kinds, expected_files());
    // podman reads zstd layers and records the same digest.
    let podman = Podman::new();
    podman.run(&["load", "-i", &tar.display().to_string()]);
    assert_eq!(podman.digest(image.config.hex()), image.manifest.digest);
}

#[test]
fn oci_archive_and_docker_archive_bases_come_first() {
    // A base: a scratch image holding one file, as skopeo re-exports it.
    let base_src = tempfile::tempdir().unwrap();
    fs::write(base_src.path().join("os-release"), b"ID=base\n").unwrap();
    let bdir = tempfile::tempdir().unwrap();
    let base_img = build_image(
        &ImageSpec {
            base: Base::Scratch,
            layers: vec![Layer {
                package: "base-files".into(),
                entries: resolve(
                    base_src.path(),
                    &[mapping("os-release", "/etc/os-release", None)],
                    EPOCH,
                )
                .unwrap(),
            }],
            config: ImageConfig {
                env: [("LANG".to_string(), "C.UTF-8".to_string())].into(),
                cmd: vec!["/bin/sh".into()],
                ..Default::default()
            },
            created: EPOCH,
            compression: LayerCompression::Gzip,
            architecture: "amd64".into(),
        },
        &bdir.path().join("blobs"),
    )
    .unwrap();
    let base_built = bdir.path().join("built.tar");
    write_layout(
        &base_built,
        &ImageBlobs::from(&base_img),
        "base",
        "1",
        |b| Ok(Box::new(File::open(base_img.path(b))?) as Box<dyn Read>),
    )
    .unwrap();
    let oci_base = bdir.path().join("base.oci.tar");
    let docker_base = bdir.path().join("base.docker.tar");
    skopeo(&["copy", &archive(&base_built), &archive(&oci_base)]);
    skopeo(&[
        "copy",
        &archive(&base_built),
        &format!("docker-archive:{}:base:1", docker_base.display()),
    ]);

    let src = tempfile::tempdir().unwrap();
    project(src.path());
    for base in [Base::OciArchive(oci_base), Base::DockerArchive(docker_base)] {
        let out = tempfile::tempdir().unwrap();
        let (image, tar) = build(src.path(), out.path(), base.clone(), LayerCompression::Gzip);
        assert_eq!(image.layers.len(), 3, "{base:?}");
        assert!(image.base.is_some());
        let config = inspect(&archive(&tar), &["--config"]);
        let env = config["config"]["Env"].as_array().unwrap();
        assert!(env.contains(&"LANG=C.UTF-8".into()), "inherited: {env:?}");
        assert!(env.contains(&"PORT=8080".into()));
        // Our entrypoint and cmd replace the base's.
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["--serve"]));
        assert_eq!(config["history"].as_array().unwrap().len(), 3, "{config}");
        let rootfs = umoci_unpack(&archive(&tar), out.path());
        let got = listing(&rootfs);
        assert_eq!(got["etc/os-release"].1, b"ID=base\n", "{base:?}");
        assert_eq!(got["usr/bin/hello"].0, "f0755");
    }
}

#[test]
fn a_base_that_is_not_an_image_is_refused() {
    let src = tempfile::tempdir().unwrap();
    project(src.path());
    let d = tempfile::tempdir().unwrap();
    // Not a tar at all.
    let junk = d.path().join("junk.tar");
    fs::write(&junk, vec![b'x'; 4096]).unwrap();
    // A tar of ordinary files.
    let plain = d.path().join("plain.tar");
    {
        let mut b = tar::Builder::new(File::create(&plain).unwrap());
        b.append_path_with_name(src.path().join("bin/hello"), "hello")
            .unwrap();
        b.finish().unwrap();
    }
    for (base, want) in [
        (Base::OciArchive(junk.clone()), "not a tar archive"),
        (Base::OciArchive(plain.clone()), "no `oci-layout` file"),
        (Base::DockerArchive(plain.clone()), "no `manifest.json`"),
    ] {
        let err = build_image(
            &spec(src.path(), base.clone(), LayerCompression::Gzip),
            &d.path().join("b"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("is not an image") && msg.contains(want),
            "{base:?}: {msg}"
        );
        assert!(msg.contains("hint:"), "{msg}");
    }
}

#[test]
fn a_base_layer_whose_digest_does_not_match_is_refused() {
    let src = tempfile::tempdir().unwrap();
    project(src.path());
    let out = tempfile::tempdir().unwrap();
    let (image, tar) = build(
        src.path(),
        out.path(),
        Base::Scratch,
        LayerCompression::Gzip,
    );
    // Rewrite the tarball with one byte of the first layer flipped (same
    // size, so only the digest tells).
    let bad = out.path().join("bad.tar");
    let victim = format!("blobs/sha256/{}", image.layers[0].hex());
    {
        let mut ar = tar::Archive::new(File::open(&tar).unwrap());
        let mut b = tar::Builder::new(File::create(&bad).unwrap());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let mut h = e.header().clone();
            let name = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            if name == victim {
                let mid = data.len() / 2;
                data[mid] ^= 0xff;
            }
            h.set_cksum();
            b.append_data(&mut h, &name, &data[..]).unwrap();
        }
        b.finish().unwrap();
    }
    let err = build_image(
        &spec(src.path(), Base::OciArchive(bad), LayerCompression::Gzip),
        &out.path().join("b2"),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("does not match its digest") && msg.contains(&image.layers[0].digest),
        "{msg}"
    );
    // skopeo agrees that the archive is broken.
    let (ok, _) = try_skopeo(&[
        "copy",
        &format!("oci-archive:{}", out.path().join("bad.tar").display()),
        &format!("oci:{}:t", out.path().join("x").display()),
    ]);
    assert!(!ok, "skopeo refuses the tampered layer too");
}

/// A `docker save` archive with compressed layers (docker 25 and later keep
/// a layer as pulled): `LAYERS` named as given, the configuration with
/// `diff_ids` as given.
fn docker_archive(path: &Path, config: &[u8], layers: &[(String, Vec<u8>)]) {
    let mut b = tar::Builder::new(File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    let names: Vec<&String> = layers.iter().map(|(n, _)| n).collect();
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": ["base:1"],
        "Layers": names,
    }]);
    add("manifest.json", manifest.to_string().as_bytes());
    add("config.json", config);
    for (name, data) in layers {
        add(name, data);
    }
    b.into_inner().unwrap();
}

#[test]
fn a_compressed_docker_archive_layer_must_match_its_diff_id() {
    // A base image with one gzip layer, whose configuration gives the
    // sha256 of the uncompressed layer as its diff_id.
    let src = tempfile::tempdir().unwrap();
    project(src.path());
    let out = tempfile::tempdir().unwrap();
    let (base, _) = build(
        src.path(),
        out.path(),
        Base::Scratch,
        LayerCompression::Gzip,
    );
    let layer = fs::read(base.path(&base.layers[0])).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&fs::read(base.path(&base.config)).unwrap()).unwrap();
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    config["rootfs"]["diff_ids"] = serde_json::json!([diff_ids[0]]);
    config["history"] = serde_json::json!([]);
    let d = tempfile::tempdir().unwrap();
    let layers = vec![("layer0.tar.gz".to_string(), layer)];

    // Right diff_id: accepted, the layer kept compressed.
    let good = d.path().join("good.tar");
    docker_archive(&good, config.to_string().as_bytes(), &layers);
    let img = build_image(
        &spec(
            src.path(),
            Base::DockerArchive(good),
            LayerCompression::Gzip,
        ),
        &d.path().join("b1"),
    )
    .unwrap();
    assert_eq!(img.layers[0], base.layers[0]);

    // The same layer under another layer's diff_id: refused, naming it.
    let wrong = diff_ids[1].clone();
    config["rootfs"]["diff_ids"] = serde_json::json!([wrong]);
    let bad = d.path().join("bad.tar");
    docker_archive(&bad, config.to_string().as_bytes(), &layers);
    let err = build_image(
        &spec(src.path(), Base::DockerArchive(bad), LayerCompression::Gzip),
        &d.path().join("b2"),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, stages::Error::DiffIdMismatch { .. }),
        "{err:?}"
    );
    assert!(
        msg.contains("layer `layer0.tar.gz`")
            && msg.contains(&wrong)
            && msg.contains(&diff_ids[0])
            && msg.contains("hint:"),
        "{msg}"
    );
}
