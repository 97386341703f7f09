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
    tick_of_payload(&text[at + 11..])
}

/// The load generator's `s` and `t` at the start of a payload object's text (the object's
/// opening brace may be left out), or [`Kind::ForeignMessage`]. Other protocols carrying the
/// same payload (Phoenix broadcasts) read it with this too.
pub fn tick_of_payload(payload: &str) -> Kind {
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

/// `{"type":"subscribe","ref":R,"channel":C,"resume":{"cursor":X}}`: resume after `cursor`.
pub fn subscribe_resume(channel: &str, reference: u64, cursor: &str) -> String {
    serde_json::json!({"type": "subscribe", "ref": reference, "channel": channel, "resume": {"cursor": cursor}})
        .to_string()
}

/// What resume needs from a message frame: its `cursor` (none for ephemeral messages) and
/// whether it was `replayed`. The relay writes `cursor` before `payload` and `replayed` last.
pub fn message_meta(text: &str) -> (Option<&str>, bool) {
    let head = &text[..text.find(r#""payload":"#).unwrap_or(text.len())];
    let cursor = head.find(r#""cursor":""#).and_then(|at| {
        let rest = &head[at + 10..];
        rest.find('"').map(|end| &rest[..end])
    });
    (cursor, text.ends_with(r#","replayed":true}"#))
}

/// A `reset` frame's cursor (`Some("")` when it has none); `None` for any other frame. The
/// relay builds this frame with sorted keys (`{"channel":..,"cursor":..,"type":"reset"}`), so
/// the type is looked for anywhere in the (short) frame, then checked by a parse.
pub fn reset_cursor(text: &str) -> Option<String> {
    if text.starts_with(MESSAGE_PREFIX) || !text.contains(r#""type":"reset""#) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    (v["type"] == "reset").then(|| v["cursor"].as_str().unwrap_or("").to_string())
}

/// What resume needs from a successful subscribe reply.
#[derive(Debug, PartialEq, Eq)]
pub struct SubscribeReply {
    /// The channel's position when subscribed.
    pub cursor: Option<String>,
    /// On a resume: whether the missed messages follow (false: a `reset` follows).
    pub recovered: Option<bool>,
}

/// A subscribe reply's fields resume needs, or the error code; `None` for a frame that is not
/// a reply.
pub fn subscribe_reply_fields(text: &str) -> Option<Result<SubscribeReply, String>> {
    if !text.starts_with(r#"{"type":"reply""#) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v["ok"] != serde_json::Value::Bool(true) {
        return Some(Err(v["error"]["code"].as_str().unwrap_or("UNKNOWN").to_string()));
    }
    Some(Ok(SubscribeReply {
        cursor: v["cursor"].as_str().map(str::to_string),
        recovered: v["recovered"].as_bool(),
    }))
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
    fn cursor_and_replayed_flag_are_read_from_a_message_frame() {
        let live = r#"{"type":"message","channel":"bench:1","id":"x","cursor":"00AB","event":"tick","payload":{"s": 1, "cursor": "no"},"sender":{"type":"system"},"created_at":"t"}"#;
        assert_eq!(message_meta(live), (Some("00AB"), false));
        let replayed = r#"{"type":"message","channel":"bench:1","id":"x","cursor":"00AC","event":"tick","payload":{"s": 2},"sender":{"type":"system"},"created_at":"t","replayed":true}"#;
        assert_eq!(message_meta(replayed), (Some("00AC"), true));
        let ephemeral = r#"{"type":"message","channel":"c","event":"e","payload":{"cursor":"x"},"sender":{"type":"system"}}"#;
        assert_eq!(message_meta(ephemeral), (None, false));
    }

    #[test]
    fn resume_frames_and_their_answers_are_read() {
        let v: serde_json::Value = serde_json::from_str(&subscribe_resume("bench:1", 1, "00AB")).unwrap();
        assert_eq!(v["resume"]["cursor"], "00AB");
        assert_eq!(reset_cursor(r#"{"type":"reset","channel":"c","cursor":"0F"}"#), Some("0F".into()));
        // As the relay sends it: keys sorted.
        assert_eq!(reset_cursor(r#"{"channel":"c","cursor":"0F","type":"reset"}"#), Some("0F".into()));
        let tricky = r#"{"type":"message","channel":"c","cursor":"01","event":"e","payload":{"x":"\"type\":\"reset\""}}"#;
        assert_eq!(reset_cursor(tricky), None);
        assert_eq!(reset_cursor(r#"{"type":"reply","ok":true}"#), None);
        let ok = r#"{"type":"reply","ref":1,"ok":true,"channel":"c","cursor":"0F","recovered":true,"presence":{"members":[]}}"#;
        let reply = |c: &str, r| Some(Ok(SubscribeReply { cursor: Some(c.into()), recovered: r }));
        assert_eq!(subscribe_reply_fields(ok), reply("0F", Some(true)));
        let plain =
            r#"{"type":"reply","ref":1,"ok":true,"channel":"c","cursor":"0F","presence":{"members":[]}}"#;
        assert_eq!(subscribe_reply_fields(plain), reply("0F", None));
        let err =
            r#"{"type":"reply","ref":1,"ok":false,"error":{"code":"REALTIME_NOT_FOUND","message":"x"}}"#;
        assert_eq!(subscribe_reply_fields(err), Some(Err("REALTIME_NOT_FOUND".into())));
        assert_eq!(subscribe_reply_fields(r#"{"type":"pong"}"#), None);
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
