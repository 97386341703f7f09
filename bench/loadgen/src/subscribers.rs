//! The subscribe phase and the readers: one small task per WebSocket connection, each bound to a
//! 127.0.0.x source address (round-robin) so more than ~60k connections fit on loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::frame::{self, Kind};
use crate::stats::{self, AckTimes, Events};

/// Bytes read from the socket at most per read call.
const READ_BUFFER: usize = 4096;

/// Everything the reader tasks share.
pub struct Shared {
    /// Setup failures, closes and read errors by kind ("close 4009", "connect: ...").
    pub events: Events,
    /// Commit acknowledgement times by message seq.
    pub acks: Arc<AckTimes>,
    /// Messages with a seq below this are warm-up: counted apart, not measured.
    pub warmup_msgs: u64,
    /// Set when the measurement is over: later closes are ours, not the relay's.
    pub stopping: AtomicBool,
}

/// How to reach the relay and what to subscribe to.
pub struct Target {
    pub relay: SocketAddr,
    pub url: String,
    pub source_ips: u8,
    pub connect_timeout: Duration,
}

/// The outcome of one connection's subscribe phase.
pub enum Ready {
    Ok,
    Failed(String),
}

/// Opens connection `i`, subscribes to `channel`, reports on `ready`, then reads until the
/// socket ends.
pub async fn run_one(
    i: usize,
    channel: String,
    target: Arc<Target>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<(usize, Ready)>,
) {
    let permit = gate.acquire_owned().await.expect("gate open");
    let setup =
        tokio::time::timeout(target.connect_timeout, connect_and_subscribe(i, &channel, &target)).await;
    drop(permit);
    let ws = match setup {
        Ok(Ok(ws)) => ws,
        Ok(Err(why)) => {
            let _ = ready.send((i, Ready::Failed(why)));
            return;
        }
        Err(_) => {
            let _ = ready.send((i, Ready::Failed("setup timeout".into())));
            return;
        }
    };
    let _ = ready.send((i, Ready::Ok));
    drop(ready);
    read_loop(ws, &shared).await;
}

async fn connect_and_subscribe(
    i: usize,
    channel: &str,
    target: &Target,
) -> Result<WebSocketStream<TcpStream>, String> {
    let source = Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(target.source_ips)) as u8);
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {}", e.kind()))?;
    socket.bind(SocketAddr::new(source.into(), 0)).map_err(|e| format!("bind: {}", e.kind()))?;
    let stream = socket.connect(target.relay).await.map_err(|e| format!("connect: {}", e.kind()))?;
    stream.set_nodelay(true).map_err(|e| format!("nodelay: {}", e.kind()))?;
    // tungstenite zero-fills its whole read buffer before every read (128 KiB by default):
    // frames here are a few hundred bytes, so a small buffer saves that memset per delivery
    // (larger frames still work: the buffer grows to the frame's length).
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER).write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(target.url.as_str(), stream, Some(config))
        .await
        .map_err(|e| format!("handshake: {}", short(&e.to_string())))?;
    let sub = serde_json::json!({"type": "subscribe", "ref": 1, "channel": channel}).to_string();
    ws.send(Message::text(sub)).await.map_err(|e| format!("send: {}", short(&e.to_string())))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => match frame::subscribe_reply(t.as_str()) {
                Some(Ok(())) => return Ok(ws),
                Some(Err(code)) => return Err(format!("subscribe: {code}")),
                None => {}
            },
            Some(Ok(Message::Close(c))) => return Err(format!("close {} during subscribe", close_code(c))),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("read: {}", short(&e.to_string()))),
            None => return Err("eof during subscribe".into()),
        }
    }
}

/// Reads frames until the socket ends; every tick frame is one delivery.
async fn read_loop(mut ws: WebSocketStream<TcpStream>, shared: &Shared) {
    while let Some(next) = ws.next().await {
        match next {
            Ok(Message::Text(t)) => on_text(t.as_str(), shared),
            Ok(Message::Close(c)) => {
                if !shared.stopping.load(Ordering::Relaxed) {
                    shared.events.add(format!("close {}", close_code(c)));
                }
                return;
            }
            Ok(Message::Binary(_)) => shared.events.add("binary frame"),
            Ok(_) => {}
            Err(e) => {
                if !shared.stopping.load(Ordering::Relaxed) {
                    shared.events.add(format!("read error: {}", short(&e.to_string())));
                }
                return;
            }
        }
    }
    if !shared.stopping.load(Ordering::Relaxed) {
        shared.events.add("eof");
    }
}

fn on_text(text: &str, shared: &Shared) {
    match frame::classify(text) {
        Kind::Tick { seq, sent_us } => {
            let now = stats::now_us();
            if seq < shared.warmup_msgs {
                stats::with_local(|r| r.warmup_deliveries += 1);
                return;
            }
            let ack = shared.acks.get(seq);
            stats::with_local(|r| {
                r.deliveries += 1;
                r.send_to_recv.saturating_record(now.saturating_sub(sent_us).max(1));
                match ack {
                    Some(a) => r.ack_to_recv.saturating_record(now.saturating_sub(a).max(1)),
                    None => {
                        r.before_ack += 1;
                        r.ack_to_recv.saturating_record(1);
                    }
                }
            });
        }
        Kind::ForeignMessage => shared.events.add("foreign message"),
        Kind::Other => shared.events.add(format!("frame {}", frame::frame_type(text))),
    }
}

fn close_code(c: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> u16 {
    c.map_or(1005, |f| u16::from(f.code))
}

/// Error texts can carry addresses or long bodies; keep the kind readable and the map small.
fn short(s: &str) -> String {
    s.chars().take(60).collect()
}
