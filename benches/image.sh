#!/usr/bin/env bash
# OCI image benchmark (issue 13): an image with a 200 MiB payload on a real
# registry (docker-registry on 127.0.0.1, own config and storage), against
# skopeo on the same bytes:
#   push     `pipe publish` of a fresh build (the store's upload and, beside it,
#            the registry's: layers up to 1 GiB in one streamed PUT)
#            vs  `skopeo copy oci-archive:NAME.oci.tar docker://…` of the
#            same layout tarball into another repository of the same registry
#   seed     `pipe registry seed` of the same store into another namespace of the
#            registry: the registry push alone (blobs read from the store)
#   again    `pipe publish` with nothing changed (store and registry have all)
#   tag      the tag move of `pipe promote --to dev` (the registry view's own work,
#            from promote's --json timings: `work_seconds`; `view_ms` adds the view
#            state's claim and write around it)  vs
#            `skopeo copy docker://…:BUILD docker://…:dev`
# and the build of the image (`pipe build`) for reference.
#
#   benches/image.sh                      # 200 MiB, 3 runs of each
#   BENCH_MIB=20 BENCH_RUNS=1 benches/image.sh   # smoke run
#
# Environment: BENCH_MIB (payload, default 200), BENCH_RUNS (default 3),
# BENCH_PIPE (a pipe binary instead of a release build), BENCH_DIR, BENCH_KEEP=1.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
die() { echo "bench: error: $*" >&2; exit 1; }
# shellcheck source=benches/lib.sh
. "$here/lib.sh"

mib=${BENCH_MIB:-200}
runs=${BENCH_RUNS:-3}
for t in docker-registry skopeo python3; do command -v "$t" >/dev/null || die "$t missing: scripts/install-deps.sh test"; done
bench_pipe
bench_workdir pipe-image-bench registry
[ -n "${BENCH_KEEP:-}" ] || trap 'kill "${reg_pid:-0}" 2>/dev/null || true; rm -rf "$W"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
host=127.0.0.1:$port
printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s/registry/storage\nhttp:\n  addr: %s\n' "$W" "$host" >"$W/registry/config.yml"
/usr/bin/docker-registry serve "$W/registry/config.yml" >"$W/registry/log" 2>&1 &
reg_pid=$!
trap 'kill "$reg_pid" 2>/dev/null || true; [ -n "${BENCH_KEEP:-}" ] || rm -rf "$W"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

now_ms() { date +%s%3N; }
policy=$W/policy.json
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$policy"

# One project per run (a fresh store, a fresh version) with its own payload
# bytes: a layer pushed by an earlier run would be mounted or skipped (skopeo
# remembers which repositories have a blob and mounts it from there).
project() { # DIR VERSION
  mkdir -p "$1/data"
  head -c $((mib << 20)) /dev/urandom >"$1/data/payload.bin"
  cat >"$1/pipeline.toml" <<TOML
[project]
name = "bench"
version = "$2"
source_date_epoch = 1700000000

[registry]
url = "$host/bench"
insecure = true

[environments.dev]

[packages.payload]
summary = "payload"
maintainer = "Bench <bench@example.com>"
arch = "all"
formats = ["deb"]
compression = "none"
files = [ { src = "data/", dst = "/srv/data/" } ]

[images.app]
packages = ["payload"]
entrypoint = ["/bin/true"]
TOML
  (cd "$1" && "$pipe" keys generate --uid "Bench <bench@example.com>" --algo ed25519 >/dev/null)
}

echo "== payload $mib MiB, $runs run(s), registry $host"
printf '%-4s %10s %10s %10s %10s %10s %10s %10s %10s %10s\n' run build_s publish_s seed_s skopeo_s again_ms tag_ms view_ms skopeo_tag_ms pushed_MiB
for i in $(seq "$runs"); do
  d=$W/p$i
  project "$d" "1.0.$i"
  t0=$(now_ms); "$pipe" -C "$d" -q build >/dev/null; t1=$(now_ms)
  build=$(cat "$d/.pipe/builds/latest")
  t2=$(now_ms); "$pipe" -C "$d" --json publish >"$d/publish.json"; t3=$(now_ms)
  pushed=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(sum(i["report"]["bytes_uploaded"] for i in j["images"])>>20)' "$d/publish.json")
  t4=$(now_ms)
  skopeo --policy "$policy" copy -q --dest-tls-verify=false "oci-archive:$d/.pipe/builds/$build/app.oci.tar" "docker://$host/skopeo$i/app:$build" >/dev/null
  t5=$(now_ms)
  t6=$(now_ms); "$pipe" -C "$d" -q publish >/dev/null; t7=$(now_ms)
  # The registry push alone: the same store into another namespace.
  sed -i "s|url = \"$host/bench\"|url = \"$host/seed$i\"|" "$d/pipeline.toml"
  ts0=$(now_ms); "$pipe" -C "$d" -q registry seed >/dev/null; ts1=$(now_ms)
  sed -i "s|url = \"$host/seed$i\"|url = \"$host/bench\"|" "$d/pipeline.toml"
  "$pipe" -C "$d" --json promote --to dev >"$d/promote.json"
  read -r tag_ms view_ms < <(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); v=[v for v in j["repositories"]["views"] if v["view"]=="registry-tag"][0]; print(round(1000*v["work_seconds"]), round(1000*v["seconds"]))' "$d/promote.json")
  t8=$(now_ms)
  skopeo --policy "$policy" copy -q --src-tls-verify=false --dest-tls-verify=false "docker://$host/skopeo$i/app:$build" "docker://$host/skopeo$i/app:dev" >/dev/null
  t9=$(now_ms)
  printf '%-4s %10.2f %10.2f %10.2f %10.2f %10d %10d %10d %10d %10d\n' "$i" \
    "$(echo "($t1-$t0)/1000" | bc -l)" "$(echo "($t3-$t2)/1000" | bc -l)" "$(echo "($ts1-$ts0)/1000" | bc -l)" "$(echo "($t5-$t4)/1000" | bc -l)" \
    $((t7 - t6)) "$tag_ms" "$view_ms" $((t9 - t8)) "$pushed"
done
echo "publish_s: store + registry, fresh store and fresh repository; seed_s: pipe registry seed of that store into a fresh"
echo "namespace (the registry push alone, process included); skopeo_s: the same tarball into another repository;"
echo "again_ms: pipe publish with nothing to do (process included); tag_ms: the tag move of promote (one manifest PUT), from its"
echo "--json timings; view_ms: the registry view with its state's claim and write; skopeo_tag_ms: skopeo copy of the tag (process included)."
