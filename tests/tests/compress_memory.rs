//! The compressors' memory budget holds on many (forced) cores.
//!
//! Alone in its binary: `getrusage(RUSAGE_CHILDREN)` reports the largest peak
//! RSS among all the children this process has ever waited for, so any other
//! test here (running in parallel, or before) would count its own `pipe`
//! runs against this one's budget.

use pipe_e2e::fixture::many_packages;

const MIB: u64 = 1 << 20;

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
    let mut p = many_packages(6, |p, name| {
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
