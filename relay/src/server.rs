//! Wires the relay together: pool, hub, replication stream, dispatcher, webhook worker and the
//! HTTP/WebSocket server, and shuts them down in order.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::hub::Hub;
use crate::pg::audience::AudienceHandle;
use crate::pg::cursor::Cursor;
use crate::pg::replication::{self, CommitBatch, LogEvent, ReplicationConfig, ReplicationStatus};
use crate::webhook::Webhooks;

/// Shared state of a running relay.
pub struct App {
    pub config: Config,
    pub auth: Authenticator,
    pub hub: Hub,
    pub pool: Pool,
    pub replication: Arc<ReplicationStatus>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub acks: crate::publish::Acks,
    /// Open WebSocket connections.
    pub connections: std::sync::atomic::AtomicUsize,
    /// Counters only `/metrics` reads (subscribe checks, publishes by outcome).
    pub metrics: crate::metrics::Counters,
    /// Presence writes and this relay's presence identity.
    pub presence: Arc<crate::pg::presence::Presence>,
    /// The webhook worker (None with `--webhook-concurrency 0`).
    pub webhooks: Option<Arc<Webhooks>>,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot build the connection pool: {0}")]
    Pool(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Webhooks(#[from] crate::webhook::ClientError),
}

/// Runs the relay until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), ServerError> {
    let pool = crate::pg::pool::build(&config.database_url, config.pool_size).map_err(ServerError::Pool)?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServerError::Bind { addr: config.bind, source })?;
    let status = Arc::new(ReplicationStatus::default());
    let webhooks = match config.webhooks.concurrency {
        0 => None,
        _ => Some(Webhooks::start(pool.clone(), config.webhooks, config.relay_id.clone())?),
    };
    let audience = AudienceHandle::spawn(pool.clone());
    let app = Arc::new(App {
        auth: Authenticator::with_keys(
            config.jwt_secret.as_deref(),
            config.public_keys.clone(),
            config.roles.clone(),
            config.allow_anon,
        ),
        hub: Hub::new(),
        pool,
        replication: status.clone(),
        shutdown: shutdown.clone(),
        tracker: TaskTracker::new(),
        acks: crate::publish::Acks::default(),
        connections: Default::default(),
        metrics: Default::default(),
        presence: Arc::new(crate::pg::presence::Presence::new(&config.relay_id)),
        webhooks,
        config,
    });

    let (batches_tx, batches_rx) = mpsc::channel::<CommitBatch>(256);
    let repl_cfg = ReplicationConfig {
        database_url: app.config.database_url.clone(),
        slot: app.config.slot_name(),
        publication: "realtime_messages".into(),
    };
    let repl_task = tokio::spawn(replication::run(repl_cfg, batches_tx, status, shutdown.clone()));
    let dispatcher = tokio::spawn(dispatch(app.clone(), batches_rx, audience));
    tokio::spawn(seed_position(app.clone()));
    let timing = crate::pg::presence::Timing {
        heartbeat: app.config.presence.heartbeat,
        relay_timeout: app.config.presence.relay_timeout,
    };
    let presence_task =
        tokio::spawn(crate::pg::presence::run(app.pool.clone(), app.clone(), app.presence.clone(), timing));

    tracing::info!(addr = %app.config.bind, slot = %app.config.slot_name(), "listening on ws://{}/v1/socket", app.config.bind);
    let router = crate::http::router(app.clone());
    let served =
        axum::serve(listener, router).with_graceful_shutdown(shutdown.clone().cancelled_owned()).await;
    shutdown.cancel();

    app.tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), app.tracker.wait()).await.is_err() {
        tracing::warn!("sessions did not finish within 5 s");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), presence_task).await;
    // Our members leave everywhere now rather than after the dead-relay timeout.
    match tokio::time::timeout(
        Duration::from_secs(3),
        crate::pg::presence::retire(&app.pool, &app.config.relay_id),
    )
    .await
    {
        Ok(Err(e)) => tracing::warn!(error = %e, "could not remove this relay's presence entries"),
        Err(_) => tracing::warn!("removing this relay's presence entries timed out"),
        Ok(Ok(())) => {}
    }
    match tokio::time::timeout(Duration::from_secs(5), repl_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "replication stream ended with an error"),
        Err(_) => tracing::warn!("replication stream did not stop within 5 s"),
        _ => {}
    }
    // the replication task has stopped, so the dispatcher drains and ends
    match tokio::time::timeout(Duration::from_secs(5), dispatcher).await {
        Ok(Ok(audience)) => audience.close(Duration::from_secs(2)).await,
        _ => tracing::warn!("dispatcher did not stop within 5 s"),
    }
    if let Some(webhooks) = &app.webhooks {
        webhooks.stop().await;
    }
    tracing::info!("relay stopped");
    served.map_err(ServerError::Serve)
}

/// Sets the hub's starting position to where the replication slot's first session of this
/// process starts: every message below it was dispatched by an earlier run (and its position
/// written back before the slot confirmed it), every message above it will be dispatched here.
/// So a subscribe reply carries a cursor before the first message, `history(before = cursor)`
/// is exactly what came before, and a resume up to it can be answered from the table at once.
async fn seed_position(app: Arc<App>) {
    while !app.shutdown.is_cancelled() {
        if app.replication.wait_readable(1, Duration::from_secs(1)).await {
            let origin = app.replication.origin_lsn();
            app.hub.advance_position(&Cursor { commit_lsn: origin, seq: 0 }.to_string());
            return;
        }
    }
}

/// Hands each committed batch to the hub, in order; passes the per-message subscriber counts to
/// the `ws_audience_count` writer and wakes the webhook worker for messages with webhooks.
/// Returns the writer when the replication stream has ended.
async fn dispatch(
    app: Arc<App>,
    mut rx: mpsc::Receiver<CommitBatch>,
    audience: AudienceHandle,
) -> AudienceHandle {
    let mut counts = Vec::new();
    while let Some(batch) = rx.recv().await {
        app.hub.dispatch_counting(&batch, &mut counts);
        app.acks.resolve(&batch);
        if !counts.is_empty() {
            audience.submit(std::mem::take(&mut counts));
        }
        if let Some(webhooks) = &app.webhooks {
            let has_webhooks =
                batch.events.iter().any(|e| matches!(e, LogEvent::Stored(m) if m.wh_audience > 0));
            if has_webhooks {
                webhooks.wake();
            }
        }
    }
    audience
}
