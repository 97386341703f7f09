#!/usr/bin/env bash
# Table change events benchmark: single-row UPDATE throughput on a table watched by
# realtime.watch_table (every UPDATE publishes one message through realtime.publish) against
# the same table unwatched. pgbench, 8 clients, 5 interleaved rounds, medians.
#
#   bench/changes/run.sh            ~3.5 min at T=15; appends a section to bench/RESULTS.md
#   BENCH_RECORD=0 bench/changes/run.sh   print only
#   bench/changes/run.sh --smoke    1 round, 2 s runs, 1,000 rows (< 20 s), prints only
#
# Settings (environment): BENCH_T (seconds per run, 15), BENCH_ROUNDS (5), BENCH_CLIENTS (8),
# BENCH_ROWS (100000), BENCH_PORT (55470), BENCH_DIR (/tmp/bench-changes),
# BENCH_RESULTS (bench/RESULTS.md), BENCH_RECORD (1).
# Needs the extension installed into $PG_BIN's Postgres (`make install-ext PG_PREFIX=...`). No relay runs:
# this measures what the trigger + publish cost the writing transaction.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NAME=changes
CLUSTER_MAX_CONNECTIONS=50
# shellcheck source=../lib.sh
. "$ROOT/bench/lib.sh"
case "${1:-}" in
    "") T=${BENCH_T:-15} ROUNDS=${BENCH_ROUNDS:-5} ROWS=${BENCH_ROWS:-100000} RECORD=${BENCH_RECORD:-1} ;;
    --smoke) T=${BENCH_T:-2} ROUNDS=${BENCH_ROUNDS:-1} ROWS=${BENCH_ROWS:-1000} RECORD=${BENCH_RECORD:-0} ;;
    *) die "unknown argument '$1' (expected --smoke)" ;;
esac
CLIENTS=${BENCH_CLIENTS:-8}
PORT=${BENCH_PORT:-55470}
WORK=${BENCH_DIR:-/tmp/bench-changes}
RESULTS_MD=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}

cleanup() {
    local rc=$?
    set +e
    [ $rc -ne 0 ] && [ -f "$WORK/postgres.log" ] && tail -n 20 "$WORK/postgres.log" >&2
    cluster_stop
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT

extension_so >/dev/null
cluster_start
create_roles
log "setup: $ROWS rows in bench_plain and bench_watched (watched: channel acct:{id})"
note_extension
psql_q -v rows="$ROWS" -f "$HERE/setup.sql" >/dev/null
pin_extension

RAW=$(mktemp)
for round in $(seq 1 "$ROUNDS"); do
    # interleave: alternate which variant goes first
    if [ $((round % 2)) = 1 ]; then order="plain watched"; else order="watched plain"; fi
    for variant in $order; do
        psql_q -c "TRUNCATE realtime.messages" -c "VACUUM bench_plain, bench_watched" -c "CHECKPOINT"
        out=$("$PG_BIN/pgbench" -n -M prepared -c "$CLIENTS" -j 2 -T "$T" -D rows="$ROWS" \
            -f "$HERE/update_$variant.sql" -h 127.0.0.1 -p "$PORT" -U postgres postgres 2>&1) ||
            die "pgbench failed: $out"
        tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | tail -1)
        msgs=$(sql "SELECT count(*) FROM realtime.messages")
        log "round $round $variant: $tps tps ($msgs messages stored)"
        printf '%s\t%s\t%s\t%s\n' "$round" "$variant" "$tps" "$msgs" >>"$RAW"
    done
done

plain=$(awk -F'\t' '$2=="plain"{print $3}' "$RAW" | median)
watched=$(awk -F'\t' '$2=="watched"{print $3}' "$RAW" | median)
ratio=$(awk -v w="$watched" -v p="$plain" 'BEGIN{printf "%.2f", w/p}')
paired=$(awk -F'\t' '{t[$1,$2]=$3; r[$1]=1} END {for (k in r) printf "%.3f\n", t[k,"watched"]/t[k,"plain"]}' "$RAW" | median)
per_round=$(awk -F'\t' '{t[$1,$2]=$3} END {for (i=1;; i++) { if (!((i,"plain") in t)) break; printf "%s%d: %s / %s", (i>1?"; ":""), i, t[i,"watched"], t[i,"plain"] }}' "$RAW")
rm -f "$RAW"

report=$(cat <<MD

## Table change events — $(date -u +%F) — commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)

Single-row UPDATE throughput, table watched by \`realtime.watch_table(tbl, 'acct:{id}')\` (every
UPDATE publishes one persisted message through \`realtime.publish\`) vs the same table unwatched.
$(nproc) cores, Postgres 15, fsync and synchronous_commit on, wal_level=logical, no relay running,
$ROWS rows, pgbench $CLIENTS clients, ${T} s per run, $ROUNDS interleaved rounds.

Command: \`bench/changes/run.sh\` (each run: \`pgbench -n -M prepared -c $CLIENTS -j 2 -T $T -f bench/changes/update_<variant>.sql\`)

| variant | median tps |
|---|---|
| unwatched | $plain |
| watched | $watched |

Ratio watched / unwatched: **${ratio}x** (median of per-round ratios: ${paired}x; goal ≥ 0.7x).
Per round (watched / unwatched tps): $per_round.
MD
)
publish_report "$report"
