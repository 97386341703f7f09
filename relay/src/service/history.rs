//! History: the messages of a channel before a point, newest first, for the WebSocket `history`
//! request and `GET /v1/channels/{channel}/history`; and the waits every read of the log needs
//! (also used by resume).
//!
//! Subscribe permission is required (checked under the caller's role and claims); the read
//! itself runs on the relay's login. Messages come newest first, strictly before `before` (a
//! cursor or a message id of that channel), `limit` defaults to 50 and is capped at 1000
//! silently (0 is refused). Before reading, the relay waits (at most [`READ_WAIT`]) until the
//! commit positions the read depends on are durably in `realtime.commits`, so the answer has
//! no holes.

use std::time::Duration;

use crate::app::App;
use crate::core::{hints, names, Cursor, Identity};
use crate::pg::authz::{check_subscribe, Access};
use crate::pg::history::{self as sql, Before, Page};

use super::ServiceError;

/// Longest wait for durable positions (or for the relay's first position) before a read.
pub const READ_WAIT: Duration = Duration::from_secs(5);

/// Subscribe permission for `who` on `channel` (history and resume need it).
pub async fn authorize(app: &App, who: &Identity, channel: &str) -> Result<(), ServiceError> {
    super::visibility::refuse_direct(channel)?;
    match check_subscribe(&app.pool, who, channel).await? {
        Access::Allowed => Ok(()),
        Access::Denied => {
            Err(ServiceError::Denied(hints::history_denied(&who.role, who.user_id.as_deref(), channel)))
        }
        Access::NotFound => Err(ServiceError::NotFound(hints::channel_not_found(channel))),
    }
}

/// The hub position, waiting (at most [`READ_WAIT`]) for the relay's first one.
pub async fn current_position(app: &App) -> Result<Cursor, ServiceError> {
    let deadline = tokio::time::Instant::now() + READ_WAIT;
    loop {
        if let Some(p) = app.hub.position() {
            return Ok(p);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ServiceError::CatchingUp);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every commit at or below `lsn` has its position in `realtime.commits`.
pub async fn wait_readable(app: &App, lsn: u64) -> Result<(), ServiceError> {
    if app.replication.wait_readable(lsn, READ_WAIT).await {
        Ok(())
    } else {
        Err(ServiceError::CatchingUp)
    }
}

/// History of `channel` for `who`: permission, then up to `limit` messages strictly before
/// `before` (default: the relay's current position), newest first; a page also stops at half
/// a session's queue budget in bytes (`Page::more` says more may follow).
pub async fn fetch(
    app: &App,
    who: &Identity,
    channel: &str,
    limit: Option<u64>,
    before: Option<&str>,
) -> Result<Page, ServiceError> {
    names::validate_channel(Some(channel)).map_err(|e| ServiceError::Invalid(e.to_string()))?;
    let limit = sql::effective_limit(limit).map_err(ServiceError::Invalid)?;
    let before = before.map(sql::parse_before).transpose().map_err(ServiceError::Invalid)?;
    authorize(app, who, channel).await?;
    let bound = match before {
        Some(Before::Cursor(c)) => {
            wait_readable(app, c.commit_lsn).await?;
            c
        }
        Some(Before::Id(id)) => {
            wait_readable(app, current_position(app).await?.commit_lsn).await?;
            let client = app.pool.get().await.map_err(crate::pg::PgError::from)?;
            sql::cursor_of(&client, channel, &id).await?.ok_or_else(|| {
                ServiceError::Invalid(format!("'before': no stored message {id} on channel '{channel}'"))
            })?
        }
        None => {
            let p = current_position(app).await?;
            wait_readable(app, p.commit_lsn).await?;
            p
        }
    };
    let client = app.pool.get().await.map_err(crate::pg::PgError::from)?;
    Ok(sql::page_before(&client, channel, bound, limit, app.config.history_page_bytes()).await?)
}
