//! The result of one run: one JSON line (for scripts) and a table (for people).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::json;

use crate::procstat::{Cpu, Probe};
use crate::publisher::Outcome;
use crate::stats::{buckets, summary, Recorder};

pub struct Report<'a> {
    pub label: &'a str,
    /// The server under test (`realtime`, `ws`, `socketio`).
    pub target: &'a str,
    pub pattern: &'a str,
    pub connections: usize,
    pub subscribed: usize,
    /// Channels with at least one subscriber.
    pub channels: usize,
    /// `--channels` (per-user: the channel of connection i is i mod this).
    pub channel_space: u64,
    pub rate: f64,
    pub batch: usize,
    pub duration: f64,
    pub warmup: f64,
    pub pad: i32,
    pub publishers: usize,
    pub setup_secs: f64,
    pub setup_errors: BTreeMap<String, u64>,
    pub measured_msgs: u64,
    pub outcome: &'a Outcome,
    pub expected: u64,
    pub rec: &'a Recorder,
    pub events: BTreeMap<String, u64>,
    pub window_secs: f64,
    pub cpu: Cpu,
    pub probe: &'a Probe,
    /// `(index, size)` when this process is one of a group (src/group.rs): the line then
    /// carries its histograms for `--mode merge`, and only index 0 published.
    pub group: Option<(usize, usize)>,
    /// (VmHWM, VmRSS) in kB.
    pub relay_rss: Option<(Option<u64>, Option<u64>)>,
    /// Whether the peak RSS was reset at the start of the window (else it is the lifetime peak).
    pub rss_reset: bool,
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

impl Report<'_> {
    fn missing(&self) -> i64 {
        self.expected as i64 - self.rec.deliveries as i64
    }

    fn deliveries_per_s(&self) -> f64 {
        self.rec.deliveries as f64 / self.duration
    }

    /// Server CPU µs per measured delivery (all servers of the run together).
    fn server_us_per_delivery(&self) -> Option<f64> {
        let cpu = self.cpu.relay?;
        (self.rec.deliveries > 0).then(|| (cpu * 1e6 / self.rec.deliveries as f64 * 100.0).round() / 100.0)
    }

    pub fn json(&self) -> String {
        let cpu = |x: Option<f64>| x.map(r2);
        let (peak, end) = self.relay_rss.unwrap_or((None, None));
        let (servers, watched) = self.cpu.maps(self.probe);
        let mut line = json!({
            "label": self.label,
            "pattern": self.pattern,
            "connections": self.connections,
            "subscribed": self.subscribed,
            "channels": self.channels,
            "channel_space": self.channel_space,
            "rate": self.rate,
            "batch": self.batch,
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "pad": self.pad,
            "publishers": self.publishers,
            "setup_s": r2(self.setup_secs),
            "setup_errors": self.setup_errors,
            "messages_scheduled": self.measured_msgs,
            "messages_published": self.outcome.published,
            "publish_errors": self.outcome.errors.snapshot(),
            "publish_call_us": summary(&self.outcome.call_us),
            "schedule_max_lag_us": self.outcome.max_lag_us,
            "late_calls": self.outcome.late_calls,
            "expected": self.expected,
            "deliveries": self.rec.deliveries,
            "missing": self.missing(),
            "deliveries_per_s": self.deliveries_per_s().round(),
            "latency_us": summary(&self.rec.send_to_recv),
            "ack_to_recv_us": summary(&self.rec.ack_to_recv),
            "delivered_before_ack": self.rec.before_ack,
            "frame_bytes_mean": self.rec.bytes.checked_div(self.rec.deliveries).unwrap_or(0),
            "frame_bytes": self.rec.bytes,
            "target": self.target,
            "errors": self.events,
            "window_s": r2(self.window_secs),
            "cpu_s": {
                "relay": cpu(self.cpu.relay),
                "loadgen": cpu(self.cpu.loadgen),
                "machine_busy": cpu(self.cpu.machine_busy),
                "machine_capacity": cpu(self.cpu.machine_total),
                "servers": servers,
                "watched": watched,
            },
            "server_us_per_delivery": self.server_us_per_delivery(),
            "relay_pid": self.probe.servers.join(","),
            "relay_rss_kb": {"peak": peak, "end": end, "peak_is_window": self.rss_reset},
        });
        if let Some((index, size)) = self.group {
            line["group"] = json!({"index": index, "size": size});
            line["hist"] = json!({
                "send_to_recv": buckets(&self.rec.send_to_recv),
                "ack_to_recv": buckets(&self.rec.ack_to_recv),
            });
        }
        line.to_string()
    }

    pub fn table(&self) -> String {
        let mut s = String::new();
        let h = &self.rec.send_to_recv;
        let a = &self.rec.ack_to_recv;
        let ms = |v: u64| v as f64 / 1000.0;
        let _ = writeln!(
            s,
            "== {} pattern={} subscribers={}/{} channels={} rate={}/s batch={} duration={}s pad={}",
            if self.label.is_empty() { "run" } else { self.label },
            self.pattern,
            self.subscribed,
            self.connections,
            self.channels,
            self.rate,
            self.batch,
            self.duration,
            self.pad
        );
        let _ = writeln!(
            s,
            "  setup        {:.1} s{}",
            self.setup_secs,
            if self.setup_errors.is_empty() {
                String::new()
            } else {
                format!("  errors {:?}", self.setup_errors)
            }
        );
        let _ = writeln!(
            s,
            "  published    {} of {} msgs  errors {:?}  call p50 {:.2} ms p99 {:.2} ms  max lag {:.1} ms ({} calls > 5 ms late)",
            self.outcome.published,
            self.measured_msgs + (self.warmup * self.rate).round() as u64,
            self.outcome.errors.snapshot(),
            ms(self.outcome.call_us.value_at_quantile(0.5)),
            ms(self.outcome.call_us.value_at_quantile(0.99)),
            ms(self.outcome.max_lag_us),
            self.outcome.late_calls
        );
        let _ = writeln!(
            s,
            "  deliveries   {} of {} expected (missing {})  {:.0}/s",
            self.rec.deliveries,
            self.expected,
            self.missing(),
            self.deliveries_per_s()
        );
        for (name, h) in [("send→recv", h), ("ack→recv ", a)] {
            if h.is_empty() {
                let _ = writeln!(s, "  {name}    (no deliveries)");
                continue;
            }
            let _ = writeln!(
                s,
                "  {name}    p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} ms",
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.9)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.max())
            );
        }
        let _ = writeln!(s, "  errors       {:?}", self.events);
        let pct =
            |x: Option<f64>| x.map_or("?".to_string(), |v| format!("{:.0}%", 100.0 * v / self.window_secs));
        let secs = |x: Option<f64>| x.map_or("?".to_string(), |v| format!("{v:.2} s"));
        let _ = writeln!(
            s,
            "  cpu ({:.1} s)  server {} ({} of one core, {} µs per delivery)  loadgen {} ({})  machine busy {} of {}",
            self.window_secs,
            secs(self.cpu.relay),
            pct(self.cpu.relay),
            self.server_us_per_delivery().map_or("?".to_string(), |v| format!("{v:.1}")),
            secs(self.cpu.loadgen),
            pct(self.cpu.loadgen),
            secs(self.cpu.machine_busy),
            secs(self.cpu.machine_total),
        );
        if let Some((peak, end)) = self.relay_rss {
            let mb = |v: Option<u64>| v.map_or("?".to_string(), |k| format!("{:.1} MB", k as f64 / 1024.0));
            let _ = write!(
                s,
                "  relay rss    peak {} ({})  end {}",
                mb(peak),
                if self.rss_reset { "during the window" } else { "since relay start" },
                mb(end)
            );
        }
        s
    }
}
