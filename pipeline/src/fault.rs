//! Test hooks shared by every command that must survive a crash.
//!
//! `PIPE_FAULT=<point>` makes the process exit at that point, as if killed,
//! so tests can show a crash at every step leaves a state the next run
//! repairs or finishes. `PIPE_TEST_BARRIER=<dir>` makes a process wait until
//! `<dir>/go` exists, so tests can start N processes at the same moment.

/// Exits with status 137 (as a `SIGKILL` would) when `PIPE_FAULT` is `point`.
pub(crate) fn fault_point(point: &str) {
    if std::env::var("PIPE_FAULT").is_ok_and(|f| f == point) {
        tracing::warn!("PIPE_FAULT: exiting at `{point}`");
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
