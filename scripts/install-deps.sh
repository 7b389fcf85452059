#!/usr/bin/env bash
# Installs what pipe needs on a fresh machine of this kind (Debian, root, Rust
# already present). Idempotent: what is already there is not installed again.
#
#   scripts/install-deps.sh build   C libraries the build needs (sequoia's nettle, libclang)
#   scripts/install-deps.sh test    build + every server and consumer the tests run,
#                                   and cargo-machete (the unused-dependency check)
#   scripts/install-deps.sh moto    only the S3 server used by the tests (a Python venv)
#   scripts/install-deps.sh registry  only the OCI registry the example pushes to (docker-registry)
#   scripts/install-deps.sh machine the tools a machine-image bake runs (mke2fs, debugfs,
#                                   qemu-img, dpkg, chroot; xorriso, mtools for seeds;
#                                   mmdebstrap for the Debian base of the example and tests)
#   scripts/install-deps.sh bench   build + moto + the anchors of benches/publish.sh
#                                   (aptly, apt-ftparchive, createrepo_c, gpg, rpm)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.pipe-dev/venv"
moto_version="5.2.5"
# The unused-dependency check scripts/test.sh runs.
machete_version="0.9.2"

build_packages=(clang libclang-dev nettle-dev pkg-config)
test_packages=(gnupg python3-venv rpm lintian rpmlint dpkg-dev apt-utils dnf dnf-plugins-core createrepo-c aptly
  # OCI images: the registry the tests start, the clients that read what
  # pipe writes, htpasswd for the registry's basic auth, zstd for tar.
  docker-registry skopeo podman umoci zstd apache2-utils
  # dockerd for `docker load` of the build's image tarball (the test starts
  # its own daemon: own data root and socket, vfs, no networking).
  docker.io)
bench_packages=(gnupg python3-venv rpm apt-utils createrepo-c aptly time)
machine_packages=(e2fsprogs qemu-utils dpkg coreutils xorriso mtools dosfstools mmdebstrap
  # setcap: the capability tests set file capabilities on a base and in a bake.
  libcap2-bin tar
  # bsdtar: a base whose attributes are `LIBARCHIVE.xattr.` pax records.
  libarchive-tools)

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "install-deps: apt-get install ${missing[*]}" >&2
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_moto() {
  mkdir -p "$root/.pipe-dev"
  # Several test processes may ask at once: one installs, the others wait.
  exec 9>"$root/.pipe-dev/install.lock"
  flock 9
  if [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$moto_version')" 2>/dev/null; then
    return 0
  fi
  echo "install-deps: moto[server]==$moto_version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$moto_version"
}

install_machete() {
  if cargo machete --version 2>/dev/null | grep -qx "$machete_version"; then
    return 0
  fi
  echo "install-deps: cargo install cargo-machete@$machete_version" >&2
  cargo install --locked --quiet "cargo-machete@$machete_version"
}

case "${1:-test}" in
  build) apt_install "${build_packages[@]}" ;;
  moto) install_moto ;;
  registry) apt_install docker-registry ;;
  machine) apt_install "${machine_packages[@]}" ;;
  test)
    apt_install "${build_packages[@]}" "${test_packages[@]}" "${machine_packages[@]}"
    install_moto
    install_machete
    ;;
  bench)
    apt_install "${build_packages[@]}" "${bench_packages[@]}" "${machine_packages[@]}"
    install_moto
    ;;
  *) echo "usage: $0 build|test|moto|registry|machine|bench" >&2; exit 2 ;;
esac
