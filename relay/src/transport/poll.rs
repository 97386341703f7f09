//! Long-poll transport: `GET /v1/poll?channel=a[&channel=b]&cursor=..&wait=25&limit=100` (see
//! [`crate::service::poll`] and docs/transports.md). Answers `{"messages":[..],"cursor":..}`
//! (each message exactly the body of the live protocol v1 `message` frame, without `type`;
//! `"more":true` when the limit cut it) or `{"reset":true,"messages":[],"cursor":..}`.
//!
//! Every channel is permission-checked per request; requests count against the caller's HTTP
//! history rate (`--max-history-rate`). A poll is a session for the request's life only: when
//! the client goes away mid-wait, hyper drops the handler and [`Closing`] ends the session, so
//! no subscription is left behind.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::auth::Authenticated;
use super::error::ApiError;
use super::http::limits::{caller, HttpLimits};
use super::listener::ClientAddr;
use crate::app::App;
use crate::core::Cursor;
use crate::protocol::v1::history::{hint_entries, history_entries, poll_body};
use crate::service::poll::{DEFAULT_LIMIT, MAX_LIMIT, MAX_WAIT};
use crate::service::session::Session;

/// `wait` when a poll names none, in seconds.
const DEFAULT_WAIT_SECS: u64 = 25;

/// What the query asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct PollParams {
    pub channels: Vec<String>,
    pub cursor: Option<Cursor>,
    pub wait: Duration,
    pub limit: usize,
    /// Answer hints (no payload).
    pub hint: bool,
}

/// Parses the query; every value is checked, unknown parameters are refused.
pub fn parse_query(query: Option<&str>) -> Result<PollParams, String> {
    let mut p = PollParams {
        channels: Vec::new(),
        cursor: None,
        wait: Duration::from_secs(DEFAULT_WAIT_SECS),
        limit: DEFAULT_LIMIT,
        hint: false,
    };
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "channel" => p.channels.push(v.into_owned()),
            "cursor" if v.is_empty() => {}
            "cursor" => {
                p.cursor = Some(v.parse().map_err(|e| format!("'cursor' {v:?} is not a cursor: {e}"))?)
            }
            "wait" => {
                let secs: u64 = v.parse().map_err(|_| format!("'wait' must be whole seconds, not {v:?}"))?;
                if secs > MAX_WAIT.as_secs() {
                    return Err(format!("'wait' is at most {} seconds", MAX_WAIT.as_secs()));
                }
                p.wait = Duration::from_secs(secs);
            }
            "limit" => {
                let n: usize =
                    v.parse().map_err(|_| format!("'limit' must be a positive integer, not {v:?}"))?;
                if n == 0 {
                    return Err("'limit' must be at least 1".into());
                }
                p.limit = n.min(MAX_LIMIT);
            }
            "hint" => p.hint = super::sse::flag("hint", &v)?,
            "token" => {}
            other => {
                return Err(format!(
                    "unknown query parameter '{other}' (expected channel, cursor, wait, limit, hint, token)"
                ))
            }
        }
    }
    Ok(p)
}

/// Ends the poll's session however the request ends (answered, failed or dropped mid-wait).
struct Closing(Option<Session>);

impl Drop for Closing {
    fn drop(&mut self) {
        if let Some(session) = self.0.take() {
            let tracker = session.app.tracker.clone();
            tracker.spawn(session.close());
        }
    }
}

/// `GET /v1/poll`.
pub async fn handler(
    State(app): State<Arc<App>>,
    Authenticated(identity): Authenticated,
    Extension(limits): Extension<Arc<HttpLimits>>,
    from: Option<Extension<ClientAddr>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    limits.history(&caller(&identity, from.map(|f| f.0 .0.ip())))?;
    let params = parse_query(query.as_deref()).map_err(ApiError::invalid)?;
    let (session, mut queue) = Session::open_stream(app, identity);
    let mut closing = Closing(Some(session));
    let session = closing.0.as_mut().expect("session");
    let group = session.authorize_group(params.channels).await?;
    let polled = session.poll(&group, &mut queue, params.cursor, params.wait, params.limit).await?;
    drop(closing);
    let entries =
        if params.hint { hint_entries(&polled.messages) } else { history_entries(&polled.messages) };
    let body = poll_body(&entries, &polled.cursor.to_string(), polled.more, polled.reset);
    Ok(([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body)
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_checked_value_by_value() {
        let c = "00000000000000100000000000000002";
        let p = parse_query(Some(&format!("channel=a&channel=b&cursor={c}&wait=3&limit=5000"))).unwrap();
        assert_eq!(
            p,
            PollParams {
                channels: vec!["a".into(), "b".into()],
                cursor: Some(c.parse().unwrap()),
                wait: Duration::from_secs(3),
                limit: MAX_LIMIT,
                hint: false
            }
        );
        let d = parse_query(Some("channel=a&cursor=")).unwrap();
        assert_eq!((d.cursor, d.wait, d.limit), (None, Duration::from_secs(25), 100));
        assert!(parse_query(Some("wait=61")).unwrap_err().contains("at most 60"));
        assert!(parse_query(Some("wait=1.5")).unwrap_err().contains("whole seconds"));
        assert!(parse_query(Some("limit=0")).unwrap_err().contains("at least 1"));
        assert!(parse_query(Some("cursor=zz")).unwrap_err().contains("not a cursor"));
        assert!(parse_query(Some("since=1")).unwrap_err().contains("unknown query parameter 'since'"));
    }
}
