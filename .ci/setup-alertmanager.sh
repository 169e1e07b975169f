#!/usr/bin/env bash
# Installs prometheus-alertmanager (Debian package) and starts a private, non-clustered instance on
# loopback for the patchwatch-sinks routing tests.
#
# Usage: eval "$(bash .ci/setup-alertmanager.sh)"
# stdout carries only `export VAR=value` lines; everything else goes to stderr. Idempotent.
set -euo pipefail
exec 3>&1 1>&2

DIR=${PATCHWATCH_ALERTMANAGER_DIR:-/tmp/patchwatch-alertmanager}
PORT=${PATCHWATCH_ALERTMANAGER_PORT:-19093}

if ! command -v prometheus-alertmanager >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends prometheus-alertmanager curl
fi
AM=$(command -v prometheus-alertmanager)
mkdir -p "$DIR/data"
# Notifications go nowhere: the tests read alerts back through the API, which is what we check.
cat > "$DIR/alertmanager.yml" <<CONF
route:
  receiver: blackhole
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: blackhole
CONF

ready() { curl -fsS "http://127.0.0.1:$PORT/-/ready" >/dev/null 2>&1; }
if ! ready; then
  nohup "$AM" --config.file="$DIR/alertmanager.yml" --storage.path="$DIR/data" \
    --web.listen-address="127.0.0.1:$PORT" --cluster.listen-address="" \
    >"$DIR/alertmanager.log" 2>&1 3>&- &
  echo $! > "$DIR/alertmanager.pid"
fi
for _ in $(seq 1 100); do ready && break; sleep 0.2; done
ready || { echo "alertmanager did not become ready; see $DIR/alertmanager.log" >&2; tail -20 "$DIR/alertmanager.log" >&2; exit 1; }

exec 1>&3
echo "export PATCHWATCH_ALERTMANAGER_URL=http://127.0.0.1:$PORT"
