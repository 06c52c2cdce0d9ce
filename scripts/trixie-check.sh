#!/usr/bin/env bash
# Checks Komoku on Debian 13 (trixie) from a Debian machine of another
# release: in a debootstrap chroot of trixie it runs scripts/install-deps.sh
# (the base group installed, the other groups resolved by apt without
# installing), builds komoku, the unit tests and the package with trixie's
# compiler and libraries, runs the unit tests, runs trixie's lintian on the
# package, installs the package with apt and starts the installed komoku.
# Not part of `make test`; see docs/operations.md, "Debian 13".
#
#   scripts/trixie-check.sh
#
# Environment:
#   KOMOKU_TRIXIE_ROOT=/var/tmp/komoku-trixie   the chroot (made once, then
#                                 reused; delete it to start afresh)
#   MIRROR=http://deb.debian.org/debian
#   JOBS=2                        parallel compile jobs
#
# Needs root (debootstrap, chroot, mount) and the debootstrap package. The
# chroot shares this machine's network and /dev; /proc is mounted for the
# run and unmounted at the end, whatever happens.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
root=${KOMOKU_TRIXIE_ROOT:-/var/tmp/komoku-trixie}
mirror=${MIRROR:-http://deb.debian.org/debian}
jobs=${JOBS:-2}
chroot_dir=$root/chroot
log() { echo "trixie-check: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
  echo "trixie-check: needs root (debootstrap, chroot, mount); run it with sudo" >&2
  exit 2
fi
command -v debootstrap >/dev/null ||
  { echo "trixie-check: needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }

# The chroot: made into a new directory and moved into place only when
# debootstrap succeeded, so an interrupted run leaves nothing half-made.
if [[ ! -x $chroot_dir/usr/bin/apt-get ]]; then
  log "debootstrap trixie into $chroot_dir (minbase, from $mirror)"
  rm -rf "$chroot_dir.new"
  mkdir -p "$root"
  debootstrap --variant=minbase --include=ca-certificates trixie "$chroot_dir.new" "$mirror" \
    > "$root/debootstrap.log" 2>&1 || { tail -20 "$root/debootstrap.log" >&2; exit 1; }
  mv "$chroot_dir.new" "$chroot_dir"
fi

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" || true; done
}
trap cleanup EXIT
for m in proc dev dev/pts; do
  mountpoint -q "$chroot_dir/$m" && continue
  case "$m" in
    proc) mount -t proc proc "$chroot_dir/proc" ;;
    *) mount --bind "/$m" "$chroot_dir/$m" ;;
  esac
  mounted+=("$chroot_dir/$m")
done
cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
in_chroot() { chroot "$chroot_dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"; }

log "$(in_chroot cat /etc/debian_version) in $chroot_dir; apt-get update, upgrade"
in_chroot apt-get update -qq
in_chroot apt-get -y -qq dist-upgrade > /dev/null

# The source as it is in this tree (tracked and new files, edits included).
log "copying the source tree to /src"
rm -rf "$chroot_dir/src" "$chroot_dir/build"
mkdir -p "$chroot_dir/src"
git -C "$src" ls-files -z --cached --others --exclude-standard |
  (cd "$src" && tar --null -T - -cf - --ignore-failed-read) | tar -xf - -C "$chroot_dir/src"

failed=()
step() { # NAME COMMAND...: runs a step, records a failure and goes on.
  local name=$1 start=$SECONDS
  shift
  log "$name"
  if "$@"; then
    log "$name: ok ($((SECONDS - start)) s)"
  else
    log "$name: FAILED ($((SECONDS - start)) s)"
    failed+=("$name")
  fi
}

step "install-deps.sh (base, installed)" in_chroot /src/scripts/install-deps.sh
for group in test bench fuzz lint; do
  step "install-deps.sh $group (resolved, not installed)" \
    in_chroot /src/scripts/install-deps.sh --simulate "$group"
done
# lintian for the package check below; dpkg-deb, fakeroot and file for the
# package test.
step "install lintian" in_chroot apt-get install -y -qq --no-install-recommends \
  lintian fakeroot file

step "configure" in_chroot cmake -S /src -B /build -DKOMOKU_WERROR=ON
# komoku, the package and the unit tests (tests/); not the integration tests.
step "build komoku and the package" in_chroot nice cmake --build /build -j "$jobs" --target deb
step "build the unit tests" in_chroot nice make -C /build/tests -j "$jobs" -s
step "unit tests" in_chroot sh -c "cd /build && ctest -L unit -j $jobs --output-on-failure \
  > /build/ctest-unit.log 2>&1; rc=\$?; tail -n 25 /build/ctest-unit.log; exit \$rc"

deb=$(cd "$chroot_dir/build" && ls komoku_*.deb 2>/dev/null | head -n 1 || true)
if [[ -n $deb ]]; then
  log "package: $deb; Depends: $(dpkg-deb -f "$chroot_dir/build/$deb" Depends)"
  step "lintian (trixie's) on $deb" in_chroot lintian --fail-on error,warning --info "/build/$deb"
  step "apt install ./$deb" in_chroot apt-get install -y -qq "/build/$deb"
  step "komoku --version" in_chroot komoku --version
  step "check-config of the installed config" in_chroot komoku check-config \
    -c /etc/komoku/komoku.yaml
  step "man komoku" in_chroot sh -c "zcat /usr/share/man/man1/komoku.1.gz | grep -q '^.TH KOMOKU 1'"
  # The installed binary serves its web page: a data directory of its own,
  # a port the OS chose, no broker needed to start.
  step "installed komoku run serves / and /api/v1/keys" in_chroot sh -ec '
    d=$(mktemp -d)
    printf "store:\n  data_dir: %s/data\nhttp:\n  listen: 127.0.0.1:0\n" "$d" > "$d/k.yaml"
    komoku run -c "$d/k.yaml" --ready-file "$d/ready" > "$d/log" 2>&1 & pid=$!
    i=0; while [ ! -s "$d/ready" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
    port=$(sed -n "s/.*\"http_port\": *\([0-9]*\).*/\1/p" "$d/ready")
    ok=0
    if [ -n "$port" ] &&
       curl -fsS "http://127.0.0.1:$port/" | grep -qi "<html" &&
       curl -fsS "http://127.0.0.1:$port/api/v1/keys" | grep -q "\"keys\""; then ok=1; fi
    kill $pid; wait $pid || true
    [ $ok = 1 ] || { cat "$d/log"; exit 1; }'
else
  failed+=("no package built")
fi

if [[ ${#failed[@]} -ne 0 ]]; then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all passed"
