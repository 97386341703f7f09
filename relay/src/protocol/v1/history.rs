//! Frames of history and resume: the history reply with its message objects, and `reset`.
//! (The subscribe reply, with `recovered` on a resume, is `super::presence::subscribe_reply`.)

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::frames::{fields, MessageFields, Sender};
use crate::core::event::Message;

#[derive(Serialize)]
struct Entry<'a> {
    channel: &'a str,
    id: Option<&'a str>,
    cursor: Option<&'a str>,
    event: &'a str,
    payload: &'a RawValue,
    sender: &'a Sender<'a>,
    created_at: Option<&'a str>,
}

/// One history message object: exactly the body of the live `message` frame of the same
/// message (without `type`), so clients can merge the two.
pub fn history_entry(m: &MessageFields<'_>) -> Box<RawValue> {
    let payload = super::frames::payload_json(m.payload);
    let e = Entry {
        channel: m.channel,
        id: m.id,
        cursor: m.cursor,
        event: m.event,
        payload: &payload,
        sender: &m.sender,
        created_at: m.created_at,
    };
    serde_json::value::to_raw_value(&e).expect("history entry serialises")
}

#[derive(Serialize)]
struct HistoryReply<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a Value>,
    ok: bool,
    messages: &'a [Box<RawValue>],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    more: bool,
}

/// The history objects of `messages`.
pub fn history_entries(messages: &[Message]) -> Vec<Box<RawValue>> {
    messages
        .iter()
        .map(|m| {
            let cursor = m.cursor.map(|c| c.to_string());
            history_entry(&fields(m, cursor.as_deref(), false))
        })
        .collect()
}

/// `{"type":"reply","ref":..,"ok":true,"messages":[..]}`, with `"more":true` when the page was
/// cut by its `limit` or its byte bound and older messages may follow.
pub fn history_reply(reference: Option<&Value>, messages: &[Box<RawValue>], more: bool) -> String {
    let r = HistoryReply { kind: "reply", reference, ok: true, messages, more };
    serde_json::to_string(&r).expect("history reply serialises")
}

/// `{"messages":[..]}`, the HTTP history body (with `"more":true` like [`history_reply`]).
pub fn history_body(messages: &[Box<RawValue>], more: bool) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        messages: &'a [Box<RawValue>],
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    }
    serde_json::to_string(&Body { messages, more }).expect("history body serialises")
}

/// The objects of `messages` for a hint poll: `{channel, id, cursor, event}`, never the payload.
pub fn hint_entries(messages: &[Message]) -> Vec<Box<RawValue>> {
    #[derive(Serialize)]
    struct Hint<'a> {
        channel: &'a str,
        id: Option<&'a str>,
        cursor: Option<String>,
        event: &'a str,
    }
    messages
        .iter()
        .map(|m| {
            let h = Hint {
                channel: &m.channel,
                id: m.id.as_deref(),
                cursor: m.cursor.map(|c| c.to_string()),
                event: &m.event,
            };
            serde_json::value::to_raw_value(&h).expect("hint entry serialises")
        })
        .collect()
}

/// The long-poll body: `{"messages":[..],"cursor":..}` with `"more":true` when more follow at
/// once, or `{"reset":true,"messages":[],"cursor":..}` when the cursor could not be honoured.
pub fn poll_body(messages: &[Box<RawValue>], cursor: &str, more: bool, reset: bool) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        reset: bool,
        messages: &'a [Box<RawValue>],
        cursor: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    }
    serde_json::to_string(&Body { reset, messages, cursor, more }).expect("poll body serialises")
}

/// `{"type":"reset","channel":..,"cursor":..}`
pub fn reset(channel: &str, cursor: Option<&str>) -> String {
    serde_json::json!({"type": "reset", "channel": channel, "cursor": cursor}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::v1::frames::message;
    use serde_json::json;

    fn fields(payload: &str) -> MessageFields<'_> {
        MessageFields {
            channel: "c",
            id: Some("u-1"),
            cursor: Some("0a"),
            event: "e",
            payload,
            sender: Sender { kind: "user", id: Some("alice") },
            created_at: Some("2026-11-23T10:00:00.000000Z"),
            replayed: false,
        }
    }

    #[test]
    fn history_entry_equals_the_live_frame_without_type() {
        for payload in [r#"{"a": [1, 2]}"#, "not json"] {
            let mut live: Value = serde_json::from_str(&message(&fields(payload))).unwrap();
            live.as_object_mut().unwrap().remove("type");
            let entry: Value = serde_json::from_str(history_entry(&fields(payload)).get()).unwrap();
            assert_eq!(entry, live);
        }
    }

    #[test]
    fn history_reply_and_body_wrap_the_entries() {
        let e = vec![history_entry(&fields("{}"))];
        let v: Value = serde_json::from_str(&history_reply(Some(&json!(6)), &e, false)).unwrap();
        assert_eq!(v["type"], "reply");
        assert_eq!(v["ref"], 6);
        assert_eq!(v["ok"], true);
        assert_eq!(v["messages"][0]["id"], "u-1");
        let b: Value = serde_json::from_str(&history_body(&[], false)).unwrap();
        assert_eq!(b, json!({"messages": []}));
        let b: Value = serde_json::from_str(&history_body(&[], true)).unwrap();
        assert_eq!(b, json!({"messages": [], "more": true}));
    }

    #[test]
    fn reset_frame() {
        let v: Value = serde_json::from_str(&reset("c", Some("0f"))).unwrap();
        assert_eq!(v, json!({"type":"reset","channel":"c","cursor":"0f"}));
    }
}
