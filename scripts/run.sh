#!/usr/bin/env bash
# `make run`: starts a Mosquitto broker on 127.0.0.1:1883 unless something
# already listens there, then runs komoku in the foreground (Ctrl-C stops
# both). Usage: scripts/run.sh KOMOKU_BINARY [CONFIG]
set -euo pipefail
komoku=${1:?usage: run.sh KOMOKU_BINARY [CONFIG]}
config=${2:-}

port_open() {
  (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null
}

broker_pid=""
cleanup() {
  if [[ -n "$broker_pid" ]]; then
    kill "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

if port_open; then
  echo "run: using the MQTT broker already listening on 127.0.0.1:1883" >&2
else
  mkdir -p komoku-data/broker
  cat > komoku-data/broker/mosquitto.conf <<CONF
# Written by scripts/run.sh: a local broker for trying Komoku out.
listener 1883 127.0.0.1
allow_anonymous true
persistence true
persistence_location $(pwd)/komoku-data/broker/
# Keep what arrives while komoku is stopped (the default of 1000 is small).
max_queued_messages 100000
CONF
  # Started as root, mosquitto drops to its own user: let it write its data.
  if [[ $(id -u) -eq 0 ]] && id mosquitto >/dev/null 2>&1; then
    chown mosquitto: komoku-data/broker
  fi
  echo "run: starting mosquitto on 127.0.0.1:1883 (data in komoku-data/broker)" >&2
  mosquitto -c komoku-data/broker/mosquitto.conf &
  broker_pid=$!
  for _ in $(seq 50); do port_open && break; sleep 0.1; done
  port_open || { echo "run: mosquitto did not start" >&2; exit 1; }
fi

args=(run)
if [[ -n "$config" ]]; then args+=(-c "$config"); fi
echo "run: HTTP API at http://127.0.0.1:8080/api/v1/ (unless the config says otherwise); Ctrl-C stops" >&2
"$komoku" "${args[@]}" &
komoku_pid=$!
trap 'kill -TERM "$komoku_pid" 2>/dev/null || true' INT TERM
set +e
wait "$komoku_pid"
status=$?
# A signal interrupts the first wait; wait again for komoku's clean exit.
if kill -0 "$komoku_pid" 2>/dev/null; then wait "$komoku_pid"; status=$?; fi
exit "$status"
