#!/usr/bin/env bash
# Fan-out benchmark (issue 8, scenario 3): the highest deliveries/s the relay sustains with
# p99 < 50 ms and nothing missing, (a) one shared channel × many subscribers, (b) many channels
# × few subscribers (per-user). Goal: ≥ 300k deliveries/s on this machine.
#
#   bench/fanout/run.sh            3 rounds per step (< 10 min), appends a section to bench/RESULTS.md
#   bench/fanout/run.sh --smoke    1 round, 200 subscribers, two short steps each (< 30 s), prints only
#
# Each pattern climbs a ladder of publish rates; a step passes when the median over its rounds
# has p99 < 50 ms (send→recv) and no missing delivery. The climb stops at the first failing step.
#
# Settings (environment): BENCH_ROUNDS (3), BENCH_T (measured seconds per run, 6),
# BENCH_SHARED_SUBS (2000), BENCH_SHARED_RATES ("10 25 50 75 100 150 200 300"),
# BENCH_USER_SUBS (2000), BENCH_USER_CHANNELS (1000), BENCH_USER_RATES ("500 1000 2000 4000 8000"),
# BENCH_USER_BATCH (messages per publish transaction for per-user, 10), BENCH_PORT (55482),
# BENCH_RELAY_PORT (55483), BENCH_DIR (/tmp/bench-fanout), BENCH_RESULTS (bench/RESULTS.md),
# BENCH_RECORD (1 in full mode), BENCH_SYNC_COMMIT (on), BENCH_KEEP=1, BENCH_RELAY_BIN and
# BENCH_LOADGEN_BIN (both set: use these binaries, no build).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NAME=fanout
# shellcheck source=../loadgen/lib.sh
. "$ROOT/bench/loadgen/lib.sh"

MODE=full
case "${1:-}" in
    "") ;;
    --smoke) MODE=smoke ;;
    -h | --help)
        sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument '$1' (expected --smoke)" ;;
esac
if [ "$MODE" = smoke ]; then
    ROUNDS=${BENCH_ROUNDS:-1} T=${BENCH_T:-2} WARMUP=0.5
    SHARED_SUBS=${BENCH_SHARED_SUBS:-200} SHARED_RATES=${BENCH_SHARED_RATES:-"50 200"}
    USER_SUBS=${BENCH_USER_SUBS:-200} USER_CHANNELS=${BENCH_USER_CHANNELS:-100}
    USER_RATES=${BENCH_USER_RATES:-"200 1000"} RECORD=${BENCH_RECORD:-0}
    MAX_SECONDS=120 CLIMB_BUDGET=60
else
    ROUNDS=${BENCH_ROUNDS:-3} T=${BENCH_T:-6} WARMUP=1
    SHARED_SUBS=${BENCH_SHARED_SUBS:-2000} SHARED_RATES=${BENCH_SHARED_RATES:-"10 25 50 75 100 150 200 300"}
    USER_SUBS=${BENCH_USER_SUBS:-2000} USER_CHANNELS=${BENCH_USER_CHANNELS:-1000}
    USER_RATES=${BENCH_USER_RATES:-"500 1000 2000 4000 8000"} RECORD=${BENCH_RECORD:-1}
    # The whole run stays under 10 minutes: no new step starts after CLIMB_BUDGET seconds.
    MAX_SECONDS=660 CLIMB_BUDGET=510
fi
USER_BATCH=${BENCH_USER_BATCH:-10}
P99_LIMIT_US=50000
PORT=${BENCH_PORT:-55482}
RELAY_PORT=${BENCH_RELAY_PORT:-55483}
WORK=${BENCH_DIR:-/tmp/bench-fanout}
RESULTS_MD=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
RAW=$(mktemp /tmp/bench-fanout-raw.XXXXXX.jsonl)

WATCHDOG_PID=""
cleanup() {
    local rc=$?
    set +e
    relay_stop
    [ $rc -ne 0 ] && [ -f "$WORK/relay.log" ] && tail -n 10 "$WORK/relay.log" >&2
    cluster_stop
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$WORK"
    [ -n "$WATCHDOG_PID" ] && kill "$WATCHDOG_PID" 2>/dev/null
    exit $rc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

command -v jq >/dev/null || die "jq is required (apt-get install -y jq)"
command -v curl >/dev/null || die "curl is required"
raise_fd_limit
build_binaries
setsid bash -c 'sleep "$0"; kill -TERM "$1"' "$MAX_SECONDS" "$$" &
WATCHDOG_PID=$!

START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
cluster_start
cluster_setup
relay_start
CLIMB_START=$SECONDS
log "mode $MODE: ${T}s runs, $ROUNDS round(s) per step; relay pid $RELAY_PID on $RELAY_PORT"

# Whether a label's step passed: median p99 < limit and median missing == 0.
step_passes() {
    local p99 miss
    p99=$(field_median "$1" .latency_us.p99)
    miss=$(field_median "$1" .missing)
    [ "$p99" != - ] && awk -v p="$p99" -v m="$miss" -v l="$P99_LIMIT_US" 'BEGIN { exit !(p < l && m <= 0) }'
}

# usage: climb PREFIX RATES -- LOADGEN ARGS (without --rate). Sets BEST_<PREFIX> to the label of
# the highest passing step, STEPS_<PREFIX> to every label run.
climb() {
    local prefix=$1 rates=$2 rate r label line best="" steps=""
    shift 3
    for rate in $rates; do
        if [ $((SECONDS - CLIMB_START)) -gt "$CLIMB_BUDGET" ]; then
            log "time budget reached; $prefix stops before rate $rate"
            STOPPED_EARLY+="$prefix at $rate/s; "
            break
        fi
        label="$prefix-$rate"
        steps+="$label "
        for ((r = 1; r <= ROUNDS; r++)); do
            line=$(loadgen_run "$label" --rate "$rate" --duration "$T" --warmup "$WARMUP" --drain 3 "$@")
            log "$label round $r: $(jq -r '"\(.deliveries_per_s)/s missing \(.missing) p50 \(.latency_us.p50)µs p99 \(.latency_us.p99)µs relay cpu \(.cpu_s.relay)s loadgen cpu \(.cpu_s.loadgen)s"' <<<"$line")"
        done
        if step_passes "$label"; then
            best=$label
        else
            log "$label fails (median p99 ≥ 50 ms or deliveries missing); $prefix stops here"
            break
        fi
    done
    printf -v "BEST_$prefix" '%s' "$best"
    printf -v "STEPS_$prefix" '%s' "$steps"
}
STOPPED_EARLY=""

climb shared "$SHARED_RATES" -- --connections "$SHARED_SUBS" --pattern shared --publishers 8 --pad 100
climb peruser "$USER_RATES" -- --connections "$USER_SUBS" --pattern per-user --channels "$USER_CHANNELS" \
    --batch "$USER_BATCH" --publishers 8 --pad 100
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report.

best_line() {
    local what=$1 best=$2 steps=$3
    if [ -z "$steps" ]; then
        echo "- $what: not run (no rates given)."
        return
    fi
    if [ -z "$best" ]; then
        echo "- $what: no step passed (p99 < 50 ms, nothing missing)."
        return
    fi
    echo "- $what: **$(field_median "$best" .deliveries_per_s) deliveries/s** at \`$best\`" \
        "(p99 $(us_to_ms "$(field_median "$best" .latency_us.p99)") ms; medians of $ROUNDS round(s))."
}

REPORT=$(
    echo "## Fan-out: highest deliveries/s with p99 < 50 ms ($START_DATE)"
    echo
    echo "Commit $COMMIT ($DIRTY uncommitted changes), extension $EXT_VERSION, relay $RELAY_BUILD," \
        "$(nproc) cores, load average $LOAD_START at start / $LOAD_END at end, fd limit $FD_LIMIT." \
        "\`bench/fanout/run.sh\`: throwaway Postgres 15 on port $PORT (fsync and synchronous_commit" \
        "${BENCH_SYNC_COMMIT:-on}, wal_level=logical), relay on $RELAY_PORT. Each pattern climbs a" \
        "ladder of publish rates, $ROUNDS round(s) of ${T} s (after ${WARMUP} s of warm-up) per step;" \
        "a step passes when its median p99 (send→recv) < 50 ms and its median missing count is 0;" \
        "the climb stops at the first failing step. **shared**: $SHARED_SUBS subscribers on" \
        "\`bench:shared\`, one message per publish transaction. **peruser**: $USER_SUBS subscribers" \
        "over $USER_CHANNELS channels (\`bench:<i % $USER_CHANNELS>\`, 2 subscribers each), message s to" \
        "\`bench:<s % $USER_CHANNELS>\`, $USER_BATCH messages per publish transaction (to reach rates" \
        "a single-row commit cannot). Figures are medians over rounds: a first cut on a noisy 2-core" \
        "machine that the relay, Postgres and the load generator share."
    echo
    best_line "one shared channel × $SHARED_SUBS" "${BEST_shared:-}" "${STEPS_shared:-}"
    best_line "$USER_CHANNELS channels × 2 subscribers" "${BEST_peruser:-}" "${STEPS_peruser:-}"
    if [ -n "$STOPPED_EARLY" ]; then echo "- Stopped by the 10-minute budget: $STOPPED_EARLY"; fi
    echo "- Goal ≥ 300,000 deliveries/s: see the figures above and the notes below."
    echo
    summary_header
    for l in ${STEPS_shared:-} ${STEPS_peruser:-}; do summary_row "$l"; done
    echo
    echo "send→recv includes the publish statement and its durable commit; ack→recv starts when the"
    echo "publish call returned. CPU seconds are over the measured window (machine busy: both cores)."
    echo
    echo "Exact commands (first round of each step; every round is the same):"
    echo
    commands_block
    for l in ${BEST_shared:-} ${BEST_peruser:-}; do
        if [ -f "$WORK/top.$l.txt" ]; then
            echo
            echo "\`top\` half-way through the last $l run:"
            echo
            echo '```'
            sed -n '1,16p' "$WORK/top.$l.txt"
            echo '```'
        fi
    done
    echo
    echo "<details><summary>Raw JSON lines</summary>"
    echo
    echo '```json'
    jq -c 'del(.command)' "$RAW"
    echo '```'
    echo
    echo "</details>"
)
printf '%s\n' "$REPORT"
if [ "$RECORD" = 1 ]; then append_results "$RESULTS_MD" "$REPORT"; fi
rm -f "$RAW"
