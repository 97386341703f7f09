# Helpers for bench/ingest/run.sh and profile.sh: the LISTEN session, the wait sampler and the
# per-round statistics of the pgbench results. Sourced, not run. The cluster, the relay, the
# extension pinning, logging and medians come from bench/lib.sh (sourced here, so scripts that
# source this file keep working). Every process started here is remembered by pid (or process
# group) and stopped by cleanup(); nothing is killed by name.

# Ingest's settings for the shared helpers: the relay copy is bench-ingest-relay, its slot
# realtime_bench; up to 64 pgbench clients plus the relay's pool need more than 100 connections.
NAME=${NAME:-ingest}
RELAY_ID=${RELAY_ID:-bench}
CLUSTER_MAX_CONNECTIONS=${CLUSTER_MAX_CONNECTIONS:-200}
RELAY_LOG_LEVEL=${RELAY_LOG_LEVEL:-info}
# shellcheck source=../lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

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
