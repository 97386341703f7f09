//! A WebSocket client speaking wire protocol v1, built for assertions.
//!
//! Frames that arrive while a test waits for something else (for instance `message` frames while
//! waiting for a `reply`) are queued and handed out later, in arrival order, so no frame is lost or
//! reordered. Every frame received is also kept in a transcript that is printed when an
//! expectation fails or times out.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How a client authenticates when it connects.
#[derive(Debug, Clone)]
pub enum Connect {
    /// No token at all.
    Anonymous,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `?token=<token>` in the URL.
    Query(String),
    /// This exact `Authorization` header value (for malformed ones).
    Authorization(String),
}

/// What came of a connection attempt that is expected to be refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The upgrade was answered with this HTTP status instead of 101.
    Http(u16),
    /// The upgrade succeeded, then the server closed with this code (`None`: no code / no frame).
    Closed(Option<u16>),
    /// The connection was accepted: a `ping` got its `pong`.
    Accepted,
}

/// Something read from the socket.
#[derive(Debug)]
enum Incoming {
    Json(Value),
    Close(Option<u16>),
    Ended(String),
}

/// A connected client. See the module docs.
pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pending: VecDeque<Value>,
    transcript: Vec<String>,
    next_ref: u64,
    /// How long `recv_json`, `request` and friends wait before failing the test.
    pub timeout: Duration,
}

impl Ws {
    /// Connects or panics.
    pub async fn connect(url: &str, auth: Connect) -> Ws {
        match Ws::try_connect(url, auth.clone()).await {
            Ok(ws) => ws,
            Err(e) => panic!("WebSocket connect to {url} ({auth:?}) failed: {e}"),
        }
    }

    /// Connects, returning the handshake error (an HTTP status for a refused upgrade).
    pub async fn try_connect(url: &str, auth: Connect) -> Result<Ws, tungstenite::Error> {
        let url = match &auth {
            Connect::Query(token) => format!("{url}?token={token}"),
            _ => url.to_string(),
        };
        let mut request = url.as_str().into_client_request()?;
        let header = match &auth {
            Connect::Bearer(token) => Some(format!("Bearer {token}")),
            Connect::Authorization(value) => Some(value.clone()),
            _ => None,
        };
        if let Some(header) = header {
            let value = HeaderValue::from_str(&header).expect("a valid header value");
            request.headers_mut().insert("Authorization", value);
        }
        let connecting = tokio_tungstenite::connect_async(request);
        let (stream, _response) =
            tokio::time::timeout(Duration::from_secs(10), connecting).await.map_err(|_| {
                tungstenite::Error::Io(std::io::Error::other("WebSocket handshake timed out after 10 s"))
            })??;
        Ok(Ws {
            stream,
            pending: VecDeque::new(),
            transcript: Vec::new(),
            next_ref: 1,
            timeout: Duration::from_secs(10),
        })
    }

    /// Attempts a connection that should be refused and reports how it ended: an HTTP status on the
    /// upgrade, a close frame right after it, or [`Refusal::Accepted`] when a `ping` got its `pong`.
    pub async fn connect_expecting_refusal(url: &str, auth: Connect) -> Refusal {
        match Ws::try_connect(url, auth).await {
            Err(tungstenite::Error::Http(response)) => Refusal::Http(response.status().as_u16()),
            Err(e) => panic!(
                "connection attempt failed in an unexpected way (neither an HTTP status nor a close): {e}"
            ),
            Ok(mut ws) => {
                // The server may close before or after reading our ping; either is a refusal.
                let _ =
                    ws.stream.send(Message::text(json!({"type": "ping", "ref": "probe"}).to_string())).await;
                loop {
                    match ws.read(Duration::from_secs(10)).await {
                        Some(Incoming::Close(code)) => return Refusal::Closed(code),
                        Some(Incoming::Ended(_)) => return Refusal::Closed(None),
                        Some(Incoming::Json(v)) if v["type"] == "pong" => return Refusal::Accepted,
                        Some(Incoming::Json(_)) => continue,
                        None => ws.fail("neither a close frame nor a pong within 10 s of connecting"),
                    }
                }
            }
        }
    }

    /// Attempts a connection that must be refused at the handshake: its HTTP status and JSON body.
    pub async fn refused_upgrade(url: &str, auth: Connect) -> (u16, Value) {
        match Ws::try_connect(url, auth.clone()).await {
            Err(tungstenite::Error::Http(response)) => {
                let body = response.body().as_deref().unwrap_or_default();
                (response.status().as_u16(), serde_json::from_slice(body).unwrap_or(Value::Null))
            }
            Err(e) => panic!("the upgrade ({auth:?}) failed without an HTTP status: {e}"),
            Ok(_) => panic!("the upgrade ({auth:?}) was accepted; expected a refusal"),
        }
    }

    /// Sends a JSON value as a text frame.
    pub async fn send_json(&mut self, value: &Value) {
        self.send(Message::text(value.to_string())).await;
    }

    /// Sends raw text (which need not be JSON).
    pub async fn send_text(&mut self, text: &str) {
        self.send(Message::text(text.to_string())).await;
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.send(Message::binary(bytes.to_vec())).await;
    }

    async fn send(&mut self, message: Message) {
        self.transcript.push(format!(">> {}", describe(&message)));
        if let Err(e) = self.stream.send(message).await {
            self.fail(&format!("send failed: {e}"));
        }
    }

    /// The next JSON frame (queued first, else from the socket); fails the test on timeout, close or
    /// a non-JSON frame.
    pub async fn recv_json(&mut self) -> Value {
        if let Some(v) = self.pending.pop_front() {
            return v;
        }
        self.recv_from_socket(self.timeout).await
    }

    /// Like [`Ws::recv_json`] with an explicit timeout.
    pub async fn recv_json_within(&mut self, limit: Duration) -> Value {
        if let Some(v) = self.pending.pop_front() {
            return v;
        }
        self.recv_from_socket(limit).await
    }

    async fn recv_from_socket(&mut self, limit: Duration) -> Value {
        match self.read(limit).await {
            Some(Incoming::Json(v)) => v,
            Some(Incoming::Close(code)) => {
                self.fail(&format!("expected a frame, the server closed (code {code:?})"))
            }
            Some(Incoming::Ended(why)) => {
                self.fail(&format!("expected a frame, the connection ended: {why}"))
            }
            None => self.fail(&format!("no frame within {limit:?}")),
        }
    }

    /// Reads one item from the socket, skipping protocol-level ping/pong; `None` on timeout.
    async fn read(&mut self, limit: Duration) -> Option<Incoming> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return None,
                Ok(next) => next,
            };
            let message = match next {
                None => return Some(Incoming::Ended("stream ended".into())),
                Some(Err(e)) => {
                    self.transcript.push(format!("<< error: {e}"));
                    return Some(Incoming::Ended(e.to_string()));
                }
                Some(Ok(m)) => m,
            };
            self.transcript.push(format!("<< {}", describe(&message)));
            match message {
                Message::Text(text) => match serde_json::from_str::<Value>(text.as_str()) {
                    Ok(v) => return Some(Incoming::Json(v)),
                    Err(e) => self.fail(&format!("server sent a text frame that is not JSON ({e})")),
                },
                Message::Close(frame) => return Some(Incoming::Close(frame.map(|f| u16::from(f.code)))),
                Message::Binary(_) => self.fail("server sent a binary frame; protocol v1 is JSON text"),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            }
        }
    }

    /// Sends `frame` with a fresh numeric `ref` (unless it has one) and returns the `reply` or `pong`
    /// carrying the same `ref`; frames arriving in between are queued for later.
    pub async fn request(&mut self, mut frame: Value) -> Value {
        if frame.get("ref").is_none() {
            frame["ref"] = json!(self.next_ref);
            self.next_ref += 1;
        }
        let want = frame["ref"].clone();
        self.send_json(&frame).await;
        self.await_reply(&want).await
    }

    /// Waits for the `reply`/`pong` whose `ref` equals `want`, queueing other frames.
    pub async fn await_reply(&mut self, want: &Value) -> Value {
        let deadline = tokio::time::Instant::now() + self.timeout;
        if let Some(i) = self.pending.iter().position(|v| is_answer_to(v, want)) {
            return self.pending.remove(i).unwrap();
        }
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read(left).await {
                Some(Incoming::Json(v)) if is_answer_to(&v, want) => return v,
                Some(Incoming::Json(v)) => self.pending.push_back(v),
                Some(Incoming::Close(code)) => self.fail(&format!(
                    "waiting for the answer to ref {want}, the server closed (code {code:?})"
                )),
                Some(Incoming::Ended(why)) => {
                    self.fail(&format!("waiting for the answer to ref {want}, the connection ended: {why}"))
                }
                None => self.fail(&format!("no answer to ref {want} within {:?}", self.timeout)),
            }
        }
    }

    /// `subscribe` to `channel`; returns the reply, whatever it says.
    pub async fn subscribe(&mut self, channel: &str) -> Value {
        self.request(json!({"type": "subscribe", "channel": channel})).await
    }

    /// `subscribe` to `channel` and assert the reply is `ok: true` for that channel.
    pub async fn subscribe_ok(&mut self, channel: &str) -> Value {
        let reply = self.subscribe(channel).await;
        if reply["type"] != "reply" || reply["ok"] != true || reply["channel"] != channel {
            self.fail(&format!("subscribe to {channel:?} was not ok: {reply}"));
        }
        reply
    }

    /// `unsubscribe` from `channel`; returns the reply.
    pub async fn unsubscribe(&mut self, channel: &str) -> Value {
        self.request(json!({"type": "unsubscribe", "channel": channel})).await
    }

    /// `ping` with a fresh ref; returns the `pong`.
    pub async fn ping(&mut self) -> Value {
        self.request(json!({"type": "ping"})).await
    }

    /// The next frame, asserted to be a `message` on `channel`.
    pub async fn expect_message(&mut self, channel: &str) -> Value {
        let frame = self.recv_json().await;
        if frame["type"] != "message" || frame["channel"] != channel {
            self.fail(&format!("expected a message on {channel:?}, got {frame}"));
        }
        frame
    }

    /// Asserts that no frame is queued and none arrives within `window`. Use only after a positive
    /// sync point, so the window checks something that had its chance to happen.
    pub async fn expect_no_message(&mut self, window: Duration) {
        if let Some(v) = self.pending.front() {
            let v = v.clone();
            self.fail(&format!("expected no frame, but {v} was already received"));
        }
        match self.read(window).await {
            None => {}
            Some(Incoming::Json(v)) => self.fail(&format!("expected no frame within {window:?}, got {v}")),
            Some(Incoming::Close(code)) => {
                self.fail(&format!("expected no frame within {window:?}, the server closed (code {code:?})"))
            }
            Some(Incoming::Ended(why)) => {
                self.fail(&format!("expected no frame within {window:?}, the connection ended: {why}"))
            }
        }
    }

    /// Waits for the server to close the connection and returns the close code (`None`: a close
    /// frame without a code, or the TCP stream ended without a close frame). JSON frames that arrive
    /// first are queued.
    pub async fn expect_close(&mut self) -> Option<u16> {
        self.expect_close_within(self.timeout).await
    }

    /// Like [`Ws::expect_close`] with an explicit timeout.
    pub async fn expect_close_within(&mut self, limit: Duration) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read(left).await {
                Some(Incoming::Json(v)) => self.pending.push_back(v),
                Some(Incoming::Close(code)) => return code,
                Some(Incoming::Ended(_)) => return None,
                None => self.fail(&format!("the server did not close the connection within {limit:?}")),
            }
        }
    }

    /// The next JSON frame (queued first), or `Err(close code)` when the server closes first.
    pub async fn next_frame_or_close(&mut self) -> Result<Value, Option<u16>> {
        if let Some(v) = self.pending.pop_front() {
            return Ok(v);
        }
        match self.read(self.timeout).await {
            Some(Incoming::Json(v)) => Ok(v),
            Some(Incoming::Close(code)) => Err(code),
            Some(Incoming::Ended(_)) => Err(None),
            None => self.fail(&format!("neither a frame nor a close within {:?}", self.timeout)),
        }
    }

    /// Frames received but not yet handed out.
    pub fn pending(&self) -> &VecDeque<Value> {
        &self.pending
    }

    /// Everything sent and received so far, one line each.
    pub fn transcript(&self) -> String {
        self.transcript.join("\n")
    }

    /// Fails the test with `what` and the transcript.
    pub fn fail(&self, what: &str) -> ! {
        panic!("{what}\n--- WebSocket transcript ---\n{}\n--- end transcript ---", self.transcript());
    }
}

fn is_answer_to(frame: &Value, want: &Value) -> bool {
    matches!(frame["type"].as_str(), Some("reply") | Some("pong")) && &frame["ref"] == want
}

fn describe(message: &Message) -> String {
    const MAX: usize = 400;
    match message {
        Message::Text(t) => {
            let s = t.as_str();
            if s.len() > MAX {
                let mut cut = MAX;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                format!("text {}… ({} bytes)", &s[..cut], s.len())
            } else {
                format!("text {s}")
            }
        }
        Message::Binary(b) => format!("binary ({} bytes)", b.len()),
        Message::Ping(_) => "ping".into(),
        Message::Pong(_) => "pong".into(),
        Message::Close(f) => format!("close {f:?}"),
        Message::Frame(_) => "raw frame".into(),
    }
}
