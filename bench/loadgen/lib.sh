# Helpers for the loadgen scenarios (bench/latency, bench/fanout, bench/connections,
# bench/subscribe): loadgen runs and their summaries. Sourced, not run. The cluster, the relay,
# the extension pinning, logging and medians come from bench/lib.sh (sourced here, so scripts
# that source this file keep working).
#
# The caller sets: NAME, PORT, RELAY_PORT, WORK, ROOT, RAW (the JSON lines file).

# shellcheck source=../lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

# ---------------------------------------------------------------------------------------------
# Servers under test. TARGET (realtime, sse, phoenix, phoenix-v1, ws, socketio, centrifuge)
# selects the one loadgen_run drives: `realtime` is our relay over protocol v1 (relay_start in
# bench/lib.sh); `sse`, `phoenix` (Supabase's protocol, vsn 2.0.0) and `phoenix-v1` (vsn 1.0.0)
# are the same relay process over its other transports and protocols; `ws` and `socketio` are the Node
# peers in bench/peers/ and `centrifuge` the Go peer on the Centrifuge library
# (bench/peers/centrifuge/), all relaying the same realtime.publish() commits through an AFTER
# INSERT trigger that pg_notify()s each message id (InsForge's design; bench/peers/relay-core.mjs).
# The caller sets PEER_PORT. Only one server runs at a time (use_target), so none takes CPU from
# another's run, and the notify trigger is enabled only while a peer runs.

TARGET=${TARGET:-realtime}
PEER_PID=""
PEER_NAME=""

# Whether a target is served by our relay (any of its transports and protocols).
relay_target() {
    case "$1" in
        realtime | sse | phoenix | phoenix-v1) return 0 ;;
    esac
    return 1
}

# Makes the peers of $TARGETS runnable: npm ci in bench/peers when its node_modules is missing
# or older than the lock file (Node peers); the Centrifuge peer built into $WORK (Go, offline,
# from Debian's packages: bench/deps.sh installs them). Sets PEER_VERSIONS.
peers_install() {
    PEER_VERSIONS=""
    if [[ " $TARGETS " == *" ws "* || " $TARGETS " == *" socketio "* ]]; then node_peers_install; fi
    if [[ " $TARGETS " == *" centrifuge "* ]]; then centrifuge_build; fi
    PEER_VERSIONS=${PEER_VERSIONS#, }
}

CENTRIFUGE_BIN=""
centrifuge_build() {
    CENTRIFUGE_BIN=$WORK/bench-centrifuge-peer
    log "building the Centrifuge peer (bench/peers/centrifuge/build.sh)"
    "$ROOT/bench/peers/centrifuge/build.sh" "$CENTRIFUGE_BIN" >"$WORK/go-build.log" 2>&1 ||
        die "the Centrifuge peer did not build (run bench/deps.sh first?): $(tail -n 5 "$WORK/go-build.log")"
    local lib go
    lib=$(dpkg-query -W -f='${Version}' golang-github-centrifugal-centrifuge-dev 2>/dev/null || echo '?')
    go=$(go version | awk '{ print $3 }')
    PEER_VERSIONS+=", centrifuge library $lib (Debian), $go"
}

node_peers_install() {
    local dir=$ROOT/bench/peers
    command -v node >/dev/null || die "node is required for the peer servers (Node 20)"
    if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
        log "npm ci in bench/peers"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>"$WORK/npm.log") ||
            die "npm ci failed: $(tail -n 5 "$WORK/npm.log")"
        touch "$dir/node_modules"
    fi
    PEER_VERSIONS+=", $(cd "$dir" && node -e '
        const v = (p) => JSON.parse(require("fs").readFileSync(`node_modules/${p}/package.json`)).version;
        console.log(`node ${process.versions.node}, ws ${v("ws")}, socket.io ${v("socket.io")}, pg ${v("pg")}`)')"
}

# The trigger the peers listen to (created disabled); call once after cluster_setup.
peers_setup() {
    psql_q -f "$ROOT/bench/peers/notify.sql" >/dev/null
}

# Starts a peer on PEER_PORT: bench/peers/<name>-server.mjs, or the Centrifuge peer's binary. The bench ports lie in the ephemeral range,
# where another job's listener may land for a while: then the next free port is used (the
# recorded commands carry the port of each run).
peer_start() {
    local name=$1 try
    for try in 1 2 3 4 5 6 7 8 9 10; do
        port_free "$PEER_PORT" && break
        [ "$try" = 10 ] && die "no free port for the $name peer (last tried $PEER_PORT)"
        log "port $PEER_PORT is in use; the $name peer takes $((PEER_PORT + 1))"
        PEER_PORT=$((PEER_PORT + 1))
    done
    echo "--- $name start $(date -u +%T)" >>"$WORK/peer-$name.log"
    local cmd=(node "$ROOT/bench/peers/$name-server.mjs")
    [ "$name" = centrifuge ] && cmd=("$CENTRIFUGE_BIN")
    "${cmd[@]}" --port "$PEER_PORT" --database-url "$DB_URL" </dev/null >>"$WORK/peer-$name.log" 2>&1 &
    PEER_PID=$! PEER_NAME=$name
    local deadline=$((SECONDS + 30)) code=""
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$PEER_PID" 2>/dev/null || die "the $name peer exited: $(tail -n 10 "$WORK/peer-$name.log")"
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PEER_PORT/readyz" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.2
    done
    die "the $name peer was not ready within 30 s: $(tail -n 10 "$WORK/peer-$name.log")"
}

peer_stop() {
    [ -n "$PEER_PID" ] || return 0
    stop_pid "$PEER_PID" 5
    PEER_PID="" PEER_NAME=""
}

# Makes TARGET the only server running. Switching to our relay waits until its slot caught up
# with what the peers' runs published (the relay decodes it with nobody subscribed).
use_target() {
    TARGET=$1
    case "$TARGET" in
        realtime | sse | phoenix | phoenix-v1)
            peer_stop
            sql "ALTER TABLE realtime.messages DISABLE TRIGGER bench_peers_notify" >/dev/null 2>&1 || true
            if ! relay_alive; then
                RELAY_PID=""
                relay_start
                local c
                c=$(relay_catch_up)
                if [ "$c" = timeout ]; then log "WARNING: the relay is still decoding the peers' messages"; fi
            fi
            ;;
        ws | socketio | centrifuge)
            relay_stop
            [ "$PEER_NAME" = "$TARGET" ] && kill -0 "$PEER_PID" 2>/dev/null && return 0
            peer_stop
            sql "ALTER TABLE realtime.messages ENABLE TRIGGER bench_peers_notify" >/dev/null
            peer_start "$TARGET"
            ;;
        *) die "unknown target '$TARGET' (realtime, sse, phoenix, phoenix-v1, ws, socketio, centrifuge)" ;;
    esac
}

# The server(s) a run drives: TARGET's, or TARGET_URLS / TARGET_PIDS (comma-separated) when a
# scenario runs several relays (bench/loadgen/relays.sh).
target_url() {
    if [ -n "${TARGET_URLS:-}" ]; then
        echo "$TARGET_URLS"
        return
    fi
    case "$TARGET" in
        realtime) echo "ws://127.0.0.1:$RELAY_PORT/v1/socket" ;;
        sse) echo "http://127.0.0.1:$RELAY_PORT/v1/sse" ;;
        phoenix) echo "ws://127.0.0.1:$RELAY_PORT/realtime/v1/websocket?vsn=2.0.0" ;;
        phoenix-v1) echo "ws://127.0.0.1:$RELAY_PORT/realtime/v1/websocket?vsn=1.0.0" ;;
        ws) echo "ws://127.0.0.1:$PEER_PORT/v1/socket" ;;
        socketio) echo "ws://127.0.0.1:$PEER_PORT/socket.io/?EIO=4&transport=websocket" ;;
        centrifuge) echo "ws://127.0.0.1:$PEER_PORT/connection/websocket" ;;
    esac
}

target_pid() {
    if [ -n "${TARGET_PIDS:-}" ]; then
        echo "$TARGET_PIDS"
    elif relay_target "$TARGET"; then
        echo "$RELAY_PID"
    else
        echo "$PEER_PID"
    fi
}

# ---------------------------------------------------------------------------------------------
# One loadgen run against TARGET. usage: loadgen_run LABEL ARGS...
# Appends the JSON line plus the exact command to $RAW; the loadgen samples `top` once mid-window
# into $WORK/top.LABEL.txt. Prints the JSON line.
#
# LOADGEN_PROCS > 1 (the fanout script sets it from BENCH_LOADGEN_PROCS) splits a fan-out run's
# --connections over that many load-generator processes (bench/loadgen/src/group.rs: the first
# publishes, all subscribe, each with cores / processes threads), and merges their lines into one
# (`--mode merge`), so one process's runtime is not what the figure measures.

LOADGEN_PROCS=${LOADGEN_PROCS:-1}

loadgen_run() {
    local label=$1
    shift
    if relay_target "$TARGET"; then relay_ensure "$label"; fi
    local cmd=(target/release/realtime-loadgen --target "$TARGET" --url "$(target_url)"
        --database-url "$DB_URL" --relay-pid "$(target_pid)" --label "$label" "$@")
    local out recorded
    if [ "$LOADGEN_PROCS" -gt 1 ] && [[ " $* " != *" --mode "* ]]; then
        loadgen_group "$label" "$LOADGEN_PROCS" "${cmd[@]:1}"
        out=$GROUP_OUT recorded=$GROUP_CMD
    else
        out=$("$LOADGEN" "${cmd[@]:1}" --top-file "$WORK/top.$label.txt" 2>>"$WORK/loadgen.log") || {
            tail -n 20 "$WORK/loadgen.log" >&2
            die "loadgen failed: $(printf '%q ' "${cmd[@]}")"
        }
        # The recorded command (ports and pid as in this run), quoted for a shell.
        recorded=$(printf '%q ' "${cmd[@]}")
    fi
    jq -c --arg cmd "${recorded% }" '. + {command: $cmd}' <<<"$out" >>"$RAW"
    printf '%s\n' "$out"
    # Let the server drop the closed sessions before the next run.
    sleep 1
}

# usage: loadgen_group LABEL K LOADGEN_ARGS... — one fan-out run as K processes sharing a group
# file under /dev/shm; --connections N of the arguments is split over them. Sets GROUP_OUT (the
# merged JSON line) and GROUP_CMD (every command, for the report).
loadgen_group() {
    local label=$1 k=$2
    shift 2
    local args=() n=""
    while [ $# -gt 0 ]; do
        if [ "$1" = --connections ]; then
            n=$2
            shift 2
            continue
        fi
        args+=("$1")
        shift
    done
    [ -n "$n" ] || die "loadgen_group: no --connections in the arguments"
    local file=/dev/shm/bench-$NAME-$$-$label.group
    rm -f "$file"
    local threads=$(($(nproc) / k))
    [ "$threads" -ge 1 ] || threads=1
    local i off=0 ni pids=() files=() cmds=() cmd
    for ((i = 0; i < k; i++)); do
        ni=$((n / k + (i < n % k ? 1 : 0)))
        cmd=(target/release/realtime-loadgen "${args[@]}" --connections "$ni" --conn-offset "$off"
            --group "$file" --group-size "$k" --group-index "$i" --group-wait 120 --threads "$threads")
        [ "$i" = 0 ] && cmd+=(--top-file "$WORK/top.$label.txt")
        "$LOADGEN" "${cmd[@]:1}" >"$WORK/loadgen.$i.json" 2>>"$WORK/loadgen.log" &
        pids+=($!)
        files+=("$WORK/loadgen.$i.json")
        cmds+=("$(printf '%q ' "${cmd[@]}")")
        off=$((off + ni))
    done
    local rc=0 p
    for p in "${pids[@]}"; do wait "$p" || rc=1; done
    rm -f "$file"
    if [ $rc != 0 ]; then
        tail -n 20 "$WORK/loadgen.log" >&2
        die "a load-generator process of the group failed: ${cmds[0]}"
    fi
    GROUP_OUT=$("$LOADGEN" --mode merge --inputs "$(IFS=,; echo "${files[*]}")") || die "loadgen --mode merge failed"
    GROUP_CMD="$(printf '%s& ' "${cmds[@]}")wait; target/release/realtime-loadgen --mode merge --inputs <the $k JSON lines>"
}

# usage: field_median LABEL JQ_EXPR — median of one field over the rounds of a label.
field_median() {
    jq -r --arg l "$1" "select(.label == \$l) | $2 // empty" "$RAW" | median
}

# min–max of one field over the rounds of a label.
field_range() {
    jq -r --arg l "$1" "select(.label == \$l) | $2 // empty" "$RAW" | sort -g |
        awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (NR) printf "%s–%s", lo, hi; else print "-" }'
}

us_to_ms() { awk -v v="$1" 'BEGIN { if (v == "-") print "-"; else printf "%.2f", v / 1000 }'; }

# A results row for one label: rounds, deliveries/s, missing, send→recv and ack→recv
# percentiles (ms, medians over rounds), errors, CPU seconds over the measured window (relay,
# loadgen, machine busy of machine capacity = cores × window), the server's peak RSS (MB)
# and the mean delivered frame size (bytes), all medians. "server" is the relay or the peer.
summary_row() {
    local l=$1 n
    n=$(jq -r --arg l "$l" 'select(.label == $l) | .label' "$RAW" | wc -l)
    local dps miss p50 p90 p99 p999 max a50 a99 err rcpu lcpu mcpu cap rss bytes usd
    dps=$(field_median "$l" .deliveries_per_s)
    usd=$(jq -r --arg l "$l" 'select(.label == $l and .deliveries > 0 and .cpu_s.relay != null)
            | .cpu_s.relay * 1000000 / .deliveries' "$RAW" | median |
        awk '{ if ($1 == "-") print "-"; else printf "%.1f", $1 }')
    miss=$(field_range "$l" .missing)
    p50=$(us_to_ms "$(field_median "$l" .latency_us.p50)")
    p90=$(us_to_ms "$(field_median "$l" .latency_us.p90)")
    p99=$(us_to_ms "$(field_median "$l" .latency_us.p99)")
    p999=$(us_to_ms "$(field_median "$l" .latency_us.p999)")
    max=$(us_to_ms "$(field_median "$l" .latency_us.max)")
    a50=$(us_to_ms "$(field_median "$l" .ack_to_recv_us.p50)")
    a99=$(us_to_ms "$(field_median "$l" .ack_to_recv_us.p99)")
    err=$(jq -r --arg l "$l" 'select(.label == $l) | ([.errors[]] | add // 0) + ([.publish_errors[]] | add // 0)
            + ([.setup_errors[]] | add // 0)' "$RAW" | awk '{ s += $1 } END { print s + 0 }')
    rcpu=$(field_median "$l" .cpu_s.relay)
    lcpu=$(field_median "$l" .cpu_s.loadgen)
    mcpu=$(field_median "$l" .cpu_s.machine_busy)
    cap=$(field_median "$l" .cpu_s.machine_capacity)
    rss=$(jq -r --arg l "$l" 'select(.label == $l) | .relay_rss_kb.peak // empty' "$RAW" | median |
        awk '{ if ($1 == "-") print "-"; else printf "%.0f", $1 / 1024 }')
    bytes=$(field_median "$l" .frame_bytes_mean)
    printf '| %s | %s | %s | %s | %s | %s / %s / %s / %s / %s | %s / %s | %s | %s / %s / %s of %s s | %s | %s |\n' \
        "$l" "$n" "$dps" "$usd" "$miss" "$p50" "$p90" "$p99" "$p999" "$max" "$a50" "$a99" "$err" \
        "$rcpu" "$lcpu" "$mcpu" "$cap" "$rss" "$bytes"
}

summary_header() {
    echo '| run | rounds | deliveries/s | server CPU µs per delivery | missing (min–max) | send→recv p50 / p90 / p99 / p99.9 / max (ms) | ack→recv p50 / p99 (ms) | errors (all rounds) | CPU s: server / loadgen / machine busy of capacity | server peak RSS (MB) | frame bytes |'
    echo '|---|---|---|---|---|---|---|---|---|---|---|'
}

# The exact command of each label's first round (ports as in this run).
commands_block() {
    echo '```sh'
    jq -r '.label' "$RAW" | awk '!seen[$0]++' | while read -r l; do
        jq -r --arg l "$l" 'select(.label == $l) | .command' "$RAW" | head -n 1
    done
    echo '```'
}

# Every run's JSON line (its command left out: commands_block shows it), collapsed.
raw_json_details() {
    echo "<details><summary>Raw JSON lines</summary>"
    echo
    echo '```json'
    jq -c 'del(.command)' "$RAW"
    echo '```'
    echo
    echo "</details>"
}

