//! dnf against a repository rendered by `repo_index::yum`, served on
//! 127.0.0.1 with `gpgcheck=1` and `repo_gpgcheck=1`; and the XML compared
//! with what createrepo_c writes for the same packages.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use pipe_e2e::consumers::*;
use repo_index::yum::{
    self, ChangelogEntry, Dependency, FileKind, PackageXml, RenderedRepo, RepoConfig, RpmFile,
    RpmPackage,
};

/// A spec for `NAME-VERSION-1.noarch`: with `rich`, dependencies of every
/// kind, a config file, a directory, a ghost and a changelog (for the
/// comparison with createrepo_c); without, nothing that needs anything, so
/// dnf can install it into an empty root.
fn spec(name: &str, version: &str, rich: bool) -> String {
    let mut s = format!(
        "Name: {name}\nVersion: {version}\nRelease: 1\nSummary: {name} & <friends>\nLicense: MIT\nURL: https://example.invalid/{name}\nBuildArch: noarch\n"
    );
    if rich {
        s.push_str(
            "Epoch: 3\nRequires: bash >= 4.0\nRequires(pre): coreutils\nProvides: greeting = 1:1.2.0-7\nConflicts: hello-old < 1.0\nObsoletes: hello-legacy <= 0.9\nRecommends: cowsay\nSuggests: fortune\nSupplements: shell\nEnhances: bash\n",
        );
    }
    s.push_str(&format!(
        "%description\nThe {name} package.\nSecond line & <stuff>.\n%install\nmkdir -p %{{buildroot}}/etc/{name} %{{buildroot}}/usr/share/{name}\necho {version} > %{{buildroot}}/etc/{name}/{name}.conf\necho data > %{{buildroot}}/usr/share/{name}/data\n"
    ));
    if rich {
        s.push_str(&format!(
            "mkdir -p %{{buildroot}}/usr/bin\nprintf '#!/bin/sh\\necho hi\\n' > %{{buildroot}}/usr/bin/{name}\nchmod 755 %{{buildroot}}/usr/bin/{name}\n"
        ));
    }
    s.push_str(&format!(
        "%files\n%dir /etc/{name}\n%config /etc/{name}/{name}.conf\n/usr/share/{name}\n"
    ));
    if rich {
        s.push_str(&format!(
            "/usr/bin/{name}\n%ghost /var/log/{name}.log\n%changelog\n* Mon Nov 23 2026 Jane Doe <jane@example.invalid> - {version}-1\n- Second & <better>\n* Mon Nov 23 2026 Jane Doe <jane@example.invalid> - 0.9-1\n- Same day\n* Sun Nov 22 2026 John Roe <john@example.invalid> - 0.1-1\n- First\n"
        ));
    }
    s
}

/// Builds the package with rpmbuild, signs it with rpmsign (gpg holding the
/// test key) and copies it to `dest_dir`; returns its path.
fn build_rpm(
    work: &Path,
    gnupg: &Path,
    fpr: &str,
    name: &str,
    version: &str,
    rich: bool,
    dest_dir: &Path,
) -> PathBuf {
    let top = work.join(format!("rpm-{name}-{version}"));
    write(
        &top.join(format!("SPECS/{name}.spec")),
        spec(name, version, rich),
    );
    run(Command::new("rpmbuild")
        .arg("-bb")
        .arg("--define")
        .arg(format!("_topdir {}", top.display()))
        .arg("--define")
        .arg("_buildhost pipe-test")
        .arg(top.join(format!("SPECS/{name}.spec"))));
    // rpmbuild leaves the epoch out of file names.
    let file = format!("{name}-{version}-1.noarch.rpm");
    let built = top.join("RPMS/noarch").join(&file);
    run(Command::new("rpmsign")
        .arg("--addsign")
        .arg("--define")
        .arg(format!("_gpg_name {fpr}"))
        .arg("--define")
        .arg(format!("_gpg_path {}", gnupg.display()))
        .arg("--define")
        .arg("__gpg /usr/bin/gpg")
        .arg(&built));
    std::fs::create_dir_all(dest_dir).unwrap();
    let dest = dest_dir.join(&file);
    std::fs::copy(&built, &dest).unwrap();
    dest
}

/// Byte range of the main header: after the 96-byte lead and the signature
/// header (padded to 8 bytes); each header is a 16-byte intro, 16 bytes per
/// index entry and the data store.
fn header_range(bytes: &[u8]) -> (u64, u64) {
    let header_len = |at: usize| {
        assert_eq!(&bytes[at..at + 3], &[0x8e, 0xad, 0xe8], "rpm header magic");
        let n = u32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let data = u32::from_be_bytes(bytes[at + 12..at + 16].try_into().unwrap()) as usize;
        16 + 16 * n + data
    };
    let sig = header_len(96);
    let start = 96 + sig.div_ceil(8) * 8;
    (start as u64, (start + header_len(start)) as u64)
}

/// Records an .rpm as the pipeline would at publish time: header fields
/// from `rpm -qp --qf`, size, digest, header range of the file.
fn record(rpm: &Path, href: &str) -> RpmPackage {
    let q = |fmt: &str| -> String {
        String::from_utf8(
            run(Command::new("rpm")
                .args(["-qp", "--nosignature", "--qf", fmt])
                .arg(rpm))
            .stdout,
        )
        .unwrap()
    };
    let none = |s: String| if s == "(none)" { String::new() } else { s };
    let num = |tag: &str| q(&format!("%{{{tag}}}")).parse::<u64>().unwrap_or(0);
    let deps = |tag: &str| -> Vec<Dependency> {
        q(&format!(
            "[%{{{tag}NAME}}\x1f%{{{tag}FLAGS}}\x1f%{{{tag}VERSION}}\x1e]"
        ))
        .split('\x1e')
        .filter(|r| !r.is_empty())
        .map(|r| {
            let f: Vec<&str> = r.split('\x1f').collect();
            Dependency::new(f[0], f[1].parse().unwrap(), f[2])
        })
        .collect()
    };
    let files = q("[%{FILENAMES}\x1f%{FILEMODES}\x1f%{FILEFLAGS}\x1e]")
        .split('\x1e')
        .filter(|r| !r.is_empty())
        .map(|r| {
            let f: Vec<&str> = r.split('\x1f').collect();
            RpmFile {
                path: f[0].to_string(),
                kind: FileKind::from_header(f[1].parse().unwrap(), f[2].parse().unwrap()),
            }
        })
        .collect();
    let changelogs = q("[%{CHANGELOGTIME}\x1f%{CHANGELOGNAME}\x1f%{CHANGELOGTEXT}\x1e]")
        .split('\x1e')
        .filter(|r| !r.is_empty())
        .map(|r| {
            let f: Vec<&str> = r.splitn(3, '\x1f').collect();
            ChangelogEntry {
                date: f[0].parse().unwrap(),
                author: f[1].to_string(),
                text: f[2].to_string(),
            }
        })
        .collect();
    let bytes = std::fs::read(rpm).unwrap();
    let (header_start, header_end) = header_range(&bytes);
    let mtime = std::fs::metadata(rpm).unwrap().modified().unwrap();
    RpmPackage {
        name: q("%{NAME}"),
        epoch: num("EPOCH"),
        version: q("%{VERSION}"),
        release: q("%{RELEASE}"),
        arch: q("%{ARCH}"),
        summary: q("%{SUMMARY}"),
        description: q("%{DESCRIPTION}"),
        url: Some(none(q("%{URL}"))).filter(|u| !u.is_empty()),
        license: q("%{LICENSE}"),
        vendor: none(q("%{VENDOR}")),
        group: none(q("%{GROUP}")),
        packager: none(q("%{PACKAGER}")),
        buildhost: q("%{BUILDHOST}"),
        sourcerpm: none(q("%{SOURCERPM}")),
        build_time: num("BUILDTIME"),
        file_time: mtime
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        package_size: bytes.len() as u64,
        installed_size: num("SIZE"),
        archive_size: num("LONGARCHIVESIZE"),
        header_start,
        header_end,
        sha256: sha256_hex(&bytes),
        location_href: href.to_string(),
        location_base: None,
        provides: deps("PROVIDE"),
        requires: deps("REQUIRE"),
        conflicts: deps("CONFLICT"),
        obsoletes: deps("OBSOLETE"),
        recommends: deps("RECOMMEND"),
        suggests: deps("SUGGEST"),
        supplements: deps("SUPPLEMENT"),
        enhances: deps("ENHANCE"),
        files,
        changelogs,
    }
}

/// All members: pipe's data files are concatenated gzip members, as zlib,
/// dnf and createrepo_c read them.
fn gunzip(bytes: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_string(&mut s)
        .unwrap();
    s
}

struct Fixture {
    tmp: tempfile::TempDir,
    key: keys::SecretKey,
    gnupg: PathBuf,
    key_asc: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let key = signing_key();
    let gnupg = mkdir(tmp.path().join("gnupg"));
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let secret = tmp.path().join("secret.asc");
    key.write_new(&secret).unwrap();
    run(Command::new("gpg")
        .arg("--homedir")
        .arg(&gnupg)
        .args(["--batch", "--quiet", "--import"])
        .arg(&secret));
    let key_asc = tmp.path().join("key.asc");
    std::fs::write(
        &key_asc,
        key.public_keyring()
            .to_bytes(keys::Encoding::Armored)
            .unwrap(),
    )
    .unwrap();
    Fixture {
        tmp,
        key,
        gnupg,
        key_asc,
    }
}

#[test]
fn xml_matches_createrepo_c_for_the_same_packages() {
    let f = fixture();
    let work = mkdir(f.tmp.path().join("work"));
    let repo = mkdir(f.tmp.path().join("repo"));
    let fpr = f.key.fingerprint();
    let rich = build_rpm(
        &work,
        &f.gnupg,
        &fpr,
        "hello",
        "1.2.0",
        true,
        &repo.join("packages"),
    );
    let plain = build_rpm(
        &work,
        &f.gnupg,
        &fpr,
        "greet",
        "1.0",
        false,
        &repo.join("packages"),
    );
    run(Command::new("createrepo_c")
        .args(["--quiet", "--unique-md-filenames", "--no-database"])
        .arg(&repo));
    let theirs = std::fs::read_to_string(repo.join("repodata/repomd.xml")).unwrap();

    let recorded = [
        record(&rich, "packages/hello-1.2.0-1.noarch.rpm"),
        record(&plain, "packages/greet-1.0-1.noarch.rpm"),
    ];
    let xml: Vec<PackageXml> = recorded
        .iter()
        .map(|p| yum::render_package(p).unwrap())
        .collect();
    let cfg = RepoConfig {
        dir: String::new(),
        timestamp: SystemTime::now(),
    };
    let ours = yum::render_repo(&cfg, &xml.iter().collect::<Vec<_>>(), None).unwrap();

    for d in &ours.data {
        // createrepo_c's file of the same kind, from its repomd.xml.
        let marker = format!("-{}.xml.gz\"", d.kind);
        let href = theirs
            .lines()
            .find(|l| l.contains("<location") && l.contains(&marker))
            .and_then(|l| l.split('"').nth(1))
            .unwrap_or_else(|| panic!("no {} in createrepo_c's repomd.xml", d.kind));
        let their_xml = gunzip(&std::fs::read(repo.join(href)).unwrap());
        let our_xml = gunzip(&d.gz);
        assert_eq!(our_xml, their_xml, "{} differs from createrepo_c's", d.kind);
        let expected: &[&str] = match d.kind {
            "primary" => &[
                "<rpm:supplements>",
                "<rpm:enhances>",
                "<rpm:suggests>",
                "pre=\"1\"",
                "epoch=\"3\"",
                "<file type=\"dir\">/etc/hello</file>",
            ],
            "filelists" => &["<file type=\"ghost\">/var/log/hello.log</file>"],
            _ => &["- Second &amp; &lt;better&gt;", "John Roe"],
        };
        for e in expected {
            assert!(our_xml.contains(e), "{} lacks {e}:\n{our_xml}", d.kind);
        }
        // The open checksum createrepo_c records is the one of the same text.
        assert!(
            theirs.contains(&d.open_checksum),
            "{} open-checksum",
            d.kind
        );
    }
}

fn publish(
    f: &Fixture,
    repo: &Path,
    recorded: &[RpmPackage],
    when: SystemTime,
    previous: Option<&RenderedRepo>,
) -> RenderedRepo {
    let xml: Vec<PackageXml> = recorded
        .iter()
        .map(|p| yum::render_package(p).unwrap())
        .collect();
    let cfg = RepoConfig {
        dir: "yum/prod".into(),
        timestamp: when,
    };
    let rendered = yum::render_repo(&cfg, &xml.iter().collect::<Vec<_>>(), previous).unwrap();
    let plan = rendered.write_plan(&rendered.sign(&f.key, when).unwrap());
    let paths: Vec<&str> = plan.files.iter().map(|p| p.path.as_str()).collect();
    assert!(
        paths[..3]
            .iter()
            .all(|p| p.starts_with("yum/prod/repodata/") && p.ends_with(".xml.gz")),
        "{paths:?}"
    );
    assert_eq!(
        &paths[3..],
        [
            "yum/prod/repodata/repomd.xml.asc",
            "yum/prod/repodata/repomd.xml"
        ]
    );
    plan.write_to_dir(repo).unwrap();
    rendered
}

#[test]
fn dnf_installs_from_signed_repo_sees_new_generation_and_refuses_tampering() {
    let f = fixture();
    let work = mkdir(f.tmp.path().join("work"));
    let repo = mkdir(f.tmp.path().join("store"));
    let fpr = f.key.fingerprint();
    // Packages live in a pool shared by every environment; the repository
    // of an environment points at them with a relative href.
    let pool = repo.join("pool/rpm");
    let greet1 = build_rpm(&work, &f.gnupg, &fpr, "greet", "1.0", false, &pool);
    let hello = build_rpm(&work, &f.gnupg, &fpr, "hello", "1.2.0", true, &pool);
    let mut recorded = vec![
        record(&greet1, "../../pool/rpm/greet-1.0-1.noarch.rpm"),
        record(&hello, "../../pool/rpm/hello-1.2.0-1.noarch.rpm"),
    ];
    let now = SystemTime::now();
    let gen1 = publish(&f, &repo, &recorded, now - Duration::from_secs(60), None);

    let server = HttpServer::start(&repo);
    let url = format!("{}yum/prod/", server.url());
    let dnf = Dnf::new(f.tmp.path().join("dnf"), &url, &f.key_asc);
    dnf.ok(&["makecache"]);
    let info = dnf.ok(&["repoquery", "--requires", "hello"]);
    assert!(
        info.contains("bash >= 4.0") && info.contains("coreutils"),
        "{info}"
    );
    let t = dnf.ok(&["install", "greet"]);
    assert!(t.contains("greet") && t.contains("Complete!"), "{t}");
    assert!(dnf.dir.join("root/etc/greet/greet.conf").exists());

    // Generation 2: greet 2.0. The next makecache sees it; upgrade works.
    let greet2 = build_rpm(&work, &f.gnupg, &fpr, "greet", "2.0", false, &pool);
    recorded[0] = record(&greet2, "../../pool/rpm/greet-2.0-1.noarch.rpm");
    std::thread::sleep(Duration::from_millis(1100)); // see apt_consumer: http.server's 1 s mtimes
    let gen2 = publish(&f, &repo, &recorded, now, Some(&gen1));
    // Every file changed (the new package has a new id everywhere).
    for (a, b) in gen1.data.iter().zip(&gen2.data) {
        assert_ne!(a.href, b.href);
    }
    dnf.ok(&["makecache"]);
    let t = dnf.ok(&["upgrade", "greet"]);
    assert!(t.contains("Complete!"), "{t}");
    assert_eq!(
        std::fs::read_to_string(dnf.dir.join("root/etc/greet/greet.conf")).unwrap(),
        "2.0\n"
    );
    // The first generation's data files are still there for a client that
    // read the old repomd.xml.
    for d in &gen1.data {
        assert_eq!(server.get(&format!("yum/prod/{}", d.href)).0, 200);
    }

    // Tampered primary.xml.gz (same name, other bytes): refused.
    let tampered = repo.join("tampered/yum/prod");
    copy_tree(&repo.join("yum/prod/repodata"), &tampered.join("repodata"));
    let primary = &gen2.data[0];
    let forged = gunzip(&primary.gz).replace("The greet package.", "The evil package.");
    std::fs::write(tampered.join(&primary.href), gz(forged.as_bytes())).unwrap();
    let dnf_t = Dnf::new(
        f.tmp.path().join("dnf-t"),
        &format!("{}tampered/yum/prod/", server.url()),
        &f.key_asc,
    );
    let out = dnf_t.run(&["makecache"]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("checksum doesn't match"),
        "dnf accepted a tampered primary.xml.gz:\n{t}"
    );

    // Tampered repomd.xml (signature kept): refused.
    let forged_dir = repo.join("forged/yum/prod");
    copy_tree(
        &repo.join("yum/prod/repodata"),
        &forged_dir.join("repodata"),
    );
    let repomd = std::fs::read_to_string(forged_dir.join("repodata/repomd.xml")).unwrap();
    std::fs::write(
        forged_dir.join("repodata/repomd.xml"),
        repomd.replace("<revision>", "<revision>1"),
    )
    .unwrap();
    let dnf_f = Dnf::new(
        f.tmp.path().join("dnf-f"),
        &format!("{}forged/yum/prod/", server.url()),
        &f.key_asc,
    );
    let out = dnf_f.run(&["makecache"]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("repomd.xml GPG signature verification error"),
        "dnf accepted a forged repomd.xml:\n{t}"
    );
}

fn gz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    run(Command::new("cp").arg("-a").arg(from).arg(to));
}
