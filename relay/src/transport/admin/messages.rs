//! Messages page: `realtime.messages` by channel (a name, or a `%` pattern) and time, newest
//! first (by `created_at`, then id), paged by an opaque keyset cursor; and one message in full:
//! payload, sender, its stream cursor (from `realtime.commits`, once a relay has written it),
//! the three counts and its webhook deliveries.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::console::Console;
use super::error::AdminError;
use super::paging::{ask, split};
use crate::pg::admin::messages::{self as db, Detail, Filter};

/// Rows per page unless the page asks for fewer.
pub const DEFAULT_LIMIT: i64 = 50;
/// Most rows per page.
pub const MAX_LIMIT: i64 = 200;
/// Characters of payload shown in the list.
pub const PREVIEW_CHARS: i32 = 160;
/// Most webhook deliveries shown with one message.
pub const MAX_DELIVERIES: i64 = 100;

#[derive(Deserialize, Default)]
pub struct ListQuery {
    channel: Option<String>,
    /// Epoch milliseconds.
    from: Option<f64>,
    to: Option<f64>,
    /// `next` of the previous page.
    before: Option<String>,
    limit: Option<i64>,
}

/// Splits a page cursor `<epoch µs>_<uuid>`.
fn parse_before(before: &str) -> Result<(i64, String), AdminError> {
    let bad = || AdminError::invalid("before", "not a page cursor of this list");
    let (micros, id) = before.split_once('_').ok_or_else(bad)?;
    let micros = micros.parse::<i64>().map_err(|_| bad())?;
    let hex = id.chars().filter(|c| *c != '-').collect::<String>();
    if id.len() != 36 || hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok((micros, id.to_string()))
}

/// The channel filter: exact name, or a `%` pattern (then `_` and `\` are refused, as in
/// channel patterns, so `LIKE` means what it shows).
fn channel_filter(channel: Option<String>) -> Result<(Option<String>, bool), AdminError> {
    let Some(c) = channel.map(|c| c.trim().to_string()).filter(|c| !c.is_empty()) else {
        return Ok((None, false));
    };
    let pattern = c.contains('%');
    if pattern && c.contains(['_', '\\']) {
        return Err(AdminError::invalid("channel", "in a % pattern, '_' and '\\' are not allowed"));
    }
    Ok((Some(c), pattern))
}

/// `GET /admin/api/messages?channel=&from=&to=&before=&limit=`.
pub async fn list(
    State(c): State<Arc<Console>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, AdminError> {
    let (channel, pattern) = channel_filter(q.channel)?;
    let before = q.before.as_deref().filter(|b| !b.is_empty()).map(parse_before).transpose()?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let filter = Filter {
        channel: channel.as_deref(),
        pattern,
        from_ms: q.from,
        to_ms: q.to,
        before: before.as_ref().map(|(micros, id)| (*micros, id.as_str())),
        limit: ask(limit),
        preview_chars: PREVIEW_CHARS,
    };
    let (messages, more) = split(db::list(&c.app.pool, &filter).await?, limit);
    let next = match (more, messages.last()) {
        (true, Some(last)) => Some(format!("{}_{}", last.created_us, last.id)),
        _ => None,
    };
    Ok(Json(json!({"messages": messages, "next": next})))
}

/// `GET /admin/api/messages/{id}`.
pub async fn detail(
    State(c): State<Arc<Console>>,
    Path(id): Path<String>,
) -> Result<Json<Detail>, AdminError> {
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(AdminError::invalid("id", format!("'{id}' is not a message id (a UUID)")));
    }
    let found = db::detail(&c.app.pool, &id, MAX_DELIVERIES).await?;
    found.map(Json).ok_or_else(|| AdminError::NotFound(format!("no message {id}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_cursors_parse_and_junk_is_refused() {
        let id = "0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b";
        assert_eq!(
            parse_before(&format!("1700000000123456_{id}")).unwrap(),
            (1_700_000_000_123_456, id.into())
        );
        for bad in ["", "123", "x_0190a5b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b", "1_not-a-uuid", "1_'; DROP"] {
            assert!(parse_before(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channel_filters_are_names_or_percent_patterns() {
        assert_eq!(channel_filter(None).unwrap(), (None, false));
        assert_eq!(channel_filter(Some("  ".into())).unwrap(), (None, false));
        assert_eq!(channel_filter(Some("room:1".into())).unwrap(), (Some("room:1".into()), false));
        assert_eq!(channel_filter(Some("room:%".into())).unwrap(), (Some("room:%".into()), true));
        assert_eq!(channel_filter(Some("a_b".into())).unwrap(), (Some("a_b".into()), false));
        assert!(channel_filter(Some("a_%".into())).is_err());
    }
}
