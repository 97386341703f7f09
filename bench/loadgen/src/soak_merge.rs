//! `--mode merge` of soak lines (src/soak.rs): one report for the whole group. Counts add up;
//! per interval the members' histograms merge into that interval's latency percentiles; the
//! leader's samples give each server's RSS and CPU per interval. Derived here, for the goals:
//!
//! - memory per idle connection of each server: (RSS once all clients were subscribed and idle
//!   − RSS before the first connection) / the clients placed on it;
//! - RSS growth after warm-up: the servers' total RSS at the last sample over the first sample
//!   at or after the warm-up (the total, because clients move between relays when they
//!   reconnect; each server's own figures are there too);
//! - the worst interval p99 (live deliveries, send→recv) after warm-up;
//! - server CPU µs per delivery after warm-up (every delivery: live and replayed).
//!
//! Intervals after publishing ended (the drain) are shown but count for no goal.

use serde_json::{json, Value};

use crate::stats::{from_buckets, histogram, summary};

pub fn merge(lines: &[Value]) -> Result<Value, String> {
    let (size, leader) = crate::merge::group_of(lines)?;
    let interval = leader["interval_s"].as_f64().unwrap_or(10.0);
    let warmup = leader["warmup_s"].as_f64().unwrap_or(0.0);
    let run_end = warmup + leader["duration_s"].as_f64().unwrap_or(0.0);
    let sum = |f: &dyn Fn(&Value) -> u64| lines.iter().map(f).sum::<u64>();
    let r2 = |x: f64| (x * 100.0).round() / 100.0;

    // Verdict and placement, added up.
    let mut verdict = serde_json::Map::new();
    for (k, _) in leader["verdict"].as_object().into_iter().flatten() {
        verdict.insert(k.clone(), json!(sum(&|l| l["verdict"][k].as_u64().unwrap_or(0))));
    }
    let servers = leader["servers"].as_u64().unwrap_or(1) as usize;
    let by_server: Vec<u64> =
        (0..servers).map(|k| sum(&|l| l["conns_by_server"][k].as_u64().unwrap_or(0))).collect();
    let mut errors = std::collections::BTreeMap::<String, u64>::new();
    for l in lines {
        for key in ["errors", "setup_errors"] {
            for (k, v) in l[key].as_object().into_iter().flatten() {
                *errors.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
            }
        }
    }

    // Memory per idle connection, per server.
    let kb = |v: &Value, k: usize| v.get(k).and_then(Value::as_f64);
    let per_conn: Vec<Option<f64>> = (0..servers)
        .map(|k| {
            let (b, i) = (kb(&leader["baseline_rss_kb"], k)?, kb(&leader["idle_rss_kb"], k)?);
            (by_server[k] > 0).then(|| r2((i - b) / by_server[k] as f64))
        })
        .collect();

    // Intervals: merged latency, deliveries, the leader's samples around them.
    let samples = leader["samples"].as_array().cloned().unwrap_or_default();
    let count = lines.iter().map(|l| l["intervals"].as_array().map_or(0, Vec::len)).max().unwrap_or(0);
    let mut rows = Vec::new();
    let (mut worst_p99, mut cpu_after, mut del_after) = (0u64, 0.0f64, 0u64);
    for k in 0..count {
        let (mut live, mut ack) = (histogram(), histogram());
        let (mut live_n, mut rep_n) = (0u64, 0u64);
        for l in lines {
            if let Some(i) = l["intervals"].as_array().and_then(|a| a.get(k)) {
                from_buckets(&mut live, &i["live"]);
                from_buckets(&mut ack, &i["ack"]);
                live_n += i["live_n"].as_u64().unwrap_or(0);
                rep_n += i["replayed_n"].as_u64().unwrap_or(0);
            }
        }
        let (s0, s1) = (samples.get(k), samples.get(k + 1));
        let cpu = match (s0, s1) {
            (Some(a), Some(b)) => cpu_total(b).zip(cpu_total(a)).map(|(b, a)| b - a),
            _ => None,
        };
        let rss: Option<Vec<Value>> = s1.and_then(|s| s["rss_kb"].as_array().cloned());
        let after_warmup = k as f64 * interval >= warmup;
        let drain = k as f64 * interval >= run_end;
        if after_warmup && !drain && !live.is_empty() {
            worst_p99 = worst_p99.max(live.value_at_quantile(0.99));
        }
        if let (true, Some(c)) = (after_warmup && !drain && s1.is_some(), cpu) {
            cpu_after += c;
            del_after += live_n + rep_n;
        }
        let dps = (live_n + rep_n) as f64 / interval;
        rows.push(json!({
            "k": k,
            "from_s": r2(k as f64 * interval),
            "after_warmup": after_warmup,
            "drain": drain,
            "deliveries_per_s": dps.round(),
            "replayed": rep_n,
            "live_us": summary(&live),
            "ack_us": summary(&ack),
            "server_cpu_s": cpu.map(r2),
            "server_us_per_delivery": cpu.filter(|_| live_n + rep_n > 0).map(|c| r2(c * 1e6 / (live_n + rep_n) as f64)),
            "rss_kb_end": rss,
        }));
    }

    // RSS growth after warm-up, of the servers' total.
    let total_rss = |s: &Value| -> Option<f64> {
        let v = s["rss_kb"].as_array()?;
        v.iter().map(Value::as_f64).sum::<Option<f64>>()
    };
    let warm = samples.iter().find(|s| s["t_s"].as_f64().unwrap_or(0.0) + 0.5 * interval >= warmup);
    let last = samples.last();
    let growth = match (warm.and_then(total_rss), last.and_then(total_rss)) {
        (Some(a), Some(b)) if a > 0.0 => Some(r2((b - a) / a * 100.0)),
        _ => None,
    };
    let peak_growth = warm.and_then(|w| {
        let (a, t0) = (total_rss(w)?, w["t_s"].as_f64()?);
        let later = samples.iter().filter(|s| s["t_s"].as_f64().unwrap_or(0.0) >= t0);
        let peak = later.filter_map(total_rss).fold(0.0, f64::max);
        (a > 0.0).then(|| r2((peak - a) / a * 100.0))
    });
    let mut replayed = histogram();
    for l in lines {
        from_buckets(&mut replayed, &l["replayed_us"]);
    }

    let v = |k: &str| verdict.get(k).and_then(Value::as_u64).unwrap_or(0);
    let max_kb = per_conn.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
    Ok(json!({
        "label": leader["label"],
        "mode": "soak",
        "loadgen_processes": size,
        "servers": servers,
        "relay_pid": lines.iter().map(|l| l["relay_pid"].as_str().unwrap_or("")).find(|s| !s.is_empty()),
        "connections": sum(&|l| l["connections"].as_u64().unwrap_or(0)),
        "subscribed": sum(&|l| l["subscribed"].as_u64().unwrap_or(0)),
        "channels": leader["channels"],
        "rate": leader["rate"],
        "duration_s": leader["duration_s"],
        "warmup_s": warmup,
        "interval_s": interval,
        "reconnect_share": leader["reconnect_share"],
        "setup_s": lines.iter().filter_map(|l| l["setup_s"].as_f64()).fold(0.0, f64::max),
        "messages_scheduled": leader["messages_scheduled"],
        "messages_published": leader["messages_published"],
        "publish_errors": leader["publish_errors"],
        "publish_call_us": leader["publish_call_us"],
        "late_calls": leader["late_calls"],
        "verdict": Value::Object(verdict.clone()),
        "errors": errors,
        "conns_by_server": by_server,
        "baseline_rss_kb": leader["baseline_rss_kb"],
        "idle_rss_kb": leader["idle_rss_kb"],
        "kb_per_idle_connection": per_conn,
        "rss_growth_after_warmup_pct": growth,
        "rss_peak_growth_after_warmup_pct": peak_growth,
        "worst_interval_p99_us": worst_p99,
        "server_us_per_delivery": (del_after > 0).then(|| r2(cpu_after * 1e6 / del_after as f64)),
        "replayed_us": summary(&replayed),
        "loadgen_cpu_s": r2(lines.iter().filter_map(|l| l["cpu_s"]["loadgen"].as_f64()).sum()),
        "machine_busy_s": leader["cpu_s"]["machine_busy"],
        "machine_capacity_s": leader["cpu_s"]["machine_capacity"],
        "intervals": rows,
        "samples": samples,
        "goals": {
            "nothing_lost": v("missing") == 0 && v("resets") == 0,
            "nothing_doubled": v("duplicates") == 0,
            "rss_flat": growth.map(|g| g < 5.0),
            "kb_per_idle_connection_le_16": per_conn.iter().all(Option::is_some).then_some(max_kb <= 16.0),
            "p99_below_100ms": worst_p99 > 0 && worst_p99 < 100_000,
        },
    }))
}

/// The servers' cumulative CPU seconds in one sample.
fn cpu_total(s: &Value) -> Option<f64> {
    s["cpu_s"].as_array()?.iter().map(Value::as_f64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(index: u64, missing: u64, live: Value) -> Value {
        json!({
            "label": "soak", "mode": "soak", "group": {"index": index, "size": 2}, "servers": 2,
            "connections": 4, "subscribed": 4, "channels": 2, "interval_s": 10.0, "warmup_s": 10.0, "duration_s": 20.0,
            "verdict": {"missing": missing, "duplicates": 0, "resets": 0, "received": 10},
            "conns_by_server": [2, 2],
            "intervals": [
                {"k": 0, "live_n": 5, "replayed_n": 0, "live": [[1000, 5]], "ack": []},
                {"k": 1, "live_n": 5, "replayed_n": 1, "live": live, "ack": []},
            ],
            "baseline_rss_kb": if index == 0 { json!([1000, 2000]) } else { json!([]) },
            "idle_rss_kb": if index == 0 { json!([1040, 2060]) } else { json!([]) },
            "samples": if index == 0 { json!([
                {"t_s": 0.0, "rss_kb": [1000, 1000], "cpu_s": [0.0, 0.0]},
                {"t_s": 10.0, "rss_kb": [1100, 1100], "cpu_s": [1.0, 1.0]},
                {"t_s": 20.0, "rss_kb": [1120, 1100], "cpu_s": [1.5, 1.6]},
            ]) } else { json!([]) },
            "replayed_us": [[3000, 1]],
            "cpu_s": {"loadgen": 1.0, "machine_busy": 5.0, "machine_capacity": 40.0},
        })
    }

    #[test]
    fn soak_members_merge_into_goals() {
        let m = merge(&[member(1, 0, json!([[150000, 5]])), member(0, 2, json!([[2000, 5]]))]).unwrap();
        assert_eq!(m["verdict"]["missing"], 2);
        assert_eq!(m["goals"]["nothing_lost"], false);
        assert_eq!(m["goals"]["nothing_doubled"], true);
        // 40 and 60 kB over 4 clients each.
        assert_eq!(m["kb_per_idle_connection"], json!([10.0, 15.0]));
        assert_eq!(m["goals"]["kb_per_idle_connection_le_16"], true);
        // The warm-up's sample (t = 10 s, 2200 kB) against the last (2220 kB).
        assert_eq!(m["rss_growth_after_warmup_pct"], 0.91);
        // Interval 1 (after warm-up) holds a 150 ms delivery: the p99 goal fails.
        assert!(m["worst_interval_p99_us"].as_u64().unwrap() >= 149_000);
        assert_eq!(m["goals"]["p99_below_100ms"], false);
        // 1.1 s of server CPU over the 12 deliveries of interval 1.
        assert_eq!(m["server_us_per_delivery"], 91666.67);
        assert_eq!(m["intervals"][1]["deliveries_per_s"], 1.0);
    }
}
