# The markdown report of run.sh (sourced after the runs; reads $RAW and the run's settings).

# Per-round tpcb drop in percent beside one load: 100 * (1 - with/alone), one per line.
tpcb_drops() { ratios tpcb "$1" alone "$TPCB_CLIENTS" | awk '{ printf "%.2f\n", 100 * (1 - $1) }'; }

# "12.3 % (10.1 – 14.0)" for percentages on stdin.
fmt_pct() { fmt_stats '%.1f %% (%.1f – %.1f)'; }

# Top wait events of the pgbench backends of one variant at $SAMPLE_AT clients, as
# "CPU 61 %, LWLock:WALWrite 20 %, ..." (share of all samples of active backends).
wait_summary() {
    local phase=$1 variant=$2 files
    files=$(ls "$WORK"/waits."$phase"."$variant"."$SAMPLE_AT".* 2>/dev/null || true)
    [ -n "$files" ] || {
        echo "–"
        return
    }
    # shellcheck disable=SC2086
    cat $files | awk -F'|' -v who="$3" '$1 == who { n++; c[$2]++ }
        END {
            if (n == 0) { print "no samples"; exit }
            for (k in c) printf "%d\t%s\n", c[k], k
        }' | sort -rn | head -n 5 | awk -F'\t' -v total="$(cat $files | grep -c "^$3|")" '
        { printf "%s%s %.0f %%", (NR > 1 ? ", " : ""), $2, 100 * $1 / total }
        END { printf " (%d samples)\n", total }'
}

report() {
    local commit dirty cpu mem kernel pgver so_time c
    commit=${COMMIT_START:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}
    dirty=${DIRTY_START:-$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l)}
    cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    kernel=$(uname -r)
    pgver=$("$PG_BIN/postgres" --version | awk '{ print $3 }')
    local so so_epoch start_epoch reinstalled="" so_kind
    if file "$WORK/lib/realtime.so" 2>/dev/null | grep -q 'with debug_info'; then
        so_kind="a debug build (with debug info)"
    else
        so_kind="a release build (no debug info)"
    fi
    so="$("$PG_BIN/pg_config" --pkglibdir)/realtime.so"
    so_time=$(date -u -d "@${SO_EPOCH_START:-0}" '+%Y-%m-%d %H:%M:%S UTC' 2>/dev/null || echo "?")
    so_epoch=$(stat -c %Y "$so" 2>/dev/null || echo 0)
    start_epoch=${SO_EPOCH_START:-$(date -d "$START_DATE" +%s 2>/dev/null || echo 0)}
    if [ -z "${SO_SIZE:-}" ] && [ "$so_epoch" -gt "$start_epoch" ] && [ "$start_epoch" -gt 0 ]; then
        reinstalled=" **realtime.so was replaced during this run** (someone ran \`make install-ext\`):"
        reinstalled+=" pgbench connections opened after that loaded the new library; treat the figures with care."
    fi

    echo "## Ingest ($MODE) — $START_DATE, commit $commit$([ "$dirty" -gt 0 ] && echo " + $dirty uncommitted files")"
    echo
    echo "- Machine: $(nproc) cores ($cpu), $mem RAM, Linux $kernel. Shared with other builds and"
    echo "  tests while it ran: load average $START_LOAD at the start, $END_LOAD at the end."
    echo "- Postgres $pgver, throwaway cluster: fsync=on, synchronous_commit=on, wal_level=logical,"
    echo "  shared_buffers=256MB, max_connections=200, everything else default. Extension realtime"
    echo "  $EXT_VERSION (realtime.so of $so_time, ${SO_SIZE:-?}, $so_kind, pinned: see README). Relay: $RELAY_BUILD, running (slot"
    echo "  \`realtime_bench\`) during the ingest and tpcb phases, for every variant.$reinstalled"
    if [ "${RELAY_RESTARTS:-0}" -gt 0 ]; then
        echo "  **The relay died $RELAY_RESTARTS time(s) and was restarted** ($RELAY_RESTART_NOTES); the run"
        echo "  before each restart had no (or a partial) relay."
    fi
    echo "- Method: $ROUNDS interleaved rounds × ${T} s per run; in each round every client count runs"
    echo "  the three variants in an order rotated per round; CHECKPOINT before every run; the tables"
    echo "  are truncated at the start of every round; after every run the relay is given time to"
    echo "  confirm all WAL. Figures are medians over rounds with (min–max); ratios are computed per"
    echo "  round (both runs in the same window) and then the median taken. A LISTEN session"
    echo "  consumed the notifications ($NOTIFICATIONS received for $NOTIFY_TX notify inserts)."
    local envs
    envs=$(env | grep '^BENCH_' | sort | tr '\n' ' ' || true)
    echo "- Command: \`$envs$( [ "$MODE" = smoke ] && echo "bench/ingest/run.sh --smoke" || echo "make bench-ingest")\`"
    echo "  (bench/ingest/run.sh; T=$T, rounds=$ROUNDS, clients=$CLIENTS, tpcb rounds=$TPCB_ROUNDS)."
    echo
    echo "### Insert throughput, tps: median (min–max) of $ROUNDS rounds"
    echo
    echo "| clients | plain INSERT | realtime.publish | INSERT + pg_notify trigger | publish / plain | notify / plain |"
    echo "|---:|---:|---:|---:|---:|---:|"
    for c in $CLIENTS; do
        printf '| %s | %s | %s | %s | %s | %s |\n' "$c" \
            "$(vals ingest plain "$c" | fmt_tps)" "$(vals ingest publish "$c" | fmt_tps)" \
            "$(vals ingest notify "$c" | fmt_tps)" \
            "$(ratios ingest publish plain "$c" | fmt_ratio)" "$(ratios ingest notify plain "$c" | fmt_ratio)"
    done

    if [ "$NORELAY_ROUNDS" -gt 0 ]; then
        echo
        echo "### Relay stopped: publish vs plain at $NORELAY_C clients, $NORELAY_ROUNDS rounds"
        echo
        echo "| relay | plain INSERT | realtime.publish | publish / plain |"
        echo "|---|---:|---:|---:|"
        printf '| stopped (extension only) | %s | %s | %s |\n' "$(vals norelay plain $NORELAY_C | fmt_tps)" \
            "$(vals norelay publish $NORELAY_C | fmt_tps)" "$(ratios norelay publish plain $NORELAY_C | fmt_ratio)"
        printf '| running (from the table above) | %s | %s | %s |\n' "$(vals ingest plain $NORELAY_C | fmt_tps)" \
            "$(vals ingest publish $NORELAY_C | fmt_tps)" "$(ratios ingest publish plain $NORELAY_C | fmt_ratio)"
    fi

    if [ "$TPCB_ROUNDS" -gt 0 ]; then
        echo
        echo "### tpcb-like ($TPCB_CLIENTS clients, scale 10) alone and beside an 8-client insert load, $TPCB_ROUNDS rounds"
        echo
        echo "| concurrent load | tpcb-like tps | tpcb drop vs alone (same round) | the load's own tps |"
        echo "|---|---:|---:|---:|"
        printf '| none | %s | – | – |\n' "$(vals tpcb alone $TPCB_CLIENTS | fmt_tps)"
        for v in plain publish notify; do
            printf '| %s | %s | %s | %s |\n' "$v" "$(vals tpcb "$v" $TPCB_CLIENTS | fmt_tps)" \
                "$(tpcb_drops "$v" | fmt_pct)" "$(vals tpcb-load "$v" $TPCB_CLIENTS | fmt_tps)"
        done
    fi

    echo
    echo "### Wait events at $SAMPLE_AT clients (share of 0.5 s samples of active pgbench backends)"
    echo
    for v in plain publish notify; do
        echo "- $v: $(wait_summary ingest "$v" client)"
    done
    echo "- walsender during publish: $(wait_summary ingest publish walsender)"

    echo
    echo "### Goals"
    echo
    local r32 drop_pub drop_plain plain32
    r32=$(ratios ingest publish plain 32 | median_of)
    if [ "$r32" != "-" ]; then
        echo "- publish ≥ 0.9x plain INSERT at 32 clients: **$(awk -v r="$r32" 'BEGIN { print (r >= 0.9 ? "met" : "missed") }')**" \
            "(median $(printf '%.2f' "$r32")x, $(ratios ingest publish plain 32 | fmt_ratio | sed 's/^[^(]*//'))."
    else
        echo "- publish ≥ 0.9x plain INSERT at 32 clients: not measured in this mode."
    fi
    if [ "$TPCB_ROUNDS" -gt 0 ]; then
        drop_pub=$(tpcb_drops publish | median_of)
        drop_plain=$(tpcb_drops plain | median_of)
        echo "- tpcb drop < 10 % beside the publish load: **$(awk -v d="$drop_pub" 'BEGIN { print (d < 10 ? "met" : "missed") }')**" \
            "(median $(printf '%.1f' "$drop_pub") %; beside the plain-insert load: $(printf '%.1f' "$drop_plain") %," \
            "so publish adds $(awk -v a="$drop_pub" -v b="$drop_plain" 'BEGIN { printf "%+.1f", a - b }') points over a plain insert)."
    fi
    echo "- Noise: across rounds, plain INSERT ranged"
    for c in $CLIENTS; do
        vals ingest plain "$c" | stats | awk -v c="$c" '{ printf "  %s–%s tps at %s clients (max/min %.1fx);\n", int($2), int($3), c, ($2 > 0 ? $3 / $2 : 0) }'
    done
    echo "  every ratio above pairs runs of the same round."

    echo
    echo "### Commands (every figure is the median of the runs of one of these)"
    echo
    echo '```'
    awk -F'\t' '!seen[$1 FS $8]++ { printf "%-9s %s\n", $1 ":", $8 }' "$RAW"
    echo '```'
    echo
    echo "<details><summary>All runs (phase, round, variant, clients, tps, latency ms, relay catch-up s)</summary>"
    echo
    echo '```'
    cut -f1-7 "$RAW"
    echo '```'
    echo "</details>"
}
