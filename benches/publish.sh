#!/usr/bin/env bash
# Publish benchmark (issue 6): `pipe publish` + `pipe promote --to dev` (which
# regenerates and signs the apt suite / yum repository) against the tools a
# shell pipeline uses for the same job, on the same packages in the same run,
# reported as ratios (pipe / tool; < 1 means pipe is faster).
#
#   benches/publish.sh                               # everything (about an hour on 2 cores)
#   BENCH_SIZES=50 BENCH_UPDATE_N=50 benches/publish.sh   # smoke run, about a minute
#
# Cases (BENCH_CASES, default "apt apt-s3 yum update"), each at every size of
# BENCH_SIZES (default "2000 20000"):
#   apt      local store: pipe publish + promote   vs  (A) apt-ftparchive packages + release
#            + gpg --clearsign + gpg -abs over a pool of the same .debs, and (B) aptly repo
#            create + repo add + publish repo (signed by gpg), fresh rootDir per run.
#            pipe twice: into a fresh store (every blob copied in), and into a copy of
#            the build's own store, which holds the blobs already (build and publish
#            sharing `[store] url`, the default); the yum case too
#   apt-s3   the same on S3 (moto on 127.0.0.1): pipe --store s3://… vs aptly publishing to
#            the same server through S3PublishEndpoints (apt-ftparchive has no S3 side)
#   yum      local store, the same packages as .rpm: pipe publish + promote vs createrepo_c
#            + gpg --detach-sign --armor repodata/repomd.xml
#   requests S3 requests and build metadata (not timed; any build profile counts the same):
#            on the S3 server (moto, counted from its request log), pipe publish and promote
#            of N packages into an empty prefix, then of the build with one package more;
#            per step the requests, requests per new package, and the bytes of metadata the
#            step wrote (every new object but package blobs, pool and repository copies).
#            Not in the default BENCH_CASES: `BENCH_CASES=requests`
#   update   one package added to an environment of BENCH_UPDATE_N packages (default: the
#            largest size): pipe publish + promote of the build with one package more vs
#            aptly repo add (one .deb) + publish update, and vs createrepo_c --update after
#            adding one .rpm (+ signing repomd.xml); then `pipe history dev` of that
#            environment (N+1 packages in pipeline.toml), timed alone
#
# Environment:
#   BENCH_DIR        work directory (default: a new mktemp -d under $TMPDIR or /tmp)
#   BENCH_KEEP=1     keep the work directory (default: deleted at the very end)
#   BENCH_CASES      see above
#   BENCH_SIZES      package counts, default "2000 20000"
#   BENCH_RUNS       timed runs per case at sizes below BENCH_LARGE (default 3)
#   BENCH_RUNS_LARGE timed runs per case at sizes >= BENCH_LARGE (default 1)
#   BENCH_LARGE      default 10000
#   BENCH_UPDATE_N   size of the environment the update case adds to (default: largest size)
#   BENCH_UPDATE_RUNS timed runs of the update case (default 3)
#   BENCH_PIPE       use this pipe binary instead of `cargo build --release --bin pipe`
#                    (which otherwise runs first and respects $CARGO_TARGET_DIR)
#   BENCH_BUILD_PIPE the pipe binary that runs the untimed `pipe build` of the bench
#                    projects (default: the measured one). The builds are kept in the work
#                    dir keyed by this binary's hash, so a later run with a new measured
#                    binary reuses packages built once (20,000 x 2 formats take about an
#                    hour). Only valid when the two binaries agree on everything a build
#                    writes (packages, records, shards, catalog): give it only when the
#                    measured binary's changes leave the build output alone.
#   BENCH_NO_INSTALL=1  do not run scripts/install-deps.sh bench
#
# Timing: every step is one whole process timed from outside (date +%s%N);
# a side's figure is the sum of its steps. Each run times pipe, then the
# anchors, on the same packages; the ratio is taken run by run and its median
# is quoted. Everything a run needs (its store, pool copy, aptly rootDir,
# copy of the base repository for the update) is prepared before timing in a
# fresh directory; nothing is deleted until the very end (file creation on
# this disk slows for minutes after a mass delete). pipe's .debs and .rpms
# come from an untimed `pipe build`; the anchors get hard links to the same
# files.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

die() { echo "bench: error: $*" >&2; exit 1; }

# summarize TIMES_TSV: the markdown table and the steps of every case.
summarize() {
  python3 - "$1" <<'EOF'
import collections, statistics as st, sys

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
total = collections.defaultdict(float)  # (case, n, run, side) -> seconds
steps = collections.defaultdict(list)   # (case, n, side, step) -> [seconds]
for case, n, run, side, name, secs in rows:
    if name != "regenerate":  # reported by pipe, inside its promote step
        total[case, int(n), int(run), side] += float(secs)
    steps[case, int(n), side, name].append(float(secs))
anchors = {"apt": ["ftparchive", "aptly"], "apt-s3": ["aptly"], "yum": ["createrepo"],
           "update-deb": ["aptly"], "update-rpm": ["createrepo"], "history": []}
what = {"apt": "apt suite, local", "apt-s3": "apt suite, S3 (moto)", "yum": "yum repo, local",
        "update-deb": "+1 .deb, local", "update-rpm": "+1 .rpm, local",
        "history": "pipe history dev, local"}
tool = {"ftparchive": "apt-ftparchive + gpg", "aptly": "aptly", "createrepo": "createrepo_c + gpg"}
med = st.median
def brk(case, n, side):
    names = dict.fromkeys(k[3] for k in steps if k[:3] == (case, n, side))
    return ", ".join(f"{name} {med(steps[case, n, side, name]):.2f}" for name in names)
pipes = {"pipe": "fresh store", "pipe-shared": "the build's store"}
print("| case | N | runs | pipe publish + promote into | pipe (s) | anchor | anchor (s) | ratio pipe/anchor, median [min-max] |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
keys = sorted({(c, n) for c, n, _, _ in total}, key=lambda k: (list(what).index(k[0]), k[1]))
for case, n in keys:
    for ps in pipes:
        runs = sorted({r for c, m, r, s in total if (c, m, s) == (case, n, ps)})
        for a in anchors[case]:
            both = [r for r in runs if (case, n, r, a) in total]
            if not both:
                continue
            p = [total[case, n, r, ps] for r in both]
            t = [total[case, n, r, a] for r in both]
            ratios = [x / y for x, y in zip(p, t)]
            print(f"| {what[case]} | {n:,} | {len(both)} | {pipes[ps]} | {med(p):.2f} | {tool[a]} | {med(t):.2f} | "
                  f"**{med(ratios):.3f}** [{min(ratios):.3f}-{max(ratios):.3f}] |")
print()
print("Steps, median seconds (pipe's `regenerate` is `repositories.seconds` of `pipe --json promote`, inside its promote):")
print()
for case, n in keys:
    for side in list(pipes) + anchors[case]:
        if (case, n, side) in {k[:3] for k in steps}:
            print(f"- {what[case]}, N={n:,}, {side}: {brk(case, n, side)}")
EOF
}

# `benches/publish.sh summary OUT_DIR`: the table of a kept (or interrupted)
# run, from its output directory (BENCH_DIR/out-…).
if [ "${1:-}" = summary ]; then
  cat "$2/header.txt" 2>/dev/null || true
  echo
  summarize "$2/times.tsv"
  exit
fi

[ "${BENCH_NO_INSTALL:-0}" = 1 ] || "$repo/scripts/install-deps.sh" bench
for tool in aptly apt-ftparchive createrepo_c gpg gzip xz python3 curl cargo; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/install-deps.sh bench installs it)"
done
venv_python=$repo/.pipe-dev/venv/bin/python
[ -x "$venv_python" ] || die "no moto venv at $repo/.pipe-dev (scripts/install-deps.sh moto)"

cases=${BENCH_CASES:-apt apt-s3 yum update}
sizes=${BENCH_SIZES:-2000 20000}
runs_small=${BENCH_RUNS:-3}
runs_large=${BENCH_RUNS_LARGE:-1}
large=${BENCH_LARGE:-10000}
largest=$(printf '%s\n' $sizes | sort -n | tail -1)
update_n=${BENCH_UPDATE_N:-$largest}
update_runs=${BENCH_UPDATE_RUNS:-3}
has_case() { case " $cases " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
runs_for() { if [ "$1" -ge "$large" ]; then echo "$runs_large"; else echo "$runs_small"; fi; }

. "$here/lib.sh"
bench_pipe

W=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/pipe-publish-bench.XXXXXX")}
mkdir -p "$W"
W=$(cd "$W" && pwd)
# A work dir of an earlier run is reused: its generated sources always (they
# are seeded), its pipe builds (in/pipe-HASH/) when the same pipe binary made
# them. Every run's outputs go to a new directory O.
build_pipe=${BENCH_BUILD_PIPE:-$pipe}
[ -x "$build_pipe" ] || die "no pipe binary at $build_pipe (BENCH_BUILD_PIPE)"
B=$W/in/pipe-$(sha256sum <"$build_pipe" | cut -c1-16)
if [ -n "$(ls -A "$W")" ]; then
  [ -d "$W/in" ] || die "$W is not empty and holds no inputs: give a fresh BENCH_DIR"
  echo "== reusing the inputs in $W/in"
fi
mkdir -p "$B"
"$build_pipe" --version >"$B/pipe.version"
O=$W/out-$(date -u +%Y%m%dT%H%M%S)
mkdir -p "$O/runs" "$O/logs"
echo "== work dir $W, this run's outputs in $O"
times=$O/times.tsv # case size run side step seconds
: >"$times"

moto_pid=
cleanup() {
  if [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; fi
  if [ -n "${GNUPGHOME:-}" ]; then gpgconf --kill gpg-agent 2>/dev/null || true; fi
}
trap cleanup EXIT

export LC_ALL=C SOURCE_DATE_EPOCH=1700000000 PIPE_ACTOR=bench

# --- keys: the same kind (RSA 3072) on both sides -----------------------------
echo "== keys"
export PIPE_SIGNING_KEY=$W/keys/release.key
if [ ! -e "$PIPE_SIGNING_KEY" ]; then
  mkdir -p "$W/keys"
  (cd "$W" && "$pipe" -q keys generate --uid "Bench <bench@example.com>" --algo rsa3072 --out keys/release.key >/dev/null)
fi
export GNUPGHOME=$W/gnupg
if [ ! -d "$GNUPGHOME" ]; then
  mkdir -m 0700 "$GNUPGHOME"
  gpg --batch --quiet --pinentry-mode loopback --passphrase '' \
    --quick-gen-key "Bench Anchor <anchor@example.com>" rsa3072 sign never 2>/dev/null
fi
gpg_key=$(gpg --list-keys --with-colons | awk -F: '/^fpr/ && k == "" {k = $10} END {print k}') # awk reads all: no SIGPIPE (exit 141) under pipefail
[ -n "$gpg_key" ] || die "no gpg key made"

# --- timing -------------------------------------------------------------------
# step CASE SIZE RUN SIDE STEP CMD...: runs CMD (output to the run's log),
# appends its wall time to $times.
step() {
  local c=$1 n=$2 r=$3 side=$4 name=$5 s e log=$O/logs/$1-$2-$3-$4.log
  shift 5
  s=$(date +%s%N)
  if ! "$@" >>"$log" 2>&1; then die "failed: $* (see $log)"; fi
  e=$(date +%s%N)
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$n" "$r" "$side" "$name" \
    "$(awk -v d=$((e - s)) 'BEGIN { printf "%.4f", d / 1e9 }')" >>"$times"
}

# note CASE SIZE RUN SIDE STEP VALUE: a figure a tool reported itself.
note() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$times"; }

# --- checks: every side lists the packages it should -------------------------
# fetch LOCATION: a file of a local directory, or of s3://BUCKET/KEY on moto.
fetch() {
  case $1 in
    s3://*)
      "$venv_python" -c 'import boto3, sys
bucket, key = sys.argv[1].split("/", 1)
body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
sys.stdout.buffer.write(body)' "${1#s3://}" ;;
    *) cat "$1" ;;
  esac
}
# check CASE N RUN SIDE WANT BASE FMT: BASE is the repository root (apt) or
# the yum repository; a count that differs is reported in the summary.
check() {
  local got href
  if [ "$7" = deb ]; then
    got=$(fetch "$6/dists/dev/main/binary-amd64/Packages" | grep -c '^Package:' || true)
  else
    href=$(fetch "$6/repodata/repomd.xml" | grep -o '[^"]*primary.xml.gz' | head_n 1)
    got=$(fetch "$6/$href" | zcat | grep -o 'packages="[0-9]*"' | tr -dc 0-9)
  fi
  if [ "$got" != "$5" ]; then
    echo "MISMATCH $1 N=$2 run $3 $4: lists ${got:-nothing}, expected $5" | tee -a "$O/checks.txt"
  fi
}

# --- inputs ---------------------------------------------------------------------
need=$(
  for n in $sizes; do
    echo "$n"
    if has_case requests; then echo "$((n + 1))"; fi
  done
  if has_case update; then echo "$update_n" "$((update_n + 1))"; fi
)
need=$(printf '%s\n' $need | sort -nu)
max=$(printf '%s\n' $need | tail -1)
echo "== inputs: $max small packages (benches/gen.py small)"
if [ "$(cat "$W/in/src.count" 2>/dev/null || echo 0)" -lt "$max" ]; then
  [ ! -e "$W/in/src" ] || die "$W/in/src holds fewer packages than $max: give a fresh BENCH_DIR"
  python3 "$here/gen.py" small "$W/in/src" "$max"
  chmod -R go-w "$W/in/src"
  echo "$max" >"$W/in/src.count"
fi

declare -A build_id # "N-FMT" -> build id
declare -A last_built # FMT -> the largest N built so far
# project N FMT: builds the pipe project of the first N packages as FMT
# (untimed). It starts as a copy of the largest smaller project built (N-1
# for N+1; 2,001 for 20,000), so only the packages it adds are built.
project() {
  local n=$1 fmt=$2 p=$B/proj-$1-$2 base=$B/proj-${last_built[$2]:-0}-$2
  last_built[$fmt]=$n
  if [ -s "$p.build" ]; then # built by an earlier run of this pipe binary
    build_id[$n-$fmt]=$(cat "$p.build")
    return
  fi
  rm -rf "$p" "$B/pkgs-$n-$fmt" # an interrupted build
  if [ -d "$base/.pipe" ]; then
    cp -al "$base" "$p"
    rm -rf "$p/.pipe/builds" && cp -a "$base/.pipe/builds" "$p/.pipe/builds"
    rm -f "$p/pipeline.toml"
  else
    mkdir -p "$p"
    cp -al "$W/in/src/." "$p/"
  fi
  python3 "$here/gen.py" toml "$p/pipeline.toml.all" "$n"
  sed "s/^formats = .*/formats = [\"$fmt\"]/" "$p/pipeline.toml.all" >"$p/pipeline.toml"
  rm -f "$p/pipeline.toml.all"
  local s=$SECONDS
  build_id[$n-$fmt]=$("$build_pipe" --json -q -C "$p" build | python3 -c 'import json, sys; print(json.load(sys.stdin)["build"])')
  echo "   built $n x $fmt in $((SECONDS - s)) s: ${build_id[$n-$fmt]}"
  # The bare packages, for the anchors (hard links: they only read them).
  mkdir -p "$B/pkgs-$n-$fmt"
  find "$p/.pipe/builds/${build_id[$n-$fmt]}" -name "*.$fmt" -exec ln -t "$B/pkgs-$n-$fmt" {} +
  echo "${build_id[$n-$fmt]}" >"$p.build"
}
echo "== pipe builds (untimed)"
for n in $need; do
  for fmt in deb rpm; do
    case $fmt in
      deb) has_case apt || has_case apt-s3 || has_case update || has_case requests || continue ;;
      rpm) has_case yum || has_case update || continue ;;
    esac
    project "$n" "$fmt"
  done
done

# --- the sides ------------------------------------------------------------------
# pipe_side SIDE CASE N RUN FMT STORE [BUILT]: publish + promote the build of
# BUILT packages (default N) into STORE. STORE `build`: into a copy (hard
# links) of the build's own store, which holds the package blobs already, as
# when build and publish share `[store] url` (side `pipe-shared`).
pipe_side() {
  local side=$1 c=$2 n=$3 r=$4 fmt=$5 store=$6 built=${7:-$3}
  local p=$B/proj-$built-$fmt id=${build_id[$built-$fmt]}
  local out=$O/runs/$c-$n-$r-$side
  mkdir -p "$out"
  if [ "$store" = build ]; then
    store=$out/store
    cp -al "$p/.pipe/store" "$store"
  fi
  # publish ends with a syncfs, which would otherwise also flush what the
  # untimed preparation left dirty.
  sync
  step "$c" "$n" "$r" "$side" publish "$pipe" -q -C "$p" --store "$store" publish "$id"
  step "$c" "$n" "$r" "$side" promote sh -c '"$0" --json -C "$1" --store "$2" promote "$3" --to dev >"$4"' \
    "$pipe" "$p" "$store" "$id" "$out/promote.json"
  local root=$store
  [ "$fmt" = deb ] || root=$store/yum/dev
  check "$c" "$n" "$r" "$side" "$built" "$root" "$fmt"
  note "$c" "$n" "$r" "$side" regenerate "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["repositories"]["seconds"])' "$out/promote.json")"
}

# ftparchive_side CASE N RUN: the pool is a fresh directory of hard links.
ftparchive_side() {
  local c=$1 n=$2 r=$3 d=$O/runs/$1-$2-$3-ftparchive
  mkdir -p "$d/pool/main" "$d/dists/dev/main/binary-amd64"
  cp -al "$B/pkgs-$n-deb/." "$d/pool/main/"
  local idx=dists/dev/main/binary-amd64
  step "$c" "$n" "$r" ftparchive packages sh -c 'cd "$0" && apt-ftparchive packages pool >"$1/Packages"' "$d" "$idx"
  # The compressed indices pipe writes too: gzip -6, xz -1 (repo-index's levels).
  step "$c" "$n" "$r" ftparchive compress sh -c 'cd "$0/$1" && gzip -6 -n -k Packages && xz -1 -k Packages' "$d" "$idx"
  step "$c" "$n" "$r" ftparchive release sh -c 'cd "$0" && apt-ftparchive \
      -o APT::FTPArchive::Release::Origin=bench -o APT::FTPArchive::Release::Label=bench \
      -o APT::FTPArchive::Release::Suite=dev -o APT::FTPArchive::Release::Codename=dev \
      -o APT::FTPArchive::Release::Architectures=amd64 -o APT::FTPArchive::Release::Components=main \
      release dists/dev >dists/dev/Release.new && mv dists/dev/Release.new dists/dev/Release' "$d"
  step "$c" "$n" "$r" ftparchive sign sh -c 'cd "$0/dists/dev" &&
      gpg --batch --yes --local-user "$1" --clearsign -o InRelease Release &&
      gpg --batch --yes --local-user "$1" -abs -o Release.gpg Release' "$d" "$gpg_key"
  check "$c" "$n" "$r" ftparchive "$n" "$d" deb
}

# aptly_conf DIR [S3_PREFIX]: a fresh rootDir; with a prefix, an S3
# endpoint `moto` on the bench's server.
aptly_conf() {
  local d=$1 prefix=${2:-}
  mkdir -p "$d"
  python3 - "$d" "$prefix" "${moto_endpoint:-}" >"$d/aptly.conf" <<'EOF'
import json, sys
d, prefix, endpoint = sys.argv[1:]
conf = {"rootDir": f"{d}/root", "gpgProvider": "gpg", "architectures": ["amd64"]}
if prefix:
    conf["S3PublishEndpoints"] = {"moto": {
        "region": "us-east-1", "bucket": "aptly-bench", "prefix": prefix,
        "endpoint": endpoint, "awsAccessKeyID": "test", "awsSecretAccessKey": "test",
        "forceVirtualHostedStyle": False, "disableMultiDel": False}}
print(json.dumps(conf, indent=1))
EOF
}

# aptly_side CASE N RUN [s3]: repo create + add + publish (signed).
aptly_side() {
  local c=$1 n=$2 r=$3 where=${4:-} d=$O/runs/$1-$2-$3-aptly target=
  if [ "$where" = s3 ]; then
    aptly_conf "$d" "$c-$n-$r"
    target=s3:moto:
  else
    aptly_conf "$d"
  fi
  local a=(aptly -config="$d/aptly.conf")
  step "$c" "$n" "$r" aptly repo-create "${a[@]}" repo create -distribution=dev -component=main bench
  step "$c" "$n" "$r" aptly repo-add "${a[@]}" repo add bench "$B/pkgs-$n-deb"
  step "$c" "$n" "$r" aptly publish "${a[@]}" publish repo -batch -gpg-key="$gpg_key" \
    -acquire-by-hash -skip-contents -architectures=amd64 bench $target
  if [ "$where" = s3 ]; then
    check "$c" "$n" "$r" aptly "$n" "s3://aptly-bench/$c-$n-$r" deb
  else
    check "$c" "$n" "$r" aptly "$n" "$d/root/public" deb
  fi
}

# createrepo_side CASE N RUN: createrepo_c over a fresh directory of the
# same .rpm files, and the detached signature of repomd.xml.
createrepo_side() {
  local c=$1 n=$2 r=$3 d=$O/runs/$1-$2-$3-createrepo
  mkdir -p "$d"
  cp -al "$B/pkgs-$n-rpm/." "$d/"
  step "$c" "$n" "$r" createrepo createrepo_c createrepo_c --no-database --quiet "$d"
  step "$c" "$n" "$r" createrepo sign gpg --batch --yes --local-user "$gpg_key" \
    --detach-sign --armor "$d/repodata/repomd.xml"
  check "$c" "$n" "$r" createrepo "$n" "$d" rpm
}

start_moto() {
  [ -z "$moto_pid" ] || return 0
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$venv_python" "$repo/tests/support/moto_server.py" -H 127.0.0.1 -p "$port" >"$O/logs/moto.log" 2>&1 &
  moto_pid=$!
  moto_endpoint=http://127.0.0.1:$port
  local i
  for ((i = 0; i < 200; i++)); do
    curl -s -o /dev/null "$moto_endpoint" && break
    sleep 0.1
  done
  for b in pipe-bench aptly-bench; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$moto_endpoint/$b")" = 200 ] || die "moto: cannot create bucket $b"
  done
  export AWS_ENDPOINT_URL=$moto_endpoint AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
  echo "   moto on $moto_endpoint (pid $moto_pid)"
}

# --- the cases ------------------------------------------------------------------
# sized_case CASE N: the runs of CASE at N packages, pipe first in each.
sized_case() {
  local c=$1 n=$2 r
  [ "$c" != apt-s3 ] || start_moto
  for ((r = 1; r <= $(runs_for "$n"); r++)); do
    echo "-- $c n=$n run $r"
    case $c in
      apt)
        pipe_side pipe apt "$n" "$r" deb "$O/runs/apt-$n-$r-pipe/store"
        pipe_side pipe-shared apt "$n" "$r" deb build
        ftparchive_side apt "$n" "$r"
        aptly_side apt "$n" "$r"
        ;;
      apt-s3)
        pipe_side pipe apt-s3 "$n" "$r" deb "s3://pipe-bench/apt-s3-$n-$r"
        aptly_side apt-s3 "$n" "$r" s3
        ;;
      yum)
        pipe_side pipe yum "$n" "$r" rpm "$O/runs/yum-$n-$r-pipe/store"
        pipe_side pipe-shared yum "$n" "$r" rpm build
        createrepo_side yum "$n" "$r"
        ;;
    esac
  done
}

# The update case: each side's repository of N packages is made once
# (untimed) and copied into a fresh directory for every run.
case_update() {
  local n=$update_n m=$((update_n + 1)) b=$O/update-base r fmt
  echo "-- update: base repositories of $n packages (untimed)"
  mkdir -p "$b"
  for fmt in deb rpm; do
    "$pipe" -q -C "$B/proj-$n-$fmt" --store "$b/pipe-$fmt" publish "${build_id[$n-$fmt]}" >/dev/null
    "$pipe" -q -C "$B/proj-$n-$fmt" --store "$b/pipe-$fmt" promote "${build_id[$n-$fmt]}" --to dev >/dev/null
  done
  aptly_conf "$b/aptly"
  local a=(aptly -config="$b/aptly/aptly.conf")
  {
    "${a[@]}" repo create -distribution=dev -component=main bench
    "${a[@]}" repo add bench "$B/pkgs-$n-deb"
    "${a[@]}" publish repo -batch -gpg-key="$gpg_key" -acquire-by-hash -skip-contents -architectures=amd64 bench
  } >"$O/logs/update-base-aptly.log" 2>&1 || die "aptly base (see $O/logs/update-base-aptly.log)"
  mkdir -p "$b/createrepo"
  cp -al "$B/pkgs-$n-rpm/." "$b/createrepo/"
  createrepo_c --no-database --quiet "$b/createrepo" >/dev/null
  local new_deb new_rpm
  local name
  name=p$(printf %03d "$n") # gen.py's name of package number N
  new_deb=$(ls "$B/pkgs-$m-deb/$name"_*.deb)
  new_rpm=$(ls "$B/pkgs-$m-rpm/$name"-*.rpm)
  sync
  for ((r = 1; r <= update_runs; r++)); do
    echo "-- update n=$n run $r"
    for fmt in deb rpm; do
      mkdir -p "$O/runs/update-$fmt-$n-$r-pipe"
      cp -a "$b/pipe-$fmt" "$O/runs/update-$fmt-$n-$r-pipe/store"
    done
    for fmt in deb rpm; do
      pipe_side pipe "update-$fmt" "$n" "$r" "$fmt" "$O/runs/update-$fmt-$n-$r-pipe/store" "$m"
    done
    # The history of that environment (two entries), as a whole process.
    step history "$m" "$r" pipe history "$pipe" -q -C "$B/proj-$m-deb" \
      --store "$O/runs/update-deb-$n-$r-pipe/store" history dev
    local d=$O/runs/update-deb-$n-$r-aptly
    cp -a "$b/aptly" "$d"
    aptly_conf "$d"
    a=(aptly -config="$d/aptly.conf")
    step update-deb "$n" "$r" aptly repo-add "${a[@]}" repo add bench "$new_deb"
    step update-deb "$n" "$r" aptly publish-update "${a[@]}" publish update -batch -gpg-key="$gpg_key" -skip-contents dev
    check update-deb "$n" "$r" aptly "$m" "$d/root/public" deb
    d=$O/runs/update-rpm-$n-$r-createrepo
    cp -a "$b/createrepo" "$d"
    ln "$new_rpm" "$d/"
    step update-rpm "$n" "$r" createrepo createrepo_c createrepo_c --update --no-database --quiet "$d"
    step update-rpm "$n" "$r" createrepo sign gpg --batch --yes --local-user "$gpg_key" \
      --detach-sign --armor "$d/repodata/repomd.xml"
    check update-rpm "$n" "$r" createrepo "$m" "$d" rpm
  done
}

# The requests case: per size, a fresh prefix on moto; N packages, then N+1.
# objects PREFIX: every object under PREFIX of the bench bucket, "key size".
objects() {
  "$venv_python" -c 'import boto3, sys
s3 = boto3.client("s3")
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="pipe-bench", Prefix=sys.argv[1] + "/"):
    for o in page.get("Contents", []):
        print(o["Key"], o["Size"])' "$1"
}
requests=$O/requests.tsv # size step new-packages requests metadata-bytes
# counted SIZE STEP NEW PREFIX CMD...: runs CMD, appends its requests (moto
# log lines) and the metadata bytes it wrote under PREFIX.
counted() {
  local n=$1 name=$2 new=$3 prefix=$4 before after log=$O/logs/requests-$1.log
  shift 4
  objects "$prefix" | sort >"$O/objects.before"
  before=$(grep -c 'HTTP/1.1"' "$O/logs/moto.log" || true)
  "$@" >>"$log" 2>&1 || die "failed: $* (see $log)"
  after=$(grep -c 'HTTP/1.1"' "$O/logs/moto.log" || true)
  objects "$prefix" | sort >"$O/objects.after"
  local meta
  meta=$(comm -13 "$O/objects.before" "$O/objects.after" |
    awk -v p="$prefix/" '{ k = substr($1, length(p) + 1) }
      k !~ /^(blobs|pool|dists|yum)\// { s += $2 } END { print s + 0 }')
  printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$name" "$new" "$((after - before))" "$meta" >>"$requests"
}
case_requests() {
  start_moto
  local n m prefix url
  for n in $sizes; do
    m=$((n + 1))
    prefix=requests-$n-$(date +%s)
    url=s3://pipe-bench/$prefix
    echo "-- requests n=$n ($url)"
    counted "$n" "publish $n" "$n" "$prefix" "$pipe" -q -C "$B/proj-$n-deb" --store "$url" publish "${build_id[$n-deb]}"
    counted "$n" "promote $n" "$n" "$prefix" "$pipe" -q -C "$B/proj-$n-deb" --store "$url" promote "${build_id[$n-deb]}" --to dev
    counted "$n" "publish +1" 1 "$prefix" "$pipe" -q -C "$B/proj-$m-deb" --store "$url" publish "${build_id[$m-deb]}"
    counted "$n" "promote +1" 1 "$prefix" "$pipe" -q -C "$B/proj-$m-deb" --store "$url" promote "${build_id[$m-deb]}" --to dev
  done
  echo
  echo "S3 requests and metadata written, per step (moto's request log; metadata: new objects but blobs, pool, dists, yum):"
  echo
  echo "| N | step | requests | per new package | metadata written |"
  echo "| --- | --- | --- | --- | --- |"
  awk -F'\t' '{ printf "| %\047d | %s | %\047d | %.2f | %\047d bytes |\n", $1, $2, $4, $4 / $3, $5 }' "$requests"
}

{
  echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  cores: $(nproc)  mem: $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "$("$pipe" --version 2>/dev/null || echo pipe): HEAD $(git -C "$repo" rev-parse --short HEAD), last change outside the benches $(git -C "$repo" log -1 --format=%h -- . ':!benches' ':!BENCHMARKS.md' ':!README.md' ':!scripts')$(git -C "$repo" diff --quiet HEAD -- . ':!benches' ':!BENCHMARKS.md' ':!README.md' ':!scripts' || echo ' + uncommitted changes')"
  echo "measured binary: $pipe (sha256 $(sha256sum <"$pipe" | cut -c1-16)); packages built by $build_pipe (sha256 $(sha256sum <"$build_pipe" | cut -c1-16)); HEAD above is the checkout's, not necessarily the binary's"
  echo "aptly $(aptly version | awk '{print $3}'), $(apt-ftparchive --version 2>/dev/null | head_n 1 || echo apt-ftparchive), createrepo_c $(createrepo_c --version | awk '{print $2}'), $(gpg --version | head_n 1)"
  echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$O/header.txt"

# The local cases at the small sizes first, then the update (and `pipe
# history` of its environment), the local cases at the large sizes, the
# request counts, then S3: the longest last.
sized_cases() { # small|large local|s3
  local n c
  for n in $sizes; do
    case $1 in small) [ "$n" -lt "$large" ] || continue ;; large) [ "$n" -ge "$large" ] || continue ;; esac
    for c in apt apt-s3 yum; do
      case $2-$c in local-apt-s3 | s3-apt | s3-yum) continue ;; esac
      if has_case "$c"; then sized_case "$c" "$n"; fi
    done
  done
}
sized_cases small local
if has_case update; then case_update; fi
sized_cases large local
if has_case requests; then
  # Started here, not in the pipeline's subshell: the EXIT trap stops it.
  start_moto
  case_requests | tee "$O/requests.md"
fi
sized_cases small s3
sized_cases large s3
echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$O/header.txt"

echo
echo "================ summary (median wall seconds; ratio < 1: pipe faster)"
cat "$O/header.txt"
echo
summarize "$times" | tee "$O/summary.md"
if [ -s "$O/checks.txt" ]; then cat "$O/checks.txt"; else echo "checks: every side listed the packages it should"; fi
if [ "${BENCH_KEEP:-0}" = 1 ]; then
  echo "kept $W"
else
  cleanup && moto_pid= && rm -rf "$W"
fi
