//! `GET /healthz` (the process is up) and `GET /readyz` (Postgres is reachable and the
//! replication stream is following the log).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::app::App;

/// The process is up.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Postgres is reachable and the replication stream is following the log.
pub async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, &'static str) {
    if app.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    if app.replication.is_streaming() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: replication stream is not connected\n")
    }
}
