//! `GET /v1/channels/{channel}/history?limit=&before=`: history over HTTP (see
//! [`crate::service::history`]); answers `{"messages":[..]}`, each message exactly the body of
//! the live protocol v1 `message` frame.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;

use super::limits::{caller, HttpLimits};
use crate::app::App;
use crate::protocol::v1::history::{history_body, history_entries};
use crate::service::history::fetch;
use crate::transport::auth::Authenticated;
use crate::transport::error::ApiError;
use crate::transport::listener::ClientAddr;

#[derive(Debug, Deserialize)]
pub struct HistoryParams {
    limit: Option<String>,
    before: Option<String>,
}

impl HistoryParams {
    /// `limit` as a number and `before` (empty values count as absent); the checks that need
    /// no database come after, in [`fetch`].
    pub fn values(&self) -> Result<(Option<u64>, Option<&str>), &'static str> {
        let limit = self.limit.as_deref().filter(|s| !s.is_empty()).map(str::parse::<u64>).transpose();
        let limit = limit.map_err(|_| "'limit' must be a positive integer")?;
        Ok((limit, self.before.as_deref().filter(|s| !s.is_empty())))
    }
}

/// `GET /v1/channels/{channel}/history`.
pub async fn handler(
    State(app): State<Arc<App>>,
    Authenticated(who): Authenticated,
    Extension(limits): Extension<Arc<HttpLimits>>,
    from: Option<Extension<ClientAddr>>,
    Path(channel): Path<String>,
    Query(q): Query<HistoryParams>,
) -> Result<Response, ApiError> {
    limits.history(&caller(&who, from.map(|f| f.0 .0.ip())))?;
    let (limit, before) = q.values().map_err(ApiError::invalid)?;
    let page = fetch(&app, &who, &channel, limit, before).await?;
    let body = history_body(&history_entries(&page.messages), page.more);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
