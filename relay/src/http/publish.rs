//! `POST /v1/publish`: server-side publishing. Body `{channel, event, payload}` or
//! `{messages: [{channel, event, payload}, ...]}` (a batch: all or nothing, one transaction).
//! A service-role token publishes as the system; other roles are checked by RLS like a client
//! `publish` frame. Answers `{"messages":[{"id","channel","cursor"}]}`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::AuthError;
use crate::pg::publish::PublishError;
use crate::protocol::{validate_channel, ErrorCode};
use crate::publish::{self, Outgoing};
use crate::server::App;

#[derive(Deserialize)]
pub struct TokenParam {
    token: Option<String>,
}

/// A JSON error response `{"error":{"code","message"}}`.
pub fn error(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// The HTTP answer to a refused token.
pub fn auth_error(e: &AuthError) -> Response {
    error(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, &e.to_string())
}

fn one(v: &Value) -> Result<Outgoing, String> {
    let Value::Object(o) = v else { return Err("each message must be a JSON object".into()) };
    let channel = o.get("channel").and_then(Value::as_str).ok_or("'channel' (string) is required")?;
    validate_channel(channel)?;
    let event = o.get("event").and_then(Value::as_str).ok_or("'event' (string) is required")?;
    if event.is_empty() || event.len() > 255 {
        return Err("'event' must be 1 to 255 bytes".into());
    }
    let payload = o.get("payload").cloned().unwrap_or_else(|| json!({}));
    Ok(Outgoing { channel: channel.into(), event: event.into(), payload })
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

pub async fn handler(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<TokenParam>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let token = crate::ws::token_from(&headers, q.token.as_deref());
    let who = match token.and_then(|t| app.auth.authenticate(t)) {
        Ok(id) => id,
        Err(e) => return auth_error(&e),
    };
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, &e.body_text()),
    };
    let messages = match parse_body(&body, app.config.max_batch) {
        Ok(m) => m,
        Err(e) => return error(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, &e),
    };
    let channels: Vec<String> = messages.iter().map(|m| m.channel.clone()).collect();
    match publish::persist(&app, &who, messages).await {
        Ok(done) => {
            let list: Vec<Value> = done
                .iter()
                .zip(channels)
                .map(|(p, channel)| json!({"id": p.id, "channel": channel, "cursor": p.cursor}))
                .collect();
            (StatusCode::OK, Json(json!({ "messages": list }))).into_response()
        }
        Err(e) => {
            let (status, code) = match &e {
                PublishError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
                PublishError::Unauthorized { .. } => (StatusCode::FORBIDDEN, ErrorCode::Unauthorized),
                PublishError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
                PublishError::Pg(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::InternalError),
            };
            let message = match &e {
                PublishError::Pg(p) => {
                    tracing::warn!(error = %e, "HTTP publish failed");
                    p.client_message()
                }
                other => other.to_string(),
            };
            error(status, code, &message)
        }
    }
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
