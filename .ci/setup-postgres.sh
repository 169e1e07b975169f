#!/usr/bin/env bash
# Installs PostgreSQL from Debian's packages (if missing), creates a throwaway cluster under /tmp,
# starts it on 127.0.0.1 as the `postgres` user and creates the `patchwatch` database.
#
# Everything it says goes to stderr except the last line, an `export` for the tests:
#     eval "$(bash .ci/setup-postgres.sh)"
#     export PATCHWATCH_PG_URL=postgres://postgres@127.0.0.1:55432/patchwatch
#
# Idempotent: a cluster already running in the same directory is reused.
# Knobs: PATCHWATCH_PG_PORT (default 55432), PATCHWATCH_PG_DIR (default /tmp/patchwatch-pg).
set -euo pipefail

port="${PATCHWATCH_PG_PORT:-55432}"
dir="${PATCHWATCH_PG_DIR:-/tmp/patchwatch-pg}"
db=patchwatch
log() { printf 'setup-postgres: %s\n' "$*" >&2; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
  log "installing postgresql from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
fi
bin="$(pg_bin)"
[ -x "$bin/initdb" ] || { log "no initdb under /usr/lib/postgresql/*/bin"; exit 1; }

# The server refuses to run as root; run everything as the `postgres` user Debian's package made.
as_pg() { runuser -u postgres -- "$@"; }

if as_pg "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
  log "reusing the cluster running in $dir"
else
  rm -rf "$dir"
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  chmod 700 "$dir"
  log "initdb into $dir"
  as_pg "$bin/initdb" -D "$dir" -U postgres -A trust -E UTF8 --no-locale >&2
  log "starting on 127.0.0.1:$port"
  as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200" start >&2 \
    || { cat "$dir/server.log" >&2; exit 1; }
fi

if ! as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
  as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db" >&2
fi
log "ready: database $db on 127.0.0.1:$port (data in $dir; stop with: runuser -u postgres -- $bin/pg_ctl -D $dir stop)"
echo "export PATCHWATCH_PG_URL=postgres://postgres@127.0.0.1:$port/$db"
