#!/usr/bin/env bash
# Installs rsyslog (Debian packages) and starts a private rsyslogd on loopback for the
# patchwatch-sinks integration tests: RFC 5424 over plain TCP (RFC 6587 octet counting), TLS
# (RFC 5425, ossl driver, test certificates generated here) and UDP, all written to one file.
#
# Usage: eval "$(bash .ci/setup-rsyslog.sh)"
# stdout carries only `export VAR=value` lines; everything else goes to stderr.
# Idempotent: a second run reuses the running daemon and the generated certificates.
set -euo pipefail
exec 3>&1 1>&2

DIR=${PATCHWATCH_RSYSLOG_DIR:-/tmp/patchwatch-rsyslog}
TCP_PORT=${PATCHWATCH_RSYSLOG_TCP_PORT:-16514}
TLS_PORT=${PATCHWATCH_RSYSLOG_TLS_PORT:-16515}
UDP_PORT=${PATCHWATCH_RSYSLOG_UDP_PORT:-16516}

if ! command -v rsyslogd >/dev/null || ! dpkg -s rsyslog-openssl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends rsyslog rsyslog-openssl openssl
fi
RSYSLOGD=$(command -v rsyslogd)

mkdir -p "$DIR/work" "$DIR/certs"
CERTS="$DIR/certs"
if [ ! -s "$CERTS/server.pem" ]; then
  # A throwaway CA and a server certificate for 127.0.0.1 / localhost, valid for the test run only.
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=patchwatch test CA" \
    -keyout "$CERTS/ca.key" -out "$CERTS/ca.pem" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$CERTS/server.key" -out "$CERTS/server.csr"
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' > "$CERTS/ext.cnf"
  openssl x509 -req -in "$CERTS/server.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" -CAcreateserial \
    -days 30 -out "$CERTS/server.pem" -extfile "$CERTS/ext.cnf"
fi

OUT="$DIR/messages.log"
CONF="$DIR/rsyslog.conf"
PID="$DIR/rsyslogd.pid"
cat > "$CONF" <<CONF
global(workDirectory="$DIR/work" maxMessageSize="64k")
module(load="imtcp" maxSessions="200")
module(load="imudp")
input(type="imtcp" address="127.0.0.1" port="$TCP_PORT" ruleset="patchwatch")
input(type="imtcp" address="127.0.0.1" port="$TLS_PORT" ruleset="patchwatch"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon"
      streamDriver.CAFile="$CERTS/ca.pem" streamDriver.CertFile="$CERTS/server.pem"
      streamDriver.KeyFile="$CERTS/server.key")
input(type="imudp" address="127.0.0.1" port="$UDP_PORT" ruleset="patchwatch")
ruleset(name="patchwatch") {
  action(type="omfile" file="$OUT" template="RSYSLOG_SyslogProtocol23Format" flushOnTXEnd="on" asyncWriting="off")
}
CONF

running() { [ -s "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; }
if ! running; then
  "$RSYSLOGD" -N1 -f "$CONF" >&2
  "$RSYSLOGD" -f "$CONF" -i "$PID" 3>&-
fi
for _ in $(seq 1 50); do
  if running && (exec 9<>"/dev/tcp/127.0.0.1/$TCP_PORT") 2>/dev/null && (exec 9<>"/dev/tcp/127.0.0.1/$TLS_PORT") 2>/dev/null; then
    break
  fi
  sleep 0.2
done
running || { echo "rsyslogd did not start; config $CONF" >&2; exit 1; }
touch "$OUT"

exec 1>&3
echo "export PATCHWATCH_RSYSLOG_TCP=127.0.0.1:$TCP_PORT"
echo "export PATCHWATCH_RSYSLOG_TLS=127.0.0.1:$TLS_PORT"
echo "export PATCHWATCH_RSYSLOG_UDP=127.0.0.1:$UDP_PORT"
echo "export PATCHWATCH_RSYSLOG_CA=$CERTS/ca.pem"
echo "export PATCHWATCH_RSYSLOG_CERT=$CERTS/server.pem"
echo "export PATCHWATCH_RSYSLOG_KEY=$CERTS/server.key"
echo "export PATCHWATCH_RSYSLOG_OUTPUT=$OUT"
echo "export PATCHWATCH_RSYSLOG_PIDFILE=$PID"
echo "export PATCHWATCH_RSYSLOGD=$RSYSLOGD"
