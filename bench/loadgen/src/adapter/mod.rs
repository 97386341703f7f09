//! Protocol adapters: how the load generator talks to each server under test, so one workload
//! (same subscribers, same Postgres publishes, same payload) drives our relay and the Node peers
//! in `bench/peers/`. Each adapter builds the subscribe/unsubscribe frames, performs the opening
//! exchange after the WebSocket handshake, and decodes received frames into [`Incoming`]
//! (one frame may hold several messages: [`Proto::pieces`]).

pub mod centrifuge;
pub mod realtime;
pub mod socketio;

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
        }
    }

    pub fn unsubscribe(self, channel: &str, reference: u64) -> String {
        match self {
            Proto::Realtime | Proto::Ws => realtime::unsubscribe(channel, reference),
            Proto::Socketio => socketio::unsubscribe(channel, reference),
            Proto::Centrifuge => centrifuge::unsubscribe(channel, reference),
        }
    }

    pub fn decode(self, text: &str) -> Incoming {
        match self {
            Proto::Realtime | Proto::Ws => match realtime::classify(text) {
                Kind::Other => match realtime::subscribe_reply(text) {
                    Some(r) => Incoming::Reply(r),
                    None => Incoming::Other,
                },
                k => Incoming::Delivery(k),
            },
            Proto::Socketio => socketio::decode(text),
            Proto::Centrifuge => centrifuge::decode(text),
        }
    }

    /// The answer to [`Incoming::Ping`] (only Socket.IO asks for one; the others' keep-alives
    /// are WebSocket pings, which tungstenite answers).
    pub fn pong(self) -> &'static str {
        match self {
            Proto::Realtime | Proto::Ws | Proto::Centrifuge => r#"{"type":"ping"}"#,
            Proto::Socketio => socketio::PONG,
        }
    }

    /// A short name for an unexpected frame, for the error counters.
    pub fn frame_type(self, text: &str) -> String {
        match self {
            Proto::Realtime | Proto::Ws => realtime::frame_type(text),
            Proto::Socketio => format!("packet {}", text.chars().take(2).collect::<String>()),
            Proto::Centrifuge => centrifuge::frame_type(text),
        }
    }

    /// The exchange after the WebSocket handshake and before the first request (Socket.IO:
    /// engine.io `open`, then the namespace `connect`; Centrifuge: `connect`). Nothing for v1.
    pub async fn open(self, ws: &mut Ws) -> Result<(), String> {
        match self {
            Proto::Realtime | Proto::Ws => Ok(()),
            Proto::Socketio => socketio::open(ws).await,
            Proto::Centrifuge => centrifuge::open(ws).await,
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
                Incoming::Delivery(_) | Incoming::Other => {}
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
