# Several relays on one database, for bench/soak and bench/relays. Sourced after
# bench/loadgen/lib.sh. Relay k (1, 2, ...) listens on RELAY_BASE_PORT + k − 1, runs as the
# private copy $WORK/bench-$NAME-relay-k with its own --relay-id bench_$NAME_k (so its own slot,
# realtime_bench_$NAME_k: relays of one environment claiming slots side by side is not what these
# scenarios measure), and logs to $WORK/relay-k.log. The caller sets NAME, WORK, PORT,
# RELAY_BASE_PORT, RELAY_BIN and stops them all in its scenario_stop (relays_stop_all).

declare -A RELAYS_PID=()

relay_k_id() { echo "bench_${NAME}_$1"; }
relay_k_port() { echo $((RELAY_BASE_PORT + $1 - 1)); }
relay_k_url() { echo "ws://127.0.0.1:$(relay_k_port "$1")/v1/socket"; }
relay_k_alive() { [ -n "${RELAYS_PID[$1]:-}" ] && kill -0 "${RELAYS_PID[$1]}" 2>/dev/null; }

relay_k_start() {
    local k=$1
    relay_k_alive "$k" && return 0
    port_free "$(relay_k_port "$k")" || die "port $(relay_k_port "$k") (relay $k) is in use; move BENCH_RELAY_PORT"
    relay_spawn "bench-$NAME-relay-$k" "$(relay_k_port "$k")" "$(relay_k_id "$k")" "$WORK/relay-$k.log"
    RELAYS_PID[$k]=$SPAWNED_PID
}

# usage: relay_k_stop K [drop] — TERM (KILL after 10 s); with `drop`, its slot is dropped too, so
# a later start begins at the current WAL position instead of decoding what it missed.
relay_k_stop() {
    local k=$1 pid=${RELAYS_PID[$1]:-} i
    if [ -n "$pid" ]; then
        stop_pid "$pid" 10
        unset "RELAYS_PID[$k]"
    fi
    [ "${2:-}" = drop ] || return 0
    # The slot's walsender ends a moment after the relay.
    for i in $(seq 1 50); do
        sql "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
              WHERE slot_name = 'realtime_$(relay_k_id "$k")' AND NOT active" >/dev/null 2>&1 || true
        [ "$(sql "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'realtime_$(relay_k_id "$k")'")" = 0 ] &&
            return 0
        sleep 0.2
    done
    log "WARNING: the slot of relay $k could not be dropped"
}

relays_stop_all() {
    local k
    for k in "${!RELAYS_PID[@]}"; do relay_k_stop "$k"; done
}

# The running relays' numbers, ascending.
relays_running() {
    local k
    for k in "${!RELAYS_PID[@]}"; do relay_k_alive "$k" && echo "$k"; done | sort -n
}

# Comma-separated URLs and pids of relays 1..N.
relays_urls() {
    local k out=""
    for ((k = 1; k <= $1; k++)); do out+="${out:+,}$(relay_k_url "$k")"; done
    echo "$out"
}
relays_pids() {
    local k out=""
    for ((k = 1; k <= $1; k++)); do out+="${out:+,}${RELAYS_PID[$k]}"; done
    echo "$out"
}

# The pid of the walsender streaming relay k's slot (empty while it has none).
walsender_pid() {
    sql "SELECT coalesce(active_pid::text, '') FROM pg_replication_slots WHERE slot_name = 'realtime_$(relay_k_id "$1")'"
}

# The postmaster's pid (its process tree is all of Postgres).
postmaster_pid() { head -n 1 "$WORK/data/postmaster.pid"; }

# Waits until every running relay's slot confirmed all WAL written so far (at most
# CATCHUP_LIMIT, 60 s); prints the seconds it took, or "timeout".
relays_catch_up() {
    local end start_ms now_ms ids="" k
    for k in $(relays_running); do ids+="${ids:+,}'realtime_$(relay_k_id "$k")'"; done
    [ -n "$ids" ] || {
        echo 0
        return 0
    }
    end=$(sql "SELECT pg_current_wal_lsn()")
    start_ms=$(date +%s%3N)
    while :; do
        if [ "$(sql "SELECT coalesce(bool_and(confirmed_flush_lsn >= '$end'::pg_lsn), false)
                       FROM pg_replication_slots WHERE slot_name IN ($ids)")" = t ]; then
            now_ms=$(date +%s%3N)
            awk -v ms=$((now_ms - start_ms)) 'BEGIN { printf "%.1f\n", ms / 1000 }'
            return 0
        fi
        now_ms=$(date +%s%3N)
        [ $((now_ms - start_ms)) -lt $((${CATCHUP_LIMIT:-60} * 1000)) ] || break
        sleep 0.1
    done
    log "WARNING: the relays had not confirmed $end after ${CATCHUP_LIMIT:-60} s"
    echo timeout
}
