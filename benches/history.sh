#!/usr/bin/env bash
# History benchmark: `pipe promote`, `pipe deploy` and `pipe history` of an
# environment whose history is long (default 2,000 entries), local store:
#   (h1) promote with nothing verified before on this machine
#        (`.pipe/history` removed): every entry is read and checked;
#   (h2) promote after 5 new entries, the rest verified before;
#   (h3) deploy into a new target (empty cache): every entry;
#   (h4) deploy into the same target after 5 new entries;
#   (h5) `pipe history dev`.
# The long history is written by `long-history` (tests/src/bin), as N
# promotions alternating between two published builds would (signed
# entries, without regenerating views).
#
#   benches/history.sh
#
# Environment:
#   BENCH_DIR       work directory (default: a new mktemp -d); must be empty
#   BENCH_KEEP=1    keep the work directory
#   BENCH_N         history length (default 2000)
#   BENCH_RUNS      timed runs per figure, median quoted (default 3)
#   BENCH_PIPE      use this pipe binary instead of a release build
#   BENCH_BEFORE    another pipe binary (e.g. of main) timed the same way
#   BENCH_LONG_HISTORY  the long-history binary (default: built with pipe)
#   CARGO_TARGET_DIR  respected for the release build
#
# Each figure is a whole process timed from outside (date +%s%N); a promote
# run moves the pointer (the builds alternate), so each run is a promotion
# that signs and regenerates the apt suite, like an operator's.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
die() { echo "bench: error: $*" >&2; exit 1; }
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

n=${BENCH_N:-2000}
runs=${BENCH_RUNS:-3}
bench_pipe
long=${BENCH_LONG_HISTORY:-}
if [ -z "$long" ]; then
  profile=release
  case $pipe in */debug/pipe) profile=dev ;; esac
  (cd "$repo" && cargo build --profile "$profile" -p pipe-e2e --bin long-history) || die "cargo build failed"
  long=$(dirname "$pipe")/long-history
fi
[ -x "$long" ] || die "no long-history binary at $long"
bench_workdir pipe-history-bench
[ "${BENCH_KEEP:-}" = 1 ] || trap 'rm -rf "$W"' EXIT

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v ns="$1" 'BEGIN {printf "%.0f", ns/1e6}'; }

# case LABEL BIN: one project, one history, every figure.
run_case() {
  local label=$1 bin=$2 p="$W/$1"
  mkdir -p "$p"
  cat >"$p/pipeline.toml" <<'TOML'
[project]
name = "demo"
version = "1.0.0"
source_date_epoch = 1700000000

[environments.dev]

[packages.demo]
summary = "Demo"
arch = "all"
maintainer = "Ops <ops@example.com>"
formats = ["deb"]
files = [{ src = "demo.txt", dst = "/usr/share/demo/demo.txt" }]
TOML
  local pipe_p=("$bin" -q -C "$p")
  "${pipe_p[@]}" keys generate --uid "Bench <bench@example.com>" --algo ed25519 >/dev/null
  "${pipe_p[@]}" keys export --out "$p/ring.asc" >/dev/null
  echo one >"$p/demo.txt"
  local b1 b2
  b1=$("$bin" --json -C "$p" build | python3 -c 'import json,sys; print(json.load(sys.stdin)["build"])')
  "${pipe_p[@]}" publish "$b1" >/dev/null
  "${pipe_p[@]}" promote "$b1" --to dev >/dev/null
  sed -i 's/^version = .*/version = "1.0.1"/' "$p/pipeline.toml"
  echo two >"$p/demo.txt"
  b2=$("$bin" --json -C "$p" build | python3 -c 'import json,sys; print(json.load(sys.stdin)["build"])')
  "${pipe_p[@]}" publish "$b2" >/dev/null
  (cd "$p" && "$long" .pipe/store keys/release.key dev "$n" "$b2" "$b1" >/dev/null)

  local t h1=() h2=() h3=() h4=() h5=() i next=$b2 other=$b1
  for ((i = 0; i < runs; i++)); do
    # h1: nothing remembered.
    rm -rf "$p/.pipe/history"
    t=$(now); "${pipe_p[@]}" promote "$next" --to dev >/dev/null; h1+=($(($(now) - t)))
    # Back to where the history alternates, then 5 entries more.
    (cd "$p" && "$long" .pipe/store keys/release.key dev 5 "$next" "$other" >/dev/null)
    t=$(now); "${pipe_p[@]}" promote "$other" --to dev >/dev/null; h2+=($(($(now) - t)))
    local tmp=$next; next=$other; other=$tmp
    # h3 / h4: a new target, then 5 entries more.
    local target="$p/target-$i"
    t=$(now); "${pipe_p[@]}" deploy --env dev --target "$target" --keyring "$p/ring.asc" >/dev/null; h3+=($(($(now) - t)))
    (cd "$p" && "$long" .pipe/store keys/release.key dev 5 "$other" "$next" >/dev/null)
    t=$(now); "${pipe_p[@]}" deploy --env dev --target "$target" --keyring "$p/ring.asc" >/dev/null; h4+=($(($(now) - t)))
    t=$(now); "${pipe_p[@]}" history dev >/dev/null; h5+=($(($(now) - t)))
  done
  local f
  printf '%-8s' "$label"
  for f in h1 h2 h3 h4 h5; do
    local -n arr=$f
    printf ' %s=%sms' "$f" "$(ms "$(printf '%s\n' "${arr[@]}" | median)")"
  done
  printf '  (history of %s entries, %s runs, median)\n' "$n" "$runs"
}

echo "== pipe $("$pipe" --version | awk '{print $2}') at $pipe"
run_case after "$pipe"
if [ -n "${BENCH_BEFORE:-}" ]; then
  [ -x "$BENCH_BEFORE" ] || die "no pipe binary at $BENCH_BEFORE"
  run_case before "$BENCH_BEFORE"
fi
