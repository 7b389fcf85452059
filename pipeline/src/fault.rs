//! Test hooks for crash and race tests; inert unless their variable is set.
//!
//! `PIPE_FAULT=<point>` makes the process exit at that point, as if killed,
//! so tests can show a crash at every step leaves a store the next run
//! repairs. A point is a name (`before-pointer`) or `write:N`, the N-th
//! (from 1) store write of a repository regeneration. `PIPE_TEST_BARRIER=<dir>`
//! makes a promotion wait before its compare-and-swap until `<dir>/go`
//! exists, so tests can start N promotions at the same moment.

use std::sync::atomic::{AtomicU64, Ordering};

static WRITES: AtomicU64 = AtomicU64::new(0);

/// Exits with status 137 if `PIPE_FAULT` names `point`.
pub fn point(point: &str) {
    if std::env::var("PIPE_FAULT").is_ok_and(|f| f == point) {
        tracing::warn!("PIPE_FAULT: exiting at `{point}`");
        std::process::exit(137);
    }
}

/// Counts one write; exits if `PIPE_FAULT` is `write:<this count>`.
pub fn before_write(what: &str) {
    let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
    if std::env::var("PIPE_FAULT").is_ok_and(|f| f == format!("write:{n}")) {
        tracing::warn!("PIPE_FAULT: exiting before write {n} ({what})");
        std::process::exit(137);
    }
}

/// Waits for `<PIPE_TEST_BARRIER>/go`, after announcing this process there.
pub fn barrier() {
    let Ok(dir) = std::env::var("PIPE_TEST_BARRIER") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let _ = std::fs::write(dir.join(std::process::id().to_string()), b"");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dir.join("go").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
