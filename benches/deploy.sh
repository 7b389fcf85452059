#!/usr/bin/env bash
# Deploy benchmark, three figures from one run:
#   (d1) cold `pipe deploy` of a build whose packages hold 200 MiB in 5,000
#        files, against `tar -x` of the same payload (the packages' data.tar.xz
#        members, extracted from the same .deb files beforehand);
#   (d2) `pipe deploy` when the build is already current;
#   (d3) deploying examples/hello from its prebuilt artifact, against doing
#        its build steps and packaging at deploy time (cold `pipe build` on an
#        empty store + publish + promote + deploy).
#   (d4) a new version that changes one file of the 5,000, deployed into a
#        target running the previous version (packages whose payload did not
#        change come from the previous release), against a cold deploy of
#        the same build; once with .debs, once with .rpms (BENCH_D4_FORMATS).
#
#   benches/deploy.sh
#
# Environment:
#   BENCH_DIR      work directory (default: a new mktemp -d); must be empty
#   BENCH_KEEP=1   keep the work directory
#   BENCH_N        timed pairs for (d1) and (d3) (default 5); (d2) runs 2*N times
#   BENCH_MIB, BENCH_FILES   payload of (d1) (default 200 MiB, 5000 files)
#   BENCH_TEXT     `words` (random words, default) or `pool` (repeated lines,
#                  far more compressible): see gen.py
#   BENCH_PIPE     use this pipe binary instead of a release build
#   BENCH_CASES    which of d1 d2 d3 d4 to run (default all)
#   BENCH_D4_FORMATS  formats for (d4) (default `deb rpm`)
#   CARGO_TARGET_DIR  respected for the release build
#
# Timing: each run is a whole process timed from outside (date +%s%N). (d1)
# and (d3) alternate A B A B after one untimed warm-up pair; the ratio is
# taken pair by pair and the median quoted (< 1: pipe is faster). Every cold
# deploy goes into a fresh directory with an empty cache (so it fetches from
# the local store, verifies, unpacks and switches); every tar -x into a fresh
# directory. Caches are not dropped (no root needed): both sides read the
# same warm store files. Nothing is deleted between timed runs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
die() { echo "bench: error: $*" >&2; exit 1; }
for tool in tar xz ar python3 cargo; do
  command -v "$tool" >/dev/null || die "$tool not found"
done

n=${BENCH_N:-5}
cases=" ${BENCH_CASES:-d1 d2 d3 d4} "
want() { case $cases in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
mib=${BENCH_MIB:-200}
nfiles=${BENCH_FILES:-5000}

. "$here/lib.sh"
bench_pipe
bench_workdir pipe-deploy-bench runs times
export SOURCE_DATE_EPOCH=1700000000 LC_ALL=C

# ms COMMAND...: runs it, prints its wall time in milliseconds.
ms() {
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null 2>"$W/last.err" || { cat "$W/last.err" >&2; die "failed: $*"; }
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# --- (d1) inputs: 4 packages, MIB MiB in NFILES files ------------------------
P=$W/proj
mkdir -p "$P"
echo "== generating $mib MiB in $nfiles files"
python3 "$here/gen.py" files "$P" "$mib" "$nfiles" "${BENCH_TEXT:-words}"
{
  cat <<EOF
[project]
name = "bench"
version = "1.0.0"
source_date_epoch = 1700000000

[environments.prod]

EOF
  for k in 0 1 2 3; do
    cat <<EOF
[packages.bench-p$k]
summary = "deploy benchmark payload $k"
arch = "all"
maintainer = "Bench <b@example.com>"
formats = ["deb"]
files = [{ src = "share/p$k/", dst = "/srv/bench/p$k/" }]

EOF
  done
} >"$P/pipeline.toml"
# prepare PROJECT RING ENV...: a key, a build, published, promoted through
# ENV... in order, and the operator's keyring (not timed).
prepare() {
  local proj=$1 ring=$2 env
  shift 2
  (cd "$proj" && "$pipe" -q keys generate --uid "Bench <b@example.com>" --algo ed25519 >/dev/null)
  "$pipe" -q -C "$proj" keys export --out "$ring"
  "$pipe" -q -C "$proj" build
  "$pipe" -q -C "$proj" publish
  for env in "$@"; do "$pipe" -q -C "$proj" promote --to "$env"; done
}
# (d4) builds its own copies: the (d1) project is built only for d1 and d2.
if want d1 || want d2; then
echo "== building and publishing (not timed)"
prepare "$P" "$W/ring.asc" prod
# The same payload for tar: each .deb's data.tar.xz, taken out beforehand.
mkdir -p "$W/tars"
for deb in "$P"/.pipe/builds/"$(cat "$P/.pipe/builds/latest")"/*.deb; do
  name=$(basename "$deb" .deb)
  (cd "$W/tars" && ar p "$deb" data.tar.xz >"$name.data.tar.xz")
done
payload=$(du -sb "$P/share" | cut -f1)
packed=$(cat "$W"/tars/*.tar.xz | wc -c)
echo "payload $((payload / 1048576)) MiB in $(find "$P/share" -type f | wc -l) files; $((packed / 1048576)) MiB as data.tar.xz"
fi

# Each takes its own fresh directory (made before the clock starts).
pipe_cold() { "$pipe" -q -C "$P" deploy --env prod --keyring "$W/ring.asc" --target "$1"; }
tar_cold() { for t in "$W"/tars/*.tar.xz; do tar -xJf "$t" -C "$1"; done; }
fresh() { mktemp -d "$W/runs/$1-XXXXXX"; }

# pairs OUT A A_DIR B B_DIR: one untimed warm-up pair, then N timed pairs
# A B into OUT (ms per line); A_DIR and B_DIR print the fresh directory each
# run gets, made before its clock starts.
pairs() {
  local out=$1 a=$2 adir=$3 b=$4 bdir=$5 x y
  "$a" "$("$adir")"; "$b" "$("$bdir")"
  : >"$out"
  for _ in $(seq "$n"); do
    x=$(ms "$a" "$("$adir")"); y=$(ms "$b" "$("$bdir")")
    echo "$x $y" | tee -a "$out"
  done
}
pipe_dir() { fresh pipe; }
tar_dir() { fresh tar; }

if want d1 || want d2; then
echo "== (d1) cold deploy vs tar -x, $n pairs (+1 warm-up)"
pairs "$W/times/d1" pipe_cold pipe_dir tar_cold tar_dir
first_pipe=$(ls -d "$W"/runs/pipe-* | head_n 1)
first_tar=$(ls -d "$W"/runs/tar-* | head_n 1)
# Both sides unpacked the same files.
diff <(cd "$first_pipe/current" && find srv -type f | sort) <(cd "$first_tar" && find srv -type f | sort) >/dev/null \
  || die "pipe and tar unpacked different files"
fi

if want d2; then
echo "== (d2) already current, $((2 * n)) runs"
: >"$W/times/d2"
for _ in $(seq $((2 * n))); do
  ms "$pipe" -q -C "$P" deploy --env prod --keyring "$W/ring.asc" --target "$first_pipe" | tee -a "$W/times/d2"
done
"$pipe" -C "$P" deploy --env prod --keyring "$W/ring.asc" --target "$first_pipe" | grep "already current" >/dev/null \
  || die "the repeated deploy was not a no-op"
fi

# --- (d4) one file of 5,000 changed: deploy over the previous version --------
# d4 FORMAT: a copy of the (d1) project with formats = [FORMAT], version 1.0.0
# deployed into a base target; then one file changed, version 1.0.1 built,
# published and promoted (not timed). Pairs: A = cold deploy of 1.0.1 into an
# empty directory, B = deploy of 1.0.1 into a copy of the base target (made
# before the clock starts).
d4() {
  local fmt=$1
  local Q=$W/d4-$fmt
  mkdir -p "$Q"
  cp -r "$P/share" "$Q/share"
  sed -e "s/formats = \[\"deb\"\]/formats = [\"$fmt\"]/" "$P/pipeline.toml" >"$Q/pipeline.toml"
  echo "== (d4/$fmt) preparing 1.0.0 and 1.0.1 (one file changed; not timed)"
  prepare "$Q" "$W/ring-$fmt.asc" prod
  mkdir -p "$W/runs/d4-$fmt-base"
  "$pipe" -q -C "$Q" deploy --env prod --keyring "$W/ring-$fmt.asc" --target "$W/runs/d4-$fmt-base"
  local one
  one=$(find "$Q/share" -type f | sort | head_n 1)
  echo "changed in 1.0.1" >>"$one"
  sed -i 's/^version = "1.0.0"/version = "1.0.1"/' "$Q/pipeline.toml"
  "$pipe" -q -C "$Q" build
  "$pipe" -q -C "$Q" publish
  "$pipe" -q -C "$Q" promote --to prod
  d4_cold() { "$pipe" -q -C "$Q" deploy --env prod --keyring "$W/ring-$fmt.asc" --target "$1"; }
  d4_over() { "$pipe" -q -C "$Q" deploy --env prod --keyring "$W/ring-$fmt.asc" --target "$1"; }
  d4_cold_dir() { fresh "d4-$fmt-cold"; }
  d4_over_dir() { local d; d=$(fresh "d4-$fmt-over"); cp -a "$W/runs/d4-$fmt-base/." "$d/"; echo "$d"; }
  echo "== (d4/$fmt) cold vs over the previous version, $n pairs (+1 warm-up)"
  pairs "$W/times/d4-$fmt" d4_cold d4_cold_dir d4_over d4_over_dir
  local last
  last=$(ls -d "$W"/runs/d4-"$fmt"-over-* | tail -1)
  "$pipe" -q -C "$Q" deploy --check --target "$last" >/dev/null || die "(d4/$fmt) the release differs from its packages"
  grep -rF "changed in 1.0.1" "$last/current/srv" >/dev/null || die "(d4/$fmt) the changed file is not deployed"
  d=$(fresh "d4-$fmt-json"); cp -a "$W/runs/d4-$fmt-base/." "$d/"
  "$pipe" -C "$Q" --json deploy --env prod --keyring "$W/ring-$fmt.asc" --target "$d" >"$W/d4-$fmt.json"
  python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["report"]["targets"][0]; print("(d4/%s) packages reused: %d of %d; %s" % (sys.argv[2], len(t["reused"]), len(json.load(open(sys.argv[1]))["report"]["artifacts"]), "  ".join("%s %.3f s" % kv for kv in t["timings"].items())))' "$W/d4-$fmt.json" "$fmt" | tee "$W/times/d4-$fmt.reused"
}
if want d4; then
  for f in ${BENCH_D4_FORMATS:-deb rpm}; do d4 "$f"; done
fi

# --- (d3) examples/hello: prebuilt vs build at deploy time -------------------
if want d3; then
E=$W/hello
cp -r "$repo/examples/hello" "$E"
rm -rf "$E/.pipe" "$E/build" "$E/keys"
prepare "$E" "$W/hello-ring.asc" dev staging prod
prebuilt() { "$pipe" -q -C "$E" deploy --env prod --keyring "$W/hello-ring.asc" --target "$1" --set port=8080; }
# A fresh copy of the example with an empty store and cache: nothing prebuilt.
at_deploy() {
  local c=$1
  "$pipe" -q -C "$c" build && "$pipe" -q -C "$c" publish &&
    "$pipe" -q -C "$c" promote --to prod --force &&
    "$pipe" -q -C "$c" deploy --env prod --keyring "$W/hello-ring.asc" --target "$c/target" --set port=8080
}
copy() { local c; c=$(fresh hello-build); cp -r "$E/." "$c/"; rm -rf "$c/.pipe" "$c/build"; echo "$c"; }
pre_dir() { fresh hello-pre; }
echo "== (d3) hello: prebuilt vs build at deploy time, $n pairs (+1 warm-up)"
pairs "$W/times/d3" prebuilt pre_dir at_deploy copy
fi

# --- report -----------------------------------------------------------------
ratio() { awk '{printf "%.3f\n", $1 / $2}' "$1" | median; }
col() { awk "{print \$$2}" "$1" | median; }
echo
echo "== results (median of $n pairs; ms)"
if want d1; then
printf '(d1) cold deploy %s ms, tar -x %s ms, ratio pipe/tar %s\n' "$(col "$W/times/d1" 1)" "$(col "$W/times/d1" 2)" "$(ratio "$W/times/d1")"
fi
if want d2; then
printf '(d2) already current: median %s ms, max %s ms\n' "$(median <"$W/times/d2")" "$(sort -n "$W/times/d2" | tail -1)"
fi
if want d3; then
printf '(d3) hello prebuilt deploy %s ms, build+package+deploy %s ms, ratio %s\n' "$(col "$W/times/d3" 1)" "$(col "$W/times/d3" 2)" "$(ratio "$W/times/d3")"
fi
if want d4; then
  for f in ${BENCH_D4_FORMATS:-deb rpm}; do
    # Ratio B/A: the deploy over the previous version against a cold one (target: <= 0.333).
    printf '(d4/%s) cold %s ms, over the previous version %s ms, ratio over/cold %s\n' "$f" \
      "$(col "$W/times/d4-$f" 1)" "$(col "$W/times/d4-$f" 2)" "$(awk '{printf "%.3f\n", $2 / $1}' "$W/times/d4-$f" | median)"
    cat "$W/times/d4-$f.reused"
  done
fi
if want d1; then
echo "state timings of one cold deploy (pipe's own figures):"
"$pipe" -C "$P" deploy --env prod --keyring "$W/ring.asc" --target "$W/runs/pipe-final" | grep -E "resolve|total"
fi
echo "tools: $(tar --version | head_n 1); $(xz --version | head_n 1)"
if [ -z "${BENCH_KEEP:-}" ]; then
  rm -rf "$W"
else
  echo "raw times in $W/times"
fi
