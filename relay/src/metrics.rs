//! `GET /metrics`: the relay's state in the Prometheus text format.
//!
//! Nothing is counted twice: values that already live in atomics elsewhere (open connections in
//! [`App::connections`], the hub's [`crate::hub::HubStats`], the replication stream's
//! [`ReplicationStatus`]) are read at scrape time into a [`Snapshot`]; only what had no counter
//! yet — subscribe checks and publishes by outcome — is counted here, in [`Counters`] (lock-free
//! atomics, one per label combination). [`render`] turns a snapshot into the exposition text
//! with the `prometheus` crate, using a fresh registry per scrape, so it is a pure function with
//! unit tests.
//!
//! Series (all prefixed `realtime_`): `connections`, `channels`, `subscriptions` (gauges);
//! `messages_dispatched_total{kind="stored|ephemeral"}`, `frames_queued_total`,
//! `slow_consumer_frames_dropped_total`, `slow_consumer_closes_total`;
//! `replication_streaming` (0/1), `replication_reconnects_total`,
//! `replication_last_commit_lsn`, `replication_acked_lsn` (gauges, LSN as a number),
//! `replication_decode_errors_total`; `subscribe_checks_total{outcome}` (denials are
//! `outcome="denied"`); `publishes_total{kind,outcome}` (one per publish request; a batch
//! counts once); `messages_delivered_total{path="persisted|ephemeral|replay"}` (frames queued
//! to subscribers: live stored messages, live ephemeral ones, resume replays);
//! `replication_lag_bytes` (WAL the server has that the relay has not handled yet).
//!
//! Histograms (seconds, buckets [`LATENCY_BUCKETS`], see `metrics_histogram.rs`):
//! `commit_to_send_seconds` (the transaction's commit timestamp on the primary to the frame
//! being queued to a subscriber, one observation per queued frame; see
//! [`crate::hub::HubStats::commit_to_send`]) and `subscribe_check_seconds` (the RLS permission
//! check of a subscribe request, one round trip to Postgres).
//!
//! Presence: `presence_members` (gauge: members over all channels, every relay's view),
//! `presence_frames_sent_total`, `presence_dead_relays_reaped_total`.
//!
//! Webhooks: `webhook_attempts_total{outcome="succeeded|retried|failed"}`,
//! `webhook_queue_depth` (gauge), `webhook_attempt_duration_seconds` (histogram, the common
//! buckets).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::pg::authz::Access;
use crate::pg::publish::PublishError;
use crate::pg::replication::ReplicationStatus;
use crate::server::App;

#[path = "metrics_histogram.rs"]
mod histogram;
pub use histogram::{since_pg_timestamp, Histogram, HistogramSnapshot, LATENCY_BUCKETS};

/// Why the metrics could not be rendered (a programming error: a bad name or a duplicate).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("prometheus: {0}")]
    Prometheus(#[from] prometheus::Error),
}

/// Outcome labels of `realtime_subscribe_checks_total`.
pub const SUBSCRIBE_OUTCOMES: [&str; 4] = ["allowed", "denied", "not_found", "error"];
/// Kind labels of publishes and dispatched messages.
pub const KINDS: [&str; 2] = ["stored", "ephemeral"];
/// Outcome labels of `realtime_publishes_total`.
pub const PUBLISH_OUTCOMES: [&str; 6] =
    ["ok", "unauthorized", "not_found", "too_large", "rate_limited", "error"];

/// Outcome labels of `realtime_webhook_attempts_total`.
pub const WEBHOOK_OUTCOMES: [&str; 3] = ["succeeded", "retried", "failed"];

/// Stored (persisted) or ephemeral publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stored = 0,
    Ephemeral = 1,
}

impl Kind {
    /// `persist` flag of a publish frame to its kind.
    pub fn of_persist(persist: bool) -> Self {
        if persist {
            Kind::Stored
        } else {
            Kind::Ephemeral
        }
    }
}

/// How a publish ended, as a label index into [`PUBLISH_OUTCOMES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    Ok = 0,
    Unauthorized = 1,
    NotFound = 2,
    TooLarge = 3,
    RateLimited = 4,
    Error = 5,
}

impl From<&PublishError> for PublishOutcome {
    fn from(e: &PublishError) -> Self {
        match e {
            PublishError::Unauthorized { .. } => PublishOutcome::Unauthorized,
            PublishError::NotFound(_) => PublishOutcome::NotFound,
            PublishError::TooLarge { .. } => PublishOutcome::TooLarge,
            PublishError::Pg(_) => PublishOutcome::Error,
        }
    }
}

/// Counters that exist nowhere else. Lock-free; one per label combination.
#[derive(Debug, Default)]
pub struct Counters {
    subscribe_checks: [AtomicU64; 4],
    publishes: [[AtomicU64; 6]; 2],
    /// Duration of subscribe permission (RLS) checks.
    subscribe_check_time: Histogram,
    /// Frames queued to subscribers by resume replays.
    replayed: AtomicU64,
}

impl Counters {
    /// Counts one subscribe permission check by its result (`None`: the check itself failed)
    /// and how long it took.
    pub fn subscribe_checked(&self, access: Option<Access>, took: std::time::Duration) {
        self.subscribe_check_time.observe(took);
        let i = match access {
            Some(Access::Allowed) => 0,
            Some(Access::Denied) => 1,
            Some(Access::NotFound) => 2,
            None => 3,
        };
        self.subscribe_checks[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one frame queued by a resume replay.
    pub fn replayed(&self) {
        self.replayed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one publish request.
    pub fn published(&self, kind: Kind, outcome: PublishOutcome) {
        self.publishes[kind as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed publish and hands the error back (for `map_err`).
    pub fn publish_failed(&self, kind: Kind, e: PublishError) -> PublishError {
        self.published(kind, PublishOutcome::from(&e));
        e
    }

    /// Counts a publish result and hands it back.
    pub fn record<T>(&self, kind: Kind, r: Result<T, PublishError>) -> Result<T, PublishError> {
        match r {
            Ok(v) => {
                self.published(kind, PublishOutcome::Ok);
                Ok(v)
            }
            Err(e) => Err(self.publish_failed(kind, e)),
        }
    }
}

/// Every value `/metrics` shows, read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub connections: u64,
    pub channels: u64,
    pub subscriptions: u64,
    pub stored_dispatched: u64,
    pub ephemeral_dispatched: u64,
    pub frames_queued: u64,
    /// Of `frames_queued`, frames of ephemeral messages.
    pub frames_queued_ephemeral: u64,
    /// Frames queued by resume replays.
    pub frames_replayed: u64,
    pub lag_bytes: u64,
    pub commit_to_send: HistogramSnapshot,
    pub subscribe_check_time: HistogramSnapshot,
    pub frames_dropped_slow: u64,
    pub slow_closes: u64,
    pub streaming: bool,
    pub reconnects: u64,
    pub last_commit_lsn: u64,
    pub acked_lsn: u64,
    pub decode_errors: u64,
    /// Indexed like [`SUBSCRIBE_OUTCOMES`].
    pub subscribe_checks: [u64; 4],
    /// Indexed like [`KINDS`] × [`PUBLISH_OUTCOMES`].
    pub publishes: [[u64; 6]; 2],
    pub presence_members: u64,
    pub presence_frames: u64,
    pub dead_relays_reaped: u64,
    /// Webhook attempts by outcome, indexed like [`WEBHOOK_OUTCOMES`].
    pub webhook_outcomes: [u64; 3],
    /// Pending webhook deliveries at the last count (-1: not counted yet or webhooks disabled).
    pub webhook_queue_depth: i64,
    pub webhook_attempt_time: HistogramSnapshot,
}

impl Snapshot {
    /// Reads the relay's atomics.
    pub fn of(app: &App) -> Self {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let hub = &app.hub.stats;
        let messages = load(&hub.messages);
        let ephemeral = load(&hub.ephemeral);
        let mut s = Snapshot {
            connections: app.connections.load(Ordering::Relaxed) as u64,
            channels: hub.channels.load(Ordering::Relaxed) as u64,
            subscriptions: hub.subscriptions.load(Ordering::Relaxed) as u64,
            stored_dispatched: messages.saturating_sub(ephemeral),
            ephemeral_dispatched: ephemeral,
            frames_queued: load(&hub.delivered),
            frames_queued_ephemeral: load(&hub.delivered_ephemeral),
            frames_replayed: load(&app.metrics.replayed),
            commit_to_send: hub.commit_to_send.snapshot(),
            subscribe_check_time: app.metrics.subscribe_check_time.snapshot(),
            frames_dropped_slow: load(&hub.dropped_slow),
            slow_closes: load(&hub.slow_closes),
            presence_members: app.hub.presence.total_members() as u64,
            presence_frames: load(&app.hub.presence.frames_sent),
            dead_relays_reaped: load(&app.presence.reaped),
            ..Snapshot::default()
        };
        s.read_replication(&app.replication);
        s.webhook_queue_depth = -1;
        if let Some(w) = &app.webhooks {
            let w = &w.stats;
            s.webhook_outcomes = [load(&w.succeeded), load(&w.retried), load(&w.failed)];
            s.webhook_queue_depth = w.queue_depth.load(Ordering::Relaxed);
            s.webhook_attempt_time = w.attempt_time.snapshot();
        }
        for (i, c) in app.metrics.subscribe_checks.iter().enumerate() {
            s.subscribe_checks[i] = load(c);
        }
        for (k, row) in app.metrics.publishes.iter().enumerate() {
            for (o, c) in row.iter().enumerate() {
                s.publishes[k][o] = load(c);
            }
        }
        s
    }

    fn read_replication(&mut self, r: &ReplicationStatus) {
        self.streaming = r.is_streaming();
        self.reconnects = r.reconnects();
        self.last_commit_lsn = r.last_commit_lsn();
        self.acked_lsn = r.acked_lsn.load(Ordering::Relaxed);
        self.decode_errors = r.decode_errors.load(Ordering::Relaxed);
        self.lag_bytes = r.lag_bytes();
    }
}

/// The snapshot in the Prometheus text exposition format.
pub fn render(s: &Snapshot) -> Result<String, MetricsError> {
    let registry = Registry::new_custom(Some("realtime".into()), None)?;
    let gauge = |name: &str, help: &str, v: u64| -> Result<(), MetricsError> {
        let g = IntGauge::new(name, help)?;
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
        registry.register(Box::new(g))?;
        Ok(())
    };
    let counter = |name: &str, help: &str, v: u64| -> Result<(), MetricsError> {
        let c = IntCounter::new(name, help)?;
        c.inc_by(v);
        registry.register(Box::new(c))?;
        Ok(())
    };
    gauge("connections", "Open WebSocket connections.", s.connections)?;
    gauge("channels", "Channels with at least one subscriber on this relay.", s.channels)?;
    gauge("subscriptions", "Subscriptions (channel x connection) on this relay.", s.subscriptions)?;
    let dispatched = IntCounterVec::new(
        Opts::new("messages_dispatched_total", "Messages handed to the hub by the replication stream."),
        &["kind"],
    )?;
    dispatched.with_label_values(&["stored"]).inc_by(s.stored_dispatched);
    dispatched.with_label_values(&["ephemeral"]).inc_by(s.ephemeral_dispatched);
    registry.register(Box::new(dispatched))?;
    counter("frames_queued_total", "Message frames queued to subscribers.", s.frames_queued)?;
    let delivered = IntCounterVec::new(
        Opts::new(
            "messages_delivered_total",
            "Message frames queued to subscribers by path (persisted and ephemeral: live; replay: resume).",
        ),
        &["path"],
    )?;
    delivered
        .with_label_values(&["persisted"])
        .inc_by(s.frames_queued.saturating_sub(s.frames_queued_ephemeral));
    delivered.with_label_values(&["ephemeral"]).inc_by(s.frames_queued_ephemeral);
    delivered.with_label_values(&["replay"]).inc_by(s.frames_replayed);
    registry.register(Box::new(delivered))?;
    counter(
        "slow_consumer_frames_dropped_total",
        "Frames not queued because the subscriber's send queue was full.",
        s.frames_dropped_slow,
    )?;
    counter(
        "slow_consumer_closes_total",
        "Connections closed with 4009 because their send queue overflowed.",
        s.slow_closes,
    )?;
    gauge("replication_streaming", "1 while the replication stream is connected.", u64::from(s.streaming))?;
    counter("replication_reconnects_total", "Replication sessions lost and retried.", s.reconnects)?;
    gauge(
        "replication_last_commit_lsn",
        "Commit LSN of the last transaction dispatched (0 before the first).",
        s.last_commit_lsn,
    )?;
    gauge("replication_acked_lsn", "Highest LSN acknowledged to the replication slot.", s.acked_lsn)?;
    gauge(
        "replication_lag_bytes",
        "WAL bytes the server reported that this relay has not handled yet (0 when caught up).",
        s.lag_bytes,
    )?;
    counter(
        "replication_decode_errors_total",
        "Rows or logical messages that could not be decoded and were skipped.",
        s.decode_errors,
    )?;
    let checks = IntCounterVec::new(
        Opts::new("subscribe_checks_total", "Subscribe permission checks by outcome (denials: denied)."),
        &["outcome"],
    )?;
    for (label, v) in SUBSCRIBE_OUTCOMES.iter().zip(s.subscribe_checks) {
        checks.with_label_values(&[label]).inc_by(v);
    }
    registry.register(Box::new(checks))?;
    let publishes = IntCounterVec::new(
        Opts::new("publishes_total", "Publish requests (frames and HTTP; a batch counts once) by outcome."),
        &["kind", "outcome"],
    )?;
    for (kind, row) in KINDS.iter().zip(s.publishes) {
        for (outcome, v) in PUBLISH_OUTCOMES.iter().zip(row) {
            publishes.with_label_values(&[kind, outcome]).inc_by(v);
        }
    }
    registry.register(Box::new(publishes))?;
    gauge("presence_members", "Presence members over all channels (the shared view).", s.presence_members)?;
    counter("presence_frames_sent_total", "Presence event frames queued to subscribers.", s.presence_frames)?;
    counter(
        "presence_dead_relays_reaped_total",
        "Relays this relay declared dead (heartbeat older than the timeout).",
        s.dead_relays_reaped,
    )?;

    let webhooks = IntCounterVec::new(
        Opts::new("webhook_attempts_total", "Webhook attempts by outcome (succeeded, retried, failed)."),
        &["outcome"],
    )?;
    for (label, v) in WEBHOOK_OUTCOMES.iter().zip(s.webhook_outcomes) {
        webhooks.with_label_values(&[label]).inc_by(v);
    }
    registry.register(Box::new(webhooks))?;
    let depth = IntGauge::new(
        "webhook_queue_depth",
        "Pending webhook deliveries (refreshed every 5 s; -1 before the first count).",
    )?;
    depth.set(s.webhook_queue_depth);
    registry.register(Box::new(depth))?;
    let mut text = TextEncoder::new().encode_to_string(&registry.gather())?;
    s.webhook_attempt_time.render(
        &mut text,
        "webhook_attempt_duration_seconds",
        "Webhook attempt latency (request sent to response read).",
    );
    s.commit_to_send.render(
        &mut text,
        "commit_to_send_seconds",
        "Commit timestamp of the transaction (primary's clock) to its frame queued to a subscriber (per frame).",
    );
    s.subscribe_check_time.render(
        &mut text,
        "subscribe_check_seconds",
        "Duration of subscribe permission (RLS) checks in Postgres.",
    );
    Ok(text)
}

/// `GET /metrics`.
pub async fn handler(State(app): State<Arc<App>>) -> Response {
    match render(&Snapshot::of(&app)) {
        Ok(text) => {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot render metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
    }

    #[test]
    fn every_series_is_rendered_with_its_value() {
        let mut s = Snapshot {
            connections: 3,
            channels: 2,
            subscriptions: 5,
            stored_dispatched: 7,
            ephemeral_dispatched: 1,
            streaming: true,
            last_commit_lsn: 0x1_0000_0028,
            presence_members: 9,
            presence_frames: 11,
            dead_relays_reaped: 1,
            ..Snapshot::default()
        };
        s.subscribe_checks[1] = 4;
        s.frames_queued = 9;
        s.frames_queued_ephemeral = 2;
        s.frames_replayed = 5;
        s.lag_bytes = 64;
        let h = Histogram::default();
        h.observe_n(std::time::Duration::from_millis(4), 3);
        s.commit_to_send = h.snapshot();
        s.publishes[Kind::Stored as usize][PublishOutcome::TooLarge as usize] = 2;
        let text = render(&s).unwrap();
        for (series, value) in [
            ("realtime_connections", "3"),
            ("realtime_channels", "2"),
            ("realtime_subscriptions", "5"),
            ("realtime_messages_dispatched_total{kind=\"stored\"}", "7"),
            ("realtime_messages_dispatched_total{kind=\"ephemeral\"}", "1"),
            ("realtime_replication_streaming", "1"),
            ("realtime_presence_members", "9"),
            ("realtime_presence_frames_sent_total", "11"),
            ("realtime_presence_dead_relays_reaped_total", "1"),
            ("realtime_replication_last_commit_lsn", "4294967336"),
            ("realtime_subscribe_checks_total{outcome=\"denied\"}", "4"),
            ("realtime_subscribe_checks_total{outcome=\"allowed\"}", "0"),
            ("realtime_publishes_total{kind=\"stored\",outcome=\"too_large\"}", "2"),
            ("realtime_publishes_total{kind=\"ephemeral\",outcome=\"ok\"}", "0"),
            ("realtime_slow_consumer_closes_total", "0"),
            ("realtime_messages_delivered_total{path=\"persisted\"}", "7"),
            ("realtime_messages_delivered_total{path=\"ephemeral\"}", "2"),
            ("realtime_messages_delivered_total{path=\"replay\"}", "5"),
            ("realtime_replication_lag_bytes", "64"),
            ("realtime_commit_to_send_seconds_bucket{le=\"0.0025\"}", "0"),
            ("realtime_commit_to_send_seconds_bucket{le=\"0.005\"}", "3"),
            ("realtime_commit_to_send_seconds_count", "3"),
            ("realtime_subscribe_check_seconds_count", "0"),
        ] {
            let l = line(&text, series).unwrap_or_else(|| panic!("{series} missing in\n{text}"));
            assert_eq!(l, format!("{series} {value}"));
        }
        assert!(text.contains("# TYPE realtime_connections gauge"));
        assert!(text.contains("# TYPE realtime_frames_queued_total counter"));
        assert!(text.contains("# TYPE realtime_commit_to_send_seconds histogram"));
        assert!(text.contains("# TYPE realtime_subscribe_check_seconds histogram"));
    }

    #[test]
    fn counters_count_publishes_and_checks_by_label() {
        let c = Counters::default();
        c.subscribe_checked(Some(Access::Denied), std::time::Duration::from_millis(3));
        c.subscribe_checked(None, std::time::Duration::from_millis(3));
        let r: Result<(), _> = c.record(Kind::Ephemeral, Err(PublishError::NotFound("x".into())));
        assert!(r.is_err());
        c.record(Kind::Stored, Ok(())).unwrap();
        c.published(Kind::of_persist(true), PublishOutcome::RateLimited);
        assert_eq!(c.subscribe_checks[1].load(Ordering::Relaxed), 1);
        assert_eq!(c.subscribe_checks[3].load(Ordering::Relaxed), 1);
        assert_eq!(c.publishes[1][PublishOutcome::NotFound as usize].load(Ordering::Relaxed), 1);
        assert_eq!(c.publishes[0][0].load(Ordering::Relaxed), 1);
        assert_eq!(c.publishes[0][4].load(Ordering::Relaxed), 1);
        assert_eq!(c.subscribe_check_time.snapshot().count(), 2);
    }

    #[test]
    fn huge_lsn_does_not_wrap_negative() {
        let text = render(&Snapshot { acked_lsn: u64::MAX, ..Snapshot::default() }).unwrap();
        let value = line(&text, "realtime_replication_acked_lsn").unwrap().split(' ').nth(1).unwrap();
        assert!(value.parse::<f64>().unwrap() > 9.0e18, "{value}");
    }
}
