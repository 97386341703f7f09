#!/usr/bin/env bash
# Webhook benchmark (issue 5): deliveries per second and publish→delivered latency from
# realtime.publish() through the durable queue and the relay's webhook worker to a local HTTP
# sink, healthy and with 20 % of requests failing (500, retried with backoff).
#
# Each scenario publishes a burst of N messages in one transaction on a channel with one
# webhook URL and waits until every delivery is delivered. deliveries/s = N / (last
# delivered_at − commit); latency = delivered_at − message created_at, from the
# realtime.webhook_deliveries rows (p50/p99 as in realtime.webhook_stats), so it includes
# queueing behind the burst and, with failures, the retry backoff (base 100 ms).
# The sink is bench/webhooks/sink.py (Python asyncio, keep-alive).
#
#   bench/webhooks/run.sh            N=20000 per scenario, appends a section to bench/RESULTS.md
#   bench/webhooks/run.sh --smoke    N=300, prints only (< 1 min after the build)
#
# Settings (environment): BENCH_N, BENCH_FAIL_RATE (0.2), BENCH_CONCURRENCY (64),
# BENCH_ENDPOINT_CONCURRENCY (64), BENCH_PORT (55490), BENCH_RELAY_PORT (55491),
# BENCH_SINK_PORT (55492), BENCH_DIR (/tmp/bench-webhooks), BENCH_RESULTS (bench/RESULTS.md),
# BENCH_RECORD (1 in full mode), BENCH_KEEP=1, BENCH_RELAY_BIN (use this relay binary, no build).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NAME=webhooks
# shellcheck source=../loadgen/lib.sh
. "$ROOT/bench/loadgen/lib.sh"

parse_mode "$@"
if [ "$MODE" = smoke ]; then
    N=${BENCH_N:-300} RECORD=${BENCH_RECORD:-0} MAX_SECONDS=180
else
    N=${BENCH_N:-20000} RECORD=${BENCH_RECORD:-1} MAX_SECONDS=1200
fi
FAIL_RATE=${BENCH_FAIL_RATE:-0.2}
CONCURRENCY=${BENCH_CONCURRENCY:-64}
ENDPOINT_CONCURRENCY=${BENCH_ENDPOINT_CONCURRENCY:-64}
PORT=${BENCH_PORT:-55490}
RELAY_PORT=${BENCH_RELAY_PORT:-55491}
SINK_PORT=${BENCH_SINK_PORT:-55492}
WORK=${BENCH_DIR:-/tmp/bench-webhooks}
RESULTS_MD=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
SINK_PID=""

scenario_stop() {
    sink_stop
}
scenario_traps

sink_start() {
    port_free "$SINK_PORT" || die "port $SINK_PORT is in use"
    python3 "$HERE/sink.py" --port "$SINK_PORT" --fail-rate "$1" 2>>"$WORK/sink.log" &
    SINK_PID=$!
    local deadline=$((SECONDS + 10))
    while port_free "$SINK_PORT"; do
        [ $SECONDS -lt $deadline ] || die "the sink did not start"
        sleep 0.1
    done
}

sink_stop() {
    [ -n "$SINK_PID" ] || return 0
    kill -TERM "$SINK_PID" 2>/dev/null || true
    wait "$SINK_PID" 2>/dev/null || true
    SINK_PID=""
}

webhook_relay_start() {
    port_free "$RELAY_PORT" || die "port $RELAY_PORT is in use"
    cp "$RELAY_BIN" "$WORK/bench-$NAME-relay"
    RUST_LOG="${RUST_LOG:-warn}" "$WORK/bench-$NAME-relay" \
        --database-url "$DB_URL" --bind "127.0.0.1:$RELAY_PORT" --jwt-secret "$JWT_SECRET" \
        --relay-id "bench_$NAME" --webhook-allow-private --webhook-retry-base-ms 100 \
        --webhook-concurrency "$CONCURRENCY" --webhook-endpoint-concurrency "$ENDPOINT_CONCURRENCY" \
        </dev/null >>"$WORK/relay.log" 2>&1 &
    RELAY_PID=$!
    local deadline=$((SECONDS + 60)) code=""
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$RELAY_PID" 2>/dev/null || die "the relay exited: $(tail -n 10 "$WORK/relay.log")"
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$RELAY_PORT/readyz" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.2
    done
    die "the relay was not ready within 60 s (last /readyz: $code)"
}

# scenario NAME FAIL_RATE: prints "name deliveries/s p50_ms p99_ms attempts" and logs it.
scenario() {
    local name=$1 rate=$2 channel="wh:$1" deadline pending
    sink_start "$rate"
    sql "INSERT INTO realtime.channels (pattern, webhook_urls, webhook_secret)
         VALUES ('$channel', ARRAY['http://127.0.0.1:$SINK_PORT/hook'], realtime.generate_webhook_secret())" >/dev/null
    sql "SELECT count(realtime.publish('$channel', 'bench', jsonb_build_object('i', i, 'pad', repeat('x', 100))))
           FROM generate_series(1, $N) i" >/dev/null
    deadline=$((SECONDS + MAX_SECONDS))
    while :; do
        pending=$(sql "SELECT count(*) FROM realtime.webhook_deliveries WHERE channel = '$channel' AND status <> 'delivered'")
        [ "$pending" = 0 ] && break
        [ $SECONDS -lt $deadline ] || die "$name: $pending deliveries not delivered in time"
        sleep 0.2
    done
    sink_stop
    local line
    line=$(sql "SELECT '$name', round(count(*) / extract(epoch FROM max(delivered_at) - min(created_at))::numeric, 0),
                  round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - created_at)) * 1000)::numeric, 1),
                  round((percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM delivered_at - created_at)) * 1000)::numeric, 1),
                  sum(attempts)
                FROM realtime.webhook_deliveries WHERE channel = '$channel'" | tr '|' ' ')
    log "$name: $(awk '{ printf "%s deliveries/s, p50 %s ms, p99 %s ms, %s attempts", $2, $3, $4, $5 }' <<<"$line") for $N messages"
    echo "$line"
}

require_tools curl python3
if [ -n "${BENCH_RELAY_BIN:-}" ]; then
    RELAY_BIN=$BENCH_RELAY_BIN
else
    log "cargo build --release -p realtime-relay"
    (cd "$ROOT" && cargo build --release -q -p realtime-relay) || die "release build failed"
    RELAY_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/realtime-relay
fi
[ -x "$RELAY_BIN" ] || die "relay binary not found: $RELAY_BIN"
watchdog_start "$MAX_SECONDS"

START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
cluster_start
cluster_setup
webhook_relay_start
log "mode $MODE: $N messages per scenario, concurrency $CONCURRENCY (per endpoint $ENDPOINT_CONCURRENCY)"
HEALTHY=$(scenario healthy 0)
FAILING=$(scenario failing "$FAIL_RATE")
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

row() { awk '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' <<<"$1"; }
REPORT=$(
    echo "## Webhooks: publish → queue → relay → HTTP sink ($START_DATE)"
    echo
    echo "Commit $COMMIT, $(nproc) cores, load average $LOAD_START at start / $LOAD_END at end." \
        "\`bench/webhooks/run.sh\`: a burst of $N messages published in one transaction on a channel" \
        "with one webhook URL (signed); relay with --webhook-concurrency $CONCURRENCY," \
        "--webhook-endpoint-concurrency $ENDPOINT_CONCURRENCY, retry base 100 ms; sink" \
        "\`bench/webhooks/sink.py\` (Python asyncio keep-alive); \`failing\`: $FAIL_RATE of requests answered 500."
    echo
    echo "| scenario | deliveries/s | p50 ms | p99 ms | attempts |"
    echo "|---|---|---|---|---|"
    row "$HEALTHY"
    row "$FAILING"
    echo
    echo "Latency is publish (message created_at) → delivered_at, including queueing behind the burst."
)
publish_report "$REPORT"
