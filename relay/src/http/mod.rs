//! HTTP routes on the relay's port: health, readiness, metrics and the WebSocket endpoint.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::server::App;

pub mod history;
pub mod publish;

/// The relay's router.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/socket", get(crate::ws::handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(crate::metrics::handler))
        .route("/v1/publish", axum::routing::post(publish::handler))
        .route("/v1/channels/{channel}/history", get(history::handler))
        .with_state(app)
}

/// The process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Postgres is reachable and the replication stream is following the log.
async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, &'static str) {
    if app.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    if app.replication.streaming.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: replication stream is not connected\n")
    }
}
