//! The webhook queue's calls (`realtime.webhook_deliveries`, `sql/webhooks.sql`): claim due
//! deliveries under a lease, write outcomes back in one statement per batch, count the queue.
//! The SQL lives in SECURITY DEFINER functions (`realtime.claim_webhook_deliveries`,
//! `finish_webhook_deliveries`, `webhook_queue_depth`), so the relay's login needs only EXECUTE
//! on them.
//!
//! Claiming is `FOR UPDATE SKIP LOCKED`, so relays claiming at the same moment never get the
//! same row; the claim moves `next_attempt_at` to the end of the lease and adds one to
//! `attempts`, so a relay that dies mid-send leaves the row due again when the lease ends.
//! `attempts` is also the claim's token: a retry/failure outcome is written only if nobody
//! re-claimed the row meanwhile; a success is written whenever the row is still pending, and
//! the message's `wh_delivered_count` is raised only by the write that moved the row to
//! `delivered`, so it counts each delivery once.

use std::time::Duration;

use deadpool_postgres::Pool;

use super::PgError;

const CLAIM_SQL: &str =
    "SELECT id, attempt, url, message_id, message_exists, channel_exists, channel, event, \
     payload, created_at, sender_type, sender_id, secret \
     FROM realtime.claim_webhook_deliveries($1, $2, $3, $4)";

const RESULTS_SQL: &str = "SELECT realtime.finish_webhook_deliveries($1, $2, $3, $4, $5, $6)";

const DEPTH_SQL: &str = "SELECT realtime.webhook_queue_depth()";

/// A claimed delivery with what its request needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: i64,
    /// This claim's attempt number (1-based); the token for writing its outcome.
    pub attempt: i32,
    pub url: String,
    pub message_id: String,
    /// `None` when the message was deleted (retention) before it could be sent.
    pub message: Option<ClaimedMessage>,
    /// False when the channel row was deleted.
    pub channel_exists: bool,
    pub secret: Option<String>,
}

/// The message fields of the envelope.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    pub channel: String,
    pub event: String,
    pub payload: String,
    pub created_at: String,
    pub sender_type: String,
    pub sender_id: Option<String>,
}

/// What to write back for one claimed delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Written {
    Delivered {
        status: u16,
    },
    Retry {
        status: Option<u16>,
        error: String,
        delay: Duration,
    },
    Failed {
        status: Option<u16>,
        error: String,
    },
    /// Not attempted (its endpoint was busy): give the attempt back, due after `delay`.
    Release {
        delay: Duration,
    },
}

/// One outcome to write.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryResult {
    pub id: i64,
    pub attempt: i32,
    pub written: Written,
}

/// Claims up to `limit` due deliveries for `lease`, skipping `busy_urls`.
pub async fn claim(
    pool: &Pool,
    limit: i32,
    lease: Duration,
    relay_id: &str,
    busy_urls: &[String],
) -> Result<Vec<Claimed>, PgError> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(CLAIM_SQL).await?;
    let lease_ms = lease.as_secs_f64() * 1000.0;
    let rows = client.query(&stmt, &[&limit, &lease_ms, &relay_id, &busy_urls]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let message = r.get::<_, bool>(4).then(|| ClaimedMessage {
                channel: r.get(6),
                event: r.get(7),
                payload: r.get(8),
                created_at: r.get(9),
                sender_type: r.get(10),
                sender_id: r.get(11),
            });
            Claimed {
                id: r.get(0),
                attempt: r.get(1),
                url: r.get(2),
                message_id: r.get(3),
                message,
                channel_exists: r.get(5),
                secret: r.get(12),
            }
        })
        .collect())
}

/// Writes a batch of outcomes in one statement.
pub async fn write_results(pool: &Pool, results: &[DeliveryResult]) -> Result<(), PgError> {
    let mut ids = Vec::with_capacity(results.len());
    let mut attempts = Vec::with_capacity(results.len());
    let mut outcomes = Vec::with_capacity(results.len());
    let mut statuses: Vec<Option<i32>> = Vec::with_capacity(results.len());
    let mut errors: Vec<Option<String>> = Vec::with_capacity(results.len());
    let mut delays = Vec::with_capacity(results.len());
    for r in results {
        ids.push(r.id);
        attempts.push(r.attempt);
        let (outcome, status, error, delay) = match &r.written {
            Written::Delivered { status } => ("delivered", Some(*status), None, Duration::ZERO),
            Written::Retry { status, error, delay } => ("retry", *status, Some(error.clone()), *delay),
            Written::Failed { status, error } => ("failed", *status, Some(error.clone()), Duration::ZERO),
            Written::Release { delay } => ("release", None, None, *delay),
        };
        outcomes.push(outcome);
        statuses.push(status.map(i32::from));
        errors.push(error);
        delays.push(delay.as_secs_f64() * 1000.0);
    }
    let client = pool.get().await?;
    let stmt = client.prepare_cached(RESULTS_SQL).await?;
    client.query_one(&stmt, &[&ids, &attempts, &outcomes, &statuses, &errors, &delays]).await?;
    Ok(())
}

/// Pending deliveries (due or not).
pub async fn queue_depth(pool: &Pool) -> Result<i64, PgError> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(DEPTH_SQL).await?;
    Ok(client.query_one(&stmt, &[]).await?.get(0))
}
