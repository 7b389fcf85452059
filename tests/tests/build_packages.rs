//! `pipe build` of packages: real consumers read what it writes, the same
//! inputs give the same bytes, the cache rebuilds exactly what changed, and
//! bad inputs fail clearly with nothing stored.

use std::path::{Path, PathBuf};
use std::process::Command;

use pipe_e2e::cli::{Project, Run};

const TWO_PACKAGES: &str = r#"[project]
name = "demo"
version = "2.0.1"
source_date_epoch = 1700000000

[packages.alpha]
summary = "First package"
description = "Alpha does the first thing.\n\nIt has a second paragraph."
arch = "amd64"
maintainer = "Ops <ops@example.com>"
license = "MIT"
license_file = "LICENSE"
changelog = "alpha/CHANGES.md"
depends = ["libc6 (>= 2.36)"]
conflicts = ["alpha-legacy (<< 2.0)"]
files = [
  { src = "alpha/bin/alpha", dst = "/usr/bin/alpha", mode = "0755" },
  { src = "alpha/alpha.conf", dst = "/etc/alpha/alpha.conf", config = true },
  { src = "alpha/share/", dst = "/usr/share/alpha/" },
]
scripts = { postinst = "alpha/postinst.sh" }

[packages.beta]
summary = "Second package"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb"]
files = [{ src = "beta/beta.txt", dst = "/usr/share/beta/beta.txt" }]
"#;

fn project() -> Project {
    let p = Project::new();
    p.write("pipeline.toml", TWO_PACKAGES)
        .write("alpha/bin/alpha", "#!/bin/sh\necho alpha\n")
        .write("alpha/alpha.conf", "setting=1\n")
        .write("alpha/share/data/one.txt", "one\n")
        .write("alpha/share/two.txt", "two\n")
        .write(
            "alpha/postinst.sh",
            "#!/bin/sh\nset -e\nmkdir -p \"$DPKG_ROOT/var/lib/alpha\"\necho configured > \"$DPKG_ROOT/var/lib/alpha/postinst-ran\"\n",
        )
        .write("beta/beta.txt", "beta\n")
        .write("LICENSE", "Permission is granted.\n")
        .write(
            "alpha/CHANGES.md",
            "# Changes\n\n## 2.0.1 - 2023-11-01\n- Fixes alpha.\n\n## 2.0.0 - 2023-10-01\n- Alpha.\n",
        );
    // Checkout permissions vary; the package must not care.
    set_mode(&p.path().join("alpha/bin/alpha"), 0o775);
    p.with_signing_key();
    p
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn build(p: &Project) -> serde_json::Value {
    p.pipe(&["--json", "build"]).expect_code(0).json()
}

fn artifact(doc: &serde_json::Value, name: &str) -> serde_json::Value {
    doc["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no artifact {name} in {doc}"))
        .clone()
}

fn tool(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("`{cmd}` must be installed (scripts/install-deps.sh test): {e}"))
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn dpkg_reads_and_installs_the_deb() {
    let p = project();
    let doc = build(&p);
    let deb = PathBuf::from(
        artifact(&doc, "alpha_2.0.1_amd64.deb")["path"]
            .as_str()
            .unwrap(),
    );

    let info = stdout(&tool("dpkg-deb", &["--info", deb.to_str().unwrap()]));
    for field in [
        "Package: alpha",
        "Version: 2.0.1",
        "Architecture: amd64",
        "Maintainer: Ops <ops@example.com>",
        "Depends: libc6 (>= 2.36)",
        "Description: First package\n  Alpha does the first thing.\n  .\n  It has a second paragraph.",
    ] {
        assert!(info.contains(field), "missing {field:?} in\n{info}");
    }
    let contents = stdout(&tool("dpkg-deb", &["--contents", deb.to_str().unwrap()]));
    assert!(
        contents.contains("-rwxr-xr-x root/root") && contents.contains("./usr/bin/alpha"),
        "{contents}"
    );
    assert!(
        contents.contains("-rw-r--r-- root/root")
            && contents.contains("./usr/share/alpha/data/one.txt"),
        "{contents}"
    );
    assert!(
        contents.contains("2023-11-14 22:13"),
        "dates clamped to SOURCE_DATE_EPOCH: {contents}"
    );

    // Install into a scratch root with dpkg itself.
    let root = tempfile::tempdir().unwrap();
    let admin = root.path().join("var/lib/dpkg");
    for d in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(d)).unwrap();
    }
    std::fs::write(admin.join("status"), "").unwrap();
    std::fs::write(admin.join("available"), "").unwrap();
    let out = tool(
        "dpkg",
        &[
            "--root",
            root.path().to_str().unwrap(),
            "--force-depends",
            "--force-script-chrootless",
            "--force-not-root",
            "-i",
            deb.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "dpkg -i failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("usr/share/alpha/two.txt")).unwrap(),
        "two\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("var/lib/alpha/postinst-ran")).unwrap(),
        "configured\n",
        "the postinst ran"
    );
    let conffiles = stdout(&tool(
        "dpkg-query",
        &[
            "--admindir",
            admin.to_str().unwrap(),
            "-W",
            "-f=${Conffiles}",
            "alpha",
        ],
    ));
    assert!(
        conffiles.contains("/etc/alpha/alpha.conf"),
        "conffile registered: {conffiles}"
    );
}

#[test]
fn same_inputs_in_two_directories_give_identical_bytes() {
    let a = project();
    let b = project();
    // Different file dates and a different key: the .deb must not care (the
    // manifest does not either, except for nothing at all).
    set_mode(&b.path().join("alpha/bin/alpha"), 0o755);
    let touch = tool(
        "touch",
        &[
            "-d",
            "2001-02-03",
            b.path().join("beta/beta.txt").to_str().unwrap(),
        ],
    );
    assert!(touch.status.success());
    // The same signing key: RSA and Ed25519 signatures are deterministic,
    // so the signed rpm is byte-identical too.
    std::fs::copy(
        a.path().join("keys/release.key"),
        b.path().join("keys/release.key"),
    )
    .unwrap();
    let da = build(&a);
    let db = build(&b);
    for name in [
        "alpha_2.0.1_amd64.deb",
        "alpha-2.0.1-1.x86_64.rpm",
        "beta_2.0.1_all.deb",
    ] {
        let pa = artifact(&da, name)["path"].as_str().unwrap().to_string();
        let pb = artifact(&db, name)["path"].as_str().unwrap().to_string();
        assert_eq!(
            std::fs::read(&pa).unwrap(),
            std::fs::read(&pb).unwrap(),
            "{name} differs"
        );
        assert_eq!(artifact(&da, name)["sha256"], artifact(&db, name)["sha256"]);
    }
    assert_eq!(
        da["build"], db["build"],
        "the build id is a digest of the manifest"
    );
    let ma = std::fs::read(Path::new(da["dir"].as_str().unwrap()).join("manifest.json")).unwrap();
    let mb = std::fs::read(Path::new(db["dir"].as_str().unwrap()).join("manifest.json")).unwrap();
    assert_eq!(ma, mb, "manifests are byte-identical");
    // The shards (artifacts, inputs, repository index records) too.
    let index = |p: &Project, d: &serde_json::Value| {
        let verified = pipe_e2e::verified(p, d["build"].as_str().unwrap());
        let mut index = Vec::new();
        for shard in verified["shards"].as_array().unwrap() {
            let path =
                Path::new(d["dir"].as_str().unwrap()).join(shard["store_key"].as_str().unwrap());
            let doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            index.extend(doc["index"].as_array().cloned().unwrap_or_default());
        }
        (verified["shards"].clone(), index)
    };
    let ((sa, ia), (sb, ib)) = (index(&a, &da), index(&b, &db));
    assert_eq!(sa, sb, "shards are byte-identical");
    assert_eq!(ia, ib, "repository index records are identical");
    let count = |kind: &str| ia.iter().filter(|f| f["kind"] == kind).count();
    assert_eq!(count("deb"), 2, "{ia:#?}");
    assert_eq!(count("rpm"), 1, "{ia:#?}");
}

#[test]
fn the_cache_rebuilds_exactly_what_changed() {
    let p = project();
    let first = build(&p);
    for a in first["artifacts"].as_array().unwrap() {
        assert_eq!(a["cache"], "miss", "{a}");
        for field in [
            "name",
            "kind",
            "path",
            "store_key",
            "size",
            "sha256",
            "blake3",
            "seconds",
        ] {
            assert!(!a[field].is_null(), "missing {field} in {a}");
        }
    }
    let run = p.pipe(&["build"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("alpha_2.0.1_amd64.deb")
            && run.stdout.contains("cache hit: not rebuilt"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("nothing changed: every stage was a cache hit"),
        "{}",
        run.stdout
    );

    p.write("beta/beta.txt", "beta, changed\n");
    let third = build(&p);
    assert_eq!(artifact(&third, "alpha_2.0.1_amd64.deb")["cache"], "hit");
    assert_eq!(artifact(&third, "beta_2.0.1_all.deb")["cache"], "miss");
    assert_ne!(third["build"], first["build"]);

    // A change to the package's section of pipeline.toml counts too.
    let toml = std::fs::read_to_string(p.path().join("pipeline.toml")).unwrap();
    p.write(
        "pipeline.toml",
        &toml.replace(
            "summary = \"Second package\"",
            "summary = \"Second package, renamed\"",
        ),
    );
    let fourth = build(&p);
    assert_eq!(artifact(&fourth, "alpha_2.0.1_amd64.deb")["cache"], "hit");
    assert_eq!(artifact(&fourth, "beta_2.0.1_all.deb")["cache"], "miss");

    // So do the changelog and the license text, which the packages carry.
    p.write(
        "alpha/CHANGES.md",
        "## 2.0.1 - 2023-11-01\n- Fixes alpha, really.\n",
    );
    let fifth = build(&p);
    assert_eq!(artifact(&fifth, "alpha_2.0.1_amd64.deb")["cache"], "miss");
    assert_eq!(
        artifact(&fifth, "alpha-2.0.1-1.x86_64.rpm")["cache"],
        "miss"
    );
    assert_eq!(artifact(&fifth, "beta_2.0.1_all.deb")["cache"], "hit");
    p.write("LICENSE", "Permission is granted, still.\n");
    let sixth = build(&p);
    assert_eq!(artifact(&sixth, "alpha_2.0.1_amd64.deb")["cache"], "miss");
    assert_eq!(artifact(&sixth, "beta_2.0.1_all.deb")["cache"], "hit");
    let verified = pipe_e2e::verified(&p, sixth["build"].as_str().unwrap());
    let inputs: Vec<&str> = verified["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert!(
        inputs.contains(&"alpha/CHANGES.md") && inputs.contains(&"LICENSE"),
        "the manifest lists the documentation inputs: {inputs:?}"
    );
}

fn store_files(p: &Project) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    out.push(
                        path.strip_prefix(root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
    }
    let root = p.path().join(".pipe/store");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out.retain(|k| k.starts_with("blobs/") || k.starts_with("cache/"));
    out
}

fn expect_failure(p: &Project, needle: &str) -> Run {
    let run = p.pipe(&["build"]);
    assert_ne!(run.code, 0, "build must fail:\n{}", run.stdout);
    assert!(
        run.stderr.contains(needle),
        "expected {needle:?} in:\n{}",
        run.stderr
    );
    assert!(
        store_files(p).is_empty(),
        "nothing may be stored: {:?}",
        store_files(p)
    );
    assert!(
        !p.path().join(".pipe/builds/latest").exists(),
        "no build may be recorded"
    );
    run
}

#[test]
fn a_symlink_leaving_the_project_is_refused() {
    let p = project();
    std::os::unix::fs::symlink("/etc/passwd", p.path().join("alpha/share/data/passwd")).unwrap();
    let run = expect_failure(&p, "alpha/share/data/passwd");
    assert!(run.stderr.contains("outside"), "{}", run.stderr);
}

#[test]
fn a_file_name_archives_cannot_carry_is_refused() {
    let p = project();
    p.write("alpha/share/bad\nname.txt", "x\n");
    expect_failure(&p, "bad");
}

#[test]
fn a_source_that_vanishes_after_validation_is_an_error() {
    let p = project();
    // A step runs between validation and the package stage; this one
    // deletes a file the package needs.
    let toml = std::fs::read_to_string(p.path().join("pipeline.toml")).unwrap();
    p.write(
        "pipeline.toml",
        &toml.replace(
            "[packages.alpha]",
            "[steps.clean]\nrun = \"rm beta/beta.txt && mkdir -p gen && touch gen/x\"\ninputs = [\"alpha/alpha.conf\"]\noutputs = [\"gen/\"]\n\n[packages.alpha]",
        ),
    );
    let run = p.pipe(&["build"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(run.stderr.contains("beta/beta.txt"), "{}", run.stderr);
    assert!(
        !store_files(&p)
            .iter()
            .any(|k| k.starts_with("cache/stages/")),
        "no package may be recorded: {:?}",
        store_files(&p)
    );
}

#[test]
fn rpm_reads_verifies_and_installs_the_rpm() {
    let p = project();
    // The default key: RSA, what RHEL and Debian's rpm accept.
    std::fs::remove_file(p.path().join("keys/release.key")).unwrap();
    p.pipe(&["keys", "generate", "--uid", "Release <release@example.com>"])
        .expect_code(0);
    let doc = build(&p);
    let rpm = artifact(&doc, "alpha-2.0.1-1.x86_64.rpm")["path"]
        .as_str()
        .unwrap()
        .to_string();
    let db = tempfile::tempdir().unwrap();
    let dbpath = db.path().to_str().unwrap();
    let q = |args: &[&str]| {
        let mut all = vec!["--dbpath", dbpath];
        all.extend_from_slice(args);
        all.push(&rpm);
        stdout(&tool("rpm", &all))
    };
    let info = q(&["-qpi"]);
    for field in [
        "Name        : alpha",
        "Version     : 2.0.1",
        "Release     : 1",
        "Architecture: x86_64",
        "License     : MIT",
        "Summary     : First package",
        "Signature   : RSA/SHA256",
    ] {
        assert!(info.contains(field), "missing {field:?} in\n{info}");
    }
    let files = q(&["-qplv"]);
    assert!(
        files.contains("-rwxr-xr-x    1 root     root") && files.contains("/usr/bin/alpha"),
        "{files}"
    );
    assert!(files.contains("/usr/share/alpha/data/one.txt"), "{files}");
    assert_eq!(q(&["-qpc"]).trim(), "/etc/alpha/alpha.conf");
    let requires = q(&["-qp", "--requires"]);
    assert!(requires.contains("libc6 >= 2.36"), "{requires}");
    assert!(q(&["-qp", "--conflicts"]).contains("alpha-legacy < 2.0"));
    assert!(q(&["-qp", "--scripts"]).contains("postinst-ran"));

    // rpm -K with the exported key imported: signature OK.
    p.pipe(&["keys", "export", "--armor", "--out", "release.asc"])
        .expect_code(0);
    let asc = p.path().join("release.asc");
    stdout(&tool(
        "rpm",
        &["--dbpath", dbpath, "--import", asc.to_str().unwrap()],
    ));
    let check = q(&["-K"]);
    assert!(check.contains("digests signatures OK"), "{check}");

    // Install into a scratch root. Scriptlets run chrooted there, so it gets a shell.
    let root = tempfile::tempdir().unwrap();
    for lib in [
        "/bin/sh",
        "/bin/mkdir",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
        "/lib/x86_64-linux-gnu/libselinux.so.1",
        "/lib/x86_64-linux-gnu/libpcre2-8.so.0",
    ] {
        let real = std::fs::canonicalize(lib).unwrap();
        let dst = root.path().join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&real, &dst).unwrap();
    }
    let out = tool(
        "rpm",
        &[
            "--root",
            root.path().to_str().unwrap(),
            "--dbpath",
            "/var/lib/rpm",
            "--nodeps",
            "-i",
            &rpm,
        ],
    );
    assert!(
        out.status.success(),
        "rpm -i: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("usr/share/alpha/two.txt")).unwrap(),
        "two\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("var/lib/alpha/postinst-ran")).unwrap(),
        "configured\n",
        "%post ran"
    );
}
