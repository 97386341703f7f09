//! `POST /v1/publish`: server-side publishing. Body `{channel, event, payload}` or
//! `{messages: [{channel, event, payload}, ...]}` (a batch: all or nothing, one transaction).
//! A service-role token publishes as the system; other roles are checked by RLS like a client
//! `publish` frame. Answers `{"messages":[{"id","channel","cursor"}]}`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::limits::{caller, HttpLimits};
use crate::app::App;
use crate::metrics::{Kind, PublishOutcome};
use crate::service::publish::{persist, Outgoing};
use crate::service::ServiceError;
use crate::transport::auth::Authenticated;
use crate::transport::error::ApiError;
use crate::transport::listener::ClientAddr;

fn one(v: &Value) -> Result<Outgoing, String> {
    let Value::Object(o) = v else { return Err("each message must be a JSON object".into()) };
    let channel = o.get("channel").and_then(Value::as_str).ok_or("'channel' (string) is required")?;
    let event = o.get("event").and_then(Value::as_str).ok_or("'event' (string) is required")?;
    let payload = o.get("payload").cloned().unwrap_or_else(|| json!({}));
    Outgoing::new(channel.into(), event.into(), payload).map_err(|e| e.to_string())
}

/// Parses the body into messages, checking each.
pub fn parse_body(body: &Value, max_batch: usize) -> Result<Vec<Outgoing>, String> {
    match body.get("messages") {
        Some(Value::Array(list)) => {
            if list.is_empty() {
                return Err("'messages' must not be empty".into());
            }
            if list.len() > max_batch {
                return Err(format!("'messages' has {} entries; the limit is {max_batch}", list.len()));
            }
            list.iter().enumerate().map(|(i, v)| one(v).map_err(|e| format!("messages[{i}]: {e}"))).collect()
        }
        Some(_) => Err("'messages' must be an array".into()),
        None => one(body).map(|m| vec![m]),
    }
}

/// `POST /v1/publish`.
pub async fn handler(
    State(app): State<Arc<App>>,
    Authenticated(who): Authenticated,
    Extension(limits): Extension<Arc<HttpLimits>>,
    from: Option<Extension<ClientAddr>>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    limits.publish(&caller(&who, from.map(|f| f.0 .0.ip()))).inspect_err(|_| {
        app.metrics.published(Kind::Stored, PublishOutcome::RateLimited);
    })?;
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let messages = parse_body(&body, app.config.max_batch).map_err(ApiError::invalid)?;
    let channels: Vec<String> = messages.iter().map(|m| m.channel.clone()).collect();
    let done = persist(&app, &who, messages).await.inspect_err(|e| {
        if let ServiceError::Internal(_) = e {
            tracing::warn!(error = %e, "HTTP publish failed");
        }
    })?;
    let list: Vec<Value> = done
        .iter()
        .zip(channels)
        .map(
            |(p, channel)| json!({"id": p.id, "channel": channel, "cursor": p.cursor.map(|c| c.to_string())}),
        )
        .collect();
    Ok(Json(json!({ "messages": list })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_message_body_parses() {
        let m = parse_body(&json!({"channel":"c","event":"e","payload":{"a":1}}), 10).unwrap();
        assert_eq!((m.len(), m[0].channel.as_str(), &m[0].payload), (1, "c", &json!({"a":1})));
    }

    #[test]
    fn batch_limits_and_bad_entries_are_named() {
        let body = json!({"messages":[{"channel":"c","event":"e"},{"channel":"c"}]});
        assert_eq!(parse_body(&body, 10).unwrap_err(), "messages[1]: 'event' (string) is required");
        let body = json!({"messages":[{"channel":"c","event":"e"},{"channel":"c","event":"e"}]});
        assert!(parse_body(&body, 1).unwrap_err().contains("limit is 1"));
        assert!(parse_body(&json!({"messages":[]}), 10).is_err());
        assert!(parse_body(&json!({"messages":{}}), 10).is_err());
    }
}
