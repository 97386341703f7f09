//! The Overview's data: the relay's metrics registry read every second
//! ([`crate::metrics::Metrics::read`], the same values `GET /metrics` shows), turned into
//! per-second rates and latency percentiles over that second, and kept in a ring of the last
//! [`WINDOW`] samples (five minutes, a few tens of kilobytes). The console keeps no counters of
//! its own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::app::App;
use crate::metrics::Reading;

/// Samples kept: one a second for five minutes.
pub const WINDOW: usize = 300;
/// Time between samples.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One second of the relay's life.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Position in the ring's history (1, 2, ...): the page asks for samples after the last it has.
    pub seq: u64,
    /// Unix time in milliseconds.
    pub t_ms: u64,
    pub connections: u64,
    pub subscriptions: u64,
    pub channels: u64,
    pub presence_members: u64,
    /// Messages handed to the hub by the replication stream, per second (stored + ephemeral).
    pub dispatched: f64,
    /// Message frames queued to subscribers (live and resume replays), per second.
    pub frames: f64,
    pub publish_ok: f64,
    /// Publishes refused: unauthorized, no channel, too large, rate limited.
    pub publish_refused: f64,
    pub publish_error: f64,
    pub subscribes_allowed: f64,
    /// Subscribe checks denied or without a channel.
    pub subscribes_refused: f64,
    /// Commit → send latency percentiles over the second, in milliseconds (`None`: no frame).
    pub latency_ms: [Option<f64>; 3],
    pub lag_bytes: u64,
    pub streaming: bool,
    /// Pending webhook deliveries (`None`: webhooks off here, or not counted yet).
    pub webhook_queue: Option<i64>,
    pub webhook_ok: f64,
    pub webhook_retried: f64,
    pub webhook_failed: f64,
}

/// The percentiles of [`Sample::latency_ms`].
pub const PERCENTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// Series names (the registry's prefix included).
mod series {
    pub const CONNECTIONS: &str = "realtime_connections";
    pub const SUBSCRIPTIONS: &str = "realtime_subscriptions";
    pub const CHANNELS: &str = "realtime_channels";
    pub const PRESENCE_MEMBERS: &str = "realtime_presence_members";
    pub const DISPATCHED: &str = "realtime_messages_dispatched_total";
    pub const DELIVERED: &str = "realtime_messages_delivered_total";
    pub const PUBLISHES: &str = "realtime_publishes_total";
    pub const SUBSCRIBE_CHECKS: &str = "realtime_subscribe_checks_total";
    pub const COMMIT_TO_SEND: &str = "realtime_commit_to_send_seconds";
    pub const LAG: &str = "realtime_replication_lag_bytes";
    pub const STREAMING: &str = "realtime_replication_streaming";
    pub const WEBHOOK_QUEUE: &str = "realtime_webhook_queue_depth";
    pub const WEBHOOK_ATTEMPTS: &str = "realtime_webhook_attempts_total";
}

/// Publish outcomes counted as refusals (the client's request was not allowed).
const REFUSED: [&str; 4] = ["unauthorized", "not_found", "too_large", "rate_limited"];

/// The gauges of a reading.
pub fn gauges(r: &Reading) -> Gauges {
    let int = |name| r.value(name, &[]).unwrap_or(0.0).max(0.0) as u64;
    Gauges {
        connections: int(series::CONNECTIONS),
        subscriptions: int(series::SUBSCRIPTIONS),
        channels: int(series::CHANNELS),
        presence_members: int(series::PRESENCE_MEMBERS),
        lag_bytes: int(series::LAG),
        streaming: r.value(series::STREAMING, &[]).is_some_and(|v| v > 0.0),
        // -1 until the worker's first count; with webhooks off here it stays -1
        webhook_queue: r.value(series::WEBHOOK_QUEUE, &[]).filter(|v| *v >= 0.0).map(|v| v as i64),
    }
}

/// The gauges a sample and a relay's report show.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Gauges {
    pub connections: u64,
    pub subscriptions: u64,
    pub channels: u64,
    pub presence_members: u64,
    pub lag_bytes: u64,
    pub streaming: bool,
    pub webhook_queue: Option<i64>,
}

/// The sample for the `secs` seconds between two readings of the registry.
pub fn sample(prev: &Reading, cur: &Reading, secs: f64) -> Sample {
    let rate = |name: &str, labels: &[(&str, &str)]| {
        (cur.count(name, labels) - prev.count(name, labels)).max(0.0) / secs.max(1e-3)
    };
    let refused = REFUSED.iter().map(|o| rate(series::PUBLISHES, &[("outcome", o)])).sum();
    let mut latency_ms = [None; 3];
    if let (Some(before), Some(after)) =
        (prev.buckets(series::COMMIT_TO_SEND), cur.buckets(series::COMMIT_TO_SEND))
    {
        for (slot, q) in latency_ms.iter_mut().zip(PERCENTILES) {
            *slot = after.quantile_since(before, q).map(|s| s * 1000.0);
        }
    }
    let g = gauges(cur);
    Sample {
        seq: 0,
        t_ms: 0,
        connections: g.connections,
        subscriptions: g.subscriptions,
        channels: g.channels,
        presence_members: g.presence_members,
        dispatched: rate(series::DISPATCHED, &[]),
        frames: rate(series::DELIVERED, &[]),
        publish_ok: rate(series::PUBLISHES, &[("outcome", "ok")]),
        publish_refused: refused,
        publish_error: rate(series::PUBLISHES, &[("outcome", "error")]),
        subscribes_allowed: rate(series::SUBSCRIBE_CHECKS, &[("outcome", "allowed")]),
        subscribes_refused: rate(series::SUBSCRIBE_CHECKS, &[("outcome", "denied")])
            + rate(series::SUBSCRIBE_CHECKS, &[("outcome", "not_found")]),
        latency_ms,
        lag_bytes: g.lag_bytes,
        streaming: g.streaming,
        webhook_queue: g.webhook_queue,
        webhook_ok: rate(series::WEBHOOK_ATTEMPTS, &[("outcome", "succeeded")]),
        webhook_retried: rate(series::WEBHOOK_ATTEMPTS, &[("outcome", "retried")]),
        webhook_failed: rate(series::WEBHOOK_ATTEMPTS, &[("outcome", "failed")]),
    }
}

/// The last [`WINDOW`] samples.
#[derive(Debug, Default)]
pub struct Ring {
    inner: Mutex<(VecDeque<Sample>, u64)>,
}

impl Ring {
    /// Appends `s` (numbering it), dropping the oldest beyond the window.
    pub fn push(&self, mut s: Sample) {
        let mut guard = self.inner.lock().expect("ring lock");
        let (samples, seq) = &mut *guard;
        *seq += 1;
        s.seq = *seq;
        if samples.len() == WINDOW {
            samples.pop_front();
        }
        samples.push_back(s);
    }

    /// The samples with `seq > after`, oldest first.
    pub fn after(&self, after: u64) -> Vec<Sample> {
        let guard = self.inner.lock().expect("ring lock");
        guard.0.iter().filter(|s| s.seq > after).copied().collect()
    }
}

/// Samples the relay every [`INTERVAL`] until it shuts down.
pub async fn run(app: Arc<App>, ring: Arc<Ring>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut prev: Option<(Instant, Reading)> = None;
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let cur = app.metrics.read();
        if let Some((then, before)) = &prev {
            let mut s = sample(before, &cur, now.duration_since(*then).as_secs_f64());
            s.t_ms = unix_millis();
            ring.push(s);
        }
        prev = Some((now, cur));
    }
}

/// Unix time in milliseconds.
fn unix_millis() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
}

/// The samples as one array per series.
pub fn columns(samples: &[Sample]) -> Map<String, Value> {
    type Get = fn(&Sample) -> Value;
    let series: [(&str, Get); 22] = [
        ("seq", |s| s.seq.into()),
        ("t", |s| s.t_ms.into()),
        ("connections", |s| s.connections.into()),
        ("subscriptions", |s| s.subscriptions.into()),
        ("channels", |s| s.channels.into()),
        ("presence_members", |s| s.presence_members.into()),
        ("dispatched", |s| round(s.dispatched)),
        ("frames", |s| round(s.frames)),
        ("publish_ok", |s| round(s.publish_ok)),
        ("publish_refused", |s| round(s.publish_refused)),
        ("publish_error", |s| round(s.publish_error)),
        ("subscribes_allowed", |s| round(s.subscribes_allowed)),
        ("subscribes_refused", |s| round(s.subscribes_refused)),
        ("latency_p50_ms", |s| s.latency_ms[0].map_or(Value::Null, round)),
        ("latency_p90_ms", |s| s.latency_ms[1].map_or(Value::Null, round)),
        ("latency_p99_ms", |s| s.latency_ms[2].map_or(Value::Null, round)),
        ("lag_bytes", |s| s.lag_bytes.into()),
        ("streaming", |s| s.streaming.into()),
        ("webhook_queue", |s| s.webhook_queue.map_or(Value::Null, Value::from)),
        ("webhook_ok", |s| round(s.webhook_ok)),
        ("webhook_retried", |s| round(s.webhook_retried)),
        ("webhook_failed", |s| round(s.webhook_failed)),
    ];
    series
        .iter()
        .map(|(name, get)| (name.to_string(), Value::Array(samples.iter().map(get).collect())))
        .collect()
}

/// Three decimals are plenty for a chart and keep the JSON short.
fn round(v: f64) -> Value {
    json!((v * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{CheckOutcome, Kind, Metrics, PublishOutcome};

    #[test]
    fn samples_are_per_second_rates_between_two_readings_of_the_registry() {
        let m = Metrics::new().unwrap();
        m.hub.stored_dispatched.inc_by(100);
        m.hub.delivered_persisted.inc_by(10);
        m.pull_gauge("connections", "Open connections.", Arc::new(|| 7.0)).unwrap();
        let prev = m.read();
        m.hub.stored_dispatched.inc_by(40);
        m.hub.ephemeral_dispatched.inc_by(10);
        m.hub.delivered_persisted.inc_by(60);
        m.hub.delivered_replay.inc_by(40);
        m.hub.frames_queued.inc_by(1000); // presence frames included: not message frames
        for _ in 0..6 {
            m.published(Kind::Stored, PublishOutcome::Ok);
        }
        m.published(Kind::Ephemeral, PublishOutcome::Unauthorized);
        m.published(Kind::Stored, PublishOutcome::RateLimited);
        m.published(Kind::Stored, PublishOutcome::Error);
        use CheckOutcome::{Allowed, Denied, Error, NotFound};
        for outcome in [Allowed, Allowed, Allowed, Denied, NotFound, Error] {
            m.subscribe_checked(outcome, Duration::from_millis(1));
        }
        m.webhooks.succeeded.inc_by(4);
        for _ in 0..50 {
            m.hub.commit_to_send.observe(0.0003); // (0, 0.5 ms]
            m.hub.commit_to_send.observe(0.004); // (2.5 ms, 5 ms]
        }
        let s = sample(&prev, &m.read(), 2.0);
        assert_eq!((s.connections, s.dispatched, s.frames), (7, 25.0, 50.0));
        assert_eq!((s.publish_ok, s.publish_refused, s.publish_error), (3.0, 1.0, 0.5));
        assert_eq!((s.subscribes_allowed, s.subscribes_refused), (1.5, 1.0));
        assert_eq!((s.webhook_ok, s.webhook_retried), (2.0, 0.0));
        let p50 = s.latency_ms[0].unwrap();
        assert!((p50 - 0.5).abs() < 1e-9, "p50 at the top of the first bucket: {p50}");
        let p90 = s.latency_ms[1].unwrap();
        assert!((p90 - 4.5).abs() < 1e-9, "p90 interpolated in (2.5, 5] ms: {p90}");
        assert_eq!(s.webhook_queue, None, "not counted yet (-1)");
        m.webhooks.queue_depth.set(3);
        let again = sample(&m.read(), &m.read(), 1.0);
        assert_eq!((again.webhook_queue, again.dispatched, again.latency_ms), (Some(3), 0.0, [None; 3]));
    }

    #[test]
    fn the_ring_keeps_the_window_and_answers_after_a_sequence_number() {
        let ring = Ring::default();
        for i in 0..(WINDOW as u64 + 5) {
            ring.push(Sample { connections: i, ..Sample::default() });
        }
        let all = ring.after(0);
        assert_eq!(all.len(), WINDOW);
        assert_eq!((all[0].seq, all[0].connections), (6, 5), "the five oldest were dropped");
        let tail = ring.after(WINDOW as u64 + 3);
        assert_eq!(tail.iter().map(|s| s.seq).collect::<Vec<_>>(), [WINDOW as u64 + 4, WINDOW as u64 + 5]);
        let cols = columns(&tail);
        assert_eq!(cols["connections"], json!([WINDOW as u64 + 3, WINDOW as u64 + 4]));
        assert_eq!(cols["latency_p99_ms"], json!([null, null]));
    }
}
