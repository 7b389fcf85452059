//! The .rpm stage against the real consumer: the `rpm` tool (query, verify
//! the signature, install into a scratch root). Every rpm call uses a
//! database under a temporary directory, so the machine is not changed.
//!
//! `rpm` must be installed (`scripts/install-deps.sh test`); without it these
//! tests fail, they do not skip.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure, and input is the test's own"
)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use keys::{Algorithm, Encoding, GenerateOptions, SecretKey};
use stages::deb::{Relations, Scripts};
use stages::docs::{Changelog, Docs};
use stages::rpm::{RpmPackage, write_rpm};
use stages::tree::{Mapping, resolve};
use tempfile::TempDir;

/// SOURCE_DATE_EPOCH of every test package (2023-11-14).
const MTIME: u64 = 1_700_000_000;

/// The project key (RSA 4096, the default), created before `MTIME` so it
/// can sign at `MTIME`. RSA key generation is slow: one per test binary.
fn project_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| generate("Hello Release <release@example.com>", Algorithm::Rsa4096))
}

/// Some other key, which must not verify the project's packages.
fn other_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| generate("Mallory <mallory@example.com>", Algorithm::Rsa3072))
}

fn generate(uid: &str, algorithm: Algorithm) -> SecretKey {
    let mut opts = GenerateOptions::new(uid);
    opts.algorithm = algorithm;
    opts.creation_time = Some(UNIX_EPOCH + Duration::from_secs(MTIME - 86_400));
    SecretKey::generate(&opts).expect("generate key")
}

/// Runs `rpm ARGS`; panics with the reason if rpm is not installed.
fn rpm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("rpm").args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `rpm` ({e}): install it (`scripts/install-deps.sh test`, Debian package `rpm`); \
             these tests need the real consumer"
        )
    });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rpm_ok(args: &[&str]) -> String {
    let (ok, stdout, stderr) = rpm(args);
    assert!(
        ok,
        "rpm {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

fn write(path: &Path, text: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A project directory holding a binary, a config file, a data directory
/// (with a subdirectory and a symlink) and four maintainer scripts.
fn project(dir: &Path) {
    write(&dir.join("bin/hello"), "#!/bin/sh\necho hello\n", 0o700);
    write(&dir.join("etc/hello.conf"), "port=8080\n", 0o600);
    write(&dir.join("share/index.txt"), "index\n", 0o644);
    write(&dir.join("share/sub/deep.txt"), "deep\n", 0o664);
    symlink("index.txt", dir.join("share/latest.txt")).unwrap();
    // rpm runs scripts chrooted into --root: only shell builtins there.
    write(
        &dir.join("scripts/preinst"),
        "#!/bin/sh\necho \"pre $1\" > /pre-ran\n",
        0o755,
    );
    write(
        &dir.join("scripts/postinst"),
        "#!/bin/sh\necho \"post $1\" > /usr/share/hello/post-ran\n",
        0o755,
    );
    write(
        &dir.join("scripts/prerm"),
        "echo \"preun $1\" > /preun-ran\n",
        0o755,
    );
    write(
        &dir.join("scripts/postrm"),
        "#!/bin/sh\necho \"postun $1\" > /postun-ran\n",
        0o755,
    );
}

fn package(dir: &Path) -> RpmPackage {
    let mappings = [
        Mapping {
            src: "bin/hello".into(),
            dst: "/usr/bin/hello".into(),
            mode: Some(0o755),
            config: false,
        },
        Mapping {
            src: "etc/hello.conf".into(),
            dst: "/etc/hello/hello.conf".into(),
            mode: None,
            config: true,
        },
        Mapping {
            src: "share/".into(),
            dst: "/usr/share/hello/".into(),
            mode: None,
            config: false,
        },
    ];
    let entries = resolve(dir, &mappings, MTIME).expect("resolve");
    RpmPackage {
        name: "hello".into(),
        version: "1.2.0".into(),
        arch: "x86_64".into(),
        summary: "Hello service".into(),
        description: Some("Longer text.\nSecond line.".into()),
        license: Some("MIT".into()),
        packager: Some("Ops <ops@example.com>".into()),
        url: Some("https://example.com/hello".into()),
        group: Some("Applications/System".into()),
        relations: Relations {
            depends: vec![
                "libc6 (>= 2.36)".into(),
                "exim4 | mail-transport-agent (<< 2)".into(),
                "python3:any".into(),
            ],
            pre_depends: vec!["adduser (>= 3.11)".into()],
            recommends: vec!["curl".into()],
            suggests: vec!["jq (>> 1.5)".into()],
            conflicts: vec!["oldhello (<< 1.0)".into()],
            breaks: vec!["hello-plugin (<= 1.1)".into()],
            replaces: vec!["hello-legacy".into()],
            provides: vec!["hello-service (= 1.2.0)".into()],
        },
        entries,
        scripts: Scripts {
            preinst: Some(dir.join("scripts/preinst")),
            postinst: Some(dir.join("scripts/postinst")),
            prerm: Some(dir.join("scripts/prerm")),
            postrm: Some(dir.join("scripts/postrm")),
        },
        docs: Some(Docs {
            copyright: "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n".into(),
            changelog: Changelog::parse(
                "hello",
                "1.2.0",
                "Ops <ops@example.com>",
                "## 1.2.0 - 2023-11-14\n- Greets in French.\n- Reads /etc/hello.\n\n## 1.1.0 - 2023-10-01\n- First release.\n",
            )
            .unwrap(),
        }),
        mtime: MTIME,
    }
}

/// Builds the fixture project in a fresh directory; returns (tmp, rpm path).
fn build(signer: Option<&SecretKey>) -> (TempDir, PathBuf) {
    let tmp = TempDir::new().unwrap();
    let proj = tmp.path().join("project");
    project(&proj);
    let pkg = package(&proj);
    let out = tmp.path().join(pkg.file_name());
    let art = write_rpm(&pkg, signer, &out).expect("write_rpm");
    assert_eq!(art.path, out);
    assert_eq!(art.size, fs::metadata(&out).unwrap().len());
    (tmp, out)
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().map(str::trim_end).collect()
}

#[test]
fn rpm_reads_metadata_files_and_config_flags() {
    let (tmp, path) = build(None);
    assert_eq!(path.file_name().unwrap(), "hello-1.2.0-1.x86_64.rpm");
    let p = path.to_str().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();

    let info = rpm_ok(&["--dbpath", db, "-qpi", p]);
    for field in [
        "Name        : hello",
        "Version     : 1.2.0",
        "Release     : 1",
        "Architecture: x86_64",
        "License     : MIT",
        "Summary     : Hello service",
        "URL         : https://example.com/hello",
        "Packager    : Ops <ops@example.com>",
        "Group       : Applications/System",
        "Build Host  : reproducible",
        "Source RPM  : hello-1.2.0-1.src.rpm",
        "Longer text.\nSecond line.",
    ] {
        assert!(
            info.contains(field),
            "`{field}` missing from rpm -qpi:\n{info}"
        );
    }
    let build_date = rpm_ok(&["--dbpath", db, "-qp", "--qf", "%{BUILDTIME}", p]);
    assert_eq!(build_date, MTIME.to_string());

    // rpmbuild's %changelog, newest first.
    let changelog = rpm_ok(&["--dbpath", db, "-qp", "--changelog", p]);
    assert_eq!(
        changelog,
        "* Tue Nov 14 2023 Ops <ops@example.com> - 1.2.0-1\n- Greets in French.\n- Reads /etc/hello.\n\n* Sun Oct 01 2023 Ops <ops@example.com> - 1.1.0-1\n- First release.\n\n",
        "{changelog}"
    );

    // Modes, owners, dates and types of every entry; the directories a base
    // system owns (/usr, /usr/bin, /etc, /usr/share/licenses, ...) are not
    // owned by the package, the ones it creates are (/etc/hello); the
    // copyright file is license documentation (flag `l`).
    let listing = rpm_ok(&[
        "--dbpath",
        db,
        "-qp",
        "--qf",
        "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEMTIMES} %{FILEFLAGS:fflags} %{FILENAMES} %{FILELINKTOS}\n]",
        p,
    ]);
    let m = MTIME;
    assert_eq!(
        lines(&listing),
        [
            format!("drwxr-xr-x root root {m}  /etc/hello"),
            format!("-rw-r--r-- root root {m} cn /etc/hello/hello.conf"),
            format!("-rwxr-xr-x root root {m}  /usr/bin/hello"),
            format!("drwxr-xr-x root root {m}  /usr/share/hello"),
            format!("-rw-r--r-- root root {m}  /usr/share/hello/index.txt"),
            format!("lrwxrwxrwx root root {m}  /usr/share/hello/latest.txt index.txt"),
            format!("drwxr-xr-x root root {m}  /usr/share/hello/sub"),
            format!("-rw-r--r-- root root {m}  /usr/share/hello/sub/deep.txt"),
            format!("drwxr-xr-x root root {m}  /usr/share/licenses/hello"),
            format!("-rw-r--r-- root root {m} l /usr/share/licenses/hello/copyright"),
        ],
        "{listing}"
    );
    // The same through the everyday queries.
    let lv = rpm_ok(&["--dbpath", db, "-qplv", p]);
    assert!(
        lv.lines().all(|l| l.contains(" root     root ")),
        "owners are not root root:\n{lv}"
    );
    let config = rpm_ok(&["--dbpath", db, "-qpc", p]);
    assert_eq!(lines(&config), ["/etc/hello/hello.conf"]);
}

#[test]
fn rpm_reads_the_mapped_relations() {
    let (tmp, path) = build(None);
    let p = path.to_str().unwrap();
    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let query = |what: &str| rpm_ok(&["--dbpath", db, "-qp", what, p]);

    let requires = query("--requires");
    for dep in [
        "libc6 >= 2.36",
        "(exim4 or mail-transport-agent < 2)",
        "python3",
        "adduser >= 3.11",
        "/bin/sh",
        "rpmlib(RichDependencies) <= 4.12.0-1",
        "rpmlib(PayloadIsXz) <= 5.2-1",
    ] {
        assert!(
            requires.lines().any(|l| l.trim() == dep),
            "`{dep}` missing from --requires:\n{requires}"
        );
    }
    // Pre-Depends is a Requires(pre).
    let kinds = rpm_ok(&[
        "--dbpath",
        db,
        "-qp",
        "--qf",
        "[%{REQUIRENAME} %{REQUIREFLAGS:deptype}\n]",
        p,
    ]);
    assert!(
        kinds.lines().any(|l| l.trim() == "adduser pre"),
        "adduser is not Requires(pre):\n{kinds}"
    );
    assert!(
        kinds.lines().any(|l| l.trim() == "libc6 manual"),
        "libc6 is not a plain Requires:\n{kinds}"
    );

    let provides = query("--provides");
    assert!(
        provides
            .lines()
            .any(|l| l.trim() == "hello-service = 1.2.0"),
        "{provides}"
    );
    // rpm lists dependencies sorted by name.
    assert_eq!(
        lines(&query("--conflicts")),
        ["hello-plugin <= 1.1", "oldhello < 1.0"]
    );
    assert_eq!(lines(&query("--obsoletes")), ["hello-legacy"]);
    assert_eq!(lines(&query("--recommends")), ["curl"]);
    assert_eq!(lines(&query("--suggests")), ["jq > 1.5"]);

    let scripts = query("--scripts");
    for expected in [
        "preinstall scriptlet (using /bin/sh):",
        "echo \"pre $1\" > /pre-ran",
        "postinstall scriptlet (using /bin/sh):",
        "echo \"post $1\" > /usr/share/hello/post-ran",
        "preuninstall scriptlet (using /bin/sh):",
        "echo \"preun $1\" > /preun-ran",
        "postuninstall scriptlet (using /bin/sh):",
        "echo \"postun $1\" > /postun-ran",
    ] {
        assert!(
            scripts.contains(expected),
            "`{expected}` missing:\n{scripts}"
        );
    }
}

/// A key made by GnuPG (RSA 3072, sign+certify, dated before `MTIME`),
/// loaded through `keys` like a project key imported from GnuPG.
fn gnupg_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let home = TempDir::new().unwrap();
        let gpg = |args: &[&str]| {
            let out = Command::new("gpg")
                .env("GNUPGHOME", home.path())
                .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("cannot run gpg ({e}): install gnupg"));
            assert!(
                out.status.success(),
                "gpg {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        gpg(&[
            "--faked-system-time",
            "20231101T000000!",
            "--quick-gen-key",
            "GnuPG Release <gnupg@example.com>",
            "rsa3072",
            "sign",
            "never",
        ]);
        let secret = gpg(&["--export-secret-keys", "gnupg@example.com"]);
        SecretKey::from_bytes(&secret, None).expect("load GnuPG key")
    })
}

/// `rpm -K` says OK with `key` imported, NOT OK with `other` imported, and
/// NOT OK for a tampered header.
fn check_signature(key: &SecretKey, other: &SecretKey) {
    let (tmp, path) = build(Some(key));
    let p = path.to_str().unwrap();

    let import = |name: &str, k: &SecretKey| -> String {
        let db = tmp.path().join(name);
        fs::create_dir_all(&db).unwrap();
        let asc = tmp.path().join(format!("{name}.asc"));
        fs::write(
            &asc,
            k.public_keyring().to_bytes(Encoding::Armored).unwrap(),
        )
        .unwrap();
        let db = db.to_str().unwrap().to_string();
        let (ok, stdout, stderr) = rpm(&["--dbpath", &db, "--import", asc.to_str().unwrap()]);
        assert!(
            ok,
            "rpm --import refused the key exported by `keys` ({}):\n{stdout}{stderr}",
            k.fingerprint()
        );
        db
    };

    let good = import("good-db", key);
    let out = rpm_ok(&["--dbpath", &good, "-K", p]);
    assert!(out.contains("digests signatures OK"), "{out}");
    // It is the RSA header signature rpm checks, by this key, dated MTIME.
    let sig = rpm_ok(&["--dbpath", &good, "-qp", "--qf", "%{RSAHEADER:pgpsig}", p]);
    let key_id = key.fingerprint()[24..].to_lowercase();
    assert!(
        sig.starts_with("RSA/SHA256") && sig.ends_with(key_id.as_str()),
        "{sig} (key id {key_id})"
    );
    assert!(sig.contains("2023"), "{sig}");

    let wrong = import("wrong-db", other);
    let (ok, stdout, stderr) = rpm(&["--dbpath", &wrong, "-K", p]);
    assert!(
        !ok,
        "rpm -K accepted a package signed by another key:\n{stdout}{stderr}"
    );
    assert!(stdout.contains("SIGNATURES NOT OK"), "{stdout}{stderr}");

    // A tampered header fails even with the right key.
    let mut bytes = fs::read(&path).unwrap();
    let text = b"Hello service";
    let at = bytes
        .windows(text.len())
        .position(|w| w == text)
        .expect("summary in header");
    *bytes.get_mut(at).unwrap() = b'J';
    let tampered = tmp.path().join("tampered.rpm");
    fs::write(&tampered, bytes).unwrap();
    let (ok, stdout, stderr) = rpm(&["--dbpath", &good, "-K", tampered.to_str().unwrap()]);
    assert!(!ok, "rpm -K accepted a tampered header:\n{stdout}{stderr}");
}

/// The signing path (`keys` + the rpm stage) with a key rpm can import.
#[test]
fn signature_by_a_gnupg_made_key_verifies_with_that_key_only() {
    check_signature(gnupg_key(), other_key_gnupg());
}

/// A second GnuPG-made key.
fn other_key_gnupg() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let home = TempDir::new().unwrap();
        let out = Command::new("gpg")
            .env("GNUPGHOME", home.path())
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(["--faked-system-time", "20231101T000000!"])
            .args([
                "--quick-gen-key",
                "Mallory <m@example.com>",
                "rsa3072",
                "sign",
                "never",
            ])
            .output()
            .expect("gpg");
        assert!(out.status.success());
        let out = Command::new("gpg")
            .env("GNUPGHOME", home.path())
            .args(["--batch", "--export-secret-keys", "m@example.com"])
            .output()
            .expect("gpg");
        SecretKey::from_bytes(&out.stdout, None).expect("load GnuPG key")
    })
}

/// The same with keys made by `keys::SecretKey::generate`, as `pipe keys
/// generate` makes them: what consumers will import.
///
/// Guards a real incompatibility: Debian 12's rpm 4.18 refuses to import a
/// certificate whose user ID binding marks the Primary User ID subpacket
/// critical (its OpenPGP parser does not implement it), which is what
/// sequoia's `CertBuilder` wrote until `keys` cleared that bit.
#[test]
fn signature_by_a_generated_project_key_verifies_with_that_key_only() {
    check_signature(project_key(), other_key());
}

#[test]
fn rpm_installs_it_into_a_root_and_runs_the_scripts() {
    let (tmp, path) = build(Some(project_key()));
    let root = tmp.path().join("root");
    // Scripts run chrooted into the root: give it a shell.
    for lib in [
        "/bin/sh",
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/ld-linux-x86-64.so.2",
    ] {
        let real = fs::canonicalize(lib).unwrap();
        let dst = root.join(lib.trim_start_matches('/'));
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(&real, &dst).unwrap();
    }
    let r = root.to_str().unwrap();
    rpm_ok(&["--root", r, "--dbpath", "/db", "--initdb"]);
    rpm_ok(&[
        "--root",
        r,
        "--dbpath",
        "/db",
        "--nodeps",
        "-i",
        path.to_str().unwrap(),
    ]);

    let mode = |p: &str| {
        fs::symlink_metadata(root.join(p))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .permissions()
            .mode()
    };
    assert_eq!(mode("usr/bin/hello"), 0o100755);
    assert_eq!(mode("etc/hello/hello.conf"), 0o100644);
    assert_eq!(mode("usr/share/hello/sub"), 0o40755);
    assert_eq!(mode("usr/share/hello/sub/deep.txt"), 0o100644);
    assert_eq!(
        fs::read_link(root.join("usr/share/hello/latest.txt")).unwrap(),
        Path::new("index.txt")
    );
    assert_eq!(
        fs::read_to_string(root.join("usr/bin/hello")).unwrap(),
        "#!/bin/sh\necho hello\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/hello/hello.conf")).unwrap(),
        "port=8080\n"
    );
    assert_eq!(fs::read_to_string(root.join("pre-ran")).unwrap(), "pre 1\n");
    assert_eq!(
        fs::read_to_string(root.join("usr/share/hello/post-ran")).unwrap(),
        "post 1\n"
    );
    let installed = rpm_ok(&["--root", r, "--dbpath", "/db", "-q", "hello"]);
    assert_eq!(installed.trim(), "hello-1.2.0-1.x86_64");
    // The directories it creates are its own; those of the base system not.
    for dir in [
        "/etc/hello",
        "/usr/share/hello/sub",
        "/usr/share/licenses/hello",
    ] {
        let owner = rpm_ok(&["--root", r, "--dbpath", "/db", "-qf", dir]);
        assert_eq!(owner.trim(), "hello-1.2.0-1.x86_64", "rpm -qf {dir}");
    }
    let out = Command::new("rpm")
        .args(["--root", r, "--dbpath", "/db", "-qf", "/usr/bin"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("not owned by any package"),
        "rpm -qf /usr/bin: {said}"
    );

    // Removal runs %preun/%postun and keeps a changed config file.
    fs::write(root.join("etc/hello/hello.conf"), "port=9090\n").unwrap();
    rpm_ok(&["--root", r, "--dbpath", "/db", "--nodeps", "-e", "hello"]);
    assert_eq!(
        fs::read_to_string(root.join("preun-ran")).unwrap(),
        "preun 0\n"
    );
    assert_eq!(
        fs::read_to_string(root.join("postun-ran")).unwrap(),
        "postun 0\n"
    );
    assert!(!root.join("usr/bin/hello").exists());
    assert_eq!(
        fs::read_to_string(root.join("etc/hello/hello.conf.rpmsave")).unwrap(),
        "port=9090\n"
    );
    // Its own directories go with it (`/usr/share/hello` stays: the %post
    // script wrote a file there that no package owns).
    assert!(!root.join("usr/share/hello/sub").exists());
    assert!(!root.join("usr/share/licenses/hello").exists());
    assert!(root.join("usr/share/licenses").exists());
}

#[test]
fn two_builds_in_two_directories_are_byte_identical() {
    let key = project_key();
    let (a_dir, a) = build(Some(key));
    let (b_dir, b) = build(Some(key));
    assert_ne!(a_dir.path(), b_dir.path());
    // Source dates must not matter: make b's sources look years older.
    let old = fs::File::open(b_dir.path().join("project/bin/hello")).unwrap();
    old.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000))
        .unwrap();
    let again = b_dir.path().join("again.rpm");
    write_rpm(&package(&b_dir.path().join("project")), Some(key), &again).unwrap();

    let a = fs::read(a).unwrap();
    assert_eq!(a, fs::read(b).unwrap(), "signed builds differ");
    assert_eq!(
        a,
        fs::read(again).unwrap(),
        "source mtimes leaked into the rpm"
    );

    let (_u1, u1) = build(None);
    let (_u2, u2) = build(None);
    assert_eq!(
        fs::read(u1).unwrap(),
        fs::read(u2).unwrap(),
        "unsigned builds differ"
    );
}

#[test]
fn header_range_is_where_rpm_finds_the_header() {
    let tmp = TempDir::new().unwrap();
    let proj = tmp.path().join("project");
    project(&proj);
    let out = tmp.path().join("x.rpm");
    let art = write_rpm(&package(&proj), Some(project_key()), &out).unwrap();
    let bytes = fs::read(&out).unwrap();
    let (start, end) = art.header_range;
    // A header starts with its magic and the payload (xz) right after it.
    assert_eq!(
        &bytes[start as usize..start as usize + 3],
        [0x8e, 0xad, 0xe8]
    );
    assert_eq!(&bytes[end as usize..end as usize + 6], b"\xfd7zXZ\0");
    assert_eq!(
        art.signed_by.as_deref(),
        Some(project_key().fingerprint().as_str())
    );
}

#[test]
fn missing_source_names_the_path_and_writes_nothing() {
    let tmp = TempDir::new().unwrap();
    let proj = tmp.path().join("project");
    project(&proj);
    let pkg = package(&proj);
    let out_dir = tmp.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join(pkg.file_name());

    fs::remove_file(proj.join("share/sub/deep.txt")).unwrap();
    let err = write_rpm(&pkg, Some(project_key()), &out).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("share/sub/deep.txt") && msg.contains("does not exist"),
        "{msg}"
    );
    assert_eq!(
        fs::read_dir(&out_dir).unwrap().count(),
        0,
        "something was written"
    );

    // An unreadable script too.
    let mut pkg = package(&{
        let p = tmp.path().join("project2");
        project(&p);
        p
    });
    let gone = tmp.path().join("project2/scripts/nope");
    pkg.scripts.postinst = Some(gone.clone());
    let msg = write_rpm(&pkg, None, &out).unwrap_err().to_string();
    assert!(msg.contains(gone.to_str().unwrap()), "{msg}");
    assert_eq!(
        fs::read_dir(&out_dir).unwrap().count(),
        0,
        "something was written"
    );
}

#[test]
fn relations_rpm_cannot_express_are_refused_with_the_field() {
    let tmp = TempDir::new().unwrap();
    let proj = tmp.path().join("project");
    project(&proj);
    let mut pkg = package(&proj);
    pkg.relations.provides = vec!["a | b".into()];
    let out = tmp.path().join("x.rpm");
    let msg = write_rpm(&pkg, None, &out).unwrap_err().to_string();
    assert!(msg.contains("Provides") && msg.contains("a | b"), "{msg}");
    assert!(!out.exists());
}

/// Regression (fuzzing, `fuzz/known-crashes/`): headers whose entries point
/// outside their data made the `rpm` crate panic. `check_headers` refuses
/// them with a reason, and accepts what `write_rpm` writes.
#[test]
fn headers_reaching_outside_their_data_are_refused_before_the_crate_reads_them() {
    let crashes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/known-crashes");
    for name in [
        "rpm_header-offset-out-of-range",
        "yum_index-offset-out-of-range",
    ] {
        let bytes = fs::read(crashes.join(name)).unwrap();
        let err = stages::rpm::check_headers(&mut &bytes[..]).unwrap_err();
        assert!(err.contains("outside the header's"), "{name}: {err}");
    }
    let (_dir, path) = build(Some(project_key()));
    let bytes = fs::read(&path).unwrap();
    stages::rpm::check_headers(&mut &bytes[..]).unwrap();
    // Cut anywhere inside the headers: an error, never a panic.
    let mut r = &bytes[..];
    stages::rpm::check_headers(&mut r).unwrap();
    let headers = bytes.len() - r.len();
    for cut in [0, 50, 96, 100, 112, headers / 2, headers - 1] {
        assert!(
            stages::rpm::check_headers(&mut &bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    // An entry count or data size past rpm's limits.
    let mut big = bytes.clone();
    big[96 + 8..96 + 12].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    assert!(
        stages::rpm::check_headers(&mut &big[..])
            .unwrap_err()
            .contains("entries")
    );
    let mut big = bytes.clone();
    big[96 + 12..96 + 16].copy_from_slice(&0x1000_0000u32.to_be_bytes());
    assert!(
        stages::rpm::check_headers(&mut &big[..])
            .unwrap_err()
            .contains("bytes of data")
    );
}
