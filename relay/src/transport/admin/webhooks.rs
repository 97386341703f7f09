//! Webhooks page: deliveries by state with their attempts and last outcome, and retry or
//! discard of one delivery ([`crate::pg::admin::webhooks`]). A retry wakes this relay's webhook
//! worker, so the delivery is sent at once rather than at the next poll.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::console::Console;
use super::credential::Admin;
use super::error::AdminError;
use super::paging::{ask, split};
use crate::pg::admin::begin;
use crate::pg::admin::webhooks::{self as db, Act, Acted, STATES};

/// Rows per page.
pub const PAGE: i64 = 100;

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    before: Option<i64>,
}

/// `GET /admin/api/webhooks?state=&before=`.
pub async fn list(
    State(c): State<Arc<Console>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, AdminError> {
    let state = q.state.unwrap_or_else(|| "all".into());
    if !STATES.contains(&state.as_str()) {
        return Err(AdminError::invalid("state", format!("state must be one of {}", STATES.join(", "))));
    }
    let counts = db::counts(&c.app.pool).await?;
    let (deliveries, more) = split(db::list(&c.app.pool, &state, q.before, ask(PAGE)).await?, PAGE);
    let next = if more { deliveries.last().map(|d| d.id) } else { None };
    Ok(Json(json!({
        "counts": counts,
        "deliveries": deliveries,
        "next": next,
        "worker": c.app.webhooks.is_some(),
    })))
}

/// Retries or discards delivery `id` as an audited action; 409 when the delivery was not in a
/// state the action applies to.
async fn act(c: &Console, who: &Admin, id: i64, what: Act) -> Result<Json<Value>, AdminError> {
    let (action, needs) = match what {
        Act::Retry => ("retry_webhook", "failed or discarded"),
        Act::Discard => ("discard_webhook", "failed or pending"),
    };
    let mut client = c.client().await?;
    let tx = begin(&mut client).await?;
    let url = match db::act(&tx, id, what).await? {
        Acted::Changed(url) => url,
        Acted::Unchanged => {
            return Err(AdminError::Conflict {
                field: None,
                message: format!("delivery {id} is not {needs}"),
            })
        }
        Acted::NoSuchDelivery => return Err(AdminError::NotFound(format!("no webhook delivery {id}"))),
    };
    c.finish(tx, who, action, &format!("webhook delivery {id}"), json!({"url": url})).await?;
    Ok(Json(json!({"id": id, "ok": true})))
}

/// `POST /admin/api/webhooks/{id}/retry`: back into the queue, due now.
pub async fn retry(
    State(c): State<Arc<Console>>,
    Extension(who): Extension<Admin>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, AdminError> {
    let done = act(&c, &who, id, Act::Retry).await?;
    if let Some(w) = &c.app.webhooks {
        w.wake();
    }
    Ok(done)
}

/// `POST /admin/api/webhooks/{id}/discard`: give up on it.
pub async fn discard(
    State(c): State<Arc<Console>>,
    Extension(who): Extension<Admin>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, AdminError> {
    act(&c, &who, id, Act::Discard).await
}
