//! One Server-Sent Events subscriber (`--target sse`): a plain HTTP/1.1 connection per stream,
//! bound to its 127.0.0.x source address like the WebSocket subscribers, `GET /v1/sse?channel=C`
//! written by hand and the response read through the sans-IO [`sse::Decoder`]. The stream is
//! subscribed once its `ready` event arrived (after one `subscribed` per channel); a refusal is
//! the HTTP status and the relay's JSON error. Then every `message` event's data (a v1 frame)
//! is recorded exactly as a WebSocket delivery is ([`subscribers::on_piece`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

use crate::adapter::sse::{self, Decoder, Event};
use crate::adapter::{short, Proto};
use crate::subscribers::{self, Ready, Shared, Target};

/// Bytes read from the socket at most per read call (the relay gathers up to 64 KiB per chunk;
/// a burst takes a few reads, and 5,000 idle streams stay at 40 MB of buffers here).
const READ_BUFFER: usize = 8 * 1024;

/// Opens stream `i` on `channel`, reports on `ready` once it is live, then reads until it ends.
pub async fn run_one(
    i: usize,
    channel: String,
    target: Arc<Target>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    ready: mpsc::UnboundedSender<(usize, Ready)>,
) {
    let permit = gate.acquire_owned().await.expect("gate open");
    let setup = tokio::time::timeout(target.connect_timeout, open(i, &channel, &target)).await;
    drop(permit);
    let (stream, decoder, early) = match setup {
        Ok(Ok(s)) => s,
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
    for e in &early {
        on_event(e, &shared);
    }
    read_loop(stream, decoder, &shared).await;
}

/// Connects, sends the request and reads up to the `ready` event. Returns the stream, its
/// decoder and the events that came after `ready` in the same reads.
async fn open(i: usize, channel: &str, target: &Target) -> Result<(TcpStream, Decoder, Vec<Event>), String> {
    let ep = target.endpoint(i);
    let (host, path) = sse::split_url(&ep.url)?;
    let mut stream = subscribers::tcp_connect(i, target, ep.addr).await?;
    let request = sse::request(host, path, channel, None);
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("send: {}", e.kind()))?;
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = stream.read(&mut buf).await.map_err(|e| format!("read: {}", e.kind()))?;
        if n == 0 {
            return Err(decoder
                .refused_at_eof()
                .map_or_else(|| "eof before ready".to_string(), |e| short(&e.to_string())));
        }
        let events = decoder.feed(&buf[..n]).map_err(|e| short(&e.to_string()))?;
        if let Some(at) = events.iter().position(|e| e.name == "ready") {
            return Ok((stream, decoder, events[at + 1..].to_vec()));
        }
        if let Some(e) = events.iter().find(|e| e.name == "close") {
            return Err(format!("closed before ready: {}", short(&e.data)));
        }
        if decoder.done() {
            return Err("the response ended before ready".into());
        }
    }
}

/// Reads events until the stream ends.
async fn read_loop(mut stream: TcpStream, mut decoder: Decoder, shared: &Shared) {
    let mut buf = vec![0u8; READ_BUFFER];
    let why = loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) => break "eof".to_string(),
            Ok(n) => n,
            Err(e) => break format!("read error: {}", e.kind()),
        };
        match decoder.feed(&buf[..n]) {
            Ok(events) => {
                for e in &events {
                    on_event(e, shared);
                }
            }
            Err(e) => break short(&e.to_string()),
        }
        if decoder.done() {
            break "stream ended".to_string();
        }
    };
    if !shared.stopping.load(Ordering::Relaxed) {
        shared.events.add(why);
    }
}

/// Records one event: `message` events are deliveries; `close` and the like are counted.
fn on_event(e: &Event, shared: &Shared) {
    match e.name.as_str() {
        "message" => {
            subscribers::on_piece(Proto::Sse, &e.data, shared);
        }
        "subscribed" | "ready" => {}
        "close" => shared.events.add(format!("close event {}", short(&e.data))),
        other => shared.events.add(format!("sse event {other}")),
    }
}
