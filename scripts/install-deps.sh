#!/usr/bin/env bash
# Installs what Komoku needs to build, run and test, from Debian packages.
# This is the only place that lists them. Idempotent: installs only what is
# missing, through sudo when not root.
#
#   scripts/install-deps.sh            build + run
#   scripts/install-deps.sh test       also what the tests run against (Prometheus, openssl,
#                                      headless Chromium and its WebDriver for the web page,
#                                      python3-websockets for the WebSocket protocol, nginx
#                                      and apache2-utils' htpasswd for remote write's auth,
#                                      lintian for the package test)
#   scripts/install-deps.sh bench      also Google Benchmark, and Chromium with its WebDriver
#                                      for the page's benchmark
#   scripts/install-deps.sh fuzz       also clang (libFuzzer)
#   scripts/install-deps.sh lint       also clang-format and clang-tidy
#   scripts/install-deps.sh --simulate GROUP...
#                                      show what apt would install (apt-get -s),
#                                      install nothing; fails if a name does not
#                                      resolve
#
# The same names hold on Debian 12 (bookworm) and 13 (trixie)
# (scripts/trixie-check.sh checks every group there).
set -euo pipefail

simulate=0
if [[ ${1:-} == --simulate ]]; then
  simulate=1
  shift
fi

packages=(
  # build
  build-essential cmake pkg-config
  # libraries
  libpaho-mqttpp-dev libpaho-mqtt-dev libssl-dev
  nlohmann-json3-dev libsqlite3-dev libspdlog-dev
  libboost-dev zlib1g-dev libcpp-httplib-dev libyaml-cpp-dev libcli11-dev libhowardhinnant-date-dev tzdata libsystemd-dev
  libre2-dev
  # remote write (protobuf + snappy)
  libprotobuf-dev protobuf-compiler libsnappy-dev
  # test
  libgtest-dev
  # run: the broker and its command-line clients; curl for the quick start
  mosquitto mosquitto-clients curl
)
for extra in "$@"; do
  case "$extra" in
    test) packages+=(prometheus openssl chromium chromium-driver python3-websockets influxdb
                     influxdb-client nginx apache2-utils lintian fakeroot file) ;;
    bench) packages+=(libbenchmark-dev chromium chromium-driver) ;;
    fuzz) packages+=(clang libclang-rt-dev) ;;
    lint) packages+=(clang-format clang-tidy) ;;
    *) echo "install-deps: unknown group '$extra' (known: test, bench, fuzz, lint)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

export DEBIAN_FRONTEND=noninteractive
if [[ $simulate -eq 1 ]]; then
  echo "install-deps: would install ${missing[*]}" >&2
  apt-get install -s -y -qq --no-install-recommends "${missing[@]}" | grep -c '^Inst ' |
    sed 's/^/install-deps: packages with their dependencies: /' >&2
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The test group's servers run only under the tests, on loopback ports the
# tests choose; Debian starts and enables each as a system service when it
# is installed. Those installed just now are stopped and disabled again, so
# that `make test` leaves no nginx on port 80, Prometheus on 9090 or
# InfluxDB on 8086 behind. (Mosquitto stays: `make run` uses the one on
# 1883 when it is there.) Without systemd (a container) nothing was started.
if [[ -d /run/systemd/system ]]; then
  for service in prometheus influxdb nginx; do
    if printf '%s\n' "${missing[@]}" | grep -qx "$service" &&
      "${sudo[@]}" systemctl disable --now "$service" >/dev/null 2>&1; then
      echo "install-deps: $service is for the tests only: its system service is stopped and disabled" >&2
    fi
  done
fi
