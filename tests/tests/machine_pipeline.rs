//! Machine images through the whole pipeline: `pipe build` bakes them from
//! a real Debian base (mmdebstrap, cached), `pipe publish` stores them,
//! `pipe promote` writes the signed machine pointer, `pipe rollback` moves
//! it back, and `pipe deploy --machine` fetches the verified image and
//! writes the NoCloud seed. Images are read with debugfs, e2fsck and
//! qemu-img; seeds with xorriso.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pipe_e2e::cli::Project;
use pipe_e2e::consumers::run;
use pipe_e2e::machine::{
    assert_images_sound, debian_base, debugfs_cat, debugfs_stat, sha256_file, tiny_project,
};

const BAKE: &str = "#!/bin/sh
set -e
echo 'baked=true' > /etc/hello/baked.conf
echo 'key material' > /etc/ssh-host-key-stand-in
mkdir -p /etc/ssh && echo key > /etc/ssh/ssh_host_ed25519_key
";

fn project() -> Project {
    let p = Project::new();
    p.write(
        "pipeline.toml",
        r#"[project]
name = "hello"
version = "1.0.0"
source_date_epoch = 1700000000

[store]
url = ".pipe/store"

[signing]
key = "keys/release.key"

[environments.dev]
[environments.staging]
from = "dev"

[packages.hello]
summary = "Hello service"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb"]
files = [
  { src = "bin/hello", dst = "/usr/bin/hello", mode = "0755" },
  { src = "etc/hello.conf", dst = "/etc/hello/hello.conf", config = true },
  { src = "share/", dst = "/usr/share/hello/" },
]
scripts = { postinst = "scripts/postinst.sh" }

[packages.other]
summary = "Not in the machine"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb"]
files = [{ src = "other.txt", dst = "/usr/share/other/other.txt" }]

[machines.web]
base = "rootfs:vendor/base.tar.gz"
packages = ["hello"]
post_install = "scripts/bake.sh"
size = "512M"
formats = ["raw", "qcow2"]

[deploy]
packages = ["hello"]
files = { "/etc/hello/env.conf" = "environment={{ env }}\nport={{ port }}\n" }
"#,
    );
    p.write("bin/hello", "#!/bin/sh\necho hello\n");
    std::fs::set_permissions(
        p.path().join("bin/hello"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    p.write("etc/hello.conf", "greeting=hi\n");
    p.write("share/greetings/en.txt", "hello\n");
    p.write("share/greetings/fr.txt", "bonjour\n");
    p.write("other.txt", "other\n");
    p.write(
        "scripts/postinst.sh",
        "#!/bin/sh\nset -e\nmkdir -p /var/lib/hello\necho configured > /var/lib/hello/state\n",
    );
    p.write("scripts/bake.sh", BAKE);
    std::fs::create_dir_all(p.path().join("vendor")).unwrap();
    let base = p.path().join("vendor/base.tar.gz");
    if std::fs::hard_link(debian_base(), &base).is_err() {
        std::fs::copy(debian_base(), &base).unwrap();
    }
    p.with_signing_key();
    p
}

fn build(p: &Project) -> serde_json::Value {
    p.pipe(&["--json", "build"]).expect_code(0).json()
}

fn artifact<'a>(b: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    b["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {b}"))
}

fn pointer(p: &Project, keyring: &str, env: &str) -> serde_json::Value {
    let store = p.path().join(".pipe/store");
    let signed = std::fs::read(store.join(format!("machines/web/{env}.json.asc")))
        .expect("signed machine pointer");
    let ring = keys::Keyring::load(Path::new(keyring)).unwrap();
    let verified = ring
        .verify_clearsigned(&signed, None)
        .expect("the machine pointer's signature verifies");
    let doc: serde_json::Value = serde_json::from_slice(&verified.1).unwrap();
    let plain: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.join(format!("machines/web/{env}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        doc, plain,
        "the plain pointer says what the signed one says"
    );
    doc
}

/// Every regular file and directory under `root` (relative, sorted), with
/// mode; the directory deploy's own record left out.
fn tree(root: &Path) -> Vec<(String, u32, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if r.to_str().unwrap().starts_with(".pipe") {
                continue;
            }
            if m.is_dir() {
                stack.push(r.clone());
            }
            out.push((
                r.to_string_lossy().into_owned(),
                m.permissions().mode() & 0o7777,
                m.is_file(),
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn machine_is_built_published_promoted_rolled_back_and_deployed_with_a_seed() {
    let mut p = project();
    p.env("PIPE_VAR_port", "8080");
    let keyring = p.keyring();
    let b1 = build(&p);
    let id1 = b1["build"].as_str().unwrap().to_string();
    let raw = artifact(&b1, "web.raw");
    assert_eq!(raw["kind"], "machine-image");
    assert_eq!(raw["component"], "machine web");
    assert_eq!(raw["cache"], "miss");
    let dir = PathBuf::from(b1["dir"].as_str().unwrap());
    let raw_path = dir.join("web.raw");
    let qcow2_path = dir.join("web.qcow2");
    assert_images_sound(Some(&raw_path), Some(&qcow2_path));
    // The package pipe built, installed by dpkg with its postinst; the bake
    // script's effect; generalised.
    assert_eq!(
        debugfs_cat(&raw_path, "/usr/bin/hello").unwrap(),
        b"#!/bin/sh\necho hello\n"
    );
    assert_eq!(
        debugfs_cat(&raw_path, "/var/lib/hello/state").unwrap(),
        b"configured\n"
    );
    assert_eq!(
        debugfs_cat(&raw_path, "/etc/hello/baked.conf").unwrap(),
        b"baked=true\n"
    );
    let status =
        String::from_utf8(debugfs_cat(&raw_path, "/var/lib/dpkg/status").unwrap()).unwrap();
    assert!(
        status.contains("Package: hello\nStatus: install ok installed\n"),
        "hello not in the image's dpkg status"
    );
    assert!(
        !status.contains("Package: other\n"),
        "a package the machine does not list was installed"
    );
    assert!(debugfs_stat(&raw_path, "/etc/ssh/ssh_host_ed25519_key").is_none());
    assert!(
        debugfs_stat(&raw_path, "/etc/hello/env.conf").is_none(),
        "a deploy-time file is in the image"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("web.bake.json")).unwrap()).unwrap();
    assert_eq!(record["package_manager"], "dpkg");
    assert!(
        record["removed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "/etc/ssh/ssh_host_ed25519_key"),
        "{record}"
    );
    assert_eq!(record["base"]["path"], "vendor/base.tar.gz");

    // Publish and promote: the signed pointer names the stored image.
    p.pipe(&["publish", &id1]).expect_code(0);
    p.pipe(&["promote", &id1, "--to", "dev"]).expect_code(0);
    let doc = pointer(&p, &keyring, "dev");
    assert_eq!(doc["build"], id1.as_str());
    assert_eq!(doc["env"], "dev");
    let store = p.path().join(".pipe/store");
    for (format, path) in [("raw", &raw_path), ("qcow2", &qcow2_path)] {
        let img = &doc["images"][format];
        assert_eq!(img["sha256"], sha256_file(path).as_str());
        assert_eq!(img["size"], std::fs::metadata(path).unwrap().len());
        let stored = store.join(img["key"].as_str().unwrap());
        assert_eq!(
            sha256_file(&stored),
            img["sha256"].as_str().unwrap(),
            "the pointer's key holds the image"
        );
    }
    let prov = store.join(doc["provenance"]["key"].as_str().unwrap());
    assert_eq!(
        sha256_file(&prov),
        doc["provenance"]["sha256"].as_str().unwrap()
    );

    // Deploy the machine: the verified image, unmodified, and the seed.
    let out = p.path().join("machine-out");
    p.pipe(&[
        "deploy",
        "--env",
        "dev",
        "--machine",
        "web",
        "--out",
        "machine-out",
        "--keyring",
        &keyring,
    ])
    .expect_code(0);
    for f in ["web.raw", "web.qcow2"] {
        assert_eq!(
            sha256_file(&out.join(f)),
            sha256_file(&dir.join(f)),
            "{f} changed by deploy"
        );
    }
    let user_data = std::fs::read_to_string(out.join("seed/user-data")).unwrap();
    assert!(
        std::fs::read_to_string(out.join("seed/meta-data"))
            .unwrap()
            .contains("instance-id: \"pipe-web-dev-")
    );
    let ex = p.path().join("iso-out");
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(out.join("seed.iso"))
        .args(["-extract", "/"])
        .arg(&ex));
    assert_eq!(
        std::fs::read_to_string(ex.join("user-data")).unwrap(),
        user_data
    );

    // The same component either way: the directory deploy of the same
    // build has exactly the package's files and modes the image has, and
    // its deploy-time files are what the seed writes.
    p.pipe(&[
        "deploy",
        "--env",
        "dev",
        "--target",
        "dir-deploy",
        "--keyring",
        &keyring,
    ])
    .expect_code(0);
    let current = p.path().join("dir-deploy/current");
    let files = tree(&current);
    assert!(
        files.iter().any(|(f, _, _)| f == "usr/bin/hello"),
        "{files:?}"
    );
    for (rel, mode, is_file) in &files {
        let abs = format!("/{rel}");
        let rendered = rel == "etc/hello/env.conf";
        if rendered {
            let text = std::fs::read_to_string(current.join(rel)).unwrap();
            assert_eq!(text, "environment=dev\nport=8080\n");
            let expected = format!(
                "- path: \"{abs}\"\n  content: {}\n  owner: \"root:root\"\n  permissions: '{mode:04o}'\n",
                serde_json::to_string(&text).unwrap()
            );
            assert!(
                user_data.contains(&expected),
                "the seed does not write {abs} as deployed:\n{user_data}\nexpected:\n{expected}"
            );
            continue;
        }
        let stat = debugfs_stat(&raw_path, &abs)
            .unwrap_or_else(|| panic!("{abs} is deployed but not in the image"));
        assert!(
            stat.contains(&format!("Mode:  {mode:04o}")),
            "{abs}: mode {mode:04o} deployed, image has:\n{stat}"
        );
        if *is_file {
            assert_eq!(
                debugfs_cat(&raw_path, &abs).unwrap(),
                std::fs::read(current.join(rel)).unwrap(),
                "{abs} differs"
            );
        }
    }

    // A second build (the bake script changed) promoted, then rolled back:
    // the pointer follows.
    p.write(
        "scripts/bake.sh",
        &format!("{BAKE}echo v2 > /etc/hello/v2\n"),
    );
    let b2 = build(&p);
    let id2 = b2["build"].as_str().unwrap().to_string();
    assert_eq!(artifact(&b2, "web.raw")["cache"], "miss");
    p.pipe(&["publish", &id2]).expect_code(0);
    p.pipe(&["promote", &id2, "--to", "dev"]).expect_code(0);
    assert_eq!(pointer(&p, &keyring, "dev")["build"], id2.as_str());
    p.pipe(&["rollback", "--env", "dev"]).expect_code(0);
    let back = pointer(&p, &keyring, "dev");
    assert_eq!(back["build"], id1.as_str());
    assert_eq!(back["images"], doc["images"]);
}

#[test]
fn machine_rebuilds_only_when_its_base_packages_or_post_install_change() {
    let p = project();
    let key = |b: &serde_json::Value| {
        artifact(b, "web.raw")["cache_key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let first = build(&p);
    let k0 = key(&first);
    let raw0 = sha256_file(&PathBuf::from(first["dir"].as_str().unwrap()).join("web.raw"));

    // Not inputs of the image: a deploy-time file, a package it does not list.
    p.write(
        "pipeline.toml",
        &std::fs::read_to_string(p.path().join("pipeline.toml"))
            .unwrap()
            .replace("environment={{ env }}", "env={{ env }}"),
    );
    p.write("other.txt", "other, changed\n");
    let b = build(&p);
    assert_eq!(artifact(&b, "web.raw")["cache"], "hit");
    assert_eq!(key(&b), k0);
    assert_eq!(artifact(&b, "other_1.0.0_all.deb")["cache"], "miss");
    let raw_hit = sha256_file(&PathBuf::from(b["dir"].as_str().unwrap()).join("web.raw"));
    assert_eq!(raw_hit, raw0);

    // Inputs: a listed package's file, the post-install script, the base.
    let mut keys = vec![k0];
    p.write("etc/hello.conf", "greeting=hello\n");
    let b = build(&p);
    assert_eq!(artifact(&b, "web.raw")["cache"], "miss");
    keys.push(key(&b));
    p.write("scripts/bake.sh", &format!("{BAKE}true\n"));
    let b = build(&p);
    assert_eq!(artifact(&b, "web.raw")["cache"], "miss");
    keys.push(key(&b));
    // The same root filesystem, another tarball (a second, empty gzip member).
    let base = p.path().join("vendor/base.tar.gz");
    let mut bytes = std::fs::read(&base).unwrap();
    std::fs::remove_file(&base).unwrap();
    bytes.extend_from_slice(&[
        0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    std::fs::write(&base, bytes).unwrap();
    let b = build(&p);
    assert_eq!(artifact(&b, "web.raw")["cache"], "miss");
    keys.push(key(&b));
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        keys.len(),
        "each change gave a new key: {keys:?}"
    );
}

#[test]
fn failing_post_install_fails_the_build_with_its_output_and_stores_nothing() {
    let p = project();
    p.write(
        "scripts/bake.sh",
        "echo 'cannot configure the frobnicator' >&2\nexit 7\n",
    );
    let r = p.pipe(&["build"]);
    r.expect_code(1);
    assert!(
        r.stderr.contains("post-install script")
            && r.stderr.contains("cannot configure the frobnicator")
            && r.stderr.contains("exit status: 7"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
    // No build, no record of the machine stage, no image blob.
    let builds: Vec<_> = std::fs::read_dir(p.path().join(".pipe/builds"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(builds.is_empty(), "{builds:?}");
    let stages = p.path().join(".pipe/store/cache/stages");
    for e in std::fs::read_dir(&stages)
        .map(|d| d.collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(
            !text.contains("web.raw"),
            "a stage record names the image: {text}"
        );
    }
}

#[test]
fn machine_deploy_refuses_an_unknown_machine_and_an_unpromoted_env() {
    let mut p = project();
    p.env("PIPE_VAR_port", "1");
    let keyring = p.keyring();
    // A reachable, empty store.
    std::fs::create_dir_all(p.path().join(".pipe/store")).unwrap();
    let r = p.pipe(&[
        "deploy",
        "--env",
        "dev",
        "--machine",
        "db",
        "--out",
        "o",
        "--keyring",
        &keyring,
    ]);
    r.expect_code(2);
    assert!(
        r.stderr.contains("machine `db` is not declared"),
        "{}",
        r.stderr
    );
    let r = p.pipe(&[
        "deploy",
        "--env",
        "dev",
        "--machine",
        "web",
        "--out",
        "o",
        "--keyring",
        &keyring,
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("points at no build"), "{}", r.stderr);
    assert!(!p.path().join("o/web.raw").exists());
}

#[test]
fn baking_as_another_user_than_root_says_it_needs_root() {
    let p = tiny_project(
        "noroot",
        None,
        "[machines.box]\nbase = \"rootfs:tiny-rootfs.tar\"\nsize = \"16M\"\n",
    );
    p.with_signing_key();
    // Everything readable by `nobody`, the project writable.
    run(Command::new("chmod").args(["-R", "a+rwX"]).arg(p.path()));
    // The secret key stays private (pipe refuses one readable by others):
    // `nobody`'s own, mode 600.
    let key = p.path().join("keys/release.key");
    run(Command::new("chown").arg("65534:65534").arg(&key));
    run(Command::new("chmod").arg("600").arg(&key));
    let out = pipe_e2e::consumers::try_run(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(pipe_e2e::cli::pipe_bin())
            .arg("-C")
            .arg(p.path())
            .arg("build")
            .env_remove("PIPE_STORE"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs root, and pipe is not running as root"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: run the build as root"), "{stderr}");
    assert!(
        !p.path()
            .join(".pipe/builds")
            .read_dir()
            .map(|mut d| d.any(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')))
            .unwrap_or(false)
    );
}

/// An rpm base: the package pipe built as .rpm is installed with `rpm
/// --root`, and the image's own rpm database lists it.
#[test]
fn an_rpm_base_gets_the_rpm_installed_and_its_database_knows_it() {
    let p = Project::new();
    p.write(
        "pipeline.toml",
        r#"[project]
name = "hello"
version = "1.0.0"
source_date_epoch = 1700000000

[signing]
key = "keys/release.key"

[packages.hello]
summary = "Hello"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["rpm"]
files = [{ src = "hello.txt", dst = "/usr/share/hello/hello.txt" }]

[machines.box]
base = "rootfs:rpm-base.tar.gz"
packages = ["hello"]
size = "32M"
formats = ["raw"]
"#,
    );
    p.write("hello.txt", "hello from an rpm\n");
    // A small root with an empty rpm database at /var/lib/rpm.
    let root = p.path().join("rpm-root");
    for d in ["etc", "usr/bin", "var/lib", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::fs::write(root.join("usr/bin/sh"), "#!not a shell\n").unwrap();
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    run(Command::new("rpm").arg("--root").arg(&root).args([
        "--dbpath",
        "/var/lib/rpm",
        "--initdb",
    ]));
    run(Command::new("tar")
        .args(["--numeric-owner", "-czf"])
        .arg(p.path().join("rpm-base.tar.gz"))
        .arg("-C")
        .arg(&root)
        .arg("."));
    std::fs::remove_dir_all(&root).unwrap();
    p.with_signing_key();
    let b = build(&p);
    let dir = PathBuf::from(b["dir"].as_str().unwrap());
    let raw = dir.join("box.raw");
    assert_images_sound(Some(&raw), None);
    assert_eq!(
        debugfs_cat(&raw, "/usr/share/hello/hello.txt").unwrap(),
        b"hello from an rpm\n"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("box.bake.json")).unwrap()).unwrap();
    assert_eq!(record["package_manager"], "rpm");
    // The image's database, copied out with debugfs, read by rpm.
    let dump = p.path().join("rpmdb-out");
    std::fs::create_dir(&dump).unwrap();
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump /var/lib/rpm {}", dump.display()))
        .arg(&raw));
    let q = run(Command::new("rpm")
        .arg("--dbpath")
        .arg(dump.join("rpm"))
        .args(["-q", "hello"]));
    assert_eq!(
        String::from_utf8_lossy(&q.stdout).trim(),
        "hello-1.0.0-1.noarch"
    );
}

/// Someone who can write the store but holds no key: a swapped provenance
/// is not signed into the machine pointer, and a swapped image is not
/// deployed.
#[test]
fn a_tampered_store_gets_nothing_into_the_pointer_or_the_deployed_image() {
    let mut p = tiny_project(
        "tamper",
        None,
        r#"[machines.box]
base = "rootfs:tiny-rootfs.tar"
size = "16M"
formats = ["raw"]

[deploy]
files = { "/etc/box.conf" = "env={{ env }}\n" }
"#,
    );
    p.with_signing_key();
    p.env("PIPE_VAR_unused", "1");
    let keyring = p.keyring();
    let b = build(&p);
    let id = b["build"].as_str().unwrap().to_string();
    p.pipe(&["publish", &id]).expect_code(0);
    let store = p.path().join(".pipe/store");

    // A provenance rewritten in the store: promote checks the build's
    // signed records before the pointer moves, and refuses (exit 3).
    let prov = store.join(format!("builds/{id}/provenance.json"));
    let original = std::fs::read(&prov).unwrap();
    std::fs::write(
        &prov,
        String::from_utf8_lossy(&original).replace("\"builder\"", "\"bu1lder\""),
    )
    .unwrap();
    let r = p.pipe(&["promote", &id, "--to", "dev"]);
    r.expect_code(3);
    assert!(r.stderr.contains("provenance.json"), "{}", r.stderr);
    assert!(
        !store.join("machines/box/dev.json.asc").exists(),
        "a pointer was signed over a forged provenance"
    );
    assert!(!store.join("machines/box/dev.json").exists());
    std::fs::write(&prov, &original).unwrap();
    p.pipe(&["promote", &id, "--to", "dev"]).expect_code(0);
    let doc = pointer_of(&p, &keyring, "box", "dev");
    assert_eq!(doc["build"], id.as_str());

    // An image blob replaced in the store: deploy refuses it, leaves nothing.
    let blob = store.join(doc["images"]["raw"]["key"].as_str().unwrap());
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1 << 20] ^= 0xff;
    std::fs::remove_file(&blob).unwrap();
    std::fs::write(&blob, bytes).unwrap();
    let r = p.pipe(&[
        "deploy",
        "--env",
        "dev",
        "--machine",
        "box",
        "--out",
        "out",
        "--keyring",
        &keyring,
    ]);
    r.expect_code(3);
    assert!(
        !p.path().join("out/box.raw").exists(),
        "a tampered image was left in the output"
    );
    assert!(!p.path().join("out/seed").exists());
}

fn pointer_of(p: &Project, keyring: &str, machine: &str, env: &str) -> serde_json::Value {
    let signed = std::fs::read(
        p.path()
            .join(format!(".pipe/store/machines/{machine}/{env}.json.asc")),
    )
    .unwrap();
    let ring = keys::Keyring::load(Path::new(keyring)).unwrap();
    serde_json::from_slice(&ring.verify_clearsigned(&signed, None).unwrap().1).unwrap()
}
