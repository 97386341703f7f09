//! Webhook delivery: claims due rows of `realtime.webhook_deliveries`, POSTs them signed
//! (Standard Webhooks) and writes the outcomes back. At least once, durable across relay
//! crashes, each delivery sent once across several relays in the normal case.
//!
//! - [`sign`]: the signature; [`retry`]: outcome, backoff and `Retry-After`; [`target`]: the
//!   private-address policy and the DNS resolver that enforces it; [`send`]: one attempt.
//! - The claim loop wakes when the replication stream dispatches a message with webhooks
//!   ([`Webhooks::wake`]), when a busy relay frees capacity, when a retry it scheduled falls
//!   due, and every [`POLL`] for other relays' retries and deliveries enqueued while no relay
//!   ran.
//! - Concurrency: at most `concurrency` attempts in flight, at most `per_endpoint` per URL. A
//!   claim skips URLs that are already at their limit, and a claimed row whose URL filled up
//!   meanwhile is released (its attempt given back), so a slow endpoint never holds capacity
//!   that other endpoints could use beyond its own share.
//! - Outcomes go through a bounded queue to one writer task that writes each batch in one
//!   statement ([`crate::pg::webhooks::write_results`]).

pub mod retry;
pub mod send;
pub mod settings;
pub mod sign;
pub mod target;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::WebhookMetrics;
use crate::pg::webhooks::{self as queue, Claimed, DeliveryResult, Written};
use retry::Outcome;
use send::SendSettings;
pub use settings::{WebhookArgs, WebhookSettings};

/// How often the queue is polled without a wake-up.
pub const POLL: Duration = Duration::from_secs(1);
/// Most rows claimed by one statement.
pub const CLAIM_BATCH: usize = 200;
/// How long a released row (its endpoint was busy) waits before it is due again.
const RELEASE_DELAY: Duration = Duration::from_millis(200);
/// How often the queue depth gauge is refreshed.
const DEPTH_INTERVAL: Duration = Duration::from_secs(5);
/// Most outcomes in one write.
const WRITE_BATCH: usize = 500;

/// The running webhook worker of one relay.
pub struct Webhooks {
    pool: Pool,
    settings: WebhookSettings,
    relay_id: String,
    client: reqwest::Client,
    wake: Notify,
    starved: AtomicBool,
    /// The earliest retry this relay scheduled and has not claimed yet, so the claim loop wakes
    /// for it instead of waiting for the next poll.
    next_due: Mutex<Option<Instant>>,
    total: Arc<Semaphore>,
    endpoints: Mutex<HashMap<String, Arc<Semaphore>>>,
    results: mpsc::Sender<DeliveryResult>,
    tracker: TaskTracker,
    stop_claims: CancellationToken,
    stop_writer: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    pub stats: WebhookMetrics,
}

/// The HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

impl Webhooks {
    /// Starts the claim loop and the outcome writer.
    pub fn start(
        pool: Pool,
        settings: WebhookSettings,
        relay_id: String,
        stats: WebhookMetrics,
    ) -> Result<Arc<Self>, ClientError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("realtime-relay/", env!("CARGO_PKG_VERSION"), " (webhooks)"))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(settings.per_endpoint.max(1))
            .pool_idle_timeout(Duration::from_secs(60))
            .dns_resolver(Arc::new(target::PolicyResolver { allow_private: settings.allow_private }))
            .build()?;
        let (tx, rx) = mpsc::channel(4 * settings.concurrency.max(1) + CLAIM_BATCH);
        let this = Arc::new(Webhooks {
            pool,
            settings,
            relay_id,
            client,
            wake: Notify::new(),
            starved: AtomicBool::new(false),
            next_due: Mutex::new(None),
            total: Arc::new(Semaphore::new(settings.concurrency)),
            endpoints: Mutex::new(HashMap::new()),
            results: tx,
            tracker: TaskTracker::new(),
            stop_claims: CancellationToken::new(),
            stop_writer: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            stats,
        });
        let claims = tokio::spawn(this.clone().claim_loop());
        let writer = tokio::spawn(this.clone().write_loop(rx));
        this.tasks.lock().expect("tasks lock").extend([claims, writer]);
        Ok(this)
    }

    /// A message with webhooks committed: claim now instead of at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops claiming, lets in-flight attempts finish (at most one timeout), writes their
    /// outcomes. Whatever is still unwritten is retried after its lease by any relay.
    pub async fn stop(&self) {
        self.stop_claims.cancel();
        self.tracker.close();
        let grace = self.settings.timeout + Duration::from_secs(1);
        if tokio::time::timeout(grace, self.tracker.wait()).await.is_err() {
            tracing::warn!("webhook attempts still running at shutdown; they are retried after their lease");
        }
        self.stop_writer.cancel();
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
        for t in tasks {
            if tokio::time::timeout(Duration::from_secs(5), t).await.is_err() {
                tracing::warn!("webhook task did not stop within 5 s");
            }
        }
    }

    async fn claim_loop(self: Arc<Self>) {
        let mut depth_at: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = self.stop_claims.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.until_next_claim()) => {}
            }
            if depth_at.is_none_or(|t| t.elapsed() >= DEPTH_INTERVAL) {
                depth_at = Some(Instant::now());
                if let Ok(n) = queue::queue_depth(&self.pool).await {
                    self.stats.queue_depth.set(n);
                }
            }
            while !self.stop_claims.is_cancelled() {
                let free = self.total.available_permits();
                if free == 0 {
                    self.starved.store(true, Ordering::Relaxed);
                    break;
                }
                let limit = free.min(CLAIM_BATCH);
                let busy = self.busy_urls();
                let claimed = match queue::claim(
                    &self.pool,
                    limit as i32,
                    self.settings.lease,
                    &self.relay_id,
                    &busy,
                )
                .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot claim webhook deliveries; retrying at the next poll");
                        break;
                    }
                };
                let n = claimed.len();
                for c in claimed {
                    self.begin(c).await;
                }
                if n < limit {
                    break;
                }
            }
        }
    }

    /// How long the claim loop may sleep: until the next poll or the earliest retry this relay
    /// scheduled, whichever comes first.
    fn until_next_claim(&self) -> Duration {
        let mut next = self.next_due.lock().expect("next_due lock");
        let now = Instant::now();
        match *next {
            Some(at) if at <= now => {
                *next = None;
                Duration::ZERO
            }
            Some(at) => (at - now).min(POLL),
            None => POLL,
        }
    }

    /// Remembers that a retry falls due after `delay`.
    fn retry_after(&self, delay: Duration) {
        let at = Instant::now() + delay;
        let mut next = self.next_due.lock().expect("next_due lock");
        if next.is_none_or(|n| at < n) {
            *next = Some(at);
        }
    }

    /// URLs at their concurrency limit; drops idle entries when the map grows.
    fn busy_urls(&self) -> Vec<String> {
        let mut map = self.endpoints.lock().expect("endpoints lock");
        if map.len() > 1024 {
            map.retain(|_, s| s.available_permits() < self.settings.per_endpoint);
        }
        map.iter().filter(|(_, s)| s.available_permits() == 0).map(|(u, _)| u.clone()).collect()
    }

    fn endpoint_permit(&self, url: &str) -> Option<OwnedSemaphorePermit> {
        let sem = {
            let mut map = self.endpoints.lock().expect("endpoints lock");
            map.entry(url.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.settings.per_endpoint)))
                .clone()
        };
        sem.try_acquire_owned().ok()
    }

    /// Starts the attempt of a claimed row, or releases it when its endpoint (or the relay) is
    /// at its limit.
    async fn begin(self: &Arc<Self>, c: Claimed) {
        let permits = match (self.total.clone().try_acquire_owned(), self.endpoint_permit(&c.url)) {
            (Ok(total), Some(endpoint)) => (total, endpoint),
            _ => {
                self.retry_after(RELEASE_DELAY);
                let written = Written::Release { delay: RELEASE_DELAY };
                let _ = self.results.send(DeliveryResult { id: c.id, attempt: c.attempt, written }).await;
                return;
            }
        };
        let this = self.clone();
        self.tracker.spawn(async move {
            let _permits = permits;
            let settings = SendSettings { timeout: this.settings.timeout, allow_private: this.settings.allow_private };
            let (result, took) = send::attempt(&this.client, &c, settings).await;
            if let Some(took) = took {
                this.stats.attempt_time.observe(took.as_secs_f64());
            }
            let attempt = u32::try_from(c.attempt).unwrap_or(1);
            let written = match this.settings.retry.decide(attempt, result, rand::random::<f64>()) {
                Outcome::Delivered { status } => {
                    this.stats.succeeded.inc();
                    Written::Delivered { status }
                }
                Outcome::Retry { status, error, delay } => {
                    this.stats.retried.inc();
                    tracing::debug!(url = %c.url, attempt, %error, "webhook attempt failed; retrying");
                    this.retry_after(delay);
                    Written::Retry { status, error, delay }
                }
                Outcome::Failed { status, error } => {
                    this.stats.failed.inc();
                    tracing::info!(url = %c.url, message = %c.message_id, attempt, %error, "webhook delivery failed");
                    Written::Failed { status, error }
                }
            };
            let _ = this.results.send(DeliveryResult { id: c.id, attempt: c.attempt, written }).await;
            drop(_permits);
            if this.starved.swap(false, Ordering::Relaxed) {
                this.wake.notify_one();
            }
        });
    }

    async fn write_loop(self: Arc<Self>, mut rx: mpsc::Receiver<DeliveryResult>) {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        loop {
            let stopping = tokio::select! {
                biased;
                got = rx.recv() => match got {
                    Some(r) => { batch.push(r); false }
                    None => true,
                },
                _ = self.stop_writer.cancelled() => true,
            };
            while batch.len() < WRITE_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.write(&batch, stopping).await;
                batch.clear();
            }
            if stopping && rx.is_empty() {
                return;
            }
        }
    }

    /// Writes a batch, retrying on errors (a few times when stopping; unwritten outcomes are
    /// redone after their lease).
    async fn write(&self, batch: &[DeliveryResult], stopping: bool) {
        let mut tries = 0;
        loop {
            match queue::write_results(&self.pool, batch).await {
                Ok(()) => return,
                Err(e) => {
                    tries += 1;
                    tracing::warn!(error = %e, outcomes = batch.len(), "cannot write webhook outcomes; retrying");
                    if (stopping || self.stop_writer.is_cancelled()) && tries >= 3 {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}
