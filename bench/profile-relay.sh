#!/usr/bin/env bash
# Profiles the relay under one scenario's smoke run with valgrind --tool=callgrind (perf cannot
# count instructions on these VMs: `perf stat -e instructions true` says <not supported>). The
# relay runs ~50x slower under callgrind, so the scenario's own figures mean nothing; the profile
# says where the relay's instructions go under that workload.
#
#   bench/profile-relay.sh fanout|subscribe|latency      (env settings pass through to the scenario)
#
# Writes $BENCH_PROFILE_DIR (/tmp/bench-profile-<scenario>): callgrind.out.<pid>, inclusive.txt
# and self.txt (the top functions by inclusive and by self cost, from callgrind_annotate).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
NAME=profile
# shellcheck source=lib.sh
. "$HERE/lib.sh"

scenario=${1:-}
case "$scenario" in
    fanout | subscribe | latency) ;;
    *) die "usage: bench/profile-relay.sh fanout|subscribe|latency" ;;
esac
command -v valgrind >/dev/null || die "valgrind is required (apt-get install -y valgrind)"
OUT=${BENCH_PROFILE_DIR:-/tmp/bench-profile-$scenario}
rm -rf "$OUT"
mkdir -p "$OUT"
build_binaries
cat >"$OUT/relay-under-callgrind" <<WRAPPER
#!/bin/sh
case " \$* " in *" --help "*) exec "$RELAY_BIN" "\$@" ;; esac
exec valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out.%p" "$RELAY_BIN" "\$@"
WRAPPER
chmod +x "$OUT/relay-under-callgrind"
log "running bench/$scenario/run.sh --smoke with the relay under callgrind"
BENCH_RELAY_BIN="$OUT/relay-under-callgrind" BENCH_LOADGEN_BIN="$LOADGEN" BENCH_TARGETS=realtime \
    RELAY_STOP_WAIT=120 BENCH_RECORD=0 "$ROOT/bench/$scenario/run.sh" --smoke >"$OUT/scenario.log" 2>&1 ||
    log "the scenario exited with an error under the profiler (see $OUT/scenario.log); using what was profiled"
shopt -s nullglob
files=("$OUT"/callgrind.out.*)
[ ${#files[@]} -gt 0 ] || die "no callgrind output in $OUT (see $OUT/scenario.log)"
# The largest output is the relay's serving run (earlier ones may be short starts).
main=$(ls -S "${files[@]}" | head -n 1)
{ callgrind_annotate --inclusive=yes "$main" 2>/dev/null || true; } | head -n 70 >"$OUT/inclusive.txt" || true
{ callgrind_annotate "$main" 2>/dev/null || true; } | head -n 50 >"$OUT/self.txt" || true
log "profile: $main; top functions in $OUT/inclusive.txt and $OUT/self.txt"
