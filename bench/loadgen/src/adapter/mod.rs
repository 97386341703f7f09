//! Protocol adapters: how the load generator talks to each server under test, so one workload
//! (same subscribers, same Postgres publishes, same payload) drives our relay (over protocol v1,
//! SSE or Supabase's Phoenix protocol) and the peers in `bench/peers/`. Each adapter builds the
//! subscribe/unsubscribe frames, performs the opening exchange after the WebSocket handshake,
//! and decodes received frames into [`Incoming`] (one frame may hold several messages:
//! [`Proto::pieces`]). SSE is not a WebSocket: its streams are opened by `src/sse_conn.rs` with
//! the sans-IO decoder of [`sse`], and each event's data is decoded as a v1 frame.

pub mod centrifuge;
pub mod phoenix;
pub mod realtime;
pub mod socketio;
pub mod sse;

use clap::ValueEnum;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A client WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// The server under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    /// Our relay: wire protocol v1 at `/v1/socket`.
    Realtime,
    /// The Node `ws` peer (`bench/peers/ws-server.mjs`): the same v1 subset.
    Ws,
    /// The Node Socket.IO peer (`bench/peers/socketio-server.mjs`): engine.io v4 text packets
    /// over the WebSocket transport.
    Socketio,
    /// The Go Centrifuge peer (`bench/peers/centrifuge/`): Centrifuge's JSON protocol.
    Centrifuge,
    /// Our relay's Server-Sent Events, `GET /v1/sse?channel=C` (URL `http://HOST:PORT/v1/sse`).
    Sse,
    /// Our relay's Supabase-compatible Phoenix protocol, vsn 2.0.0 (supabase-js' default:
    /// arrays and binary broadcasts); URL `ws://HOST:PORT/realtime/v1/websocket?vsn=2.0.0`.
    Phoenix,
    /// The same with vsn 1.0.0 (JSON objects); URL `...?vsn=1.0.0`.
    PhoenixV1,
}

/// What a delivered message frame carries, as far as the load generator cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A message with the load generator's `seq` and send time (µs since the epoch).
    Tick { seq: u64, sent_us: u64 },
    /// A message without our payload fields.
    ForeignMessage,
    /// Not a message frame.
    Other,
}

/// A received frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A message frame.
    Delivery(Kind),
    /// The reply to a subscribe or unsubscribe: `Ok`, or the error code.
    Reply(Result<(), String>),
    /// A keep-alive the client must answer (Socket.IO ping `2`; answered with [`Proto::pong`]).
    Ping,
    /// A frame expected and of no interest (a heartbeat's reply, a `system` message).
    Ignored,
    /// Anything else.
    Other,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Realtime => "realtime",
            Proto::Ws => "ws",
            Proto::Socketio => "socketio",
            Proto::Centrifuge => "centrifuge",
            Proto::Sse => "sse",
            Proto::Phoenix => "phoenix",
            Proto::PhoenixV1 => "phoenix-v1",
        }
    }

    /// Whether this is the Phoenix protocol in vsn 2.0.0 (arrays) rather than 1.0.0.
    fn v2(self) -> bool {
        self != Proto::PhoenixV1
    }

    /// A frame to send every so often so the server keeps the connection (Phoenix heartbeat).
    pub fn heartbeat(self) -> Option<(std::time::Duration, &'static str)> {
        match self {
            Proto::Phoenix => Some((phoenix::HEARTBEAT_EVERY, phoenix::HEARTBEAT_V2)),
            Proto::PhoenixV1 => Some((phoenix::HEARTBEAT_EVERY, phoenix::HEARTBEAT_V1)),
            _ => None,
        }
    }

    /// The messages of one received frame: Centrifuge puts several replies and pushes into one
    /// frame, one per line; every other server sends one message per frame.
    pub fn pieces(self, frame: &str) -> Pieces<'_> {
        Pieces { rest: Some(frame), lines: self == Proto::Centrifuge }
    }

    pub fn subscribe(self, channel: &str, reference: u64) -> String {
        match self {
            Proto::Realtime | Proto::Ws => realtime::subscribe(channel, reference),
            Proto::Socketio => socketio::subscribe(channel, reference),
            Proto::Centrifuge => centrifuge::subscribe(channel, reference),
            Proto::Phoenix | Proto::PhoenixV1 => {
                phoenix::join(self.v2(), channel, reference, serde_json::json!([]))
            }
            Proto::Sse => unreachable!("an SSE stream subscribes in its request (src/sse_conn.rs)"),
        }
    }

    pub fn unsubscribe(self, channel: &str, reference: u64) -> String {
        match self {
            Proto::Realtime | Proto::Ws => realtime::unsubscribe(channel, reference),
            Proto::Socketio => socketio::unsubscribe(channel, reference),
            Proto::Centrifuge => centrifuge::unsubscribe(channel, reference),
            Proto::Phoenix | Proto::PhoenixV1 => phoenix::leave(self.v2(), channel, reference),
            Proto::Sse => unreachable!("an SSE stream cannot unsubscribe"),
        }
    }

    pub fn decode(self, text: &str) -> Incoming {
        match self {
            Proto::Realtime | Proto::Ws | Proto::Sse => match realtime::classify(text) {
                Kind::Other => match realtime::subscribe_reply(text) {
                    Some(r) => Incoming::Reply(r),
                    None => Incoming::Other,
                },
                k => Incoming::Delivery(k),
            },
            Proto::Socketio => socketio::decode(text),
            Proto::Centrifuge => centrifuge::decode(text),
            Proto::Phoenix | Proto::PhoenixV1 => phoenix::decode_text(text),
        }
    }

    /// Decodes a binary frame (only Phoenix vsn 2.0.0 sends them: broadcasts).
    pub fn decode_binary(self, data: &[u8]) -> Incoming {
        match self {
            Proto::Phoenix => phoenix::decode_binary(data),
            _ => Incoming::Other,
        }
    }

    /// The answer to [`Incoming::Ping`] (only Socket.IO asks for one; the others' keep-alives
    /// are WebSocket pings, which tungstenite answers).
    pub fn pong(self) -> &'static str {
        match self {
            Proto::Realtime | Proto::Ws | Proto::Centrifuge | Proto::Sse => r#"{"type":"ping"}"#,
            Proto::Phoenix => phoenix::HEARTBEAT_V2,
            Proto::PhoenixV1 => phoenix::HEARTBEAT_V1,
            Proto::Socketio => socketio::PONG,
        }
    }

    /// A short name for an unexpected frame, for the error counters.
    pub fn frame_type(self, text: &str) -> String {
        match self {
            Proto::Realtime | Proto::Ws | Proto::Sse => realtime::frame_type(text),
            Proto::Phoenix | Proto::PhoenixV1 => phoenix::frame_type(text),
            Proto::Socketio => format!("packet {}", text.chars().take(2).collect::<String>()),
            Proto::Centrifuge => centrifuge::frame_type(text),
        }
    }

    /// The exchange after the WebSocket handshake and before the first request (Socket.IO:
    /// engine.io `open`, then the namespace `connect`; Centrifuge: `connect`). Nothing for v1.
    pub async fn open(self, ws: &mut Ws) -> Result<(), String> {
        match self {
            Proto::Realtime | Proto::Ws | Proto::Phoenix | Proto::PhoenixV1 => Ok(()),
            Proto::Socketio => socketio::open(ws).await,
            Proto::Centrifuge => centrifuge::open(ws).await,
            Proto::Sse => Err("an SSE stream is not a WebSocket".into()),
        }
    }
}

/// The messages of one frame ([`Proto::pieces`]): the whole frame, or its non-empty lines.
pub struct Pieces<'a> {
    rest: Option<&'a str>,
    lines: bool,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            let rest = self.rest?;
            if !self.lines {
                self.rest = None;
                return Some(rest);
            }
            let (line, tail) = match rest.find('\n') {
                Some(at) => (&rest[..at], Some(&rest[at + 1..])),
                None => (rest, None),
            };
            self.rest = tail;
            if !line.is_empty() {
                return Some(line);
            }
        }
    }
}

/// Sends `frame`, then reads until the reply to it arrives (answering pings, skipping other
/// frames). `Err` carries the error code, or what went wrong on the socket.
pub async fn request(proto: Proto, ws: &mut Ws, frame: String) -> Result<(), String> {
    ws.send(Message::text(frame)).await.map_err(|e| format!("send: {}", short(&e.to_string())))?;
    loop {
        let t = next_text(ws).await?;
        for piece in proto.pieces(&t) {
            match proto.decode(piece) {
                Incoming::Reply(r) => return r,
                Incoming::Ping => ws
                    .send(Message::text(proto.pong()))
                    .await
                    .map_err(|e| format!("send: {}", short(&e.to_string())))?,
                Incoming::Delivery(_) | Incoming::Ignored | Incoming::Other => {}
            }
        }
    }
}

/// The next text frame; closes and errors become `Err`.
pub async fn next_text(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
            Some(Ok(Message::Close(c))) => {
                return Err(format!("close {}", c.map_or(1005, |f| u16::from(f.code))));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("read: {}", short(&e.to_string()))),
            None => return Err("eof".into()),
        }
    }
}

/// Error texts can carry addresses or long bodies; keep the kind readable and the map small.
pub fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_names_are_the_command_line_values_the_scripts_pass() {
        for p in Proto::value_variants() {
            assert_eq!(Proto::from_str(p.name(), false), Ok(*p));
        }
        assert_eq!(Proto::PhoenixV1.name(), "phoenix-v1");
    }

    #[test]
    fn centrifuge_frames_split_into_their_lines_and_others_stay_whole() {
        let frame = "{\"id\":2,\"result\":{}}\n{\"result\":{}}\n";
        assert_eq!(
            Proto::Centrifuge.pieces(frame).collect::<Vec<_>>(),
            ["{\"id\":2,\"result\":{}}", "{\"result\":{}}"]
        );
        assert_eq!(Proto::Centrifuge.pieces("a\n\nb").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(Proto::Realtime.pieces("a\nb").collect::<Vec<_>>(), ["a\nb"]);
        assert_eq!(Proto::Centrifuge.pieces("").count(), 0);
    }
}
