#!/usr/bin/env bash
# Cross-builds Komoku for armhf or arm64 on an x86-64 Debian 12 machine (a
# cross build on Debian 13 is not provided yet) and runs every test under
# qemu user-mode emulation: the unit tests, then the integration tests,
# whose target-architecture test programs start the target's komoku through
# the emulator (integration/CMakeLists.txt) and this machine's own Mosquitto
# and Prometheus. Not part of `make test`; see
# docs/operations.md, "Architectures".
#
#   scripts/cross-check.sh [--deb] [--tests=all|unit|none] armhf|arm64
#
#   --deb        also build the target's Debian package (build-<arch>/
#                komoku_<version>-<revision>+deb<N>_<arch>.deb) and check it: its
#                architecture, its Depends (dpkg-shlibdeps on the target's
#                libraries, see below), lintian, and its komoku run under qemu
#   --tests=...  which tests to build and run: all (the default), unit, or
#                none (`make deb ARCH=<arch>` builds the package only)
#
# Environment:
#   JOBS=2                       parallel compile jobs
#   KOMOKU_CROSS_ROOT=/var/cache/komoku-cross   where the sysroots are kept
#   BUILD_DIR=build-<arch>       the build tree (relative to the source tree)
#   SKIP_INSTALL=1               use the tools and sysroot already there
#
# What it installs: crossbuild-essential-<arch> and qemu-user-static (host
# packages, through apt, only after a simulated install shows that nothing
# would be removed). The target's libraries are NOT installed with dpkg as
# <pkg>:<arch>: Multi-Arch co-installation needs the same version for both
# architectures of libc6, libssl3, libsystemd0, ..., which a mirror part-way
# through a point release or a security update does not always offer, and
# apt would then want to change the host's own libraries. Instead the target
# packages and their dependencies are downloaded (`apt-get download`) and
# unpacked with `dpkg -x` into a sysroot that dpkg knows nothing about.
set -euo pipefail

usage() { echo "usage: $0 [--deb] [--tests=all|unit|none] armhf|arm64" >&2; exit 2; }
want_deb=0 tests=all
while [[ ${1:-} == --* ]]; do
  case "$1" in
    --deb) want_deb=1 ;;
    --tests=all | --tests=unit | --tests=none) tests=${1#--tests=} ;;
    *) usage ;;
  esac
  shift
done
arch=${1:-}
case "$arch" in
  armhf) triplet=arm-linux-gnueabihf; qemu=qemu-arm-static ;;
  arm64) triplet=aarch64-linux-gnu; qemu=qemu-aarch64-static ;;
  *) usage ;;
esac

src=$(cd "$(dirname "$0")/.." && pwd)
jobs=${JOBS:-2}
root=${KOMOKU_CROSS_ROOT:-/var/cache/komoku-cross}/$arch
sysroot=$root/sysroot
build=$src/${BUILD_DIR:-build-$arch}
log() { echo "cross-check[$arch]: $*" >&2; }

sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive

# The target's build dependencies: the libraries of scripts/install-deps.sh
# (keep the two in step), fmt (spdlog's), and the C and C++ runtimes.
target_packages=(
  libpaho-mqttpp-dev libpaho-mqtt-dev libssl-dev nlohmann-json3-dev libsqlite3-dev libspdlog-dev
  libfmt-dev libboost-dev zlib1g-dev libcpp-httplib-dev libyaml-cpp-dev libcli11-dev
  libhowardhinnant-date-dev libsystemd-dev libprotobuf-dev libsnappy-dev libre2-dev libgtest-dev libc6-dev
)

# Installs host packages, refusing when apt would remove anything.
install_host() {
  local missing=() p status
  for p in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local plan
  plan=$(apt-get -s install -y --no-install-recommends "${missing[@]}")
  if grep -q '^Remv' <<< "$plan"; then
    grep '^Remv' <<< "$plan" >&2
    log "installing ${missing[*]} would remove the packages above; not done"
    exit 1
  fi
  log "installing ${missing[*]}"
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

make_sysroot() {
  rm -rf "$root/debs"
  mkdir -p "$root/debs"
  : > "$root/status"
  # The whole dependency closure, as if nothing were installed: a status
  # file of our own keeps the host's installed packages out of the answer.
  # The C++ library of the cross compiler's version (12 on Debian 12, 14 on 13).
  local gcc_major specs=() p
  gcc_major=$("$triplet-g++" -dumpversion | cut -d. -f1)
  for p in "${target_packages[@]}" "libstdc++-$gcc_major-dev"; do specs+=("$p:$arch"); done
  apt-get -s -o Dir::State::status="$root/status" -o APT::Install-Recommends=false \
    install "${specs[@]}" | awk '/^Inst /{ v=$3; gsub(/[()]/, "", v); print $2 "=" v }' \
    > "$root/packages.txt"
  # Host-architecture names in the closure (tzdata, debconf, ...) are not
  # needed in the sysroot, except architecture-independent headers: all are
  # downloaded and each kept by its own Architecture field.
  local spec want=() deb_file
  while IFS= read -r spec; do want+=("$spec"); done < "$root/packages.txt"
  log "downloading ${#want[@]} packages into $root/debs"
  (cd "$root/debs" && apt-get download -qq -o APT::Sandbox::User=root "${want[@]}")
  for deb_file in "$root"/debs/*.deb; do
    case "$(dpkg-deb -f "$deb_file" Architecture)" in
      "$arch" | all) ;;
      *) rm "$deb_file" ;;
    esac
  done
  rm -rf "$sysroot.new"
  mkdir -p "$sysroot.new"
  for deb_file in "$root"/debs/*.deb; do dpkg -x "$deb_file" "$sysroot.new"; done
  # Absolute symbolic links (libz.so -> /lib/<triplet>/libz.so.1) would point
  # at the host's files: make them relative, inside the sysroot.
  find "$sysroot.new" -type l -lname '/*' | while IFS= read -r link; do
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$sysroot.new$(readlink "$link")")" \
      "$link"
  done
  rm -rf "$sysroot"
  mv "$sysroot.new" "$sysroot"
  make_shlibs_trees
}

# The package's Depends come from dpkg-shlibdeps, which takes a library's
# dependency from the shlibs or symbols file of the package holding it. The
# target's packages are not installed, so each library package is unpacked
# with its control files (dpkg-deb -R) into a tree of its own, which
# dpkg-shlibdeps searches as a package build tree (-S, see
# packaging/deb/cross-depends.sh).
make_shlibs_trees() {
  rm -rf "$root/shlibs.new"
  mkdir -p "$root/shlibs.new"
  local deb name control
  for deb in "$root"/debs/*.deb; do
    control=$(dpkg-deb --ctrl-tarfile "$deb" | tar -t)
    if grep -Eq '^(\./)?(shlibs|symbols)$' <<< "$control"; then
      name=$(dpkg-deb -f "$deb" Package)
      dpkg-deb -R "$deb" "$root/shlibs.new/$name"
    fi
  done
  rm -rf "$root/shlibs"
  mv "$root/shlibs.new" "$root/shlibs"
}

if [[ -z "${SKIP_INSTALL:-}" ]]; then
  # The host's own tools (cmake, pkg-config) and what the integration tests
  # start (Mosquitto, Prometheus).
  if [[ $tests == all ]]; then
    "$src/scripts/install-deps.sh" test
  else
    "$src/scripts/install-deps.sh"
  fi
  # The architecture is added only while the sysroot is made, so that apt
  # lists its packages (none is installed), and removed again: a target
  # index that fails to load would otherwise make every later
  # `apt-get update` on this machine exit non-zero.
  if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    log "dpkg --add-architecture $arch, until the sysroot is made"
    "${sudo[@]}" dpkg --add-architecture "$arch"
    trap '"${sudo[@]}" dpkg --remove-architecture "$arch"' EXIT
  fi
  # An index that fails (a mirror mid-sync) is reported and skipped: the
  # sysroot then takes the versions of the indexes that did load.
  "${sudo[@]}" apt-get update -qq || log "apt-get update reported errors (above); going on"
  install_host "crossbuild-essential-$arch" qemu-user-static
  make_sysroot
  if [[ -n "$(trap -p EXIT)" ]]; then
    "${sudo[@]}" dpkg --remove-architecture "$arch"
    trap - EXIT
    log "dpkg --remove-architecture $arch"
  fi
fi

# A sysroot made before the package could be cross-built has no trees yet.
if [[ $want_deb -eq 1 && ! -d $root/shlibs ]]; then make_shlibs_trees; fi

log "configure $build"
mkdir -p "$build"
cmake -S "$src" -B "$build" -DCMAKE_TOOLCHAIN_FILE="$src/cmake/toolchain-debian-cross.cmake" \
  -DKOMOKU_CROSS_ARCH="$arch" -DKOMOKU_SYSROOT="$sysroot" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKOMOKU_CROSS_SHLIBS="$root/shlibs" -DKOMOKU_WERROR=ON > "$build/configure.log" ||
  { cat "$build/configure.log" >&2; exit 1; }
start=$(date +%s)
case "$tests" in
  all) cmake --build "$build" -j "$jobs" ;;
  # komoku, the manual page, the unit tests (tests/) and what they link.
  unit) cmake --build "$build" -j "$jobs" --target komoku komoku_package_files
        make -C "$build/tests" -j "$jobs" -s ;;
  none) cmake --build "$build" -j "$jobs" --target komoku komoku_package_files ;;
esac
log "build took $(( $(date +%s) - start )) s with -j $jobs"

komoku=$build/src/app/komoku
log "komoku: $(stat -c %s "$komoku") bytes; stripped: $(
  "$triplet-strip" -o "$build/komoku.stripped" "$komoku" && stat -c %s "$build/komoku.stripped") bytes"
file "$komoku" | sed 's/^/  /' >&2 || true

failed=0
log "komoku --version and check-config under $qemu"
"$build/komoku-emulated" --version || failed=1
"$build/komoku-emulated" check-config -c "$src/config/komoku.yaml" || failed=1

labels=()
case "$tests" in
  all) labels=(unit integration) ;;
  unit) labels=(unit) ;;
esac
for label in "${labels[@]}"; do
  log "$label tests under $qemu"
  start=$(date +%s)
  (cd "$build" && ctest -L "$label" --output-on-failure -j "$jobs") || failed=1
  log "$label tests took $(( $(date +%s) - start )) s"
done

if [[ $want_deb -eq 1 ]]; then
  log "the Debian package"
  rm -f "$build"/komoku_*.deb
  if cmake --build "$build" --target deb > "$build/deb.log" 2>&1; then
    pkg=$(ls "$build"/komoku_*_"$arch".deb)
    log "$(basename "$pkg"): $(stat -c %s "$pkg") bytes"
    log "Depends: $(dpkg-deb -f "$pkg" Depends)"
    [[ $(dpkg-deb -f "$pkg" Architecture) == "$arch" ]] ||
      { log "Architecture is not $arch"; failed=1; }
    if command -v lintian >/dev/null; then
      lintian --fail-on error,warning "$pkg" || { log "lintian: errors or warnings"; failed=1; }
    else
      log "lintian is not installed: not checked"
    fi
    rm -rf "$build/deb-root"
    dpkg-deb -x "$pkg" "$build/deb-root"
    "$qemu" -L "$sysroot" "$build/deb-root/usr/bin/komoku" --version || failed=1
  else
    cat "$build/deb.log" >&2
    failed=1
  fi
fi

if [[ $failed -ne 0 ]]; then
  log "FAILED (see above)"
  exit 1
fi
log "all passed"
