# Helpers for run.sh: the throwaway cluster, the relay, the LISTEN session, the wait sampler.
# Sourced, not run. Every process started here is remembered by pid (or process group) and
# stopped by cleanup(); nothing is killed by name.

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# Postgres refuses to run as root: run its server tools as `postgres` when we are root.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

psql_q() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U postgres -d postgres "$@"; }
sql() { psql_q -At -c "$1"; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
# Cluster

PG_PID_FILE=""

cluster_start() {
    port_free "$PORT" || die "port $PORT is in use; set BENCH_PORT to a free port (55460+)"
    if [ -f "$WORK/data/postmaster.pid" ]; then
        log "stopping a leftover benchmark cluster in $WORK/data"
        as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" stop -m immediate -w -t 30 >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    mkdir -p "$WORK"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"
    as_pg "$PG_BIN/initdb" -D "$WORK/data" -A trust -U postgres -E UTF8 --locale=C --no-sync \
        >"$WORK/initdb.log" 2>&1 || {
        cat "$WORK/initdb.log" >&2
        die "initdb failed"
    }
    # fsync and synchronous_commit stay on: we measure real, durable commits.
    PG_OPTS="-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c wal_level=logical"
    PG_OPTS+=" -c max_wal_senders=10 -c max_replication_slots=10 -c shared_buffers=256MB"
    PG_OPTS+=" -c max_connections=200 -c fsync=on -c synchronous_commit=on"
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w -t 60 -o "$PG_OPTS" start \
        >/dev/null || {
        tail -n 30 "$WORK/postgres.log" >&2
        die "Postgres did not start"
    }
    PG_PID_FILE="$WORK/data/postmaster.pid"
}

cluster_stop() {
    if [ -n "$PG_PID_FILE" ] && [ -f "$PG_PID_FILE" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" stop -m immediate -w -t 30 >/dev/null 2>&1 || true
    fi
    PG_PID_FILE=""
}

# Pins the extension's library for the rest of the run: copies realtime.so into $WORK and points
# the extension's C functions at the copy. Other jobs on this machine run `make install-ext`,
# which rewrites $libdir/realtime.so in place: backends that have it mapped then die with SIGBUS,
# and runs would mix builds. Call right after CREATE EXTENSION; dies if the library changed
# between the CREATE and the copy.
pin_extension() {
    local so n
    so="$("$PG_BIN/pg_config" --pkglibdir)/realtime.so"
    mkdir -p "$WORK/lib"
    cp "$so" "$WORK/lib/realtime.so"
    chmod 0755 "$WORK/lib" "$WORK/lib/realtime.so"
    [ "$(stat -c %Y "$so")" = "$SO_EPOCH_START" ] ||
        die "realtime.so was reinstalled while the benchmark was being set up; run it again"
    n=$(sql "UPDATE pg_catalog.pg_proc SET probin = '$WORK/lib/realtime'
               WHERE probin = '\$libdir/realtime' RETURNING 1" | wc -l)
    [ "$n" -gt 0 ] || die "found no functions of the realtime library to pin"
    SO_SIZE=$(du -h "$WORK/lib/realtime.so" | cut -f1)
}

# ---------------------------------------------------------------------------------------------
# Relay

RELAY_PID=""

RELAY_RESTARTS=0
RELAY_RESTART_NOTES=""

relay_start() {
    port_free "$RELAY_PORT" || die "port $RELAY_PORT is in use; set BENCH_RELAY_PORT"
    # A private copy under its own name: another job's broad `pkill realtime-relay` (this machine
    # is shared) must not take our relay down in the middle of a run.
    if [ ! -x "$WORK/bench-ingest-relay" ]; then cp "$RELAY_BIN" "$WORK/bench-ingest-relay"; fi
    echo "--- relay start $(date -u +%T)" >>"$WORK/relay.log"
    RUST_LOG="${RUST_LOG:-info}" "$WORK/bench-ingest-relay" \
        --database-url "postgres://postgres@127.0.0.1:$PORT/postgres" \
        --bind "127.0.0.1:$RELAY_PORT" --jwt-secret "$JWT_SECRET" --relay-id bench \
        </dev/null >>"$WORK/relay.log" 2>&1 &
    RELAY_PID=$!
    local deadline=$((SECONDS + 60)) code=""
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$RELAY_PID" 2>/dev/null || {
            tail -n 30 "$WORK/relay.log" >&2
            RELAY_PID=""
            die "the relay exited before it was ready"
        }
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$RELAY_PORT/readyz" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.2
    done
    tail -n 30 "$WORK/relay.log" >&2
    die "the relay was not ready within 60 s (last /readyz: $code)"
}

relay_alive() { [ -n "$RELAY_PID" ] && kill -0 "$RELAY_PID" 2>/dev/null; }

# Before a run that should have the relay: restart it (and say so in the report) if it died.
relay_ensure() {
    [ -n "$RELAY_PID" ] || return 0
    relay_alive && return 0
    wait "$RELAY_PID" 2>/dev/null && RELAY_RC=0 || RELAY_RC=$?
    log "WARNING: the relay exited (status $RELAY_RC) before '$1'; restarting it. Its log:"
    tail -n 5 "$WORK/relay.log" >&2
    RELAY_RESTARTS=$((RELAY_RESTARTS + 1))
    RELAY_RESTART_NOTES+="${RELAY_RESTART_NOTES:+; }exited with status $RELAY_RC, noticed before $1"
    RELAY_PID=""
    relay_start
}

relay_stop() {
    [ -n "$RELAY_PID" ] || return 0
    kill -TERM "$RELAY_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
        kill -0 "$RELAY_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
    RELAY_PID=""
}

# Waits until the relay's slot has confirmed everything written so far (so a publish run's
# decoding backlog never spills into the next run). Prints the seconds it took, or "timeout".
relay_catch_up() {
    relay_alive || {
        echo "-"
        return 0
    }
    local end ok start_ms now_ms
    end=$(sql "SELECT pg_current_wal_lsn()")
    start_ms=$(date +%s%3N)
    while :; do
        ok=$(sql "SELECT coalesce(bool_and(confirmed_flush_lsn >= '$end'::pg_lsn), false)
                    FROM pg_replication_slots WHERE slot_name = 'realtime_bench'")
        now_ms=$(date +%s%3N)
        if [ "$ok" = t ]; then
            awk -v ms=$((now_ms - start_ms)) 'BEGIN { printf "%.1f\n", ms / 1000 }'
            return 0
        fi
        [ $((now_ms - start_ms)) -lt $((CATCHUP_LIMIT * 1000)) ] && relay_alive || break
        sleep 0.1
    done
    log "WARNING: the relay had not confirmed $end after ${CATCHUP_LIMIT} s"
    echo timeout
}

# ---------------------------------------------------------------------------------------------
# LISTEN session: consumes the notifications of bench_notify the way a production listener would
# (one connection, reading continuously). psql prints each one as "Asynchronous notification".

LISTENER_PGID=""

listener_start() {
    setsid bash -c '{ echo "LISTEN bench;"; while sleep 0.05; do echo "SELECT 1;"; done; } |
        "$0" -X -q -At -h "$1" -p "$2" -U postgres -d postgres' \
        "$PG_BIN/psql" "$WORK" "$PORT" >"$WORK/notifications.txt" 2>&1 &
    LISTENER_PGID=$!
    sleep 0.5
    listener_alive || die "the LISTEN session did not start: $(tail -n 5 "$WORK/notifications.txt")"
}

listener_alive() { [ -n "$LISTENER_PGID" ] && kill -0 "$LISTENER_PGID" 2>/dev/null; }

listener_stop() {
    [ -n "$LISTENER_PGID" ] || return 0
    kill -TERM -- "-$LISTENER_PGID" 2>/dev/null || true
    wait "$LISTENER_PGID" 2>/dev/null || true
    LISTENER_PGID=""
}

notifications_received() { grep -c '^Asynchronous notification' "$WORK/notifications.txt" || true; }

# ---------------------------------------------------------------------------------------------
# Wait-event sampler: every 0.5 s, one line per active pgbench backend and per walsender:
# "<who>|<wait_event_type>:<wait_event>" ("CPU" when not waiting). One connection, low cost.

SAMPLER_PGID=""

sampler_start() {
    local out=$1
    local q="SELECT CASE WHEN backend_type = 'walsender' THEN 'walsender' ELSE 'client' END || '|' ||
                    coalesce(wait_event_type || ':' || wait_event, 'CPU')
               FROM pg_stat_activity
              WHERE pid <> pg_backend_pid()
                AND ((application_name = 'pgbench' AND state = 'active')
                     OR backend_type = 'walsender');"
    q=${q//$'\n'/ }
    setsid bash -c 'while sleep 0.5; do echo "$1"; done |
        "$0" -X -q -At -h "$2" -p "$3" -U postgres -d postgres' \
        "$PG_BIN/psql" "$q" "$WORK" "$PORT" >"$out" 2>/dev/null &
    SAMPLER_PGID=$!
}

sampler_stop() {
    [ -n "$SAMPLER_PGID" ] || return 0
    kill -TERM -- "-$SAMPLER_PGID" 2>/dev/null || true
    wait "$SAMPLER_PGID" 2>/dev/null || true
    SAMPLER_PGID=""
}

# ---------------------------------------------------------------------------------------------
# Statistics over the raw results file (tab-separated:
# phase, round, variant, clients, tps, latency_ms, catchup_s, command).

# tps values of one (phase, variant, clients), one per line.
vals() { awk -F'\t' -v p="$1" -v v="$2" -v c="$3" '$1 == p && $3 == v && $4 == c { print $5 }' "$RAW"; }

# Per-round ratios num/den within one (phase, clients): both runs come from the same round.
ratios() {
    awk -F'\t' -v p="$1" -v num="$2" -v den="$3" -v c="$4" '
        $1 == p && $4 == c && $3 == num { n[$2] = $5 }
        $1 == p && $4 == c && $3 == den { d[$2] = $5 }
        END { for (r in n) if ((r in d) && d[r] > 0) printf "%.4f\n", n[r] / d[r] }' "$RAW"
}

# Reads numbers on stdin; prints "median min max count" (or "- - - 0").
stats() {
    sort -g | awk '{ a[NR] = $1 }
        END {
            if (NR == 0) { print "- - - 0"; exit }
            m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
            print m, a[1], a[NR], NR
        }'
}

# "median (min–max)" of tps values, rounded.
fmt_tps() {
    local s
    s=$(stats)
    set -- $s
    [ "$4" = 0 ] && {
        echo "–"
        return
    }
    printf '%.0f (%.0f–%.0f)' "$1" "$2" "$3"
}

# "0.93x (0.88–0.97)" for ratios.
fmt_ratio() {
    local s
    s=$(stats)
    set -- $s
    [ "$4" = 0 ] && {
        echo "–"
        return
    }
    printf '%.2fx (%.2f–%.2f)' "$1" "$2" "$3"
}

median_of() {
    local s
    s=$(stats)
    set -- $s
    echo "$1"
}
