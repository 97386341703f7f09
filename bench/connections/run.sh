#!/usr/bin/env bash
# Connections benchmark (issue 8, scenario 4): idle WebSocket connections stepping up to 50,000,
# and the server's RSS per connection. Goal: ≤ 16 KB per connection (our relay). The peers
# (bench/peers/: Node ws, Socket.IO, Centrifuge) are measured the same way for comparison.
#
#   bench/connections/run.sh           3 interleaved rounds, steps up to 50k (capped by the fd limit), appends to bench/RESULTS.md
#   bench/connections/run.sh --smoke   1 round, steps 200 and 1,000 (< 40 s), prints only
#
# Each run is one load generator in `--mode idle`: it opens the step's connections (source
# addresses spread over 127.0.0.1..=127.0.0.16, each with its own ephemeral ports), subscribes
# each to its own channel (bench:<i>), waits BENCH_SETTLE seconds and reads the server's VmRSS;
# RSS per connection = (RSS − RSS before the first connection) / open connections. Both the load
# generator and the server need one file descriptor per connection: the script raises the soft
# limit to the hard limit and caps the steps below it (the report says so). Servers run one at a
# time, each freshly started for its run.
#
# Settings (environment): BENCH_CHANNELS (one per connection; 1 puts every connection on one
# channel), BENCH_TARGETS ("realtime ws socketio centrifuge"), BENCH_ROUNDS (3),
# BENCH_STEPS ("1000 5000 10000 20000 30000 50000"), BENCH_SETTLE (3), BENCH_PORT (24486),
# BENCH_RELAY_PORT (24487), BENCH_PEER_PORT (24488), BENCH_DIR (/tmp/bench-connections),
# BENCH_RESULTS, BENCH_RECORD (1 in full mode), BENCH_KEEP=1, BENCH_RELAY_BIN and
# BENCH_LOADGEN_BIN (both set: no build).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NAME=connections
# shellcheck source=../loadgen/lib.sh
. "$ROOT/bench/loadgen/lib.sh"

parse_mode "$@"
if [ "$MODE" = smoke ]; then
    ROUNDS=${BENCH_ROUNDS:-1} STEPS=${BENCH_STEPS:-"200 1000"} SETTLE=${BENCH_SETTLE:-1}
    RECORD=${BENCH_RECORD:-0} MAX_SECONDS=150
else
    ROUNDS=${BENCH_ROUNDS:-3} STEPS=${BENCH_STEPS:-"1000 5000 10000 20000 30000 50000"}
    SETTLE=${BENCH_SETTLE:-3} RECORD=${BENCH_RECORD:-1} MAX_SECONDS=2400
fi
TARGETS=${BENCH_TARGETS:-"realtime ws socketio centrifuge"}
PORT=${BENCH_PORT:-24486}
RELAY_PORT=${BENCH_RELAY_PORT:-24487}
PEER_PORT=${BENCH_PEER_PORT:-24488}
WORK=${BENCH_DIR:-/tmp/bench-connections}
RESULTS_MD=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
RAW=$(mktemp /tmp/bench-connections-raw.XXXXXX.jsonl)

scenario_stop() {
    peer_stop
}
scenario_traps

require_tools jq curl
ports_free "$PORT" "$RELAY_PORT" "$PEER_PORT"
raise_fd_limit
# Each side holds one descriptor per connection plus a few dozen of its own (pool, listener,
# logs): steps above the limit are replaced by one step just under it.
FD_CAP=$((FD_LIMIT - 200))
CAPPED=""
steps=""
for s in $STEPS; do
    if [ "$s" -le "$FD_CAP" ]; then
        steps+="$s "
    elif [ -z "$CAPPED" ]; then
        steps+="$FD_CAP "
        CAPPED="steps above $FD_CAP ($(echo "$STEPS" | awk -v c="$FD_CAP" '{ for (i = 1; i <= NF; i++) if ($i > c) printf "%s ", $i }' | sed 's/ $//')) were capped at $FD_CAP: the hard file descriptor limit here is $FD_HARD per process and cannot be raised (ulimit -Hn), and both the server and the load generator need one descriptor per connection"
    fi
done
STEPS=${steps% }
STEP_ARG=${STEPS// /,}
MAX_STEP=${STEPS##* }
CHANNELS=${BENCH_CHANNELS:-$MAX_STEP}
if [ "$CHANNELS" = 1 ]; then SHAPE="one shared channel"; else SHAPE="its own channel"; fi
build_binaries
watchdog_start "$MAX_SECONDS"
git_facts
cluster_start
cluster_setup
if [[ " $TARGETS " != " realtime " ]]; then
    peers_install
    peers_setup
fi
[ -n "$CAPPED" ] && log "NOTE: $CAPPED"
log "mode $MODE: steps [$STEPS], $ROUNDS round(s), servers [$TARGETS]"

for ((r = 1; r <= ROUNDS; r++)); do
    # shellcheck disable=SC2046
    for t in $(rotate $((r - 1)) $TARGETS); do
        # A fresh server per run: its baseline RSS is that of an idle process.
        peer_stop
        relay_stop
        use_target "$t"
        line=$(loadgen_run "idle-$t" --mode idle --steps "$STEP_ARG" --settle "$SETTLE" \
            --pattern per-user --channels "$CHANNELS" --connect-concurrency 128)
        log "round $r $t: $(jq -r '[.steps[] | "\(.open) open → \(.kb_per_connection) KB/conn"] | join(", ")' <<<"$line")$(jq -r 'if .stopped_early then "; stopped: \(.stopped_early)" else "" end' <<<"$line")"
    done
done
peer_stop
relay_stop
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report.

# usage: step_median TARGET STEP FIELD — median over rounds of one step's field.
step_median() {
    jq -r --arg l "idle-$1" --argjson s "$2" \
        "select(.label == \$l) | .steps[] | select(.connections == \$s) | .$3 // empty" "$RAW" | median
}

REPORT=$(
    echo "## Connections: idle connections and RSS per connection ($START_DATE)"
    echo
    echo "Commit $COMMIT ($DIRTY uncommitted changes), extension $EXT_VERSION, relay" \
        "$RELAY_BUILD${PEER_VERSIONS:+; peers: $PEER_VERSIONS}." \
        "Machine: $(machine_line); load average $LOAD_START at start / $LOAD_END at end (other jobs" \
        "share the cores). \`bench/connections/run.sh\`: each server freshly started per run, one" \
        "load generator (\`--mode idle\`) opening the steps' connections from 127.0.0.1–16, each" \
        "subscribed to $SHAPE, then idle; VmRSS read ${SETTLE} s after each step; KB per" \
        "connection = (RSS − RSS before the first connection) / open connections. $ROUNDS" \
        "interleaved round(s); figures are medians over rounds."
    if [ -n "$CAPPED" ]; then
        echo
        echo "**Capped:** $CAPPED."
    fi
    echo
    printf '| server |'
    for s in $STEPS; do printf ' %s: open / RSS MB / KB per conn |' "$s"; done
    echo
    printf '|---|'
    for s in $STEPS; do printf '%s' '---|'; done
    echo
    for t in $TARGETS; do
        printf '| %s |' "$t"
        for s in $STEPS; do
            printf ' %s / %s / %s |' "$(step_median "$t" "$s" open)" \
                "$(step_median "$t" "$s" rss_kb | awk '{ if ($1 == "-") print "-"; else printf "%.0f", $1 / 1024 }')" \
                "$(step_median "$t" "$s" kb_per_connection)"
        done
        echo
    done
    echo
    ours=$(step_median realtime "$MAX_STEP" kb_per_connection)
    if [ "$ours" != - ]; then
        echo "Goal ≤ 16 KB per connection (our relay, at $MAX_STEP connections): **$ours KB** —" \
            "$(awk -v v="$ours" 'BEGIN { print (v <= 16) ? "met" : "not met" }')."
    fi
    errs=$(jq -r '"\(.label): \([.setup_errors, .errors] | add | to_entries | map("\(.key) × \(.value)") | join(", "))"' "$RAW" |
        grep -v ': $' | sort -u || true)
    if [ -n "$errs" ]; then
        echo
        echo "Setup errors and drops (per run):"
        echo
        echo "$errs" | sed 's/^/- /'
    fi
    echo
    echo "Exact commands (first round of each server; peers started as"
    echo "\`node bench/peers/<ws|socketio>-server.mjs --port $PEER_PORT --database-url $DB_URL\` and"
    echo "\`bench/peers/centrifuge/build.sh OUT && OUT --port $PEER_PORT --database-url $DB_URL\`):"
    echo
    commands_block
    echo
    raw_json_details
)
publish_report "$REPORT"
rm -f "$RAW"
