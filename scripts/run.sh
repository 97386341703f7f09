#!/usr/bin/env bash
# `make run`: a throwaway local Postgres (under .data/) with the extension, a demo channel, and
# the relay on 127.0.0.1:4000. Ctrl-C stops the relay and Postgres. Safe to run again.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
root="$PWD"

PG_PORT="${PG_PORT:-54329}"
RELAY_BIND="${REALTIME_BIND:-127.0.0.1:4000}"
data="$root/.data"
mkdir -p "$data"
pgdata="$data/pg"
if is_root && ! runuser -u postgres -- test -x "$data"; then
    # The postgres user cannot reach the checkout (e.g. it lives under /root): keep the cluster in /var/tmp.
    pgdata="/var/tmp/realtime-dev-$(echo "$root" | md5sum | cut -c1-8)/pg"
    log "the postgres user cannot enter $data; keeping the cluster in $pgdata"
fi
pg_owned_dir "$(dirname "$pgdata")"
pg_owned_dir "$pgdata"

if [ ! -f "$pgdata/PG_VERSION" ]; then
    log "creating a Postgres 15 cluster in $pgdata"
    as_pg "$PG_BIN/initdb" -D "$pgdata" -A trust -U postgres >/dev/null
fi
if as_pg "$PG_BIN/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    log "stopping a Postgres left running by an earlier run"
    as_pg "$PG_BIN/pg_ctl" -D "$pgdata" stop -m fast >/dev/null
fi
log "starting Postgres on 127.0.0.1:$PG_PORT (wal_level=logical)"
as_pg "$PG_BIN/pg_ctl" -D "$pgdata" -w -l "$pgdata/server.log" start -o \
    "-p $PG_PORT -c listen_addresses=127.0.0.1 -k /tmp -c wal_level=logical -c max_replication_slots=20 -c max_wal_senders=20 -c max_slot_wal_keep_size=1GB" >/dev/null

relay_pid=""
cleanup() {
    trap - INT TERM EXIT
    if [ -n "$relay_pid" ] && kill -0 "$relay_pid" 2>/dev/null; then
        kill -TERM "$relay_pid" 2>/dev/null || true
        wait "$relay_pid" 2>/dev/null || true
    fi
    log "stopping Postgres"
    as_pg "$PG_BIN/pg_ctl" -D "$pgdata" stop -m fast >/dev/null 2>&1 || true
}
trap cleanup INT TERM EXIT

db_url="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
PGOPTIONS="-c client_min_messages=warning" psql -q -v ON_ERROR_STOP=1 "$db_url" -f "$root/sql/demo/setup.sql" >/dev/null

secret_file="$data/jwt-secret"
[ -s "$secret_file" ] || head -c 32 /dev/urandom | base64 | tr -d '=+/\n' > "$secret_file"
secret="$(cat "$secret_file")"
relay="$TARGET_DIR/debug/realtime-relay"
relay_args=(--database-url "$db_url" --bind "$RELAY_BIND" --jwt-secret "$secret" --relay-id demo)

log "checking the setup (realtime-relay check)"
if ! "$relay" check "${relay_args[@]}"; then
    die "realtime-relay check failed: fix the FAIL lines above, then run 'make run' again"
fi

anon_jwt="$("$relay" token --jwt-secret "$secret" --role anon)"
alice_jwt="$("$relay" token --jwt-secret "$secret" --role authenticated --sub alice)"
service_jwt="$("$relay" token --jwt-secret "$secret" --role service_role --sub backend)"

cat <<INFO

  realtime is running
  -------------------
  WebSocket   ws://$RELAY_BIND/v1/socket         (health: http://$RELAY_BIND/healthz)
  Postgres    $db_url
  JWT secret  $secret   (in .data/jwt-secret)

  Tokens (valid 24 h):
    anon           $anon_jwt
    authenticated  $alice_jwt   (sub=alice)
    service_role   $service_jwt

  Subscribe (any WebSocket client; e.g. npx wscat):
    npx wscat -c 'ws://$RELAY_BIND/v1/socket?token=$alice_jwt'
    > {"type":"subscribe","ref":1,"channel":"demo"}
    > {"type":"subscribe","ref":2,"channel":"user:alice"}

  Publish from SQL:
    psql '$db_url' -c "select realtime.publish('demo', 'hello', '{\"text\":\"hi\"}')"
  Publish from a trigger:
    psql '$db_url' -c "insert into notes(body) values ('written in SQL')"

  Ctrl-C stops the relay and Postgres.

INFO

"$relay" "${relay_args[@]}" &
relay_pid=$!
wait "$relay_pid"
