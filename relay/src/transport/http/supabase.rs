//! Supabase Realtime's REST broadcast, for supabase-js `send()` without a socket and
//! `httpSend()` (see docs/supabase.md):
//!
//! * `POST /realtime/v1/api/broadcast` with `{"messages":[{"topic","event","payload",
//!   "private"?}]}`: each message an ephemeral broadcast to channel `topic`;
//! * `POST /realtime/v1/api/broadcast/{topic}/events/{event}` with the payload as the body
//!   (`?persist=true` stores it like a v1 `persist` publish).
//!
//! The key and token come as supabase-js sends them ([`ApiKey`]); each message passes the same
//! RLS publish check as a client's. Answers 202 with an empty body; refusals in Supabase's
//! shape, `{"error": "<message>", "code": "<REALTIME_...>"}` (supabase-js shows `error`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::Value;

use super::limits::{caller, HttpLimits};
use crate::app::App;
use crate::core::Identity;
use crate::service::publish::{ephemeral, persist, Outgoing, PublishChecks};
use crate::transport::auth::ApiKey;
use crate::transport::error::ApiError;
use crate::transport::listener::ClientAddr;

/// A refusal in Supabase's error shape.
pub struct Refused(ApiError);

impl<E: Into<ApiError>> From<E> for Refused {
    fn from(e: E) -> Self {
        Refused(e.into())
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.0.to_string(), "code": self.0.code()});
        (self.0.status(), Json(body)).into_response()
    }
}

type Body = Result<Json<Value>, axum::extract::rejection::JsonRejection>;

/// The messages of a batch body, each checked.
pub fn parse_batch(body: &Value, max_batch: usize) -> Result<Vec<Outgoing>, String> {
    let Some(Value::Array(list)) = body.get("messages") else {
        return Err("the body is {\"messages\": [{\"topic\", \"event\", \"payload\"}, ...]}".into());
    };
    if list.is_empty() || list.len() > max_batch {
        return Err(format!("'messages' has {} entries; send 1 to {max_batch}", list.len()));
    }
    let one = |v: &Value| -> Result<Outgoing, String> {
        let topic = v.get("topic").and_then(Value::as_str).ok_or("'topic' (string) is required")?;
        let event = v.get("event").and_then(Value::as_str).ok_or("'event' (string) is required")?;
        let payload = v.get("payload").cloned().unwrap_or_else(|| Value::Object(Default::default()));
        Outgoing::new(topic.into(), event.into(), payload).map_err(|e| e.to_string())
    };
    list.iter().enumerate().map(|(i, v)| one(v).map_err(|e| format!("messages[{i}]: {e}"))).collect()
}

/// The caller's HTTP publish rate, shared with `POST /v1/publish`.
fn limited(limits: &HttpLimits, who: &Identity, from: Option<Extension<ClientAddr>>) -> Result<(), ApiError> {
    Ok(limits.publish(&caller(who, from.map(|f| f.0 .0.ip())))?)
}

/// `POST /realtime/v1/api/broadcast`.
pub async fn batch(
    State(app): State<Arc<App>>,
    ApiKey(who, _): ApiKey,
    Extension(limits): Extension<Arc<HttpLimits>>,
    from: Option<Extension<ClientAddr>>,
    body: Body,
) -> Result<Response, Refused> {
    limited(&limits, &who, from)?;
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let messages = parse_batch(&body, app.config.max_batch).map_err(ApiError::invalid)?;
    let mut checks = PublishChecks::default();
    for m in messages {
        ephemeral(&app, &who, &mut checks, m).await?;
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

#[derive(Deserialize)]
pub struct SendParams {
    persist: Option<String>,
}

/// `POST /realtime/v1/api/broadcast/{topic}/events/{event}`.
pub async fn one(
    State(app): State<Arc<App>>,
    ApiKey(who, _): ApiKey,
    Extension(limits): Extension<Arc<HttpLimits>>,
    from: Option<Extension<ClientAddr>>,
    Path((topic, event)): Path<(String, String)>,
    Query(params): Query<SendParams>,
    body: Body,
) -> Result<Response, Refused> {
    limited(&limits, &who, from)?;
    let Json(payload) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let m = Outgoing::new(topic, event, payload)?;
    if params.persist.as_deref() == Some("true") {
        persist(&app, &who, vec![m]).await?;
    } else {
        ephemeral(&app, &who, &mut PublishChecks::default(), m).await?;
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn batch_bodies_as_supabase_js_sends_them() {
        let body =
            json!({"messages": [{"topic": "room", "event": "e", "payload": {"a": 1}, "private": false}]});
        let m = parse_batch(&body, 10).unwrap();
        assert_eq!(
            (m[0].channel.as_str(), m[0].event.as_str(), &m[0].payload),
            ("room", "e", &json!({"a": 1}))
        );
        assert!(parse_batch(&json!({}), 10).unwrap_err().contains("messages"));
        assert!(parse_batch(&json!({"messages": []}), 10).unwrap_err().contains("1 to 10"));
        assert_eq!(
            parse_batch(&json!({"messages": [{"event": "e"}]}), 10).unwrap_err(),
            "messages[0]: 'topic' (string) is required"
        );
    }

    #[tokio::test]
    async fn refusals_have_supabase_js_s_error_field() {
        let r = Refused::from(crate::service::ServiceError::Denied("no".into())).into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, json!({"error": "no", "code": "REALTIME_UNAUTHORIZED"}));
    }
}
