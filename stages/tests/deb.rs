//! The .deb stage against its real consumers: dpkg-deb reads every package,
//! dpkg installs one into a scratch root (conffile registered, postinst run),
//! lintian finds no repository-relevant errors; builds are byte-identical
//! across directories; bad input fails with its message and writes nothing.
//!
//! dpkg-deb, dpkg, dpkg-query and lintian must be installed
//! (`scripts/install-deps.sh test`); a missing tool fails the test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure, and input is the test's own"
)]

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use stages::deb::{Compression, DebOptions, DebPackage, Relations, Scripts, write_deb};
use stages::docs::{Changelog, Copyright, Docs};
use stages::tree::{Mapping, resolve};
use stages::{Error, tree};

const MTIME: u64 = 1_700_000_000;

/// Runs `tool args`, failing the test (never skipping) when the tool is
/// missing or exits non-zero; returns stdout.
fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("`{tool}` cannot be run ({e}); install it with `scripts/install-deps.sh test`")
    });
    assert!(
        out.status.success(),
        "`{tool} {}` failed: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write(path: &Path, body: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, body).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A project like the DESIGN example: a program, a config file, a data
/// directory with a subdirectory and an internal symlink, a postinst.
fn project(root: &Path) {
    write(&root.join("bin/hello"), "#!/bin/sh\necho hello\n", 0o755);
    write(&root.join("etc/hello.conf"), "greeting=hello\n", 0o644);
    write(&root.join("share/README"), "read me\n", 0o644);
    write(&root.join("share/sub/data.txt"), "data\n", 0o644);
    symlink("README", root.join("share/README.link")).unwrap();
    write(
        &root.join("scripts/postinst.sh"),
        "#!/bin/sh\nset -e\nmkdir -p \"$DPKG_ROOT/var/lib/hello\"\necho \"$1\" > \"$DPKG_ROOT/var/lib/hello/postinst-ran\"\n",
        0o755,
    );
}

fn mappings() -> Vec<Mapping> {
    let m = |src: &str, dst: &str, mode, config| Mapping {
        src: src.into(),
        dst: dst.into(),
        mode,
        config,
    };
    vec![
        m("bin/hello", "/usr/bin/hello", Some(0o755), false),
        m("etc/hello.conf", "/etc/hello/hello.conf", None, true),
        m("share/", "/usr/share/hello/", None, false),
    ]
}

fn package(root: &Path) -> DebPackage {
    let mut pkg = DebPackage::new(
        "hello",
        stages::deb::version_from_project("1.2.0").unwrap(),
        "all",
        "Ops Team <ops@example.com>",
        "greets the world politely",
        MTIME,
    );
    pkg.description = Some(
        "Hello prints a greeting.\n\nIt is the example package of pipe, used to\ncheck the .deb stage against dpkg."
            .into(),
    );
    pkg.relations = Relations {
        depends: vec!["libc6 (>= 2.36)".into(), "adduser | passwd".into()],
        recommends: vec!["curl".into()],
        suggests: vec!["wget".into()],
        conflicts: vec!["hello-legacy".into()],
        breaks: vec!["hello-old (<< 1.0)".into()],
        replaces: vec!["hello-old (<< 1.0)".into()],
        provides: vec!["greeter".into()],
        pre_depends: vec!["dpkg (>= 1.17)".into()],
    };
    pkg.section = "utils".into();
    pkg.homepage = Some("https://example.com/hello".into());
    pkg.scripts = Scripts {
        postinst: Some(root.join("scripts/postinst.sh")),
        ..Scripts::default()
    };
    pkg.entries = resolve(root, &mappings(), MTIME).unwrap();
    pkg.docs = Some(Docs {
        copyright: Copyright {
            name: "hello".into(),
            contact: Some("Ops Team <ops@example.com>".into()),
            source: Some("https://example.com/hello".into()),
            holder: "2023 Ops Team".into(),
            license: Some("Apache-2.0".into()),
            text: None,
        }
        .render(),
        changelog: Changelog::generated("hello", "1.2.0", "Ops Team <ops@example.com>", MTIME),
    });
    pkg
}

fn options(compression: Compression) -> DebOptions {
    DebOptions {
        compression,
        ..DebOptions::default()
    }
}

fn build(root: &Path, out_dir: &Path, compression: Compression) -> PathBuf {
    let pkg = package(root);
    let out = out_dir.join(pkg.file_name());
    let art = write_deb(&pkg, &options(compression), &out).unwrap();
    assert_eq!(art.size, fs::metadata(&out).unwrap().len());
    out
}

fn field(deb: &Path, name: &str) -> String {
    run("dpkg-deb", &["--field", deb.to_str().unwrap(), name])
        .trim_end()
        .to_owned()
}

#[test]
fn dpkg_deb_reads_every_compression_with_fields_modes_owners_links_dirs() {
    let root = tempfile::tempdir().unwrap();
    project(root.path());
    let out = tempfile::tempdir().unwrap();
    for c in [
        Compression::Xz,
        Compression::Gzip,
        Compression::Zstd,
        Compression::None,
    ] {
        let deb = build(root.path(), out.path(), c);
        let members = run("ar", &["t", deb.to_str().unwrap()]);
        let ext = c.extension();
        assert_eq!(
            members,
            format!("debian-binary\ncontrol.tar{ext}\ndata.tar{ext}\n"),
            "{c:?}"
        );
        let info = run("dpkg-deb", &["--info", deb.to_str().unwrap()]);
        for line in [
            " Package: hello\n",
            " Version: 1.2.0\n",
            " Architecture: all\n",
            " Maintainer: Ops Team <ops@example.com>\n",
            " Pre-Depends: dpkg (>= 1.17)\n",
            " Depends: libc6 (>= 2.36), adduser | passwd\n",
            " Recommends: curl\n",
            " Suggests: wget\n",
            " Breaks: hello-old (<< 1.0)\n",
            " Conflicts: hello-legacy\n",
            " Provides: greeter\n",
            " Replaces: hello-old (<< 1.0)\n",
            " Section: utils\n",
            " Priority: optional\n",
            " Homepage: https://example.com/hello\n",
            " Description: greets the world politely\n  Hello prints a greeting.\n  .\n  It is the example package of pipe, used to\n",
        ] {
            assert!(info.contains(line), "{c:?}: missing {line:?} in\n{info}");
        }
        // dpkg-deb lists the control members it found, with their modes.
        assert!(info.contains("postinst"), "{info}");
        // 6 small files at 1 KiB, 9 directories and a symlink at 1 KiB each.
        assert_eq!(field(&deb, "Installed-Size"), "16", "{c:?}");

        let contents = run("dpkg-deb", &["--contents", deb.to_str().unwrap()]);
        let rows: Vec<(String, String, String)> = contents
            .lines()
            .map(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                let name = cols[5..].join(" ");
                (cols[0].to_owned(), cols[1].to_owned(), name)
            })
            .collect();
        let expected = [
            ("drwxr-xr-x", "./"),
            ("drwxr-xr-x", "./etc/"),
            ("drwxr-xr-x", "./etc/hello/"),
            ("-rw-r--r--", "./etc/hello/hello.conf"),
            ("drwxr-xr-x", "./usr/"),
            ("drwxr-xr-x", "./usr/bin/"),
            ("-rwxr-xr-x", "./usr/bin/hello"),
            ("drwxr-xr-x", "./usr/share/"),
            ("drwxr-xr-x", "./usr/share/doc/"),
            ("drwxr-xr-x", "./usr/share/doc/hello/"),
            ("-rw-r--r--", "./usr/share/doc/hello/changelog.gz"),
            ("-rw-r--r--", "./usr/share/doc/hello/copyright"),
            ("drwxr-xr-x", "./usr/share/hello/"),
            ("-rw-r--r--", "./usr/share/hello/README"),
            ("lrwxrwxrwx", "./usr/share/hello/README.link -> README"),
            ("drwxr-xr-x", "./usr/share/hello/sub/"),
            ("-rw-r--r--", "./usr/share/hello/sub/data.txt"),
        ];
        assert_eq!(rows.len(), expected.len(), "{c:?}:\n{contents}");
        for ((mode, owner, name), (want_mode, want_name)) in rows.iter().zip(expected) {
            assert_eq!(
                (mode.as_str(), name.as_str()),
                (want_mode, want_name),
                "{c:?}"
            );
            assert_eq!(owner, "root/root", "{c:?}: {name}");
        }

        // The control tarball: members, modes, md5sums and conffiles.
        let listing = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "dpkg-deb --ctrl-tarfile '{}' | tar -tvf - --numeric-owner",
                deb.display()
            ))
            .output()
            .unwrap();
        let listing = String::from_utf8(listing.stdout).unwrap();
        for (mode, name) in [
            ("-rw-r--r--", "./conffiles"),
            ("-rw-r--r--", "./control"),
            ("-rw-r--r--", "./md5sums"),
            ("-rwxr-xr-x", "./postinst"),
        ] {
            assert!(
                listing
                    .lines()
                    .any(|l| l.starts_with(mode) && l.contains(" 0/0 ") && l.ends_with(name)),
                "{c:?}: {mode} {name} in\n{listing}"
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        run(
            "dpkg-deb",
            &[
                "--control",
                deb.to_str().unwrap(),
                tmp.path().to_str().unwrap(),
            ],
        );
        assert_eq!(
            fs::read_to_string(tmp.path().join("conffiles")).unwrap(),
            "/etc/hello/hello.conf\n"
        );
        let md5sums = fs::read_to_string(tmp.path().join("md5sums")).unwrap();
        let listed: Vec<&str> = md5sums.lines().map(|l| &l[34..]).collect();
        assert_eq!(
            listed,
            [
                "usr/bin/hello",
                "usr/share/doc/hello/changelog.gz",
                "usr/share/doc/hello/copyright",
                "usr/share/hello/README",
                "usr/share/hello/sub/data.txt"
            ]
        );
        assert!(md5sums.starts_with(&format!(
            "{:x}  usr/bin/hello\n",
            md5_of(&root.path().join("bin/hello"))
        )));
        // Every digest is right: md5sum checks them against the unpacked files.
        let unpacked = tempfile::tempdir().unwrap();
        run(
            "dpkg-deb",
            &[
                "-x",
                deb.to_str().unwrap(),
                unpacked.path().to_str().unwrap(),
            ],
        );
        fs::write(unpacked.path().join("md5sums"), &md5sums).unwrap();
        let check = Command::new("md5sum")
            .args(["--check", "--strict", "md5sums"])
            .current_dir(unpacked.path())
            .output()
            .unwrap();
        assert!(check.status.success(), "{:?}", check);
        fs::remove_file(&deb).unwrap();
    }
}

#[test]
fn dpkg_installs_into_a_scratch_root_registers_conffile_runs_postinst() {
    let root = tempfile::tempdir().unwrap();
    project(root.path());
    let out = tempfile::tempdir().unwrap();
    let deb = build(root.path(), out.path(), Compression::Xz);

    let sys = tempfile::tempdir().unwrap();
    let admin = sys.path().join("var/lib/dpkg");
    for d in ["info", "updates", "triggers"] {
        fs::create_dir_all(admin.join(d)).unwrap();
    }
    fs::write(admin.join("status"), "").unwrap();
    fs::write(admin.join("available"), "").unwrap();
    let root_arg = format!("--root={}", sys.path().display());
    let admin_arg = format!("--admindir={}", admin.display());
    // Scripts run chrootless, on the host, with DPKG_ROOT naming the root:
    // the scratch root has no shell to chroot into.
    let dpkg = |action: &[&str]| {
        let mut args = vec![
            root_arg.as_str(),
            admin_arg.as_str(),
            "--log=/dev/null",
            "--force-script-chrootless",
            "--force-not-root",
            "--force-depends",
        ];
        args.extend_from_slice(action);
        run("dpkg", &args)
    };
    dpkg(&["-i", deb.to_str().unwrap()]);
    let installed = sys.path();
    let mode = |p: &str| {
        fs::symlink_metadata(installed.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("usr/bin/hello"), 0o755);
    assert_eq!(mode("etc/hello/hello.conf"), 0o644);
    assert_eq!(
        fs::read_link(installed.join("usr/share/hello/README.link")).unwrap(),
        Path::new("README")
    );
    assert_eq!(
        fs::read_to_string(installed.join("usr/share/hello/sub/data.txt")).unwrap(),
        "data\n"
    );
    assert_eq!(
        fs::read_to_string(installed.join("var/lib/hello/postinst-ran")).unwrap(),
        "configure\n",
        "postinst ran with DPKG_ROOT and `configure`"
    );
    let conffiles = run(
        "dpkg-query",
        &[&admin_arg, "-W", "-f=${Conffiles}", "hello"],
    );
    let conf_md5 = format!("{:x}", md5_of(&root.path().join("etc/hello.conf")));
    assert_eq!(
        conffiles.trim(),
        format!("/etc/hello/hello.conf {conf_md5}")
    );
    let status = run(
        "dpkg-query",
        &[&admin_arg, "-W", "-f=${Status} ${Version}", "hello"],
    );
    assert_eq!(status, "install ok installed 1.2.0");

    // The changelog is what dpkg-parsechangelog reads, and names this version.
    let changelog = installed.join("usr/share/doc/hello/changelog.gz");
    let parsed = run(
        "sh",
        &[
            "-c",
            &format!(
                "gzip -dc '{}' > '{}/changelog' && dpkg-parsechangelog -l '{}/changelog'",
                changelog.display(),
                out.path().display(),
                out.path().display()
            ),
        ],
    );
    for line in [
        "Source: hello\n",
        "Version: 1.2.0\n",
        "Maintainer: Ops Team <ops@example.com>\n",
        "Date: Tue, 14 Nov 2023 22:13:20 +0000\n",
        "Timestamp: 1700000000\n",
    ] {
        assert!(parsed.contains(line), "{line:?} missing from\n{parsed}");
    }
    assert!(
        fs::read_to_string(installed.join("usr/share/doc/hello/copyright"))
            .unwrap()
            .starts_with(
                "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
            )
    );

    // Purging removes every directory the package created (the postinst's
    // /var/lib/hello is its own to clean up), and keeps those of the system.
    fs::remove_dir_all(installed.join("var/lib/hello")).unwrap();
    dpkg(&["--purge", "hello"]);
    for gone in [
        "etc/hello",
        "usr/share/hello",
        "usr/share/doc/hello",
        "usr/bin/hello",
    ] {
        assert!(!installed.join(gone).exists(), "{gone} is left after purge");
    }
}

fn md5_of(path: &Path) -> impl std::fmt::LowerHex {
    struct Hex(String);
    impl std::fmt::LowerHex for Hex {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    let out = Command::new("md5sum").arg(path).output().unwrap();
    Hex(String::from_utf8(out.stdout).unwrap()[..32].to_owned())
}

/// Tags lintian may report as errors here: none. The package carries its
/// copyright file and changelog (`docs`).
const ALLOWED_ERRORS: [&str; 0] = [];

#[test]
fn lintian_finds_no_errors_that_matter_for_a_repository() {
    let root = tempfile::tempdir().unwrap();
    project(root.path());
    let out = tempfile::tempdir().unwrap();
    let deb = build(root.path(), out.path(), Compression::Xz);
    // lintian exits non-zero on errors; the tags are judged below instead.
    let output = Command::new("lintian")
        .args(["--no-tag-display-limit", "--display-info"])
        .arg(&deb)
        .output()
        .unwrap_or_else(|e| {
            panic!("`lintian` cannot be run ({e}); install it with `scripts/install-deps.sh test`")
        });
    let report = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("error") || stderr.contains("root privileges"),
        "lintian failed to run: {stderr}"
    );
    let errors: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("E: "))
        .filter(|l| {
            let tag = l.split(": ").nth(2).unwrap_or("");
            let tag = tag.split_whitespace().next().unwrap_or("");
            !ALLOWED_ERRORS.contains(&tag)
        })
        .collect();
    eprintln!("lintian says:\n{report}");
    assert!(errors.is_empty(), "lintian errors:\n{report}");
    // Warnings about fields, checksums or permissions would matter too.
    for bad in [
        "md5sum",
        "control-file",
        "wrong-file-owner",
        "bad-permissions",
        "non-standard",
        "description",
        "field",
        "tar",
    ] {
        assert!(
            !report
                .lines()
                .any(|l| (l.starts_with("W: ") || l.starts_with("E: ")) && l.contains(bad)),
            "lintian complains about `{bad}`:\n{report}"
        );
    }
}

/// Copies the project files (not the links, recreated) into `dst` with file
/// times and permissions that differ from the original's.
fn copy_project(src: &Path, dst: &Path, age: Duration, group_writable: bool) {
    project(dst);
    let _ = src;
    let when = SystemTime::now() - age;
    for rel in [
        "bin/hello",
        "etc/hello.conf",
        "share/README",
        "share/sub/data.txt",
        "scripts/postinst.sh",
    ] {
        let f = fs::File::options().write(true).open(dst.join(rel)).unwrap();
        f.set_modified(when).unwrap();
        if group_writable {
            let mode = fs::metadata(dst.join(rel)).unwrap().permissions().mode();
            fs::set_permissions(dst.join(rel), fs::Permissions::from_mode(mode | 0o020)).unwrap();
        }
    }
}

#[test]
fn builds_in_two_directories_are_byte_identical() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    copy_project(Path::new("."), a.path(), Duration::from_secs(10), false);
    copy_project(
        Path::new("."),
        b.path(),
        Duration::from_secs(86_400 * 400),
        true,
    );
    let out_a = tempfile::tempdir().unwrap();
    let out_b = tempfile::tempdir().unwrap();
    for c in [
        Compression::Xz,
        Compression::Gzip,
        Compression::Zstd,
        Compression::None,
    ] {
        let da = build(a.path(), out_a.path(), c);
        let db = build(b.path(), out_b.path(), c);
        let (ba, bb) = (fs::read(&da).unwrap(), fs::read(&db).unwrap());
        assert!(ba == bb, "{c:?}: builds differ");
        // Thread count does not change the bytes either.
        let pkg = package(b.path());
        let one = out_b.path().join("one-thread.deb");
        let opts = DebOptions {
            compression: c,
            threads: Some(std::num::NonZeroU32::MIN),
            ..DebOptions::default()
        };
        write_deb(&pkg, &opts, &one).unwrap();
        assert!(fs::read(&one).unwrap() == ba, "{c:?}: 1 thread differs");
    }
}

// --- bad input: each error with its message, nothing written ---------------

/// Resolves and writes; returns the error and checks the output directory
/// is still empty.
fn build_err(root: &Path, mappings: &[Mapping]) -> Error {
    let out = tempfile::tempdir().unwrap();
    let result = resolve(root, mappings, MTIME).and_then(|entries| {
        let mut pkg = package_without_entries();
        pkg.entries = entries;
        write_deb(&pkg, &DebOptions::default(), &out.path().join("x.deb"))
    });
    let err = result.expect_err("bad input must fail");
    assert_empty(out.path());
    err
}

fn assert_empty(dir: &Path) {
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "nothing may be written on error: {left:?}");
}

fn package_without_entries() -> DebPackage {
    DebPackage::new("hello", "1.0", "all", "Ops <ops@example.com>", "hi", MTIME)
}

fn one(src: &str, dst: &str) -> Vec<Mapping> {
    vec![Mapping {
        src: src.into(),
        dst: dst.into(),
        mode: None,
        config: false,
    }]
}

#[test]
fn vanished_source() {
    let root = tempfile::tempdir().unwrap();
    let err = build_err(root.path(), &one("bin/gone", "/usr/bin/gone"));
    assert!(matches!(err, Error::SourceVanished { .. }), "{err:?}");
    assert!(
        err.to_string().contains("bin/gone` does not exist"),
        "{err}"
    );
}

#[test]
fn source_vanished_or_changed_after_resolving_writes_nothing() {
    let root = tempfile::tempdir().unwrap();
    project(root.path());
    let out = tempfile::tempdir().unwrap();
    let pkg = package(root.path());

    fs::write(root.path().join("share/README"), "grown since resolving\n").unwrap();
    let err = write_deb(&pkg, &DebOptions::default(), &out.path().join("x.deb")).unwrap_err();
    assert!(
        err.to_string()
            .contains("changed while it was being packaged: expected 8 bytes, found 22"),
        "{err}"
    );
    assert_empty(out.path());

    fs::remove_file(root.path().join("share/README")).unwrap();
    let err = write_deb(&pkg, &DebOptions::default(), &out.path().join("x.deb")).unwrap_err();
    assert!(matches!(err, Error::SourceVanished { .. }), "{err:?}");
    assert_empty(out.path());

    let mut pkg = package_without_entries();
    pkg.scripts.postinst = Some(root.path().join("scripts/missing.sh"));
    let err = write_deb(&pkg, &DebOptions::default(), &out.path().join("x.deb")).unwrap_err();
    assert!(
        err.to_string().contains("missing.sh` does not exist"),
        "{err}"
    );
    assert_empty(out.path());
}

#[test]
fn unreadable_file() {
    // Root reads anything, so as root the check runs in a child test
    // process that has dropped to `nobody`.
    const CHILD: &str = "STAGES_TEST_UNREADABLE_DIR";
    if let Ok(dir) = std::env::var(CHILD) {
        let err = resolve(Path::new(&dir), &one("secret", "/etc/secret"), MTIME).unwrap_err();
        assert!(matches!(err, Error::Unreadable { .. }), "{err:?}");
        assert!(
            err.to_string().contains("cannot read `")
                && err.to_string().contains("ermission denied"),
            "{err}"
        );
        return;
    }
    let root = tempfile::tempdir().unwrap();
    fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
    write(&root.path().join("secret"), "s3cret\n", 0o000);
    let is_root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if !is_root {
        let err = build_err(root.path(), &one("secret", "/etc/secret"));
        assert!(matches!(err, Error::Unreadable { .. }), "{err:?}");
        return;
    }
    use std::os::unix::process::CommandExt;
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["unreadable_file", "--exact", "--nocapture"])
        .env(CHILD, root.path())
        .uid(65534)
        .gid(65534)
        .status()
        .unwrap();
    assert!(status.success(), "child run as nobody failed");
}

#[test]
fn file_names_tar_or_cpio_cannot_carry() {
    let root = tempfile::tempdir().unwrap();
    write(&root.path().join("share/bad\nname"), "x", 0o644);
    let err = build_err(root.path(), &one("share", "/usr/share/x"));
    assert!(matches!(err, Error::BadFileName { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("contains the control character '\\n'"),
        "{err}"
    );

    let root = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
    write(&root.path().join("share").join(name), "x", 0o644);
    let err = build_err(root.path(), &one("share", "/usr/share/x"));
    assert!(err.to_string().contains("is not UTF-8"), "{err}");
}

#[test]
fn symlinks_out_of_the_project_root() {
    for target in [
        "../../../../../../../../etc/passwd",
        "/etc/passwd",
        "../../sibling",
    ] {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("share")).unwrap();
        symlink(target, root.path().join("share/evil")).unwrap();
        let resolved = if target.ends_with("sibling") {
            fs::canonicalize(root.path().parent().unwrap())
                .unwrap()
                .join("sibling")
        } else {
            PathBuf::from("/etc/passwd")
        };
        let err = build_err(root.path(), &one("share/", "/usr/share/x/"));
        assert!(matches!(err, Error::SymlinkOutsideRoot { .. }), "{err:?}");
        let msg = err.to_string();
        let want = format!(
            "points to `{target}`, which resolves to `{}`, outside the project root",
            resolved.display()
        );
        assert!(msg.contains(&want), "{msg}");
    }
    // A link that stays inside, to a link that leaves.
    let root = tempfile::tempdir().unwrap();
    fs::create_dir_all(root.path().join("share")).unwrap();
    symlink("/etc", root.path().join("out")).unwrap();
    symlink("../out/passwd", root.path().join("share/chained")).unwrap();
    let err = build_err(root.path(), &one("share/", "/usr/share/x/"));
    assert!(
        err.to_string().contains("resolves to `/etc/passwd`"),
        "{err}"
    );
    // A link inside the root is fine, and so is the named source being one.
    let root = tempfile::tempdir().unwrap();
    project(root.path());
    symlink("bin/hello", root.path().join("hello-link")).unwrap();
    let entries = resolve(root.path(), &one("hello-link", "/usr/bin/hi"), MTIME).unwrap();
    let file = entries.iter().find(|e| e.path == "/usr/bin/hi").unwrap();
    assert!(
        matches!(file.kind, tree::EntryKind::File { size: 21, .. }),
        "{file:?}"
    );
}

#[test]
fn two_mappings_to_one_destination() {
    let root = tempfile::tempdir().unwrap();
    project(root.path());
    let mut m = one("bin/hello", "/usr/bin/hello");
    m.extend(one("share/", "/usr/bin/"));
    m.extend(one("etc/hello.conf", "/usr/bin/hello"));
    let err = build_err(root.path(), &m);
    assert!(matches!(err, Error::DuplicateDestination { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("destination `/usr/bin/hello` is produced twice: by `")
            && msg.contains("bin/hello` and by `")
            && msg.ends_with("etc/hello.conf`"),
        "{msg}"
    );
    // Two directories merging is not a conflict.
    let mut m = one("share/", "/usr/share/x/");
    m.extend(one("bin/", "/usr/share/x/"));
    resolve(root.path(), &m, MTIME).unwrap();
}

#[test]
fn destination_with_dot_dot_or_relative() {
    let root = tempfile::tempdir().unwrap();
    project(root.path());
    let err = build_err(root.path(), &one("bin/hello", "/usr/../etc/hello"));
    assert_eq!(
        err.to_string(),
        "destination `/usr/../etc/hello` is invalid: expected a path without `.` or `..` components, found a `..` component"
    );
    let err = build_err(root.path(), &one("bin/hello", "usr/bin/hello"));
    assert!(
        err.to_string().contains("expected an absolute path"),
        "{err}"
    );
    let err = build_err(root.path(), &one("../outside", "/usr/bin/x"));
    assert!(matches!(err, Error::SourceOutsideRoot { .. }), "{err:?}");
}

#[test]
fn invalid_control_fields_are_refused() {
    let out = tempfile::tempdir().unwrap();
    let mut pkg = package_without_entries();
    pkg.summary = "two\nlines".into();
    let err = write_deb(&pkg, &DebOptions::default(), &out.path().join("x.deb")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid Description `two\nlines`: expected a non-empty single line"
    );
    let mut pkg = package_without_entries();
    pkg.name = "Hello".into();
    assert!(
        write_deb(&pkg, &DebOptions::default(), &out.path().join("x.deb"))
            .unwrap_err()
            .to_string()
            .starts_with("invalid Package `Hello`")
    );
    assert_empty(out.path());
}
