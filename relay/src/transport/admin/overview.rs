//! Overview page: `GET /admin/api/overview?after=<seq>` returns the samples newer than `seq`
//! as columns (one array per series, see [`super::sampler`]), so the page polls once a second
//! for one sample.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::console::Console;
use super::sampler::{columns, INTERVAL, WINDOW};

#[derive(Deserialize)]
pub struct OverviewQuery {
    #[serde(default)]
    after: u64,
}

/// `GET /admin/api/overview?after=<seq>`.
pub async fn overview(State(console): State<Arc<Console>>, Query(q): Query<OverviewQuery>) -> Json<Value> {
    let samples = console.samples.after(q.after);
    Json(json!({
        "relay_id": console.app.config.relay_id,
        "interval_ms": INTERVAL.as_millis() as u64,
        "window": WINDOW,
        "samples": columns(&samples),
    }))
}
