//! What this relay tells the other relays' consoles: every [`EVERY`], while its console is on,
//! its figures go into its own `realtime.relays` row (`stats`, jsonb): connections,
//! subscriptions, channels, its replication slot, whether it streams, its lag, and its
//! subscribers per channel row (`by_channel`: the channel names it serves, matched to rows by
//! `realtime.match_channel` in the same statement, [`crate::pg::admin::relays::report`]; the
//! [`MAX_CHANNELS`] busiest names at most). The Relays page and the Channels page's subscriber
//! counts read these rows, so every relay's console shows the whole deployment.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::sampler::gauges;
use crate::app::App;
use crate::pg::admin::relays::report;
use crate::pg::PgError;

/// Time between reports.
pub const EVERY: Duration = Duration::from_secs(5);
/// Most channel names per report matched to channel rows.
pub const MAX_CHANNELS: usize = 5000;

/// This relay's figures now (without `by_channel`), from its metrics registry.
pub fn figures(app: &App) -> Value {
    let g = gauges(&app.metrics.read());
    json!({
        "connections": g.connections,
        "subscriptions": g.subscriptions,
        "channels": g.channels,
        "presence_members": g.presence_members,
        "slot": app.config.slot_name(),
        "streaming": g.streaming,
        "lag_bytes": g.lag_bytes,
        "webhook_queue": g.webhook_queue,
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// The busiest channel names of this relay with their subscriber counts, and whether the list
/// was cut at [`MAX_CHANNELS`].
pub fn local_channels(app: &App) -> (Vec<String>, Vec<i64>, bool) {
    let (channels, more) = app.hub.busiest_channels(MAX_CHANNELS);
    let (names, counts) = channels.into_iter().map(|(c, n)| (c, n as i64)).unzip();
    (names, counts, more)
}

/// Writes one report.
async fn write(app: &App) -> Result<(), PgError> {
    let (names, counts, truncated) = local_channels(app);
    let mut stats = figures(app);
    stats["truncated"] = truncated.into();
    report(&app.pool, &app.config.relay_id, &stats, &names, &counts).await
}

/// Reports every [`EVERY`] until the relay shuts down.
pub async fn run(app: Arc<App>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = write(&app).await {
            tracing::debug!(error = %e, "admin: could not write this relay's stats");
        }
    }
}
