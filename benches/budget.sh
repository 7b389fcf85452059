#!/usr/bin/env bash
# Compressor budget (issue 11): peak RSS, CPU and wall time of cold `pipe
# build`s at 2 threads and at a forced 16 (`PIPE_THREADS`, what a 16-core
# machine gets by default), for
#   small: 500 small packages, deb + rpm (benches/gen.py small/toml)
#   big:   one package with a 1 GiB payload, .deb, default xz (a sparse
#          file: the xz workers hold their full memory, the CPU stays short)
#
#   BENCH_PIPE=target/release/pipe benches/budget.sh
#
# Environment: BENCH_PIPE (binary; default: cargo build --release),
# BENCH_DIR (work dir), BENCH_THREADS (default "2 16"), BENCH_CASES
# (default "small big"), BENCH_N (runs per case and thread count, default 1),
# BENCH_SMALL_N (default 500), BENCH_BIG_MIB (default 1024),
# PIPE_COMPRESS_MEMORY (passed through).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
die() { echo "bench: error: $*" >&2; exit 1; }
. "$here/lib.sh"
bench_pipe
bench_workdir pipe-budget in runs logs

small_n=${BENCH_SMALL_N:-500}
big_mib=${BENCH_BIG_MIB:-1024}
export SOURCE_DATE_EPOCH=1700000000 LC_ALL=C

(cd "$W" && "$pipe" -q keys generate --uid "Bench <b@example.com>" --out keys/release.key >/dev/null)
export PIPE_SIGNING_KEY=$W/keys/release.key

prep_small() {
  mkdir -p "$W/in/small"
  python3 "$here/gen.py" small "$W/in/small" "$small_n"
  python3 "$here/gen.py" toml "$W/in/small/pipeline.toml" "$small_n"
}

prep_big() {
  mkdir -p "$W/in/big"
  truncate -s "${big_mib}M" "$W/in/big/big.bin"
  cat >"$W/in/big/pipeline.toml" <<EOF
[project]
name = "big"
version = "1.0.0"
source_date_epoch = 1700000000

[packages.big]
summary = "big"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb"]
files = [{ src = "big.bin", dst = "/usr/share/big/big.bin" }]
EOF
}

for c in ${BENCH_CASES:-small big}; do "prep_$c"; done
echo "case threads budget wall_s cpu_s peak_mib" | tee "$W/summary.txt"
for c in ${BENCH_CASES:-small big}; do
  for t in ${BENCH_THREADS:-2 16}; do
    for ((i = 0; i < ${BENCH_N:-1}; i++)); do
      d=$W/runs/$c-$t-$i
      cp -al "$W/in/$c" "$d"
      s=$(date +%s%N)
      PIPE_THREADS=$t /usr/bin/time -f '%U %S %M' -o "$W/.time" "$pipe" -q -C "$d" build >"$W/logs/$c-$t-$i.log" 2>&1 ||
        { cat "$W/logs/$c-$t-$i.log"; exit 1; }
      e=$(date +%s%N)
      read -r u sy m <"$W/.time"
      echo "$c $t ${PIPE_COMPRESS_MEMORY:-default} $(awk -v d=$((e - s)) -v u="$u" -v sy="$sy" -v m="$m" \
        'BEGIN { printf "%.2f %.2f %.0f", d / 1e9, u + sy, m / 1024 }')" | tee -a "$W/summary.txt"
      [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$d"
    done
  done
done
