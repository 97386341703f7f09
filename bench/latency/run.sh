#!/usr/bin/env bash
# Latency benchmark (issue 8, scenario 2): send-to-receive latency of realtime.publish() →
# relay → WebSocket client at 1,000 msg/s with 1, 100, 1,000 and 5,000 connected subscribers.
# Goal: p50 < 2 ms and p99 < 10 ms at 1,000 subscribers.
#
# Two series: `own-N` — N subscribers, each on its own channel (bench:<i>), message s to
# bench:<s % N>: 1,000 deliveries/s whatever N, so it measures latency against the number of
# connections; `shared-N` — N subscribers on one channel: 1,000 × N deliveries/s (1,000 × 1,000
# would be 1M/s, far past the fan-out capacity measured by bench/fanout, so only small N).
#
#   bench/latency/run.sh            3 interleaved rounds (~5 min), appends a section to bench/RESULTS.md
#   bench/latency/run.sh --smoke    1 round, own-100 and shared-10, 2 s runs (< 30 s), prints only
#
# Settings (environment): BENCH_ROUNDS (3), BENCH_SUBS ("1 100 1000 5000": own-N series),
# BENCH_SHARED_SUBS ("1 100": shared-N series), BENCH_RATE (1000),
# BENCH_T (measured seconds per run, 10), BENCH_PORT (24480), BENCH_RELAY_PORT (24481),
# BENCH_DIR (/tmp/bench-latency), BENCH_RESULTS (bench/RESULTS.md), BENCH_RECORD (1 in full
# mode), BENCH_SYNC_COMMIT (on), BENCH_KEEP=1 (keep the cluster directory), BENCH_RELAY_BIN and
# BENCH_LOADGEN_BIN (both set: use these binaries, no build).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NAME=latency
# shellcheck source=../loadgen/lib.sh
. "$ROOT/bench/loadgen/lib.sh"

parse_mode "$@"
if [ "$MODE" = smoke ]; then
    ROUNDS=${BENCH_ROUNDS:-1} SUBS=${BENCH_SUBS:-"100"} SHARED_SUBS=${BENCH_SHARED_SUBS:-"10"}
    T=${BENCH_T:-2} WARMUP=0.5
    RECORD=${BENCH_RECORD:-0} MAX_SECONDS=120
else
    ROUNDS=${BENCH_ROUNDS:-3} SUBS=${BENCH_SUBS:-"1 100 1000 5000"} SHARED_SUBS=${BENCH_SHARED_SUBS:-"1 100"}
    T=${BENCH_T:-10} WARMUP=2
    RECORD=${BENCH_RECORD:-1} MAX_SECONDS=900
fi
RATE=${BENCH_RATE:-1000}
PORT=${BENCH_PORT:-24480}
RELAY_PORT=${BENCH_RELAY_PORT:-24481}
WORK=${BENCH_DIR:-/tmp/bench-latency}
RESULTS_MD=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
RAW=$(mktemp /tmp/bench-latency-raw.XXXXXX.jsonl)

scenario_traps

require_tools jq curl
raise_fd_limit
build_binaries
# The time limit starts after the build (a first release build takes minutes).
watchdog_start "$MAX_SECONDS"

START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
cluster_start
cluster_setup
relay_start
log "mode $MODE: rate $RATE/s, subscribers [$SUBS], ${T}s runs, $ROUNDS round(s); relay pid $RELAY_PID on $RELAY_PORT"

summarise() {
    jq -r '"\(.deliveries_per_s)/s missing \(.missing) p50 \(.latency_us.p50)µs p99 \(.latency_us.p99)µs max \(.latency_us.max)µs relay cpu \(.cpu_s.relay)s loadgen cpu \(.cpu_s.loadgen)s"' <<<"$1"
}
COMMON=(--rate "$RATE" --duration "$T" --warmup "$WARMUP" --publishers 8 --pad 100 --drain 5)
for ((r = 1; r <= ROUNDS; r++)); do
    for n in $SUBS; do
        line=$(loadgen_run "own-$n" --connections "$n" --pattern per-user --channels "$n" "${COMMON[@]}")
        log "round $r own-$n: $(summarise "$line")"
    done
    for n in $SHARED_SUBS; do
        line=$(loadgen_run "shared-$n" --connections "$n" --pattern shared "${COMMON[@]}")
        log "round $r shared-$n: $(summarise "$line")"
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report.

goal_line() {
    local l=own-1000 p50 p99
    p50=$(field_median "$l" .latency_us.p50)
    p99=$(field_median "$l" .latency_us.p99)
    [ "$p50" = - ] && {
        echo "Goal (1,000 subscribers): not measured in this run."
        return
    }
    local v
    v=$(awk -v a="$p50" -v b="$p99" 'BEGIN { print (a < 2000 && b < 10000) ? "**met**" : "**not met**" }')
    echo "Goal at 1,000 subscribers (p50 < 2 ms, p99 < 10 ms, send→recv, \`own-1000\`): $v —" \
        "p50 $(us_to_ms "$p50") ms, p99 $(us_to_ms "$p99") ms (medians of $ROUNDS round(s))."
}

REPORT=$(
    echo "## Latency: publish → relay → WebSocket at $RATE msg/s ($START_DATE)"
    echo
    echo "Commit $COMMIT ($DIRTY uncommitted changes), extension $EXT_VERSION, relay $RELAY_BUILD," \
        "$(nproc) cores, load average $LOAD_START at start / $LOAD_END at end, fd limit $FD_LIMIT." \
        "\`bench/latency/run.sh\`: throwaway Postgres 15 on port $PORT (fsync and" \
        "synchronous_commit ${BENCH_SYNC_COMMIT:-on}, wal_level=logical), relay on $RELAY_PORT." \
        "\`own-N\`: N subscribers each on its own channel, messages spread over them ($RATE" \
        "deliveries/s); \`shared-N\`: N subscribers on \`bench:shared\` ($RATE × N deliveries/s)." \
        "$ROUNDS interleaved round(s) of ${T} s measured after" \
        "${WARMUP} s of warm-up; 8 publishing connections, payload \`{s, t, pad: 100 × x}\`." \
        "Figures are **medians over rounds** (a first cut on a noisy 2-core machine shared with the" \
        "relay, Postgres and the load generator itself)."
    echo
    summary_header
    for n in $SUBS; do summary_row "own-$n"; done
    for n in $SHARED_SUBS; do summary_row "shared-$n"; done
    echo
    goal_line
    echo
    echo "send→recv: wall clock taken just before the publish call → frame read by the client; it"
    echo "includes the publish statement and its durable commit (fsync). ack→recv: the publish call"
    echo "returned → frame read; commit-to-client lies between the two (a 1 µs ack→recv means the"
    echo "frame arrived before the acknowledgement). Per-run JSON lines (with every field) are below"
    echo "the commands. CPU seconds are over the measured window; machine busy counts both cores."
    echo
    echo "Exact commands (first round; every round is the same):"
    echo
    commands_block
    last=$(echo "$SUBS" | awk '{ print $NF }')
    if [ -f "$WORK/top.own-$last.txt" ]; then
        echo
        echo "\`top\` half-way through the last own-$last run:"
        echo
        echo '```'
        sed -n '1,16p' "$WORK/top.own-$last.txt"
        echo '```'
    fi
    echo
    raw_json_details
)
publish_report "$REPORT"
rm -f "$RAW"
