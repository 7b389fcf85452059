#!/usr/bin/env bash
# The README's first command: runs the example pipeline in examples/hello end
# to end on the default local store (examples/hello/.pipe/store), installing
# only what the build needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh build
scripts/install-deps.sh registry
scripts/install-deps.sh machine
cargo build --quiet -p pipeline --bin pipe
target=${CARGO_TARGET_DIR:-target}
case $target in /*) ;; *) target=$PWD/$target ;; esac
pipe="$target/debug/pipe"
example=examples/hello

step() { printf '\n$ pipe %s\n' "$*" >&2; "$pipe" -C "$example" "$@"; }

# The example pushes its image to `[registry] url = "127.0.0.1:5000/hello"`:
# a registry of its own on loopback (own config, storage under .pipe/), unless
# one is listening there already; stopped at the end.
if ! (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null; then
  reg="$PWD/$example/.pipe/registry"
  mkdir -p "$reg"
  printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s/storage\nhttp:\n  addr: 127.0.0.1:5000\n' "$reg" >"$reg/config.yml"
  /usr/bin/docker-registry serve "$reg/config.yml" >"$reg/log" 2>&1 &
  registry_pid=$!
  trap 'kill "$registry_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/5000) 2>/dev/null && break; sleep 0.1; done
fi

# The machine image's base, a Debian root filesystem, is made once (not in git);
# the tests' cached copy is reused when there is one.
base=$example/vendor/rootfs.tar.gz
cached=.pipe-dev/cache/debian-bookworm-essential-v1.tar.gz
if [ ! -e "$base" ]; then
  if [ -e "$cached" ]; then
    cp "$cached" "$base"
  else
    printf '\n$ mmdebstrap --variant=essential --mode=root bookworm %s\n' "$base" >&2
    mmdebstrap --variant=essential --mode=root --quiet bookworm "$base.partial.tar.gz"
    mv "$base.partial.tar.gz" "$base"
  fi
fi

step validate
# The project's signing key is made once and kept out of git (keys/ is ignored).
if [ ! -e "$example/keys/release.key" ]; then
  step keys generate --uid "Hello Release <release@example.com>"
fi
step build
step keys export --armor --out release.asc
step verify --keyring release.asc
step publish
step promote --to dev
step promote --to staging
step promote --to prod
# Any OCI client sees the promoted image by its tag (and `pipe status` by digest).
if command -v skopeo >/dev/null; then
  printf '\n$ skopeo inspect --tls-verify=false docker://127.0.0.1:5000/hello/hello:prod\n' >&2
  skopeo inspect --tls-verify=false --format '{{.Digest}}' docker://127.0.0.1:5000/hello/hello:prod
fi
step history prod --keyring release.asc
step status
# A deploy of prod into a local directory: verified against release.asc,
# unpacked into .pipe/deploy/prod/releases/BUILD, switched via `current`;
# it prints the time spent in each state.
step deploy --env prod --target .pipe/deploy/prod --keyring release.asc --set port=8080
# The machine image promoted to prod, verified, with the cloud-init seed that
# writes prod's deploy-time files at first boot; the signed pointer an
# autoscaler reads is .pipe/store/machines/web/prod.json(.asc).
step deploy --env prod --machine web --out .pipe/deploy/prod-machine --keyring release.asc --set port=8080
