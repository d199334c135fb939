#!/usr/bin/env bash
# Make sure the PostgreSQL and Mosquitto the test suite talks to are installed and running.
#
# - Mosquitto missing: as root with apt-get, installs the Debian packages mosquitto and
#   mosquitto-clients; otherwise stops, naming the package.
# - Nothing on 127.0.0.1:1883: starts mosquitto with /etc/mosquitto/mosquitto.conf.
# - Nothing on 127.0.0.1:5432: starts the installed PostgreSQL cluster (pg_ctlcluster).
# A check is skipped when its URL is set in the environment (ELDERCARE_TEST_DATABASE_URL,
# ELDERCARE_MQTT_URL): then you run that service yourself.
# Used by `make test`, `make bench` and .ci/run.
set -euo pipefail

say() { echo "ensure-services: $*" >&2; }
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
is_root() { [ "$(id -u)" = 0 ]; }
wait_for() { # host port name
  for _ in $(seq 1 60); do
    if listening "$1" "$2"; then return 0; fi
    sleep 0.5
  done
  say "$3 did not start listening on $1:$2 within 30 s."
  return 1
}

# --- Mosquitto --------------------------------------------------------------------------------------
if ! command -v mosquitto >/dev/null 2>&1; then
  if is_root && command -v apt-get >/dev/null 2>&1; then
    say "mosquitto is not installed; installing the Debian packages mosquitto and mosquitto-clients"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
  else
    say "Mosquitto is not installed and cannot be installed here (needs root and apt-get)."
    say "Install the package 'mosquitto' (Debian/Ubuntu: sudo apt-get install mosquitto mosquitto-clients) and re-run."
    exit 1
  fi
fi

if [ -n "${ELDERCARE_MQTT_URL:-}" ]; then
  say "ELDERCARE_MQTT_URL is set; not managing the local broker"
elif listening 127.0.0.1 1883; then
  say "MQTT broker on 127.0.0.1:1883: up"
else
  if ! is_root; then
    say "Nothing listens on 127.0.0.1:1883. Start Mosquitto (sudo mosquitto -d -c /etc/mosquitto/mosquitto.conf) and re-run."
    exit 1
  fi
  say "starting mosquitto (/etc/mosquitto/mosquitto.conf)"
  mkdir -p /run/mosquitto
  if id mosquitto >/dev/null 2>&1; then chown mosquitto /run/mosquitto; fi
  mosquitto -d -c /etc/mosquitto/mosquitto.conf
  wait_for 127.0.0.1 1883 mosquitto
  say "MQTT broker on 127.0.0.1:1883: started"
fi

# --- PostgreSQL -------------------------------------------------------------------------------------
if [ -n "${ELDERCARE_TEST_DATABASE_URL:-}" ]; then
  say "ELDERCARE_TEST_DATABASE_URL is set; not managing the local PostgreSQL"
elif listening 127.0.0.1 5432; then
  say "PostgreSQL on 127.0.0.1:5432: up"
else
  version="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -z "$version" ] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
    say "PostgreSQL is not installed (no cluster in /etc/postgresql)."
    say "Install the Debian package 'postgresql' and let user postgres connect from 127.0.0.1 without a password,"
    say "or point ELDERCARE_TEST_DATABASE_URL at a PostgreSQL server you run."
    exit 1
  fi
  if ! is_root; then
    say "PostgreSQL $version is installed but not running. Start it (sudo pg_ctlcluster $version main start) and re-run."
    exit 1
  fi
  say "starting PostgreSQL $version (cluster main)"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  wait_for 127.0.0.1 5432 PostgreSQL
  say "PostgreSQL on 127.0.0.1:5432: started"
fi
