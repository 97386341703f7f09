//! Supabase Realtime's protocol (Phoenix channels) as the relay serves it at
//! `/realtime/v1/websocket?vsn=2.0.0|1.0.0` (docs/supabase.md), spoken directly, the frames
//! supabase-js sends:
//!
//! * `vsn=2.0.0` (supabase-js' default): text frames are arrays
//!   `[join_ref, ref, topic, event, payload]`; broadcasts to the client are binary frames
//!   `[4, topic_len, event_len, meta_len, encoding, topic, event, meta, payload]` (encoding 1:
//!   JSON payload), or text when a field is over 255 bytes.
//! * `vsn=1.0.0`: every frame is an object `{join_ref, ref, topic, event, payload}`; a
//!   broadcast's payload is `{"type":"broadcast","event":E,"payload":P}`.
//!
//! Subscribing is `phx_join` on topic `realtime:<channel>` with a `config` (no self-echo, no
//! ack, no presence; `postgres_changes` bindings for table changes); its `phx_reply` says ok or
//! the reason. A `heartbeat` on topic `phoenix` every [`HEARTBEAT_EVERY`] keeps the connection
//! as supabase-js does. A message published with `realtime.publish()` arrives as a
//! `broadcast` whose payload is the published payload; a row change of a watched table as
//! `postgres_changes` `{ids, data: {record, old_record, type, ...}}`.

use std::time::Duration;

use serde_json::{json, Value};

use super::{realtime, Incoming, Kind};

/// How often a connection sends `heartbeat` (supabase-js: 25 s).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(25);
/// The heartbeat frames (a fixed ref: their replies are skipped whatever it is).
pub const HEARTBEAT_V2: &str = r#"[null,"hb","phoenix","heartbeat",{}]"#;
pub const HEARTBEAT_V1: &str =
    r#"{"join_ref":null,"ref":"hb","topic":"phoenix","event":"heartbeat","payload":{}}"#;

const KIND_BROADCAST: u8 = 4;
const ENCODING_JSON: u8 = 1;
/// What a broadcast's text payload starts with (both serializers).
const BROADCAST_BODY: &str = r#"{"type":"broadcast","event":"#;

/// One frame in the serializer of `v2` (arrays) or vsn 1.0.0 (objects).
fn frame(
    v2: bool,
    join_ref: Option<&str>,
    reference: Option<&str>,
    topic: &str,
    event: &str,
    payload: Value,
) -> String {
    if v2 {
        json!([join_ref, reference, topic, event, payload]).to_string()
    } else {
        json!({"join_ref": join_ref, "ref": reference, "topic": topic, "event": event, "payload": payload})
            .to_string()
    }
}

/// `phx_join` of `realtime:<channel>` (ref and join_ref `reference`), with these
/// `postgres_changes` bindings (an empty array for broadcasts only).
pub fn join(v2: bool, channel: &str, reference: u64, bindings: Value) -> String {
    let r = reference.to_string();
    let config = json!({
        "config": {
            "broadcast": {"self": false, "ack": false},
            "presence": {"enabled": false},
            "postgres_changes": bindings,
            "private": false,
        }
    });
    frame(v2, Some(&r), Some(&r), &format!("realtime:{channel}"), "phx_join", config)
}

/// `phx_leave` of `realtime:<channel>`.
pub fn leave(v2: bool, channel: &str, reference: u64) -> String {
    let r = reference.to_string();
    frame(v2, None, Some(&r), &format!("realtime:{channel}"), "phx_leave", json!({}))
}

/// A text frame's fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Parts {
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

/// Reads a text frame of either serializer; `None` when it is neither.
pub fn parse(text: &str) -> Option<Parts> {
    let v: Value = serde_json::from_str(text).ok()?;
    let (topic, event, payload) = match v {
        Value::Array(a) if a.len() == 5 => {
            let mut it = a.into_iter().skip(2);
            (it.next()?, it.next()?, it.next()?)
        }
        Value::Object(mut o) => (o.remove("topic")?, o.remove("event")?, o.remove("payload")?),
        _ => return None,
    };
    Some(Parts { topic: topic.as_str()?.to_string(), event: event.as_str()?.to_string(), payload })
}

/// The tick of a broadcast text frame, found by scanning (no JSON parse per delivery).
fn broadcast_tick(text: &str) -> Option<Kind> {
    let at = text.find(BROADCAST_BODY).filter(|&at| at < 600)?;
    let rest = &text[at + BROADCAST_BODY.len()..];
    let p = rest.find(r#","payload":"#)?;
    Some(match realtime::tick_of_payload(&rest[p + 11..]) {
        Kind::Other => Kind::ForeignMessage,
        k => k,
    })
}

/// Decodes one text frame.
pub fn decode_text(text: &str) -> Incoming {
    if let Some(k) = broadcast_tick(text) {
        return Incoming::Delivery(k);
    }
    let Some(p) = parse(text) else { return Incoming::Other };
    match p.event.as_str() {
        "phx_reply" if p.topic == "phoenix" => Incoming::Ignored,
        "phx_reply" => Incoming::Reply(reply_result(&p.payload)),
        "postgres_changes" | "broadcast" => Incoming::Delivery(Kind::ForeignMessage),
        "system" | "presence_state" | "presence_diff" => Incoming::Ignored,
        _ => Incoming::Other,
    }
}

/// `{"status":"ok",...}` → Ok; else the reason.
fn reply_result(payload: &Value) -> Result<(), String> {
    if payload["status"] == "ok" {
        return Ok(());
    }
    let reason = &payload["response"]["reason"];
    Err(reason.as_str().map_or_else(|| payload.to_string(), str::to_string))
}

/// Decodes one binary frame: a kind 4 broadcast.
pub fn decode_binary(data: &[u8]) -> Incoming {
    if data.len() < 5 || data[0] != KIND_BROADCAST {
        return Incoming::Other;
    }
    let skip = 5 + usize::from(data[1]) + usize::from(data[2]) + usize::from(data[3]);
    if data[4] != ENCODING_JSON || data.len() < skip {
        return Incoming::Delivery(Kind::ForeignMessage);
    }
    match std::str::from_utf8(&data[skip..]) {
        Ok(payload) => Incoming::Delivery(realtime::tick_of_payload(payload)),
        Err(_) => Incoming::Delivery(Kind::ForeignMessage),
    }
}

/// The event of a text frame, for counting unexpected ones.
pub fn frame_type(text: &str) -> String {
    parse(text).map_or_else(|| "unparsable".to_string(), |p| p.event)
}

/// A row change the changes run published (`owner`, `s`, `t` columns of its table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowChange {
    pub owner: String,
    pub seq: u64,
    pub sent_us: u64,
}

/// The row of a `postgres_changes` frame's `data.record`; `None` for other frames (and
/// `Some(Err)` for a change that is not one of the run's rows).
pub fn row_change(p: &Parts) -> Option<Result<RowChange, String>> {
    if p.event != "postgres_changes" {
        return None;
    }
    let r = &p.payload["data"]["record"];
    Some(match (r["owner"].as_str(), r["s"].as_u64(), r["t"].as_u64()) {
        (Some(owner), Some(seq), Some(sent_us)) => Ok(RowChange { owner: owner.to_string(), seq, sent_us }),
        _ => Err(format!("a change without owner, s and t: {}", p.payload["data"]["type"])),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_heartbeats_in_both_serializers() {
        let v: Value = serde_json::from_str(&join(true, "bench:shared", 3, json!([]))).unwrap();
        assert_eq!(
            (v[0].as_str(), v[1].as_str(), v[2].as_str(), v[3].as_str()),
            (Some("3"), Some("3"), Some("realtime:bench:shared"), Some("phx_join"))
        );
        assert_eq!(v[4]["config"]["broadcast"]["self"], false);
        assert_eq!(v[4]["config"]["postgres_changes"], json!([]));
        let b = json!([{"event": "*", "schema": "public", "table": "benchrows"}]);
        let v: Value = serde_json::from_str(&join(false, "rows", 1, b.clone())).unwrap();
        assert_eq!((v["topic"].as_str(), v["event"].as_str()), (Some("realtime:rows"), Some("phx_join")));
        assert_eq!(v["payload"]["config"]["postgres_changes"], b);
        for hb in [HEARTBEAT_V1, HEARTBEAT_V2] {
            let p = parse(hb).unwrap();
            assert_eq!((p.topic.as_str(), p.event.as_str()), ("phoenix", "heartbeat"));
        }
        let p = parse(&leave(true, "c", 9)).unwrap();
        assert_eq!((p.topic.as_str(), p.event.as_str()), ("realtime:c", "phx_leave"));
    }

    #[test]
    fn broadcast_ticks_as_the_relay_sends_them() {
        // relay/src/protocol/phoenix/codec.rs `broadcast`: binary kind 4 on 2.0.0, text on 1.0.0.
        let topic = "realtime:bench:shared";
        let payload = r#"{"s": 42, "t": 1700000000123456, "pad": "xx"}"#;
        let mut b = vec![4, topic.len() as u8, 4, 0, 1];
        b.extend_from_slice(topic.as_bytes());
        b.extend_from_slice(b"tick");
        b.extend_from_slice(payload.as_bytes());
        let tick = Incoming::Delivery(Kind::Tick { seq: 42, sent_us: 1_700_000_000_123_456 });
        assert_eq!(decode_binary(&b), tick);
        let v1 = format!(
            r#"{{"join_ref":null,"ref":null,"topic":"{topic}","event":"broadcast","payload":{{"type":"broadcast","event":"tick","payload":{payload}}}}}"#
        );
        assert_eq!(decode_text(&v1), tick);
        let v2_text = format!(
            r#"[null,null,"{topic}","broadcast",{{"type":"broadcast","event":"tick","payload":{payload},"meta":{{}}}}]"#
        );
        assert_eq!(decode_text(&v2_text), tick);
        let foreign =
            r#"[null,null,"t","broadcast",{"type":"broadcast","event":"e","payload":{"text":"hi"}}]"#;
        assert_eq!(decode_text(foreign), Incoming::Delivery(Kind::ForeignMessage));
        assert_eq!(decode_binary(&[4, 0, 0, 0, 0, b'x']), Incoming::Delivery(Kind::ForeignMessage));
        assert_eq!(decode_binary(&[3, 0]), Incoming::Other);
    }

    #[test]
    fn replies_are_ok_or_carry_the_reason_and_heartbeat_replies_are_skipped() {
        let ok = r#"["1","1","realtime:c","phx_reply",{"status":"ok","response":{"postgres_changes":[]}}]"#;
        assert_eq!(decode_text(ok), Incoming::Reply(Ok(())));
        let err = r#"{"join_ref":"1","ref":"1","topic":"realtime:c","event":"phx_reply","payload":{"status":"error","response":{"reason":"REALTIME_UNAUTHORIZED: no"}}}"#;
        assert_eq!(decode_text(err), Incoming::Reply(Err("REALTIME_UNAUTHORIZED: no".into())));
        let hb = r#"[null,"hb","phoenix","phx_reply",{"status":"ok","response":{}}]"#;
        assert_eq!(decode_text(hb), Incoming::Ignored);
        let system =
            r#"[null,null,"realtime:rows","system",{"status":"ok","message":"Subscribed to PostgreSQL"}]"#;
        assert_eq!(decode_text(system), Incoming::Ignored);
        assert_eq!(decode_text(r#"[null,null,"realtime:c","phx_close",{}]"#), Incoming::Other);
        assert_eq!(frame_type(r#"[null,null,"realtime:c","phx_close",{}]"#), "phx_close");
        assert_eq!(decode_text("nope"), Incoming::Other);
    }

    #[test]
    fn row_changes_are_read_from_postgres_changes_frames() {
        // As relay/src/protocol/phoenix/changes.rs `Change::payload` writes it (keys sorted).
        let f = r#"[null,null,"realtime:rows","postgres_changes",{"data":{"columns":[],"commit_timestamp":"2026-12-04T10:00:00.000000Z","errors":null,"old_record":null,"record":{"id":7,"owner":"u3","pad":"xx","s":12,"t":1700000000000001},"schema":"public","table":"benchrows","type":"INSERT"},"ids":[1]}]"#;
        let p = parse(f).unwrap();
        assert_eq!(
            row_change(&p),
            Some(Ok(RowChange { owner: "u3".into(), seq: 12, sent_us: 1_700_000_000_000_001 }))
        );
        assert_eq!(decode_text(f), Incoming::Delivery(Kind::ForeignMessage));
        let other = parse(
            r#"[null,null,"realtime:rows","postgres_changes",{"data":{"record":{"id":1},"type":"UPDATE"}}]"#,
        )
        .unwrap();
        assert!(row_change(&other).unwrap().unwrap_err().contains("UPDATE"));
        assert_eq!(row_change(&parse(r#"[null,null,"t","system",{}]"#).unwrap()), None);
    }
}
