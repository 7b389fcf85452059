#!/usr/bin/env bash
# The README's first command: runs the example pipeline in examples/hello end
# to end on the default local store (examples/hello/.pipe/store), installing
# only what the build needs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh build
cargo build --quiet -p pipeline --bin pipe
pipe="$PWD/target/debug/pipe"

step() { printf '\n$ pipe %s\n' "$*" >&2; "$pipe" -C examples/hello "$@"; }

step validate
step status
