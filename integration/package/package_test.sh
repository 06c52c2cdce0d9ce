#!/usr/bin/env bash
# Builds the .deb from the already-built tree (cpack does not rebuild), runs
# lintian on it (any error or warning fails), unpacks it with dpkg-deb -x into
# a temporary root and checks what a user gets.
#   package_test.sh CPACK CPACK_CONFIG VERSION
set -euo pipefail
cpack=$1 config=$2 version=$3

for tool in dpkg-deb dpkg-shlibdeps fakeroot lintian; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool is not installed" >&2
    exit 77
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Build the package into the temp dir (its staging area goes there too).
"$cpack" -G DEB --config "$config" -B "$tmp/out" >"$tmp/cpack.log" 2>&1 ||
  { cat "$tmp/cpack.log" >&2; fail "cpack failed"; }
# The Debian revision comes from packaging/deb/changelog.
debs=("$tmp"/out/komoku_"$version"-*_*.deb)
[[ -f ${debs[0]} ]] || { cat "$tmp/cpack.log" >&2; fail "no komoku_${version}-*_*.deb produced"; }
deb=${debs[0]}
echo "package: $(basename "$deb") ($(stat -c %s "$deb") bytes)"
# On Debian N the revision says +debN: packages built on 12 and 13 depend on
# different library packages and must not share a name.
os_id=$(. /etc/os-release && echo "${ID:-}")
os_version=$(. /etc/os-release && echo "${VERSION_ID:-}")
if [[ $os_id == debian && $os_version =~ ^[0-9]+$ ]]; then
  [[ $(basename "$deb") == komoku_"$version"-*+deb"$os_version"_*.deb ]] ||
    fail "$(basename "$deb") does not say +deb$os_version (Debian $os_version)"
  [[ $(dpkg-deb -f "$deb" Version) == "$version"-*+deb"$os_version" ]] ||
    fail "Version $(dpkg-deb -f "$deb" Version) does not end in +deb$os_version"
fi

# lintian: clean of errors and warnings (informational tags are printed).
# The package's own overrides (/usr/share/lintian/overrides/komoku) apply.
lintian --fail-on error,warning --info "$deb" >"$tmp/lintian.txt" 2>&1 ||
  { cat "$tmp/lintian.txt" >&2; fail "lintian reports errors or warnings (above)"; }
echo "lintian: no errors or warnings ($(grep -c '^I: ' "$tmp/lintian.txt" || true) informational tags)"

# Control data: dependencies from dpkg-shlibdeps, the conffile, the scripts.
dpkg-deb -f "$deb" Package | grep -qx komoku || fail "Package is not komoku"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
for lib in libpaho-mqttpp3 libsqlite3 libspdlog libyaml-cpp libre2 libsystemd0 libstdc++6; do
  [[ $depends == *"$lib"* ]] || fail "Depends does not name $lib"
done
dpkg-deb -e "$deb" "$tmp/control"
grep -qx /etc/komoku/komoku.yaml "$tmp/control/conffiles" || fail "komoku.yaml is not a conffile"
for script in postinst prerm postrm; do
  [[ -x $tmp/control/$script ]] || fail "$script missing or not executable"
  sh -n "$tmp/control/$script" || fail "$script is not valid sh"
done
# Installing must enable or start nothing.
if grep -v '^ *#' "$tmp/control/postinst" |
  grep -Eq 'systemctl +(enable|start|restart)|deb-systemd-helper +enable'; then
  fail "postinst enables or starts the service"
fi

# The files.
root=$tmp/root
dpkg-deb -x "$deb" "$root"
bin=$root/usr/bin/komoku
unit=$root/usr/lib/systemd/system/komoku.service
conf=$root/etc/komoku/komoku.yaml
doc=$root/usr/share/doc/komoku
for f in "$bin" "$unit" "$conf" "$doc/README.md" "$doc/docs/http-api.md" "$doc/copyright" \
         "$doc/changelog.Debian.gz" "$root/usr/share/man/man1/komoku.1.gz"; do
  [[ -f $f ]] || fail "missing ${f#"$root"}"
done
[[ -x $bin ]] || fail "komoku is not executable"
"$bin" --version | grep -qx "komoku $version" || fail "komoku --version does not say $version"
if file "$bin" 2>/dev/null | grep -q 'not stripped'; then fail "komoku is not stripped"; fi

# The manual page names every command of `komoku --help`.
zcat "$root/usr/share/man/man1/komoku.1.gz" >"$tmp/komoku.1"
"$bin" --help | awk '/^Subcommands:/{on=1; next} on && /^  [a-z]/{print $1}' >"$tmp/commands"
[[ -s $tmp/commands ]] || fail "komoku --help lists no commands"
while read -r command; do
  grep -qx ".SS $command" "$tmp/komoku.1" || fail "komoku(1) has no section for '$command'"
done <"$tmp/commands"

# The config validates and puts the data where the unit's StateDirectory is.
"$bin" check-config -c "$conf" >/dev/null || fail "the installed config does not validate"
grep -Eq '^  data_dir: /var/lib/komoku$' "$conf" || fail "store.data_dir is not /var/lib/komoku"

# The unit: the settings the service depends on, and systemd's own parser.
for line in 'Type=notify' 'ExecStart=/usr/bin/komoku run -c /etc/komoku/komoku.yaml' \
            'WatchdogSec=30' 'DynamicUser=yes' 'StateDirectory=komoku' \
            'ConfigurationDirectory=komoku' 'Restart=on-failure' 'RestartPreventExitStatus=2'; do
  grep -qx "$line" "$unit" || fail "the unit lacks '$line'"
done
if command -v systemd-analyze >/dev/null; then
  # Parses the unit offline; prints every setting it does not understand.
  systemd-analyze security --offline=true --root="$root" komoku.service \
    >"$tmp/security.txt" 2>"$tmp/security.err" ||
    { cat "$tmp/security.err" >&2; fail "systemd-analyze could not read the unit"; }
  if grep -Ei 'unknown|invalid|failed to parse' "$tmp/security.err"; then
    fail "systemd-analyze does not understand the unit"
  fi
  score=$(sed -n 's/.*Overall exposure level for komoku.service: \([0-9.]*\).*/\1/p' "$tmp/security.txt")
  echo "systemd-analyze security exposure: $score"
  awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }' ||
    fail "exposure score '$score' is above 2.0"
else
  echo "systemd-analyze not installed; unit parse not checked"
fi
echo "OK"
