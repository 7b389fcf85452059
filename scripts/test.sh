#!/usr/bin/env bash
# The README's second command: installs everything the tests use (C libraries,
# the S3 server, the consumers), then checks formatting and lints and runs every
# test against real servers and clients. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh test

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# No dependency declared and unused (a crate named by its library name,
# e.g. `md5` for md-5, so the check can see it used).
cargo machete
# The end-to-end tests run the `pipe` binary, which cargo does not build for
# another package's tests.
cargo build --workspace --bins
cargo test --workspace
# Every fuzz target briefly over its checked-in corpus (nightly; a crash
# fails the run and leaves the input in fuzz/artifacts/). 10 s per target by
# default; PIPE_FUZZ_SECONDS=0 skips it, a larger value searches longer. The
# cost: a cold build is ~15 min of CPU (13m50s user + 1m14s sys measured),
# ~8 min on an idle 2-core runner, then 8 x 10 s. The crashes found so far
# (the rpm crate on hostile headers) are regression tests in
# stages/tests/rpm.rs; rpm_header and yum_index ran 30 s each clean after
# the fix (3.2 M and 62 k executions).
if [ "${PIPE_FUZZ_SECONDS:-10}" -gt 0 ]; then
  scripts/fuzz.sh "${PIPE_FUZZ_SECONDS:-10}"
fi
