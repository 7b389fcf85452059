#!/usr/bin/env bash
# Build benchmark: `pipe build` against `dpkg-deb --build` (.deb) and
# `rpmbuild -bb` (.rpm) on the same inputs, same compressor, same run,
# reported as ratios (pipe / tool; < 1 means pipe is faster).
#
#   benches/build.sh            # everything (about 30-40 min on 2 cores)
#
# Environment:
#   BENCH_DIR      work directory (default: a new mktemp -d under $TMPDIR or /tmp)
#   BENCH_KEEP=1   keep the work directory (default: deleted at the very end)
#   BENCH_CASES    which cases, default "a b c"
#   BENCH_N_A, BENCH_N_B, BENCH_N_C   timed pairs per case (default 10, 5, 3)
#   BENCH_WARMUP   untimed warm-up pairs for (a) and (b) (default 1; (c) has none)
#   BENCH_BIG_MIB  payload of case (c) in MiB (default 500)
#   BENCH_SMALL_N  packages in case (b) (default 500)
#   BENCH_FORMATS  which formats to time, default "deb rpm"
#   CARGO_TARGET_DIR  respected for the release build
#   BENCH_PIPE     use this pipe binary instead of building one (script checks only)
#
# Timing: each case runs pipe (A) and the tool (B) in alternation A B A B ...
# after one untimed warm-up pair (none for (c)), each run timed from outside
# as a whole process (wall: date +%s%N around it; user, sys and peak RSS of
# the largest process: GNU time). The ratio is taken pair by pair and the
# median is quoted. Every pipe run is a cold build in a fresh hard-linked copy
# of the project made before timing; every tool run writes into a fresh
# directory. Nothing is deleted between timed runs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

die() { echo "bench: error: $*" >&2; exit 1; }

for tool in dpkg-deb rpmbuild rpm xz python3 /usr/bin/time cargo; do
  command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install dpkg-dev rpm xz-utils time python3)"
done

cases=${BENCH_CASES:-a b c}
n_a=${BENCH_N_A:-10}
n_b=${BENCH_N_B:-5}
n_c=${BENCH_N_C:-3}
big_mib=${BENCH_BIG_MIB:-500}
small_n=${BENCH_SMALL_N:-500}
epoch=1700000000

. "$here/lib.sh"
bench_pipe
bench_workdir pipe-bench in runs logs times bin

# --- environment of every timed command -------------------------------------
cat >"$W/bin/env.sh" <<EOF
export SOURCE_DATE_EPOCH=$epoch
export PIPE_SIGNING_KEY=\${PIPE_SIGNING_KEY:-$W/keys/release.key}
export LC_ALL=C
PIPE=$pipe
W=$W
rpmbuild_opts=(
  --quiet --nodeps
  --define '_build_id_links none'
  --define 'debug_package %{nil}'
  --define '__os_install_post %{nil}'
  --define '_binary_payload w2T.xzdio'
  --define 'use_source_date_epoch_as_buildtime 1'
  --define 'clamp_mtime_to_source_date_epoch 1'
  --define '_buildhost bench'
)
EOF

# pipe, cold: claims the next fresh copy prepared for CASE-FMT and builds it.
cat >"$W/bin/pipe-cold" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
. "$(dirname "$0")/env.sh"
for d in "$W"/runs/"$1-$2"-pipe-*; do
  [ -d "$d" ] || continue
  case $d in *.taken) continue ;; esac
  if mkdir "$d.taken" 2>/dev/null; then
    exec "$PIPE" -q -C "$d" build
  fi
done
echo "no fresh copy left for $1-$2" >&2; exit 1
EOF

# pipe, warm: builds again the first copy built cold (nothing changed).
cat >"$W/bin/pipe-warm" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
. "$(dirname "$0")/env.sh"
exec "$PIPE" -q -C "$W/runs/$1-$2-pipe-000" build
EOF

# dpkg-deb over every staged tree of CASE, into a fresh directory.
cat >"$W/bin/dpkg-deb-all" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
. "$(dirname "$0")/env.sh"
out=$(mktemp -d "$W/runs/$1-deb-tool.XXXXXX")
for stage in "$W/in/$1/debstage"/*; do
  dpkg-deb --root-owner-group -Zxz -z6 --build "$stage" "$out/" >/dev/null
done
EOF

# rpmbuild -bb over every spec of CASE, with a fresh _topdir.
cat >"$W/bin/rpmbuild-all" <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
. "$(dirname "$0")/env.sh"
top=$(mktemp -d "$W/runs/$1-rpm-tool.XXXXXX")
for spec in "$W/in/$1/specs"/*.spec; do
  rpmbuild -bb "${rpmbuild_opts[@]}" --define "_topdir $top" "$spec" >/dev/null
done
EOF
chmod +x "$W/bin"/pipe-cold "$W/bin"/pipe-warm "$W/bin"/dpkg-deb-all "$W/bin"/rpmbuild-all

# --- inputs -----------------------------------------------------------------
echo "== signing key"
mkdir -p "$W/keys"
(cd "$W" && "$pipe" -q keys generate --uid "Bench <b@example.com>" --out keys/release.key >/dev/null)

# pkg_stage CASE NAME ROOT_SRC CONTROL_EXTRA CONFFILE POSTINST FILES_SPEC REQUIRES POST
#   ROOT_SRC: a tree laid out as installed (usr/, etc/), hard-linked into
#   the dpkg-deb staging dir and copied (hard links) by the spec's %install.
stage_deb() { # case name root conffile postinst depends
  local c=$1 name=$2 root=$3 conf=$4 postinst=$5 depends=$6
  local s=$W/in/$c/debstage/$name
  mkdir -p "$s"
  cp -al "$root/." "$s/"
  mkdir -m 0755 "$s/DEBIAN"
  {
    echo "Package: $name"
    echo "Version: $ver"
    echo "Architecture: all"
    echo "Maintainer: Ops <ops@example.com>"
    [ -z "$depends" ] || echo "Depends: $depends"
    echo "Section: misc"
    echo "Priority: optional"
    echo "Description: $name benchmark package"
    echo " Generated input of benches/build.sh."
  } >"$s/DEBIAN/control"
  [ -z "$conf" ] || echo "$conf" >"$s/DEBIAN/conffiles"
  if [ -n "$postinst" ]; then install -m 0755 "$postinst" "$s/DEBIAN/postinst"; fi
}

spec_rpm() { # case name root files requires postinst
  local c=$1 name=$2 root=$3 files=$4 requires=$5 postinst=$6
  mkdir -p "$W/in/$c/specs"
  {
    echo "Name: $name"
    echo "Version: $ver"
    echo "Release: 1"
    echo "Summary: $name benchmark package"
    echo "License: MIT"
    echo "Packager: Ops <ops@example.com>"
    echo "BuildArch: noarch"
    echo "AutoReqProv: no"
    [ -z "$requires" ] || echo "Requires: $requires"
    echo "%description"
    echo "Generated input of benches/build.sh."
    echo "%install"
    echo "mkdir -p %{buildroot}"
    echo "cp -al $root/. %{buildroot}/"
    if [ -n "$postinst" ]; then
      echo "%post"
      cat "$postinst"
    fi
    echo "%files"
    echo "%defattr(0644,root,root,0755)"
    printf '%s\n' "$files"
  } >"$W/in/$c/specs/$name.spec"
}

# pipe_projects CASE SRC TOML_BODY_FILE: proj-deb and proj-rpm, each a hard
# linked copy of SRC with its own pipeline.toml (formats = one format).
pipe_projects() {
  local c=$1 src=$2 body=$3 fmt
  for fmt in deb rpm; do
    local p=$W/in/$c/proj-$fmt
    mkdir -p "$p"
    cp -al "$src/." "$p/"
    rm -f "$p/pipeline.toml"
    sed -E "s/^formats = \\[\"(deb|rpm)\"(, \"(deb|rpm)\")?\\]/formats = [\"$fmt\"]/" "$body" >"$p/pipeline.toml"
    grep -q "formats = \[\"$fmt\"\]" "$p/pipeline.toml" || die "no formats line in $body"
  done
}

# fresh_copies CASE FMT COUNT: the pipe projects the cold runs will claim.
fresh_copies() {
  local c=$1 fmt=$2 count=$3 i
  for ((i = 0; i < count; i++)); do
    cp -al "$W/in/$c/proj-$fmt" "$W/runs/$c-$fmt-pipe-$(printf %03d "$i")"
  done
}

ver=1.2.0
prep_a() {
  echo "== (a) inputs: examples/hello (tracked files at HEAD)"
  local src=$W/in/a/src ref=$W/in/a/ref root=$W/in/a/root
  mkdir -p "$src" "$ref"
  git -C "$repo" archive HEAD examples/hello | tar -x -C "$src" --strip-components=2 -f - || die "git archive"
  [ -f "$src/pipeline.toml" ] || die "no examples/hello/pipeline.toml at HEAD"
  # The package only, as dpkg-deb and rpmbuild build it: the example's
  # [images.*], [machines.*] and [registry] are other artifacts (and the
  # machine's base tarball is not in git).
  python3 -c 'import re, sys
keep = True
for line in open(sys.argv[1]):
    m = re.match(r"^\[([A-Za-z_]+)", line)
    if m:
        keep = m.group(1) not in ("images", "machines", "registry")
    if keep:
        sys.stdout.write(line)' "$src/pipeline.toml" >"$W/in/a/pipeline.toml"
  pipe_projects a "$src" "$W/in/a/pipeline.toml"
  # The tools' side: the example's build steps run once here (untimed; the
  # example's step is one sed), then the files laid out as installed.
  cp -a "$src/." "$ref/"
  python3 -c 'import sys, tomllib
for s in tomllib.load(open(sys.argv[1], "rb")).get("steps", {}).values(): print(s["run"])' \
    "$src/pipeline.toml" | while read -r step; do (cd "$ref" && sh -c "$step"); done
  mkdir -p "$root/usr/bin" "$root/etc/hello" "$root/usr/share/hello"
  install -m 0755 "$ref/build/hello" "$root/usr/bin/hello"
  install -m 0644 "$ref/etc/hello.conf" "$root/etc/hello/hello.conf"
  cp -a "$ref/share/." "$root/usr/share/hello/"
  stage_deb a hello "$root" /etc/hello/hello.conf "$ref/scripts/postinst.sh" sed
  spec_rpm a hello "$root" "%attr(0755,root,root) /usr/bin/hello
%config(noreplace) /etc/hello/hello.conf
/usr/share/hello" sed "$ref/scripts/postinst.sh"
}

prep_b() {
  echo "== (b) inputs: $small_n small packages"
  local src=$W/in/b/src i name
  mkdir -p "$src"
  python3 "$here/gen.py" small "$src" "$small_n"
  GEN_VERSION=$ver GEN_EPOCH=$epoch python3 "$here/gen.py" toml "$W/in/b/pipeline.toml" "$small_n"
  pipe_projects b "$src" "$W/in/b/pipeline.toml"
  for ((i = 0; i < small_n; i++)); do
    name=p$(printf %03d "$i")
    local root=$W/in/b/root/$name
    mkdir -p "$root/usr/bin" "$root/etc/$name" "$root/usr/share"
    ln "$src/bin/$name" "$root/usr/bin/$name"
    ln "$src/etc/$name.conf" "$root/etc/$name/$name.conf"
    cp -al "$src/share/$name" "$root/usr/share/$name"
    stage_deb b "$name" "$root" "/etc/$name/$name.conf" "" ""
    spec_rpm b "$name" "$root" "%attr(0755,root,root) /usr/bin/$name
%config(noreplace) /etc/$name/$name.conf
/usr/share/$name" "" ""
  done
}

prep_c() {
  echo "== (c) inputs: one package, ${big_mib} MiB payload (log-like text)"
  local src=$W/in/c/src root=$W/in/c/root
  mkdir -p "$src/bin"
  python3 "$here/gen.py" big "$src" "$big_mib"
  printf '#!/bin/sh\nexec grep -h "$@" /usr/share/big/logs/*.log\n' >"$src/bin/big"
  chmod 0755 "$src/bin/big"
  cat >"$W/in/c/pipeline.toml" <<EOF
[project]
name = "big"
version = "$ver"
source_date_epoch = $epoch

[packages.big]
summary = "big benchmark package"
arch = "all"
license = "MIT"
maintainer = "Ops <ops@example.com>"
formats = ["deb", "rpm"]
files = [
  { src = "bin/big", dst = "/usr/bin/big", mode = "0755" },
  { src = "share/big/", dst = "/usr/share/big/" },
]
EOF
  pipe_projects c "$src" "$W/in/c/pipeline.toml"
  mkdir -p "$root/usr/bin" "$root/usr/share"
  ln "$src/bin/big" "$root/usr/bin/big"
  cp -al "$src/share/big" "$root/usr/share/big"
  stage_deb c big "$root" "" "" ""
  spec_rpm c big "$root" "%attr(0755,root,root) /usr/bin/big
/usr/share/big" "" ""
}

# --- timing -----------------------------------------------------------------
# run_one FILE LOG CMD...: appends "wall_s user_s sys_s peak_kib" to FILE.
run_one() {
  local file=$1 log=$2 s e
  shift 2
  s=$(date +%s%N)
  if ! /usr/bin/time -f '%U %S %M' -o "$W/.time" "$@" >>"$log" 2>&1; then
    die "failed: $* (see $log)"
  fi
  e=$(date +%s%N)
  echo "$(awk -v d=$((e - s)) 'BEGIN { printf "%.4f", d / 1e9 }') $(cat "$W/.time")" >>"$file"
}

# pair LABEL N WARMUP "CMD_A" "CMD_B"
pair() {
  local label=$1 n=$2 warm=$3 a=$4 b=$5 i
  echo "-- $label: $n pairs (+$warm warm-up): A=$a  B=$b"
  for ((i = 0; i < warm; i++)); do
    run_one /dev/null "$W/logs/$label.A.log" $a
    run_one /dev/null "$W/logs/$label.B.log" $b
  done
  for ((i = 0; i < n; i++)); do
    run_one "$W/times/$label.A" "$W/logs/$label.A.log" $a
    run_one "$W/times/$label.B" "$W/logs/$label.B.log" $b
  done
  summarize "$label" "$W/times/$label.A" "$W/times/$label.B" | tee -a "$W/summary.txt"
}

# single LABEL N "CMD": one command alone (warm rebuilds).
single() {
  local label=$1 n=$2 a=$3 i
  echo "-- $label: $n runs (+1 warm-up): $a"
  run_one /dev/null "$W/logs/$label.log" $a
  for ((i = 0; i < n; i++)); do
    run_one "$W/times/$label" "$W/logs/$label.log" $a
  done
  summarize "$label" "$W/times/$label" | tee -a "$W/summary.txt"
}

summarize() {
  python3 - "$@" <<'EOF'
import statistics as st, sys
label, files = sys.argv[1], sys.argv[2:]
rows = [[list(map(float, l.split())) for l in open(f)] for f in files]
def side(r):
    wall = [x[0] for x in r]; cpu = [x[1] + x[2] for x in r]; peak = [x[3] / 1024 for x in r]
    return (f"wall {st.median(wall):8.3f} s [{min(wall):.3f}-{max(wall):.3f}]  "
            f"cpu {st.median(cpu):8.3f} s  peak {st.median(peak):7.1f} MiB")
out = [f"{label:18} n={len(rows[0])}"]
out.append(f"    A pipe  {side(rows[0])}")
if len(rows) == 2:
    out.append(f"    B tool  {side(rows[1])}")
    ratios = [a[0] / b[0] for a, b in zip(*rows)]
    out.append(f"    ratio A/B wall: median {st.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}]")
print("\n".join(out))
EOF
}

# sizes LABEL PIPE_DIR TOOL_DIR EXT: total artifact bytes of each side.
sizes() {
  local pb tb
  pb=$(find "$2/.pipe/builds/" -mindepth 2 -maxdepth 2 -name "*.$4" -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  tb=$(find "$3" -name "*.$4" -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  echo "    sizes $1: pipe $pb bytes, tool $tb bytes" | tee -a "$W/summary.txt"
}

# contents LABEL PIPE_DIR TOOL_DIR EXT: do both sides package the same files?
contents() {
  local p t
  p=$(find "$2/.pipe/builds/" -mindepth 2 -maxdepth 2 -name "*.$4" | sort | sed -n 1p)
  t=$(find "$3" -name "*.$4" | sort | sed -n 1p)
  if [ "$4" = deb ]; then
    diff <(dpkg-deb -c "$p" | awk '{print $1, $6}' | sed 's#/$##' | sort) \
      <(dpkg-deb -c "$t" | awk '{print $1, $6}' | sed 's#/$##' | sort) >"$W/logs/$1.contents.diff" || true
  else
    diff <(rpm -qplv "$p" 2>/dev/null | awk '{print $1, $9}' | sort) \
      <(rpm -qplv "$t" 2>/dev/null | awk '{print $1, $9}' | sort) >"$W/logs/$1.contents.diff" || true
  fi
  if [ -s "$W/logs/$1.contents.diff" ]; then
    echo "    contents $1: DIFFER (pipe <, tool >):" | tee -a "$W/summary.txt"
    sed 's/^/      /' "$W/logs/$1.contents.diff" | head_n 20 | tee -a "$W/summary.txt"
  else
    echo "    contents $1: same paths and modes" | tee -a "$W/summary.txt"
  fi
}

bench_case() {
  local c=$1 n=$2 warm=$3 fmt tool
  for fmt in ${BENCH_FORMATS:-deb rpm}; do
    fresh_copies "$c" "$fmt" $((n + warm))
    case $fmt in deb) tool=dpkg-deb-all ;; rpm) tool=rpmbuild-all ;; esac
    pair "$c-$fmt-cold" "$n" "$warm" "$W/bin/pipe-cold $c $fmt" "$W/bin/$tool $c"
    local last
    last=$(ls -d "$W/runs/$c-$fmt-tool".* | tail -1)
    sizes "$c-$fmt" "$W/runs/$c-$fmt-pipe-000" "$last" "$fmt"
    contents "$c-$fmt" "$W/runs/$c-$fmt-pipe-000" "$last" "$fmt"
    single "$c-$fmt-warm" "$n" "$W/bin/pipe-warm $c $fmt"
  done
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  cores: $(nproc)  mem: $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "$("$pipe" --version 2>/dev/null || echo pipe)"
  dpkg-deb --version | head_n 1
  rpmbuild --version
  xz --version | head_n 1
  echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$W/summary.txt"

umask 022
for c in $cases; do "prep_$c"; done
# Same modes on both sides whatever the checkout's umask: no group/other write.
chmod -R go-w "$W/in"
sync
for c in $cases; do
  case $c in
    a) bench_case a "$n_a" "${BENCH_WARMUP:-1}" ;;
    b) bench_case b "$n_b" "${BENCH_WARMUP:-1}" ;;
    c) bench_case c "$n_c" 0 ;;
  esac
done

echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$W/summary.txt"
echo
echo "================ summary (A = pipe build, B = dpkg-deb / rpmbuild; ratio < 1: pipe faster)"
cat "$W/summary.txt"
if [ "${BENCH_KEEP:-0}" = 1 ]; then
  echo "kept $W"
else
  rm -rf "$W"
fi
