//! The relay's metrics: one `prometheus` registry, made once at start-up ([`Metrics::new`]),
//! with every series registered in it; `GET /metrics` only encodes it.
//!
//! * **Counted where they happen**: counters and histograms are `prometheus` handles (shared
//!   atomics, cheap to clone) held by the code that counts: the hub ([`HubMetrics`]), the
//!   services (subscribe checks, publishes, replays), the webhook worker ([`WebhookMetrics`]).
//! * **Read where they live**: values the relay keeps anyway for its own logic (open
//!   connections, replication positions, presence members) are [`Pulled`] series, registered
//!   once with a reader the server wires up ([`Metrics::pull_gauge`], [`Metrics::pull_counter`]).
//! * **Read back** by code that wants a figure ([`Metrics::read`], a [`Reading`]): the admin
//!   console samples the registry, it keeps no counters of its own.
//!
//! Series (all prefixed `realtime_`): `connections`, `channels`, `subscriptions` (gauges);
//! `messages_dispatched_total{kind="stored|ephemeral"}`, `frames_queued_total` (every frame
//! dispatch queued, presence included), `messages_delivered_total{path="persisted|ephemeral|
//! replay"}` (message frames: live stored, live ephemeral, resume replays),
//! `slow_consumer_frames_dropped_total`, `catch_ups_total`, `slow_consumer_closes_total`,
//! `resumes_total{path="memory|log"}` (resumes the hub answered from memory because nothing was
//! missed, and resumes that read the log);
//! `replication_streaming` (0/1), `replication_reconnects_total`, `replication_last_commit_lsn`,
//! `replication_acked_lsn`, `replication_lag_bytes`, `replication_decode_errors_total`,
//! `replication_large_transactions_total`, `replication_large_transaction_ephemeral_dropped_total`,
//! `replication_forged_messages_total{prefix="broadcast|presence|channels|keys|other"}` (`realtime:`
//! logical messages dropped because their seal is missing or does not verify);
//! `subscribe_checks_total{outcome="allowed|denied|not_found|error"}` (checks run in Postgres),
//! `subscribe_checks_cached_total` (subscribes allowed by a grant remembered from one),
//! `permission_rechecks_total{outcome="allowed|denied|not_found|error"}` (one per subscription
//! re-checked), `subscriptions_revoked_total{reason="denied|not_found|unverified"}`,
//! `publishes_total{kind,outcome}` (one per publish request; a batch counts once);
//! `presence_members`, `presence_frames_sent_total`, `presence_dead_relays_reaped_total`;
//! `webhook_attempts_total{outcome="succeeded|retried|failed"}`, `webhook_queue_depth`.
//! Histograms (seconds, [`LATENCY_BUCKETS`]): `commit_to_send_seconds` (the transaction's
//! commit timestamp on the primary to its frame queued to a subscriber, one observation per
//! queued frame), `subscribe_check_seconds`, `webhook_attempt_duration_seconds`.
//!
//! Row-level security of table changes (Supabase `postgres_changes`, [`VisibilityMetrics`]):
//! `visibility_checks_total{outcome="ok|error"}` (round trips of `realtime.visible_rows`, a
//! binding's or a batch's), `visibility_identities_checked_total` (identities asked about over
//! all of them), `visibility_rows_hidden_total` (a change an identity wanted and its policies
//! hid, once per identity and change), `visibility_bindings_ended_total` (bindings ended: the
//! check failed, SELECT revoked, or a subscriber fell behind further than can be read back), `visibility_check_seconds`.

mod pulled;
mod read;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub use pulled::{Pulled, Reader};
pub use read::{Buckets, Reading};

/// Upper bounds (`le`, seconds) of every latency histogram; `+Inf` follows implicitly.
pub const LATENCY_BUCKETS: [f64; 16] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Microseconds between 1970-01-01 and 2000-01-01, the Postgres epoch of pgoutput timestamps.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

/// A series could not be made or registered (a programming error: a bad or duplicate name).
#[derive(Debug, thiserror::Error)]
#[error("metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Stored (persisted) or ephemeral publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Stored,
    Ephemeral,
}

impl Kind {
    /// `persist` flag of a publish to its kind.
    pub fn of_persist(persist: bool) -> Self {
        if persist {
            Kind::Stored
        } else {
            Kind::Ephemeral
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Stored => "stored",
            Kind::Ephemeral => "ephemeral",
        }
    }
}

/// How a publish ended (label of `realtime_publishes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    Ok,
    Unauthorized,
    NotFound,
    TooLarge,
    RateLimited,
    Error,
}

impl PublishOutcome {
    const ALL: [PublishOutcome; 6] = [
        PublishOutcome::Ok,
        PublishOutcome::Unauthorized,
        PublishOutcome::NotFound,
        PublishOutcome::TooLarge,
        PublishOutcome::RateLimited,
        PublishOutcome::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            PublishOutcome::Ok => "ok",
            PublishOutcome::Unauthorized => "unauthorized",
            PublishOutcome::NotFound => "not_found",
            PublishOutcome::TooLarge => "too_large",
            PublishOutcome::RateLimited => "rate_limited",
            PublishOutcome::Error => "error",
        }
    }
}

/// Why a re-check ended a subscription (label of `realtime_subscriptions_revoked_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The role may no longer see the channel.
    Denied,
    /// No enabled channel row matches any more.
    NotFound,
    /// The permission could not be confirmed (database errors) for longer than the grace.
    Unverified,
}

impl Revoked {
    const ALL: [Revoked; 3] = [Revoked::Denied, Revoked::NotFound, Revoked::Unverified];

    fn label(self) -> &'static str {
        match self {
            Revoked::Denied => "denied",
            Revoked::NotFound => "not_found",
            Revoked::Unverified => "unverified",
        }
    }
}

/// How a subscribe permission check ended (label of `realtime_subscribe_checks_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    Allowed,
    Denied,
    NotFound,
    Error,
}

impl CheckOutcome {
    const ALL: [CheckOutcome; 4] =
        [CheckOutcome::Allowed, CheckOutcome::Denied, CheckOutcome::NotFound, CheckOutcome::Error];

    fn label(self) -> &'static str {
        match self {
            CheckOutcome::Allowed => "allowed",
            CheckOutcome::Denied => "denied",
            CheckOutcome::NotFound => "not_found",
            CheckOutcome::Error => "error",
        }
    }
}

/// What the hub counts.
#[derive(Clone, Debug)]
pub struct HubMetrics {
    pub stored_dispatched: IntCounter,
    pub ephemeral_dispatched: IntCounter,
    /// Every frame dispatch queued (messages and presence).
    pub frames_queued: IntCounter,
    pub delivered_persisted: IntCounter,
    pub delivered_ephemeral: IntCounter,
    pub delivered_replay: IntCounter,
    pub dropped_slow: IntCounter,
    pub catch_ups: IntCounter,
    pub slow_closes: IntCounter,
    pub commit_to_send: Histogram,
    pub channels: IntGauge,
    pub subscriptions: IntGauge,
    pub presence_frames: IntCounter,
    /// Resumes that missed nothing, answered without reading the log.
    pub resumes_from_memory: IntCounter,
    /// Resumes that read the log (replay window, count, replay).
    pub resumes_from_log: IntCounter,
}

/// What the webhook worker counts.
#[derive(Clone, Debug)]
pub struct WebhookMetrics {
    pub succeeded: IntCounter,
    pub retried: IntCounter,
    pub failed: IntCounter,
    /// Pending deliveries at the last count (-1: not counted yet).
    pub queue_depth: IntGauge,
    pub attempt_time: Histogram,
}

/// What the per-row visibility checks of table changes count.
#[derive(Clone, Debug)]
pub struct VisibilityMetrics {
    pub checks_ok: IntCounter,
    pub checks_failed: IntCounter,
    pub identities: IntCounter,
    pub rows_hidden: IntCounter,
    pub bindings_ended: IntCounter,
    pub check_time: Histogram,
}

impl VisibilityMetrics {
    /// Counts one check of `identities` identities that took `took`.
    pub fn checked(&self, ok: bool, identities: usize, took: Duration) {
        self.check_time.observe(took.as_secs_f64());
        self.identities.inc_by(identities as u64);
        let outcome = if ok { &self.checks_ok } else { &self.checks_failed };
        outcome.inc();
    }
}

/// Every series of the relay, registered once in one registry.
pub struct Metrics {
    registry: Registry,
    pub hub: HubMetrics,
    pub webhooks: WebhookMetrics,
    pub visibility: VisibilityMetrics,
    subscribe_checks: IntCounterVec,
    /// Subscribes allowed by a remembered grant, without a check in Postgres.
    pub subscribe_checks_cached: IntCounter,
    pub subscribe_check_time: Histogram,
    publishes: IntCounterVec,
    rechecks: IntCounterVec,
    revoked: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency(registry: &Registry, name: &str, help: &str) -> Result<Histogram, MetricsError> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()))?;
    registry.register(Box::new(h.clone()))?;
    Ok(h)
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, MetricsError> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

impl Metrics {
    /// Makes the registry and registers every series counted in the relay (the pulled ones are
    /// added by whoever owns their values).
    pub fn new() -> Result<Arc<Self>, MetricsError> {
        let r = Registry::new_custom(Some("realtime".into()), None)?;
        let dispatched = counter_vec(
            &r,
            "messages_dispatched_total",
            "Messages handed to the hub by the replication stream.",
            &["kind"],
        )?;
        let delivered = counter_vec(
            &r,
            "messages_delivered_total",
            "Message frames queued to subscribers by path (persisted and ephemeral: live; replay: resume).",
            &["path"],
        )?;
        let resumes = counter_vec(
            &r,
            "resumes_total",
            "Resumes by path (memory: nothing was missed, no read of the log; log: read from realtime.messages).",
            &["path"],
        )?;
        let hub = HubMetrics {
            stored_dispatched: dispatched.with_label_values(&["stored"]),
            ephemeral_dispatched: dispatched.with_label_values(&["ephemeral"]),
            frames_queued: counter(&r, "frames_queued_total", "Frames queued to subscribers by dispatch.")?,
            delivered_persisted: delivered.with_label_values(&["persisted"]),
            delivered_ephemeral: delivered.with_label_values(&["ephemeral"]),
            delivered_replay: delivered.with_label_values(&["replay"]),
            dropped_slow: counter(
                &r,
                "slow_consumer_frames_dropped_total",
                "Events not queued live because the subscriber's queue was over its byte budget (it then catches up).",
            )?,
            catch_ups: counter(
                &r,
                "catch_ups_total",
                "Subscriptions that fell behind and caught up from realtime.messages instead of being closed.",
            )?,
            slow_closes: counter(
                &r,
                "slow_consumer_closes_total",
                "Connections closed with 4009 because they read nothing for the stall timeout.",
            )?,
            commit_to_send: latency(
                &r,
                "commit_to_send_seconds",
                "Commit timestamp of the transaction (primary's clock) to its frame queued to a subscriber (per frame).",
            )?,
            channels: gauge(&r, "channels", "Channels with at least one subscriber on this relay.")?,
            subscriptions: gauge(&r, "subscriptions", "Subscriptions (channel x connection) on this relay.")?,
            presence_frames: counter(
                &r,
                "presence_frames_sent_total",
                "Presence event frames queued to subscribers.",
            )?,
            resumes_from_memory: resumes.with_label_values(&["memory"]),
            resumes_from_log: resumes.with_label_values(&["log"]),
        };
        let attempts = counter_vec(
            &r,
            "webhook_attempts_total",
            "Webhook attempts by outcome (succeeded, retried, failed).",
            &["outcome"],
        )?;
        let webhooks = WebhookMetrics {
            succeeded: attempts.with_label_values(&["succeeded"]),
            retried: attempts.with_label_values(&["retried"]),
            failed: attempts.with_label_values(&["failed"]),
            queue_depth: gauge(
                &r,
                "webhook_queue_depth",
                "Pending webhook deliveries (refreshed every 5 s; -1 before the first count).",
            )?,
            attempt_time: latency(
                &r,
                "webhook_attempt_duration_seconds",
                "Webhook attempt latency (request sent to response read).",
            )?,
        };
        webhooks.queue_depth.set(-1);
        let subscribe_checks = counter_vec(
            &r,
            "subscribe_checks_total",
            "Subscribe permission checks by outcome (denials: denied).",
            &["outcome"],
        )?;
        let publishes = counter_vec(
            &r,
            "publishes_total",
            "Publish requests (frames and HTTP; a batch counts once) by outcome.",
            &["kind", "outcome"],
        )?;
        let rechecks = counter_vec(
            &r,
            "permission_rechecks_total",
            "Subscriptions whose permission was checked again (on a schedule or after a change to realtime.channels), by outcome.",
            &["outcome"],
        )?;
        let revoked = counter_vec(
            &r,
            "subscriptions_revoked_total",
            "Subscriptions ended by a permission re-check, by reason (unverified: the check kept failing).",
            &["reason"],
        )?;
        // Every label combination exists from the start, at 0.
        for o in CheckOutcome::ALL {
            subscribe_checks.with_label_values(&[o.label()]);
            rechecks.with_label_values(&[o.label()]);
        }
        for reason in Revoked::ALL {
            revoked.with_label_values(&[reason.label()]);
        }
        for k in [Kind::Stored, Kind::Ephemeral] {
            for o in PublishOutcome::ALL {
                publishes.with_label_values(&[k.label(), o.label()]);
            }
        }
        let visibility_checks = counter_vec(
            &r,
            "visibility_checks_total",
            "Round trips of realtime.visible_rows (row-level security of table changes), by outcome.",
            &["outcome"],
        )?;
        let visibility = VisibilityMetrics {
            checks_ok: visibility_checks.with_label_values(&["ok"]),
            checks_failed: visibility_checks.with_label_values(&["error"]),
            identities: counter(
                &r,
                "visibility_identities_checked_total",
                "Identities (role and claims) asked about by row visibility checks.",
            )?,
            rows_hidden: counter(
                &r,
                "visibility_rows_hidden_total",
                "Table changes withheld from an identity by its row-level security policies (once per identity and change).",
            )?,
            bindings_ended: counter(
                &r,
                "visibility_bindings_ended_total",
                "Table change bindings ended by the relay (check failed, SELECT revoked, subscriber fell behind).",
            )?,
            check_time: latency(
                &r,
                "visibility_check_seconds",
                "Duration of row visibility checks of table changes in Postgres.",
            )?,
        };
        let subscribe_check_time = latency(
            &r,
            "subscribe_check_seconds",
            "Duration of subscribe permission (RLS) checks in Postgres.",
        )?;
        let subscribe_checks_cached = counter(
            &r,
            "subscribe_checks_cached_total",
            "Subscribes allowed by a permission granted recently (--subscribe-check-ttl-secs), not checked in Postgres again.",
        )?;
        Ok(Arc::new(Metrics {
            registry: r,
            hub,
            webhooks,
            visibility,
            subscribe_checks,
            subscribe_checks_cached,
            subscribe_check_time,
            publishes,
            rechecks,
            revoked,
        }))
    }

    /// Registers a gauge read from `read` at every scrape.
    pub fn pull_gauge(&self, name: &str, help: &str, read: Reader) -> Result<(), MetricsError> {
        self.registry.register(Box::new(Pulled::gauge(name, help, read)?))?;
        Ok(())
    }

    /// Registers a counter read from `read` at every scrape (the value must only grow).
    pub fn pull_counter(&self, name: &str, help: &str, read: Reader) -> Result<(), MetricsError> {
        self.registry.register(Box::new(Pulled::counter(name, help, read)?))?;
        Ok(())
    }

    /// Registers a counter of one `label` value read from `read` at every scrape; register one
    /// per value under the same name.
    pub fn pull_labeled_counter(
        &self,
        name: &str,
        help: &str,
        label: (&str, &str),
        read: Reader,
    ) -> Result<(), MetricsError> {
        self.registry.register(Box::new(Pulled::labeled_counter(name, help, label, read)?))?;
        Ok(())
    }

    /// Counts one subscribe permission check and how long it took.
    pub fn subscribe_checked(&self, outcome: CheckOutcome, took: Duration) {
        self.subscribe_check_time.observe(took.as_secs_f64());
        self.subscribe_checks.with_label_values(&[outcome.label()]).inc();
    }

    /// Counts `n` subscriptions re-checked with `outcome`.
    pub fn rechecked(&self, outcome: CheckOutcome, n: u64) {
        self.rechecks.with_label_values(&[outcome.label()]).inc_by(n);
    }

    /// Counts one subscription ended by a re-check.
    pub fn revoked(&self, reason: Revoked) {
        self.revoked.with_label_values(&[reason.label()]).inc();
    }

    /// Counts one publish request.
    pub fn published(&self, kind: Kind, outcome: PublishOutcome) {
        self.publishes.with_label_values(&[kind.label(), outcome.label()]).inc();
    }

    /// Every series' value now (the pulled ones read once), for code that wants a figure.
    pub fn read(&self) -> Reading {
        Reading::of(self.registry.gather())
    }

    /// Every series in the Prometheus text exposition format.
    pub fn render(&self) -> Result<String, MetricsError> {
        Ok(TextEncoder::new().encode_to_string(&self.registry.gather())?)
    }
}

/// Time from a pgoutput commit timestamp (microseconds since 2000-01-01) to now, by this
/// host's clock: zero when the clocks disagree the other way. `None` for a missing timestamp.
pub fn since_pg_timestamp(commit_time_micros: i64) -> Option<Duration> {
    if commit_time_micros == 0 {
        return None;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?;
    let now_micros = i64::try_from(now.as_micros()).ok()?;
    let elapsed = now_micros - (commit_time_micros + PG_EPOCH_UNIX_MICROS);
    Some(Duration::from_micros(u64::try_from(elapsed).unwrap_or(0)))
}

/// An unsigned value as a gauge or counter value (LSNs use the whole `u64` range).
pub fn as_f64(v: u64) -> f64 {
    v as f64
}

#[cfg(test)]
mod tests;
