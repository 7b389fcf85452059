//! Peak memory of the .rpm stage for a 1 GiB payload: the payload is
//! streamed through xz into a spool file, so memory stays bounded whatever
//! the payload size. The file is sparse (zeros) so that xz is fast enough
//! for CI; the streaming code path is the same for any contents.
//!
//! Its own test binary: peak RSS is per process, and no other test may run
//! alongside it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test: a panic is a failure, and input is the test's own"
)]

use std::fs;
use std::process::Command;
use std::time::Instant;

use stages::deb::{Relations, Scripts};
use stages::rpm::{RpmPackage, write_rpm};
use stages::tree::{Mapping, resolve};

const SIZE: u64 = 1 << 30;
const LIMIT_MIB: u64 = 100;

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

fn rpm(args: &[&str]) -> String {
    let out = Command::new("rpm")
        .args(args)
        .output()
        .expect("run rpm (install it: scripts/install-deps.sh test)");
    assert!(
        out.status.success(),
        "rpm {args:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_1_gib_payload_is_streamed_in_bounded_memory() {
    let tmp = tempfile::TempDir::new().unwrap();
    let src = tmp.path().join("blob");
    fs::File::create(&src).unwrap().set_len(SIZE).unwrap();
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
        group: None,
        relations: Relations::default(),
        entries,
        scripts: Scripts::default(),
        docs: None,
        mtime: 1_700_000_000,
    };
    let out = tmp.path().join(pkg.file_name());

    // Reset the high-water mark so only the build counts.
    fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    let before = peak_rss_mib();
    let start = Instant::now();
    let art = write_rpm(&pkg, None, &out).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let peak = peak_rss_mib();
    eprintln!(
        "rpm of {} MiB input: {secs:.1} s, file {} KiB, peak RSS {peak} MiB (before build {before} MiB)",
        SIZE >> 20,
        art.size >> 10,
    );
    assert!(
        peak < LIMIT_MIB,
        "peak RSS {peak} MiB while building, limit {LIMIT_MIB} MiB"
    );

    let db = tmp.path().join("db");
    let db = db.to_str().unwrap();
    let out = out.to_str().unwrap();
    let size = rpm(&["--dbpath", db, "-qp", "--qf", "%{SIZE}", out]);
    assert_eq!(size.trim(), SIZE.to_string());
    let list = rpm(&["--dbpath", db, "-qplv", out]);
    assert!(
        list.contains(&format!(" {SIZE} ")) && list.contains("/usr/share/big/blob"),
        "{list}"
    );
    // Digests (header SHA-256 and SHA-1, payload SHA-256, sizes) without a
    // key: the package is unsigned.
    let check = rpm(&["--dbpath", db, "-Kv", out]);
    for line in [
        "Header SHA256 digest: OK",
        "Header SHA1 digest: OK",
        "Payload SHA256 digest: OK",
    ] {
        assert!(check.contains(line), "{check}");
    }
}
