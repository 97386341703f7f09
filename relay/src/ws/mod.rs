//! WebSocket endpoint `/v1/socket`: authenticates the upgrade request, then hands the socket to
//! a [`session`].

pub mod auth;
pub mod bearer;
pub mod limits;
pub mod presence;
pub mod publish;
pub mod resume;
pub mod session;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

pub use bearer::token_from;

use crate::protocol::ErrorCode;
use crate::server::App;

/// One of the `--max-connections` places, held from the upgrade request until the session ends
/// (or the upgrade fails), so concurrent handshakes cannot overshoot the cap.
pub struct ConnectionSlot(Arc<App>);

impl ConnectionSlot {
    fn acquire(app: &Arc<App>) -> Option<Self> {
        let before = app.connections.fetch_add(1, Ordering::AcqRel);
        if before >= app.config.max_connections {
            app.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Self(app.clone()))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Initial per-connection read buffer.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes buffered before a write reaches the socket (the writer flushes batches anyway).
const WRITE_BUFFER: usize = 16 * 1024;

#[derive(Deserialize)]
pub struct SocketParams {
    token: Option<String>,
}

/// Upgrades authenticated requests; refuses others with 401 and a JSON error body.
pub async fn handler(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(params): Query<SocketParams>,
    ws: WebSocketUpgrade,
) -> Response {
    let token = token_from(&headers, params.token.as_deref());
    let identity = match token.and_then(|t| app.auth.authenticate(t)) {
        Ok(id) => id,
        Err(e) => {
            let body =
                serde_json::json!({"error": {"code": ErrorCode::Unauthorized, "message": e.to_string()}});
            return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
        }
    };
    let Some(slot) = ConnectionSlot::acquire(&app) else {
        let message = format!("too many connections (limit {})", app.config.max_connections);
        let body = serde_json::json!({"error": {"code": ErrorCode::RateLimited, "message": message}});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    };
    let max = app.config.max_frame_bytes;
    // tungstenite's default 128 KiB read and write buffers per connection dominate memory at
    // scale (measured 140 KiB per idle connection); buffers grow on demand for large frames.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| {
            let tracker = app.tracker.clone();
            tracker.track_future(session::run(app, socket, identity, slot))
        })
}
