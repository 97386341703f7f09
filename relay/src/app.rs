//! [`App`]: the state a running relay shares between its tasks, its services and its
//! transports (built once by `crate::server::run`).

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use deadpool_postgres::Pool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::core::auth::Authenticator;
use crate::hub::acks::Acks;
use crate::hub::{Budget, Hub, QueueLimits};
use crate::metrics::Metrics;
use crate::pg::authz_cache::AccessCache;
use crate::pg::presence::Presence;
use crate::pg::replication::ReplicationStatus;
use crate::webhook::Webhooks;

/// Shared state of a running relay.
pub struct App {
    pub config: Config,
    pub auth: Authenticator,
    pub hub: Hub,
    pub pool: Pool,
    pub replication: Arc<ReplicationStatus>,
    pub shutdown: CancellationToken,
    /// Connection tasks, awaited (bounded) at shutdown.
    pub tracker: TaskTracker,
    /// Publishers waiting for their messages' cursors.
    pub acks: Acks,
    /// Open client connections (WebSocket and streams), for `--max-connections`.
    pub connections: AtomicUsize,
    /// Bytes queued over all sessions (`--send-queue-total-bytes`).
    pub queue_budget: Arc<Budget>,
    /// Pool connections replays (resumes and catch-ups) may use at once: half the pool, so a
    /// burst that sends many subscribers to the log never starves permission checks and
    /// publishes of connections. Replays wait for a place instead of failing.
    pub replay_slots: tokio::sync::Semaphore,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Presence writes and this relay's presence identity.
    pub presence: Arc<Presence>,
    /// The webhook worker (None with `--webhook-concurrency 0`).
    pub webhooks: Option<Arc<Webhooks>>,
    /// Subscribe permissions granted recently (`--subscribe-check-ttl-secs`).
    pub access_cache: AccessCache,
}

impl App {
    /// The queue limits of a new session.
    pub fn queue_limits(&self) -> QueueLimits {
        QueueLimits { bytes: self.config.send_queue_bytes, budget: self.queue_budget.clone() }
    }
}
