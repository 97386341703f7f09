#!/usr/bin/env bash
# Supabase protocol benchmark (issue 15): (a) broadcast fan-out through the Phoenix protocol
# (`/realtime/v1/websocket`, vsn 2.0.0 as supabase-js speaks it) beside protocol v1, both
# served by the same relay process, in one run with interleaved rounds — goal: Phoenix within
# 20% of v1's deliveries/s (p99 < 50 ms); (b) postgres_changes under row-level security: one
# table whose policy lets each user SELECT its own rows, BENCH_CHANGES_SUBS Phoenix subscribers
# from BENCH_CHANGES_USERS users (each connection with its own signed token), rows inserted at
# BENCH_CHANGES_RATE/s for BENCH_CHANGES_T seconds — goals: every subscriber gets exactly its
# user's rows (missing, duplicated and other users' rows are counted), p99 commit → client
# < 100 ms, and the database's CPU per change, beside what Supabase's way (each change read back
# once per subscriber under its role and claims) costs the same database.
#
#   bench/supabase/run.sh           (a) 5 interleaved rounds per step, (b) 3 rounds of 20 s; appends to bench/RESULTS.md
#   bench/supabase/run.sh --smoke   (a) 1 round, one short step per shape; (b) 100 subscribers, 50 rows/s, 3 s (~35 s)
#
# (a) is bench/fanout's shape and ladder (bench/loadgen/ladder.sh): shared (one channel ×
# BENCH_SHARED_SUBS) and peruser (BENCH_USER_CHANNELS channels × 2, 10 messages per publish
# transaction); a Phoenix subscriber joins `realtime:<channel>` and receives each
# realtime.publish() as a `broadcast` (a binary frame on vsn 2.0.0).
#
# (b) is the load generator's `--mode changes` (bench/loadgen/src/changes.rs) on the table of
# bench/supabase/setup.sql, watched by realtime.watch_table on `changes:public.benchrows`:
# connection i is user u<i % users> and joins with a postgres_changes binding on the table; row
# s belongs to u<s % users>. Latency is send→recv (the INSERT's durable commit included: an
# upper bound of commit → client) and ack→recv (from the INSERT's return). Database CPU = the
# CPU of every Postgres process (the postmaster's tree, /proc) over the measured window ÷ rows
# changed in it. Supabase's way is modelled by `bench_reread(row, subscribers, users)`
# (setup.sql), run on BENCH_REREAD_ROWS rows after the last round: its database CPU per change.
# A relay without per-subscriber row checks sends every row to every subscriber of the table's
# channel: the report counts those as "others' rows" (not a failure of the harness).
#
# Settings (environment): BENCH_TARGETS ("realtime phoenix"; phoenix-v1 is vsn 1.0.0),
# BENCH_LOADGEN_PROCS (2), BENCH_ROUNDS (5), BENCH_T (5), BENCH_SHARED_SUBS (500),
# BENCH_SHARED_RATES ("10 25 50 100 200 300 400 600"), BENCH_USER_SUBS (2000), BENCH_USER_CHANNELS
# (1000), BENCH_USER_RATES ("1000 2000 4000 8000"), BENCH_CHANGES_SUBS (1000), BENCH_CHANGES_USERS
# (100), BENCH_CHANGES_RATE (500), BENCH_CHANGES_T (20), BENCH_CHANGES_ROUNDS (3),
# BENCH_REREAD_ROWS (200), BENCH_PORT (24496), BENCH_RELAY_PORT (24497), BENCH_DIR
# (/tmp/bench-supabase), BENCH_RESULTS, BENCH_RECORD (1 in full mode), BENCH_SYNC_COMMIT (on),
# BENCH_KEEP=1, BENCH_RELAY_BIN and BENCH_LOADGEN_BIN (both set: no build), BENCH_BUDGET
# (seconds after which no new fan-out step starts; 1800).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NAME=supabase
# shellcheck source=../loadgen/lib.sh
. "$ROOT/bench/loadgen/lib.sh"
# shellcheck source=../loadgen/ladder.sh
. "$ROOT/bench/loadgen/ladder.sh"

parse_mode "$@"
ladder_settings
if [ "$MODE" = smoke ]; then
    CH_SUBS=${BENCH_CHANGES_SUBS:-100} CH_USERS=${BENCH_CHANGES_USERS:-10} CH_RATE=${BENCH_CHANGES_RATE:-50}
    CH_T=${BENCH_CHANGES_T:-3} CH_WARMUP=1 CH_ROUNDS=${BENCH_CHANGES_ROUNDS:-1} REREAD_ROWS=${BENCH_REREAD_ROWS:-20}
    MAX_SECONDS=300
else
    CH_SUBS=${BENCH_CHANGES_SUBS:-1000} CH_USERS=${BENCH_CHANGES_USERS:-100} CH_RATE=${BENCH_CHANGES_RATE:-500}
    CH_T=${BENCH_CHANGES_T:-20} CH_WARMUP=2 CH_ROUNDS=${BENCH_CHANGES_ROUNDS:-3} REREAD_ROWS=${BENCH_REREAD_ROWS:-200}
    MAX_SECONDS=$((CLIMB_BUDGET + 900))
fi
TARGETS=${BENCH_TARGETS:-"realtime phoenix"}
LOADGEN_PROCS=${BENCH_LOADGEN_PROCS:-2}
USER_BATCH=10
PORT=${BENCH_PORT:-24496}
RELAY_PORT=${BENCH_RELAY_PORT:-24497}
WORK=${BENCH_DIR:-/tmp/bench-supabase}
RESULTS_MD=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
RAW=$(mktemp /tmp/bench-supabase-raw.XXXXXX.jsonl)
CH_GOAL_MS=100

for t in $TARGETS; do relay_target "$t" || die "BENCH_TARGETS: '$t' is not one of our relay's protocols"; done
[[ " $TARGETS " == *" realtime "* ]] || die "BENCH_TARGETS must include realtime (the baseline)"
scenario_traps
require_tools jq curl
ports_free "$PORT" "$RELAY_PORT"
raise_fd_limit
build_binaries
watchdog_start "$MAX_SECONDS"
git_facts
cluster_start
cluster_setup
psql_q -f "$HERE/setup.sql" >/dev/null
PG_ROOT=$(head -n 1 "$WORK/data/postmaster.pid")
CLIMB_START=$SECONDS
log "mode $MODE: ${T}s runs, $ROUNDS round(s) per step, protocols [$TARGETS]"

# (a) Broadcast fan-out.
climb shared "$SHARED_RATES" -- --connections "$SHARED_SUBS" --pattern shared --publishers 8 --pad 100
climb peruser "$USER_RATES" -- --connections "$USER_SUBS" --pattern per-user --channels "$USER_CHANNELS" \
    --batch "$USER_BATCH" --publishers 8 --pad 100

# (b) postgres_changes with RLS.
use_target phoenix
for ((r = 1; r <= CH_ROUNDS; r++)); do
    sql "TRUNCATE public.benchrows" >/dev/null
    c=$(relay_catch_up)
    [ "$c" = timeout ] && log "WARNING: the relay is still decoding the previous round's changes"
    line=$(loadgen_run changes --mode changes --connections "$CH_SUBS" --users "$CH_USERS" \
        --rate "$CH_RATE" --duration "$CH_T" --warmup "$CH_WARMUP" --drain 10 --publishers 4 --pad 100 \
        --table public.benchrows --jwt-secret "$JWT_SECRET" --watch "postgres=tree:$PG_ROOT" \
        --connect-concurrency 64)
    log "changes round $r: $(jq -r '"\(.rows_published) rows, own \(.received)/\(.expected) missing \(.missing) duplicates \(.duplicates) others \(.extra); p99 \(.latency_us.p99 // "-")µs; db \(.watched_us_per_change.postgres)µs/change"' <<<"$line")"
done

# Supabase's way on the same database: each change read back once per subscriber.
pg_tree_cpu() {
    # Processes may end while being read: cat's complaint about them is not a failure.
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v r="$PG_ROOT" -v t="$(getconf CLK_TCK)" '{
        pid = $1; line = $0; sub(/^[0-9]+ \(.*\) /, "", line); split(line, f, " ")
        if (pid == r || f[2] == r) s += f[12] + f[13] + f[14] + f[15]
    } END { printf "%.3f\n", s / t }'
}
REREAD_SQL="SELECT count(*), sum(v) FROM (SELECT public.bench_reread(id, $CH_SUBS, $CH_USERS) AS v
    FROM (SELECT id FROM public.benchrows ORDER BY id LIMIT $REREAD_ROWS) r) x"
cpu0=$(pg_tree_cpu)
REREAD_OUT=$(sql "$REREAD_SQL")
cpu1=$(pg_tree_cpu)
REREAD_ROWS_DONE=${REREAD_OUT%%|*}
REREAD_VISIBLE=${REREAD_OUT##*|}
REREAD_US=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$REREAD_ROWS_DONE" 'BEGIN { if (n > 0) printf "%.0f", (b - a) * 1e6 / n; else print "-" }')
log "Supabase's way: $REREAD_ROWS_DONE rows × $CH_SUBS subscribers read back, $REREAD_US µs of database CPU per change ($REREAD_VISIBLE visible)"
relay_stop
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report.

ch() { field_median changes "$1"; }
ch_sum() { jq -r "select(.label == \"changes\") | $1" "$RAW" | awk '{ s += $1 } END { print s + 0 }'; }

changes_lines() {
    local n p99 a99 db relay exact subs extra missing dups
    n=$(jq -r 'select(.label == "changes") | .label' "$RAW" | wc -l)
    if [ "$n" = 0 ]; then
        echo "- postgres_changes: no round ran."
        return
    fi
    p99=$(us_to_ms "$(ch .latency_us.p99)")
    a99=$(us_to_ms "$(ch .ack_to_recv_us.p99)")
    db=$(ch .watched_us_per_change.postgres)
    relay=$(ch .relay_us_per_change)
    missing=$(ch_sum .missing)
    dups=$(ch_sum .duplicates)
    extra=$(ch_sum .extra)
    exact=$(ch .connections_exact)
    subs=$(ch .subscribed)
    echo "- postgres_changes, $CH_SUBS subscribers of $CH_USERS users, $CH_RATE rows/s for $CH_T s ($n round(s)):" \
        "own rows received $(ch_sum .received) of $(ch_sum .expected) (missing $missing, duplicated $dups), rows of" \
        "other users received: $extra; connections that got exactly their rows: $exact of $subs (median)."
    if [ "$missing" = 0 ] && [ "$dups" = 0 ] && [ "$extra" = 0 ]; then
        echo "- Goal: every subscriber gets exactly its rows: **met** in every round."
    elif [ "$extra" != 0 ]; then
        echo "- Goal: every subscriber gets exactly its rows: **not met** — $extra rows reached subscribers" \
            "whose user may not SELECT them (this relay build does not check rows per subscriber)$([ "$missing$dups" != 00 ] && echo "; $missing missing, $dups duplicated")."
    else
        echo "- Goal: every subscriber gets exactly its rows: **not met** — $missing missing, $dups duplicated."
    fi
    echo "- Goal p99 commit → client < $CH_GOAL_MS ms (own rows): send→recv p99 **$p99 ms**" \
        "(an upper bound: it includes the INSERT's commit), ack→recv p99 $a99 ms —" \
        "$(awk -v v="$p99" -v g="$CH_GOAL_MS" 'BEGIN { if (v == "-") print "not measured"; else print (v < g) ? "met" : "not met" }')."
    echo "- Database CPU per change: **$db µs** (all Postgres processes over the window ÷ rows changed: the" \
        "INSERT and its trigger, logical decoding and the relay's queries included; relay $relay µs per" \
        "change). Supabase's way on the same database (each change read back once per" \
        "subscriber under its role and claims, \`bench_reread\` over $REREAD_ROWS_DONE rows, $REREAD_VISIBLE" \
        "subscriber-rows visible; the re-reads alone, without the INSERT): **$REREAD_US µs** per change —" \
        "$(awk -v a="$REREAD_US" -v b="$db" 'BEGIN { if (a == "-" || b == "-" || b <= 0) print "ratio not measurable"; else printf "%.1fx ours", a / b }')."
}

changes_table() {
    echo '| round | rows/s | own received / expected | missing | duplicated | others'"'"' rows | exact connections | own rows send→recv p50 / p99 / max (ms) | ack→recv p99 (ms) | DB µs per change | relay µs per change | errors |'
    echo '|---|---|---|---|---|---|---|---|---|---|---|---|'
    jq -r 'select(.label == "changes") | [ (.rows_published / .duration_s | round), "\(.received) / \(.expected)",
            .missing, .duplicates, .extra, "\(.connections_exact) / \(.subscribed)",
            "\((.latency_us.p50 // 0) / 1000) / \((.latency_us.p99 // 0) / 1000) / \((.latency_us.max // 0) / 1000)",
            ((.ack_to_recv_us.p99 // 0) / 1000), .watched_us_per_change.postgres, .relay_us_per_change,
            ([.errors, .setup_errors, .publish_errors] | add | to_entries | map("\(.key) × \(.value)") | join(", "))
        ] | map(tostring) | join(" | ")' "$RAW" | awk '{ printf "| %d | %s |\n", NR, $0 }'
}

REPORT=$(
    echo "## Supabase protocol: broadcast fan-out beside v1, postgres_changes with RLS ($START_DATE)"
    echo
    echo "Commit $COMMIT ($DIRTY uncommitted changes), extension $EXT_VERSION, relay $RELAY_BUILD;" \
        "$LOADGEN_PROCS load-generator process(es) per fan-out run. Machine: $(machine_line); load" \
        "average $LOAD_START at start / $LOAD_END at end (other jobs share the cores), fd limit $FD_LIMIT." \
        "\`bench/supabase/run.sh\`: throwaway Postgres 15 on port $PORT (fsync and synchronous_commit" \
        "${BENCH_SYNC_COMMIT:-on}, wal_level=logical); one relay on $RELAY_PORT serving both protocols" \
        "(\`realtime\` = protocol v1 at /v1/socket; \`phoenix\` = /realtime/v1/websocket?vsn=2.0.0," \
        "\`phoenix-v1\` = vsn 1.0.0). (a) Fan-out: each shape climbs a ladder of publish rates, $ROUNDS" \
        "interleaved round(s) of ${T} s (after ${WARMUP} s of warm-up) per step and protocol; a step passes" \
        "when its median p99 (send→recv) < 50 ms and its median missing count is 0. **shared**:" \
        "$SHARED_SUBS subscribers on \`bench:shared\`; **peruser**: $USER_SUBS subscribers over" \
        "$USER_CHANNELS channels (2 each), $USER_BATCH messages per publish transaction. (b)" \
        "postgres_changes: table \`public.benchrows\` (bench/supabase/setup.sql: RLS \`owner =" \
        "realtime.user_id()\`, watched by \`realtime.watch_table\`), one row per INSERT transaction," \
        "$CH_WARMUP s of warm-up not measured. Figures are medians over rounds unless summed."
    echo
    best_line shared "one shared channel × $SHARED_SUBS"
    best_line peruser "$USER_CHANNELS channels × 2 subscribers"
    for t in $TARGETS; do
        [ "$t" = realtime ] && continue
        ratio_line shared "shared" "$t" realtime 0.8
        ratio_line peruser "peruser" "$t" realtime 0.8
    done
    cpu_line shared
    cpu_line peruser
    if [ -n "$STOPPED_EARLY" ]; then echo "- Stopped by the time budget: $STOPPED_EARLY"; fi
    changes_lines
    echo
    summary_header
    for l in ${STEPS[shared]:-} ${STEPS[peruser]:-}; do summary_row "$l"; done
    echo
    echo "postgres_changes rounds (own rows: the subscriber's user's rows, each counted once):"
    echo
    changes_table
    echo
    echo "send→recv includes the publish statement (or INSERT) and its durable commit; ack→recv starts"
    echo "when that call returned. Phoenix vsn 2.0.0 broadcasts are binary frames, so their frame bytes"
    echo "are fewer than v1's JSON frames for the same payload."
    echo
    echo "Exact commands (first round of each step; Supabase's way: \`psql -c \"$(echo "$REREAD_SQL" | tr -s ' \n' ' ')\"\`):"
    echo
    commands_block
    echo
    raw_json_details
)
publish_report "$REPORT"
rm -f "$RAW"
