#!/usr/bin/env bash
# Runs every cargo fuzz target of fuzz/ for a bounded time over its checked-in
# corpus (fuzz/corpus/TARGET), with the nightly toolchain.
#
#   scripts/fuzz.sh            # 20 s per target
#   scripts/fuzz.sh 300        # 5 min per target
#   scripts/fuzz.sh 20 deb_reader unpack_rpm
#
# A crash stops the script with libFuzzer's report and the input under
# fuzz/artifacts/TARGET/; make it a regression test next to the parser (as
# `huge_cpio_names_and_links_are_refused` in pipeline/src/deploy/unpack.rs)
# before fixing it. New inputs libFuzzer finds go to a scratch corpus, not
# the checked-in one.
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
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# One build for every target (the first `run` would build them one by one).
cargo +nightly fuzz build --fuzz-dir fuzz -O
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    echo "fuzz: $t for ${seconds}s"
    cargo +nightly fuzz run --fuzz-dir fuzz -O "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=1048576 -print_final_stats=1 2>&1 |
        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==|SUMMARY|.*Test unit written)' || true
    if ls fuzz/artifacts/"$t"/crash-* fuzz/artifacts/"$t"/oom-* fuzz/artifacts/"$t"/timeout-* >/dev/null 2>&1; then
        echo "fuzz: $t found a failing input:" >&2
        ls fuzz/artifacts/"$t"/ >&2
        exit 1
    fi
done
echo "fuzz: ${#targets[@]} target(s), ${seconds}s each, no crash"
