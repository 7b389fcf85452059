//! `pipe build` streams its payload: a package holding a 1 GiB file builds
//! with the `pipe` process's peak memory under 200 MiB.
//!
//! One test in its own binary: `getrusage(RUSAGE_CHILDREN)` reports the
//! largest peak RSS among the children this process has waited for, and the
//! only children here are `pipe` runs. The payload is a sparse file, so it
//! costs no disk and no time to make, while pipe still reads, hashes,
//! compresses and stores 1 GiB. zstd keeps the test quick; the xz encoder's
//! own memory bound is tested in `stages/tests/deb_memory.rs`.

use pipe_e2e::cli::Project;

const GIB: u64 = 1 << 30;
const LIMIT_MIB: i64 = 200;

#[test]
fn a_one_gib_payload_builds_in_bounded_memory() {
    let p = Project::new();
    p.write(
        "pipeline.toml",
        r#"[project]
name = "big"
version = "1.0.0"
source_date_epoch = 1700000000

[packages.big]
summary = "A large payload"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb"]
compression = "zstd"
files = [{ src = "big.bin", dst = "/usr/share/big/big.bin" }]
"#,
    );
    std::fs::File::create(p.path().join("big.bin"))
        .unwrap()
        .set_len(GIB)
        .unwrap();
    p.with_signing_key();
    let doc = p.pipe(&["--json", "build"]).expect_code(0).json();
    let deb = &doc["artifacts"][0];
    assert_eq!(deb["name"], "big_1.0.0_all.deb");

    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    let peak_mib = usage.ru_maxrss / 1024;
    eprintln!("pipe build of a 1 GiB payload: peak RSS {peak_mib} MiB");
    assert!(
        peak_mib < LIMIT_MIB,
        "peak RSS {peak_mib} MiB is over {LIMIT_MIB} MiB: the payload is not streamed"
    );

    // And what was stored is the whole payload, not a truncated one: dpkg-deb
    // lists the file at its full size.
    let out = std::process::Command::new("dpkg-deb")
        .args(["--contents", deb["path"].as_str().unwrap()])
        .output()
        .expect("dpkg-deb");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains(&GIB.to_string()), "{listing}");
}
