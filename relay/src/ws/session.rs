//! One WebSocket connection: reads client frames, answers them, and writes queued frames.
//!
//! The session owns a bounded queue; the hub and the session's own replies feed it and a writer
//! task drains it, batching whatever is queued into one flush. The session ends on client close,
//! on server shutdown (close 1001), when its queue overflows (close 4009), when its token
//! expires (close 4001), on a frame over the size limit (close 1009) or a binary frame (1003),
//! or when the client has sent nothing, not even a pong to the relay's pings, for the ping
//! timeout (close 1001); presence tracked by the connection is untracked when it ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::auth::Identity;
use crate::hub::{Frame, SessionHandle};
use crate::pg::authz::{check_subscribe, Access};
use crate::pg::cursor::Cursor;
use crate::protocol::presence::subscribe_reply;
use crate::protocol::{close, parse_client_frame, server, ErrorCode, Request};
use crate::server::App;

type Sink = futures_util::stream::SplitSink<WebSocket, Message>;

/// Drains the queue into the socket until the queue closes or a close frame is requested.
/// Also sends a WebSocket ping every `ping_every`.
async fn writer(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Frame>,
    mut close_rx: oneshot::Receiver<(u16, String)>,
    ping_every: Duration,
) {
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
            next = rx.recv() => {
                let Some(frame) = next else { break };
                if sink.feed(Message::Text(frame)).await.is_err() { break; }
                let mut n = 1;
                while n < 256 {
                    match rx.try_recv() {
                        Ok(f) => { if sink.feed(Message::Text(f)).await.is_err() { return; } n += 1; }
                        Err(_) => break,
                    }
                }
                if sink.flush().await.is_err() { break; }
            }
        }
    }
}

struct Session {
    app: Arc<App>,
    identity: Identity,
    handle: SessionHandle,
    channels: HashSet<String>,
    publish_checks: super::publish::PublishChecks,
    /// When the token expires (close 4001), if it has an `exp`.
    expires_at: Option<tokio::time::Instant>,
    limiter: super::limits::RateLimiter,
    tracking: super::presence::Tracking,
    /// Set when a request must end the connection with this close code.
    close_request: Option<(u16, &'static str)>,
}

impl Session {
    fn send(&self, text: String) {
        self.handle.send(Frame::from(text));
    }

    fn error(&self, reference: Option<&Value>, code: ErrorCode, message: &str) {
        self.send(server::reply_error(reference, code, message));
    }

    /// Applies the publish rate limit: true when this publish was refused (and answered).
    fn rate_limited(&mut self, r: Option<&Value>, persist: bool) -> bool {
        use super::limits::Verdict;
        let verdict = self.limiter.check(std::time::Instant::now());
        if verdict != Verdict::Allow {
            let rate = self.app.config.max_publish_rate;
            self.error(r, ErrorCode::RateLimited, &format!("more than {rate} publishes per second"));
            let kind = crate::metrics::Kind::of_persist(persist);
            self.app.metrics.published(kind, crate::metrics::PublishOutcome::RateLimited);
        }
        if verdict == Verdict::Abusive {
            self.close_request = Some((close::RATE_LIMITED, "rate limit exceeded repeatedly"));
        }
        verdict != Verdict::Allow
    }

    async fn on_text(&mut self, text: &str) {
        let frame = match parse_client_frame(text) {
            Ok(f) => f,
            Err(e) => return self.error(e.reference.as_ref(), e.code, &e.message),
        };
        let r = frame.reference.as_ref();
        match frame.request {
            Request::Ping => self.send(server::pong(r)),
            Request::Subscribe { channel, resume_cursor } => self.subscribe(r, channel, resume_cursor).await,
            Request::Unsubscribe { channel } => {
                if self.channels.remove(&channel) {
                    self.app.hub.unsubscribe(&channel, self.handle.id);
                    let app = self.app.clone();
                    self.tracking.forget(&app, &channel).await;
                    self.send(server::reply_ok(r, Some(&channel), None));
                } else {
                    self.error(r, ErrorCode::NotSubscribed, &format!("not subscribed to '{channel}'"));
                }
            }
            Request::Publish { persist, .. } if self.rate_limited(r, persist) => {}
            Request::Publish { channel, event, payload, persist } => {
                let m = crate::publish::Outgoing { channel, event, payload };
                let app = self.app.clone();
                let reply =
                    super::publish::handle(&app, &self.identity, &mut self.publish_checks, r, m, persist)
                        .await;
                self.send(reply);
            }
            Request::History { channel, limit, before } => {
                let fetched = crate::http::history::fetch(
                    &self.app,
                    &self.identity,
                    &channel,
                    limit,
                    before.as_deref(),
                )
                .await;
                match fetched {
                    Ok(messages) => self.send(crate::protocol::history::history_reply(r, &messages)),
                    Err(e) => self.error(r, e.code(), &e.to_string()),
                }
            }
            Request::Auth { token } => {
                let app = self.app.clone();
                let id = self.handle.id;
                let before: Vec<String> = self.channels.iter().cloned().collect();
                match super::auth::reauthenticate(&app, &token, &mut self.identity, &mut self.channels, id)
                    .await
                {
                    Ok(revoked) => {
                        for channel in before.iter().filter(|c| !self.channels.contains(*c)) {
                            self.tracking.forget(&app, channel).await;
                        }
                        self.publish_checks.clear();
                        self.expires_at = expiry_instant(self.identity.exp);
                        self.send(server::reply_ok(r, None, None));
                        revoked.into_iter().for_each(|f| self.send(f));
                    }
                    Err(e) => self.error(r, ErrorCode::Unauthorized, &e.to_string()),
                }
            }
            Request::Track { channel, state } => {
                let app = self.app.clone();
                let subscribed = self.channels.contains(&channel);
                let reply = self.tracking.track(&app, &self.identity, subscribed, r, channel, state).await;
                self.send(reply);
            }
            Request::Untrack { channel } => {
                let app = self.app.clone();
                let subscribed = self.channels.contains(&channel);
                let reply = self.tracking.untrack(&app, subscribed, r, channel).await;
                self.send(reply);
            }
        }
    }

    async fn subscribe(&mut self, r: Option<&Value>, channel: String, resume_cursor: Option<String>) {
        let resume = match resume_cursor.as_deref().map(str::parse::<Cursor>).transpose() {
            Ok(c) => c,
            Err(e) => return self.error(r, ErrorCode::InvalidRequest, &format!("'resume.cursor': {e}")),
        };
        if self.channels.contains(&channel) {
            let pos = self.app.hub.position();
            let snapshot = self.app.hub.presence.snapshot_json(&channel);
            return self.send(subscribe_reply(r, &channel, pos.as_deref(), None, &snapshot));
        }
        let limit = self.app.config.max_subscriptions;
        if self.channels.len() >= limit {
            return self.error(
                r,
                ErrorCode::InvalidRequest,
                &format!("too many subscriptions on this connection (limit {limit})"),
            );
        }
        let started = std::time::Instant::now();
        let checked = check_subscribe(&self.app.pool, &self.identity, &channel).await;
        self.app.metrics.subscribe_checked(checked.as_ref().ok().copied(), started.elapsed());
        match checked {
            Ok(Access::Allowed) => {
                let registered = match resume {
                    Some(cursor) => {
                        match super::resume::subscribe(&self.app, &self.handle, r, &channel, cursor).await {
                            Ok(registered) => registered,
                            Err(e) => {
                                self.error(r, e.code(), &e.to_string());
                                false
                            }
                        }
                    }
                    None => self.app.hub.subscribe(&channel, &self.handle, |pos| {
                        // Under the hub lock: no presence event is missed or doubled after it.
                        let snapshot = self.app.hub.presence.snapshot_json(&channel);
                        Frame::from(subscribe_reply(r, &channel, pos, None, &snapshot))
                    }),
                };
                if registered {
                    self.channels.insert(channel);
                }
            }
            Ok(Access::Denied) => self.error(
                r,
                ErrorCode::Unauthorized,
                &crate::hints::subscribe_denied(
                    &self.identity.role,
                    self.identity.user_id.as_deref(),
                    &channel,
                ),
            ),
            Ok(Access::NotFound) => {
                self.error(r, ErrorCode::NotFound, &crate::hints::channel_not_found(&channel))
            }
            Err(e) => {
                tracing::warn!(%channel, error = %e, "subscribe check failed");
                self.error(r, ErrorCode::InternalError, &e.client_message());
            }
        }
    }
}

/// The instant a token with expiry `exp` (seconds since the epoch) runs out.
fn expiry_instant(exp: Option<u64>) -> Option<tokio::time::Instant> {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    exp.map(|exp| tokio::time::Instant::now() + Duration::from_secs(exp.saturating_sub(now)))
}

/// Sleeps until `at`, or forever.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Notes that something arrived from the client (any frame, a pong included) and passes it on.
fn heard<T>(at: &mut tokio::time::Instant, msg: T) -> T {
    *at = tokio::time::Instant::now();
    msg
}

/// Runs one connection to its end.
pub async fn run(app: Arc<App>, socket: WebSocket, identity: Identity, _slot: super::ConnectionSlot) {
    let id = app.hub.next_session_id();
    let (tx, rx) = mpsc::channel(app.config.send_queue);
    let slow = CancellationToken::new();
    let (close_tx, close_rx) = oneshot::channel();
    let (sink, mut stream) = socket.split();
    let ping_every = app.config.presence.ping_interval;
    let silence_limit = app.config.presence.ping_timeout;
    let mut writer_task = tokio::spawn(writer(sink, rx, close_rx, ping_every));
    let expires_at = expiry_instant(identity.exp);
    let app_rate = app.config.max_publish_rate;
    let tracking = super::presence::Tracking::new(&app, id);
    let mut session = Session {
        handle: SessionHandle::new(id, tx, slow.clone()),
        app,
        identity,
        channels: HashSet::new(),
        publish_checks: Default::default(),
        expires_at,
        limiter: super::limits::RateLimiter::new(app_rate, std::time::Instant::now()),
        tracking,
        close_request: None,
    };
    let mut last_heard = tokio::time::Instant::now();
    tracing::debug!(session = id, role = %session.identity.role, "session started");

    let close_with: Option<(u16, &str)> = loop {
        tokio::select! {
            _ = session.app.shutdown.cancelled() => break Some((close::GOING_AWAY, "server shutting down")),
            _ = slow.cancelled() => {
                session.app.hub.stats.slow_closes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                break Some((close::TOO_SLOW, "too slow: send queue full"));
            }
            _ = sleep_until(session.expires_at) => break Some((close::UNAUTHENTICATED, "token expired")),
            _ = tokio::time::sleep_until(last_heard + silence_limit) => {
                tracing::debug!(session = id, "no frame or pong within the ping timeout");
                break Some((close::GOING_AWAY, "no answer to pings"));
            }
            msg = stream.next() => match heard(&mut last_heard, msg) {
                None | Some(Ok(Message::Close(_))) => break None,
                Some(Ok(Message::Text(t))) => {
                    session.on_text(t.as_str()).await;
                    if let Some(close) = session.close_request {
                        break Some(close);
                    }
                }
                Some(Ok(Message::Binary(_))) => break Some((close::UNSUPPORTED_DATA, "binary frames are not supported")),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let text = e.to_string();
                    if text.contains("too long") || text.contains("Space limit") {
                        break Some((close::TOO_BIG, "frame too large"));
                    }
                    if text.contains("UTF-8") || text.contains("utf-8") {
                        break Some((close::INVALID_PAYLOAD, "frame is not valid UTF-8"));
                    }
                    tracing::debug!(session = id, error = %text, "socket read failed");
                    break None;
                }
            }
        }
    };

    for channel in session.channels.drain() {
        session.app.hub.unsubscribe(&channel, id);
    }
    let app = session.app.clone();
    session.tracking.close(&app).await;
    if let Some((code, reason)) = close_with {
        let _ = close_tx.send((code, reason.to_string()));
    }
    drop(session);
    if tokio::time::timeout(Duration::from_secs(2), &mut writer_task).await.is_err() {
        writer_task.abort();
    }
    tracing::debug!(session = id, ?close_with, "session ended");
}
