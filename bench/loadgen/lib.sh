# Helpers for bench/latency/run.sh and bench/fanout/run.sh: the throwaway cluster, the relay,
# loadgen runs and their summaries. Sourced, not run. Same approach as bench/ingest/lib.sh
# (cluster as `postgres`, extension library pinned, private relay copy); every process started
# here is remembered by pid and stopped by cleanup(); nothing is killed by name.
#
# The caller sets: NAME (latency|fanout), PORT, RELAY_PORT, WORK, ROOT, MODE (full|smoke).

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
JWT_SECRET=bench-loadgen-jwt-secret-0123456789abcdef

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

psql_q() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U postgres -d postgres "$@"; }
sql() { psql_q -At -c "$1"; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# File descriptors: one per WebSocket connection on each side (the relay inherits the limit).
raise_fd_limit() {
    ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    FD_LIMIT=$(ulimit -n)
    log "file descriptor limit: $FD_LIMIT"
}

# ---------------------------------------------------------------------------------------------
# Binaries: release builds of the relay and the load generator (BENCH_RELAY_BIN and
# BENCH_LOADGEN_BIN, both set, skip the build).

build_binaries() {
    if [ -n "${BENCH_RELAY_BIN:-}" ] && [ -n "${BENCH_LOADGEN_BIN:-}" ]; then
        RELAY_BIN=$BENCH_RELAY_BIN LOADGEN=$BENCH_LOADGEN_BIN
        RELAY_BUILD="given ($RELAY_BIN)"
    else
        log "cargo build --release -p realtime-relay -p realtime-loadgen"
        (cd "$ROOT" && cargo build --release -q -p realtime-relay -p realtime-loadgen) ||
            die "release build failed"
        local target=${CARGO_TARGET_DIR:-$ROOT/target}
        RELAY_BIN=$target/release/realtime-relay LOADGEN=$target/release/realtime-loadgen
        RELAY_BUILD="release build"
    fi
    [ -x "$RELAY_BIN" ] && [ -x "$LOADGEN" ] || die "binaries not found: $RELAY_BIN $LOADGEN"
}

# ---------------------------------------------------------------------------------------------
# Cluster: fsync and synchronous_commit on (real, durable commits, as in bench/ingest).

PG_STARTED=""

cluster_start() {
    port_free "$PORT" || die "port $PORT is in use"
    if [ -f "$WORK/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" stop -m immediate -w -t 30 >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    mkdir -p "$WORK"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"
    as_pg "$PG_BIN/initdb" -D "$WORK/data" -A trust -U postgres -E UTF8 --locale=C --no-sync \
        >"$WORK/initdb.log" 2>&1 || die "initdb failed: $(tail -n 5 "$WORK/initdb.log")"
    local opts="-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c wal_level=logical"
    opts+=" -c max_wal_senders=10 -c max_replication_slots=10 -c shared_buffers=256MB"
    opts+=" -c max_connections=100 -c fsync=on -c synchronous_commit=${BENCH_SYNC_COMMIT:-on}"
    # The port is inside the ephemeral range: an outgoing connection may hold it for a moment.
    local try
    for try in 1 2 3 4; do
        as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w -t 60 -o "$opts" start \
            >/dev/null 2>&1 && break
        [ "$try" = 4 ] && die "Postgres did not start: $(tail -n 10 "$WORK/postgres.log")"
        log "Postgres did not start (try $try), retrying: $(grep -m1 'could not' "$WORK/postgres.log" || true)"
        sleep 2
    done
    PG_STARTED=1
    DB_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
}

cluster_stop() {
    [ -n "$PG_STARTED" ] || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" stop -m immediate -w -t 30 >/dev/null 2>&1 || true
    PG_STARTED=""
}

# Roles, the extension (its library pinned to a private copy: other jobs reinstall it in place),
# one pattern channel for every bench:* name, and a policy letting every role subscribe.
cluster_setup() {
    local so epoch
    so="$("$PG_BIN/pg_config" --pkglibdir)/realtime.so"
    [ -f "$so" ] || die "the realtime extension is not installed; run 'make install-ext' first"
    epoch=$(stat -c %Y "$so")
    psql_q <<'SQL' >/dev/null
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END $$;
CREATE EXTENSION realtime;
INSERT INTO realtime.channels (pattern) VALUES ('bench:%');
CREATE POLICY bench_all ON realtime.channels FOR SELECT USING (true);
SQL
    mkdir -p "$WORK/lib"
    cp "$so" "$WORK/lib/realtime.so"
    chmod 0755 "$WORK/lib" "$WORK/lib/realtime.so"
    [ "$(stat -c %Y "$so")" = "$epoch" ] || die "realtime.so was reinstalled during setup; run again"
    sql "UPDATE pg_catalog.pg_proc SET probin = '$WORK/lib/realtime' WHERE probin = '\$libdir/realtime'" >/dev/null
    EXT_VERSION=$(sql "SELECT extversion FROM pg_extension WHERE extname = 'realtime'")
}

# ---------------------------------------------------------------------------------------------
# Relay: a private copy under its own name, so no other job's broad pkill can take it down.
# RELAY_EXTRA_FLAGS (optional) are appended to its command line.

RELAY_PID=""
RELAY_FLAGS=""

relay_start() {
    port_free "$RELAY_PORT" || die "port $RELAY_PORT is in use"
    cp "$RELAY_BIN" "$WORK/bench-$NAME-relay"
    # More connections than the default cap (10,000), where this relay version has the flag.
    if "$RELAY_BIN" --help 2>/dev/null | grep -q -- --max-connections; then
        RELAY_FLAGS="--max-connections 100000"
    fi
    RUST_LOG="${RUST_LOG:-warn}" "$WORK/bench-$NAME-relay" \
        --database-url "$DB_URL" --bind "127.0.0.1:$RELAY_PORT" --jwt-secret "$JWT_SECRET" \
        --relay-id "bench_$NAME" $RELAY_FLAGS ${RELAY_EXTRA_FLAGS:-} </dev/null >>"$WORK/relay.log" 2>&1 &
    RELAY_PID=$!
    local deadline=$((SECONDS + 60)) code=""
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$RELAY_PID" 2>/dev/null || die "the relay exited: $(tail -n 10 "$WORK/relay.log")"
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$RELAY_PORT/readyz" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.2
    done
    die "the relay was not ready within 60 s (last /readyz: $code)"
}

relay_stop() {
    [ -n "$RELAY_PID" ] || return 0
    kill -TERM "$RELAY_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
        kill -0 "$RELAY_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
    RELAY_PID=""
}

relay_ensure() {
    if [ -n "$RELAY_PID" ] && ! kill -0 "$RELAY_PID" 2>/dev/null; then
        log "WARNING: the relay died; restarting it. $(tail -n 3 "$WORK/relay.log")"
        RELAY_RESTARTS=$((RELAY_RESTARTS + 1))
        RELAY_PID=""
        relay_start
    fi
}
RELAY_RESTARTS=0

# ---------------------------------------------------------------------------------------------
# One loadgen run. usage: loadgen_run LABEL ARGS...
# Appends the JSON line plus the exact command to $RAW; the loadgen samples `top` once mid-window
# into $WORK/top.LABEL.txt. Prints the JSON line.

loadgen_run() {
    local label=$1
    shift
    relay_ensure
    local cmd=(target/release/realtime-loadgen --url "ws://127.0.0.1:$RELAY_PORT/v1/socket"
        --database-url "$DB_URL" --relay-pid "$RELAY_PID" --label "$label" "$@")
    local out
    out=$("$LOADGEN" "${cmd[@]:1}" --top-file "$WORK/top.$label.txt" 2>>"$WORK/loadgen.log") || {
        tail -n 20 "$WORK/loadgen.log" >&2
        die "loadgen failed: ${cmd[*]}"
    }
    # The recorded command (ports and pid as in this run).
    jq -c --arg cmd "${cmd[*]}" '. + {command: $cmd}' <<<"$out" >>"$RAW"
    printf '%s\n' "$out"
    # Let the relay drop the closed sessions before the next run.
    sleep 1
}

# Median of numbers on stdin ("-" when none).
median() {
    sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# usage: field_median LABEL JQ_EXPR — median of one field over the rounds of a label.
field_median() {
    jq -r --arg l "$1" "select(.label == \$l) | $2 // empty" "$RAW" | median
}

# min–max of one field over the rounds of a label.
field_range() {
    jq -r --arg l "$1" "select(.label == \$l) | $2 // empty" "$RAW" | sort -g |
        awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%s–%s", lo, hi; else print "-" }'
}

us_to_ms() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.2f", v / 1000 }'; }

# A results row for one label: rounds, deliveries/s, missing, send→recv and ack→recv
# percentiles (ms, medians over rounds), errors, CPU seconds over the measured window (relay,
# loadgen, machine busy of machine capacity = cores × window) and
# relay peak RSS (MB), all medians.
summary_row() {
    local l=$1 n
    n=$(jq -r --arg l "$l" 'select(.label == $l) | .label' "$RAW" | wc -l)
    local dps miss p50 p90 p99 p999 max a50 a99 err rcpu lcpu mcpu cap rss
    dps=$(field_median "$l" .deliveries_per_s)
    miss=$(field_range "$l" .missing)
    p50=$(us_to_ms "$(field_median "$l" .latency_us.p50)")
    p90=$(us_to_ms "$(field_median "$l" .latency_us.p90)")
    p99=$(us_to_ms "$(field_median "$l" .latency_us.p99)")
    p999=$(us_to_ms "$(field_median "$l" .latency_us.p999)")
    max=$(us_to_ms "$(field_median "$l" .latency_us.max)")
    a50=$(us_to_ms "$(field_median "$l" .ack_to_recv_us.p50)")
    a99=$(us_to_ms "$(field_median "$l" .ack_to_recv_us.p99)")
    err=$(jq -r --arg l "$l" 'select(.label == $l) | ([.errors[]] | add // 0) + ([.publish_errors[]] | add // 0)
            + ([.setup_errors[]] | add // 0)' "$RAW" | awk '{ s += $1 } END { print s + 0 }')
    rcpu=$(field_median "$l" .cpu_s.relay)
    lcpu=$(field_median "$l" .cpu_s.loadgen)
    mcpu=$(field_median "$l" .cpu_s.machine_busy)
    cap=$(field_median "$l" .cpu_s.machine_capacity)
    rss=$(jq -r --arg l "$l" 'select(.label == $l) | .relay_rss_kb.peak // empty' "$RAW" | median |
        awk '{ if ($1 == "-") print "-"; else printf "%.0f", $1 / 1024 }')
    printf '| %s | %s | %s | %s | %s / %s / %s / %s / %s | %s / %s | %s | %s / %s / %s of %s s | %s |\n' \
        "$l" "$n" "$dps" "$miss" "$p50" "$p90" "$p99" "$p999" "$max" "$a50" "$a99" "$err" \
        "$rcpu" "$lcpu" "$mcpu" "$cap" "$rss"
}

summary_header() {
    echo '| run | rounds | deliveries/s | missing (min–max) | send→recv p50 / p90 / p99 / p99.9 / max (ms) | ack→recv p50 / p99 (ms) | errors (all rounds) | CPU s: relay / loadgen / machine busy of capacity | relay peak RSS (MB) |'
    echo '|---|---|---|---|---|---|---|---|---|'
}

# The exact command of each label's first round (ports as in this run).
commands_block() {
    echo '```sh'
    jq -r '.label' "$RAW" | awk '!seen[$0]++' | while read -r l; do
        jq -r --arg l "$l" 'select(.label == $l) | .command' "$RAW" | head -n 1
    done
    echo '```'
}

append_results() {
    local results=$1 report=$2
    if [ ! -f "$results" ]; then
        printf '# Benchmark results\n\nAppended by the benchmark scripts; newest last. Method: bench/README.md.\n' >"$results"
    fi
    printf '\n%s\n' "$report" >>"$results"
    log "appended to $results"
}
