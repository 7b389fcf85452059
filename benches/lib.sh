# Shared by the bench scripts (sourced, after `repo` and `die` are set):
# the pipe binary to time and a fresh work directory.

# bench_pipe: $BENCH_PIPE, else a release build (respects $CARGO_TARGET_DIR).
bench_pipe() {
  if [ -n "${BENCH_PIPE:-}" ]; then
    pipe=$BENCH_PIPE # a pipe binary given (for checking a script); no build
  else
    echo "== release build of pipe"
    (cd "$repo" && cargo build --release -p pipeline --bin pipe) || die "cargo build failed"
    local target=${CARGO_TARGET_DIR:-$repo/target}
    case $target in /*) ;; *) target=$repo/$target ;; esac
    pipe=$target/release/pipe
  fi
  [ -x "$pipe" ] || die "no pipe binary at $pipe"
}

# bench_workdir NAME SUBDIR...: $BENCH_DIR (which must be empty), else a new
# mktemp -d; sets W (absolute) and makes the subdirectories.
bench_workdir() {
  local name=$1
  shift
  W=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/$name.XXXXXX")}
  mkdir -p "$W"
  W=$(cd "$W" && pwd)
  [ -z "$(ls -A "$W")" ] || die "$W is not empty: give a fresh BENCH_DIR"
  local d
  for d in "$@"; do mkdir -p "$W/$d"; done
  echo "== work dir $W"
}

# head_n N: the first N lines of stdin, reading all of it. Every script runs
# under `set -o pipefail`, where `cmd | head -1` fails the whole pipeline
# with 141 when head exits before cmd has written everything (cmd gets
# SIGPIPE: `dpkg-deb --version` does). awk drains its input, so the writer
# always finishes. Use it (and `grep ... >/dev/null`, never `grep -q`, after
# a pipe) for every pipe that stops reading early.
head_n() { awk -v n="$1" 'NR <= n'; }
