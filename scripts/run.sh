#!/usr/bin/env bash
# `make run`: a throwaway local Postgres (under .data/) with the extension, demo channels, the
# relay on 127.0.0.1:4000 and the demo page (clients/typescript/demo) on 127.0.0.1:4001.
# Ctrl-C stops the page server, the relay and Postgres. Safe to run again.
#
# Written to the data folder, readable by the owner only: jwt-secret (the relay's HS256 secret,
# handed to it in the environment, never on a command line), admin-token (the admin console's
# sign-in token; the relay reads the file, REALTIME_ADMIN_TOKEN_FILE) and env (addresses and a
# token per role, for `. .data/env` in another shell).
#
# Overrides (for running beside another `make run`, as the docs test does): PG_PORT,
# REALTIME_BIND, DEMO_PORT, REALTIME_DATA_DIR (default .data in the checkout).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
root="$PWD"

PG_PORT="${PG_PORT:-54329}"
RELAY_BIND="${REALTIME_BIND:-127.0.0.1:4000}"
DEMO_PORT="${DEMO_PORT:-4001}"
sdk="$root/clients/typescript"
data="${REALTIME_DATA_DIR:-$root/.data}"
mkdir -p "$data"
data="$(cd "$data" && pwd)"
pgdata="$data/pg"
if is_root && ! runuser -u postgres -- test -x "$data"; then
    # The postgres user cannot reach the data folder (e.g. it lives under /root): keep the cluster in /var/tmp.
    pgdata="/var/tmp/realtime-dev-$(echo "$data" | md5sum | cut -c1-8)/pg"
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
demo_pid=""
cleanup() {
    trap - INT TERM EXIT
    if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
        kill -TERM "$demo_pid" 2>/dev/null || true
        wait "$demo_pid" 2>/dev/null || true
    fi
    if [ -n "$relay_pid" ] && kill -0 "$relay_pid" 2>/dev/null; then
        kill -TERM "$relay_pid" 2>/dev/null || true
        wait "$relay_pid" 2>/dev/null || true
    fi
    log "stopping Postgres"
    as_pg "$PG_BIN/pg_ctl" -D "$pgdata" stop -m fast >/dev/null 2>&1 || true
}
# Ctrl-C (or SIGTERM) is how `make run` is meant to end: clean up and exit 0, so make does not
# report the interrupted recipe as "Error 130". Any other exit cleans up with its own status.
on_signal() {
    cleanup
    exit 0
}
trap on_signal INT TERM
trap cleanup EXIT

db_url="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
PGOPTIONS="-c client_min_messages=warning" psql -q -v ON_ERROR_STOP=1 "$db_url" -f "$root/sql/demo/setup.sql" >/dev/null

# The JWT secret: made once, readable by its owner only (also when an older run left it open),
# and given to the relay through its environment: a command line is visible to every user.
umask 077
secret_file="$data/jwt-secret"
[ -s "$secret_file" ] || head -c 32 /dev/urandom | base64 | tr -d '=+/\n' > "$secret_file"
chmod 600 "$secret_file"
secret="$(cat "$secret_file")"
# The admin console's token: made once, owner-only; the relay reads it from the file (its path,
# not the token, is in the relay's environment), so it is on no command line either.
admin_token_file="$data/admin-token"
[ -s "$admin_token_file" ] || head -c 48 /dev/urandom | base64 | tr -d '=+/\n' > "$admin_token_file"
chmod 600 "$admin_token_file"
relay="$TARGET_DIR/debug/realtime-relay"
relay_args=(--database-url "$db_url" --bind "$RELAY_BIND" --relay-id demo)

log "checking the setup (realtime-relay check)"
if ! REALTIME_JWT_SECRET="$secret" REALTIME_ADMIN_TOKEN_FILE="$admin_token_file" "$relay" check "${relay_args[@]}"; then
    die "realtime-relay check failed: fix the FAIL lines above, then run 'make run' again"
fi

token() { REALTIME_JWT_SECRET="$secret" "$relay" token "$@"; }
anon_jwt="$(token --role anon)"
alice_jwt="$(token --role authenticated --sub alice)"
bob_jwt="$(token --role authenticated --sub bob)"
service_jwt="$(token --role service_role --sub backend)"

# For the reader's other shells: `. .data/env` (owner-only, like the secret).
cat > "$data/env" <<ENV
# Written by \`make run\` (scripts/run.sh); tokens are valid for 24 hours. Load with: . .data/env
export DB='$db_url'
export REALTIME_URL='ws://$RELAY_BIND/v1/socket'
export REALTIME_HTTP='http://$RELAY_BIND'
export REALTIME_ADMIN='http://$RELAY_BIND/admin'
export ANON_JWT='$anon_jwt'
export ALICE_JWT='$alice_jwt'
export BOB_JWT='$bob_jwt'
export SERVICE_JWT='$service_jwt'
ENV
umask 022

# The demo page: the SDK's ESM build plus a config file with the relay URL and two users' tokens.
demo_url="(not started: Node.js is not installed)"
if command -v node >/dev/null && command -v npm >/dev/null; then
    if [ ! -d "$sdk/node_modules" ] || [ "$sdk/package-lock.json" -nt "$sdk/node_modules/.package-lock.json" ]; then
        log "installing the TypeScript SDK's dev dependencies (npm ci)"
        (cd "$sdk" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
    log "building the TypeScript SDK (tsc)"
    (cd "$sdk" && npm run --silent build)
    printf 'window.REALTIME_DEMO = {"url": "ws://%s/v1/socket", "users": {"alice": "%s", "bob": "%s"}};\n' \
        "$RELAY_BIND" "$alice_jwt" "$bob_jwt" > "$data/demo-config.js"
    demo_url="http://127.0.0.1:$DEMO_PORT/?user=alice   (and ?user=bob in another window)"
fi

data_shown="$data"
[ "$data" = "$root/.data" ] && data_shown=".data"
cat <<INFO

  realtime is running
  -------------------
  WebSocket   ws://$RELAY_BIND/v1/socket         (health: http://$RELAY_BIND/healthz)
  Postgres    $db_url
  JWT secret  in $data_shown/jwt-secret (owner-only; the relay reads it from REALTIME_JWT_SECRET)
  Admin       http://$RELAY_BIND/admin   sign in with the token in $data_shown/admin-token
              (owner-only; e.g. copy it with: cat $data_shown/admin-token)

  Demo page   $demo_url

  In another shell, from this folder:  . $data_shown/env
  (exports DB, REALTIME_URL, REALTIME_HTTP, REALTIME_ADMIN and ANON_JWT, ALICE_JWT, BOB_JWT,
  SERVICE_JWT)

  Tokens (valid 24 h):
    anon           $anon_jwt
    authenticated  $alice_jwt   (sub=alice)
    authenticated  $bob_jwt   (sub=bob)
    service_role   $service_jwt

  Subscribe (after ". $data_shown/env"; any WebSocket client, e.g. wscat):
    npx --yes wscat -c "ws://$RELAY_BIND/v1/socket?token=\$ALICE_JWT"
    > {"type":"subscribe","ref":1,"channel":"demo"}
    > {"type":"subscribe","ref":2,"channel":"user:alice"}

  Publish from SQL:
    psql '$db_url' -c "select realtime.publish('demo', 'hello', '{\"text\":\"hi\"}')"
  Publish from a trigger:
    psql '$db_url' -c "insert into notes(body) values ('written in SQL')"
  Change a watched table (the demo page's orders update live):
    psql '$db_url' -c "update orders set status = 'shipped' where id = 1"

  Ctrl-C stops the relay and Postgres.

INFO

REALTIME_JWT_SECRET="$secret" REALTIME_ADMIN_TOKEN_FILE="$admin_token_file" "$relay" "${relay_args[@]}" &
relay_pid=$!
# Seed the demo rows once the relay follows the log, so they are in the orders channel's history.
for _ in $(seq 1 100); do
    if command -v node >/dev/null; then
        node -e "fetch('http://$RELAY_BIND/readyz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))" && break
    else
        "$relay" healthcheck --bind "$RELAY_BIND" >/dev/null 2>&1 && break
    fi
    kill -0 "$relay_pid" 2>/dev/null || break
    sleep 0.1
done
PGOPTIONS="-c client_min_messages=warning" psql -q -v ON_ERROR_STOP=1 "$db_url" -f "$root/sql/demo/seed.sql" >/dev/null || true
if [ -f "$data/demo-config.js" ]; then
    node "$sdk/demo/serve.mjs" --port "$DEMO_PORT" --config "$data/demo-config.js" &
    demo_pid=$!
fi
wait "$relay_pid"
