//! Time and peak memory of the .rpm stage for a 200 MiB incompressible
//! payload (the worst case: the `rpm` crate holds the compressed payload in
//! memory). Slow, so not part of the default run:
//!
//! ```sh
//! cargo test -p stages --release --test rpm_large -- --ignored --nocapture
//! ```

use std::fs;
use std::io::{BufWriter, Write};
use std::process::Command;
use std::time::Instant;

use stages::deb::{Relations, Scripts};
use stages::rpm::{RpmPackage, write_rpm};
use stages::tree::{Mapping, resolve};

const SIZE: usize = 200 << 20;

/// Peak resident set size of this process, from `/proc/self/status`.
fn peak_rss_mib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024
}

#[test]
#[ignore = "slow (200 MiB through xz); run with --release -- --ignored --nocapture"]
fn a_200_mib_payload() {
    let tmp = tempfile::TempDir::new().unwrap();
    let src = tmp.path().join("blob");
    {
        // xorshift: incompressible, deterministic, and never in memory whole.
        let mut w = BufWriter::new(fs::File::create(&src).unwrap());
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..SIZE / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.write_all(&x.to_le_bytes()).unwrap();
        }
        w.flush().unwrap();
    }
    let before = peak_rss_mib();
    let entries = resolve(
        tmp.path(),
        &[Mapping {
            src: "blob".into(),
            dst: "/usr/share/big/blob".into(),
            mode: None,
            config: false,
        }],
        1_700_000_000,
    )
    .unwrap();
    let pkg = RpmPackage {
        name: "big".into(),
        version: "1.0".into(),
        arch: "noarch".into(),
        summary: "Big".into(),
        description: None,
        license: None,
        packager: None,
        url: None,
        relations: Relations::default(),
        entries,
        scripts: Scripts::default(),
        mtime: 1_700_000_000,
    };
    let out = tmp.path().join(pkg.file_name());
    let start = Instant::now();
    let art = write_rpm(&pkg, None, &out).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let peak = peak_rss_mib();
    eprintln!(
        "rpm of {} MiB input: {:.1} s, file {} MiB, peak RSS {} MiB (before build {} MiB)",
        SIZE >> 20,
        secs,
        art.size >> 20,
        peak,
        before
    );
    let check = Command::new("rpm")
        .args(["--dbpath", tmp.path().join("db").to_str().unwrap(), "-K"])
        .arg(&out)
        .output()
        .expect("run rpm (install it: scripts/install-deps.sh test)");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
