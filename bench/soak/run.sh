#!/usr/bin/env bash
# Soak (issue 19): 50,000 connections over 3 relays on one database for 10 minutes. Steady
# publishing over 1,000 channels through realtime.publish(); every second 1% of the connections
# drop their socket and subscribe again on the next relay with `resume` from the last cursor they
# saw. Checked per connection: every published message of its channel received exactly once
# (nothing lost, nothing doubled, no `reset`). Measured: the relays' RSS over time (flat after
# warm-up: < 5% growth of their total), memory per idle connection (≤ 16 KB), p99 send → client of
# live deliveries in every interval (< 100 ms throughout), server CPU per delivery.
#
#   bench/soak/run.sh           50,000 connections, 60 s warm-up + 600 s (about 13 min), appends to bench/RESULTS.md
#   bench/soak/run.sh --smoke   3,000 connections, 10 s warm-up + 60 s (about 2 min), prints only
#
# The per-process file limit here is 20,000 (both sides need one descriptor per connection), so
# the connections are spread over BENCH_SOAK_RELAYS relays (connection i starts on relay
# i mod relays) and BENCH_SOAK_PROCS load-generator processes (bench/loadgen/src/group.rs: one
# publishes, all subscribe; `--mode soak`, merged by `--mode merge`). Each relay has its own
# --relay-id (its own slot).
#
# Settings (environment): BENCH_SOAK_CONNECTIONS (50000), BENCH_SOAK_RELAYS (3), BENCH_SOAK_PROCS
# (3), BENCH_SOAK_CHANNELS (1000), BENCH_SOAK_RATE (messages/s, 100), BENCH_SOAK_DURATION (600),
# BENCH_SOAK_WARMUP (60), BENCH_SOAK_INTERVAL (10), BENCH_SOAK_RECONNECT (share per second, 0.01),
# BENCH_PORT (24492), BENCH_RELAY_PORT (first relay; 24493, then +1 each), BENCH_DIR
# (/tmp/bench-soak), BENCH_RESULTS, BENCH_RECORD (1 in full mode), BENCH_KEEP=1,
# BENCH_RELAY_BIN and BENCH_LOADGEN_BIN (both set: no build).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NAME=soak
# shellcheck source=../loadgen/lib.sh
. "$ROOT/bench/loadgen/lib.sh"
# shellcheck source=../loadgen/relays.sh
. "$ROOT/bench/loadgen/relays.sh"

parse_mode "$@"
if [ "$MODE" = smoke ]; then
    CONNS=${BENCH_SOAK_CONNECTIONS:-3000} CHANNELS=${BENCH_SOAK_CHANNELS:-100}
    RATE=${BENCH_SOAK_RATE:-50} DURATION=${BENCH_SOAK_DURATION:-60} WARMUP=${BENCH_SOAK_WARMUP:-10}
    INTERVAL=${BENCH_SOAK_INTERVAL:-5} RECORD=${BENCH_RECORD:-0}
else
    CONNS=${BENCH_SOAK_CONNECTIONS:-50000} CHANNELS=${BENCH_SOAK_CHANNELS:-1000}
    RATE=${BENCH_SOAK_RATE:-100} DURATION=${BENCH_SOAK_DURATION:-600} WARMUP=${BENCH_SOAK_WARMUP:-60}
    INTERVAL=${BENCH_SOAK_INTERVAL:-10} RECORD=${BENCH_RECORD:-1}
fi
RELAYS=${BENCH_SOAK_RELAYS:-3}
PROCS=${BENCH_SOAK_PROCS:-3}
RECONNECT=${BENCH_SOAK_RECONNECT:-0.01}
PORT=${BENCH_PORT:-24492}
RELAY_BASE_PORT=${BENCH_RELAY_PORT:-24493}
WORK=${BENCH_DIR:-/tmp/bench-soak}
RESULTS_MD=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
# Setup (about 1 s per 1,000 connections here), the run, the drain, the report.
MAX_SECONDS=$((${CONNS%.*} / 500 + ${WARMUP%.*} + ${DURATION%.*} + 240))
GROUP_FILE=/dev/shm/bench-soak-$$.group
LG_PIDS=()

scenario_stop() {
    local p
    for p in "${LG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${LG_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -f "$GROUP_FILE"
    relays_stop_all
}
scenario_traps

require_tools jq curl
raise_fd_limit
per_proc=$(((CONNS + PROCS - 1) / PROCS))
per_relay=$(((CONNS + RELAYS - 1) / RELAYS))
[ "$per_proc" -le $((FD_LIMIT - 300)) ] && [ "$per_relay" -le $((FD_LIMIT - 300)) ] ||
    die "$CONNS connections need more than $FD_LIMIT descriptors per process: raise BENCH_SOAK_PROCS and BENCH_SOAK_RELAYS"
for ((k = 0; k < RELAYS; k++)); do ports_free $((RELAY_BASE_PORT + k)); done
ports_free "$PORT"
build_binaries
watchdog_start "$MAX_SECONDS"
git_facts
CLUSTER_MAX_CONNECTIONS=$((RELAYS * 16 + 40)) cluster_start
cluster_setup
for ((k = 1; k <= RELAYS; k++)); do relay_k_start "$k"; done
log "mode $MODE: $CONNS connections over $RELAYS relays and $PROCS load-generator processes," \
    "$RATE msg/s over $CHANNELS channels, ${WARMUP}+${DURATION} s, $RECONNECT of the connections reconnecting per second"

# The group: every process gets the same schedule; process 0 publishes.
URLS=$(relays_urls "$RELAYS")
PIDS=$(relays_pids "$RELAYS")
PGPID=$(postmaster_pid)
rm -f "$GROUP_FILE"
CMDS=()
off=0
for ((i = 0; i < PROCS; i++)); do
    n=$((CONNS / PROCS + (i < CONNS % PROCS ? 1 : 0)))
    cmd=(target/release/realtime-loadgen --mode soak --target realtime --url "$URLS" --relay-pid "$PIDS"
        --watch "postgres=tree:$PGPID" --database-url "$DB_URL" --label soak
        --connections "$n" --conn-offset "$off" --channels "$CHANNELS" --rate "$RATE"
        --duration "$DURATION" --warmup "$WARMUP" --interval "$INTERVAL" --reconnect-share "$RECONNECT"
        --publishers 4 --pad 100 --drain 15 --connect-concurrency 128 --threads 1
        --group "$GROUP_FILE" --group-size "$PROCS" --group-index "$i" --group-wait 600)
    "$LOADGEN" "${cmd[@]:1}" >"$WORK/soak.$i.json" 2>"$WORK/soak.$i.log" &
    LG_PIDS+=($!)
    CMDS+=("$(printf '%q ' "${cmd[@]}")")
    off=$((off + n))
done
rc=0
for i in "${!LG_PIDS[@]}"; do
    wait "${LG_PIDS[$i]}" || {
        rc=1
        log "load-generator process $i failed: $(tail -n 5 "$WORK/soak.$i.log")"
    }
done
LG_PIDS=()
rm -f "$GROUP_FILE"
[ $rc = 0 ] || die "the soak did not complete"
for ((k = 1; k <= RELAYS; k++)); do
    relay_k_alive "$k" || log "WARNING: relay $k is no longer running: $(tail -n 5 "$WORK/relay-$k.log")"
done
inputs=$(for ((i = 0; i < PROCS; i++)); do printf '%s,' "$WORK/soak.$i.json"; done)
MERGED=$("$LOADGEN" --mode merge --inputs "${inputs%,}") || die "loadgen --mode merge failed"
printf '%s\n' "$MERGED" >"$WORK/soak.merged.json"
# The line the report shows (without the per-interval rows the table already has), made here
# and checked: inside the report's command substitution a failing jq would leave the block empty
# without stopping the script.
MERGED_LINE=$(jq -c 'del(.intervals, .samples)' <<<"$MERGED") ||
    die "the merged line is not JSON (kept in $WORK/soak.merged.json)"
[ -n "$MERGED_LINE" ] || die "the merged line is empty (see $WORK/soak.*.json)"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------------------------
# Report.

j() { jq -r "$1" <<<"$MERGED"; }
yes_no() { case "$1" in true) echo met ;; false) echo "**not met**" ;; *) echo "not measurable" ;; esac; }

REPORT=$(
    echo "## Soak: $(j .subscribed) connections over $RELAYS relays on one database ($START_DATE)"
    echo
    echo "Commit $COMMIT ($DIRTY uncommitted changes), extension $EXT_VERSION, relay $RELAY_BUILD." \
        "Machine: $(machine_line); load average $LOAD_START at start / $LOAD_END at end; fd limit" \
        "$FD_LIMIT per process. \`bench/soak/run.sh\`: throwaway Postgres 15 on port $PORT (fsync and" \
        "synchronous_commit on, wal_level=logical); $RELAYS relays (ports $RELAY_BASE_PORT…, each its own" \
        "--relay-id and slot); $PROCS load-generator processes, connection i on channel" \
        "\`bench:<i mod $CHANNELS>\`, starting on relay i mod $RELAYS; $RATE messages/s through" \
        "\`realtime.publish()\`, one per transaction, for ${WARMUP} s of warm-up + ${DURATION} s; every" \
        "second $RECONNECT of the connections (at random) drop their socket and subscribe again on the" \
        "next relay with \`resume\` from the last cursor they saw. Intervals of ${INTERVAL} s."
    echo
    echo "- Per connection: $(j .verdict.expected) messages expected, $(j .verdict.missing) missing" \
        "($(j .verdict.clients_missing) connections), $(j .verdict.duplicates) doubled" \
        "($(j .verdict.clients_duplicated) connections), $(j .verdict.resets) resets," \
        "$(j .verdict.unexpected) delivered whose publish call failed; $(j .verdict.reconnects)" \
        "reconnects with resume ($(j .verdict.replayed) messages replayed, $(j .verdict.failed_reconnect_attempts)" \
        "failed attempts retried)."
    echo "- Goal nothing lost: $(yes_no "$(j .goals.nothing_lost)"); nothing doubled: $(yes_no "$(j .goals.nothing_doubled)")."
    echo "- Memory per idle connection (RSS once all were subscribed, minus RSS before the first," \
        "over the connections placed on the relay): $(j '.kb_per_idle_connection | map(tostring) | join(" / ")') KB" \
        "(relays 1…$RELAYS); goal ≤ 16 KB: $(yes_no "$(j .goals.kb_per_idle_connection_le_16)")."
    echo "- Relays' total RSS after warm-up: $(j .rss_growth_after_warmup_pct)% at the end" \
        "($(j .rss_peak_growth_after_warmup_pct)% at the peak); goal < 5%: $(yes_no "$(j .goals.rss_flat)")."
    echo "- Worst interval p99 of live deliveries after warm-up (send → client, which includes the" \
        "publishing commit): $(us_to_ms "$(j .worst_interval_p99_us)") ms; goal < 100 ms throughout:" \
        "$(yes_no "$(j .goals.p99_below_100ms)")."
    echo "- Server CPU per delivery after warm-up (all relays; the work of reconnects and replays" \
        "included): $(j .server_us_per_delivery) µs. Replayed deliveries (send → client):" \
        "p50 $(us_to_ms "$(j '.replayed_us.p50 // "-"')") ms, p99 $(us_to_ms "$(j '.replayed_us.p99 // "-"')") ms."
    echo "- Publishing: $(j .messages_published) of $(j .messages_scheduled) messages, errors" \
        "$(j '.publish_errors | tostring'), $(j .late_calls) calls > 5 ms late; call p99" \
        "$(us_to_ms "$(j '.publish_call_us.p99 // "-"')") ms. Errors and closes seen by the clients:" \
        "$(j '.errors | tostring')."
    echo "- CPU seconds over the run: load generators $(j .loadgen_cpu_s), machine busy $(j .machine_busy_s)" \
        "of $(j .machine_capacity_s)."
    echo
    echo "| from (s) | deliveries/s | live p50 / p99 / max (ms) | ack→recv p99 (ms) | replayed | relays' CPU µs per delivery | relays' RSS at the end (MB) |"
    echo "|---|---|---|---|---|---|---|"
    jq -r '.intervals[] | "| \(.from_s)\(if .drain then " (drain)" elif .after_warmup then "" else " (warm-up)" end) | \(.deliveries_per_s) | \(
            if .live_us then "\(.live_us.p50 / 1000) / \(.live_us.p99 / 1000) / \(.live_us.max / 1000)" else "-" end) | \(
            if .ack_us then .ack_us.p99 / 1000 else "-" end) | \(.replayed) | \(.server_us_per_delivery // "-") | \(
            (.rss_kb_end // []) | map(if . == null then "-" else (. / 1024 | floor | tostring) end) | join(" / ")) |"' <<<"$MERGED"
    echo
    echo "Exact commands (the $PROCS processes run together; \`--mode merge\` joins their lines):"
    echo
    echo '```sh'
    printf '%s&\n' "${CMDS[@]}"
    echo "wait; target/release/realtime-loadgen --mode merge --inputs <their JSON lines>"
    echo '```'
    echo
    echo "<details><summary>Merged JSON line</summary>"
    echo
    echo '```json'
    printf '%s\n' "$MERGED_LINE"
    echo '```'
    echo
    echo "</details>"
)
publish_report "$REPORT"
