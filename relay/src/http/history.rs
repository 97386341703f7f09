//! History: `GET /v1/channels/{channel}/history?limit=&before=` and the shared [`fetch`] that
//! also answers the WebSocket `history` frame.
//!
//! Subscribe permission is required (checked under the caller's role and claims); the read
//! itself runs on the relay's login. Messages come newest first, strictly before `before` (a
//! cursor or a message id of that channel), `limit` defaults to 50 and is capped at 1000
//! silently (0 is refused). Each message object is exactly the body of the live `message`
//! frame. Before reading, the relay waits (at most [`READ_WAIT`]) until the commit positions
//! the read depends on are durably in `realtime.commits`, so the answer has no holes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::publish::{auth_error, error};
use crate::auth::Identity;
use crate::pg::authz::{check_subscribe, Access};
use crate::pg::cursor::Cursor;
use crate::pg::history::{self as sql, Before};
use crate::protocol::history::{history_body, history_entry};
use crate::protocol::{validate_channel, ErrorCode};
use crate::server::App;

/// Longest wait for durable positions (or for the relay's first position) before a read.
pub const READ_WAIT: Duration = Duration::from_secs(5);

/// Why a history (or resume) read was refused.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}")]
    Invalid(String),
    #[error("{}", crate::hints::history_denied(.role, .user_id.as_deref(), .channel))]
    Denied { role: String, user_id: Option<String>, channel: String },
    #[error("{}", crate::hints::channel_not_found(.0))]
    NotFound(String),
    #[error("history is catching up; try again shortly")]
    CatchingUp,
    #[error("{0}")]
    Db(String),
}

impl HistoryError {
    pub fn code(&self) -> ErrorCode {
        match self {
            HistoryError::Invalid(_) => ErrorCode::InvalidRequest,
            HistoryError::Denied { .. } => ErrorCode::Unauthorized,
            HistoryError::NotFound(_) => ErrorCode::NotFound,
            HistoryError::CatchingUp | HistoryError::Db(_) => ErrorCode::InternalError,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            HistoryError::Invalid(_) => StatusCode::BAD_REQUEST,
            HistoryError::Denied { .. } => StatusCode::FORBIDDEN,
            HistoryError::NotFound(_) => StatusCode::NOT_FOUND,
            HistoryError::CatchingUp => StatusCode::SERVICE_UNAVAILABLE,
            HistoryError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::pg::PgError> for HistoryError {
    fn from(e: crate::pg::PgError) -> Self {
        tracing::warn!(error = %e, "history read failed");
        HistoryError::Db(e.client_message())
    }
}

/// Subscribe permission for `who` on `channel`, as history errors.
pub async fn authorize(app: &App, who: &Identity, channel: &str) -> Result<(), HistoryError> {
    match check_subscribe(&app.pool, who, channel).await? {
        Access::Allowed => Ok(()),
        Access::Denied => Err(HistoryError::Denied {
            role: who.role.clone(),
            user_id: who.user_id.clone(),
            channel: channel.to_string(),
        }),
        Access::NotFound => Err(HistoryError::NotFound(channel.to_string())),
    }
}

/// The hub position, waiting (at most [`READ_WAIT`]) for the relay's first one.
pub async fn current_position(app: &App) -> Result<Cursor, HistoryError> {
    let deadline = tokio::time::Instant::now() + READ_WAIT;
    loop {
        if let Some(p) = app.hub.position().and_then(|p| p.parse::<Cursor>().ok()) {
            return Ok(p);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(HistoryError::CatchingUp);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every commit at or below `lsn` has its position in `realtime.commits`.
pub async fn wait_readable(app: &App, lsn: u64) -> Result<(), HistoryError> {
    if app.replication.wait_readable(lsn, READ_WAIT).await {
        Ok(())
    } else {
        Err(HistoryError::CatchingUp)
    }
}

/// History of `channel` for `who`: permission, then up to `limit` messages strictly before
/// `before` (default: the relay's current position), newest first, as message objects.
pub async fn fetch(
    app: &App,
    who: &Identity,
    channel: &str,
    limit: Option<u64>,
    before: Option<&str>,
) -> Result<Vec<Box<RawValue>>, HistoryError> {
    validate_channel(channel).map_err(HistoryError::Invalid)?;
    let limit = sql::effective_limit(limit).map_err(HistoryError::Invalid)?;
    let before = before.map(sql::parse_before).transpose().map_err(HistoryError::Invalid)?;
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
                HistoryError::Invalid(format!("'before': no stored message {id} on channel '{channel}'"))
            })?
        }
        None => {
            let p = current_position(app).await?;
            wait_readable(app, p.commit_lsn).await?;
            p
        }
    };
    let client = app.pool.get().await.map_err(crate::pg::PgError::from)?;
    let rows = sql::page_before(&client, channel, bound, limit).await?;
    Ok(rows.iter().map(|r| history_entry(&r.fields(channel, false))).collect())
}

#[derive(Deserialize)]
pub struct HistoryParams {
    limit: Option<String>,
    before: Option<String>,
    token: Option<String>,
}

/// `GET /v1/channels/{channel}/history`.
pub async fn handler(
    State(app): State<Arc<App>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HistoryParams>,
) -> Response {
    let token = crate::ws::token_from(&headers, q.token.as_deref());
    let who = match token.and_then(|t| app.auth.authenticate(t)) {
        Ok(who) => who,
        Err(e) => return auth_error(&e),
    };
    let limit = match q.limit.as_deref().filter(|s| !s.is_empty()).map(str::parse::<u64>).transpose() {
        Ok(l) => l,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                "'limit' must be a positive integer",
            )
        }
    };
    let before = q.before.as_deref().filter(|s| !s.is_empty());
    match fetch(&app, &who, &channel, limit, before).await {
        Ok(messages) => {
            ([(header::CONTENT_TYPE, "application/json")], history_body(&messages)).into_response()
        }
        Err(e) => error(e.status(), e.code(), &e.to_string()),
    }
}
