//! Server-Sent Events (`GET /v1/sse?channel=C`, docs/transports.md), spoken over a plain
//! HTTP/1.1 connection without an HTTP client crate: the request text, then a sans-IO
//! [`Decoder`] fed the bytes read from the socket. It reads the response head (status must be
//! 200), undoes `Transfer-Encoding: chunked` when the response uses it, and splits the body into
//! SSE events (`id:`, `event:`, `data:` lines, ended by a blank line; `:` comments skipped).
//!
//! An event's `data` is a protocol v1 frame, so deliveries are read by
//! [`super::realtime::classify`] like WebSocket frames: the stream's `message` events are the
//! deliveries; `subscribed` (one per channel) and then `ready` end the opening exchange;
//! `close` ends the stream.

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Longest event (or chunk-size line) held while incomplete.
const MAX_EVENT: usize = 1024 * 1024;

/// The request of a stream on `channel` (`token`: `?token=`, else anonymous).
pub fn request(host: &str, path: &str, channel: &str, token: Option<&str>) -> String {
    let mut query = format!("channel={}", encode(channel));
    if let Some(t) = token {
        query.push_str("&token=");
        query.push_str(&encode(t));
    }
    let sep = if path.contains('?') { '&' } else { '?' };
    format!(
        "GET {path}{sep}{query} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\
         Cache-Control: no-cache\r\n\r\n"
    )
}

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `http://HOST:PORT/PATH` split into `HOST:PORT` and `/PATH` (with its query).
pub fn split_url(url: &str) -> Result<(&str, &str), String> {
    let rest = url.strip_prefix("http://").ok_or("an SSE --url starts with http://")?;
    Ok(match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    })
}

/// One SSE event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `event:` (`message` when absent).
    pub name: String,
    pub id: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// What went wrong with a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// Not 200: the status and the start of the body (the relay's JSON error).
    Status(u16, String),
    /// Not HTTP, or a malformed chunk, or something over its size limit.
    Malformed(String),
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::Status(code, body) => write!(f, "http {code} {body}"),
            SseError::Malformed(why) => write!(f, "malformed response: {why}"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Head,
    /// Chunked body: waiting for a chunk-size line.
    ChunkSize,
    /// Chunked body: this many bytes of the chunk left, then its CRLF.
    ChunkData(usize),
    ChunkEnd,
    /// Body without chunking: `Content-Length` bytes, or until the connection ends.
    Plain(Option<usize>),
    /// The last chunk arrived.
    Done,
}

/// The response of one stream, decoded as bytes arrive.
pub struct Decoder {
    state: State,
    /// Bytes not yet consumed by the HTTP layer (head, chunk framing).
    raw: Vec<u8>,
    /// Body bytes not yet forming a whole event.
    body: Vec<u8>,
    /// The status when it was not 200 (the body is gathered for the message).
    refused: Option<u16>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder { state: State::Head, raw: Vec::new(), body: Vec::new(), refused: None }
    }

    /// Whether the response ended (the last chunk was read).
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds bytes read from the socket; returns the events they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, SseError> {
        self.raw.extend_from_slice(bytes);
        loop {
            match self.state {
                State::Head => {
                    let Some(end) = find(&self.raw, b"\r\n\r\n") else {
                        if self.raw.len() > MAX_HEAD {
                            return Err(SseError::Malformed("response head too long".into()));
                        }
                        return self.events();
                    };
                    let head = String::from_utf8_lossy(&self.raw[..end]).into_owned();
                    self.raw.drain(..end + 4);
                    self.state = head_state(&head, &mut self.refused)?;
                }
                State::Plain(length) => {
                    self.body.append(&mut self.raw);
                    if length.is_some_and(|n| self.body.len() >= n) {
                        self.state = State::Done;
                    }
                    return self.events();
                }
                State::ChunkSize => {
                    let Some(end) = find(&self.raw, b"\r\n") else {
                        if self.raw.len() > MAX_EVENT {
                            return Err(SseError::Malformed("chunk size line too long".into()));
                        }
                        return self.events();
                    };
                    let line = String::from_utf8_lossy(&self.raw[..end]).into_owned();
                    self.raw.drain(..end + 2);
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| SseError::Malformed(format!("chunk size {line:?}")))?;
                    self.state = if size == 0 { State::Done } else { State::ChunkData(size) };
                }
                State::ChunkData(left) => {
                    if self.raw.is_empty() {
                        return self.events();
                    }
                    let take = left.min(self.raw.len());
                    self.body.extend(self.raw.drain(..take));
                    self.state = if take == left { State::ChunkEnd } else { State::ChunkData(left - take) };
                }
                State::ChunkEnd => {
                    if self.raw.len() < 2 {
                        return self.events();
                    }
                    if &self.raw[..2] != b"\r\n" {
                        return Err(SseError::Malformed("chunk not followed by CRLF".into()));
                    }
                    self.raw.drain(..2);
                    self.state = State::ChunkSize;
                }
                State::Done => return self.events(),
            }
        }
    }

    /// The whole events in `body` (or, for a refused response, the error once it is complete).
    fn events(&mut self) -> Result<Vec<Event>, SseError> {
        if let Some(code) = self.refused {
            if self.state == State::Done || self.body.len() >= 200 {
                let text = String::from_utf8_lossy(&self.body[..self.body.len().min(200)]);
                return Err(SseError::Status(code, text.trim().to_string()));
            }
            return Ok(vec![]);
        }
        let mut out = Vec::new();
        let mut start = 0;
        while let Some((end, next)) = event_end(&self.body[start..]) {
            let text = String::from_utf8_lossy(&self.body[start..start + end]);
            if let Some(e) = parse_event(&text) {
                out.push(e);
            }
            start += next;
        }
        self.body.drain(..start);
        if self.body.len() > MAX_EVENT {
            return Err(SseError::Malformed("an event over 1 MiB".into()));
        }
        Ok(out)
    }

    /// The status of a refused response, once its connection ended before the body was whole.
    pub fn refused_at_eof(&self) -> Option<SseError> {
        self.refused.map(|code| {
            SseError::Status(code, String::from_utf8_lossy(&self.body).trim().chars().take(200).collect())
        })
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The end of the first event in `b` (its length, and where the next one starts): a blank
/// line, written `\n\n` (the relay's), `\r\n\r\n` or `\r\r`.
fn event_end(b: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\n' if b.get(i + 1) == Some(&b'\n') => return Some((i, i + 2)),
            b'\r'
                if b.get(i + 1) == Some(&b'\n')
                    && b.get(i + 2) == Some(&b'\r')
                    && b.get(i + 3) == Some(&b'\n') =>
            {
                return Some((i, i + 4))
            }
            b'\r' if b.get(i + 1) == Some(&b'\r') => return Some((i, i + 2)),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The body state after a response head; a status other than 200 is kept in `refused`.
fn head_state(head: &str, refused: &mut Option<u16>) -> Result<State, SseError> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let code = status
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| SseError::Malformed(format!("status line {status:?}")))?;
    if code != 200 {
        *refused = Some(code);
    }
    let (mut chunked, mut length) = (false, None);
    for (k, v) in lines.filter_map(|l| l.split_once(':')) {
        let k = k.trim();
        if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked |= v.to_ascii_lowercase().contains("chunked");
        } else if k.eq_ignore_ascii_case("content-length") {
            length = v.trim().parse::<usize>().ok();
        }
    }
    Ok(if chunked { State::ChunkSize } else { State::Plain(length) })
}

/// One event's lines; `None` for a block of comments only.
fn parse_event(text: &str) -> Option<Event> {
    let (mut name, mut id, mut data, mut any) = (None, None, None::<String>, false);
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => name = Some(value.to_string()),
            "id" => id = Some(value.to_string()),
            "data" => match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            },
            _ => {}
        }
        any |= field != "retry";
    }
    any.then(|| Event { name: name.unwrap_or_else(|| "message".into()), id, data: data.unwrap_or_default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";

    fn chunk(s: &str) -> String {
        format!("{:x}\r\n{s}\r\n", s.len())
    }

    #[test]
    fn request_names_the_channel_and_token_percent_encoded() {
        let r = request("127.0.0.1:4000", "/v1/sse", "bench:1", Some("a.b+c"));
        assert!(
            r.starts_with("GET /v1/sse?channel=bench%3A1&token=a.b%2Bc HTTP/1.1\r\nHost: 127.0.0.1:4000\r\n"),
            "{r}"
        );
        assert!(r.ends_with("\r\n\r\n"));
        assert_eq!(split_url("http://h:1/v1/sse").unwrap(), ("h:1", "/v1/sse"));
        assert!(split_url("ws://h:1/").is_err());
    }

    #[test]
    fn chunked_events_split_anywhere_come_out_whole() {
        let body = chunk("retry: 1000\n\n: ok\n\nevent: subscribed\ndata: {\"type\":\"reply\"}\n\n")
            + &chunk(
                "id: 0A\nevent: message\ndata: {\"type\":\"message\",\"payload\":{\"s\": 1, \"t\": 2}}\n\n",
            )
            + &chunk("id: 0B\nevent: message\ndata: a\ndata: b\n\n");
        let all = format!("{HEAD}{body}");
        // Fed one byte at a time, and in one piece: the same events.
        for step in [1, all.len()] {
            let mut d = Decoder::new();
            let mut got = vec![];
            for piece in all.as_bytes().chunks(step) {
                got.extend(d.feed(piece).unwrap());
            }
            let names: Vec<&str> = got.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(names, ["subscribed", "message", "message"], "step {step}");
            assert_eq!(got[1].id.as_deref(), Some("0A"));
            assert_eq!(got[1].data, r#"{"type":"message","payload":{"s": 1, "t": 2}}"#);
            assert_eq!(got[2].data, "a\nb");
        }
    }

    #[test]
    fn an_event_may_span_chunks_and_the_last_chunk_ends_the_stream() {
        let mut d = Decoder::new();
        let first = format!("{HEAD}{}", chunk("event: ready\nda"));
        assert!(d.feed(first.as_bytes()).unwrap().is_empty());
        let got = d.feed(format!("{}0\r\n\r\n", chunk("ta: {}\n\n")).as_bytes()).unwrap();
        assert_eq!(got, [Event { name: "ready".into(), id: None, data: "{}".into() }]);
        assert!(d.done());
    }

    #[test]
    fn a_body_without_chunking_is_read_until_eof_and_crlf_blank_lines_count() {
        let mut d = Decoder::new();
        let got = d.feed(b"HTTP/1.1 200 OK\r\n\r\ndata: x\r\n\r\nevent: close\rdata: y\r\r").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].name.as_str(), got[0].data.as_str()), ("message", "x"));
        assert_eq!((got[1].name.as_str(), got[1].data.as_str()), ("close", "y"));
    }

    #[test]
    fn a_refusal_reports_its_status_and_body() {
        let mut d = Decoder::new();
        let head =
            "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        let resp = format!("{head}{}0\r\n\r\n", chunk(r#"{"error":{"code":"REALTIME_UNAUTHORIZED"}}"#));
        match d.feed(resp.as_bytes()) {
            Err(SseError::Status(403, body)) => assert!(body.contains("REALTIME_UNAUTHORIZED"), "{body}"),
            other => panic!("{other:?}"),
        }
        let mut d = Decoder::new();
        let resp = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(d.feed(resp), Err(SseError::Status(401, "{}".into())));
        // Without a length, the body ends with the connection.
        let mut d = Decoder::new();
        assert!(d.feed(b"HTTP/1.1 502 Bad Gateway\r\n\r\nno").unwrap().is_empty());
        assert_eq!(d.refused_at_eof(), Some(SseError::Status(502, "no".into())));
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(Decoder::new().feed(b"SSH-2.0\r\n\r\n"), Err(SseError::Malformed(_))));
        let bad = format!("{HEAD}zz\r\n");
        assert!(matches!(Decoder::new().feed(bad.as_bytes()), Err(SseError::Malformed(_))));
        let bad = format!("{HEAD}2\r\nabXY");
        assert!(matches!(Decoder::new().feed(bad.as_bytes()), Err(SseError::Malformed(_))));
    }
}
