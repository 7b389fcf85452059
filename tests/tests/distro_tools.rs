//! What the distributions' own tools say about what pipe writes: `lintian`
//! and `rpmlint` on the packages of the example and of a two-package
//! project (a service with a conffile and a postinst, and an arch-`all`
//! data package), and `aptly mirror` and `dnf reposync` copying a promoted
//! environment, served from the local store and from an S3 bucket.
//!
//! A lint error fails the test unless the test project's own content causes
//! it; each such tag is named below with the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pipe_e2e::cli::Project;
use pipe_e2e::consumers::{Dnf, HttpServer, mkdir, run, text};
use pipe_e2e::proxy::StoppingProxy;
use pipe_e2e::s3::MotoServer;

/// The two-package project: `shop`, a service (a program, a conffile in
/// `/etc/shop`, data in `/usr/share/shop/…`, a postinst, a changelog in
/// Debian's format), and `shop-data`, architecture `all`.
const SHOP: &str = r#"[project]
name = "shop"
version = "2.3.1"
source_date_epoch = 1700000000

[environments.dev]
[environments.prod]
from = "dev"

[packages.shop]
summary = "online shop service"
description = """
Serves the shop's pages and takes orders.
Reads its settings from /etc/shop/shop.conf."""
arch = "amd64"
license = "Apache-2.0"
maintainer = "Shop Team <shop@example.org>"
homepage = "https://shop.example.org"
copyright = "2021-2023 Example Shop Ltd"
group = "Applications/Internet"
section = "web"
changelog = "debian/changelog"
depends = ["shop-data (= 2.3.1)"]
files = [
  { src = "bin/shop", dst = "/usr/bin/shop", mode = "0755" },
  { src = "etc/shop.conf", dst = "/etc/shop/shop.conf", config = true },
  { src = "templates/", dst = "/usr/share/shop/templates/" },
]
scripts = { postinst = "scripts/postinst" }

[packages.shop-data]
summary = "static files of the online shop"
description = "Images and style sheets the shop service serves."
arch = "all"
license = "CC0-1.0"
maintainer = "Shop Team <shop@example.org>"
homepage = "https://shop.example.org"
files = [
  { src = "static/", dst = "/usr/share/shop/static/" },
]
"#;

const CHANGELOG: &str = "shop (2.3.1) unstable; urgency=medium

  * Takes orders in two steps.
  * Fixes the price rounding.

 -- Shop Team <shop@example.org>  Tue, 14 Nov 2023 10:00:00 +0100

shop (2.3.0) unstable; urgency=low

  * Adds the order page.

 -- Shop Team <shop@example.org>  Mon, 02 Oct 2023 09:30:00 +0200
";

/// rpmlint errors the shop project's own content causes: its "service" is
/// a shell script, yet the package is declared `arch = "amd64"` (as a real
/// service with a compiled program would be), so rpmlint says an
/// architecture-specific package holds no binary.
const SHOP_RPMLINT_ALLOWED: &[(&str, &str)] = &[(
    "no-binary",
    "the test's amd64 service ships a shell script, not a compiled program",
)];

fn shop() -> Project {
    let p = Project::new();
    p.write("pipeline.toml", SHOP)
        .write("debian/changelog", CHANGELOG)
        .write(
            "bin/shop",
            "#!/bin/sh\n# The shop service.\nset -eu\nexec cat /usr/share/shop/templates/index.html\n",
        )
        .write("etc/shop.conf", "listen=127.0.0.1:8080\n")
        .write("templates/index.html", "<h1>Shop</h1>\n")
        .write("templates/orders/list.html", "<ul></ul>\n")
        .write("static/style.css", "body { margin: 0; }\n")
        .write("static/img/logo.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n")
        .write(
            "scripts/postinst",
            "#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then\n  mkdir -p /var/lib/shop\nfi\n",
        );
    p
}

/// Gives `p` an RSA signing key (what rpm and apt on every distribution
/// verify); returns its public key, armored and as a binary keyring.
fn keys(p: &Project) -> (PathBuf, PathBuf) {
    p.pipe(&[
        "keys",
        "generate",
        "--uid",
        "Release <release@example.org>",
        "--algo",
        "rsa3072",
    ])
    .expect_code(0);
    p.pipe(&["keys", "export", "--out", "release.asc"])
        .expect_code(0);
    p.pipe(&["keys", "export", "--binary", "--out", "release.gpg"])
        .expect_code(0);
    (p.path().join("release.asc"), p.path().join("release.gpg"))
}

/// Builds `p` with an RSA key and returns the build directory and the
/// exported public key.
fn build(p: &Project) -> (PathBuf, PathBuf) {
    keys(p);
    let build = p.pipe(&["--json", "build"]).expect_code(0).json()["build"]
        .as_str()
        .unwrap()
        .to_string();
    (
        p.path().join(".pipe/builds").join(build),
        p.path().join("release.asc"),
    )
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

/// Standard output of a command that must succeed.
fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// lintian's report on `deb` and its error tags (`E: pkg: tag detail`).
fn lintian(deb: &Path) -> (String, Vec<String>) {
    let out = Command::new("lintian")
        .args(["--tag-display-limit", "0", "--display-info"])
        .arg(deb)
        .output()
        .unwrap_or_else(|e| {
            panic!("`lintian` cannot be run ({e}): install it with `scripts/install-deps.sh test`")
        });
    let report = text(&out);
    // lintian exits 1 when it found errors, 2 when it could not check.
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "lintian did not run:\n{report}"
    );
    let errors = report
        .lines()
        .filter_map(|l| l.strip_prefix("E: "))
        .filter_map(|l| l.split(": ").nth(1))
        .map(|t| t.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    (report, errors)
}

/// rpmlint's report on `rpm` and its error tags (`NAME.ARCH: E: tag …`).
/// `key` is imported into a scratch rpm database first, so rpmlint checks
/// the signature against the project's key rather than reporting an
/// unknown one.
fn rpmlint(rpm: &Path, key: &Path) -> (String, Vec<String>) {
    let home = tempfile::tempdir().unwrap();
    let db = home.path().join("rpmdb");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(
        home.path().join(".rpmmacros"),
        format!("%_dbpath {}\n", db.display()),
    )
    .unwrap();
    run(Command::new("rpm")
        .env("HOME", home.path())
        .arg("--import")
        .arg(key));
    let out = Command::new("rpmlint")
        .env("HOME", home.path())
        .arg(rpm)
        .output()
        .unwrap_or_else(|e| {
            panic!("`rpmlint` cannot be run ({e}): install it with `scripts/install-deps.sh test`")
        });
    let report = text(&out);
    assert!(
        report.contains("packages and 0 specfiles checked"),
        "rpmlint did not run:\n{report}"
    );
    let errors = report
        .lines()
        .filter_map(|l| l.split_once(": E: ").map(|(_, t)| t))
        .map(|t| t.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    (report, errors)
}

/// Fails on any error tag not in `allowed` (tag → why the project's own
/// content causes it).
#[track_caller]
fn assert_only(tool: &str, what: &Path, report: &str, errors: &[String], allowed: &[(&str, &str)]) {
    let unexpected: Vec<&String> = errors
        .iter()
        .filter(|t| !allowed.iter().any(|(a, _)| a == t))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{tool} reports errors {unexpected:?} on {}:\n{report}",
        what.display()
    );
}

#[test]
fn lintian_and_rpmlint_report_no_error_on_the_example() {
    let p = Project::example("hello");
    // The packages are what the linters read. The example's machine needs
    // the Debian base `scripts/example.sh` makes (machine bakes are tested
    // in `machine_pipeline`), its image the registry only at publish.
    let toml = std::fs::read_to_string(p.path().join("pipeline.toml")).unwrap();
    p.write("pipeline.toml", toml.split("[machines.").next().unwrap());
    let (dir, key) = build(&p);
    let debs = files_ending(&dir, ".deb");
    let rpms = files_ending(&dir, ".rpm");
    assert_eq!((debs.len(), rpms.len()), (1, 1), "{}", dir.display());
    let (report, errors) = lintian(&debs[0]);
    assert_only("lintian", &debs[0], &report, &errors, &[]);
    let (report, errors) = rpmlint(&rpms[0], &key);
    assert_only("rpmlint", &rpms[0], &report, &errors, &[]);
    // What the issue found missing is there now.
    for gone in ["no-copyright-file", "no-changelog", "no-url-tag"] {
        assert!(!report.contains(gone), "{report}");
    }
}

#[test]
fn lintian_and_rpmlint_report_no_error_on_a_service_and_a_data_package() {
    let p = shop();
    let (dir, key) = build(&p);
    let debs = files_ending(&dir, ".deb");
    let rpms = files_ending(&dir, ".rpm");
    assert_eq!((debs.len(), rpms.len()), (2, 2), "{}", dir.display());
    for deb in &debs {
        let (report, errors) = lintian(deb);
        assert_only("lintian", deb, &report, &errors, &[]);
    }
    for rpm in &rpms {
        let (report, errors) = rpmlint(rpm, &key);
        assert_only("rpmlint", rpm, &report, &errors, SHOP_RPMLINT_ALLOWED);
        for tag in [
            "no-group-tag",
            "no-changelogname-tag",
            "no-buildhost-tag",
            "no-url-tag",
        ] {
            assert!(!report.contains(tag), "{tag}:\n{report}");
        }
    }

    // rpm shows the tags; dpkg-parsechangelog and rpm read the changelog.
    let service = rpms
        .iter()
        .find(|r| r.to_string_lossy().contains("/shop-2.3.1"))
        .unwrap();
    let info = stdout(Command::new("rpm").arg("-qpi").arg(service));
    for field in [
        "Group       : Applications/Internet",
        "Source RPM  : shop-2.3.1-1.src.rpm",
        "Build Host  : reproducible",
        "URL         : https://shop.example.org",
        "Packager    : Shop Team <shop@example.org>",
    ] {
        assert!(info.contains(field), "{field} missing:\n{info}");
    }
    let changelog = stdout(
        Command::new("rpm")
            .args(["-qp", "--changelog"])
            .arg(service),
    );
    assert!(
        changelog.starts_with(
            "* Tue Nov 14 2023 Shop Team <shop@example.org> - 2.3.1-1\n- Takes orders in two steps.\n- Fixes the price rounding.\n\n* Mon Oct 02 2023 Shop Team <shop@example.org> - 2.3.0-1\n- Adds the order page.\n"
        ),
        "{changelog}"
    );
    // The service's own directories are its, the system's are not.
    let files = stdout(Command::new("rpm").args(["-qpl"]).arg(service));
    let listed: Vec<&str> = files.lines().collect();
    for own in [
        "/etc/shop",
        "/usr/share/shop",
        "/usr/share/shop/templates",
        "/usr/share/shop/templates/orders",
        "/usr/share/licenses/shop",
        "/usr/share/licenses/shop/copyright",
    ] {
        assert!(listed.contains(&own), "{own} not owned:\n{files}");
    }
    for system in [
        "/etc",
        "/usr",
        "/usr/bin",
        "/usr/share",
        "/usr/share/licenses",
    ] {
        assert!(!listed.contains(&system), "{system} owned:\n{files}");
    }
    let license = stdout(Command::new("rpm").args(["-qpL"]).arg(service));
    assert_eq!(license.trim(), "/usr/share/licenses/shop/copyright");

    let deb = debs
        .iter()
        .find(|d| d.to_string_lossy().contains("/shop_2.3.1"))
        .unwrap();
    let unpacked = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(deb)
        .arg(unpacked.path()));
    let doc = unpacked.path().join("usr/share/doc/shop");
    let plain = unpacked.path().join("changelog");
    run(Command::new("sh").arg("-c").arg(format!(
        "gzip -dc '{}' > '{}'",
        doc.join("changelog.gz").display(),
        plain.display()
    )));
    assert_eq!(std::fs::read_to_string(&plain).unwrap(), CHANGELOG);
    let parsed = stdout(
        Command::new("dpkg-parsechangelog")
            .arg("-l")
            .arg(&plain)
            .args(["--show-field", "Version"]),
    );
    assert_eq!(parsed.trim(), "2.3.1");
    let copyright = std::fs::read_to_string(doc.join("copyright")).unwrap();
    assert!(
        copyright.contains("Files: *\nCopyright: 2021-2023 Example Shop Ltd\nLicense: Apache-2.0\n On Debian systems, the complete text of the Apache License, Version 2.0\n can be found in \"/usr/share/common-licenses/Apache-2.0\".\n"),
        "{copyright}"
    );
}

/// Builds and publishes `version` of the shop; its changelog gains an
/// entry for it first.
fn shop_release(p: &Project, version: &str) -> String {
    if version != "2.3.1" {
        p.write(
            "debian/changelog",
            &format!(
                "shop ({version}) unstable; urgency=medium\n\n  * Next release.\n\n -- Shop Team <shop@example.org>  Wed, 15 Nov 2023 10:00:00 +0000\n\n{CHANGELOG}"
            ),
        );
    }
    p.release(version)
}

/// The artifacts of `build` ending in `suffix`: file name → bytes.
fn artifacts(p: &Project, build: &str, suffix: &str) -> BTreeMap<String, Vec<u8>> {
    files_ending(&p.path().join(".pipe/builds").join(build), suffix)
        .into_iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&f).unwrap())
        })
        .collect()
}

/// Every file under `dir`, by path relative to it.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// `aptly mirror create` + `aptly mirror update` of suite `env` at `url`,
/// trusting only `keyring`; returns the mirrored .deb files by name.
fn aptly_mirror(work: &Path, url: &str, env: &str, keyring: &Path) -> BTreeMap<String, Vec<u8>> {
    let root = mkdir(work.join("aptly"));
    let conf = work.join("aptly.conf");
    std::fs::write(
        &conf,
        format!(
            r#"{{"rootDir": "{}", "architectures": ["amd64"], "gpgDisableVerify": false, "gpgProvider": "gpg", "downloadConcurrency": 2}}"#,
            root.display()
        ),
    )
    .unwrap();
    let aptly = |args: &[&str]| {
        let mut cmd = Command::new("aptly");
        cmd.env("HOME", work)
            .arg(format!("-config={}", conf.display()))
            .args(args);
        text(&run(&mut cmd))
    };
    let keyring_arg = format!("-keyring={}", keyring.display());
    let created = aptly(&["mirror", "create", &keyring_arg, "mirror", url, env, "main"]);
    assert!(created.contains("Good signature"), "{created}");
    aptly(&["mirror", "update", &keyring_arg, "mirror"]);
    // aptly's pool names a file `<digest prefix>_<file name>`.
    tree(&root.join("pool"))
        .into_iter()
        .map(|(rel, bytes)| {
            let name = rel.rsplit('/').next().unwrap();
            let name = name.split_once('_').map_or(name, |(_, n)| n).to_string();
            (name, bytes)
        })
        .collect()
}

/// `dnf reposync --download-metadata` of the yum repository at `url`
/// (with `repo_gpgcheck`, trusting only `key`); returns every file it
/// wrote, by path relative to the repository.
fn reposync(work: &Path, url: &str, key: &Path) -> BTreeMap<String, Vec<u8>> {
    let dnf = Dnf::new(work.join("dnf"), url, key);
    let out = work.join("reposync");
    let t = dnf.ok(&[
        "reposync",
        "--download-metadata",
        "-p",
        out.to_str().unwrap(),
    ]);
    assert!(!t.contains("outside of download path"), "{t}");
    tree(&out.join("pipe"))
}

/// The `location href`s of a `repomd.xml`.
fn repomd_hrefs(repomd: &str) -> Vec<String> {
    repomd
        .split("<location href=\"")
        .skip(1)
        .map(|r| r.split('"').next().unwrap().to_string())
        .collect()
}

/// What reposync wrote is exactly the repository: `repomd.xml`, its
/// signature, the data files it names, and every .rpm of `build` under
/// `Packages/`, each byte for byte what `published` (a path under
/// `yum/ENV/`) returns and the build's artifact.
fn assert_mirrors_yum(
    mirrored: &BTreeMap<String, Vec<u8>>,
    rpms: &BTreeMap<String, Vec<u8>>,
    published: impl Fn(&str) -> Vec<u8>,
) {
    let repomd = String::from_utf8(mirrored["repodata/repomd.xml"].clone()).unwrap();
    let mut expected: Vec<String> = ["repodata/repomd.xml", "repodata/repomd.xml.asc"]
        .map(String::from)
        .into_iter()
        .chain(repomd_hrefs(&repomd))
        .chain(rpms.keys().map(|n| format!("Packages/{}/{n}", &n[..1])))
        .collect();
    expected.sort();
    let got: Vec<&String> = mirrored.keys().collect();
    assert_eq!(got, expected.iter().collect::<Vec<_>>());
    for (path, bytes) in mirrored {
        assert!(
            *bytes == published(path),
            "{path} differs from the published file"
        );
    }
    for (name, bytes) in rpms {
        let path = format!("Packages/{}/{name}", &name[..1]);
        assert!(
            mirrored[&path] == *bytes,
            "{path} differs from the build's {name}"
        );
    }
}

#[test]
fn aptly_and_reposync_mirror_an_environment_from_the_local_store() {
    let p = shop();
    p.write(
        "pipeline.toml",
        &format!("{SHOP}\n[repository]\ngrace = \"2s\"\n"),
    );
    let (key_asc, key_gpg) = keys(&p);
    let b1 = shop_release(&p, "2.3.1");
    let promoted = p
        .pipe(&["--json", "promote", &b1, "--to", "dev"])
        .expect_code(0)
        .json();
    assert_eq!(promoted["repositories"]["linked"], 2, "{promoted}");
    let store = p.path().join(".pipe/store");
    let server = HttpServer::start(&store);
    let work = tempfile::tempdir().unwrap();

    // apt: aptly mirrors the suite whole.
    let debs = aptly_mirror(
        &mkdir(work.path().join("a1")),
        &server.url(),
        "dev",
        &key_gpg,
    );
    assert_eq!(debs, artifacts(&p, &b1, ".deb"));

    // yum: reposync mirrors the repository whole, and the packages are
    // hard links of their blobs (a promotion copies no byte).
    let yum = store.join("yum/dev");
    let rpms = artifacts(&p, &b1, ".rpm");
    let mirrored = reposync(
        &mkdir(work.path().join("y1")),
        &format!("{}yum/dev", server.url()),
        &key_asc,
    );
    assert_mirrors_yum(&mirrored, &rpms, |path| {
        std::fs::read(yum.join(path)).unwrap()
    });
    let blobs = tree(&store.join("blobs"));
    for name in rpms.keys() {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(yum.join(format!("Packages/{}/{name}", &name[..1]))).unwrap();
        assert!(meta.nlink() >= 2, "{name} is not a hard link");
        let blob = blobs
            .iter()
            .find(|(_, b)| **b == rpms[name])
            .expect("its blob")
            .0;
        assert_eq!(
            std::fs::metadata(store.join("blobs").join(blob))
                .unwrap()
                .ino(),
            meta.ino(),
            "{name} is not a link of its blob"
        );
    }

    // The next build: its packages join, the old ones stay for the grace
    // period (a client that read the old repomd.xml still finds them), then
    // go with the next regeneration.
    let b2 = shop_release(&p, "2.4.0");
    let promoted = p
        .pipe(&["--json", "promote", &b2, "--to", "dev"])
        .expect_code(0)
        .json();
    assert_eq!(promoted["repositories"]["linked"], 2, "{promoted}");
    let old: Vec<PathBuf> = rpms
        .keys()
        .map(|n| yum.join(format!("Packages/{}/{n}", &n[..1])))
        .collect();
    assert!(
        old.iter().all(|f| f.exists()),
        "old packages removed before the grace period"
    );
    let rpms2 = artifacts(&p, &b2, ".rpm");
    let mirrored = reposync(
        &mkdir(work.path().join("y2")),
        &format!("{}yum/dev", server.url()),
        &key_asc,
    );
    assert_mirrors_yum(&mirrored, &rpms2, |path| {
        std::fs::read(yum.join(path)).unwrap()
    });
    let debs = aptly_mirror(
        &mkdir(work.path().join("a2")),
        &server.url(),
        "dev",
        &key_gpg,
    );
    assert_eq!(debs, artifacts(&p, &b2, ".deb"));
    std::thread::sleep(std::time::Duration::from_secs(3));
    // A refresh lists the same packages: nothing new is linked.
    let refreshed = p
        .pipe(&["--json", "refresh", "--env", "dev"])
        .expect_code(0)
        .json();
    assert_eq!(refreshed["refreshed"][0]["linked"], 0, "{refreshed}");
    assert!(
        old.iter().all(|f| !f.exists()),
        "old packages outlived the grace period"
    );
    let mirrored = reposync(
        &mkdir(work.path().join("y3")),
        &format!("{}yum/dev", server.url()),
        &key_asc,
    );
    assert_mirrors_yum(&mirrored, &rpms2, |path| {
        std::fs::read(yum.join(path)).unwrap()
    });
}

#[test]
fn aptly_and_reposync_mirror_an_environment_from_an_s3_bucket() {
    let server = MotoServer::start();
    let mut p = shop();
    for (k, v) in server.env() {
        p.env(&k, &v);
    }
    p.env("PIPE_STORE", &format!("s3://{}/repo", server.bucket()));
    // aptly and dnf send no credentials: the bucket is readable by anyone,
    // as a bucket serving a repository is.
    server.allow_anonymous_read();
    let base = format!("{}/{}/repo/", server.endpoint(), server.bucket());
    // 4 MiB that xz cannot shrink in the data package, so package bytes
    // would show in what a promotion sends.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..4 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(p.path().join("static/noise.bin"), &noise).unwrap();
    let (key_asc, key_gpg) = keys(&p);
    let b1 = shop_release(&p, "2.3.1");
    // Promotions go through a proxy that counts what pipe sends: the
    // package copies are made by the S3 server, not sent.
    let proxy = StoppingProxy::start(server.addr(), u64::MAX);
    p.env("AWS_ENDPOINT_URL", &proxy.endpoint());
    let promoted = p
        .pipe(&["--json", "promote", &b1, "--to", "dev"])
        .expect_code(0)
        .json();
    assert_eq!(promoted["repositories"]["linked"], 2, "{promoted}");
    let sent = proxy.upstream_bytes();
    assert!(
        sent < 1 << 20,
        "the promotion sent {sent} bytes: package bytes went through pipe"
    );
    let work = tempfile::tempdir().unwrap();

    let debs = aptly_mirror(&mkdir(work.path().join("a")), &base, "dev", &key_gpg);
    assert_eq!(debs, artifacts(&p, &b1, ".deb"));

    let get = |path: &str| -> Vec<u8> {
        run(Command::new("curl")
            .args(["-sSf", "-o", "-"])
            .arg(format!("{base}yum/dev/{path}")))
        .stdout
    };
    let rpms = artifacts(&p, &b1, ".rpm");
    let mirrored = reposync(
        &mkdir(work.path().join("y")),
        &format!("{base}yum/dev"),
        &key_asc,
    );
    assert_mirrors_yum(&mirrored, &rpms, get);

    // prod gets the build after dev: its own copies, made in the bucket.
    let promoted = p
        .pipe(&["--json", "promote", &b1, "--to", "prod"])
        .expect_code(0)
        .json();
    assert_eq!(promoted["repositories"]["linked"], 2, "{promoted}");
    let sent_prod = proxy.upstream_bytes() - sent;
    assert!(
        sent_prod < 1 << 20,
        "the promotion to prod sent {sent_prod} bytes: package bytes went through pipe"
    );
    let mirrored = reposync(
        &mkdir(work.path().join("y-prod")),
        &format!("{base}yum/prod"),
        &key_asc,
    );
    assert_mirrors_yum(&mirrored, &rpms, |path| {
        run(Command::new("curl")
            .args(["-sSf", "-o", "-"])
            .arg(format!("{base}yum/prod/{path}")))
        .stdout
    });
}
