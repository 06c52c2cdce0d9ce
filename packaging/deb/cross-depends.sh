#!/bin/sh
# The Depends of a cross-built package, for CPack (which runs dpkg-shlibdeps
# only against the build machine's installed packages): dpkg-shlibdeps for
# the target architecture, searching the target's library packages unpacked
# with their control files, one tree per package (scripts/cross-check.sh
# makes them with dpkg-deb -R). Writes a CPack project config file that sets
# CPACK_DEBIAN_PACKAGE_DEPENDS.
#
#   cross-depends.sh ARCH TREES BINARY EXTRA_DEPENDS OUT
set -eu

if [ $# -ne 5 ]; then
  echo "usage: $0 ARCH TREES BINARY EXTRA_DEPENDS OUT" >&2
  exit 2
fi
arch=$1 trees=$2 binary=$3 extra=$4 out=$5
if [ ! -d "$trees" ]; then
  echo "cross-depends: no library trees in $trees (scripts/cross-check.sh $arch makes them)" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# dpkg-shlibdeps reads debian/control and looks at the binary from within a
# package build tree.
mkdir -p "$tmp/debian" "$tmp/pkg/DEBIAN" "$tmp/pkg/usr/bin"
printf 'Source: komoku\n\nPackage: komoku\nArchitecture: any\n' > "$tmp/debian/control"
cp "$binary" "$tmp/pkg/usr/bin/komoku"
set --
for tree in "$trees"/*/; do set -- "$@" "-S${tree%/}"; done
(cd "$tmp" && DEB_HOST_ARCH=$arch dpkg-shlibdeps -O "$@" pkg/usr/bin/komoku) > "$tmp/substvars"
depends=$(sed -n 's/^shlibs:Depends=//p' "$tmp/substvars")
if [ -z "$depends" ]; then
  echo "cross-depends: dpkg-shlibdeps found no dependencies for $binary" >&2
  exit 1
fi
printf 'set(CPACK_DEBIAN_PACKAGE_DEPENDS "%s, %s")\n' "$extra" "$depends" > "$out"
