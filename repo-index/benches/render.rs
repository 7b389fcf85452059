//! Rendering cost at 10,000 packages: `cargo bench -p repo-index --bench
//! render` prints the figures (the target: a 10,000-package suite in
//! well under a second). A benchmark, so nothing fails on a number.
#![allow(
    clippy::unwrap_used,
    reason = "a benchmark harness: a panic is a failed run, not an input error"
)]

use std::time::{Duration, Instant, SystemTime};

use repo_index::apt::{self, DebPackage, Entry, SuiteConfig};
use repo_index::yum::{self, Dependency, FileKind, RepoConfig, RpmFile, RpmPackage};

const N: usize = 10_000;

fn deb(i: usize) -> DebPackage {
    let arch = if i.is_multiple_of(3) { "all" } else { "amd64" };
    DebPackage {
        control: format!(
            "Package: pkg{i}\nVersion: 1.{i}.0-1\nArchitecture: {arch}\nMaintainer: Pipe Bench <bench@example.invalid>\nInstalled-Size: {}\nDepends: libc6 (>= 2.36), pkg{} (= 1.0)\nSection: misc\nPriority: optional\nDescription: benchmark package number {i}\n A longer description of package {i}, so that the stanza has the size\n of a real one: a couple of lines of text that compress well.\n",
            i % 977,
            i / 2
        ),
        filename: format!("pool/main/p/pkg{i}/pkg{i}_1.{i}.0-1_{arch}.deb"),
        size: 1000 + i as u64,
        md5: format!("{:032x}", i * 7919),
        sha1: None,
        sha256: format!("{:064x}", i * 104_729),
    }
}

fn rpm(i: usize) -> RpmPackage {
    RpmPackage {
        name: format!("pkg{i}"),
        version: format!("1.{i}.0"),
        release: "1".into(),
        arch: "x86_64".into(),
        summary: format!("benchmark package {i}"),
        description: format!("A longer description of package {i}.\nSecond line."),
        license: "MIT".into(),
        buildhost: "bench".into(),
        sourcerpm: format!("pkg{i}-1.{i}.0-1.src.rpm"),
        build_time: 1_700_000_000,
        file_time: 1_700_000_000,
        package_size: 10_000,
        installed_size: 30_000,
        archive_size: 31_000,
        header_start: 4504,
        header_end: 7073,
        sha256: format!("{:064x}", i * 104_729),
        location_href: format!("pool/pkg{i}-1.{i}.0-1.x86_64.rpm"),
        provides: vec![Dependency::new(format!("pkg{i}"), 8, format!("1.{i}.0-1"))],
        requires: vec![
            Dependency::new("libc.so.6()(64bit)", 0, ""),
            Dependency::new("bash", 12, "4.0"),
        ],
        files: (0..8)
            .map(|f| RpmFile {
                path: format!("/usr/share/pkg{i}/file{f}"),
                kind: FileKind::File,
            })
            .chain([RpmFile {
                path: format!("/usr/bin/pkg{i}"),
                kind: FileKind::File,
            }])
            .collect(),
        ..Default::default()
    }
}

fn time<T>(label: &str, f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let out = f();
    let d = t.elapsed();
    eprintln!("{label:<58} {:>8.1} ms", d.as_secs_f64() * 1e3);
    (out, d)
}

fn main() {
    let key = {
        let mut o = keys::GenerateOptions::new("bench <b@example.invalid>");
        o.algorithm = keys::Algorithm::Rsa3072;
        keys::SecretKey::generate(&o).unwrap()
    };
    let debs: Vec<DebPackage> = (0..N).map(deb).collect();
    let mut cfg = SuiteConfig::new("prod", SystemTime::now());
    cfg.architectures = vec!["amd64".into(), "arm64".into()];

    let (stanzas, t_stanzas) = time("apt: 10,000 stanzas (render_stanza)", || {
        debs.iter()
            .map(|d| apt::render_stanza(d).unwrap())
            .collect::<Vec<_>>()
    });
    let entries: Vec<Entry> = stanzas
        .iter()
        .map(|s| Entry {
            component: "main",
            stanza: s,
        })
        .collect();
    let (suite, t_suite) = time(
        "apt: suite, cold (2 archs, Packages/.gz/.xz, Release)",
        || apt::render_suite(&cfg, &entries, None).unwrap(),
    );
    let (signed, t_sign) = time("apt: InRelease + Release.gpg (RSA 3072)", || {
        suite.sign(&key, cfg.date).unwrap()
    });
    let (plan, _) = time("apt: write plan", || suite.write_plan(&signed));
    let bytes: usize = plan.files.iter().map(|f| f.bytes.len()).sum();
    eprintln!(
        "apt: {} files, {:.1} MiB; amd64 Packages {:.1} MiB",
        plan.files.len(),
        bytes as f64 / 1048576.0,
        suite.indices.first().map_or(0, |i| i.plain.len()) as f64 / 1048576.0
    );

    // One more package, every other stanza from the cache: only one index
    // changes (amd64), arm64's compressed files are reused.
    let extra = apt::render_stanza(&deb(N)).unwrap();
    let mut more = entries.clone();
    more.push(Entry {
        component: "main",
        stanza: &extra,
    });
    let (_, t_incr) = time("apt: suite, one package added, previous reused", || {
        apt::render_suite(&cfg, &more, Some(&suite)).unwrap()
    });

    let rpms: Vec<RpmPackage> = (0..N).map(rpm).collect();
    let (xml, _) = time("yum: 10,000 packages (render_package)", || {
        rpms.iter()
            .map(|p| yum::render_package(p).unwrap())
            .collect::<Vec<_>>()
    });
    let refs: Vec<_> = xml.iter().collect();
    let rcfg = RepoConfig {
        dir: "yum/prod".into(),
        timestamp: SystemTime::now(),
    };
    let (repo, _) = time(
        "yum: repo, cold (primary/filelists/other.xml.gz, repomd)",
        || yum::render_repo(&rcfg, &refs, None).unwrap(),
    );
    time("yum: repomd.xml.asc", || {
        repo.sign(&key, rcfg.timestamp).unwrap()
    });

    let total = t_stanzas + t_suite + t_sign;
    eprintln!(
        "apt total (stanzas + suite + signatures): {:.1} ms; one added: {:.1} ms",
        total.as_secs_f64() * 1e3,
        t_incr.as_secs_f64() * 1e3
    );
}
