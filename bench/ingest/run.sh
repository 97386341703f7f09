#!/usr/bin/env bash
# Ingest benchmark (issue 8, scenario 1): what does realtime.publish() cost a committing
# transaction, next to a plain INSERT of the same row and to an INSERT whose trigger calls
# pg_notify? And how much does each load slow an unrelated tpcb-like workload?
#
#   bench/ingest/run.sh            full run (~30 min at T=20), appends a section to bench/RESULTS.md
#   bench/ingest/run.sh --smoke    1 round, clients 1 and 8, 3 s runs, no tpcb (< 40 s), prints only
#
# Settings (environment): BENCH_T (seconds per run, 20), BENCH_ROUNDS (5), BENCH_CLIENTS
# ("1 8 32 64"), BENCH_TPCB_ROUNDS (5, 0 = skip), BENCH_NORELAY_ROUNDS (3, 0 = skip),
# BENCH_PORT (55460), BENCH_RELAY_PORT (55461), BENCH_DIR (/tmp/bench-ingest),
# BENCH_RESULTS (bench/RESULTS.md), BENCH_RECORD (1 in full mode: append to BENCH_RESULTS),
# BENCH_RELAY_BIN (default: build and use target/release/realtime-relay),
# BENCH_MAX_MINUTES (hard limit, 90 / 3), BENCH_KEEP=1 (keep the cluster directory).
# Method and caveats: bench/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# shellcheck source=lib.sh
. "$HERE/lib.sh"

parse_mode "$@"

if [ "$MODE" = smoke ]; then
    T=${BENCH_T:-3} ROUNDS=${BENCH_ROUNDS:-1} CLIENTS=${BENCH_CLIENTS:-"1 8"}
    TPCB_ROUNDS=${BENCH_TPCB_ROUNDS:-0} NORELAY_ROUNDS=${BENCH_NORELAY_ROUNDS:-0}
    RECORD=${BENCH_RECORD:-0} MAX_MINUTES=${BENCH_MAX_MINUTES:-3} SAMPLE_AT=${BENCH_SAMPLE_AT:-8}
else
    T=${BENCH_T:-20} ROUNDS=${BENCH_ROUNDS:-5} CLIENTS=${BENCH_CLIENTS:-"1 8 32 64"}
    TPCB_ROUNDS=${BENCH_TPCB_ROUNDS:-5} NORELAY_ROUNDS=${BENCH_NORELAY_ROUNDS:-3}
    RECORD=${BENCH_RECORD:-1} MAX_MINUTES=${BENCH_MAX_MINUTES:-90} SAMPLE_AT=${BENCH_SAMPLE_AT:-32}
fi
PORT=${BENCH_PORT:-55460}
RELAY_PORT=${BENCH_RELAY_PORT:-55461}
WORK=${BENCH_DIR:-/tmp/bench-ingest}
RESULTS_MD=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
JWT_SECRET=bench-ingest-jwt-secret-0123456789abcdef
CATCHUP_LIMIT=30
TPCB_CLIENTS=8
VARIANTS=(plain publish notify)
RAW_KEEP=$(mktemp /tmp/bench-ingest-raw.XXXXXX.tsv)
RAW=$RAW_KEEP

# ---------------------------------------------------------------------------------------------
# Cleanup and a hard time limit.

WATCHDOG_PGID=""
cleanup() {
    local rc=$?
    set +e
    sampler_stop
    listener_stop
    relay_stop
    if [ $rc -ne 0 ] && [ -d "$WORK" ]; then
        log "failed (exit $rc); last lines of the logs:"
        tail -n 15 "$WORK/postgres.log" >&2 2>/dev/null
        tail -n 15 "$WORK/relay.log" >&2 2>/dev/null
    fi
    cluster_stop
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$WORK"
    [ -n "$WATCHDOG_PGID" ] && kill -TERM -- "-$WATCHDOG_PGID" 2>/dev/null
    exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM
setsid bash -c 'sleep "$0"; kill -TERM "$1"' "$((MAX_MINUTES * 60))" "$$" &
WATCHDOG_PGID=$!

# ---------------------------------------------------------------------------------------------
# Preconditions and the relay binary.

[ -x "$PG_BIN/pgbench" ] || die "pgbench not found in $PG_BIN (Postgres 15 client tools)"
if [ ! -f "$("$PG_BIN/pg_config" --sharedir)/extension/realtime.control" ]; then
    die "the realtime extension is not installed into $PG_BIN's Postgres; run 'make install-ext' first"
fi
command -v curl >/dev/null || die "curl is required (relay readiness)"

RELAY_BUILD=""
if [ -n "${BENCH_RELAY_BIN:-}" ]; then
    RELAY_BIN=$BENCH_RELAY_BIN RELAY_BUILD="given ($RELAY_BIN)"
elif [ "$MODE" = full ]; then
    log "building the relay (cargo build --release -p realtime-relay)"
    if (cd "$ROOT" && cargo build --release -q -p realtime-relay); then
        RELAY_BIN=$TARGET/release/realtime-relay RELAY_BUILD="release build"
    else
        log "WARNING: the release build failed; falling back to the debug build"
        (cd "$ROOT" && cargo build -q -p realtime-relay) || die "cannot build the relay"
        RELAY_BIN=$TARGET/debug/realtime-relay RELAY_BUILD="debug build (the release build failed)"
    fi
elif [ -x "$TARGET/release/realtime-relay" ]; then
    RELAY_BIN=$TARGET/release/realtime-relay RELAY_BUILD="release build (existing)"
else
    (cd "$ROOT" && cargo build -q -p realtime-relay) || die "cannot build the relay"
    RELAY_BIN=$TARGET/debug/realtime-relay RELAY_BUILD="debug build"
fi
[ -x "$RELAY_BIN" ] || die "relay binary $RELAY_BIN not found"

# ---------------------------------------------------------------------------------------------
# Setup.

START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
COMMIT_START=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY_START=$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l)
SO_EPOCH_START=$(stat -c %Y "$("$PG_BIN/pg_config" --pkglibdir)/realtime.so")
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
log "mode $MODE: T=${T}s, rounds=$ROUNDS, clients=[$CLIENTS], tpcb rounds=$TPCB_ROUNDS, relay $RELAY_BUILD"
cluster_start
create_roles
setup_out=$(psql_q -f "$HERE/setup.sql" 2>&1) || die "setup.sql failed: $setup_out"
printf '%s\n' "$setup_out" >&2
[ "$(sql "SELECT count(*) FROM pg_extension WHERE extname = 'realtime'")" = 1 ] ||
    die "CREATE EXTENSION realtime failed (see above)"
EXT_VERSION=$(sql "SELECT extversion FROM pg_extension WHERE extname = 'realtime'")
pin_extension
relay_start
listener_start
log "cluster on port $PORT ($WORK), relay on $RELAY_PORT, LISTEN session running"

PGB_BASE="pgbench -h $WORK -p $PORT -U postgres"
J() { if [ "$1" -lt 2 ]; then echo "$1"; else echo 2; fi; }

# Runs pgbench (args after the phase fields), prints its tps; records the run in $RAW.
# usage: bench_run PHASE ROUND VARIANT CLIENTS -- pgbench args...
bench_run() {
    local phase=$1 round=$2 variant=$3 clients=$4
    shift 5
    local out tps lat failed catchup
    out=$(timeout $((T + 120)) "$PG_BIN/pgbench" -h "$WORK" -p "$PORT" -U postgres "$@" postgres 2>&1) || {
        printf '%s\n' "$out" | tail -n 20 >&2
        die "pgbench failed: $PGB_BASE $* postgres"
    }
    tps=$(awk '/^tps = / { print $3; exit }' <<<"$out")
    lat=$(awk '/^latency average = / { print $4; exit }' <<<"$out")
    failed=$(awk -F'[: ]+' '/^number of failed transactions/ { print $5; exit }' <<<"$out")
    [ -n "$tps" ] || die "no tps in pgbench output: $out"
    [ "${failed:-0}" = 0 ] || die "pgbench reported $failed failed transactions: $PGB_BASE $*"
    catchup=$(relay_catch_up)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$round" "$variant" "$clients" "$tps" \
        "${lat:-}" "$catchup" "$PGB_BASE $* postgres" >>"$RAW"
    echo "$tps"
}

# One insert-variant run at C clients.
ingest_run() {
    local phase=$1 round=$2 variant=$3 c=$4 tps
    [ "$variant" != notify ] || listener_alive || die "the LISTEN session died"
    relay_ensure "$phase round $round $variant c=$c"
    sql "CHECKPOINT" >/dev/null
    if [ "$c" = "$SAMPLE_AT" ]; then sampler_start "$WORK/waits.$phase.$variant.$c.$round"; fi
    tps=$(bench_run "$phase" "$round" "$variant" "$c" -- -n -M prepared -c "$c" -j "$(J "$c")" -T "$T" \
        -f "bench/ingest/$variant.sql")
    sampler_stop
    log "$phase round $round: $variant c=$c  $tps tps"
}

truncate_tables() {
    sql "TRUNCATE realtime.messages, realtime.commits, bench_plain, bench_notify" >/dev/null
}

cd "$ROOT" # pgbench -f paths are relative to the repository root, as recorded

# ---------------------------------------------------------------------------------------------
# 1. Interleaved ingest rounds: for each round, each client count, the three variants in an
#    order rotated per round. Tables are truncated at the start of each round.

for ((r = 1; r <= ROUNDS; r++)); do
    truncate_tables
    for c in $CLIENTS; do
        for v in $(rotate $((r - 1)) "${VARIANTS[@]}"); do
            ingest_run ingest "$r" "$v" "$c"
        done
    done
done

# ---------------------------------------------------------------------------------------------
# 2. tpcb-like at 8 clients, alone and beside an 8-client insert load of each variant (started
#    together, same T). Interleaved rounds, order rotated per round.

if [ "$TPCB_ROUNDS" -gt 0 ]; then
    log "pgbench -i -s 10"
    timeout 900 "$PG_BIN/pgbench" -h "$WORK" -p "$PORT" -U postgres -i -s 10 -q postgres >"$WORK/tpcb-init.log" 2>&1 ||
        die "pgbench -i failed: $(tail -n 5 "$WORK/tpcb-init.log")"
    for ((r = 1; r <= TPCB_ROUNDS; r++)); do
        truncate_tables
        for load in $(rotate $((r - 1)) alone publish plain notify); do
            relay_ensure "tpcb round $r with $load"
            sql "CHECKPOINT" >/dev/null
            if [ "$load" = alone ]; then
                tps=$(bench_run tpcb "$r" alone "$TPCB_CLIENTS" -- -n -c "$TPCB_CLIENTS" -j 2 -T "$T")
                log "tpcb round $r: alone  $tps tps"
                continue
            fi
            [ "$load" != notify ] || listener_alive || die "the LISTEN session died"
            (bench_run tpcb-load "$r" "$load" "$TPCB_CLIENTS" -- -n -M prepared -c "$TPCB_CLIENTS" -j 2 \
                -T "$T" -f "bench/ingest/$load.sql" >"$WORK/side.tps") &
            side=$!
            tps=$(bench_run tpcb "$r" "$load" "$TPCB_CLIENTS" -- -n -c "$TPCB_CLIENTS" -j 2 -T "$T")
            wait "$side" || die "the concurrent $load load failed"
            log "tpcb round $r: with $load load  $tps tps (load: $(cat "$WORK/side.tps") tps)"
        done
    done
fi

# ---------------------------------------------------------------------------------------------
# 3. Relay stopped: publish vs plain at 32 clients, interleaved, to separate the extension's
#    cost from the relay's (decoding + commit-position write-back).

NORELAY_C=32
if [ "$NORELAY_ROUNDS" -gt 0 ]; then
    relay_stop
    log "relay stopped"
    for ((r = 1; r <= NORELAY_ROUNDS; r++)); do
        truncate_tables
        for v in $(rotate $((r - 1)) plain publish); do
            ingest_run norelay "$r" "$v" "$NORELAY_C"
        done
    done
fi

NOTIFICATIONS=$(notifications_received)
NOTIFY_TX=$(sql "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 'bench_notify'")
END_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report.

. "$HERE/report.sh"
REPORT=$(report)
publish_report "$REPORT"
rm -f "$RAW_KEEP"
