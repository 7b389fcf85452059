#!/usr/bin/env bash
# Runs every cargo fuzz target of fuzz/ for a bounded time over its checked-in
# corpus (fuzz/corpus/TARGET), with the nightly toolchain.
#
#   scripts/fuzz.sh            # 20 s per target
#   scripts/fuzz.sh 300        # 5 min per target
#   scripts/fuzz.sh 20 deb_reader unpack_rpm
#
# The build: optimised, with overflow checks and debug assertions (cargo
# fuzz's default without -O), 16 codegen units (cargo fuzz defaults to one
# for the whole dependency tree), the crates no target runs (S3 SDK, TLS,
# OpenPGP, ...) unoptimised (fuzz/Cargo.toml), and no sanitizer: the code
# under test is safe Rust, a panic or an abort is what a crash is, and
# AddressSanitizer slows both the build and the run.
# PIPE_FUZZ_SANITIZER=address turns it back on. Cold, the build is ~15 min
# of CPU (measured: 13m50s user + 1m14s sys); it lives in fuzz/target.
#
# A crash, a timeout (an input taking over 30 s) or an out-of-memory (over
# 2 GiB) stops the script with libFuzzer's report; the input is kept under
# fuzz/artifacts/TARGET/. Make it a regression test next to the parser (as
# `huge_cpio_names_and_links_are_refused` in pipeline/src/deploy/unpack.rs)
# before fixing it. New inputs libFuzzer finds go to a scratch corpus, not
# the checked-in one (PIPE_FUZZ_KEEP=DIR keeps them in DIR/TARGET).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^pipe-fuzz$')
fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
flags=(--fuzz-dir fuzz --sanitizer "${PIPE_FUZZ_SANITIZER:-none}" --codegen-units 16)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
keep=${PIPE_FUZZ_KEEP:-$scratch}

# One build for every target (the first `run` would build them one by one).
started=$(date +%s)
cargo +nightly fuzz build "${flags[@]}"
echo "fuzz: built ${#targets[@]} target(s) in $(($(date +%s) - started)) s"

failed=()
for t in "${targets[@]}"; do
    mkdir -p "$keep/$t"
    log="$scratch/$t.log"
    echo "fuzz: $t for ${seconds}s"
    status=0
    cargo +nightly fuzz run "${flags[@]}" "$t" "$keep/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -max_len=1048576 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    # The last status line (`#N DONE cov: C ft: F corp: N/S ...`) and the
    # final stats: executions, coverage (edges), features, peak memory.
    done_line=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$done_line")
    echo "fuzz: $t: ${execs:-?} execs, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, peak ${rss:-?} MiB"
    if [ "$status" -ne 0 ]; then
        echo "fuzz: $t failed (exit $status):" >&2
        grep -E -A30 '^==[0-9]+==|panicked at|^SUMMARY|Test unit written|ERROR: libFuzzer' "$log" | head -n 60 >&2 || tail -n 40 "$log" >&2
        failed+=("$t")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failing input(s) in fuzz/artifacts/ for: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} target(s), ${seconds}s each, no crash"
