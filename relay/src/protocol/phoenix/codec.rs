//! The Phoenix channel frame codec Supabase Realtime speaks (sans-IO): client frames in, server
//! frames out, for both serializers.
//!
//! * `vsn=1.0.0`: every frame is a JSON object `{"join_ref","ref","topic","event","payload"}`.
//! * `vsn=2.0.0`: text frames are JSON arrays `[join_ref, ref, topic, event, payload]`, plus
//!   binary frames for broadcasts (byte layouts of realtime-js `lib/serializer.ts`):
//!   - kind 3 `user_broadcast_push` (client → server):
//!     `[3, join_ref_len, ref_len, topic_len, event_len, meta_len, encoding, join_ref, ref,
//!     topic, event, meta, payload]`, encoding 0 = binary payload, 1 = JSON;
//!   - kind 4 `user_broadcast` (server → client):
//!     `[4, topic_len, event_len, meta_len, encoding, topic, event, meta, payload]`.

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::core::frame::WireFrame;

/// The serializer a connection asked for (`?vsn=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vsn {
    /// `1.0.0`: JSON objects.
    V1,
    /// `2.0.0`: JSON arrays and binary broadcasts.
    V2,
}

impl Vsn {
    /// The serializer of a `vsn` query value (Supabase's server defaults to 1.0.0).
    pub fn parse(v: Option<&str>) -> Result<Vsn, String> {
        match v {
            None | Some("1.0.0") => Ok(Vsn::V1),
            Some("2.0.0") => Ok(Vsn::V2),
            Some(other) => Err(format!("unsupported serializer vsn '{other}': use 1.0.0 or 2.0.0")),
        }
    }
}

/// Binary frame kinds.
const KIND_PUSH: u8 = 3;
const KIND_BROADCAST: u8 = 4;
const ENCODING_BINARY: u8 = 0;
const ENCODING_JSON: u8 = 1;

/// One client frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub join_ref: Option<String>,
    pub reference: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

/// A client frame that could not be read, with what of its address could be (to reply to it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FrameError {
    pub join_ref: Option<String>,
    pub reference: Option<String>,
    pub topic: Option<String>,
    pub message: String,
}

fn bad(message: impl Into<String>) -> FrameError {
    FrameError { join_ref: None, reference: None, topic: None, message: message.into() }
}

/// A ref as the client sent it: a string, a number (taken as its text) or null.
fn ref_of(v: Option<&Value>, what: &str) -> Result<Option<String>, FrameError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(bad(format!("'{what}' must be a string or null"))),
    }
}

/// Reads one text frame.
pub fn parse_text(vsn: Vsn, text: &str) -> Result<Frame, FrameError> {
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("the frame is not JSON: {e}")))?;
    let (join_ref, reference, topic, event, payload) = match (vsn, v) {
        (Vsn::V1, Value::Object(mut o)) => (
            o.get("join_ref").cloned(),
            o.get("ref").cloned(),
            o.remove("topic"),
            o.remove("event"),
            o.remove("payload"),
        ),
        (Vsn::V2, Value::Array(a)) if a.len() == 5 => {
            let mut it = a.into_iter();
            let mut next = || it.next();
            (next(), next(), next(), next(), next())
        }
        (Vsn::V1, _) => {
            return Err(bad("vsn 1.0.0 frames are JSON objects {join_ref, ref, topic, event, payload}"))
        }
        (Vsn::V2, _) => {
            return Err(bad("vsn 2.0.0 text frames are JSON arrays [join_ref, ref, topic, event, payload]"))
        }
    };
    let join_ref = ref_of(join_ref.as_ref(), "join_ref")?;
    let reference = ref_of(reference.as_ref(), "ref")?;
    let addressed = |message: &str| FrameError {
        join_ref: join_ref.clone(),
        reference: reference.clone(),
        topic: None,
        message: message.into(),
    };
    let Some(Value::String(topic)) = topic else { return Err(addressed("'topic' must be a string")) };
    let Some(Value::String(event)) = event else {
        return Err(FrameError { topic: Some(topic), ..addressed("'event' must be a string") });
    };
    let payload = match payload {
        Some(p @ Value::Object(_)) => p,
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(_) => return Err(FrameError { topic: Some(topic), ..addressed("'payload' must be an object") }),
    };
    Ok(Frame { join_ref, reference, topic, event, payload })
}

/// Reads one binary frame: only kind 3 (`user_broadcast_push`) with a JSON payload, which
/// becomes the `broadcast` frame `{type:"broadcast", event, payload}` a text client sends.
pub fn parse_binary(vsn: Vsn, data: &[u8]) -> Result<Frame, FrameError> {
    if vsn == Vsn::V1 {
        return Err(bad("binary frames need vsn 2.0.0"));
    }
    match data.first() {
        Some(&KIND_PUSH) => {}
        Some(k) => {
            return Err(bad(format!("binary frame kind {k} is not accepted (only 3, user_broadcast_push)")))
        }
        None => return Err(bad("empty binary frame")),
    }
    const HEADER: usize = 7;
    if data.len() < HEADER {
        return Err(bad("binary frame shorter than its header"));
    }
    let lens = [data[1], data[2], data[3], data[4], data[5]].map(usize::from);
    let encoding = data[6];
    let body = &data[HEADER..];
    let total: usize = lens.iter().sum();
    if body.len() < total {
        return Err(bad("binary frame shorter than the lengths in its header"));
    }
    let mut parts = Vec::with_capacity(5);
    let mut at = 0;
    for len in lens {
        let text = std::str::from_utf8(&body[at..at + len])
            .map_err(|_| bad("binary frame header field is not UTF-8"))?;
        parts.push(text.to_string());
        at += len;
    }
    let [join_ref, reference, topic, event, meta]: [String; 5] = parts.try_into().expect("five fields");
    let some = |s: String| (!s.is_empty()).then_some(s);
    let (join_ref, reference) = (some(join_ref), some(reference));
    let addressed = |message: String| FrameError {
        join_ref: join_ref.clone(),
        reference: reference.clone(),
        topic: Some(topic.clone()),
        message,
    };
    let payload: Value = match encoding {
        ENCODING_JSON => serde_json::from_slice(&body[at..])
            .map_err(|e| addressed(format!("broadcast payload is not JSON: {e}")))?,
        ENCODING_BINARY => {
            return Err(addressed("binary broadcast payloads are not supported; send JSON".into()))
        }
        other => return Err(addressed(format!("unknown payload encoding {other}"))),
    };
    let mut out = serde_json::json!({"type": "broadcast", "event": event, "payload": payload});
    if !meta.is_empty() {
        let meta: Value = serde_json::from_str(&meta)
            .map_err(|e| addressed(format!("broadcast metadata is not JSON: {e}")))?;
        if let (Value::Object(o), Value::Object(m)) = (&mut out, meta) {
            o.extend(m);
        }
    }
    Ok(Frame { join_ref, reference, topic, event: "broadcast".into(), payload: out })
}

/// A server frame whose payload is JSON text.
pub fn message(
    vsn: Vsn,
    join_ref: Option<&str>,
    reference: Option<&str>,
    topic: &str,
    event: &str,
    payload: &str,
) -> String {
    let s = |v: Option<&str>| serde_json::to_string(&v).expect("serialises");
    let (topic, event) = (s(Some(topic)), s(Some(event)));
    match vsn {
        Vsn::V1 => format!(
            r#"{{"join_ref":{},"ref":{},"topic":{topic},"event":{event},"payload":{payload}}}"#,
            s(join_ref),
            s(reference)
        ),
        Vsn::V2 => format!("[{},{},{topic},{event},{payload}]", s(join_ref), s(reference)),
    }
}

/// `phx_reply` with `{"status": .., "response": ..}`.
pub fn reply(
    vsn: Vsn,
    join_ref: Option<&str>,
    reference: Option<&str>,
    topic: &str,
    ok: bool,
    response: &str,
) -> String {
    let status = if ok { "ok" } else { "error" };
    let payload = format!(r#"{{"status":"{status}","response":{response}}}"#);
    message(vsn, join_ref, reference, topic, "phx_reply", &payload)
}

/// An error reply `{"status":"error","response":{"reason": ..}}`.
pub fn error_reply(
    vsn: Vsn,
    join_ref: Option<&str>,
    reference: Option<&str>,
    topic: &str,
    reason: &str,
) -> String {
    let response = serde_json::json!({ "reason": reason }).to_string();
    reply(vsn, join_ref, reference, topic, false, &response)
}

/// The payload text as JSON (text that is not JSON is sent as a JSON string).
pub fn raw_json(payload: &str) -> std::borrow::Cow<'_, RawValue> {
    match serde_json::from_str::<&RawValue>(payload) {
        Ok(raw) => std::borrow::Cow::Borrowed(raw),
        Err(_) => std::borrow::Cow::Owned(
            RawValue::from_string(Value::String(payload.to_string()).to_string())
                .expect("a JSON string is JSON"),
        ),
    }
}

/// A broadcast to the client: a kind 4 binary frame on vsn 2.0.0 (text when the topic or
/// event is over 255 bytes), else the `broadcast` text frame
/// `{"type":"broadcast","event":..,"payload":..[,"meta":..]}`.
pub fn broadcast(vsn: Vsn, topic: &str, event: &str, payload: &str, meta: Option<&str>) -> WireFrame {
    let payload = raw_json(payload);
    let fits = topic.len() <= 255 && event.len() <= 255 && meta.is_none_or(|m| m.len() <= 255);
    if vsn == Vsn::V2 && fits {
        let meta = meta.unwrap_or("");
        let mut b = Vec::with_capacity(5 + topic.len() + event.len() + meta.len() + payload.get().len());
        b.extend_from_slice(&[
            KIND_BROADCAST,
            topic.len() as u8,
            event.len() as u8,
            meta.len() as u8,
            ENCODING_JSON,
        ]);
        b.extend_from_slice(topic.as_bytes());
        b.extend_from_slice(event.as_bytes());
        b.extend_from_slice(meta.as_bytes());
        b.extend_from_slice(payload.get().as_bytes());
        return WireFrame::Binary(Bytes::from(b));
    }
    let event = serde_json::to_string(event).expect("serialises");
    let meta = meta.map(|m| format!(r#","meta":{m}"#)).unwrap_or_default();
    let body = format!(r#"{{"type":"broadcast","event":{event},"payload":{}{meta}}}"#, payload.get());
    WireFrame::text(message(vsn, None, None, topic, "broadcast", &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A kind 3 frame laid out as realtime-js `_encodeUserBroadcastPush` does.
    fn push(
        join_ref: &str,
        r: &str,
        topic: &str,
        event: &str,
        meta: &str,
        enc: u8,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut b = vec![
            3,
            join_ref.len() as u8,
            r.len() as u8,
            topic.len() as u8,
            event.len() as u8,
            meta.len() as u8,
            enc,
        ];
        for s in [join_ref, r, topic, event, meta] {
            b.extend_from_slice(s.as_bytes());
        }
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn vsn_query_values() {
        assert_eq!(Vsn::parse(None), Ok(Vsn::V1));
        assert_eq!(Vsn::parse(Some("1.0.0")), Ok(Vsn::V1));
        assert_eq!(Vsn::parse(Some("2.0.0")), Ok(Vsn::V2));
        assert!(Vsn::parse(Some("3.0.0")).unwrap_err().contains("unsupported"));
    }

    #[test]
    fn text_frames_of_both_serializers() {
        let v1 = r#"{"topic":"realtime:room","event":"phx_join","payload":{"config":{}},"ref":"1","join_ref":"1"}"#;
        let v2 = r#"["1","1","realtime:room","phx_join",{"config":{}}]"#;
        for (vsn, text) in [(Vsn::V1, v1), (Vsn::V2, v2)] {
            let f = parse_text(vsn, text).unwrap();
            assert_eq!(f.join_ref.as_deref(), Some("1"));
            assert_eq!(f.reference.as_deref(), Some("1"));
            assert_eq!((f.topic.as_str(), f.event.as_str()), ("realtime:room", "phx_join"));
            assert_eq!(f.payload, json!({"config": {}}));
        }
        let hb = parse_text(Vsn::V2, r#"[null,"7","phoenix","heartbeat",{}]"#).unwrap();
        assert_eq!((hb.join_ref, hb.reference.as_deref()), (None, Some("7")));
        let numeric =
            parse_text(Vsn::V1, r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":3}"#).unwrap();
        assert_eq!(numeric.reference.as_deref(), Some("3"));
    }

    #[test]
    fn malformed_text_frames_say_what_is_wrong_and_keep_the_address_they_could_read() {
        assert!(parse_text(Vsn::V1, "nope").unwrap_err().message.contains("not JSON"));
        assert!(parse_text(Vsn::V1, "[1,2,3,4,5]").unwrap_err().message.contains("JSON objects"));
        assert!(parse_text(Vsn::V2, "{}").unwrap_err().message.contains("JSON arrays"));
        assert!(parse_text(Vsn::V2, r#"["1","2","t","e"]"#).unwrap_err().message.contains("JSON arrays"));
        let e = parse_text(Vsn::V2, r#"["1","2","t",5,{}]"#).unwrap_err();
        assert_eq!((e.reference.as_deref(), e.topic.as_deref()), (Some("2"), Some("t")));
        assert_eq!(e.message, "'event' must be a string");
        let e = parse_text(Vsn::V2, r#"["1","2","t","e",[1]]"#).unwrap_err();
        assert_eq!(e.message, "'payload' must be an object");
        assert!(parse_text(Vsn::V2, r#"[{},"2","t","e",{}]"#).unwrap_err().message.contains("join_ref"));
    }

    #[test]
    fn binary_user_broadcast_push_becomes_a_broadcast_frame() {
        let b = push("1", "2", "realtime:room", "chat", "", 1, r#"{"text":"hé"}"#.as_bytes());
        let f = parse_binary(Vsn::V2, &b).unwrap();
        assert_eq!((f.join_ref.as_deref(), f.reference.as_deref()), (Some("1"), Some("2")));
        assert_eq!((f.topic.as_str(), f.event.as_str()), ("realtime:room", "broadcast"));
        assert_eq!(f.payload, json!({"type": "broadcast", "event": "chat", "payload": {"text": "hé"}}));
        let with_meta = push("", "", "realtime:ü", "e", r#"{"persist":true}"#, 1, b"[1]");
        let f = parse_binary(Vsn::V2, &with_meta).unwrap();
        assert_eq!((f.join_ref, f.reference), (None, None));
        assert_eq!(f.topic, "realtime:ü");
        assert_eq!(f.payload, json!({"type": "broadcast", "event": "e", "payload": [1], "persist": true}));
    }

    #[test]
    fn bad_binary_frames_are_refused_with_a_reason() {
        assert!(parse_binary(Vsn::V1, &[3]).unwrap_err().message.contains("vsn 2.0.0"));
        assert!(parse_binary(Vsn::V2, &[]).unwrap_err().message.contains("empty"));
        assert!(parse_binary(Vsn::V2, &[4, 0, 0]).unwrap_err().message.contains("kind 4"));
        assert!(parse_binary(Vsn::V2, &[3, 0, 0]).unwrap_err().message.contains("header"));
        assert!(parse_binary(Vsn::V2, &[3, 9, 0, 0, 0, 0, 1, b'a']).unwrap_err().message.contains("lengths"));
        let e = parse_binary(Vsn::V2, &push("1", "2", "t", "e", "", 0, b"\x00\x01")).unwrap_err();
        assert_eq!((e.reference.as_deref(), e.topic.as_deref()), (Some("2"), Some("t")));
        assert!(e.message.contains("binary broadcast payloads"));
        assert!(parse_binary(Vsn::V2, &push("1", "2", "t", "e", "", 1, b"{"))
            .unwrap_err()
            .message
            .contains("not JSON"));
        assert!(parse_binary(Vsn::V2, &push("1", "2", "t", "e", "", 7, b"{}"))
            .unwrap_err()
            .message
            .contains("encoding 7"));
        assert!(parse_binary(Vsn::V2, &push("1", "2", "t", "e", "{", 1, b"{}"))
            .unwrap_err()
            .message
            .contains("metadata"));
        let mut not_utf8 = push("1", "2", "t", "e", "", 1, b"{}");
        not_utf8[9] = 0xff;
        assert!(parse_binary(Vsn::V2, &not_utf8).unwrap_err().message.contains("UTF-8"));
    }

    #[test]
    fn replies_and_messages_in_both_serializers() {
        assert_eq!(
            reply(Vsn::V1, Some("1"), Some("2"), "realtime:r", true, "{}"),
            r#"{"join_ref":"1","ref":"2","topic":"realtime:r","event":"phx_reply","payload":{"status":"ok","response":{}}}"#
        );
        assert_eq!(
            error_reply(Vsn::V2, None, Some("9"), "phoenix", "no \"x\""),
            r#"[null,"9","phoenix","phx_reply",{"status":"error","response":{"reason":"no \"x\""}}]"#
        );
        assert_eq!(
            message(Vsn::V2, None, None, "t", "presence_state", "{}"),
            r#"[null,null,"t","presence_state",{}]"#
        );
    }

    #[test]
    fn broadcasts_are_kind_4_binary_on_v2_and_text_otherwise() {
        let WireFrame::Binary(b) = broadcast(Vsn::V2, "realtime:ü", "e", r#"{"a":1}"#, None) else {
            panic!("binary")
        };
        let mut want = vec![4, 11, 1, 0, 1];
        want.extend_from_slice("realtime:üe".as_bytes());
        want.extend_from_slice(br#"{"a":1}"#);
        assert_eq!(&b[..], &want[..]);
        let WireFrame::Binary(b) = broadcast(Vsn::V2, "t", "e", "1", Some(r#"{"id":"x"}"#)) else {
            panic!("binary")
        };
        assert_eq!(&b[..5], &[4, 1, 1, 10, 1]);
        assert_eq!(&b[5..], br#"te{"id":"x"}1"#);
        let WireFrame::Text(t) = broadcast(Vsn::V1, "t", "e", "not json", None) else { panic!("text") };
        assert_eq!(
            t.as_str(),
            r#"{"join_ref":null,"ref":null,"topic":"t","event":"broadcast","payload":{"type":"broadcast","event":"e","payload":"not json"}}"#
        );
        let long = "e".repeat(256);
        let WireFrame::Text(t) = broadcast(Vsn::V2, "t", &long, "{}", Some("{}")) else {
            panic!("text fallback")
        };
        assert!(t.as_str().starts_with(r#"[null,null,"t","broadcast",{"type":"broadcast""#));
        assert!(t.as_str().ends_with(r#","meta":{}}]"#));
    }
}
