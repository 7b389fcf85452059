//! A 1 GiB payload is streamed: peak resident memory stays under 200 MiB
//! with xz and with zstd, on every core.
//!
//! One test in its own binary, so `VmHWM` (peak RSS) in `/proc/self/status`
//! measures this build and nothing else; it is reset between the two
//! compressions by writing `5` to `/proc/self/clear_refs`. The payload is a
//! sparse file (zeros): reading it costs no disk, and the compressor still
//! sees 1 GiB of input.
//!
//! Slow in an unoptimised build (the bundled liblzma and md-5 are compiled
//! at the dev profile's opt-level); figures in the report come from
//! `cargo test --release -p stages --test deb_memory -- --nocapture`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure, and input is the test's own"
)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use stages::deb::{Compression, DebOptions, DebPackage, write_deb};
use stages::tree::{Mapping, resolve};

const GIB: u64 = 1 << 30;
const LIMIT_MIB: u64 = 200;

fn peak_rss_mib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    line.trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .unwrap()
        / 1024
}

fn reset_peak() {
    fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM through /proc/self/clear_refs");
}

#[test]
fn one_gib_payload_streams_in_bounded_memory() {
    let root = tempfile::tempdir().unwrap();
    let big = root.path().join("big.bin");
    fs::File::create(&big).unwrap().set_len(GIB).unwrap();
    let entries = resolve(
        root.path(),
        &[Mapping {
            src: "big.bin".into(),
            dst: "/usr/share/big/big.bin".into(),
            mode: None,
            config: false,
        }],
        1_700_000_000,
    )
    .unwrap();
    let mut pkg = DebPackage::new("big", "1.0", "all", "Ops <ops@example.com>", "big", 0);
    pkg.entries = entries;
    let cores = std::thread::available_parallelism().unwrap();
    let out = tempfile::tempdir().unwrap();
    for c in [Compression::Xz, Compression::Zstd] {
        let path = out.path().join(format!("big-{}.deb", c.name()));
        reset_peak();
        let start = Instant::now();
        let art = write_deb(
            &pkg,
            &DebOptions {
                compression: c,
                ..DebOptions::default()
            },
            &path,
        )
        .unwrap();
        let took = start.elapsed();
        let peak = peak_rss_mib();
        eprintln!(
            "{}: 1 GiB payload, {cores} cores: {took:.1?}, peak RSS {peak} MiB, .deb {} bytes",
            c.name(),
            art.size
        );
        assert!(peak < LIMIT_MIB, "{c:?}: peak RSS {peak} MiB");
        check_size(&path);
        fs::remove_file(&path).unwrap();
    }
}

fn check_size(deb: &Path) {
    let out = Command::new("dpkg-deb")
        .args(["--field"])
        .arg(deb)
        .arg("Installed-Size")
        .output()
        .unwrap_or_else(|e| panic!("`dpkg-deb` cannot be run ({e}); install dpkg"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        (GIB / 1024 + 3).to_string()
    );
}
