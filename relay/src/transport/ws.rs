//! WebSocket transport: authenticates the upgrade request ([`Authenticated`]), reserves a
//! connection place, then runs the socket for any [`Protocol`]: a reader loop that hands
//! frames to the protocol and watches the session's limits, and a writer task that drains the
//! session queue through the protocol's [`Encoder`].
//!
//! The connection ends on a close from the client, shutdown (1001), a queue left unread for the
//! stall timeout (4009; a full queue alone never closes a connection), token expiry (4001), a frame over the size limit (1009), invalid UTF-8 (1007), a protocol's refusal
//! (e.g. v1's binary frames, 1003, or repeated rate-limit abuse, 4008), or when the client has
//! sent nothing, not even a pong to the relay's pings, for the ping timeout (1001). Presence
//! tracked by the connection is untracked when it ends.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::oneshot;

use super::auth::{ApiKey, Authenticated};
use super::error::ApiError;
use super::listener::SocketPlace;
use crate::app::App;
use crate::core::error::close;
use crate::core::Identity;
use crate::hub::SessionQueue;
use crate::protocol::phoenix::codec::Vsn;
use crate::protocol::phoenix::Phoenix;
use crate::protocol::v1::V1;
use crate::protocol::{Encoder, Protocol, WireFrame};
use crate::service::session::{CloseRequest, Session};

/// Initial per-connection read buffer.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes buffered before a write reaches the socket (the writer flushes batches anyway).
const WRITE_BUFFER: usize = 16 * 1024;

/// `GET /v1/socket`: protocol v1.
pub async fn v1(
    State(app): State<Arc<App>>,
    Authenticated(identity): Authenticated,
    place: Option<Extension<SocketPlace>>,
    ws: WebSocketUpgrade,
) -> Response {
    upgrade(app, identity, place.map(|p| p.0), ws, V1::default())
}

#[derive(serde::Deserialize)]
pub struct PhoenixParams {
    vsn: Option<String>,
}

/// `GET /realtime/v1/websocket` and `/socket/websocket`: Supabase Realtime's protocol
/// (`?vsn=1.0.0|2.0.0`, key in `?apikey=` or a header; see [`ApiKey`]).
pub async fn phoenix(
    State(app): State<Arc<App>>,
    ApiKey(identity, token): ApiKey,
    Query(params): Query<PhoenixParams>,
    place: Option<Extension<SocketPlace>>,
    ws: WebSocketUpgrade,
) -> Response {
    match Vsn::parse(params.vsn.as_deref()) {
        Ok(vsn) => upgrade(app, identity, place.map(|p| p.0), ws, Phoenix::new(vsn, token)),
        Err(e) => ApiError::invalid(e).into_response(),
    }
}

/// Upgrades an authenticated request to a WebSocket speaking `protocol`; the socket keeps its
/// `--max-connections` place (`place`, from the listener) for the session's life.
pub fn upgrade<P: Protocol>(
    app: Arc<App>,
    identity: Identity,
    place: Option<SocketPlace>,
    ws: WebSocketUpgrade,
    protocol: P,
) -> Response {
    let max = app.config.max_frame_bytes;
    // tungstenite's default 128 KiB read and write buffers per connection dominate memory at
    // scale (measured 140 KiB per idle connection); buffers grow on demand for large frames.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| {
            let tracker = app.tracker.clone();
            tracker.track_future(run(app, socket, identity, protocol, place))
        })
}

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

fn ws_message(frame: WireFrame) -> Message {
    match frame {
        WireFrame::Text(t) => Message::Text(t),
        WireFrame::Binary(b) => Message::Binary(b),
    }
}

/// Bytes fed to the socket between flushes: a flush is where the writer's progress is seen,
/// so a slow but steady reader keeps showing progress.
const FLUSH_BYTES: usize = 64 * 1024;

/// Drains the queue through `encoder` into the socket until the queue closes or a close frame
/// is requested, recording progress after each flush. Writes at most once per `interval`
/// while frames keep coming (`--write-interval-ms`): a frame queued within it of the last
/// write waits for the rest of it, so the frames queued meanwhile share one write (each write
/// to a socket without Nagle is a TCP segment, the largest part of a delivery's CPU). A reply
/// or notice of the session's own at the head of the queue is not held back. Also
/// sends a WebSocket ping every `ping_every`.
async fn writer<E: Encoder>(
    mut sink: Sink,
    encoder: E,
    mut queue: SessionQueue,
    mut close_rx: oneshot::Receiver<(u16, String)>,
    ping_every: Duration,
    interval: Duration,
) {
    let mut next_write = tokio::time::Instant::now();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            req = &mut close_rx => {
                if let Ok((code, reason)) = req {
                    let frame = CloseFrame { code, reason: reason.into() };
                    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(Message::Close(Some(frame)))).await;
                }
                break;
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() { break; }
            }
            more = queue.ready() => {
                if !more { break }
                if !interval.is_zero() && next_write > tokio::time::Instant::now() && queue.next_is_event() {
                    tokio::time::sleep_until(next_write).await;
                }
                // One batch: its bytes leave the budgets once, when it is dropped.
                let mut batch = queue.batch();
                let mut fed = 0;
                while fed < FLUSH_BYTES {
                    let Some(item) = batch.next() else { break };
                    if let Some(frame) = encoder.encode(item) {
                        fed += frame.len();
                        if sink.feed(ws_message(frame)).await.is_err() { return; }
                    }
                }
                drop(batch);
                if sink.flush().await.is_err() { break; }
                queue.progressed();
                if !interval.is_zero() {
                    next_write = tokio::time::Instant::now() + interval;
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs one connection to its end.
///
/// This future lives as long as the connection, and a future is as large as the largest
/// state it can be in: the request handlers (`on_text` and the like, which wait on Postgres
/// through several layers of futures) are boxed for the time they run, so an idle connection
/// does not carry their state (several KiB) around.
async fn run<P: Protocol>(
    app: Arc<App>,
    socket: WebSocket,
    identity: Identity,
    mut protocol: P,
    _place: Option<SocketPlace>,
) {
    let (close_tx, close_rx) = oneshot::channel();
    let (sink, mut stream) = socket.split();
    let (ping_every, silence_limit, stall_limit, write_interval) = (
        app.config.ping_interval,
        app.config.ping_timeout,
        app.config.stall_timeout,
        app.config.write_interval,
    );
    let (mut session, queue) = Session::open(app, identity);
    let id = session.id();
    let handle = session.handle().clone();
    let slow = handle.slow_signal();
    let mut writer_task =
        tokio::spawn(writer(sink, protocol.encoder(), queue, close_rx, ping_every, write_interval));
    let mut last_heard = tokio::time::Instant::now();
    let mut stall_check = tokio::time::interval(Duration::from_secs(1));
    tracing::debug!(session = id, role = %session.identity().role, "session started");

    let close_with: Option<CloseRequest> = loop {
        let ended = |code, reason| Some(CloseRequest { code, reason });
        tokio::select! {
            _ = session.app.shutdown.cancelled() => break ended(close::GOING_AWAY, "server shutting down"),
            _ = slow.cancelled() => break ended(close::TOO_SLOW, "too slow"),
            _ = stall_check.tick() => {
                if handle.stalled_for() >= stall_limit {
                    tracing::debug!(session = id, queued = handle.queued_bytes(), "nothing read for the stall timeout");
                    session.app.hub.metrics.slow_closes.inc();
                    break ended(close::TOO_SLOW, "too slow: nothing read for the stall timeout");
                }
            }
            _ = sleep_until(session.expires_at()) => break ended(close::UNAUTHENTICATED, "token expired"),
            revoked = session.next_revoked() => Box::pin(session.forget_revoked(revoked)).await,
            // Alive: the client sent something (a pong at least) or read what it was sent (its
            // frames may wait unread while its queue is over budget).
            _ = tokio::time::sleep_until(last_heard.max(handle.last_progress().into()) + silence_limit) => {
                tracing::debug!(session = id, "no frame, pong or read within the ping timeout");
                break ended(close::GOING_AWAY, "no answer to pings");
            }
            // While its queue is over budget the connection reads no request: a client that
            // sends without reading is held back by TCP instead of growing the queue.
            _ = handle.wait_under_budget(), if handle.over_budget() => {}
            msg = stream.next(), if !handle.over_budget() => {
                last_heard = tokio::time::Instant::now();
                match msg {
                    None | Some(Ok(Message::Close(_))) => break None,
                    Some(Ok(Message::Text(t))) => Box::pin(protocol.on_text(&mut session, t.as_str())).await,
                    Some(Ok(Message::Binary(b))) => {
                        if let Err(close) = Box::pin(protocol.on_binary(&mut session, b)).await {
                            break Some(close);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => match read_error(&e) {
                        Some(close) => break Some(close),
                        None => {
                            tracing::debug!(session = id, error = %e, "socket read failed");
                            break None;
                        }
                    },
                }
                if let Some(close) = session.take_close_request() {
                    break Some(close);
                }
            }
        }
    };

    Box::pin(session.close()).await;
    match close_with {
        Some(CloseRequest { code, reason }) => {
            let _ = close_tx.send((code, reason.to_string()));
        }
        // The client is gone: the writer ends now, not at the timeout below, so a reconnecting
        // client's old socket, queue and `--max-connections` place are not held seconds longer.
        None => drop(close_tx),
    }
    if tokio::time::timeout(Duration::from_secs(2), &mut writer_task).await.is_err() {
        writer_task.abort();
    }
    tracing::debug!(session = id, ?close_with, "session ended");
}

/// The close a read error calls for: 1009 for a frame over the size limit, 1007 for invalid
/// UTF-8, none (the socket is just gone) for anything else.
fn read_error(e: &axum::Error) -> Option<CloseRequest> {
    use std::error::Error as _;
    use tungstenite::error::Error as WsError;
    match e.source()?.downcast_ref::<WsError>()? {
        WsError::Capacity(_) => Some(CloseRequest { code: close::TOO_BIG, reason: "frame too large" }),
        WsError::Utf8(_) => {
            Some(CloseRequest { code: close::INVALID_PAYLOAD, reason: "frame is not valid UTF-8" })
        }
        _ => None,
    }
}
