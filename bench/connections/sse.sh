#!/usr/bin/env bash
# Idle Server-Sent Events streams and the relay's RSS per stream (issue 16's goal: ≤ 16 KB),
# the SSE counterpart of bench/connections/run.sh. Prints only (nothing is appended to
# bench/RESULTS.md).
#
#   bench/connections/sse.sh           steps 1000 and 5000
#   bench/connections/sse.sh --smoke   steps 100 and 500
#
# One cluster, one freshly started relay, `node bench/connections/sse-idle.mjs` opening the
# streams (each on its own channel unless BENCH_CHANNELS=1) and reading the relay's VmRSS.
# Settings (environment): BENCH_STEPS, BENCH_CHANNELS, BENCH_SETTLE (3), BENCH_PORT (24496),
# BENCH_RELAY_PORT (24497), BENCH_DIR (/tmp/bench-connections-sse), BENCH_RELAY_BIN (else a
# release build), BENCH_KEEP=1.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
NAME=sse_idle
# shellcheck source=../lib.sh
. "$ROOT/bench/lib.sh"

parse_mode "$@"
if [ "$MODE" = smoke ]; then STEPS=${BENCH_STEPS:-"100 500"}; else STEPS=${BENCH_STEPS:-"1000 5000"}; fi
SETTLE=${BENCH_SETTLE:-3}
PORT=${BENCH_PORT:-24496}
RELAY_PORT=${BENCH_RELAY_PORT:-24497}
WORK=${BENCH_DIR:-/tmp/bench-connections-sse}
scenario_traps
require_tools node curl
ports_free "$PORT" "$RELAY_PORT"
raise_fd_limit
if [ -n "${BENCH_RELAY_BIN:-}" ]; then
    RELAY_BIN=$BENCH_RELAY_BIN
else
    log "cargo build --release -p realtime-relay"
    (cd "$ROOT" && cargo build --release -q -p realtime-relay) || die "release build failed"
    RELAY_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/realtime-relay
fi
cluster_start
cluster_setup
relay_start
STEP_ARG=${STEPS// /,}
log "streams [$STEPS] on relay $RELAY_BIN (pid $RELAY_PID)"
node "$HERE/sse-idle.mjs" --url "http://127.0.0.1:$RELAY_PORT" --pid "$RELAY_PID" --steps "$STEP_ARG" \
    --settle "$SETTLE" ${BENCH_CHANNELS:+--channels "$BENCH_CHANNELS"}
