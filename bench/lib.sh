# Shared helpers for every benchmark script (bench/*/run.sh): logging, port checks, the
# throwaway cluster, roles + CREATE EXTENSION with the extension library pinned, the relay
# (a private binary copy), release builds, fd limits, medians and the results file.
# Sourced, not run. Every process started here is remembered by pid and stopped by the
# caller's cleanup(); nothing is killed by name.
#
# The caller sets before calling the functions: NAME (scenario: names the relay copy and its
# slot), WORK (a scratch folder, deleted and re-created by cluster_start), PORT (Postgres),
# RELAY_PORT (relay), ROOT (the repository). Optional: RELAY_ID (default bench_$NAME: the slot is
# realtime_$RELAY_ID), CLUSTER_MAX_CONNECTIONS (100), BENCH_SYNC_COMMIT (on),
# RELAY_LOG_LEVEL (warn), JWT_SECRET.
#
# Postgres comes from $PG_BIN: `make bench-*` exports it from PG_PREFIX (a private copy of
# Postgres with this checkout's extension build); run by hand, set PG_BIN or PG_PREFIX.

if [ -z "${PG_BIN:-}" ]; then
    if [ -n "${PG_PREFIX:-}" ]; then
        PG_BIN=$PG_PREFIX/usr/lib/postgresql/15/bin
    else
        PG_BIN=/usr/lib/postgresql/15/bin
    fi
fi
JWT_SECRET=${JWT_SECRET:-bench-loadgen-jwt-secret-0123456789abcdef}

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# usage: parse_mode "$@" — sets MODE to full (no argument) or smoke (--smoke); --help prints the
# calling script's header comment.
parse_mode() {
    MODE=full
    case "${1:-}" in
        "") ;;
        --smoke) MODE=smoke ;;
        -h | --help)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
            exit 0
            ;;
        *) die "unknown argument '$1' (expected --smoke)" ;;
    esac
}

# Postgres refuses to run as root: run its server tools as `postgres` when we are root.
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

psql_q() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U postgres -d postgres "$@"; }
sql() { psql_q -At -c "$1"; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Dies unless every port given is free ("set VAR" names the setting that moves it).
ports_free() {
    local p
    for p in "$@"; do port_free "$p" || die "port $p is in use; move it with the BENCH_*PORT settings"; done
}

# File descriptors: one per WebSocket connection on each side (children inherit the limit).
# The soft limit is raised as far as the hard limit allows; FD_HARD says where that stops.
raise_fd_limit() {
    ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    FD_LIMIT=$(ulimit -n)
    FD_HARD=$(ulimit -Hn)
    log "file descriptor limit: $FD_LIMIT (hard $FD_HARD)"
}

git_facts() {
    START_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
    COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    DIRTY=$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l)
    LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
}

# "<cores> cores, <model>, <RAM>": the machine line of every report.
machine_line() {
    local model mem
    model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    mem=$(awk '/^MemTotal/ { printf "%.1f GB", $2 / 1048576 }' /proc/meminfo)
    echo "$(nproc) cores (${model:-unknown CPU}), $mem RAM, $(uname -r)"
}

# A hard time limit for the whole script: TERM to this shell after $1 seconds.
WATCHDOG_PID=""
watchdog_start() {
    setsid bash -c 'sleep "$0"; kill -TERM "$1"' "$1" "$$" &
    WATCHDOG_PID=$!
}
watchdog_stop() {
    [ -n "$WATCHDOG_PID" ] && kill "$WATCHDOG_PID" 2>/dev/null
    WATCHDOG_PID=""
}

# On exit: the scenario's own processes (its `scenario_stop`, when it defines one), the relay and
# the cluster stopped; the relay log's tail shown on failure; $WORK removed unless BENCH_KEEP=1.
scenario_cleanup() {
    local rc=$?
    set +e
    if declare -F scenario_stop >/dev/null; then scenario_stop; fi
    relay_stop
    [ $rc -ne 0 ] && [ -f "$WORK/relay.log" ] && tail -n 10 "$WORK/relay.log" >&2
    cluster_stop
    [ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$WORK"
    watchdog_stop
    exit $rc
}

# Installs scenario_cleanup on exit and a clean exit on Ctrl-C / TERM.
scenario_traps() {
    trap scenario_cleanup EXIT
    trap 'log "interrupted"; exit 130' INT TERM
}

# usage: require_tools jq curl — dies naming the first missing command.
require_tools() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || die "$t is required (apt-get install -y $t)"
    done
}

# ---------------------------------------------------------------------------------------------
# Binaries: release builds of the relay and the load generator (BENCH_RELAY_BIN and
# BENCH_LOADGEN_BIN, both set, skip the build).

build_binaries() {
    if [ -n "${BENCH_RELAY_BIN:-}" ] && [ -n "${BENCH_LOADGEN_BIN:-}" ]; then
        RELAY_BIN=$BENCH_RELAY_BIN LOADGEN=$BENCH_LOADGEN_BIN
        RELAY_BUILD="given ($RELAY_BIN)"
    else
        log "cargo build --release -p realtime-relay -p realtime-loadgen"
        (cd "$ROOT" && cargo build --release -q -p realtime-relay -p realtime-loadgen) ||
            die "release build failed"
        local target=${CARGO_TARGET_DIR:-$ROOT/target}
        RELAY_BIN=$target/release/realtime-relay LOADGEN=$target/release/realtime-loadgen
        RELAY_BUILD="release build"
    fi
    [ -x "$RELAY_BIN" ] && [ -x "$LOADGEN" ] || die "binaries not found: $RELAY_BIN $LOADGEN"
}

# ---------------------------------------------------------------------------------------------
# Cluster: fsync and synchronous_commit on (real, durable commits).

PG_STARTED=""

cluster_start() {
    port_free "$PORT" || die "port $PORT is in use; set BENCH_PORT to a free port"
    [ -x "$PG_BIN/postgres" ] || die "no Postgres in $PG_BIN (set PG_BIN or PG_PREFIX)"
    if [ -f "$WORK/data/postmaster.pid" ]; then
        log "stopping a leftover benchmark cluster in $WORK/data"
        as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" stop -m immediate -w -t 30 >/dev/null 2>&1 || true
    fi
    rm -rf "$WORK"
    mkdir -p "$WORK"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK"
    as_pg "$PG_BIN/initdb" -D "$WORK/data" -A trust -U postgres -E UTF8 --locale=C --no-sync \
        >"$WORK/initdb.log" 2>&1 || die "initdb failed: $(tail -n 5 "$WORK/initdb.log")"
    local opts="-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c wal_level=logical"
    opts+=" -c max_wal_senders=10 -c max_replication_slots=10 -c shared_buffers=256MB"
    opts+=" -c max_connections=${CLUSTER_MAX_CONNECTIONS:-100} -c fsync=on"
    opts+=" -c synchronous_commit=${BENCH_SYNC_COMMIT:-on} ${CLUSTER_EXTRA_OPTS:-}"
    # The port is inside the ephemeral range: an outgoing connection may hold it for a moment.
    local try
    for try in 1 2 3 4; do
        as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w -t 60 -o "$opts" start \
            >/dev/null 2>&1 && break
        [ "$try" = 4 ] && die "Postgres did not start: $(tail -n 10 "$WORK/postgres.log")"
        log "Postgres did not start (try $try), retrying: $(grep -m1 'could not' "$WORK/postgres.log" || true)"
        sleep 2
    done
    PG_STARTED=1
    DB_URL="postgres://postgres@127.0.0.1:$PORT/postgres"
}

cluster_stop() {
    [ -n "$PG_STARTED" ] || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/data" stop -m immediate -w -t 30 >/dev/null 2>&1 || true
    PG_STARTED=""
}

# The extension library of $PG_BIN's Postgres; dies when it is not installed there.
extension_so() {
    local so
    so="$("$PG_BIN/pg_config" --pkglibdir)/realtime.so"
    [ -f "$so" ] && [ -f "$("$PG_BIN/pg_config" --sharedir)/extension/realtime.control" ] ||
        die "the realtime extension is not installed into $PG_BIN's Postgres; run 'make install-ext PG_PREFIX=...' first"
    echo "$so"
}

# The roles the relay's tokens map to (anon, authenticated, service_role).
create_roles() {
    psql_q <<'SQL' >/dev/null
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
END $$;
SQL
}

# Notes the library's mtime; call before CREATE EXTENSION, then pin_extension after it.
note_extension() { SO_EPOCH_START=$(stat -c %Y "$(extension_so)"); }

# Pins the extension's library for the rest of the run: copies realtime.so into $WORK and points
# the extension's C functions at the copy. Other jobs on this machine run `make install-ext`,
# which rewrites $libdir/realtime.so in place: backends that have it mapped then die with SIGBUS,
# and runs would mix builds. Call right after CREATE EXTENSION (note_extension before it); dies
# if the library changed between the two. Sets EXT_VERSION and SO_SIZE.
pin_extension() {
    local so n
    so=$(extension_so)
    mkdir -p "$WORK/lib"
    cp "$so" "$WORK/lib/realtime.so"
    chmod 0755 "$WORK/lib" "$WORK/lib/realtime.so"
    [ "$(stat -c %Y "$so")" = "${SO_EPOCH_START:-}" ] ||
        die "realtime.so was reinstalled while the benchmark was being set up; run it again"
    n=$(sql "UPDATE pg_catalog.pg_proc SET probin = '$WORK/lib/realtime'
               WHERE probin = '\$libdir/realtime' RETURNING 1" | wc -l)
    [ "$n" -gt 0 ] || die "found no functions of the realtime library to pin"
    SO_SIZE=$(du -h "$WORK/lib/realtime.so" | cut -f1)
    EXT_VERSION=$(sql "SELECT extversion FROM pg_extension WHERE extname = 'realtime'")
}

# Roles, the extension (pinned), one pattern channel for every bench:* name and a policy letting
# every role subscribe: the setup of the loadgen scenarios.
cluster_setup() {
    create_roles
    note_extension
    psql_q <<'SQL' >/dev/null
CREATE EXTENSION realtime;
INSERT INTO realtime.channels (pattern) VALUES ('bench:%');
CREATE POLICY bench_all ON realtime.channels FOR SELECT USING (true);
SQL
    pin_extension
}

# ---------------------------------------------------------------------------------------------
# Relay: a private copy under its own name, so no other job's broad pkill can take it down.

RELAY_PID=""
RELAY_FLAGS=""
RELAY_RESTARTS=0
RELAY_RESTART_NOTES=""

relay_start() {
    port_free "$RELAY_PORT" || die "port $RELAY_PORT is in use; set BENCH_RELAY_PORT"
    relay_spawn "bench-$NAME-relay" "$RELAY_PORT" "${RELAY_ID:-bench_$NAME}" "$WORK/relay.log"
    RELAY_PID=$SPAWNED_PID
}

# usage: relay_spawn COPY_NAME PORT RELAY_ID LOG — starts a private copy of the relay binary
# named COPY_NAME (in $WORK) on PORT with that --relay-id and waits for /readyz. Sets SPAWNED_PID.
relay_spawn() {
    local copy=$WORK/$1 port=$2 id=$3 logf=$4
    [ -x "$copy" ] || cp "$RELAY_BIN" "$copy"
    # More connections than the default cap (10,000), where this relay version has the flag.
    if "$RELAY_BIN" --help 2>/dev/null | grep -q -- --max-connections; then
        RELAY_FLAGS="--max-connections 100000"
    fi
    echo "--- relay start $(date -u +%T)" >>"$logf"
    # shellcheck disable=SC2086
    RUST_LOG="${RUST_LOG:-${RELAY_LOG_LEVEL:-warn}}" "$copy" \
        --database-url "postgres://postgres@127.0.0.1:$PORT/postgres" \
        --bind "127.0.0.1:$port" --jwt-secret "$JWT_SECRET" --relay-id "$id" \
        $RELAY_FLAGS ${RELAY_EXTRA_FLAGS:-} </dev/null >>"$logf" 2>&1 &
    SPAWNED_PID=$!
    local deadline=$((SECONDS + 60)) code=""
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$SPAWNED_PID" 2>/dev/null || die "the relay exited before it was ready: $(tail -n 10 "$logf")"
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)
        [ "$code" = 200 ] && return 0
        sleep 0.2
    done
    kill -KILL "$SPAWNED_PID" 2>/dev/null || true
    die "the relay on port $port was not ready within 60 s (last /readyz: $code): $(tail -n 10 "$logf")"
}

relay_alive() { [ -n "$RELAY_PID" ] && kill -0 "$RELAY_PID" 2>/dev/null; }

# Before a run that should have the relay: restart it (and count it for the report) if it died.
# usage: relay_ensure [WHAT: noted in RELAY_RESTART_NOTES]
relay_ensure() {
    [ -n "$RELAY_PID" ] || return 0
    relay_alive && return 0
    local rc=0
    wait "$RELAY_PID" 2>/dev/null || rc=$?
    log "WARNING: the relay exited (status $rc) before '${1:-the next run}'; restarting it. $(tail -n 5 "$WORK/relay.log")"
    RELAY_RESTARTS=$((RELAY_RESTARTS + 1))
    RELAY_RESTART_NOTES+="${RELAY_RESTART_NOTES:+; }exited with status $rc, noticed before ${1:-a run}"
    RELAY_PID=""
    relay_start
}

# TERM, then KILL after RELAY_STOP_WAIT seconds (10; longer when the relay runs under a
# profiler that writes its output at exit).
relay_stop() {
    [ -n "$RELAY_PID" ] || return 0
    stop_pid "$RELAY_PID" "${RELAY_STOP_WAIT:-10}"
    RELAY_PID=""
}

# usage: stop_pid PID SECONDS — TERM, KILL if still running after SECONDS, then reap it.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 $(($2 * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Waits until the relay's slot confirmed everything written so far (a decoding backlog must not
# spill into the next run). Prints the seconds it took, "-" without a relay, or "timeout"
# after CATCHUP_LIMIT (30) seconds.
relay_catch_up() {
    relay_alive || {
        echo "-"
        return 0
    }
    local end ok start_ms now_ms limit=${CATCHUP_LIMIT:-30}
    end=$(sql "SELECT pg_current_wal_lsn()")
    start_ms=$(date +%s%3N)
    while :; do
        ok=$(sql "SELECT coalesce(bool_and(confirmed_flush_lsn >= '$end'::pg_lsn), false)
                    FROM pg_replication_slots WHERE slot_name = 'realtime_${RELAY_ID:-bench_$NAME}'")
        now_ms=$(date +%s%3N)
        if [ "$ok" = t ]; then
            awk -v ms=$((now_ms - start_ms)) 'BEGIN { printf "%.1f\n", ms / 1000 }'
            return 0
        fi
        [ $((now_ms - start_ms)) -lt $((limit * 1000)) ] && relay_alive || break
        sleep 0.1
    done
    log "WARNING: the relay had not confirmed $end after ${limit} s"
    echo timeout
}

# ---------------------------------------------------------------------------------------------
# Statistics.

# Reads numbers on stdin; prints "median min max count" (or "- - - 0").
stats() {
    sort -g | awk '{ a[NR] = $1 }
        END {
            if (NR == 0) { print "- - - 0"; exit }
            m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
            print m, a[1], a[NR], NR
        }'
}

# Median of numbers on stdin ("-" when none).
median() {
    local s
    s=$(stats)
    set -- $s
    echo "$1"
}
median_of() { median; }

# fmt_stats FORMAT: median, min and max of the numbers on stdin through printf FORMAT ("–" if none).
fmt_stats() {
    local format=$1 s
    s=$(stats)
    set -- $s
    if [ "$4" = 0 ]; then echo "–"; else printf "$format" "$1" "$2" "$3"; fi
}

# "median (min–max)" of numbers on stdin, rounded to integers.
fmt_tps() { fmt_stats '%.0f (%.0f–%.0f)'; }

# "0.93x (0.88–0.97)" for ratios on stdin.
fmt_ratio() { fmt_stats '%.2fx (%.2f–%.2f)'; }

# rotate N WORDS...: the words rotated left by N (interleaving: a different order each round).
rotate() {
    local n=$1
    shift
    local a=("$@") i
    for ((i = 0; i < ${#a[@]}; i++)); do printf '%s ' "${a[$(((i + n) % ${#a[@]}))]}"; done
}

# ---------------------------------------------------------------------------------------------
# Results file.

append_results() {
    local results=$1 report=$2
    if [ ! -f "$results" ]; then
        printf '# Benchmark results\n\nAppended by the benchmark scripts; newest last. Method: bench/README.md.\n' >"$results"
    fi
    printf '\n%s\n' "$report" >>"$results"
    log "appended to $results"
}

# Prints a scenario's report and, when RECORD is 1, appends it to RESULTS_MD.
publish_report() {
    printf '%s\n' "$1"
    if [ "${RECORD:-0}" = 1 ]; then append_results "$RESULTS_MD" "$1"; fi
}
