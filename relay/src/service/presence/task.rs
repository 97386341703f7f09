//! The presence task of a relay: registers it in `realtime.relays` (removing rows a previous
//! crash of the same relay id left), loads the presence view (see `crate::hub::presence_sync`),
//! runs the writer of presence changes, heartbeats, and declares relays whose heartbeat is older
//! than the timeout dead. A relay only reaps after its own heartbeats have succeeded for a
//! whole timeout, so after a database outage live relays get time to heartbeat again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::pg::presence as sql;
use crate::pg::PgError;

/// How long one start-up synchronisation waits for the stream, then for its marker, before
/// trying again.
const MARKER_WAIT: Duration = Duration::from_secs(5);

/// Sleeps `d` unless shut down first; false on shutdown.
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = shutdown.cancelled() => false,
    }
}

/// Runs presence for this relay until `shutdown`: the writer, registration, the view's
/// start-up load, heartbeats and dead-relay detection.
pub async fn run(app: Arc<App>) {
    let timing = app.config.presence;
    let (pool, presence, shutdown) = (app.pool.clone(), app.presence.clone(), app.shutdown.clone());
    let writer_task = tokio::spawn(sql::writer(pool.clone(), presence.clone(), shutdown.clone()));
    let (relay, epoch) = (presence.relay_id().to_string(), presence.epoch().to_string());
    let mut backoff = Duration::from_millis(100);
    loop {
        match sql::register(&pool, &relay, &epoch, true).await {
            Ok(left) => {
                if left > 0 {
                    tracing::info!(rows = left, "presence: removed entries left by a previous run");
                }
                break;
            }
            Err(e) => tracing::warn!(error = %e, "presence: cannot register this relay; retrying"),
        }
        if !pause(crate::pg::jitter(backoff), &shutdown).await {
            return;
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    let sync_relay = relay.clone();
    let sync_shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            match sync_once(&app, &sync_relay).await {
                Ok(true) => return,
                Ok(false) => tracing::info!("presence: view not loaded yet (stream not there); retrying"),
                Err(e) => tracing::warn!(error = %e, "presence: cannot load the view; retrying"),
            }
            if !pause(Duration::from_millis(500), &sync_shutdown).await {
                return;
            }
        }
    });
    // Since when our heartbeats have been succeeding without interruption.
    let mut healthy_since: Option<tokio::time::Instant> = Some(tokio::time::Instant::now());
    while pause(timing.heartbeat, &shutdown).await {
        match sql::heartbeat(&pool, &relay, &epoch).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    "presence: this relay's registration was gone; registering and writing its entries again"
                );
                match sql::register(&pool, &relay, &epoch, false).await {
                    Ok(_) => presence.resync().await,
                    Err(e) => {
                        tracing::warn!(error = %e, "presence: cannot register again");
                        healthy_since = None;
                        continue;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "presence: heartbeat failed");
                healthy_since = None;
                continue;
            }
        }
        let since = *healthy_since.get_or_insert_with(tokio::time::Instant::now);
        if since.elapsed() < timing.relay_timeout {
            continue;
        }
        match sql::reap(&pool, &relay, timing.relay_timeout).await {
            Ok(dead) => {
                for r in &dead {
                    tracing::info!(relay = %r, "presence: relay declared dead; its members leave");
                }
                presence.reaped.fetch_add(dead.len() as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "presence: dead-relay check failed"),
        }
    }
    let _ = writer_task.await;
}

/// Builds the view (see `crate::hub::presence_sync`): arm a nonce, emit the marker
/// non-transactionally, wait for the stream to reach it, read the table, load.
async fn sync_once(app: &App, relay: &str) -> Result<bool, PgError> {
    let (pool, hub, shutdown) = (&app.pool, &app.hub, &app.shutdown);
    // A marker written before the replication slot exists would never be decoded: wait until
    // the stream runs (its slot exists, and it streams from before anything we write now).
    let deadline = tokio::time::Instant::now() + MARKER_WAIT;
    while !app.replication.is_streaming() {
        if tokio::time::Instant::now() >= deadline || shutdown.is_cancelled() {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let nonce = format!("{:016x}", rand::random::<u64>());
    hub.presence.expect_sync(relay, &nonce);
    sql::emit_marker(pool, relay, &nonce).await?;
    let deadline = tokio::time::Instant::now() + MARKER_WAIT;
    while !hub.presence.marker_reached() {
        if tokio::time::Instant::now() >= deadline || shutdown.is_cancelled() {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rows = sql::entries(pool).await?;
    let n = rows.len();
    let loaded = hub.presence_load(rows);
    if loaded {
        tracing::info!(entries = n, "presence view loaded");
    }
    Ok(loaded)
}
