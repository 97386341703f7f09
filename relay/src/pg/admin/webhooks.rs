//! The webhook delivery queue for the console: counts and rows by state, and retry or discard
//! of one delivery (`realtime.retry_webhook_delivery` / `realtime.discard_webhook_delivery`,
//! the only writes to the queue `realtime_admin` may make).
//!
//! States as the console names them: `pending` (not tried yet), `retrying` (pending after a
//! failed attempt), `failed` (out of attempts: the dead letters), `delivered`, `discarded`.

use deadpool_postgres::{Pool, Transaction};
use serde::Serialize;
use tokio_postgres::types::ToSql;

use super::query;
use crate::pg::PgError;

/// The states [`list`] filters by (`all`: every state).
pub const STATES: [&str; 6] = ["all", "pending", "retrying", "failed", "delivered", "discarded"];

const COUNTS_SQL: &str = "SELECT count(*) FILTER (WHERE status = 'pending' AND attempts = 0), \
            count(*) FILTER (WHERE status = 'pending' AND attempts > 0), \
            count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'delivered'), \
            count(*) FILTER (WHERE status = 'discarded') \
       FROM realtime.webhook_deliveries";

/// $1 state, $2 keyset (id of the last row of the previous page), $3 limit.
const LIST_SQL: &str = "SELECT d.id, d.message_id::text, d.channel, d.url, \
            CASE WHEN d.status = 'pending' AND d.attempts > 0 THEN 'retrying' ELSE d.status END, \
            d.attempts, d.last_status, d.last_error, d.locked_by, \
            (extract(epoch FROM d.created_at) * 1000)::float8, \
            (extract(epoch FROM d.updated_at) * 1000)::float8, \
            (extract(epoch FROM d.next_attempt_at) * 1000)::float8, \
            (extract(epoch FROM d.delivered_at) * 1000)::float8 \
       FROM realtime.webhook_deliveries d \
      WHERE CASE $1::text WHEN 'all' THEN true \
                         WHEN 'pending' THEN d.status = 'pending' AND d.attempts = 0 \
                         WHEN 'retrying' THEN d.status = 'pending' AND d.attempts > 0 \
                         ELSE d.status = $1 END \
        AND ($2::int8 IS NULL OR d.id < $2) \
      ORDER BY d.id DESC LIMIT $3";

/// Deliveries per state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pending: i64,
    pub retrying: i64,
    pub failed: i64,
    pub delivered: i64,
    pub discarded: i64,
}

/// Deliveries per state, over the whole queue.
pub async fn counts(pool: &Pool) -> Result<Counts, PgError> {
    let rows = query(pool, COUNTS_SQL, &[]).await?;
    let r = rows.first().expect("an aggregate returns one row");
    Ok(Counts {
        pending: r.get(0),
        retrying: r.get(1),
        failed: r.get(2),
        delivered: r.get(3),
        discarded: r.get(4),
    })
}

/// A delivery in the list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub message_id: String,
    pub channel: String,
    pub url: String,
    pub state: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub locked_by: Option<String>,
    /// Epoch milliseconds.
    pub created_at: f64,
    pub updated_at: f64,
    pub next_attempt_at: f64,
    pub delivered_at: Option<f64>,
}

/// Up to `limit` deliveries in `state` (one of [`STATES`]) older than delivery `before`, newest
/// first.
pub async fn list(
    pool: &Pool,
    state: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Delivery>, PgError> {
    let params: [&(dyn ToSql + Sync); 3] = [&state, &before, &limit];
    let rows = query(pool, LIST_SQL, &params).await?;
    Ok(rows
        .iter()
        .map(|r| Delivery {
            id: r.get(0),
            message_id: r.get(1),
            channel: r.get(2),
            url: r.get(3),
            state: r.get(4),
            attempts: r.get(5),
            last_status: r.get(6),
            last_error: r.get(7),
            locked_by: r.get(8),
            created_at: r.get(9),
            updated_at: r.get(10),
            next_attempt_at: r.get(11),
            delivered_at: r.get(12),
        })
        .collect())
}

/// What to do with one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Back into the queue with fresh attempts, due now (a failed or discarded delivery).
    Retry,
    /// Give up (a failed or pending delivery).
    Discard,
}

/// What [`act`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acted {
    /// Done; the delivery's URL.
    Changed(String),
    /// The delivery exists but was not in a state the action applies to.
    Unchanged,
    NoSuchDelivery,
}

/// Retries or discards delivery `id` in `tx`.
pub async fn act(tx: &Transaction<'_>, id: i64, what: Act) -> Result<Acted, PgError> {
    let sql = match what {
        Act::Retry => {
            "SELECT realtime.retry_webhook_delivery($1), \
                              (SELECT url FROM realtime.webhook_deliveries WHERE id = $1)"
        }
        Act::Discard => {
            "SELECT realtime.discard_webhook_delivery($1), \
                                (SELECT url FROM realtime.webhook_deliveries WHERE id = $1)"
        }
    };
    let row = tx.query_one(sql, &[&id]).await?;
    Ok(match (row.get::<_, bool>(0), row.get::<_, Option<String>>(1)) {
        (_, None) => Acted::NoSuchDelivery,
        (true, Some(url)) => Acted::Changed(url),
        (false, Some(_)) => Acted::Unchanged,
    })
}
