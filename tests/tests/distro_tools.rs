//! What the distributions' own tools say about what pipe writes: `lintian`
//! and `rpmlint` on the packages of the example and of a two-package
//! project (a service with a conffile and a postinst, and an arch-`all`
//! data package), and `aptly mirror` and `dnf reposync` copying a promoted
//! environment, served from the local store and from an S3 bucket.
//!
//! A lint error fails the test unless the test project's own content causes
//! it; each such tag is named below with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use pipe_e2e::cli::Project;
use pipe_e2e::consumers::{run, text};

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

/// Builds `p` with an RSA key (what rpm on every distribution verifies) and
/// returns the build directory and the exported public key.
fn build(p: &Project) -> (PathBuf, PathBuf) {
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
