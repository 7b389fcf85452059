//! One thread and memory budget for every compressor of a build
//! (`--threads`/`PIPE_THREADS`, `--compress-memory`/`PIPE_COMPRESS_MEMORY`):
//! many package writers on many (forced) cores stay within it, and the
//! artifacts' bytes do not depend on it.
//!
//! Its own binary: `getrusage(RUSAGE_CHILDREN)` reports the largest peak RSS
//! among the children this process has waited for, and the only children
//! here are `pipe` runs, all under a budget.

use std::collections::BTreeMap;

use pipe_e2e::cli::Project;

const MIB: u64 = 1 << 20;

/// A project of `n` packages, each shipping `payload` (a sparse file of
/// `size` bytes, or the given text) as deb and rpm.
fn project(n: usize, payload: impl Fn(&Project, &str)) -> Project {
    let p = Project::new();
    let mut toml = String::from(
        r#"[project]
name = "many"
version = "1.0.0"
source_date_epoch = 1700000000
"#,
    );
    for i in 0..n {
        let name = format!("p{i}");
        payload(&p, &format!("{name}.bin"));
        toml.push_str(&format!(
            r#"
[packages.{name}]
summary = "payload {i}"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb", "rpm"]
files = [{{ src = "{name}.bin", dst = "/usr/share/{name}/{name}.bin" }}]
"#
        ));
    }
    p.write("pipeline.toml", &toml);
    p.with_signing_key();
    p
}

/// name -> sha256 of every artifact of a `--json` build.
fn digests(doc: &serde_json::Value) -> BTreeMap<String, String> {
    doc["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_string(),
                a["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Text that compresses, but not to nothing, different per seed.
fn text(seed: u64, len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut x = seed.wrapping_add(7);
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push_str(&format!("line {} value {:x}\n", out.len(), x >> 40));
    }
    out
}

fn peak_rss_mib() -> i64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    usage.ru_maxrss / 1024
}

/// 6 packages x (deb + rpm), each payload 48 MiB (six xz blocks), on 16
/// forced cores: without a shared budget that is 12 writers with up to 6
/// xz workers each (~70 MiB a worker, several GiB); with a 256 MiB budget
/// the whole `pipe` process stays under 256 MiB plus its own (~110 MiB
/// measured in a debug build: 367 MiB in all, against 2,321 MiB before
/// the budget).
#[test]
fn sixteen_threads_stay_within_the_compressor_memory_budget() {
    let mut p = project(6, |p, name| {
        std::fs::File::create(p.path().join(name))
            .unwrap()
            .set_len(48 * MIB)
            .unwrap();
    });
    p.env("PIPE_THREADS", "16");
    p.env("PIPE_COMPRESS_MEMORY", "256M");
    let doc = p.pipe(&["--json", "build"]).expect_code(0).json();
    assert_eq!(doc["artifacts"].as_array().unwrap().len(), 12);
    let peak = peak_rss_mib();
    eprintln!("12 writers, 16 threads, budget 256 MiB: peak RSS {peak} MiB");
    assert!(
        peak < 256 + 200,
        "peak RSS {peak} MiB: the compressors went over their 256 MiB budget"
    );
}

/// The same project built with one thread and with sixteen threads and a
/// budget too small for even one xz worker gives byte-identical packages.
#[test]
fn artifacts_do_not_depend_on_threads_or_budget() {
    // 10 MiB payloads: two xz blocks each, so more threads could split
    // them differently if the layout depended on the thread count.
    let payload = |p: &Project, name: &str| {
        let seed = name.len() as u64 + name.as_bytes()[1] as u64;
        p.write(name, &text(seed, 10 * MIB as usize));
    };
    let one = project(3, payload);
    let many = project(3, payload);
    // Same signing key on both sides: rpm headers are signed.
    std::fs::copy(
        one.path().join("keys/release.key"),
        many.path().join("keys/release.key"),
    )
    .unwrap();
    let a = one
        .pipe(&["--json", "build", "--threads", "1"])
        .expect_code(0)
        .json();
    let b = many
        .pipe(&[
            "--json",
            "build",
            "--threads",
            "16",
            "--compress-memory",
            "1M",
        ])
        .expect_code(0)
        .json();
    let (a, b) = (digests(&a), digests(&b));
    assert_eq!(a.len(), 6);
    assert_eq!(a, b, "artifacts differ between 1 and 16 compressor threads");
}

#[test]
fn a_bad_budget_is_a_usage_error() {
    let p = project(1, |p, name| {
        p.write(name, "x\n");
    });
    for args in [
        &["build", "--compress-memory", "12Q"][..],
        &["build", "--compress-memory", "0"][..],
        &["build", "--threads", "0"][..],
    ] {
        let run = p.pipe(args);
        run.expect_code(2);
        assert!(
            run.stderr.contains("--compress-memory") || run.stderr.contains("--threads"),
            "{}",
            run.stderr
        );
    }
    let mut p = p;
    p.env("PIPE_COMPRESS_MEMORY", "lots");
    let run = p.pipe(&["build"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("`lots` is not a size"),
        "{}",
        run.stderr
    );
}
