//! One HTTP attempt: the envelope, the Standard Webhooks headers, the request, and what came
//! back as an [`Attempt`].
//!
//! Request: `POST <url>`, `content-type: application/json`, body
//! `{"id","channel","event","payload","created_at","sender":{"type","id"?}}`, headers
//! `webhook-id` (the message id, the same on every retry and for every URL: receivers dedupe
//! on it), `webhook-timestamp` (Unix seconds of this attempt), `webhook-signature`
//! (`v1,<base64>`, absent when the channel has no secret), `x-realtime-event`,
//! `x-realtime-channel`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::value::RawValue;

use super::retry::{parse_retry_after, Attempt};
use super::sign::SigningKey;
use super::target::{check_url, find_refusal};
use crate::pg::webhooks::{Claimed, ClaimedMessage};

/// Bytes of a failed response's body kept in `last_error`.
const DETAIL_BYTES: usize = 200;
/// Bytes of a response body read (so the connection can be reused) before it is dropped.
const DRAIN_BYTES: usize = 64 * 1024;

#[derive(Serialize)]
struct Sender<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    channel: &'a str,
    event: &'a str,
    payload: &'a RawValue,
    created_at: &'a str,
    sender: Sender<'a>,
}

/// The JSON body of a delivery.
pub fn envelope(id: &str, m: &ClaimedMessage) -> Result<Vec<u8>, serde_json::Error> {
    let payload: &RawValue = serde_json::from_str(&m.payload)?;
    serde_json::to_vec(&Envelope {
        id,
        channel: &m.channel,
        event: &m.event,
        payload,
        created_at: &m.created_at,
        sender: Sender { kind: &m.sender_type, id: m.sender_id.as_deref() },
    })
}

/// Settings of an attempt.
#[derive(Debug, Clone, Copy)]
pub struct SendSettings {
    pub timeout: Duration,
    pub allow_private: bool,
}

/// Sends one attempt of `c`. Returns what happened and how long the HTTP exchange took (None
/// when nothing was sent).
pub async fn attempt(client: &reqwest::Client, c: &Claimed, s: SendSettings) -> (Attempt, Option<Duration>) {
    let refused = |e: String| (Attempt::Refused(e), None);
    let Some(m) = &c.message else {
        return refused("message no longer exists (deleted by retention before it was delivered)".into());
    };
    if !c.channel_exists {
        return refused("the channel row was deleted before the message was delivered".into());
    }
    let url = match check_url(&c.url, s.allow_private) {
        Ok(url) => url,
        Err(e) => return refused(e.to_string()),
    };
    let key = match SigningKey::from_secret(c.secret.as_deref()) {
        Ok(key) => key,
        Err(e) => return refused(e.to_string()),
    };
    let body = match envelope(&c.message_id, m) {
        Ok(body) => body,
        Err(e) => return refused(format!("cannot encode the envelope: {e}")),
    };
    let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let mut request = client
        .post(url)
        .timeout(s.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &c.message_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("x-realtime-event", &m.event)
        .header("x-realtime-channel", &m.channel);
    if let Some(key) = key {
        request = request.header("webhook-signature", key.sign(&c.message_id, timestamp, &body));
    }
    let started = Instant::now();
    let response = match request.body(body).send().await {
        Ok(r) => r,
        Err(e) => return (classify_error(&e, s.timeout), Some(started.elapsed())),
    };
    let code = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let detail = read_body(response, (200..300).contains(&code)).await;
    (Attempt::Status { code, retry_after, detail }, Some(started.elapsed()))
}

/// Reads (part of) the body: the start of it as text for failures, and drains a success's so
/// the connection goes back to the pool.
async fn read_body(mut response: reqwest::Response, success: bool) -> String {
    let mut kept = Vec::new();
    let mut read = 0;
    while read < DRAIN_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                if !success && kept.len() < DETAIL_BYTES {
                    kept.extend_from_slice(&chunk[..chunk.len().min(DETAIL_BYTES - kept.len())]);
                }
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&kept).trim().to_string()
}

fn classify_error(e: &reqwest::Error, timeout: Duration) -> Attempt {
    if let Some(refusal) = find_refusal(e) {
        return Attempt::Refused(refusal.to_string());
    }
    if e.is_timeout() {
        return Attempt::Timeout(timeout);
    }
    if e.is_builder() {
        return Attempt::Refused(format!("cannot build the request: {}", chain(e)));
    }
    Attempt::Network(chain(e))
}

/// An error and its sources, `outer: inner: ...`.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut current = e.source();
    while let Some(inner) = current {
        let s = inner.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        current = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_the_documented_fields_and_keeps_the_payload_verbatim() {
        let m = ClaimedMessage {
            channel: "orders:1".into(),
            event: "created".into(),
            payload: r#"{"a": [1, 2]}"#.into(),
            created_at: "2026-11-23T10:00:00.000000Z".into(),
            sender_type: "system".into(),
            sender_id: None,
        };
        let body = String::from_utf8(envelope("0b5f…", &m).unwrap()).unwrap();
        assert_eq!(
            body,
            r#"{"id":"0b5f…","channel":"orders:1","event":"created","payload":{"a": [1, 2]},"created_at":"2026-11-23T10:00:00.000000Z","sender":{"type":"system"}}"#
        );
        let user = ClaimedMessage { sender_type: "user".into(), sender_id: Some("alice".into()), ..m };
        let body = String::from_utf8(envelope("x", &user).unwrap()).unwrap();
        assert!(body.ends_with(r#""sender":{"type":"user","id":"alice"}}"#), "{body}");
    }
}
