//! Socket.IO v4 over the WebSocket transport, spoken directly as engine.io v4 text packets (no
//! Socket.IO client crate): the server opens with `0{"sid":…,"pingInterval":…}`, the client
//! connects the default namespace with `40` (answer `40{"sid":…}`, or `44{…}` on refusal),
//! events are `42["event",data]`, an event with an acknowledgement id N is `42N[...]` and its
//! answer `43N[...]`, and the server's ping `2` wants the pong `3`.
//!
//! The peer (`bench/peers/socketio-server.mjs`) takes `realtime:subscribe` / `realtime:unsubscribe`
//! events with `{channel}` and acknowledges `{ok:true}` or `{ok:false,error}`, and emits each
//! delivery as `42["message",{…}]` whose object is the same message frame our relay sends.

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

use super::{next_text, realtime, short, Incoming, Kind, Ws};

/// The engine.io pong, answering the server's ping `2`.
pub const PONG: &str = "3";

const MESSAGE_EVENT: &str = r#"42["message","#;

pub fn subscribe(channel: &str, ack: u64) -> String {
    format!("42{ack}{}", serde_json::json!(["realtime:subscribe", {"channel": channel}]))
}

pub fn unsubscribe(channel: &str, ack: u64) -> String {
    format!("42{ack}{}", serde_json::json!(["realtime:unsubscribe", {"channel": channel}]))
}

pub fn decode(text: &str) -> Incoming {
    if let Some(rest) = text.strip_prefix(MESSAGE_EVENT) {
        let inner = rest.strip_suffix(']').unwrap_or(rest);
        return Incoming::Delivery(match realtime::classify(inner) {
            Kind::Other => Kind::ForeignMessage,
            k => k,
        });
    }
    if text == "2" {
        return Incoming::Ping;
    }
    if let Some(rest) = text.strip_prefix("43") {
        let body = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        return Incoming::Reply(ack_result(body));
    }
    Incoming::Other
}

/// `[{"ok":true}]` → Ok; `[{"ok":false,"error":"CODE"}]` → Err(CODE).
fn ack_result(body: &str) -> Result<(), String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|_| "unparsable ack".to_string())?;
    let first = &v[0];
    if first["ok"] == serde_json::Value::Bool(true) {
        Ok(())
    } else {
        Err(first["error"].as_str().unwrap_or("UNKNOWN").to_string())
    }
}

/// engine.io open, then the default namespace's connect.
pub async fn open(ws: &mut Ws) -> Result<(), String> {
    let first = next_text(ws).await?;
    if !first.starts_with('0') {
        return Err(format!("expected engine.io open, got {}", short(&first)));
    }
    ws.send(Message::text("40")).await.map_err(|e| format!("send: {}", short(&e.to_string())))?;
    loop {
        let t = next_text(ws).await?;
        if t.starts_with("40") {
            return Ok(());
        }
        if t.starts_with("44") {
            return Err(format!("connect refused: {}", short(&t)));
        }
        if t == "2" {
            ws.send(Message::text(PONG)).await.map_err(|e| format!("send: {}", short(&e.to_string())))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_event_carries_the_tick_of_the_inner_frame() {
        let t = r#"42["message",{"type":"message","channel":"bench:shared","event":"tick","payload":{"s":5,"t":77,"pad":"x"}}]"#;
        assert_eq!(decode(t), Incoming::Delivery(Kind::Tick { seq: 5, sent_us: 77 }));
    }

    #[test]
    fn acks_become_replies_with_the_error_code() {
        assert_eq!(decode(r#"431[{"ok":true}]"#), Incoming::Reply(Ok(())));
        assert_eq!(
            decode(r#"4312[{"ok":false,"error":"NOT_FOUND"}]"#),
            Incoming::Reply(Err("NOT_FOUND".into()))
        );
    }

    #[test]
    fn ping_is_recognised_and_other_packets_are_not_deliveries() {
        assert_eq!(decode("2"), Incoming::Ping);
        assert_eq!(decode(r#"40{"sid":"x"}"#), Incoming::Other);
        assert_eq!(decode(r#"42["other",{}]"#), Incoming::Other);
    }

    #[test]
    fn subscribe_event_has_its_ack_id_before_the_array() {
        assert_eq!(subscribe("room:1", 7), r#"427["realtime:subscribe",{"channel":"room:1"}]"#);
    }
}
