//! An event stream's own HTTP/1 connection: `GET /v1/sse` served without hyper's connection.
//!
//! hyper keeps two 8 KiB buffers per HTTP/1 connection (its read buffer and its head and write
//! buffer, `hyper/src/proto/h1/io.rs`) for as long as a response streams, and offers no way to
//! give them back: 16 KiB per idle stream, more than everything else a stream costs. So the
//! listener ([`super::listener`]) peeks at each new connection ([`opening`]); one whose first
//! request is `GET /v1/sse` comes here. Its head is read into a buffer that is freed once
//! parsed ([`parse_head`], httparse), the request goes through the same router as any other
//! (same extractors, handler, CORS layer and error bodies), and the response is written
//! straight to the socket: [`response_head`], then the body as chunks as it comes. The
//! connection closes after that one response (a stream's response says `connection: close`
//! anyway; a refusal says it too). What hyper does for a streaming response is kept: a `date`
//! header, chunked framing for HTTP/1.1 (a body of known length gets `content-length`), no
//! framing for HTTP/1.0, and the stream ends when the client closes its side or the connection
//! is aborted (the listener's `ConnectionAbort`, for the stall rule).
//!
//! A stream requested on a kept-alive connection after another request is served by hyper, as
//! every other request is: the same answer, with hyper's buffers.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::body::{Body, HttpBody as _};
use axum::extract::Request;
use axum::http::{header, Extensions, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use axum::Router;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The request line's start that sends a connection here (then `?` or a space).
const STREAM_REQUEST: &[u8] = b"GET /v1/sse";
/// The largest request head read here (browsers send a few KiB at most).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header lines read here (hyper's default limit too).
const MAX_HEADERS: usize = 100;

/// What a new connection's first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Its first request is `GET /v1/sse`: [`serve`] it.
    EventStream,
    /// Anything else: hyper serves it.
    Other,
    /// Closed, failed, or silent for the header timeout: drop it (as hyper would).
    Gone,
}

/// Whether a connection's first bytes `seen` start a `GET /v1/sse` request: None while they
/// are too few to tell.
pub fn classify(seen: &[u8]) -> Option<bool> {
    let n = seen.len().min(STREAM_REQUEST.len());
    if seen[..n] != STREAM_REQUEST[..n] {
        return Some(false);
    }
    seen.get(STREAM_REQUEST.len()).map(|b| *b == b'?' || *b == b' ')
}

/// Peeks at `stream`'s first bytes (nothing is consumed) to tell where it goes, waiting at
/// most `limit` for them.
pub async fn opening(stream: &TcpStream, limit: Duration) -> Opening {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = [0u8; STREAM_REQUEST.len() + 1];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut seen)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return Opening::Gone,
        };
        match classify(&seen[..n]) {
            Some(true) => return Opening::EventStream,
            Some(false) => return Opening::Other,
            // Part of the request line so far. A peek returns at once while any byte is
            // unread, so wait a moment rather than for readiness.
            None => {
                if tokio::time::Instant::now() + Duration::from_millis(5) >= deadline {
                    return Opening::Gone;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

/// Why a request head is not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("request head over {} bytes or {} header lines", MAX_HEAD_BYTES, MAX_HEADERS)]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(String),
    #[error("the connection closed before the request head was complete")]
    Closed,
}

/// Parses the request head at the start of `buf`: the request (with an empty body) and the
/// head's length, or None while the head is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut lines);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_BYTES => len,
        Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    let malformed = |what: &str| HeadError::Malformed(format!("invalid {what}"));
    let method =
        Method::from_bytes(parsed.method.unwrap_or_default().as_bytes()).map_err(|_| malformed("method"))?;
    let uri: Uri = parsed.path.unwrap_or_default().parse().map_err(|_| malformed("request target"))?;
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = if parsed.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    for line in parsed.headers.iter() {
        let name = HeaderName::from_bytes(line.name.as_bytes()).map_err(|_| malformed("header name"))?;
        let value = HeaderValue::from_bytes(line.value).map_err(|_| malformed("header value"))?;
        request.headers_mut().append(name, value);
    }
    Ok(Some((request, len)))
}

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `content-length`: a body whose size is known.
    Length(u64),
    /// `transfer-encoding: chunked` (HTTP/1.1).
    Chunked,
    /// The body ends with the connection (HTTP/1.0).
    UntilClose,
}

impl Framing {
    /// The framing of `body` in a response to a request of `version`.
    pub fn of(body: &Body, version: Version) -> Self {
        match body.size_hint().exact() {
            Some(n) => Framing::Length(n),
            None if version == Version::HTTP_10 => Framing::UntilClose,
            None => Framing::Chunked,
        }
    }
}

/// The response head: status line (in the request's version), the response's headers, then
/// `connection: close` and `date` unless given, and the framing header.
pub fn response_head(
    status: StatusCode,
    version: Version,
    headers: &HeaderMap,
    framing: Framing,
    date: &str,
) -> Vec<u8> {
    let http = if version == Version::HTTP_10 { "HTTP/1.0" } else { "HTTP/1.1" };
    let reason = status.canonical_reason().unwrap_or("");
    let mut head = format!("{http} {} {reason}\r\n", status.as_str()).into_bytes();
    let mut line = |name: &[u8], value: &[u8]| {
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    };
    for (name, value) in headers {
        // The framing is this module's business.
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            line(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    if !headers.contains_key(header::CONNECTION) {
        line(b"connection", b"close");
    }
    if !headers.contains_key(header::DATE) {
        line(b"date", date.as_bytes());
    }
    match framing {
        Framing::Length(n) => line(b"content-length", n.to_string().as_bytes()),
        Framing::Chunked => line(b"transfer-encoding", b"chunked"),
        Framing::UntilClose => {}
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// The socket a stream came on, what its request carries into the router (the listener's
/// extensions), and the token that aborts it.
pub struct Conn {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub extensions: Extensions,
    pub aborted: CancellationToken,
}

/// Serves one connection whose first request is `GET /v1/sse` (see the module docs): reads
/// its head within `header_timeout`, answers through `router`, then closes.
pub async fn serve(conn: Conn, router: Router, header_timeout: Duration) {
    let Conn { mut stream, peer, extensions, aborted } = conn;
    let reading = Box::pin(tokio::time::timeout(header_timeout, read_head(&mut stream)));
    let mut request = match reading.await {
        Ok(Ok(request)) => request,
        Ok(Err(e @ (HeadError::TooLarge | HeadError::Malformed(_)))) => {
            tracing::debug!(%peer, error = %e, "event stream request refused");
            let status = match e {
                HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            let head =
                response_head(status, Version::HTTP_11, &HeaderMap::new(), Framing::Length(0), &date());
            let _ = stream.write_all(&head).await;
            let _ = stream.shutdown().await;
            return;
        }
        // Closed, or too slow to send its head: dropped, as hyper does.
        Ok(Err(HeadError::Closed)) | Err(_) => return,
    };
    let version = request.version();
    request.extensions_mut().extend(extensions);
    // Boxed, like every call that only runs before the stream starts: this future lives as
    // long as the stream, and is as large as its largest state.
    let response = match Box::pin(router.oneshot(request)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, body) = response.into_parts();
    let framing = Framing::of(&body, version);
    let head = response_head(parts.status, version, &parts.headers, framing, &date());
    drop(parts);
    let (mut from_client, mut to_client) = stream.split();
    if write_parts(&mut to_client, [&head, &[], &[]]).await.is_err() {
        return;
    }
    drop(head);
    let mut body = body.into_data_stream();
    // Nothing more is expected from the client; a read only tells when it goes away.
    let mut ignored = [0u8; 64];
    loop {
        let next = tokio::select! {
            biased;
            _ = aborted.cancelled() => return,
            read = from_client.read(&mut ignored) => match read {
                Ok(n) if n > 0 => continue,
                _ => return,
            },
            next = body.next() => next,
        };
        let chunk = match next {
            Some(Ok(chunk)) if chunk.is_empty() => continue,
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => {
                tracing::debug!(%peer, error = %e, "event stream body failed");
                return;
            }
            None => break,
        };
        let size;
        let parts: [&[u8]; 3] = match framing {
            Framing::Chunked => {
                size = format!("{:x}\r\n", chunk.len());
                [size.as_bytes(), &chunk, b"\r\n"]
            }
            Framing::Length(_) | Framing::UntilClose => [&chunk, &[], &[]],
        };
        // A client that stops reading blocks this write: the stall rule then aborts.
        let written = tokio::select! {
            biased;
            _ = aborted.cancelled() => return,
            written = write_parts(&mut to_client, parts) => written,
        };
        if written.is_err() {
            return;
        }
    }
    if framing == Framing::Chunked && write_parts(&mut to_client, [b"0\r\n\r\n", &[], &[]]).await.is_err() {
        return;
    }
    let _ = to_client.shutdown().await;
}

/// Reads a request head; the buffer is freed when it returns.
async fn read_head(stream: &mut TcpStream) -> Result<Request, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.len());
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Err(HeadError::Closed),
            Ok(_) => {}
        }
        if let Some((request, _)) = parse_head(&buf)? {
            return Ok(request);
        }
    }
}

/// Writes `parts` in order with as few writes as the socket allows.
async fn write_parts<W: AsyncWrite + Unpin>(to: &mut W, mut parts: [&[u8]; 3]) -> io::Result<()> {
    while parts.iter().any(|p| !p.is_empty()) {
        let slices = [IoSlice::new(parts[0]), IoSlice::new(parts[1]), IoSlice::new(parts[2])];
        let mut n = to.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        for p in parts.iter_mut() {
            let k = n.min(p.len());
            *p = &p[k..];
            n -= k;
        }
    }
    Ok(())
}

/// Now as an HTTP date.
fn date() -> String {
    httpdate::fmt_http_date(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_get_of_the_stream_path_is_taken_and_a_partial_line_waits() {
        assert_eq!(classify(b"GET /v1/sse?channel=a HTTP/1.1\r\n"), Some(true));
        assert_eq!(classify(b"GET /v1/sse HTTP/1.1\r\n"), Some(true));
        assert_eq!(classify(b"GET /v1/ssex HTTP/1.1\r\n"), Some(false), "another path");
        assert_eq!(classify(b"GET /v1/sse/x HTTP/1.1\r\n"), Some(false));
        assert_eq!(
            classify(b"OPTIONS /v1/sse?channel=a HTTP/1.1\r\n"),
            Some(false),
            "preflights go to hyper"
        );
        assert_eq!(classify(b"GET /v1/socket HTTP/1.1\r\n"), Some(false));
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), Some(false), "HTTP/2");
        assert_eq!(classify(b"\x16\x03\x01"), Some(false), "TLS");
        assert_eq!(classify(b"GET /v1/s"), None);
        assert_eq!(classify(b"GET /v1/sse"), None, "the next byte decides");
        assert_eq!(classify(b""), None);
    }

    #[test]
    fn a_head_becomes_a_request_once_complete() {
        let head = b"GET /v1/sse?channel=a&token=t HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 00ff\r\nX-A: 1\r\nX-A: 2\r\n\r\nrest";
        assert!(parse_head(&head[..20]).unwrap().is_none(), "incomplete");
        let (request, len) = parse_head(head).unwrap().unwrap();
        assert_eq!(len, head.len() - 4, "what follows the head is not part of it");
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri().path(), "/v1/sse");
        assert_eq!(request.uri().query(), Some("channel=a&token=t"));
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["last-event-id"], "00ff");
        assert_eq!(request.headers().get_all("x-a").iter().count(), 2, "repeated headers are kept");
        let (old, _) = parse_head(b"GET /v1/sse?channel=a HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!(old.version(), Version::HTTP_10);
    }

    #[test]
    fn oversized_and_malformed_heads_are_refused() {
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: v\r\n")).collect();
        let head = format!("GET /v1/sse HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse_head(head.as_bytes()).unwrap_err(), HeadError::TooLarge);
        let endless = format!("GET /v1/sse HTTP/1.1\r\nx-big: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse_head(endless.as_bytes()).unwrap_err(), HeadError::TooLarge);
        assert!(matches!(
            parse_head(b"GET /v1/sse HTTP/1.1\r\nbad header\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(parse_head(b"GET /v1/sse HTTP/9.9\r\n\r\n"), Err(HeadError::Malformed(_))));
    }

    #[test]
    fn response_heads_frame_the_body_as_hyper_does() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        let date = "Fri, 04 Dec 2026 15:00:00 GMT";
        let head = response_head(StatusCode::OK, Version::HTTP_11, &headers, Framing::Chunked, date);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\
             date: Fri, 04 Dec 2026 15:00:00 GMT\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        let head =
            response_head(StatusCode::FORBIDDEN, Version::HTTP_10, &headers, Framing::Length(12), date);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.0 403 Forbidden\r\nconnection: close\r\ndate: Fri, 04 Dec 2026 15:00:00 GMT\r\n\
             content-length: 12\r\n\r\n",
            "the length is the body's own, not a header's claim"
        );
        assert_eq!(Framing::of(&Body::from("{}"), Version::HTTP_11), Framing::Length(2));
        assert_eq!(Framing::of(&Body::empty(), Version::HTTP_11), Framing::Length(0));
        let stream = Body::from_stream(futures_util::stream::empty::<Result<bytes::Bytes, io::Error>>());
        assert_eq!(Framing::of(&stream, Version::HTTP_11), Framing::Chunked);
        let stream = Body::from_stream(futures_util::stream::empty::<Result<bytes::Bytes, io::Error>>());
        assert_eq!(Framing::of(&stream, Version::HTTP_10), Framing::UntilClose);
    }

    #[tokio::test]
    async fn parts_are_written_whole_and_in_order() {
        let (mut a, mut b) = tokio::io::duplex(7);
        let writer = tokio::spawn(async move {
            write_parts(&mut a, [b"5\r\n", b"hello", b"\r\n"]).await.unwrap();
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 3];
        while got.len() < 10 {
            let n = b.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got, b"5\r\nhello\r\n");
    }
}
