#!/usr/bin/env bash
# Relays per database (issue 19): every relay holds its own replication slot, so each one adds a
# walsender decoding the whole WAL stream. For 1, 2, 4 and 8 relays on one database:
#
# 1. at a fixed publish rate (realtime.publish(), one message per transaction, all to one
#    channel) with BENCH_SUBS_PER_RELAY subscribers of it on every relay, so every relay delivers
#    every message: the CPU of each relay's walsender (from /proc, over the
#    measured window), the whole of Postgres's CPU (the postmaster's process tree), the publish
#    call's latency, the delivery latency (send → client, all relays) and the relays' CPU per
#    delivery;
# 2. unthrottled: publish throughput (pgbench, BENCH_TPS_CLIENTS clients calling
#    realtime.publish()) with those relays attached, against no relay at all, and the same CPU
#    figures over that run.
#
#   bench/relays/run.sh           3 interleaved rounds of 0/1/2/4/8 relays (about 12 min), appends to bench/RESULTS.md
#   bench/relays/run.sh --smoke   1 round of 0/1/2 relays, short runs (about 1 min), prints only
#
# Each relay has its own --relay-id (its own slot). Relay counts are interleaved, rotated per
# round; relays beyond a round's count are stopped and their slots dropped (so none decodes a
# backlog later), and every run waits until all running relays confirmed the WAL so far.
#
# Settings (environment): BENCH_RELAY_COUNTS ("1 2 4 8"), BENCH_ROUNDS (3), BENCH_RATE (messages/s,
# 500), BENCH_T (measured seconds, 20), BENCH_SUBS_PER_RELAY (2), BENCH_TPS_T (seconds of the pgbench run, 15; 0 skips it), BENCH_TPS_CLIENTS (8), BENCH_PORT
# (24502), BENCH_RELAY_PORT (first relay; 24503, then +1 each), BENCH_DIR (/tmp/bench-relays),
# BENCH_RESULTS, BENCH_RECORD (1 in full mode), BENCH_KEEP=1, BENCH_RELAY_BIN and BENCH_LOADGEN_BIN
# (both set: no build).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NAME=relays
# shellcheck source=../loadgen/lib.sh
. "$ROOT/bench/loadgen/lib.sh"
# shellcheck source=../loadgen/relays.sh
. "$ROOT/bench/loadgen/relays.sh"

parse_mode "$@"
if [ "$MODE" = smoke ]; then
    COUNTS=${BENCH_RELAY_COUNTS:-"1 2"} ROUNDS=${BENCH_ROUNDS:-1} T=${BENCH_T:-4} WARMUP=1
    TPS_T=${BENCH_TPS_T:-3} RECORD=${BENCH_RECORD:-0} MAX_SECONDS=240
else
    COUNTS=${BENCH_RELAY_COUNTS:-"1 2 4 8"} ROUNDS=${BENCH_ROUNDS:-3} T=${BENCH_T:-20} WARMUP=2
    TPS_T=${BENCH_TPS_T:-15} RECORD=${BENCH_RECORD:-1} MAX_SECONDS=1800
fi
RATE=${BENCH_RATE:-500}
SUBS=${BENCH_SUBS_PER_RELAY:-2}
TPS_CLIENTS=${BENCH_TPS_CLIENTS:-8}
PORT=${BENCH_PORT:-24502}
RELAY_BASE_PORT=${BENCH_RELAY_PORT:-24503}
WORK=${BENCH_DIR:-/tmp/bench-relays}
RESULTS_MD=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
RAW=$(mktemp /tmp/bench-relays-raw.XXXXXX.jsonl)
TPS_RAW=$(mktemp /tmp/bench-relays-tps.XXXXXX.jsonl)
MAX_N=$(printf '%s\n' $COUNTS | sort -n | tail -n 1)

scenario_stop() {
    relays_stop_all
}
scenario_traps

require_tools jq curl
[ -x "$PG_BIN/pgbench" ] || die "pgbench not found in $PG_BIN (Postgres 15 client tools)"
raise_fd_limit
for ((k = 0; k < MAX_N; k++)); do ports_free $((RELAY_BASE_PORT + k)); done
ports_free "$PORT"
build_binaries
watchdog_start "$MAX_SECONDS"
git_facts
CLUSTER_MAX_CONNECTIONS=$((MAX_N * 16 + TPS_CLIENTS + 40)) \
    CLUSTER_EXTRA_OPTS="-c max_wal_senders=$((MAX_N + 4)) -c max_replication_slots=$((MAX_N + 4))" cluster_start
cluster_setup
PGPID=$(postmaster_pid)
log "mode $MODE: relay counts [$COUNTS], $ROUNDS round(s), $RATE msg/s for ${T} s, pgbench ${TPS_T} s × $TPS_CLIENTS clients"

# CPU seconds (user + system) of a process; of a process tree with `tree` (the postmaster:
# its own, its reaped children's, and every living child's).
proc_cpu() {
    local line f
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || {
        echo 0
        return
    }
    f=(${line##*) })
    echo $(((f[11] + f[12]) ))
}
tree_cpu() {
    local root=$1 total=0 line f p
    for p in /proc/[0-9]*; do
        { read -r line <"$p/stat"; } 2>/dev/null || continue
        f=(${line##*) })
        if [ "${p#/proc/}" = "$root" ] || [ "${f[1]}" = "$root" ]; then
            total=$((total + f[11] + f[12] + f[13] + f[14]))
        fi
    done
    echo "$total"
}
ticks_to_s() { awk -v t="$1" 'BEGIN { printf "%.2f", t / 100 }'; }

# Exactly relays 1..N running (the others stopped, their slots dropped), all caught up. Sets
# WALSENDERS (comma-separated pids, relay order) and WATCH (the loadgen's --watch list).
relays_set() {
    local n=$1 k pid
    for k in $(relays_running); do [ "$k" -le "$n" ] || relay_k_stop "$k" drop; done
    for ((k = 1; k <= n; k++)); do relay_k_start "$k"; done
    relays_catch_up >/dev/null
    WALSENDERS="" WATCH="postgres=tree:$PGPID"
    for ((k = 1; k <= n; k++)); do
        for _ in $(seq 1 100); do
            pid=$(walsender_pid "$k")
            [ -n "$pid" ] && break
            sleep 0.1
        done
        [ -n "$pid" ] || die "relay $k has no walsender"
        WALSENDERS+="${WALSENDERS:+,}$pid"
        WATCH+=",walsender_$k=$pid"
    done
}

# The pgbench run with N relays attached: tps, and the CPU of Postgres and of each walsender.
tps_run() {
    local n=$1 r=$2 out tps pg0 pg1 ws0=() ws1=() pid i
    local pids=()
    [ -n "$WALSENDERS" ] && IFS=, read -r -a pids <<<"$WALSENDERS"
    sql "CHECKPOINT" >/dev/null
    pg0=$(tree_cpu "$PGPID")
    for pid in "${pids[@]}"; do ws0+=("$(proc_cpu "$pid")"); done
    local start_ms end_ms
    start_ms=$(date +%s%3N)
    out=$(timeout $((TPS_T + 60)) "$PG_BIN/pgbench" -h "$WORK" -p "$PORT" -U postgres -n -M prepared \
        -c "$TPS_CLIENTS" -j 2 -T "$TPS_T" -f "$ROOT/bench/ingest/publish.sql" postgres 2>&1) ||
        die "pgbench failed: $(tail -n 5 <<<"$out")"
    end_ms=$(date +%s%3N)
    pg1=$(tree_cpu "$PGPID")
    for pid in "${pids[@]}"; do ws1+=("$(proc_cpu "$pid")"); done
    tps=$(awk '/^tps = / { printf "%.0f", $3 }' <<<"$out")
    local wal="[]"
    for i in "${!pids[@]}"; do wal=$(jq -c --arg v "$(ticks_to_s $((ws1[i] - ws0[i])))" '. + [($v | tonumber)]' <<<"$wal"); done
    jq -cn --argjson n "$n" --argjson r "$r" --argjson tps "${tps:-0}" --arg pg "$(ticks_to_s $((pg1 - pg0)))" \
        --argjson wal "$wal" --arg secs "$(awk -v ms=$((end_ms - start_ms)) 'BEGIN { printf "%.2f", ms / 1000 }')" \
        --arg cmd "pgbench -h $WORK -p $PORT -U postgres -n -M prepared -c $TPS_CLIENTS -j 2 -T $TPS_T -f bench/ingest/publish.sql postgres" \
        '{relays: $n, round: $r, tps: $tps, postgres_cpu_s: ($pg | tonumber), walsender_cpu_s: $wal, window_s: ($secs | tonumber), command: $cmd}' >>"$TPS_RAW"
    log "tps with $n relay(s), round $r: $tps (Postgres CPU $(ticks_to_s $((pg1 - pg0))) s, walsenders $wal s over $TPS_T s)"
}

TARGET=realtime
for ((r = 1; r <= ROUNDS; r++)); do
    # shellcheck disable=SC2046
    for n in $(rotate $((r - 1)) 0 $COUNTS); do
        relays_set "$n"
        if [ "$n" -gt 0 ]; then
            TARGET_URLS=$(relays_urls "$n") TARGET_PIDS=$(relays_pids "$n")
            line=$(loadgen_run "relays-$n" --connections $((SUBS * n)) --pattern shared \
                --rate "$RATE" --duration "$T" --warmup "$WARMUP" --drain 5 --publishers 4 --pad 100 --watch "$WATCH")
            log "relays-$n round $r: $(jq -r '"\(.deliveries_per_s)/s missing \(.missing) p99 \(.latency_us.p99)µs publish call p99 \(.publish_call_us.p99)µs postgres cpu \(.cpu_s.watched.postgres)s walsenders \([.cpu_s.watched | to_entries[] | select(.key | startswith("walsender")) | .value])"' <<<"$line")"
            unset TARGET_URLS TARGET_PIDS
            relays_catch_up >/dev/null
        fi
        if [ "$TPS_T" != 0 ]; then
            tps_run "$n" "$r"
            relays_catch_up >/dev/null
        fi
    done
done
relays_stop_all
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report.

fmt1() { awk -v v="$1" 'BEGIN { if (v == "-" || v == "") print "-"; else printf "%.1f", v }'; }
# Median over rounds and relays of each walsender's share of one core in the fixed-rate runs.
walsender_pct() {
    jq -r --arg l "relays-$1" 'select(.label == $l) | .window_s as $w | .cpu_s.watched | to_entries[]
        | select(.key | startswith("walsender")) | .value / $w * 100' "$RAW" | median
}
tps_median() { jq -r --argjson n "$1" "select(.relays == \$n) | $2" "$TPS_RAW" | median; }

REPORT=$(
    echo "## Relays per database: $COUNTS relays at $RATE messages/s ($START_DATE)"
    echo
    echo "Commit $COMMIT ($DIRTY uncommitted changes), extension $EXT_VERSION, relay $RELAY_BUILD." \
        "Machine: $(machine_line); load average $LOAD_START at start / $LOAD_END at end." \
        "\`bench/relays/run.sh\`: throwaway Postgres 15 on port $PORT (fsync and synchronous_commit on," \
        "wal_level=logical); relays on ports $RELAY_BASE_PORT…, each its own --relay-id and slot; relay counts" \
        "interleaved, $ROUNDS round(s). Fixed rate: $RATE messages/s through \`realtime.publish()\`, one per" \
        "transaction, to \`bench:shared\`, $SUBS subscribers of it per relay (so every relay delivers every message)," \
        "${T} s measured after ${WARMUP} s. Unthrottled: pgbench, $TPS_CLIENTS clients calling" \
        "\`realtime.publish()\` for ${TPS_T} s (\`bench/ingest/publish.sql\`). CPU as % of one core over the" \
        "window; Postgres = the postmaster's whole process tree (walsenders included). Medians over rounds."
    echo
    echo "| relays | walsender CPU per relay (% of a core) | Postgres CPU (% of a core) | publish call p50 / p99 (ms) | send→client p99 (ms) | deliveries/s | missing | relays' CPU µs per delivery | pgbench tps (vs no relay) | Postgres CPU in pgbench (% of a core) | walsender CPU per relay in pgbench (%) |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|"
    base=$(tps_median 0 .tps)
    for n in 0 $COUNTS; do
        l="relays-$n"
        if [ "$n" = 0 ]; then
            fixed="| – | – | – | – | – | – | –"
        else
            pg=$(jq -r --arg l "$l" 'select(.label == $l) | .cpu_s.watched.postgres / .window_s * 100' "$RAW" | median)
            fixed="| $(fmt1 "$(walsender_pct "$n")") | $(fmt1 "$pg") | $(us_to_ms "$(field_median "$l" .publish_call_us.p50)") / $(us_to_ms "$(field_median "$l" .publish_call_us.p99)") | $(us_to_ms "$(field_median "$l" .latency_us.p99)") | $(field_median "$l" .deliveries_per_s) | $(field_range "$l" .missing) | $(fmt1 "$(field_median "$l" .server_us_per_delivery)")"
        fi
        tps=$(tps_median "$n" .tps)
        ratio=$(awk -v a="$tps" -v b="$base" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2fx", a / b }')
        pgt=$(tps_median "$n" '.postgres_cpu_s / .window_s * 100')
        wst=$(jq -r --argjson n "$n" 'select(.relays == $n) | .window_s as $w | .walsender_cpu_s[] | . / $w * 100' "$TPS_RAW" | median)
        echo "| $n $fixed | $tps ($ratio) | $(fmt1 "$pgt") | $(fmt1 "$wst") |"
    done
    echo
    echo "Exact commands (the loadgen: first round of each count; pgbench: the same for every count):"
    echo
    commands_block
    echo
    echo '```sh'
    jq -r '.command' "$TPS_RAW" | head -n 1
    echo '```'
    echo
    echo "<details><summary>Raw JSON lines (loadgen, then pgbench)</summary>"
    echo
    echo '```json'
    jq -c 'del(.command)' "$RAW"
    jq -c 'del(.command)' "$TPS_RAW"
    echo '```'
    echo
    echo "</details>"
)
publish_report "$REPORT"
rm -f "$RAW" "$TPS_RAW"
