//! Wire protocol v1 (our relay, and the Node `ws` peer, which speaks the same subset: subscribe,
//! unsubscribe, reply, message): frames to send and cheap reading of the frames received — no
//! JSON parse per delivered message.
//!
//! The publisher's payload is `jsonb_build_object('s', seq, 't', send_us, 'pad', ...)`; jsonb
//! prints it as `{"s": 12, "t": 1700000000000000, "pad": "xx"}` (keys by length, then bytes),
//! and the relay copies it verbatim into `"payload":{...}`. So a message frame is recognised by
//! its prefix and the two numbers are scanned right after `"payload":`.

use super::Kind;

/// `{"type":"subscribe","ref":R,"channel":C}`.
pub fn subscribe(channel: &str, reference: u64) -> String {
    serde_json::json!({"type": "subscribe", "ref": reference, "channel": channel}).to_string()
}

/// `{"type":"unsubscribe","ref":R,"channel":C}`.
pub fn unsubscribe(channel: &str, reference: u64) -> String {
    serde_json::json!({"type": "unsubscribe", "ref": reference, "channel": channel}).to_string()
}

const MESSAGE_PREFIX: &str = r#"{"type":"message""#;

/// Classifies one text frame.
pub fn classify(text: &str) -> Kind {
    if !text.starts_with(MESSAGE_PREFIX) {
        return Kind::Other;
    }
    let Some(at) = text.find(r#""payload":{"#) else { return Kind::ForeignMessage };
    let payload = &text[at + 11..];
    let Some((seq, rest)) = number_after(payload, r#""s":"#) else { return Kind::ForeignMessage };
    let Some((sent_us, _)) = number_after(rest, r#""t":"#) else { return Kind::ForeignMessage };
    Kind::Tick { seq, sent_us }
}

/// The unsigned integer following `key` (and optional spaces) near the start of `s`, and the
/// text after it. Only looks at the first 64 bytes: the fields come first in the payload.
fn number_after<'a>(s: &'a str, key: &str) -> Option<(u64, &'a str)> {
    let window = &s[..s.len().min(64)];
    let at = window.find(key)? + key.len();
    let bytes = s.as_bytes();
    let mut i = at;
    while i < bytes.len() && bytes[i] == b' ' {
        i += 1;
    }
    let start = i;
    let mut v: u64 = 0;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add(u64::from(bytes[i] - b'0'))?;
        i += 1;
    }
    (i > start).then_some((v, &s[i..]))
}

/// A reply frame (to subscribe or unsubscribe): `Ok(())`, or the error code.
pub fn subscribe_reply(text: &str) -> Option<Result<(), String>> {
    if !text.starts_with(r#"{"type":"reply""#) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v["ok"] == serde_json::Value::Bool(true) {
        Some(Ok(()))
    } else {
        let code = v["error"]["code"].as_str().unwrap_or("UNKNOWN").to_string();
        Some(Err(code))
    }
}

/// The `type` of a frame, for counting unexpected ones.
pub fn frame_type(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_string))
        .unwrap_or_else(|| "unparsable".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_fields_are_read_from_a_relay_message_frame() {
        let f = r#"{"type":"message","channel":"bench:shared","id":"b6f1","cursor":"00000000016B3A580000000000000007","event":"tick","payload":{"s": 42, "t": 1700000000123456, "pad": "xxxx"},"sender":{"type":"system"},"created_at":"2024-01-01T00:00:00Z"}"#;
        assert_eq!(classify(f), Kind::Tick { seq: 42, sent_us: 1_700_000_000_123_456 });
    }

    #[test]
    fn compact_payload_without_spaces_is_read_too() {
        let f = r#"{"type":"message","channel":"c","event":"tick","payload":{"s":7,"t":99},"sender":{"type":"system"}}"#;
        assert_eq!(classify(f), Kind::Tick { seq: 7, sent_us: 99 });
    }

    #[test]
    fn channel_or_event_named_like_a_key_does_not_confuse_the_scan() {
        let f = r#"{"type":"message","channel":"\"t\":1","event":"\"s\":2","payload":{"s": 3, "t": 4},"sender":{"type":"system"}}"#;
        assert_eq!(classify(f), Kind::Tick { seq: 3, sent_us: 4 });
    }

    #[test]
    fn other_frames_are_not_ticks() {
        assert_eq!(classify(r#"{"type":"reply","ref":1,"ok":true}"#), Kind::Other);
        let foreign = r#"{"type":"message","channel":"c","event":"e","payload":{"text":"hi"},"sender":{"type":"system"}}"#;
        assert_eq!(classify(foreign), Kind::ForeignMessage);
    }

    #[test]
    fn subscribe_reply_reports_ok_or_the_error_code() {
        assert_eq!(subscribe_reply(r#"{"type":"reply","ref":1,"ok":true,"channel":"c"}"#), Some(Ok(())));
        let err =
            r#"{"type":"reply","ref":1,"ok":false,"error":{"code":"REALTIME_NOT_FOUND","message":"x"}}"#;
        assert_eq!(subscribe_reply(err), Some(Err("REALTIME_NOT_FOUND".into())));
        assert_eq!(subscribe_reply(r#"{"type":"pong"}"#), None);
    }
}
