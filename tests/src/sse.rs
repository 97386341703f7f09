//! A Server-Sent Events client over a plain TCP socket (HTTP/1.1, chunked bodies), for the
//! relay's `/v1/sse`: it parses events exactly as the SSE specification says (`id:`, `event:`,
//! `data:` lines joined with LF, `:` comments), and keeps the last event id as `EventSource`
//! does, so a test can reconnect with it.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One parsed SSE event, or a comment line (`comment` set, the rest empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
    pub comment: Option<String>,
}

impl SseEvent {
    /// The data as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("event data is not JSON ({e}): {self:?}"))
    }
}

/// An open stream.
pub struct Sse {
    stream: TcpStream,
    /// Undecoded bytes of the chunked body.
    raw: Vec<u8>,
    /// Decoded body text not yet parsed into events.
    text: String,
    /// The body ended (final chunk or socket closed).
    pub ended: bool,
    /// The last event id seen (as `EventSource` keeps it).
    pub last_event_id: Option<String>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

/// A refused stream: status and body.
#[derive(Debug, Clone)]
pub struct SseRefusal {
    pub status: u16,
    pub body: String,
}

impl Sse {
    /// `GET path` with `headers`; Ok once a 200 with `text/event-stream` started, else the refusal.
    pub async fn open(port: u16, path: &str, headers: &[(&str, &str)]) -> Result<Sse, SseRefusal> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.expect("connect to the relay");
        Sse::open_on(stream, port, path, headers).await
    }

    /// [`Sse::open`] on a connection the caller opened (and may have used for other requests).
    pub async fn open_on(
        mut stream: TcpStream,
        port: u16,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Sse, SseRefusal> {
        let mut head =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.expect("send the request");
        let mut raw = Vec::new();
        let end = loop {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buf))
                .await
                .expect("response headers within 15 s")
                .expect("read the response");
            assert!(n > 0, "the relay closed the connection before answering");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_string();
        let rest = raw[end + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status: u16 =
            lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut sse = Sse {
            stream,
            raw: rest,
            text: String::new(),
            ended: false,
            last_event_id: None,
            status,
            headers,
        };
        if status != 200 {
            // A refusal has a Content-Length body.
            let len: usize = sse.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            while sse.raw.len() < len {
                let mut buf = [0u8; 4096];
                match tokio::time::timeout(Duration::from_secs(5), sse.stream.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => sse.raw.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            return Err(SseRefusal { status, body: String::from_utf8_lossy(&sse.raw).to_string() });
        }
        let ct = sse.header("content-type").unwrap_or_default().to_string();
        assert!(ct.starts_with("text/event-stream"), "content-type {ct}");
        Ok(sse)
    }

    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Decodes what chunks are complete in `raw` into `text`; true at the final chunk.
    fn dechunk(&mut self) -> bool {
        loop {
            let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else { return false };
            let size_text = String::from_utf8_lossy(&self.raw[..eol]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
            if size == 0 {
                return true;
            }
            if self.raw.len() < eol + 2 + size + 2 {
                return false;
            }
            let data = self.raw[eol + 2..eol + 2 + size].to_vec();
            self.raw.drain(..eol + 2 + size + 2);
            self.text.push_str(&String::from_utf8(data).expect("UTF-8 body"));
        }
    }

    /// Reads more of the body (waits at most `limit`); sets `ended` at its end. Bytes already
    /// read are decoded first, and when they made text there is no wait: the response head's
    /// read often brings the first chunks with it, and waiting on the socket then would hold
    /// those events back until the next bytes or the limit (issue 16: opens that took 10 s).
    async fn fill(&mut self, limit: Duration) {
        let before = self.text.len();
        if self.dechunk() {
            self.ended = true;
            return;
        }
        if self.text.len() > before {
            return;
        }
        let mut buf = vec![0u8; 64 * 1024];
        match tokio::time::timeout(limit, self.stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => self.ended = true,
            Ok(Ok(n)) => {
                self.raw.extend_from_slice(&buf[..n]);
                if self.dechunk() {
                    self.ended = true;
                }
            }
        }
    }

    /// Parses one complete event (or comment) out of `text`, if there is one.
    fn parse_one(&mut self) -> Option<SseEvent> {
        let end = self.text.find("\n\n")?;
        let block: String = self.text.drain(..end + 2).collect();
        let mut e = SseEvent { id: None, event: "message".into(), data: String::new(), comment: None };
        let mut data: Vec<&str> = Vec::new();
        for line in block.trim_end_matches('\n').split('\n') {
            if let Some(c) = line.strip_prefix(':') {
                e.comment = Some(c.trim().to_string());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => e.id = Some(value.to_string()),
                "event" => e.event = value.to_string(),
                "data" => data.push(value),
                _ => {}
            }
        }
        e.data = data.join("\n");
        if let Some(id) = &e.id {
            self.last_event_id = Some(id.clone());
        }
        Some(e)
    }

    /// The next event or comment within `limit`; None when the stream ended or nothing came.
    pub async fn next_within(&mut self, limit: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(e) = self.parse_one() {
                return Some(e);
            }
            let now = tokio::time::Instant::now();
            if self.ended || now >= deadline {
                return None;
            }
            self.fill(deadline - now).await;
        }
    }

    /// The next event that is not a comment or `retry` block (panics after 10 s or at the end).
    pub async fn next_event(&mut self) -> SseEvent {
        loop {
            match self.next_within(Duration::from_secs(10)).await {
                Some(e) if e.comment.is_some() || (e.data.is_empty() && e.id.is_none()) => continue,
                Some(e) => return e,
                None => panic!("no event within 10 s (stream ended: {})", self.ended),
            }
        }
    }

    /// Skips events until one named `name`; returns it.
    pub async fn until(&mut self, name: &str) -> SseEvent {
        loop {
            let e = self.next_event().await;
            if e.event == name {
                return e;
            }
        }
    }

    /// Waits (at most `limit`) for the end of the body; the events read meanwhile.
    pub async fn read_to_end(&mut self, limit: Duration) -> Vec<SseEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut out = Vec::new();
        while tokio::time::Instant::now() < deadline {
            match self.next_within(deadline - tokio::time::Instant::now()).await {
                Some(e) => out.push(e),
                None if self.ended => return out,
                None => {}
            }
        }
        panic!("the stream did not end within {limit:?}; read {out:?}");
    }
}
