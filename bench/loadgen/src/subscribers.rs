//! The subscribe phase and the readers: one small task per WebSocket connection, each bound to a
//! 127.0.0.x source address (round-robin) so more than ~60k connections fit on loopback. The
//! server under test is spoken to through its [`Proto`] adapter; SSE streams are handed to
//! `src/sse_conn.rs`, which records their deliveries through [`on_piece`] too.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::adapter::{self, short, Incoming, Kind, Proto, Ws};
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
    /// Set when the measurement is over: later closes are ours, not the server's.
    pub stopping: AtomicBool,
}

/// One server's WebSocket endpoint.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub url: String,
}

/// How to reach the server(s) under test.
pub struct Target {
    /// Connection i goes to `endpoints[i % len]`.
    pub endpoints: Vec<Endpoint>,
    pub proto: Proto,
    pub source_ips: u8,
    pub connect_timeout: Duration,
}

impl Target {
    /// The server(s) under test as the command line names them.
    pub fn of(args: &crate::Args) -> Result<Self, String> {
        let endpoints = args
            .url
            .iter()
            .map(|u| Ok(Endpoint { addr: crate::relay_socket_addr(u)?, url: u.clone() }))
            .collect::<Result<Vec<_>, String>>()?;
        if endpoints.is_empty() {
            return Err("--url names no server".into());
        }
        Ok(Target {
            endpoints,
            proto: args.target,
            source_ips: args.source_ips,
            connect_timeout: Duration::from_secs_f64(args.connect_timeout),
        })
    }

    /// The endpoint of (global) connection `i`.
    pub fn endpoint(&self, i: usize) -> &Endpoint {
        &self.endpoints[i % self.endpoints.len()]
    }
}

/// The outcome of one connection's subscribe phase.
pub enum Ready {
    Ok,
    Failed(String),
}

/// Opens connection `i` (a global index: its server and source address follow from it),
/// subscribes to `channel`, reports on `ready`, then reads until the socket ends.
pub async fn run_one(
    i: usize,
    channel: String,
    target: Arc<Target>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<(usize, Ready)>,
) {
    if target.proto == Proto::Sse {
        return crate::sse_conn::run_one(i, channel, target, shared, gate, ready).await;
    }
    let permit = gate.acquire_owned().await.expect("gate open");
    let setup = tokio::time::timeout(target.connect_timeout, async {
        let ep = target.endpoint(i);
        let mut ws = connect(i, &target, ep.addr, &ep.url).await?;
        adapter::request(target.proto, &mut ws, target.proto.subscribe(&channel, 1))
            .await
            .map_err(|e| format!("subscribe: {e}"))?;
        Ok::<_, String>(ws)
    })
    .await;
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
    read_loop(ws, target.proto, &shared).await;
}

/// TCP connect to `addr` from source address 127.0.0.(1 + i % source_ips), the WebSocket
/// handshake on `url`, and the adapter's opening exchange.
pub async fn connect(i: usize, target: &Target, addr: SocketAddr, url: &str) -> Result<Ws, String> {
    let stream = tcp_connect(i, target, addr).await?;
    // tungstenite zero-fills its whole read buffer before every read (128 KiB by default):
    // frames here are a few hundred bytes, so a small buffer saves that memset per delivery
    // (larger frames still work: the buffer grows to the frame's length).
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER).write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map_err(|e| format!("handshake: {}", short(&e.to_string())))?;
    target.proto.open(&mut ws).await?;
    Ok(ws)
}

/// TCP connect to `addr` from source address 127.0.0.(1 + i % source_ips), no delay.
pub async fn tcp_connect(i: usize, target: &Target, addr: SocketAddr) -> Result<TcpStream, String> {
    let source = Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(target.source_ips)) as u8);
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {}", e.kind()))?;
    // SO_REUSEADDR: this side's TIME_WAIT sockets then never keep a server from binding their port.
    socket.set_reuseaddr(true).map_err(|e| format!("reuseaddr: {}", e.kind()))?;
    socket.bind(SocketAddr::new(source.into(), 0)).map_err(|e| format!("bind: {}", e.kind()))?;
    let stream = socket.connect(addr).await.map_err(|e| format!("connect: {}", e.kind()))?;
    stream.set_nodelay(true).map_err(|e| format!("nodelay: {}", e.kind()))?;
    Ok(stream)
}

/// What a read loop waits for next: a frame, or the time to send a heartbeat.
pub enum Step {
    Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Heartbeat,
}

/// Reads frames until the socket ends; every tick frame is one delivery. Sends the protocol's
/// heartbeat on its schedule (Phoenix).
async fn read_loop(mut ws: Ws, proto: Proto, shared: &Shared) {
    let mut beat = proto
        .heartbeat()
        .map(|(every, frame)| (tokio::time::interval_at(tokio::time::Instant::now() + every, every), frame));
    loop {
        let step = match beat.as_mut() {
            None => Step::Frame(ws.next().await),
            Some((interval, _)) => tokio::select! {
                next = ws.next() => Step::Frame(next),
                _ = interval.tick() => Step::Heartbeat,
            },
        };
        let next = match step {
            Step::Heartbeat => {
                let frame = beat.as_ref().map_or("", |b| b.1);
                let _ = ws.send(Message::text(frame)).await;
                continue;
            }
            Step::Frame(None) => break,
            Step::Frame(Some(next)) => next,
        };
        match next {
            Ok(Message::Text(t)) => {
                if on_text(proto, t.as_str(), shared) {
                    let _ = ws.send(Message::text(proto.pong())).await;
                }
            }
            Ok(Message::Close(c)) => {
                if !shared.stopping.load(Ordering::Relaxed) {
                    shared.events.add(format!("close {}", c.map_or(1005, |f| u16::from(f.code))));
                }
                return;
            }
            Ok(Message::Binary(b)) => match proto.decode_binary(&b) {
                Incoming::Other => shared.events.add("binary frame"),
                incoming => {
                    on_incoming(proto, incoming, b.len(), shared);
                }
            },
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

/// Records one frame (each of its messages); true when it held a ping to answer.
fn on_text(proto: Proto, frame: &str, shared: &Shared) -> bool {
    let mut ping = false;
    for text in proto.pieces(frame) {
        ping |= on_piece(proto, text, shared);
    }
    ping
}

/// Records one message; true when it was a ping to answer.
pub fn on_piece(proto: Proto, text: &str, shared: &Shared) -> bool {
    let incoming = proto.decode(text);
    if let Incoming::Reply(_) | Incoming::Other = incoming {
        shared.events.add(format!("frame {}", proto.frame_type(text)));
        return false;
    }
    on_incoming(proto, incoming, text.len(), shared)
}

/// Records one decoded message of `len` bytes; true when it was a ping to answer.
fn on_incoming(proto: Proto, incoming: Incoming, len: usize, shared: &Shared) -> bool {
    match incoming {
        Incoming::Delivery(Kind::Tick { seq, sent_us }) => {
            let now = stats::now_us();
            if seq < shared.warmup_msgs {
                stats::with_local(|r| r.warmup_deliveries += 1);
                return false;
            }
            let ack = shared.acks.get(seq);
            stats::with_local(|r| {
                r.deliveries += 1;
                r.bytes += len as u64;
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
        Incoming::Delivery(_) => shared.events.add("foreign message"),
        Incoming::Ping => return true,
        Incoming::Ignored => {}
        Incoming::Reply(_) | Incoming::Other => shared.events.add(format!("{} frame", proto.name())),
    }
    false
}
