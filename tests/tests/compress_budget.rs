//! One thread and memory budget for every compressor of a build
//! (`--threads`/`PIPE_THREADS`, `--compress-memory`/`PIPE_COMPRESS_MEMORY`):
//! many package writers on many (forced) cores stay within it, and the
//! artifacts' bytes do not depend on it.
//!
//! The memory bound itself is measured in `compress_memory.rs`, alone in its
//! binary.

use std::collections::BTreeMap;

use pipe_e2e::cli::Project;
use pipe_e2e::fixture::many_packages as project;

const MIB: u64 = 1 << 20;

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
