//! Server-Sent Events transport: `GET /v1/sse?channel=a&channel=b` (token as a Bearer header or
//! `?token=`; resume point as the `Last-Event-ID` header or `?last_event_id=`). One stream is
//! one session ([`Session::open_stream`]) whose channels form one group with a single cursor
//! (`crate::service::stream`); its queue is written as SSE events ([`SseEncoder`]).
//!
//! Every channel is permission-checked before the response starts: a refusal is an HTTP error
//! with the usual JSON body (401, 403, 404, 400). Then the stream runs until:
//! * the client goes away (hyper drops the body);
//! * the token expires: `close` 4001;
//! * the relay shuts down: `close` 1001;
//! * the queue held bytes and the client read nothing for the stall timeout: the socket is
//!   dropped (4009, counted as a slow close). hyper stops polling a body whose socket is full,
//!   so that case, and a `close` the client never reads, end the connection through the
//!   listener ([`ConnectionAbort`]).
//!
//! A stream that falls behind (its queue refused an event) is not closed: all its channels
//! catch up from the log as one group, in cursor order (`crate::service::stream::catch_up`).
//! An idle stream gets a `:` comment every `--sse-keepalive-secs`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Version};
use axum::response::Response;
use axum::Extension;
use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::auth::Authenticated;
use super::error::ApiError;
use super::listener::ConnectionAbort;
use super::presence::{Command, Streams};
use crate::app::App;
use crate::core::error::close;
use crate::core::Cursor;
use crate::hub::{Joined, Outbound, SessionHandle, SessionQueue};
use crate::protocol::sse::{self, SseEncoder};
use crate::protocol::{Encoder, WireFrame};
use crate::service::session::Session;
use crate::service::stream::{catch_up, Authorized};

/// Bytes gathered into one body chunk before it is handed to hyper.
const CHUNK_BYTES: usize = 64 * 1024;
/// The reconnection delay the stream asks `EventSource` to use.
const RETRY_MS: u64 = 1000;

/// What the query names.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StreamParams {
    pub channels: Vec<String>,
    pub last_event_id: Option<String>,
    /// Hint stream: messages without payload.
    pub hint: bool,
}

/// A boolean query value: `1`/`true` or `0`/`false`.
pub fn flag(name: &str, v: &str) -> Result<bool, String> {
    match v {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        _ => Err(format!("'{name}' must be 1 or 0 (true or false), not {v:?}")),
    }
}

/// Parses the query: repeated `channel`, optional `last_event_id` (empty counts as absent);
/// `token` is the extractor's; anything else is refused, so a typo is not silently ignored.
pub fn parse_query(query: Option<&str>) -> Result<StreamParams, String> {
    let mut p = StreamParams::default();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*k {
            "channel" => p.channels.push(v.into_owned()),
            "last_event_id" if !v.is_empty() => p.last_event_id = Some(v.into_owned()),
            "last_event_id" | "token" => {}
            "hint" => p.hint = flag("hint", &v)?,
            other => {
                return Err(format!(
                    "unknown query parameter '{other}' (expected channel, last_event_id, hint, token)"
                ))
            }
        }
    }
    Ok(p)
}

/// The resume cursor: the `Last-Event-ID` header, else the `last_event_id` parameter.
fn resume_cursor(headers: &HeaderMap, param: Option<&str>) -> Result<Option<Cursor>, ApiError> {
    let header = headers.get("last-event-id").map(|v| v.to_str().unwrap_or("\u{fffd}").trim());
    match header.filter(|h| !h.is_empty()).or(param) {
        None => Ok(None),
        Some(id) => id.parse::<Cursor>().map(Some).map_err(|e| {
            ApiError::invalid(format!("the last event id {id:?} is not a cursor of this relay: {e}"))
        }),
    }
}

/// `GET /v1/sse`.
pub async fn handler(
    State(app): State<Arc<App>>,
    Authenticated(identity): Authenticated,
    abort: Option<Extension<ConnectionAbort>>,
    Extension(streams): Extension<Arc<Streams>>,
    version: Version,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = parse_query(query.as_deref()).map_err(ApiError::invalid)?;
    let from = resume_cursor(&headers, params.last_event_id.as_deref())?;
    let (session, queue) = Session::open_stream(app.clone(), identity);
    let group = match session.authorize_group(params.channels).await {
        Ok(g) => g,
        Err(e) => {
            session.close().await;
            return Err(e.into());
        }
    };
    let (close_tx, close_rx) = oneshot::channel();
    let gone = CancellationToken::new();
    let keepalive = app.config.sse_keepalive;
    let ends = Ends { close_tx, gone: gone.clone(), abort: abort.map(|a| a.0) };
    app.tracker.spawn(run(session, group, from, ends, streams));
    let encoder = SseEncoder { hint: params.hint };
    let body = Writer {
        queue,
        encoder,
        close_rx: Some(close_rx),
        _gone: gone.drop_guard(),
        keepalive,
        started: false,
    };
    let mut response = Response::builder();
    if version <= Version::HTTP_11 {
        // The socket ends with the stream: a client that stopped reading is not kept until the
        // header timeout, and nobody reuses an event stream's connection anyway.
        response = response.header(header::CONNECTION, "close");
    }
    Ok(response
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache, no-transform")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(body.into_stream()))
        .expect("valid response"))
}

/// The response body's state: the session queue written as SSE.
struct Writer {
    queue: SessionQueue,
    encoder: SseEncoder,
    close_rx: Option<oneshot::Receiver<String>>,
    /// Dropped with the body: tells the session the client is gone.
    _gone: DropGuard,
    keepalive: Duration,
    started: bool,
}

impl Writer {
    fn into_stream(self) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
        futures_util::stream::unfold(self, |mut w| async move {
            let chunk = w.next_chunk().await?;
            Some((Ok(chunk), w))
        })
    }

    /// The next bytes of the stream, or None at its end. Being asked again means hyper took
    /// the previous chunk: that is the writer's progress (see the stall rule).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.started {
            self.started = true;
            return Some(Bytes::from(sse::retry(RETRY_MS) + &sse::comment("ok")));
        }
        self.queue.progressed();
        let close_rx = self.close_rx.as_mut()?;
        let first = tokio::select! {
            biased;
            closing = close_rx => {
                self.close_rx = None;
                return closing.ok().map(Bytes::from);
            }
            item = self.queue.recv() => item,
            _ = tokio::time::sleep(self.keepalive) => return Some(Bytes::from(sse::comment("keep-alive"))),
        };
        let Some(first) = first else {
            // Every handle is gone: only the close event may follow.
            let closing = self.close_rx.take()?;
            return closing.await.ok().map(Bytes::from);
        };
        let mut buf = BytesMut::new();
        let mut next = Some(first);
        while let Some(item) = next.take() {
            if let Some(frame) = self.encoder.encode(item) {
                buf.extend_from_slice(frame.as_bytes());
            }
            if buf.len() < CHUNK_BYTES {
                next = self.queue.try_recv();
            }
        }
        Some(buf.freeze())
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Resolves when the stream must end (see the module docs): None when the client went away,
/// else the close code and reason.
async fn ending(
    app: &App,
    handle: &SessionHandle,
    gone: &CancellationToken,
    expires: Option<tokio::time::Instant>,
) -> Option<(u16, String)> {
    let slow = handle.slow_signal();
    let mut stall_check = tokio::time::interval(Duration::from_secs(1));
    let why = |code, reason: &str| Some((code, reason.to_string()));
    loop {
        tokio::select! {
            _ = gone.cancelled() => return None,
            _ = app.shutdown.cancelled() => return why(close::GOING_AWAY, "server shutting down"),
            _ = slow.cancelled() => return why(close::TOO_SLOW, "too slow"),
            _ = sleep_until(expires) => return why(close::UNAUTHENTICATED, "token expired"),
            _ = stall_check.tick() => {
                if handle.stalled_for() >= app.config.stall_timeout {
                    return why(close::TOO_SLOW, "too slow: nothing read for the stall timeout");
                }
            }
        }
    }
}

/// Runs one stream's session to its end (see the module docs): subscribes the group, then
/// serves presence requests made for the stream ([`Streams`]) until it ends.
async fn run(
    mut session: Session,
    mut group: Authorized,
    from: Option<Cursor>,
    ends: Ends,
    streams: Arc<Streams>,
) {
    let Ends { close_tx, gone, abort } = ends;
    let app = session.app.clone();
    let handle = session.handle().clone();
    let id = handle.id;
    let (stream, mut commands) = streams.register(session.identity());
    tracing::debug!(session = id, role = %session.identity().role, channels = group.channels().len(), "stream started");
    let ending = ending(&app, &handle, &gone, session.expires_at());
    tokio::pin!(ending);
    let ended: Option<(u16, String)> = 'run: {
        {
            let reply = |channel: &str, j: &Joined, recovered| {
                Outbound::Frame(WireFrame::text(sse::subscribed(channel, j.position, recovered, &j.members)))
            };
            let ready = |floor| Some(Outbound::Frame(WireFrame::text(sse::ready(floor, &stream))));
            // Boxed, as every request handler below: this task lives as long as the stream,
            // and must not carry the state of the Postgres calls they make while it idles.
            let mut subscribing = Box::pin(session.subscribe_group(&group, from, reply, ready));
            tokio::select! {
                done = &mut subscribing => if let Err(e) = done {
                    tracing::debug!(session = id, error = %e, "stream subscribe failed");
                    break 'run Some((close::INTERNAL, format!("{e}; reconnect to resume")));
                },
                why = &mut ending => break 'run why,
            }
        }
        let mut catching_up = None;
        loop {
            tokio::select! {
                why = &mut ending => break why,
                // Fell behind: the whole group catches up from the log, in place.
                _ = handle.next_lagging(), if catching_up.is_none() => {
                    catching_up = Some(Box::pin(catch_up(&app, &handle, group.clone())));
                }
                // A re-check ended subscriptions: the group goes on without them. A catch-up
                // in progress (or one that stopped because a channel left the hub) starts
                // again with the channels that remain.
                revoked = session.next_revoked() => {
                    group.remove(&revoked);
                    Box::pin(session.forget_revoked(revoked)).await;
                    catching_up = Some(Box::pin(catch_up(&app, &handle, group.clone())));
                }
                done = async { catching_up.as_mut().expect("catching up").await }, if catching_up.is_some() => {
                    catching_up = None;
                    if let Err(e) = done {
                        tracing::debug!(session = id, error = %e, "stream catch-up failed");
                        break Some((close::INTERNAL, format!("{e}; reconnect to resume")));
                    }
                }
                Some(command) = commands.recv() => match *command {
                    Command::Track { channel, state, done } => {
                        let _ = done.send(Box::pin(session.track(&channel, state)).await);
                    }
                    Command::Untrack { channel, done } => {
                        let _ = done.send(Box::pin(session.untrack(&channel)).await);
                    }
                    // A stream's presence lives as long as the stream: nothing to extend.
                    Command::Heartbeat { done } => {
                        let _ = done.send(Ok(()));
                    }
                },
            }
        }
    };
    streams.remove(&stream);
    Box::pin(session.close()).await;
    if let Some((code, reason)) = &ended {
        tracing::debug!(session = id, code, reason, "stream ending");
        let stalled = *code == close::TOO_SLOW;
        if !stalled {
            let _ = close_tx.send(sse::close(*code, reason));
        }
        // A client that reads nothing never takes the close event: drop its socket.
        let stall_limit = app.config.stall_timeout;
        if stalled || tokio::time::timeout(stall_limit, gone.cancelled()).await.is_err() {
            app.hub.metrics.slow_closes.inc();
            if let Some(abort) = abort {
                abort.abort();
            }
        }
    }
    tracing::debug!(session = id, "stream ended");
}

/// How the session's task ends the response: the close event, the body's drop signal, and the
/// socket's abort.
struct Ends {
    close_tx: oneshot::Sender<String>,
    gone: CancellationToken,
    abort: Option<ConnectionAbort>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_takes_repeated_channels_and_refuses_unknown_parameters() {
        let p = parse_query(Some("channel=a&channel=room%3A1&token=x&last_event_id=")).unwrap();
        assert_eq!(
            p,
            StreamParams { channels: vec!["a".into(), "room:1".into()], last_event_id: None, hint: false }
        );
        assert!(parse_query(Some("channel=a&hint=1")).unwrap().hint);
        assert!(parse_query(Some("hint=yes")).unwrap_err().contains("'hint' must be 1 or 0"));
        let p = parse_query(Some("channel=a&last_event_id=0f")).unwrap();
        assert_eq!(p.last_event_id.as_deref(), Some("0f"));
        assert!(parse_query(Some("chanel=a")).unwrap_err().contains("unknown query parameter 'chanel'"));
        assert_eq!(parse_query(None).unwrap(), StreamParams::default());
    }

    #[test]
    fn the_header_wins_over_the_parameter_and_garbage_is_refused() {
        let mut h = HeaderMap::new();
        let c = "00000000000000100000000000000002";
        h.insert("last-event-id", c.parse().unwrap());
        assert_eq!(resume_cursor(&h, Some("zz")).unwrap(), Some(c.parse().unwrap()));
        assert_eq!(resume_cursor(&HeaderMap::new(), Some(c)).unwrap(), Some(c.parse().unwrap()));
        assert!(resume_cursor(&HeaderMap::new(), Some("nope")).is_err());
        assert_eq!(resume_cursor(&HeaderMap::new(), None).unwrap(), None);
    }
}
