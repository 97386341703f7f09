//! Presence over HTTP for Server-Sent Events streams: `POST /v1/presence/track`
//! `{stream, channel, state}` and `POST /v1/presence/untrack` `{stream, channel}`. A stream
//! announces its id in its `ready` event; presence tracked through it belongs to the stream's
//! session, so it ends when the stream ends (the session untracks everything it tracked, as a
//! WebSocket's does), and other relays see it through the same presence log.
//!
//! Only the stream's own user may act on it: the request's token must name the same role and
//! `sub` as the stream's. Streams live on one relay: a request that reaches another relay gets
//! 404 (track again on the relay the stream is on, or after it reconnects).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::auth::Authenticated;
use super::error::ApiError;
use crate::core::Identity;
use crate::service::ServiceError;

/// What a presence request asks a stream's session to do.
#[derive(Debug)]
pub enum Command {
    Track { channel: String, state: Value, done: oneshot::Sender<Result<(), ServiceError>> },
    Untrack { channel: String, done: oneshot::Sender<Result<(), ServiceError>> },
}

struct Entry {
    role: String,
    user_id: Option<String>,
    tx: mpsc::Sender<Command>,
}

/// The open streams of this relay that accept presence requests, by id.
#[derive(Default)]
pub struct Streams {
    map: Mutex<HashMap<String, Entry>>,
}

impl Streams {
    /// Registers a stream of `who`: its (unguessable) id and the receiver of its commands.
    pub fn register(&self, who: &Identity) -> (String, mpsc::Receiver<Command>) {
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
    fn sender(&self, id: &str, who: &Identity) -> Result<mpsc::Sender<Command>, ApiError> {
        let map = self.map.lock().expect("streams lock");
        let entry = map.get(id).ok_or_else(|| {
            ApiError::Service(ServiceError::NotFound(format!(
                "no stream {id:?} on this relay (it ended, or it is on another relay): track again once the stream's ready event names it"
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

/// `stream` and `channel` of a request body.
fn fields(body: &Value) -> Result<(String, String), ApiError> {
    let text = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ApiError::invalid(format!("'{name}' (string) is required")))
    };
    Ok((text("stream")?, text("channel")?))
}

async fn run(
    tx: mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<Result<(), ServiceError>>) -> Command,
) -> Result<Response, ApiError> {
    let (done, result) = oneshot::channel();
    let gone = || ApiError::Service(ServiceError::NotFound("the stream ended".into()));
    tx.send(make(done)).await.map_err(|_| gone())?;
    result.await.map_err(|_| gone())??;
    Ok(Json(json!({"ok": true})).into_response())
}

type Body = Result<Json<Value>, axum::extract::rejection::JsonRejection>;

/// `POST /v1/presence/track`.
pub async fn track(
    Authenticated(who): Authenticated,
    Extension(streams): Extension<Arc<Streams>>,
    body: Body,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let (stream, channel) = fields(&body)?;
    let state = body.get("state").cloned().unwrap_or_else(|| json!({}));
    if !state.is_object() {
        return Err(ApiError::invalid("'state' must be an object"));
    }
    run(streams.sender(&stream, &who)?, |done| Command::Track { channel, state, done }).await
}

/// `POST /v1/presence/untrack`.
pub async fn untrack(
    Authenticated(who): Authenticated,
    Extension(streams): Extension<Arc<Streams>>,
    body: Body,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let (stream, channel) = fields(&body)?;
    run(streams.sender(&stream, &who)?, |done| Command::Untrack { channel, done }).await
}
