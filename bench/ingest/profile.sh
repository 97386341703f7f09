#!/usr/bin/env bash
# Where does publish's cost go? CPU per call of realtime.publish and of its parts (validators,
# channel match) next to a plain INSERT of the same row, each measured as 20000 calls in one
# PL/pgSQL loop (no commit, no fsync, no relay). Prints microseconds per call. ~30 s.
#
#   bench/ingest/profile.sh        (BENCH_PORT default 55468, BENCH_DIR /tmp/bench-ingest-profile)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"
PORT=${BENCH_PORT:-55468}
WORK=${BENCH_DIR:-/tmp/bench-ingest-profile}

cleanup() {
    local rc=$?
    set +e
    cluster_stop
    rm -rf "$WORK"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cluster_start
create_roles
SO_EPOCH_START=$(stat -c %Y "$("$PG_BIN/pg_config" --pkglibdir)/realtime.so")
psql_q -f "$HERE/setup.sql" >/dev/null 2>&1 || die "setup.sql failed"
pin_extension
echo "realtime.so: $SO_SIZE, installed $(date -u -d "@$SO_EPOCH_START" '+%Y-%m-%d %H:%M:%S UTC')"
out=$(timeout 300 "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -h "$WORK" -p "$PORT" -U postgres -d postgres \
    -f "$HERE/micro.sql" 2>&1) || die "micro.sql failed: $out"
# Pair each \echo label with the "Time: X ms" that follows its DO block.
awk '
    /^Time: / { if (label != "") { t[label] = $2; order[++n] = label; label = "" } ; next }
    /^(DO|TRUNCATE)/ { next }
    { label = $0 }
    END {
        base = t["loop"] / 20000
        printf "%-52s %10s %12s\n", "per call, 20000 calls in one transaction", "us/call", "minus loop"
        for (i = 1; i <= n; i++) {
            l = order[i]
            if (l == "warm-up") continue
            printf "%-52s %10.1f %12.1f\n", l, 1000 * t[l] / 20000, 1000 * (t[l] / 20000 - base)
        }
    }' <<<"$out"
