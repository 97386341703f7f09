# The climbing ladder of the fan-out comparisons between our relay's transports and protocols
# (bench/transports, bench/supabase): the fan-out shape of bench/fanout/run.sh, its rules, and
# the report lines. Sourced after bench/loadgen/lib.sh, not run.
#
# Each shape climbs a ladder of publish rates. At each step every target still climbing runs
# once per round, targets in an order rotated per round (interleaved); a target passes the step
# when the median over its rounds has p99 < P99_LIMIT_US (send→recv) and no missing delivery,
# and stops climbing at its first failing step. Ratios: one target's best passing deliveries/s
# over another's, from the same run.
#
# The caller runs parse_mode and ladder_settings (or sets ROUNDS, T, WARMUP, CLIMB_BUDGET
# itself), and sets TARGETS, RAW, and CLIMB_START=$SECONDS before the first climb.

P99_LIMIT_US=${P99_LIMIT_US:-50000}

# The ladder's settings for $MODE (after parse_mode), each overridden by its BENCH_* variable:
# rounds per step and their length, the two shapes' sizes and publish rates, whether the report
# is recorded, and the time after which no new step starts.
ladder_settings() {
    if [ "$MODE" = smoke ]; then
        ROUNDS=${BENCH_ROUNDS:-1} T=${BENCH_T:-1.5} WARMUP=0.5
        SHARED_SUBS=${BENCH_SHARED_SUBS:-200} SHARED_RATES=${BENCH_SHARED_RATES:-"50"}
        USER_SUBS=${BENCH_USER_SUBS:-200} USER_CHANNELS=${BENCH_USER_CHANNELS:-100}
        USER_RATES=${BENCH_USER_RATES:-"500"} RECORD=${BENCH_RECORD:-0}
        CLIMB_BUDGET=${BENCH_BUDGET:-150}
    else
        ROUNDS=${BENCH_ROUNDS:-5} T=${BENCH_T:-5} WARMUP=1
        SHARED_SUBS=${BENCH_SHARED_SUBS:-500} SHARED_RATES=${BENCH_SHARED_RATES:-"10 25 50 100 200 300 400 600"}
        USER_SUBS=${BENCH_USER_SUBS:-2000} USER_CHANNELS=${BENCH_USER_CHANNELS:-1000}
        USER_RATES=${BENCH_USER_RATES:-"1000 2000 4000 8000"} RECORD=${BENCH_RECORD:-1}
        CLIMB_BUDGET=${BENCH_BUDGET:-1800}
    fi
}
declare -A BEST STEPS CLIMBING FIRST_STEP
STOPPED_EARLY=""

# Whether a label's step passed: median p99 < limit and median missing == 0.
step_passes() {
    local p99 miss
    p99=$(field_median "$1" .latency_us.p99)
    miss=$(field_median "$1" .missing)
    [ "$p99" != - ] && awk -v p="$p99" -v m="$miss" -v l="$P99_LIMIT_US" 'BEGIN { exit !(p < l && m <= 0) }'
}

# usage: climb SHAPE RATES -- LOADGEN ARGS (without --rate). Sets BEST[SHAPE,target] to the label
# of the highest passing step, STEPS[SHAPE] to every label run and CLIMBING[SHAPE] to the
# targets that never failed.
climb() {
    local shape=$1 rates=$2 rate r t label line climbing
    shift 3
    climbing=$TARGETS
    for rate in $rates; do
        [ -n "${climbing// /}" ] || break
        if [ $((SECONDS - CLIMB_START)) -gt "$CLIMB_BUDGET" ]; then
            log "time budget reached; $shape stops before rate $rate"
            STOPPED_EARLY+="$shape at $rate/s ($climbing still climbing); "
            break
        fi
        [ -n "${FIRST_STEP[$shape]:-}" ] || FIRST_STEP[$shape]="$shape-$rate"
        for ((r = 1; r <= ROUNDS; r++)); do
            # shellcheck disable=SC2046
            for t in $(rotate $((r - 1)) $climbing); do
                use_target "$t"
                label="$shape-$rate-$t"
                line=$(loadgen_run "$label" --rate "$rate" --duration "$T" --warmup "$WARMUP" --drain 3 "$@")
                log "$label round $r: $(jq -r '"\(.deliveries_per_s)/s missing \(.missing) p50 \(.latency_us.p50)µs p99 \(.latency_us.p99)µs server cpu \(.cpu_s.relay)s loadgen cpu \(.cpu_s.loadgen)s \(.frame_bytes_mean) B/frame"' <<<"$line")"
            done
        done
        local still=""
        for t in $climbing; do
            label="$shape-$rate-$t"
            STEPS[$shape]+="$label "
            if step_passes "$label"; then
                BEST[$shape,$t]=$label
                still+="$t "
            else
                log "$label fails (median p99 ≥ $((P99_LIMIT_US / 1000)) ms or deliveries missing); $t stops climbing $shape"
            fi
        done
        climbing=$still
    done
    CLIMBING[$shape]=$climbing
}

# Whether TARGET never failed on SHAPE (its best step is a lower bound).
never_failed() { [[ " ${CLIMBING[$1]:-} " == *" $2 "* ]]; }

best_dps() {
    local b=${BEST[$1,$2]:-}
    if [ -n "$b" ]; then field_median "$b" .deliveries_per_s; else echo -; fi
}

# Server CPU µs per delivery of a label (median over rounds).
cpu_us_per_delivery() {
    jq -r --arg l "$1" 'select(.label == $l and .deliveries > 0 and .cpu_s.relay != null)
        | .cpu_s.relay * 1000000 / .deliveries' "$RAW" | median
}

# usage: best_line SHAPE WHAT — each target's best passing step.
best_line() {
    local shape=$1 what=$2 t b open
    for t in $TARGETS; do
        b=${BEST[$shape,$t]:-}
        if [ -z "$b" ]; then
            echo "- $what, **$t**: no step passed (p99 < $((P99_LIMIT_US / 1000)) ms, nothing missing)."
            continue
        fi
        open=""
        never_failed "$shape" "$t" && open=" (never failed: the ladder ended first, so this is a lower bound)"
        echo "- $what, **$t**: **$(field_median "$b" .deliveries_per_s) deliveries/s** at \`$b\`" \
            "(p99 $(us_to_ms "$(field_median "$b" .latency_us.p99)") ms," \
            "$(cpu_us_per_delivery "$b" | awk '{ if ($1 == "-") print "-"; else printf "%.1f", $1 }') µs of server CPU per delivery)$open."
    done
}

# usage: ratio_line SHAPE WHAT NUM DEN GOAL — NUM's best passing deliveries/s over DEN's,
# against the goal "≥ GOAL".
ratio_line() {
    local shape=$1 what=$2 num=$3 den=$4 goal=$5 a b
    a=$(best_dps "$shape" "$num")
    b=$(best_dps "$shape" "$den")
    if [ "$a" = - ] || [ "$b" = - ]; then
        echo "- $what: $num / $den: not measurable (one of them passed no step)."
    elif never_failed "$shape" "$num" && never_failed "$shape" "$den"; then
        echo "- $what: $num / $den: not measurable (both passed every step: the ladder was too short)."
    else
        local bound=""
        never_failed "$shape" "$num" && bound="≥ "
        never_failed "$shape" "$den" && bound="≤ "
        # A lower bound (≥) settles "met" only; an upper bound (≤) settles "not met" only.
        awk -v a="$a" -v b="$b" -v n="$num" -v d="$den" -v g="$goal" -v w="$what" -v bd="$bound" 'BEGIN {
            r = a / b
            if (bd == "") verdict = (r >= g) ? "met" : "not met"
            else if (bd == "≥ ") verdict = (r >= g) ? "met" : "not settled: a lower bound"
            else verdict = (r < g) ? "not met" : "not settled: an upper bound"
            printf "- %s: %s / %s = **%s%.2fx** (goal ≥ %sx: %s)\n", w, n, d, bd, r, g, verdict }'
    fi
}

# usage: cpu_line SHAPE — at the lowest step of a shape (every target ran it, same load): each
# target's server CPU per delivery, and its ratio to the first target's.
cpu_line() {
    local shape=$1 first=${FIRST_STEP[$1]:-} t base v out
    [ -n "$first" ] || return 0
    set -- $TARGETS
    base=$(cpu_us_per_delivery "$first-$1")
    out="- $shape, server CPU per delivery at \`$first\` (same load for all):"
    for t in $TARGETS; do
        v=$(cpu_us_per_delivery "$first-$t")
        out+=" $t $(awk -v v="$v" 'BEGIN { if (v == "-") print "-"; else printf "%.1f µs", v }')"
        if [ "$t" != "$1" ] && [ "$v" != - ] && [ "$base" != - ]; then
            out+=" ($(awk -v a="$v" -v b="$base" -v n="$1" 'BEGIN { printf "%.2fx %s", a / b, n }'))"
        fi
        out+=";"
    done
    echo "${out%;}."
}
