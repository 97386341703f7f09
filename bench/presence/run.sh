#!/usr/bin/env bash
# Presence benchmark (issue 4): M members join one channel across two relays on one database.
# Measures the time until every subscriber's view holds all M members, and presence frames per
# join (a join must cost one frame per subscriber, never a resend of the member list).
#
#   bench/presence/run.sh            1,000 members + 10 watchers, 3 rounds, appends to bench/RESULTS.md
#   bench/presence/run.sh --smoke    200 members + 4 watchers, 1 round, prints only (< 1 min)
#
# Every member is also a subscriber (it sees its own and everyone's join), so the view of
# M + W connections must converge. Connections are spread round-robin over the two relays, so
# half of every subscriber's joins come from the other relay (through Postgres).
#
# Settings (environment): BENCH_MEMBERS, BENCH_WATCHERS, BENCH_ROUNDS, BENCH_PORT (55492),
# BENCH_RELAY_PORT (55493; the second relay uses the next port), BENCH_DIR (/tmp/bench-presence),
# BENCH_RESULTS (bench/RESULTS.md), BENCH_RECORD (1 in full mode), BENCH_KEEP=1,
# BENCH_RELAY_BIN and BENCH_LOADGEN_BIN (both set: use these binaries, no build).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NAME=presence
# shellcheck source=../loadgen/lib.sh
. "$ROOT/bench/loadgen/lib.sh"

parse_mode "$@"
if [ "$MODE" = smoke ]; then
    MEMBERS=${BENCH_MEMBERS:-200} WATCHERS=${BENCH_WATCHERS:-4} ROUNDS=${BENCH_ROUNDS:-1}
    RECORD=${BENCH_RECORD:-0}
else
    MEMBERS=${BENCH_MEMBERS:-1000} WATCHERS=${BENCH_WATCHERS:-10} ROUNDS=${BENCH_ROUNDS:-3}
    RECORD=${BENCH_RECORD:-1}
fi
PORT=${BENCH_PORT:-55492}
BASE_RELAY_PORT=${BENCH_RELAY_PORT:-55493}
WORK=${BENCH_DIR:-/tmp/bench-presence}
RESULTS_MD=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
RAW=$(mktemp /tmp/bench-presence-raw.XXXXXX.jsonl)
PIDS=()

# Both relays of the scenario and its raw results file; scenario_cleanup does the rest.
scenario_stop() {
    local pid
    for pid in "${PIDS[@]}"; do
        RELAY_PID=$pid relay_stop
    done
    rm -f "$RAW"
}
scenario_traps

require_tools jq curl
raise_fd_limit
build_binaries
BENCH=$(dirname "$LOADGEN")/realtime-presence-bench
[ -x "$BENCH" ] || die "not found: $BENCH (cargo build --release -p realtime-loadgen)"

START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
cluster_start
cluster_setup
RELAY_EXTRA_FLAGS="--presence-max-members $((MEMBERS + WATCHERS + 10)) --presence-track-rate 100"
URLS=""
for i in 0 1; do
    NAME=presence_$i RELAY_PORT=$((BASE_RELAY_PORT + i)) relay_start
    PIDS+=("$RELAY_PID")
    URLS+="${URLS:+,}ws://127.0.0.1:$((BASE_RELAY_PORT + i))/v1/socket"
done
log "mode $MODE: $MEMBERS members + $WATCHERS watchers over 2 relays (pids ${PIDS[*]}), $ROUNDS round(s)"

for ((r = 1; r <= ROUNDS; r++)); do
    label="presence-$MEMBERS-r$r"
    cmd=(realtime-presence-bench --url "$URLS" --members "$MEMBERS" --watchers "$WATCHERS"
        --channel "bench:presence:$r" --label "$label")
    out=$("$BENCH" "${cmd[@]:1}" 2>>"$WORK/bench.log") || {
        tail -n 20 "$WORK/bench.log" >&2
        die "presence bench failed: ${cmd[*]}"
    }
    jq -c --arg cmd "${cmd[*]}" '. + {command: $cmd}' <<<"$out" >>"$RAW"
    log "$label: $(jq -r '"converged \(.converged_subscribers)/\(.subscribers) in \(.converge_ms.max) ms (p50 \(.converge_ms.p50) ms); track reply p99 \(.track_reply_ms.p99) ms; \(.frames_per_join_per_subscriber) frames per join per subscriber"' <<<"$out")"
    # members of this round leave (connections closed) before the next one
    sleep 2
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

REPORT=$(
    echo "## Presence: $MEMBERS members join one channel over two relays ($START_DATE)"
    echo
    echo "Commit $COMMIT, extension $EXT_VERSION, relay $RELAY_BUILD, $(nproc) cores, load average" \
        "$LOAD_START at start / $LOAD_END at end. \`bench/presence/run.sh\`: throwaway Postgres 15" \
        "(fsync and synchronous_commit on), two relays on one database; $MEMBERS anonymous member" \
        "connections and $WATCHERS watchers, round-robin over the relays, all subscribed to one" \
        "channel; at t0 every member sends \`track\` at once. *Converged*: the subscriber's view" \
        "holds all $MEMBERS members."
    echo
    echo '| round | subscribers converged | view complete, all (ms) | p50 subscriber (ms) | track reply p50 / p99 (ms) | presence frames | frames per join per subscriber | errors |'
    echo '|---|---|---|---|---|---|---|---|'
    jq -r '"| \(.label) | \(.converged_subscribers)/\(.subscribers) | \(.converge_ms.max) | \(.converge_ms.p50) | \(.track_reply_ms.p50) / \(.track_reply_ms.p99) | \(.presence_frames) | \(.frames_per_join_per_subscriber) | \(.errors + .track_errors) |"' "$RAW"
    echo
    echo '```sh'
    jq -r '.command' "$RAW" | head -n 1
    echo '```'
)
publish_report "$REPORT"
