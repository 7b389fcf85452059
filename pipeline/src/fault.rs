//! Test hooks shared by every command that must survive a crash; inert
//! unless their variable is set.
//!
//! `PIPE_FAULT=<point>` makes the process exit at that point, as if killed,
//! so tests can show a crash at every step leaves a state the next run
//! repairs or finishes. A point is a name (`before-pointer`) or `write:N`,
//! the N-th (from 1) store write of a repository regeneration.
//! `PIPE_TEST_BARRIER=<dir>` makes a process wait until `<dir>/go` exists,
//! so tests can start N processes at the same moment. `PIPE_TEST_HOLD=
//! <point>=<dir>` stops one process at a named point until the test lets it
//! go ([`hold`]).

use std::sync::atomic::{AtomicU64, Ordering};

static WRITES: AtomicU64 = AtomicU64::new(0);

/// Exits with status 137 (as a `SIGKILL` would) when `PIPE_FAULT` is `point`.
pub(crate) fn point(point: &str) {
    if std::env::var("PIPE_FAULT").is_ok_and(|f| f == point) {
        tracing::warn!("PIPE_FAULT: exiting at `{point}`");
        std::process::exit(137);
    }
}

/// Counts one write; exits if `PIPE_FAULT` is `write:<this count>`.
pub(crate) fn before_write(what: &str) {
    let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
    if std::env::var("PIPE_FAULT").is_ok_and(|f| f == format!("write:{n}")) {
        tracing::warn!("PIPE_FAULT: exiting before write {n} ({what})");
        std::process::exit(137);
    }
}

/// Announces this process in `$PIPE_TEST_BARRIER` (a file named by its pid)
/// and waits, at most a minute, for `go` to appear there.
pub(crate) fn barrier() {
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

/// When `PIPE_TEST_HOLD` is `<point>=<dir>`, announces reaching `point` (the
/// file `<dir>/<point>.reached`, a `:` in the point written `-`) and waits,
/// at most a minute, for `<dir>/<point>.go`, so a test can run another
/// process in between.
pub(crate) fn hold(point: &str) {
    let Ok(spec) = std::env::var("PIPE_TEST_HOLD") else {
        return;
    };
    let Some(dir) = spec.strip_prefix(point).and_then(|r| r.strip_prefix('=')) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let name = point.replace(':', "-");
    let _ = std::fs::write(dir.join(format!("{name}.reached")), b"");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dir.join(format!("{name}.go")).exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
