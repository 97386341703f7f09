//! Transports: how frames reach clients. Each is a file (or a folder for HTTP routes) that
//! knows sockets and HTTP but no wire protocol: [`ws`] runs a WebSocket for any
//! [`crate::protocol::Protocol`]; [`sse`] streams Server-Sent Events; [`poll`] answers long-polls; [`presence`] tracks presence for streams; [`http`] has publishing, history, health and metrics;
//! [`admin`] is the admin console at `/admin` (off unless configured). Authentication is an
//! axum extractor ([`auth::Authenticated`]) and every refusal one [`error::ApiError`].
//!
//! Adding a transport: a file here and its route below. Adding a protocol: its folder under
//! `crate::protocol` and one route below.

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::app::App;

pub mod admin;
pub mod auth;
pub mod error;
pub mod http;
pub mod listener;
pub mod poll;
pub mod presence;
pub mod sse;
pub mod sse_conn;
pub mod ws;

/// The relay's router.
pub fn router(app: Arc<App>) -> Router {
    let limits = http::limits::start(&app);
    // What browser pages call from their own origin (see `http::cors`).
    let browser_api = Router::new()
        .route("/v1/sse", get(sse::handler))
        .route("/v1/poll", get(poll::handler))
        .route("/v1/publish", post(http::publish::handler))
        .route("/realtime/v1/api/broadcast", post(http::supabase::batch))
        .route("/realtime/v1/api/broadcast/{topic}/events/{event}", post(http::supabase::one))
        .route("/v1/channels/{channel}/history", get(http::history::handler))
        .route("/v1/presence/track", post(presence::track))
        .route("/v1/presence/untrack", post(presence::untrack))
        .route("/v1/presence/heartbeat", post(presence::heartbeat))
        .layer(axum::middleware::from_fn(http::cors::cors));
    Router::new()
        .route("/v1/socket", get(ws::v1))
        .route("/realtime/v1/websocket", get(ws::phoenix))
        .route("/socket/websocket", get(ws::phoenix))
        .merge(browser_api)
        .route("/healthz", get(http::health::healthz))
        .route("/readyz", get(http::health::readyz))
        .route("/metrics", get(http::metrics::handler))
        .layer(axum::Extension(limits))
        .layer(axum::Extension(Arc::new(presence::Streams::default())))
        .with_state(app.clone())
        .merge(admin::router(app))
}
