//! Server-to-client frames of protocol v1. Each function returns the frame's JSON text.

use serde::Serialize;
use serde_json::{value::RawValue, Value};

use crate::core::event::Message;
use crate::core::ErrorCode;

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: ErrorCode,
    message: &'a str,
}

#[derive(Serialize)]
struct Reply<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a Value>,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody<'a>>,
}

/// `{"type":"reply","ref":..,"ok":true,"channel":..,"cursor":..}`
pub fn reply_ok(reference: Option<&Value>, channel: Option<&str>, cursor: Option<&str>) -> String {
    let r = Reply { kind: "reply", reference, ok: true, channel, id: None, cursor, error: None };
    serde_json::to_string(&r).expect("reply serialises")
}

/// The reply to a publish: `id` and `cursor` for a persisted message, neither for an ephemeral one.
pub fn reply_published(
    reference: Option<&Value>,
    channel: &str,
    id: Option<&str>,
    cursor: Option<&str>,
) -> String {
    let r = Reply { kind: "reply", reference, ok: true, channel: Some(channel), id, cursor, error: None };
    serde_json::to_string(&r).expect("reply serialises")
}

/// `{"type":"reply","ref":..,"ok":false,"error":{"code":..,"message":..}}`
pub fn reply_error(reference: Option<&Value>, code: ErrorCode, message: &str) -> String {
    let r = Reply {
        kind: "reply",
        reference,
        ok: false,
        channel: None,
        id: None,
        cursor: None,
        error: Some(ErrorBody { code, message }),
    };
    serde_json::to_string(&r).expect("reply serialises")
}

/// `{"type":"unsubscribed","channel":..,"reason":{"code":..,"message":..}}`
pub fn unsubscribed(channel: &str, code: ErrorCode, message: &str) -> String {
    serde_json::json!({"type": "unsubscribed", "channel": channel, "reason": ErrorBody { code, message }})
        .to_string()
}

/// `{"type":"dropped","channel":..,"count":..}`: `count` ephemeral messages of the channel were
/// not delivered while the subscriber was behind.
pub fn dropped(channel: &str, count: u64) -> String {
    serde_json::json!({"type": "dropped", "channel": channel, "count": count}).to_string()
}

/// `{"type":"pong","ref":..}`
pub fn pong(reference: Option<&Value>) -> String {
    match reference {
        Some(r) => format!(r#"{{"type":"pong","ref":{r}}}"#),
        None => r#"{"type":"pong"}"#.to_string(),
    }
}

/// Who sent a message.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Sender<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
}

/// The fields of a `message` frame. `payload` is raw JSON text; `cursor`, `id` and
/// `created_at` are absent for ephemeral messages.
pub struct MessageFields<'a> {
    pub channel: &'a str,
    pub id: Option<&'a str>,
    pub cursor: Option<&'a str>,
    pub event: &'a str,
    pub payload: &'a str,
    pub sender: Sender<'a>,
    pub created_at: Option<&'a str>,
    pub replayed: bool,
}

#[derive(Serialize)]
struct MessageFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
    event: &'a str,
    payload: &'a RawValue,
    sender: &'a Sender<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
}

/// The payload as raw JSON: verbatim when it is valid JSON, else as a JSON string.
pub(crate) fn payload_json(payload: &str) -> std::borrow::Cow<'_, RawValue> {
    match serde_json::from_str::<&RawValue>(payload) {
        Ok(raw) => std::borrow::Cow::Borrowed(raw),
        Err(_) => std::borrow::Cow::Owned(
            RawValue::from_string(Value::String(payload.to_string()).to_string())
                .expect("a JSON string is valid JSON"),
        ),
    }
}

/// The frame fields of `m`, whose cursor is given as text.
pub fn fields<'a>(m: &'a Message, cursor: Option<&'a str>, replayed: bool) -> MessageFields<'a> {
    MessageFields {
        channel: &m.channel,
        id: m.id.as_deref(),
        cursor,
        event: &m.event,
        payload: &m.payload,
        sender: Sender { kind: &m.sender.kind, id: m.sender.id.as_deref() },
        created_at: m.created_at.as_deref(),
        replayed,
    }
}

#[derive(Serialize)]
struct HintFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
    event: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
}

/// The `hint` frame of `m` for a hint subscription: `{"type":"hint","channel","id","cursor",
/// "event"}`, never the payload (the client pulls it, after its cursor, when it wants it).
pub fn hint_of(m: &Message, replayed: bool) -> String {
    let cursor = m.cursor.map(|c| c.to_string());
    let h = HintFrame {
        kind: "hint",
        channel: &m.channel,
        id: m.id.as_deref(),
        cursor: cursor.as_deref(),
        event: &m.event,
        replayed,
    };
    serde_json::to_string(&h).expect("hint serialises")
}

/// The `message` frame of `m` (`replayed: true` for resume replays).
pub fn message_of(m: &Message, replayed: bool) -> String {
    let cursor = m.cursor.map(|c| c.to_string());
    message(&fields(m, cursor.as_deref(), replayed))
}

/// Encodes a `message` frame. A payload that is not valid JSON is sent as a JSON string
/// rather than dropped.
pub fn message(m: &MessageFields<'_>) -> String {
    let payload = payload_json(m.payload);
    let frame = MessageFrame {
        kind: "message",
        channel: m.channel,
        id: m.id,
        cursor: m.cursor,
        event: m.event,
        payload: &payload,
        sender: &m.sender,
        created_at: m.created_at,
        replayed: m.replayed,
    };
    serde_json::to_string(&frame).expect("message serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reply_ok_echoes_ref_and_cursor() {
        let v: Value = serde_json::from_str(&reply_ok(Some(&json!(1)), Some("c"), Some("00"))).unwrap();
        assert_eq!(v, json!({"type":"reply","ref":1,"ok":true,"channel":"c","cursor":"00"}));
    }

    #[test]
    fn reply_error_carries_code() {
        let v: Value =
            serde_json::from_str(&reply_error(Some(&json!("x")), ErrorCode::Unauthorized, "no")).unwrap();
        assert_eq!(
            v,
            json!({"type":"reply","ref":"x","ok":false,"error":{"code":"REALTIME_UNAUTHORIZED","message":"no"}})
        );
        let v: Value = serde_json::from_str(&reply_error(None, ErrorCode::InternalError, "boom")).unwrap();
        assert_eq!(v["error"]["code"], "INTERNAL_ERROR");
    }

    #[test]
    fn reply_published_carries_id_and_cursor() {
        let v: Value =
            serde_json::from_str(&reply_published(Some(&json!(3)), "c", Some("u"), Some("0f"))).unwrap();
        assert_eq!(v, json!({"type":"reply","ref":3,"ok":true,"channel":"c","id":"u","cursor":"0f"}));
        let v: Value = serde_json::from_str(&reply_published(None, "c", None, None)).unwrap();
        assert_eq!(v, json!({"type":"reply","ok":true,"channel":"c"}));
    }

    #[test]
    fn unsubscribed_names_channel_and_reason() {
        let v: Value =
            serde_json::from_str(&unsubscribed("c", ErrorCode::Unauthorized, "access revoked")).unwrap();
        assert_eq!(
            v,
            json!({"type":"unsubscribed","channel":"c","reason":{"code":"REALTIME_UNAUTHORIZED","message":"access revoked"}})
        );
    }

    #[test]
    fn dropped_names_channel_and_count() {
        let v: Value = serde_json::from_str(&dropped("c", 3)).unwrap();
        assert_eq!(v, json!({"type":"dropped","channel":"c","count":3}));
    }

    #[test]
    fn a_hint_names_the_message_but_never_carries_its_payload() {
        let m = Message {
            channel: "c".into(),
            id: Some("u".into()),
            cursor: Some("00000000000000100000000000000002".parse().unwrap()),
            event: "e".into(),
            payload: r#"{"secret":1}"#.into(),
            sender: crate::core::event::Sender { kind: "system".into(), id: None },
            created_at: Some("t".into()),
        };
        let v: Value = serde_json::from_str(&hint_of(&m, false)).unwrap();
        assert_eq!(
            v,
            json!({"type":"hint","channel":"c","id":"u","cursor":"00000000000000100000000000000002","event":"e"})
        );
        assert_eq!(serde_json::from_str::<Value>(&hint_of(&m, true)).unwrap()["replayed"], true);
    }

    #[test]
    fn pong_with_and_without_ref() {
        assert_eq!(pong(Some(&json!(8))), r#"{"type":"pong","ref":8}"#);
        assert_eq!(pong(Some(&json!("q\"x"))), r#"{"type":"pong","ref":"q\"x"}"#);
        assert_eq!(pong(None), r#"{"type":"pong"}"#);
    }

    #[test]
    fn message_embeds_payload_verbatim() {
        let s = message(&MessageFields {
            channel: "order:1",
            id: Some("u-1"),
            cursor: Some("0a"),
            event: "created",
            payload: r#"{"a": [1, 2]}"#,
            sender: Sender { kind: "system", id: None },
            created_at: Some("2026-11-23T10:00:00Z"),
            replayed: false,
        });
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v,
            json!({"type":"message","channel":"order:1","id":"u-1","cursor":"0a","event":"created",
                   "payload":{"a":[1,2]},"sender":{"type":"system"},"created_at":"2026-11-23T10:00:00Z"})
        );
    }

    #[test]
    fn ephemeral_message_has_no_cursor_and_bad_payload_becomes_string() {
        let s = message(&MessageFields {
            channel: "c",
            id: None,
            cursor: None,
            event: "typing",
            payload: "not json",
            sender: Sender { kind: "user", id: Some("alice") },
            created_at: None,
            replayed: false,
        });
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v,
            json!({"type":"message","channel":"c","event":"typing","payload":"not json","sender":{"type":"user","id":"alice"}})
        );
    }
}
