#!/usr/bin/env bash
# Fan-out benchmark (issues 8 and 19): the highest deliveries/s with p99 < 50 ms and nothing
# missing, for our relay and three peers run side by side in the same window with the same
# workload and message size: a Node `ws` broadcast server, a Node Socket.IO server and a Go
# server on the Centrifuge library (the core of Centrifugo), all relaying the same
# realtime.publish() commits the InsForge way (bench/peers/). Two shapes: (a) one shared channel
# × many subscribers, (b) many channels × few subscribers (per-user). Every run reports the
# server's CPU µs per delivery beside deliveries/s. Goals: ≥ 300k deliveries/s; ≥ 3x Socket.IO,
# ≥ 1.5x Node ws and ≥ 1.5x Centrifuge in the same run, and less CPU per delivery than Centrifuge.
#
#   bench/fanout/run.sh            5 interleaved rounds per step (≤ 40 min), appends to bench/RESULTS.md
#   bench/fanout/run.sh --smoke    1 round, 200 subscribers, one short step per shape and server (< 2 min)
#
# The load generator runs as BENCH_LOADGEN_PROCS processes (2; bench/loadgen/src/group.rs), one
# publishing, all subscribing their share, their lines merged into one per run.
#
# Each shape climbs a ladder of publish rates. At each step every server still climbing runs
# once per round, servers in an order rotated per round (interleaved); a server passes the step
# when the median over its rounds has p99 < 50 ms (send→recv) and no missing delivery, and stops
# climbing at its first failing step. Only one server runs at a time. Ratios: our best passing
# deliveries/s over each peer's (a lower bound when we never failed).
#
# Settings (environment): BENCH_TARGETS ("realtime ws socketio centrifuge"), BENCH_LOADGEN_PROCS
# (2), BENCH_ROUNDS (5), BENCH_T
# (measured seconds per run, 5), BENCH_SHARED_SUBS (500), BENCH_SHARED_RATES
# ("10 25 50 100 200 300 400 600"), BENCH_USER_SUBS (2000), BENCH_USER_CHANNELS (1000),
# BENCH_USER_RATES ("1000 2000 4000 8000"), BENCH_USER_BATCH (messages per publish transaction
# for per-user, 10), BENCH_PORT (24482), BENCH_RELAY_PORT (24483), BENCH_PEER_PORT (24484),
# BENCH_DIR (/tmp/bench-fanout), BENCH_RESULTS (bench/RESULTS.md), BENCH_RECORD (1 in full mode),
# BENCH_SYNC_COMMIT (on), BENCH_KEEP=1, BENCH_RELAY_BIN and BENCH_LOADGEN_BIN (both set: use
# these binaries, no build), BENCH_BUDGET (seconds after which no new step starts; 1800).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NAME=fanout
# shellcheck source=../loadgen/lib.sh
. "$ROOT/bench/loadgen/lib.sh"
# The ladder (climb, step_passes, best_dps, cpu_us_per_delivery); this file's report lines
# (peers' goals) are its own.
# shellcheck source=../loadgen/ladder.sh
. "$ROOT/bench/loadgen/ladder.sh"

parse_mode "$@"
ladder_settings
if [ "$MODE" = smoke ]; then
    MAX_SECONDS=240
else
    MAX_SECONDS=$((CLIMB_BUDGET + 600))
fi
TARGETS=${BENCH_TARGETS:-"realtime ws socketio centrifuge"}
LOADGEN_PROCS=${BENCH_LOADGEN_PROCS:-2}
USER_BATCH=${BENCH_USER_BATCH:-10}
PORT=${BENCH_PORT:-24482}
RELAY_PORT=${BENCH_RELAY_PORT:-24483}
PEER_PORT=${BENCH_PEER_PORT:-24484}
WORK=${BENCH_DIR:-/tmp/bench-fanout}
RESULTS_MD=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
RAW=$(mktemp /tmp/bench-fanout-raw.XXXXXX.jsonl)

scenario_stop() {
    peer_stop
}
scenario_traps

require_tools jq curl
ports_free "$PORT" "$RELAY_PORT" "$PEER_PORT"
raise_fd_limit
build_binaries
watchdog_start "$MAX_SECONDS"
git_facts
cluster_start
cluster_setup
peers_install
peers_setup
CLIMB_START=$SECONDS
log "mode $MODE: ${T}s runs, $ROUNDS round(s) per step, servers [$TARGETS]"

climb shared "$SHARED_RATES" -- --connections "$SHARED_SUBS" --pattern shared --publishers 8 --pad 100
climb peruser "$USER_RATES" -- --connections "$USER_SUBS" --pattern per-user --channels "$USER_CHANNELS" \
    --batch "$USER_BATCH" --publishers 8 --pad 100
use_target realtime >/dev/null 2>&1 || true
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report.

best_line() {
    local shape=$1 what=$2 t b
    for t in $TARGETS; do
        b=${BEST[$shape,$t]:-}
        if [ -z "$b" ]; then
            echo "- $what, **$t**: no step passed (p99 < 50 ms, nothing missing)."
            continue
        fi
        local open=""
        [[ " ${CLIMBING[$shape]:-} " == *" $t "* ]] && open=" (never failed: the ladder ended first, so this is a lower bound)"
        echo "- $what, **$t**: **$(field_median "$b" .deliveries_per_s) deliveries/s** at \`$b\`" \
            "(p99 $(us_to_ms "$(field_median "$b" .latency_us.p99)") ms," \
            "$(cpu_us_per_delivery "$b" | awk '{ if ($1 == "-") print "-"; else printf "%.1f", $1 }') µs of server CPU per delivery)$open."
    done
}

ratio_line() {
    local shape=$1 what=$2 ours peer t
    ours=$(best_dps "$shape" realtime)
    for t in $TARGETS; do
        [ "$t" = realtime ] && continue
        peer=$(best_dps "$shape" "$t")
        local goal=1.5
        [ "$t" = socketio ] && goal=3 # ws and centrifuge: 1.5
        if [ "$ours" = - ] || [ "$peer" = - ]; then
            echo "- $what: ours / $t: not measurable (a server passed no step)."
        elif [[ " ${CLIMBING[$shape]:-} " == *" $t "* ]]; then
            echo "- $what: ours / $t: not measurable ($t passed every step too: the ladder was too short)."
        else
            awk -v o="$ours" -v p="$peer" -v t="$t" -v g="$goal" -v w="$what" -v lb="$([[ " ${CLIMBING[$shape]:-} " == *" realtime "* ]] && echo 1 || echo 0)" \
                'BEGIN { r = o / p; printf "- %s: ours / %s = **%s%.2fx** (goal ≥ %sx: %s)\n", w, t, (lb ? "≥ " : ""), r, g, (r >= g ? "met" : "not met") }'
        fi
    done
}

# At the lowest step of a shape (every server ran it): CPU per delivery of each server and the
# peers' over ours.
cpu_line() {
    local shape=$1 first t ours v
    first=$(echo "${STEPS[$shape]:-}" | awk '{ print $1 }' | sed 's/-[a-z]*$//')
    [ -n "$first" ] || return 0
    ours=$(cpu_us_per_delivery "$first-realtime")
    local out="- $shape, server CPU per delivery at '$first' (all servers, same load):"
    for t in $TARGETS; do
        v=$(cpu_us_per_delivery "$first-$t")
        out+=" $t $(awk -v v="$v" 'BEGIN { if (v == "-") print "-"; else printf "%.1f µs", v }')"
        if [ "$t" != realtime ] && [ "$v" != - ] && [ "$ours" != - ]; then
            out+=" ($(awk -v a="$v" -v b="$ours" 'BEGIN { printf "%.2fx ours", a / b }'))"
        fi
        out+=";"
    done
    echo "${out%;}." | tr "'" '`'
}

# The CPU goal against Centrifuge: less server CPU per delivery than Centrifuge at the lowest
# step (the same load for both).
cpu_goal_line() {
    local shape=$1 first ours theirs
    first=$(echo "${STEPS[$shape]:-}" | awk '{ print $1 }' | sed 's/-[a-z]*$//')
    [ -n "$first" ] || return 0
    ours=$(cpu_us_per_delivery "$first-realtime")
    theirs=$(cpu_us_per_delivery "$first-centrifuge")
    if [ "$ours" = - ] || [ "$theirs" = - ]; then
        echo "- Goal: less CPU per delivery than Centrifuge ($shape): not measurable."
    else
        awk -v o="$ours" -v c="$theirs" -v s="$shape" -v f="$first" 'BEGIN {
            printf "- Goal: less CPU per delivery than Centrifuge (%s, at `%s`): ours %.1f µs, Centrifuge %.1f µs: %s\n",
                s, f, o, c, (o < c ? "met" : "not met") }'
    fi
}

REPORT=$(
    echo "## Fan-out with peers: highest deliveries/s with p99 < 50 ms ($START_DATE)"
    echo
    echo "Commit $COMMIT ($DIRTY uncommitted changes), extension $EXT_VERSION, relay $RELAY_BUILD," \
        "peers: $PEER_VERSIONS; $LOADGEN_PROCS load-generator process(es) per run. Machine: $(machine_line); load average $LOAD_START at start /" \
        "$LOAD_END at end (other jobs share the cores), fd limit $FD_LIMIT." \
        "\`bench/fanout/run.sh\`: throwaway Postgres 15 on port $PORT (fsync and synchronous_commit" \
        "${BENCH_SYNC_COMMIT:-on}, wal_level=logical); our relay on $RELAY_PORT; the peers on" \
        "$PEER_PORT (only one server runs at a time; the peers' NOTIFY trigger is enabled only during" \
        "their runs). Each shape climbs a ladder of publish rates, $ROUNDS interleaved round(s) of" \
        "${T} s (after ${WARMUP} s of warm-up) per step and server; a step passes when its median p99" \
        "(send→recv) < 50 ms and its median missing count is 0. **shared**: $SHARED_SUBS subscribers" \
        "on \`bench:shared\`, one message per publish transaction. **peruser**: $USER_SUBS subscribers" \
        "over $USER_CHANNELS channels (2 each), $USER_BATCH messages per publish transaction." \
        "Payload \`{s, t, pad: 100 × x}\`; the frame size column shows every server sends about the" \
        "same bytes per delivery (Centrifuge's protocol wraps each publication in" \
        "\`{\"result\":{\"channel\":…,\"data\":{\"data\":…}}}\`: ~45 bytes more). Server CPU per delivery" \
        "= the server process's CPU seconds over the measured window / deliveries in it. Figures are" \
        "medians over rounds."
    echo
    best_line shared "one shared channel × $SHARED_SUBS"
    best_line peruser "$USER_CHANNELS channels × 2 subscribers"
    ratio_line shared "shared"
    ratio_line peruser "peruser"
    cpu_line shared
    cpu_line peruser
    if [ -n "$STOPPED_EARLY" ]; then echo "- Stopped by the time budget: $STOPPED_EARLY"; fi
    echo "- Goal ≥ 300,000 deliveries/s (ours): shared $(best_dps shared realtime), peruser $(best_dps peruser realtime)."
    if [[ " $TARGETS " == *" centrifuge "* ]]; then
        cpu_goal_line shared
        cpu_goal_line peruser
    fi
    echo
    summary_header
    for l in ${STEPS[shared]:-} ${STEPS[peruser]:-}; do summary_row "$l"; done
    echo
    echo "send→recv includes the publish statement and its durable commit; ack→recv starts when the"
    echo "publish call returned. CPU seconds are over the measured window (server = our relay or the"
    echo "peer; loadgen = all its processes; machine busy counts both cores)."
    echo
    echo "Exact commands (first round of each step; every round is the same; the peers were started"
    echo "as \`node bench/peers/<ws|socketio>-server.mjs --port $PEER_PORT --database-url $DB_URL\`"
    echo "and \`bench/peers/centrifuge/build.sh OUT && OUT --port $PEER_PORT --database-url $DB_URL\`):"
    echo
    commands_block
    echo
    raw_json_details
)
publish_report "$REPORT"
rm -f "$RAW"
