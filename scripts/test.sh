#!/usr/bin/env bash
# The README's second command: installs everything the tests use (C libraries,
# the S3 server, the consumers), then checks formatting and lints and runs every
# test against real servers and clients. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh test

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests run the `pipe` binary, which cargo does not build for
# another package's tests.
cargo build --workspace --bins
cargo test --workspace
# Every fuzz target for 10 s over its checked-in corpus (nightly; a crash
# fails the run and leaves the input in fuzz/artifacts/). Measured on 2
# cores: a cold instrumented build is ~15 min of CPU (user+sys), so ~8-10
# min on an idle 2-core runner, a warm one (only pipe's crates changed)
# a few; the runs 8 x 10 s. PIPE_FUZZ_SECONDS=0 skips it, a larger value
# fuzzes longer.
fuzz_seconds=${PIPE_FUZZ_SECONDS:-10}
if [ "$fuzz_seconds" -gt 0 ]; then
  scripts/fuzz.sh "$fuzz_seconds"
fi
