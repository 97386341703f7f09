//! Presence over HTTP: `POST /v1/presence/track` `{stream | lease, channel, state}`,
//! `POST /v1/presence/untrack` `{stream | lease, channel}`, `POST /v1/presence/heartbeat`
//! `{lease}`.
//!
//! * **Streams** (Server-Sent Events) announce their id in their `ready` event; presence
//!   tracked through one belongs to the stream's session, so it ends when the stream ends (the
//!   session untracks everything it tracked, as a WebSocket's does).
//! * **Leases** (long-poll clients, which hold no stream): a track without `stream` makes a
//!   lease, a small session of its own (answered with its id) that subscribes the channels it
//!   tracks (the same permission check) and ends `--presence-lease-secs` after its last track or
//!   heartbeat. Its events are read and dropped: nobody reads a lease.
//!
//! Other relays see either through the same presence log. Only the owner may act on a stream or
//! lease: the request's token must name the same role and `sub`. Both live on one relay: a
//! request that reaches another relay gets 404 (track again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::auth::Authenticated;
use super::error::ApiError;
use crate::app::App;
use crate::core::frame::WireFrame;
use crate::core::Identity;
use crate::hub::{Outbound, SessionQueue};
use crate::service::session::Session;
use crate::service::ServiceError;

/// What a presence request asks a stream's session to do.
#[derive(Debug)]
pub enum Command {
    Track {
        channel: String,
        state: Value,
        done: oneshot::Sender<Result<(), ServiceError>>,
    },
    Untrack {
        channel: String,
        done: oneshot::Sender<Result<(), ServiceError>>,
    },
    /// Keeps a lease alive.
    Heartbeat {
        done: oneshot::Sender<Result<(), ServiceError>>,
    },
}

/// A stream's command channel. Commands are boxed: a channel allocates its first block of
/// 32 slots with the stream, so a slot the size of a pointer keeps an idle stream small.
pub type Commands = mpsc::Receiver<Box<Command>>;

struct Entry {
    role: String,
    user_id: Option<String>,
    tx: mpsc::Sender<Box<Command>>,
}

/// The open streams of this relay that accept presence requests, by id.
#[derive(Default)]
pub struct Streams {
    map: Mutex<HashMap<String, Entry>>,
}

impl Streams {
    /// Registers a stream of `who`: its (unguessable) id and the receiver of its commands.
    pub fn register(&self, who: &Identity) -> (String, Commands) {
        let id = format!("{:032x}", rand::random::<u128>());
        let (tx, rx) = mpsc::channel(8);
        let entry = Entry { role: who.role.clone(), user_id: who.user_id.clone(), tx };
        self.map.lock().expect("streams lock").insert(id.clone(), entry);
        (id, rx)
    }

    /// Forgets a stream (it ended).
    pub fn remove(&self, id: &str) {
        self.map.lock().expect("streams lock").remove(id);
    }

    /// The command channel of stream `id`, for `who` only.
    fn sender(&self, id: &str, who: &Identity) -> Result<mpsc::Sender<Box<Command>>, ApiError> {
        let map = self.map.lock().expect("streams lock");
        let entry = map.get(id).ok_or_else(|| {
            ApiError::Service(ServiceError::NotFound(format!(
                "no stream or lease {id:?} on this relay (it ended, or it is on another relay): track again"
            )))
        })?;
        if entry.role != who.role || entry.user_id != who.user_id {
            return Err(ApiError::Service(ServiceError::Denied(
                "this stream belongs to another user: presence is tracked by the stream's own user".into(),
            )));
        }
        Ok(entry.tx.clone())
    }
}

/// A string field of a request body.
fn text(body: &Value, name: &str) -> Result<String, ApiError> {
    body.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::invalid(format!("'{name}' (string) is required")))
}

/// The stream or lease a request names (`stream`, else `lease`), if any.
fn target(body: &Value) -> Option<&str> {
    body.get("stream").or_else(|| body.get("lease")).and_then(Value::as_str)
}

/// A lease: a session that only tracks presence, until `--presence-lease-secs` pass without a
/// command.
async fn lease(
    mut session: Session,
    mut queue: SessionQueue,
    mut commands: Commands,
    streams: Arc<Streams>,
    id: String,
) {
    let app = session.app.clone();
    let ttl = app.config.presence_lease;
    let mut deadline = tokio::time::Instant::now() + ttl;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = app.shutdown.cancelled() => break,
            _ = queue.recv() => {}
            // A re-check ended a subscription: its presence ends with it.
            revoked = session.next_revoked() => session.forget_revoked(revoked).await,
            command = commands.recv() => {
                let Some(command) = command else { break };
                deadline = tokio::time::Instant::now() + ttl;
                match *command {
                    Command::Track { channel, state, done } => {
                        let mut result = Ok(());
                        if !session.is_subscribed(&channel) {
                            let reply = |_| Outbound::Frame(WireFrame::text(String::new()));
                            result = session.subscribe(channel.clone(), None, reply).await;
                        }
                        if result.is_ok() {
                            result = session.track(&channel, state).await;
                        }
                        let _ = done.send(result);
                    }
                    Command::Untrack { channel, done } => {
                        let _ = done.send(session.untrack(&channel).await);
                    }
                    Command::Heartbeat { done } => {
                        let _ = done.send(Ok(()));
                    }
                }
            }
        }
    }
    streams.remove(&id);
    session.close().await;
}

async fn run(
    tx: mpsc::Sender<Box<Command>>,
    make: impl FnOnce(oneshot::Sender<Result<(), ServiceError>>) -> Command,
) -> Result<Response, ApiError> {
    let (done, result) = oneshot::channel();
    let gone = || ApiError::Service(ServiceError::NotFound("the stream ended".into()));
    tx.send(Box::new(make(done))).await.map_err(|_| gone())?;
    result.await.map_err(|_| gone())??;
    Ok(Json(json!({"ok": true})).into_response())
}

type Body = Result<Json<Value>, axum::extract::rejection::JsonRejection>;

/// `POST /v1/presence/track`: through a stream or lease, or (neither named) through a new
/// lease, whose id and lifetime the answer gives.
pub async fn track(
    State(app): State<Arc<App>>,
    Authenticated(who): Authenticated,
    Extension(streams): Extension<Arc<Streams>>,
    body: Body,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let channel = text(&body, "channel")?;
    let state = body.get("state").cloned().unwrap_or_else(|| json!({}));
    if !state.is_object() {
        return Err(ApiError::invalid("'state' must be an object"));
    }
    let (tx, new_lease) = match target(&body) {
        Some(id) => (streams.sender(id, &who)?, None),
        None => {
            let (session, queue) = Session::open_stream(app.clone(), who.clone());
            let (id, commands) = streams.register(&who);
            let tx = streams.sender(&id, &who)?;
            app.tracker.spawn(lease(session, queue, commands, streams.clone(), id.clone()));
            (tx, Some(id))
        }
    };
    let tracked = run(tx.clone(), |done| Command::Track { channel, state, done }).await;
    match new_lease {
        None => tracked,
        Some(id) => {
            if tracked.is_err() {
                // Nothing tracked: the new lease ends at once.
                streams.remove(&id);
                drop(tx);
                return tracked;
            }
            let secs = app.config.presence_lease.as_secs();
            Ok(Json(json!({"ok": true, "lease": id, "expires_in": secs})).into_response())
        }
    }
}

/// `POST /v1/presence/heartbeat` `{lease}`: keeps a lease (and what it tracks) alive.
pub async fn heartbeat(
    Authenticated(who): Authenticated,
    Extension(streams): Extension<Arc<Streams>>,
    body: Body,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let id = target(&body).ok_or_else(|| ApiError::invalid("'lease' (string) is required"))?.to_string();
    run(streams.sender(&id, &who)?, |done| Command::Heartbeat { done }).await
}

/// `POST /v1/presence/untrack`.
pub async fn untrack(
    Authenticated(who): Authenticated,
    Extension(streams): Extension<Arc<Streams>>,
    body: Body,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let channel = text(&body, "channel")?;
    let id = target(&body).ok_or_else(|| ApiError::invalid("'stream' or 'lease' (string) is required"))?;
    run(streams.sender(id, &who)?, |done| Command::Untrack { channel, done }).await
}
