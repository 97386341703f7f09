#!/usr/bin/env bash
# Subscribe benchmark (issue 8, scenario 5): RLS-checked subscribes per second, where the
# channels' SELECT policy joins a table (bench/subscribe/setup.sql: a member of room n may
# subscribe to room:n; 1,000 users × 100 rooms = 100,000 memberships). Goal: ≥ 5,000/s.
#
#   bench/subscribe/run.sh           5 rounds of 10 s (~2 min), appends a section to bench/RESULTS.md
#   bench/subscribe/run.sh --smoke   1 round of 2 s with 16 clients (< 30 s), prints only
#
# Each run is one load generator in `--mode churn`: BENCH_CLIENTS WebSocket connections, each
# with a token for its own user (HS256, role authenticated, sub u<i>), each looping: subscribe to
# the next of its user's 100 rooms (no two clients share a channel), wait for the reply,
# unsubscribe, wait for that reply; one request in flight per connection. Every 10th subscribe
# (BENCH_FOREIGN_EVERY) asks for a room of another user, which the policy must refuse: the run
# fails if any subscribe gets the wrong answer, so the figure is known to include the check.
# Every subscribe is
# checked by the relay in Postgres (SET LOCAL ROLE, the claims, realtime.can_subscribe under the
# policy). Reported: subscribe replies per second over the measured window and the reply latency
# (send → reply read) p50/p99/max, medians over rounds.
#
# Settings (environment): BENCH_ROUNDS (5), BENCH_T (10), BENCH_CLIENTS (64), BENCH_USERS (1000),
# BENCH_ROOMS_PER_USER (100), BENCH_PORT (24490), BENCH_RELAY_PORT (24491),
# BENCH_DIR (/tmp/bench-subscribe), BENCH_RESULTS, BENCH_RECORD (1 in full mode), BENCH_KEEP=1,
# BENCH_RELAY_BIN and BENCH_LOADGEN_BIN (both set: no build), BENCH_RELAY_FLAGS (extra relay
# flags, e.g. "--pool-size 16").
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NAME=subscribe
# shellcheck source=../loadgen/lib.sh
. "$ROOT/bench/loadgen/lib.sh"

parse_mode "$@"
if [ "$MODE" = smoke ]; then
    ROUNDS=${BENCH_ROUNDS:-1} T=${BENCH_T:-2} WARMUP=0.5 CLIENTS=${BENCH_CLIENTS:-16}
    RECORD=${BENCH_RECORD:-0} MAX_SECONDS=120
else
    ROUNDS=${BENCH_ROUNDS:-5} T=${BENCH_T:-10} WARMUP=2 CLIENTS=${BENCH_CLIENTS:-64}
    RECORD=${BENCH_RECORD:-1} MAX_SECONDS=900
fi
USERS=${BENCH_USERS:-1000}
FOREIGN_EVERY=${BENCH_FOREIGN_EVERY:-10}
ROOMS=${BENCH_ROOMS_PER_USER:-100}
RELAY_EXTRA_FLAGS=${BENCH_RELAY_FLAGS:-}
PORT=${BENCH_PORT:-24490}
RELAY_PORT=${BENCH_RELAY_PORT:-24491}
WORK=${BENCH_DIR:-/tmp/bench-subscribe}
RESULTS_MD=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
RAW=$(mktemp /tmp/bench-subscribe-raw.XXXXXX.jsonl)

scenario_traps

require_tools jq curl
ports_free "$PORT" "$RELAY_PORT"
raise_fd_limit
build_binaries
watchdog_start "$MAX_SECONDS"
git_facts
cluster_start
create_roles
note_extension
psql_q -v users="$USERS" -v rooms_per_user="$ROOMS" -f "$HERE/setup.sql" >/dev/null
pin_extension
MEMBERSHIPS=$(sql "SELECT count(*) FROM public.memberships")
relay_start
log "mode $MODE: $CLIENTS clients, ${T}s runs, $ROUNDS round(s), $MEMBERSHIPS memberships; relay pid $RELAY_PID"

for ((r = 1; r <= ROUNDS; r++)); do
    line=$(loadgen_run churn --mode churn --connections "$CLIENTS" --users "$USERS" \
        --rooms-per-user "$ROOMS" --foreign-every "$FOREIGN_EVERY" --duration "$T" --warmup "$WARMUP" \
        --jwt-secret "$JWT_SECRET")
    wrong=$(jq -r '.wrong_decisions' <<<"$line")
    [ "$wrong" = 0 ] || die "round $r: $wrong subscribes got the wrong answer (allowed a foreign room or refused an own one): $line"
    log "round $r: $(jq -r '"\(.subscribes_per_s) subscribes/s (\(.subscribes_ok) allowed, refused \(.subscribes_refused), \(.foreign_subscribes) foreign) reply p50 \(.reply_us.p50)µs p99 \(.reply_us.p99)µs relay cpu \(.cpu_s.relay)s"' <<<"$line")"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report.

m() { field_median churn "$1"; }
refused=$(jq -r '[.subscribes_refused[]] | add // 0' "$RAW" | awk '{ s += $1 } END { print s + 0 }')
errors=$(jq -r '([.errors[]] | add // 0) + ([.setup_errors[]] | add // 0) + .unsubscribe_errors' "$RAW" |
    awk '{ s += $1 } END { print s + 0 }')
rate=$(m .subscribes_per_s)
REPORT=$(
    echo "## Subscribe: RLS-checked subscribes per second ($START_DATE)"
    echo
    echo "Commit $COMMIT ($DIRTY uncommitted changes), extension $EXT_VERSION, relay" \
        "$RELAY_BUILD${RELAY_EXTRA_FLAGS:+ (flags: $RELAY_EXTRA_FLAGS)}. Machine: $(machine_line); load average" \
        "$LOAD_START at start / $LOAD_END at end (other jobs share the cores)." \
        "\`bench/subscribe/run.sh\`: throwaway Postgres 15 on port $PORT; policy \`room_members\`" \
        "on realtime.channels joins \`memberships\` ($MEMBERSHIPS rows: $USERS users × $ROOMS rooms)" \
        "on \`realtime.user_id()\` and \`split_part(realtime.channel_name(), ':', 2)\`. $CLIENTS" \
        "authenticated clients (one user each), each looping subscribe (the next of its user's rooms," \
        "no two clients share a channel) → reply → unsubscribe → reply, one request in flight per client; every" \
        "${FOREIGN_EVERY}th subscribe asks for another user's room and must be refused (all were);" \
        "$ROUNDS round(s) of ${T} s after ${WARMUP} s of warm-up; figures are medians over rounds."
    echo
    echo "| subscribes/s (median, min–max) | reply p50 / p90 / p99 / max (ms) | refused, as expected (all rounds) | errors (all rounds) | CPU s: relay / loadgen / machine busy of capacity |"
    echo "|---|---|---|---|---|"
    echo "| $rate ($(field_range churn .subscribes_per_s)) | $(us_to_ms "$(m .reply_us.p50)") / $(us_to_ms "$(m .reply_us.p90)") / $(us_to_ms "$(m .reply_us.p99)") / $(us_to_ms "$(m .reply_us.max)") | $refused | $errors | $(m .cpu_s.relay) / $(m .cpu_s.loadgen) / $(m .cpu_s.machine_busy) of $(m .cpu_s.machine_capacity) s |"
    echo
    echo "Goal ≥ 5,000 subscribes/s: **$rate/s** —" \
        "$(awk -v v="$rate" 'BEGIN { if (v == "-") print "not measured"; else if (v >= 5000) print "met"; else printf "not met (%.0f%% of the goal)", 100 * v / 5000 }')."
    echo
    echo "Exact command (every round is the same):"
    echo
    commands_block
    echo
    raw_json_details
)
publish_report "$REPORT"
rm -f "$RAW"
