//! The webhook queue's queries (`realtime.webhook_deliveries`, `sql/webhooks.sql`): claim due
//! deliveries under a lease, write outcomes back in one statement per batch, count the queue.
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

const CLAIM_SQL: &str = "WITH due AS (
        SELECT d.id, d.message_id, d.channel_id FROM realtime.webhook_deliveries d
         WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND d.url <> ALL($4::text[])
         ORDER BY d.next_attempt_at
         LIMIT $1
         FOR UPDATE OF d SKIP LOCKED)
    UPDATE realtime.webhook_deliveries d
       SET attempts = d.attempts + 1,
           next_attempt_at = now() + $2::float8 * interval '1 millisecond',
           locked_by = $3, updated_at = now()
      FROM due
      LEFT JOIN realtime.messages m ON m.id = due.message_id
      LEFT JOIN realtime.channels c ON c.id = due.channel_id
     WHERE d.id = due.id
    RETURNING d.id, d.attempts, d.url, d.message_id::text, m.id IS NOT NULL, c.id IS NOT NULL,
              m.channel, m.event, m.payload::text,
              to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
              m.sender_type, m.sender_id, c.webhook_secret";

const RESULTS_SQL: &str = "WITH r AS (
        SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::int[], $5::text[], $6::float8[])
            AS r(id, attempt, outcome, http_status, error, delay_ms)),
    upd AS (
        UPDATE realtime.webhook_deliveries d SET
            status = CASE r.outcome WHEN 'delivered' THEN 'delivered' WHEN 'failed' THEN 'failed'
                     ELSE 'pending' END,
            attempts = CASE WHEN r.outcome = 'release' THEN d.attempts - 1 ELSE d.attempts END,
            next_attempt_at = CASE WHEN r.outcome IN ('retry', 'release')
                              THEN now() + r.delay_ms * interval '1 millisecond'
                              ELSE d.next_attempt_at END,
            locked_by = NULL,
            last_status = CASE WHEN r.outcome = 'release' THEN d.last_status ELSE r.http_status END,
            last_error = CASE WHEN r.outcome = 'release' THEN d.last_error ELSE r.error END,
            delivered_at = CASE WHEN r.outcome = 'delivered' THEN now() ELSE d.delivered_at END,
            updated_at = now()
          FROM r
         WHERE d.id = r.id AND d.status = 'pending'
           AND (r.outcome = 'delivered' OR d.attempts = r.attempt)
        RETURNING d.message_id, r.outcome)
    UPDATE realtime.messages m SET wh_delivered_count = m.wh_delivered_count + s.n
      FROM (SELECT message_id, count(*)::int AS n FROM upd WHERE outcome = 'delivered'
             GROUP BY message_id) s
     WHERE m.id = s.message_id";

const DEPTH_SQL: &str = "SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'pending'";

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
    limit: i64,
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
    client.execute(&stmt, &[&ids, &attempts, &outcomes, &statuses, &errors, &delays]).await?;
    Ok(())
}

/// Pending deliveries (due or not).
pub async fn queue_depth(pool: &Pool) -> Result<i64, PgError> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(DEPTH_SQL).await?;
    Ok(client.query_one(&stmt, &[]).await?.get(0))
}
