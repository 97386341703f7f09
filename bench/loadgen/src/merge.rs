//! `--mode merge`: one fan-out report from the JSON lines of a group of processes
//! (src/group.rs), in the same format as a single process's line, so the scripts summarise it
//! the same way. Counts and CPU seconds of the load generators add up; the histograms are
//! merged bucket by bucket (each member's line carries them), so the percentiles are those of
//! every delivery; the publisher's fields come from the leader (index 0); a server's CPU is
//! counted once however many members read it (the largest reading of each pid).

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::{json, Map, Value};

use crate::stats::{from_buckets, histogram, summary};
use crate::Args;

pub fn run(args: Args) -> Result<(), String> {
    let mut text = String::new();
    if args.inputs.is_empty() {
        std::io::stdin().read_to_string(&mut text).map_err(|e| format!("stdin: {e}"))?;
    } else {
        for p in &args.inputs {
            text += &std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            text.push('\n');
        }
    }
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Value>(l).map_err(|e| format!("not a JSON line: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    if lines.is_empty() {
        return Err("no JSON lines to merge".into());
    }
    let merged = if lines[0]["mode"] == "soak" { crate::soak_merge::merge(&lines)? } else { merge(&lines)? };
    println!("{merged}");
    Ok(())
}

/// A group's size and its leader's line (index 0), once the lines are known to be one
/// complete group.
pub fn group_of(lines: &[Value]) -> Result<(u64, &Value), String> {
    let size = lines
        .first()
        .and_then(|l| l["group"]["size"].as_u64())
        .ok_or("the first line is not from a group")?;
    if lines.len() as u64 != size {
        return Err(format!("{} lines for a group of {size}", lines.len()));
    }
    let leader =
        lines.iter().find(|l| l["group"]["index"] == 0).ok_or("no line from the group's leader (index 0)")?;
    Ok((size, leader))
}

/// Merges the lines of one group run.
pub fn merge(lines: &[Value]) -> Result<Value, String> {
    let (size, leader) = group_of(lines)?;
    let sum = |key: &str| lines.iter().map(|l| l[key].as_u64().unwrap_or(0)).sum::<u64>();
    let sum_f = |f: &dyn Fn(&Value) -> Option<f64>| {
        let v: Vec<f64> = lines.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| (v.iter().sum::<f64>() * 100.0).round() / 100.0)
    };
    let (mut s2r, mut a2r) = (histogram(), histogram());
    for l in lines {
        from_buckets(&mut s2r, &l["hist"]["send_to_recv"]);
        from_buckets(&mut a2r, &l["hist"]["ack_to_recv"]);
    }
    let servers = max_by_key(lines, "servers");
    let watched = max_by_key(lines, "watched");
    let relay_cpu = servers.values().filter_map(Value::as_f64).reduce(|a, b| a + b);
    let deliveries = sum("deliveries");
    let expected = sum("expected");
    let duration = leader["duration_s"].as_f64().unwrap_or(1.0);
    let r2 = |x: f64| (x * 100.0).round() / 100.0;

    let mut out = leader.clone();
    let o = out.as_object_mut().expect("a JSON object");
    o.remove("hist");
    o.remove("group");
    for key in ["connections", "subscribed", "delivered_before_ack", "frame_bytes"] {
        o.insert(key.into(), json!(sum(key)));
    }
    o.insert("expected".into(), json!(expected));
    o.insert("deliveries".into(), json!(deliveries));
    o.insert("missing".into(), json!(expected as i64 - deliveries as i64));
    o.insert("deliveries_per_s".into(), json!((deliveries as f64 / duration).round()));
    o.insert("frame_bytes_mean".into(), json!(sum("frame_bytes").checked_div(deliveries).unwrap_or(0)));
    o.insert("latency_us".into(), summary(&s2r));
    o.insert("ack_to_recv_us".into(), summary(&a2r));
    o.insert("setup_s".into(), json!(lines.iter().filter_map(|l| l["setup_s"].as_f64()).fold(0.0, f64::max)));
    o.insert("setup_errors".into(), add_maps(lines, "setup_errors"));
    o.insert("errors".into(), add_maps(lines, "errors"));
    if leader["pattern"] == "per-user" {
        // Members subscribe consecutive global indexes: the channels in use are the first
        // min(channel space, subscribers) ones (all of them unless setups failed).
        let space = leader["channel_space"].as_u64().unwrap_or(u64::MAX);
        o.insert("channels".into(), json!(space.min(sum("subscribed"))));
    }
    let cpu = &leader["cpu_s"];
    o.insert(
        "cpu_s".into(),
        json!({
            "relay": relay_cpu.map(r2),
            "loadgen": sum_f(&|l| l["cpu_s"]["loadgen"].as_f64()),
            "machine_busy": cpu["machine_busy"],
            "machine_capacity": cpu["machine_capacity"],
            "servers": Value::Object(servers),
            "watched": Value::Object(watched),
        }),
    );
    o.insert(
        "server_us_per_delivery".into(),
        json!(relay_cpu.filter(|_| deliveries > 0).map(|c| r2(c * 1e6 / deliveries as f64))),
    );
    o.insert("loadgen_processes".into(), json!(size));
    o.insert(
        "per_process".into(),
        json!(lines
            .iter()
            .map(|l| json!({
                "index": l["group"]["index"],
                "subscribed": l["subscribed"],
                "deliveries": l["deliveries"],
                "missing": l["missing"],
                "p99_us": l["latency_us"]["p99"],
                "loadgen_cpu_s": l["cpu_s"]["loadgen"],
            }))
            .collect::<Vec<_>>()),
    );
    Ok(out)
}

/// `{key: value}` maps of `cpu_s.<field>` over the lines, the largest value of each key.
fn max_by_key(lines: &[Value], field: &str) -> Map<String, Value> {
    let mut m: BTreeMap<String, f64> = BTreeMap::new();
    for l in lines {
        for (k, v) in l["cpu_s"][field].as_object().into_iter().flatten() {
            if let Some(x) = v.as_f64() {
                let e = m.entry(k.clone()).or_insert(x);
                *e = e.max(x);
            }
        }
    }
    m.into_iter().map(|(k, v)| (k, json!(v))).collect()
}

/// Counter maps (`{"close 4009": 3}`) added up over the lines.
fn add_maps(lines: &[Value], field: &str) -> Value {
    let mut m: BTreeMap<String, u64> = BTreeMap::new();
    for l in lines {
        for (k, v) in l[field].as_object().into_iter().flatten() {
            *m.entry(k.clone()).or_default() += v.as_u64().unwrap_or(0);
        }
    }
    json!(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(index: u64, deliveries: u64, expected: u64, hist: Value, loadgen: f64, relay: f64) -> Value {
        json!({
            "label": "x", "pattern": "shared", "duration_s": 2.0, "channels": 1,
            "connections": 10, "subscribed": 10, "deliveries": deliveries, "expected": expected,
            "delivered_before_ack": 1, "frame_bytes": deliveries * 100,
            "messages_published": if index == 0 { 5 } else { 0 },
            "setup_s": index as f64, "setup_errors": {}, "errors": {"close 4009": 1},
            "latency_us": {}, "hist": {"send_to_recv": hist, "ack_to_recv": []},
            "cpu_s": {"loadgen": loadgen, "machine_busy": 1.0, "machine_capacity": 4.0,
                      "servers": {"77": relay}, "watched": {"pg": relay / 2.0}},
            "group": {"index": index, "size": 2},
        })
    }

    #[test]
    fn members_add_up_and_their_histograms_merge() {
        let a = member(0, 40, 50, json!([[1000, 30], [5000, 10]]), 0.5, 1.0);
        let b = member(1, 50, 50, json!([[2000, 50]]), 0.25, 1.5);
        let m = merge(&[b, a]).unwrap();
        assert_eq!(m["deliveries"], 90);
        assert_eq!(m["missing"], 10);
        assert_eq!(m["deliveries_per_s"], 45.0);
        assert_eq!(m["messages_published"], 5, "the publisher's fields are the leader's");
        assert_eq!(m["latency_us"]["count"], 90);
        assert_eq!(m["latency_us"]["max"].as_u64().map(|v| v / 100), Some(50));
        assert_eq!(m["errors"]["close 4009"], 2);
        assert_eq!(m["frame_bytes_mean"], 100);
        assert_eq!(m["cpu_s"]["loadgen"], 0.75);
        // One server read by both members: counted once, at its larger reading.
        assert_eq!(m["cpu_s"]["relay"], 1.5);
        assert_eq!(m["server_us_per_delivery"], 16666.67);
        assert_eq!(m["setup_s"], 1.0);
        assert!(m.get("hist").is_none() && m.get("group").is_none());
    }

    #[test]
    fn an_incomplete_group_is_an_error() {
        let a = member(0, 1, 1, json!([]), 0.1, 0.1);
        assert!(merge(&[a]).unwrap_err().contains("1 lines for a group of 2"));
        let b = member(1, 1, 1, json!([]), 0.1, 0.1);
        assert!(merge(&[b.clone(), b]).unwrap_err().contains("leader"));
    }
}
