//! Wires the relay together: metrics, pool, hub, replication stream, dispatcher, presence task,
//! webhook worker and the HTTP/WebSocket server, and shuts them down in order.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::config::Config;
use crate::core::auth::Authenticator;
use crate::core::event::{CommitBatch, LogEvent};
use crate::core::Cursor;
use crate::hub::{Budget, Hub};
use crate::metrics::{as_f64, Metrics, MetricsError};
use crate::pg::audience::AudienceHandle;
use crate::pg::replication::{self, ReplicationConfig, ReplicationStatus, FORGED_LABELS};
use crate::service::presence::task as presence_task;
use crate::webhook::Webhooks;

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
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Slot(#[from] crate::pg::slots::SlotError),
}

/// Claims this relay's id and slot ([`crate::pg::slots`]), retrying while Postgres is
/// unreachable; `None` on shutdown.
async fn claim_relay_id(
    db: &crate::pg::db::Database,
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<Option<crate::pg::slots::Claim>, ServerError> {
    use crate::pg::slots::{claim, SlotError};
    let mut delay = Duration::from_millis(200);
    loop {
        match claim(db, &config.relay_id, config.relay_id_fixed, shutdown).await {
            Ok(c) => return Ok(Some(c)),
            Err(SlotError::Shutdown) => return Ok(None),
            Err(e @ SlotError::PoolFull(_)) => return Err(e.into()),
            Err(e) => tracing::warn!(error = %e, "cannot claim a relay id yet; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return Ok(None),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Runs the relay until `shutdown` is cancelled.
pub async fn run(mut config: Config, shutdown: CancellationToken) -> Result<(), ServerError> {
    let pool = crate::pg::pool::build(&config.database_url, config.pool_size).map_err(ServerError::Pool)?;
    // The relay id comes first: it names the slot, presence entries and webhook leases. The
    // port opens after it, so clients are not accepted and left waiting meanwhile.
    let db =
        crate::pg::db::Database::parse(&config.database_url).map_err(|e| ServerError::Pool(e.to_string()))?;
    let Some(claim) = claim_relay_id(&db, &config, &shutdown).await? else { return Ok(()) };
    config.relay_id = claim.relay_id.clone();
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|source| ServerError::Bind { addr: config.bind, source })?;
    let claim_guard = tokio::spawn(claim.guard(db, config.slot_abandon, shutdown.clone()));
    let status = Arc::new(ReplicationStatus::default());
    let metrics = Metrics::new()?;
    let webhooks = match config.webhooks.concurrency {
        0 => None,
        _ => Some(Webhooks::start(
            pool.clone(),
            config.webhooks,
            config.relay_id.clone(),
            metrics.webhooks.clone(),
        )?),
    };
    let audience = AudienceHandle::spawn(pool.clone());
    let app = Arc::new(App {
        auth: Authenticator::with_keys(
            config.jwt_secret.as_deref(),
            config.public_keys.clone(),
            config.roles.clone(),
            config.allow_anon,
        )
        .with_rules(config.claim_rules.clone()),
        hub: Hub::new(metrics.hub.clone()),
        pool,
        replication: status.clone(),
        shutdown: shutdown.clone(),
        tracker: TaskTracker::new(),
        acks: Default::default(),
        connections: Default::default(),
        queue_budget: Budget::new(config.send_queue_total_bytes),
        replay_slots: tokio::sync::Semaphore::new((config.pool_size / 2).max(1)),
        metrics,
        presence: Arc::new(crate::pg::presence::Presence::new(&config.relay_id)),
        webhooks,
        access_cache: crate::pg::authz_cache::AccessCache::new(config.subscribe_check_ttl),
        config,
    });
    pull_metrics(&app)?;

    let (batches_tx, batches_rx) = mpsc::channel::<CommitBatch>(256);
    let repl_cfg = ReplicationConfig {
        database_url: app.config.database_url.clone(),
        slot: app.config.slot_name(),
        publication: "realtime_messages".into(),
        max_txn_bytes: app.config.max_txn_bytes,
    };
    let repl_task = tokio::spawn(replication::run(repl_cfg, batches_tx, status, shutdown.clone()));
    let dispatcher = tokio::spawn(dispatch(app.clone(), batches_rx, audience));
    tokio::spawn(seed_position(app.clone()));
    let presence_task = tokio::spawn(presence_task::run(app.clone()));
    tokio::spawn(crate::service::recheck::run(app.clone()));

    tracing::info!(addr = %app.config.bind, slot = %app.config.slot_name(), "listening on ws://{}/v1/socket", app.config.bind);
    let router = crate::transport::router(app.clone());
    crate::transport::listener::serve(app.clone(), listener, router, shutdown.clone()).await;
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
    // Last: the relay id stays ours until everything that uses it has stopped.
    let claim = tokio::time::timeout(Duration::from_secs(2), claim_guard).await;
    tracing::info!("relay stopped");
    if let Ok(Ok(Err(e @ crate::pg::slots::SlotError::Lost(_)))) = claim {
        return Err(e.into());
    }
    Ok(())
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
            app.hub.advance_position(Cursor { commit_lsn: origin, seq: 0 });
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
        let has_webhooks = batch.events.iter().any(|e| match e {
            LogEvent::Stored(m) => m.wh_audience > 0,
            LogEvent::FromLog(f) => f.webhooks,
            LogEvent::Ephemeral(_) | LogEvent::Presence(_) => false,
        });
        let waiting = app.acks.claim(&batch);
        app.hub.dispatch(batch, &mut counts);
        waiting.resolve();
        if !counts.is_empty() {
            audience.submit(std::mem::take(&mut counts));
        }
        if let (Some(webhooks), true) = (&app.webhooks, has_webhooks) {
            webhooks.wake();
        }
    }
    audience
}

/// Registers the series whose values live in the relay's own state (read at each scrape).
fn pull_metrics(app: &Arc<App>) -> Result<(), MetricsError> {
    let m = &app.metrics;
    let weak = Arc::downgrade(app);
    let read = move |f: fn(&App) -> f64| -> crate::metrics::Reader {
        let weak = weak.clone();
        Arc::new(move || weak.upgrade().map_or(0.0, |app| f(&app)))
    };
    m.pull_gauge(
        "connections",
        "Open client connections.",
        read(|a| a.connections.load(Ordering::Relaxed) as f64),
    )?;
    m.pull_gauge(
        "replication_streaming",
        "1 while the replication stream is connected.",
        read(|a| f64::from(u8::from(a.replication.is_streaming()))),
    )?;
    m.pull_counter(
        "replication_reconnects_total",
        "Replication sessions lost and retried.",
        read(|a| as_f64(a.replication.reconnects())),
    )?;
    m.pull_gauge(
        "replication_last_commit_lsn",
        "Commit LSN of the last transaction dispatched (0 before the first).",
        read(|a| as_f64(a.replication.last_commit_lsn())),
    )?;
    m.pull_gauge(
        "replication_acked_lsn",
        "Highest LSN acknowledged to the replication slot.",
        read(|a| as_f64(a.replication.acked_lsn.load(Ordering::Relaxed))),
    )?;
    m.pull_gauge(
        "replication_lag_bytes",
        "WAL bytes the server reported that this relay has not handled yet (0 when caught up).",
        read(|a| as_f64(a.replication.lag_bytes())),
    )?;
    m.pull_counter(
        "replication_decode_errors_total",
        "Rows or logical messages that could not be decoded and were skipped.",
        read(|a| as_f64(a.replication.decode_errors.load(Ordering::Relaxed))),
    )?;
    for label in FORGED_LABELS {
        let weak = Arc::downgrade(app);
        let forged: crate::metrics::Reader =
            Arc::new(move || weak.upgrade().map_or(0.0, |a| as_f64(a.replication.forged_messages(label))));
        m.pull_labeled_counter(
            "replication_forged_messages_total",
            "realtime: logical messages dropped because their seal is missing or does not verify \
             (not emitted by realtime.emit_message).",
            ("prefix", label),
            forged,
        )?;
    }
    m.pull_counter(
        "replication_large_transactions_total",
        "Transactions over --max-txn-bytes: their stored messages were read back from the log.",
        read(|a| as_f64(a.replication.large_txns.load(Ordering::Relaxed))),
    )?;
    m.pull_counter(
        "replication_large_transaction_ephemeral_dropped_total",
        "Ephemeral messages dropped from transactions over --max-txn-bytes.",
        read(|a| as_f64(a.replication.large_txn_ephemeral_dropped.load(Ordering::Relaxed))),
    )?;
    m.pull_gauge(
        "queued_bytes",
        "Bytes queued to clients over all connections (bounded by --send-queue-total-bytes).",
        read(|a| a.queue_budget.used() as f64),
    )?;
    m.pull_gauge(
        "presence_members",
        "Presence members over all channels (the shared view).",
        read(|a| a.hub.presence.total_members() as f64),
    )?;
    m.pull_counter(
        "presence_dead_relays_reaped_total",
        "Relays this relay declared dead (heartbeat older than the timeout).",
        read(|a| as_f64(a.presence.reaped.load(Ordering::Relaxed))),
    )?;
    Ok(())
}
