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
use crate::hub::Hub;
use crate::metrics::Metrics;
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
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Presence writes and this relay's presence identity.
    pub presence: Arc<Presence>,
    /// The webhook worker (None with `--webhook-concurrency 0`).
    pub webhooks: Option<Arc<Webhooks>>,
}
