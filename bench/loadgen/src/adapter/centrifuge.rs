//! Centrifuge's JSON client protocol (protocol v1 of the centrifuge library 0.15, which
//! `bench/peers/centrifuge/` is built on), spoken directly: after the WebSocket handshake the
//! client sends `connect` (`{"id":1,"params":{}}`, method 0 left out) and waits for its reply;
//! `subscribe` is `{"id":N,"method":1,"params":{"channel":C}}` and `unsubscribe` method 2. A
//! reply is `{"id":N,"result":{...}}` or `{"id":N,"error":{"code":..,"message":..}}`; a push has
//! no id: a publication is `{"result":{"channel":C,"data":{"data":<published bytes>}}}` (its
//! push type, 0, left out; join/leave pushes carry `"type":1|2` first). The server may put up to
//! four replies and pushes into one WebSocket frame, one per line: [`super::Proto::pieces`]
//! splits them.
//!
//! The peer publishes the same frame object our relay sends (`{"type":"message",...}`), so the
//! inner data is read by [`super::realtime::classify`] without a JSON parse.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::{next_text, realtime, short, Incoming, Kind, Ws};

/// The request id of `connect`; subscribe and unsubscribe use their reference + 1 (never 0:
/// an id of 0 is left out of a reply, which would make it read as a push).
const CONNECT_ID: u64 = 1;

const PUBLICATION_PREFIX: &str = r#"{"result":{"channel":"#;
const PUBLICATION_DATA: &str = r#""data":{"data":"#;

pub fn connect() -> String {
    format!(r#"{{"id":{CONNECT_ID},"params":{{}}}}"#)
}

pub fn subscribe(channel: &str, reference: u64) -> String {
    serde_json::json!({"id": reference + 1, "method": 1, "params": {"channel": channel}}).to_string()
}

pub fn unsubscribe(channel: &str, reference: u64) -> String {
    serde_json::json!({"id": reference + 1, "method": 2, "params": {"channel": channel}}).to_string()
}

/// Decodes one line (one reply or push).
pub fn decode(line: &str) -> Incoming {
    if line.starts_with(PUBLICATION_PREFIX) {
        let Some(at) = line.find(PUBLICATION_DATA) else { return Incoming::Delivery(Kind::ForeignMessage) };
        return Incoming::Delivery(match realtime::classify(&line[at + PUBLICATION_DATA.len()..]) {
            Kind::Other => Kind::ForeignMessage,
            k => k,
        });
    }
    if line.starts_with(r#"{"id":"#) {
        return Incoming::Reply(reply_result(line));
    }
    Incoming::Other
}

/// `Ok` for a reply with a result, `Err("<code> <message>")` for one with an error.
fn reply_result(line: &str) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|_| "unparsable reply".to_string())?;
    match v.get("error") {
        None => Ok(()),
        Some(e) => Err(format!("{} {}", e["code"], e["message"].as_str().unwrap_or(""))),
    }
}

/// The `type` of a line, for counting unexpected ones: `reply`, `push <type>`, or `unparsable`.
pub fn frame_type(line: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(line) {
        Ok(v) if v.get("id").is_some() => "reply".into(),
        Ok(v) => format!("push {}", v["result"]["type"].as_u64().unwrap_or(0)),
        Err(_) => "unparsable".into(),
    }
}

/// Sends `connect` and waits for its reply.
pub async fn open(ws: &mut Ws) -> Result<(), String> {
    ws.send(Message::text(connect())).await.map_err(|e| format!("send: {}", short(&e.to_string())))?;
    loop {
        let frame = next_text(ws).await?;
        for line in frame.split('\n').filter(|l| !l.is_empty()) {
            if let Incoming::Reply(r) = decode(line) {
                return r.map_err(|e| format!("connect refused: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publication_push_carries_the_tick_of_the_published_frame() {
        let l = r#"{"result":{"channel":"bench:shared","data":{"data":{"type":"message","channel":"bench:shared","id":"x","cursor":"00","event":"tick","payload":{"s":5,"t":77,"pad":"x"},"sender":{"type":"system"},"created_at":"2026-01-01T00:00:00.000Z"}}}}"#;
        assert_eq!(decode(l), Incoming::Delivery(Kind::Tick { seq: 5, sent_us: 77 }));
    }

    #[test]
    fn replies_are_ok_or_carry_the_error_code_and_message() {
        assert_eq!(decode(r#"{"id":2,"result":{}}"#), Incoming::Reply(Ok(())));
        assert_eq!(
            decode(r#"{"id":2,"error":{"code":103,"message":"permission denied"}}"#),
            Incoming::Reply(Err("103 permission denied".into()))
        );
    }

    #[test]
    fn join_push_and_foreign_publication_are_not_ticks() {
        assert_eq!(decode(r#"{"result":{"type":1,"channel":"c","data":{"info":{}}}}"#), Incoming::Other);
        assert_eq!(
            decode(r#"{"result":{"channel":"c","data":{"data":{"text":"hi"}}}}"#),
            Incoming::Delivery(Kind::ForeignMessage)
        );
    }

    #[test]
    fn requests_never_use_id_zero() {
        assert_eq!(connect(), r#"{"id":1,"params":{}}"#);
        let v: serde_json::Value = serde_json::from_str(&subscribe("bench:1", 1)).unwrap();
        assert_eq!(v["id"], 2);
        assert_eq!(v["method"], 1);
        assert_eq!(v["params"]["channel"], "bench:1");
        let v: serde_json::Value = serde_json::from_str(&unsubscribe("bench:1", 3)).unwrap();
        assert_eq!((v["id"].as_u64(), v["method"].as_u64()), (Some(4), Some(2)));
    }

    #[test]
    fn frame_types_name_replies_and_pushes() {
        assert_eq!(frame_type(r#"{"id":3,"result":{}}"#), "reply");
        assert_eq!(frame_type(r#"{"result":{"type":2,"channel":"c","data":{}}}"#), "push 2");
        assert_eq!(frame_type("nope"), "unparsable");
    }
}
