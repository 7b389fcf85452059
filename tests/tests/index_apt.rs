//! apt-get against a suite rendered by `repo_index::apt`, served on
//! 127.0.0.1: signed update, download with verified hashes, a second
//! generation seen by the next update with the first one's by-hash files
//! still served, and tampered indices or `InRelease` refused.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use pipe_e2e::consumers::*;
use repo_index::apt::{self, DebPackage, Entry, RenderedSuite, SuiteConfig};

/// Builds `NAME_VERSION_ARCH.deb` with `dpkg-deb --build` into `repo/pool`
/// and records it as the pipeline would: control text from `dpkg-deb -f`,
/// size and digests of the file.
fn build_deb(work: &Path, repo: &Path, name: &str, version: &str, arch: &str) -> DebPackage {
    let tree = work.join(format!("tree-{name}-{version}"));
    write(
        &tree.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: Pipe Test <test@example.invalid>\nSection: misc\nPriority: optional\nDescription: test package {name}\n A package built by the repo-index consumer test.\n"
        ),
    );
    write(
        &tree.join(format!("usr/share/{name}/VERSION")),
        format!("{version}\n"),
    );
    let filename = format!(
        "pool/main/{}/{name}/{name}_{version}_{arch}.deb",
        &name[..1]
    );
    let deb = repo.join(&filename);
    std::fs::create_dir_all(deb.parent().unwrap()).unwrap();
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&tree)
        .arg(&deb));
    let control =
        String::from_utf8(run(Command::new("dpkg-deb").arg("-f").arg(&deb)).stdout).unwrap();
    let bytes = std::fs::read(&deb).unwrap();
    DebPackage {
        control,
        filename,
        size: bytes.len() as u64,
        md5: md5_hex(&bytes),
        sha1: None,
        sha256: sha256_hex(&bytes),
    }
}

fn render(
    stanzas: &[apt::Stanza],
    date: SystemTime,
    previous: Option<&RenderedSuite>,
) -> RenderedSuite {
    let entries: Vec<Entry> = stanzas
        .iter()
        .map(|s| Entry {
            component: "main",
            stanza: s,
        })
        .collect();
    let mut cfg = SuiteConfig::new("prod", date);
    cfg.architectures = vec!["amd64".into(), "arm64".into()];
    cfg.components = vec!["main".into()];
    apt::render_suite(&cfg, &entries, previous).unwrap()
}

#[test]
fn apt_get_reads_signed_suite_sees_new_generation_and_refuses_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let work = mkdir(tmp.path().join("work"));
    let repo = mkdir(tmp.path().join("repo"));
    let key = signing_key();
    let keyring = tmp.path().join("keyring.gpg");
    std::fs::write(
        &keyring,
        key.public_keyring()
            .to_bytes(keys::Encoding::Binary)
            .unwrap(),
    )
    .unwrap();

    // Generation 1: hello 1.0 (all) and tool 0.1 (amd64).
    let hello1 = build_deb(&work, &repo, "hello", "1.0", "all");
    let tool = build_deb(&work, &repo, "tool", "0.1", "amd64");
    let mut stanzas = vec![
        apt::render_stanza(&hello1).unwrap(),
        apt::render_stanza(&tool).unwrap(),
    ];
    let now = SystemTime::now();
    let gen1 = render(&stanzas, now - Duration::from_secs(120), None);
    let plan1 = gen1.write_plan(&gen1.sign(&key, now - Duration::from_secs(120)).unwrap());
    plan1.write_to_dir(&repo).unwrap();
    // Plan order: by-hash, plain indices, Release, Release.gpg, InRelease last.
    let paths: Vec<&str> = plan1.files.iter().map(|f| f.path.as_str()).collect();
    assert!(
        paths[..6].iter().all(|p| p.contains("/by-hash/SHA256/")),
        "{paths:?}"
    );
    assert_eq!(
        &paths[paths.len() - 3..],
        [
            "dists/prod/Release",
            "dists/prod/Release.gpg",
            "dists/prod/InRelease"
        ]
    );

    let server = HttpServer::start(&repo);
    let apt = Apt::new(tmp.path().join("apt"), &server.url(), "prod", &keyring);
    let out = apt.update();
    let t = text(&out);
    assert!(
        out.status.success() && !t.contains("W:") && !t.contains("E:"),
        "apt-get update:\n{t}"
    );
    // apt fetched the indices by hash (Acquire-By-Hash), not by name.
    let lists = std::fs::read_dir(apt.dir.join("state/lists"))
        .unwrap()
        .count();
    assert!(lists >= 3, "lists: {lists}");
    // Architecture all is listed for amd64.
    assert_eq!(apt.download("hello"), "hello_1.0_all.deb");
    assert_eq!(apt.download("tool"), "tool_0.1_amd64.deb");

    // Generation 2: hello 2.0 replaces 1.0. The next update sees it.
    let hello2 = build_deb(&work, &repo, "hello", "2.0", "all");
    stanzas[0] = apt::render_stanza(&hello2).unwrap();
    let gen2 = render(&stanzas, now - Duration::from_secs(60), Some(&gen1));
    let plan2 = gen2.write_plan(&gen2.sign(&key, now - Duration::from_secs(60)).unwrap());
    // apt revalidates InRelease with If-Modified-Since, and http.server
    // compares whole seconds: a generation written in the same second as
    // the previous one would be answered 304 Not Modified.
    std::thread::sleep(Duration::from_millis(1100));
    plan2.write_to_dir(&repo).unwrap();
    let out = apt.update();
    let t = text(&out);
    assert!(
        out.status.success() && !t.contains("W:") && !t.contains("E:"),
        "apt-get update:\n{t}"
    );
    assert_eq!(apt.download("hello"), "hello_2.0_all.deb");
    // A client holding generation 1's InRelease can still fetch what it names.
    for f in gen1.by_hash() {
        let (status, body) = server.get(&f.path);
        assert_eq!(status, 200, "{}", f.path);
        assert_eq!(&body[..], &f.bytes[..], "{}", f.path);
    }

    // Tampering: a Packages that lists a different hello (and its by-hash
    // copies, so the file apt fetches is the tampered one) is refused by a
    // fresh client, since InRelease names other digests.
    let tampered = repo.join("tampered");
    copy_tree(&repo.join("dists"), &tampered.join("dists"));
    for set in &gen2.indices {
        let plain = String::from_utf8(set.plain.to_vec())
            .unwrap()
            .replace("Version: 2.0", "Version: 9.9");
        let dir = tampered.join("dists/prod").join(&set.dir);
        let forged = [
            ("Packages", plain.clone().into_bytes()),
            ("Packages.gz", gz(plain.as_bytes())),
            ("Packages.xz", xz(plain.as_bytes())),
        ];
        for ((name, bytes), (_, real)) in forged.iter().zip(set_files(set)) {
            std::fs::write(dir.join(name), bytes).unwrap();
            std::fs::write(dir.join("by-hash/SHA256").join(sha256_hex(real)), bytes).unwrap();
        }
    }
    let apt_t = Apt::new(
        tmp.path().join("apt-tampered"),
        &format!("{}tampered/", server.url()),
        "prod",
        &keyring,
    );
    let out = apt_t.update();
    let t = text(&out);
    // apt checks size, then SHA256: either refusal is the right one.
    assert!(
        !out.status.success()
            && t.contains("E: Failed to fetch")
            && (t.contains("Hash Sum mismatch") || t.contains("unexpected size")),
        "apt-get update on tampered Packages:\n{t}"
    );
    let policy = text(&run(apt_t.cmd("apt-cache").args(["policy", "hello"])));
    assert!(
        !policy.contains("9.9"),
        "the forged version is known:\n{policy}"
    );

    // A forged InRelease (Release changed, signature kept) is refused too.
    let forged = repo.join("forged");
    copy_tree(&repo.join("dists"), &forged.join("dists"));
    let inrel = std::fs::read_to_string(forged.join("dists/prod/InRelease")).unwrap();
    std::fs::write(
        forged.join("dists/prod/InRelease"),
        inrel.replace("Label: pipe", "Label: evil"),
    )
    .unwrap();
    let apt_f = Apt::new(
        tmp.path().join("apt-forged"),
        &format!("{}forged/", server.url()),
        "prod",
        &keyring,
    );
    let out = apt_f.update();
    let t = text(&out);
    assert!(
        !out.status.success() && (t.contains("BADSIG") || t.contains("signature")),
        "apt-get update on forged InRelease:\n{t}"
    );
}

fn set_files(set: &apt::IndexSet) -> [(&str, &[u8]); 3] {
    [
        ("Packages", &set.plain),
        ("Packages.gz", &set.gz),
        ("Packages.xz", &set.xz),
    ]
}

fn gz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    run(Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .current_dir("/"));
}
