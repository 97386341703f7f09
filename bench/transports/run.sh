#!/usr/bin/env bash
# Transports benchmark (issue 16): the fan-out shape of bench/fanout over Server-Sent Events
# beside WebSocket (protocol v1), both served by the same relay process, in one run with
# interleaved rounds; and the memory of an idle SSE stream beside an idle WebSocket. Goals: SSE
# ≥ 0.8x WebSocket deliveries/s with p99 < 50 ms; ≤ 16 KB per idle SSE stream.
#
#   bench/transports/run.sh           5 interleaved rounds per step, idle steps to 5,000; appends to bench/RESULTS.md
#   bench/transports/run.sh --smoke   1 round, 200 subscribers, one short step per shape, idle 200 and 500 (~40 s)
#
# Fan-out: each shape climbs a ladder of publish rates (bench/loadgen/ladder.sh: a target passes
# a step when the median over its rounds has p99 < 50 ms send→recv and nothing missing, and
# stops climbing at its first failing step); **shared**: one channel × BENCH_SHARED_SUBS
# subscribers; **peruser**: BENCH_USER_CHANNELS channels × 2 subscribers, 10 messages per publish
# transaction. The load generator runs as BENCH_LOADGEN_PROCS processes (bench/loadgen/src/group.rs)
# whose lines are merged. An SSE subscriber is one `GET /v1/sse?channel=C` stream
# (bench/loadgen/src/sse_conn.rs); a WebSocket subscriber one /v1/socket connection.
#
# Idle memory: per round, for each transport, a freshly started relay and one load generator in
# `--mode idle` opening BENCH_IDLE_STEPS subscribed streams or sockets (each on its own channel),
# then idle; KB per connection = (relay VmRSS − VmRSS before the first one) / open connections,
# read BENCH_SETTLE seconds after each step. The loadgen is a separate process from the relay,
# and each holds one descriptor per connection (the hard limit here is 20,000 per process).
#
# Settings (environment): BENCH_TARGETS ("realtime sse"), BENCH_LOADGEN_PROCS (2), BENCH_ROUNDS
# (5), BENCH_T (measured seconds per run, 5), BENCH_SHARED_SUBS (500), BENCH_SHARED_RATES
# ("10 25 50 100 200 300 400 600"), BENCH_USER_SUBS (2000), BENCH_USER_CHANNELS (1000),
# BENCH_USER_RATES ("1000 2000 4000 8000"), BENCH_IDLE_STEPS ("1000 5000"), BENCH_IDLE_ROUNDS (3),
# BENCH_SETTLE (3), BENCH_PORT (24492), BENCH_RELAY_PORT (24493), BENCH_DIR
# (/tmp/bench-transports), BENCH_RESULTS, BENCH_RECORD (1 in full mode), BENCH_SYNC_COMMIT (on),
# BENCH_KEEP=1, BENCH_RELAY_BIN and BENCH_LOADGEN_BIN (both set: no build), BENCH_BUDGET (seconds
# after which no new fan-out step starts; 1800).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NAME=transports
# shellcheck source=../loadgen/lib.sh
. "$ROOT/bench/loadgen/lib.sh"
# shellcheck source=../loadgen/ladder.sh
. "$ROOT/bench/loadgen/ladder.sh"

parse_mode "$@"
ladder_settings
if [ "$MODE" = smoke ]; then
    IDLE_STEPS=${BENCH_IDLE_STEPS:-"200 500"} IDLE_ROUNDS=${BENCH_IDLE_ROUNDS:-1} SETTLE=${BENCH_SETTLE:-1}
    MAX_SECONDS=240
else
    IDLE_STEPS=${BENCH_IDLE_STEPS:-"1000 5000"} IDLE_ROUNDS=${BENCH_IDLE_ROUNDS:-3} SETTLE=${BENCH_SETTLE:-3}
    MAX_SECONDS=$((CLIMB_BUDGET + 900))
fi
TARGETS=${BENCH_TARGETS:-"realtime sse"}
LOADGEN_PROCS=${BENCH_LOADGEN_PROCS:-2}
USER_BATCH=10
PORT=${BENCH_PORT:-24492}
RELAY_PORT=${BENCH_RELAY_PORT:-24493}
WORK=${BENCH_DIR:-/tmp/bench-transports}
RESULTS_MD=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
RAW=$(mktemp /tmp/bench-transports-raw.XXXXXX.jsonl)

for t in $TARGETS; do relay_target "$t" || die "BENCH_TARGETS: '$t' is not one of our relay's transports"; done
scenario_traps
require_tools jq curl
ports_free "$PORT" "$RELAY_PORT"
raise_fd_limit
IDLE_MAX=${IDLE_STEPS##* }
[ "$IDLE_MAX" -le $((FD_LIMIT - 200)) ] ||
    die "BENCH_IDLE_STEPS goes to $IDLE_MAX connections, above the descriptor limit $FD_LIMIT less a margin"
build_binaries
watchdog_start "$MAX_SECONDS"
git_facts
cluster_start
cluster_setup
CLIMB_START=$SECONDS
log "mode $MODE: ${T}s runs, $ROUNDS round(s) per step, transports [$TARGETS]"

climb shared "$SHARED_RATES" -- --connections "$SHARED_SUBS" --pattern shared --publishers 8 --pad 100
climb peruser "$USER_RATES" -- --connections "$USER_SUBS" --pattern per-user --channels "$USER_CHANNELS" \
    --batch "$USER_BATCH" --publishers 8 --pad 100

# Idle memory: a fresh relay per run, so its baseline is an idle process's.
IDLE_ARG=${IDLE_STEPS// /,}
for ((r = 1; r <= IDLE_ROUNDS; r++)); do
    # shellcheck disable=SC2046
    for t in $(rotate $((r - 1)) $TARGETS); do
        relay_stop
        use_target "$t"
        line=$(loadgen_run "idle-$t" --mode idle --steps "$IDLE_ARG" --settle "$SETTLE" \
            --pattern per-user --channels "$IDLE_MAX" --connect-concurrency 128)
        log "idle round $r $t: $(jq -r '[.steps[] | "\(.open) open → \(.kb_per_connection) KB/conn"] | join(", ")' <<<"$line")"
    done
done
relay_stop
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report.

# usage: idle_median TARGET STEP FIELD — median over rounds of one idle step's field.
idle_median() {
    jq -r --arg l "idle-$1" --argjson s "$2" \
        "select(.label == \$l) | .steps[] | select(.connections == \$s) | .$3 // empty" "$RAW" | median
}

idle_table() {
    printf '| transport |'
    for s in $IDLE_STEPS; do printf ' %s: open / RSS MB / KB per connection |' "$s"; done
    echo
    printf '|---|'
    for s in $IDLE_STEPS; do printf '%s' '---|'; done
    echo
    for t in $TARGETS; do
        printf '| %s |' "$t"
        for s in $IDLE_STEPS; do
            printf ' %s / %s / %s |' "$(idle_median "$t" "$s" open)" \
                "$(idle_median "$t" "$s" rss_kb | awk '{ if ($1 == "-") print "-"; else printf "%.0f", $1 / 1024 }')" \
                "$(idle_median "$t" "$s" kb_per_connection)"
        done
        echo
    done
}

idle_goal() {
    local v
    v=$(idle_median sse "$IDLE_MAX" kb_per_connection)
    if [ "$v" = - ]; then
        echo "- Goal ≤ 16 KB per idle SSE stream: not measured."
    else
        echo "- Goal ≤ 16 KB per idle SSE stream (at $IDLE_MAX streams): **$v KB** —" \
            "$(awk -v v="$v" 'BEGIN { print (v <= 16) ? "met" : "not met" }') (WebSocket:" \
            "$(idle_median realtime "$IDLE_MAX" kb_per_connection) KB)."
    fi
}

REPORT=$(
    echo "## Transports: SSE beside WebSocket, fan-out and idle memory ($START_DATE)"
    echo
    echo "Commit $COMMIT ($DIRTY uncommitted changes), extension $EXT_VERSION, relay $RELAY_BUILD;" \
        "$LOADGEN_PROCS load-generator process(es) per fan-out run. Machine: $(machine_line); load" \
        "average $LOAD_START at start / $LOAD_END at end (other jobs share the cores), fd limit $FD_LIMIT." \
        "\`bench/transports/run.sh\`: throwaway Postgres 15 on port $PORT (fsync and synchronous_commit" \
        "${BENCH_SYNC_COMMIT:-on}, wal_level=logical); one relay on $RELAY_PORT serving both" \
        "transports (\`realtime\` = WebSocket protocol v1 at /v1/socket, \`sse\` = \`GET /v1/sse?channel=…\`)." \
        "Fan-out: each shape climbs a ladder of publish rates, $ROUNDS interleaved round(s) of ${T} s" \
        "(after ${WARMUP} s of warm-up) per step and transport; a step passes when its median p99" \
        "(send→recv) < 50 ms and its median missing count is 0. **shared**: $SHARED_SUBS subscribers" \
        "on \`bench:shared\`; **peruser**: $USER_SUBS subscribers over $USER_CHANNELS channels (2 each)," \
        "$USER_BATCH messages per publish transaction. Payload \`{s, t, pad: 100 × x}\`. Server CPU" \
        "per delivery = the relay's CPU seconds over the measured window / deliveries. Idle: a fresh" \
        "relay per run, $IDLE_ROUNDS round(s), each connection subscribed to its own channel, VmRSS" \
        "${SETTLE} s after each step. Figures are medians over rounds."
    echo
    best_line shared "one shared channel × $SHARED_SUBS"
    best_line peruser "$USER_CHANNELS channels × 2 subscribers"
    ratio_line shared "shared" sse realtime 0.8
    ratio_line peruser "peruser" sse realtime 0.8
    cpu_line shared
    cpu_line peruser
    if [ -n "$STOPPED_EARLY" ]; then echo "- Stopped by the time budget: $STOPPED_EARLY"; fi
    idle_goal
    echo
    summary_header
    for l in ${STEPS[shared]:-} ${STEPS[peruser]:-}; do summary_row "$l"; done
    echo
    echo "Idle connections (relay RSS; KB per connection = (RSS − RSS before the first) / open):"
    echo
    idle_table
    echo
    echo "send→recv includes the publish statement and its durable commit; ack→recv starts when the"
    echo "publish call returned. An SSE delivery's frame bytes are its \`data:\` line (the v1 frame);"
    echo "the event's \`id:\` and \`event:\` lines add ~60 bytes on the wire."
    echo
    echo "Exact commands (first round of each step):"
    echo
    commands_block
    echo
    raw_json_details
)
publish_report "$REPORT"
rm -f "$RAW"
