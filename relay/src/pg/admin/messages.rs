//! The message log for the console: messages by channel (a name or a `%` pattern) and time,
//! newest first (by `created_at`, then id), paged by keyset; one message in full with its
//! stream cursor (from `realtime.commits`, once a relay has written it), the three counts and
//! its webhook deliveries.

use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::query;
use crate::pg::PgError;

/// The stream cursor of a message, as live frames carry it (NULL until a relay mapped its commit).
macro_rules! cursor {
    () => {
        "CASE WHEN k.commit_lsn IS NULL THEN NULL ELSE \
           lpad(to_hex((k.commit_lsn - '0/0'::pg_lsn)::bigint), 16, '0') || lpad(to_hex(m.seq), 16, '0') END"
    };
}

/// $1 channel filter (NULL: all), $2 true when $1 is a LIKE pattern, $3/$4 time bounds (epoch
/// ms, NULL: open), $5/$6 keyset (epoch µs, id) of the last row of the previous page, $7 limit,
/// $8 preview length.
const LIST_SQL: &str = concat!(
    "SELECT m.id::text, m.channel, m.event, m.sender_type::text, m.sender_id, \
            (extract(epoch FROM m.created_at) * 1000)::float8, \
            m.ws_audience_count, m.wh_audience_count, m.wh_delivered_count, \
            octet_length(m.payload::text), left(m.payload::text, $8), ",
    cursor!(),
    ", (extract(epoch FROM m.created_at) * 1000000)::int8 \
       FROM realtime.messages m LEFT JOIN realtime.commits k ON k.xid = m.xid \
      WHERE ($1::text IS NULL OR (CASE WHEN $2 THEN m.channel LIKE $1 ELSE m.channel = $1 END)) \
        AND ($3::float8 IS NULL OR m.created_at >= to_timestamp($3 / 1000)) \
        AND ($4::float8 IS NULL OR m.created_at < to_timestamp($4 / 1000)) \
        AND ($5::int8 IS NULL OR (m.created_at, m.id) < \
             ('epoch'::timestamptz + $5 * interval '1 microsecond', $6::text::uuid)) \
      ORDER BY m.created_at DESC, m.id DESC LIMIT $7"
);

const DETAIL_SQL: &str = concat!(
    "SELECT m.id::text, m.channel, m.channel_id, c.pattern, m.event, m.payload, m.sender_type::text, \
            m.sender_id, (extract(epoch FROM m.created_at) * 1000)::float8, \
            m.ws_audience_count, m.wh_audience_count, m.wh_delivered_count, ",
    cursor!(),
    " FROM realtime.messages m LEFT JOIN realtime.commits k ON k.xid = m.xid \
       LEFT JOIN realtime.channels c ON c.id = m.channel_id \
      WHERE m.id = $1::text::uuid"
);

const DELIVERIES_SQL: &str = "SELECT d.id, d.url, d.status, d.attempts, d.last_status, d.last_error, \
            (extract(epoch FROM d.delivered_at) * 1000)::float8 \
       FROM realtime.webhook_deliveries d WHERE d.message_id = $1::text::uuid ORDER BY d.id LIMIT $2";

/// Which messages to list.
#[derive(Debug, Clone, Default)]
pub struct Filter<'a> {
    /// A channel name, or a `LIKE` pattern when `pattern`.
    pub channel: Option<&'a str>,
    pub pattern: bool,
    /// Epoch milliseconds, inclusive.
    pub from_ms: Option<f64>,
    /// Epoch milliseconds, exclusive.
    pub to_ms: Option<f64>,
    /// Only messages older than this keyset (epoch µs, message id).
    pub before: Option<(i64, &'a str)>,
    pub limit: i64,
    /// Characters of payload in [`Summary::preview`].
    pub preview_chars: i32,
}

/// Who sent a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sender {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Option<String>,
}

/// A message in the list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub id: String,
    pub channel: String,
    pub event: String,
    pub sender: Sender,
    /// Epoch milliseconds.
    pub created_at: f64,
    pub ws_audience_count: i32,
    pub wh_audience_count: i32,
    pub wh_delivered_count: i32,
    pub payload_bytes: i32,
    pub preview: String,
    pub cursor: Option<String>,
    /// `created_at` in epoch microseconds: with `id`, the keyset of the next page.
    #[serde(skip)]
    pub created_us: i64,
}

/// Up to `f.limit` messages, newest first.
pub async fn list(pool: &Pool, f: &Filter<'_>) -> Result<Vec<Summary>, PgError> {
    let (micros, id) = f.before.map_or((None, None), |(m, i)| (Some(m), Some(i)));
    let params: [&(dyn ToSql + Sync); 8] =
        [&f.channel, &f.pattern, &f.from_ms, &f.to_ms, &micros, &id, &f.limit, &f.preview_chars];
    let rows = query(pool, LIST_SQL, &params).await?;
    Ok(rows
        .iter()
        .map(|r| Summary {
            id: r.get(0),
            channel: r.get(1),
            event: r.get(2),
            sender: Sender { kind: r.get(3), id: r.get(4) },
            created_at: r.get(5),
            ws_audience_count: r.get(6),
            wh_audience_count: r.get(7),
            wh_delivered_count: r.get(8),
            payload_bytes: r.get(9),
            preview: r.get(10),
            cursor: r.get(11),
            created_us: r.get(12),
        })
        .collect())
}

/// A webhook delivery of one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub url: String,
    pub status: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub delivered_at: Option<f64>,
}

/// One message in full.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detail {
    pub id: String,
    pub channel: String,
    pub channel_id: Option<i64>,
    pub channel_pattern: Option<String>,
    pub event: String,
    pub payload: Value,
    pub sender: Sender,
    pub created_at: f64,
    pub ws_audience_count: i32,
    pub wh_audience_count: i32,
    pub wh_delivered_count: i32,
    pub cursor: Option<String>,
    pub deliveries: Vec<Delivery>,
}

fn detail_of(r: &Row, deliveries: Vec<Delivery>) -> Detail {
    Detail {
        id: r.get(0),
        channel: r.get(1),
        channel_id: r.get(2),
        channel_pattern: r.get(3),
        event: r.get(4),
        payload: r.get(5),
        sender: Sender { kind: r.get(6), id: r.get(7) },
        created_at: r.get(8),
        ws_audience_count: r.get(9),
        wh_audience_count: r.get(10),
        wh_delivered_count: r.get(11),
        cursor: r.get(12),
        deliveries,
    }
}

/// Message `id` (a UUID's text) with up to `max_deliveries` of its webhook deliveries; `None`
/// when there is no such message.
pub async fn detail(pool: &Pool, id: &str, max_deliveries: i64) -> Result<Option<Detail>, PgError> {
    let rows = query(pool, DETAIL_SQL, &[&id]).await?;
    let Some(r) = rows.first() else { return Ok(None) };
    let deliveries = query(pool, DELIVERIES_SQL, &[&id, &max_deliveries])
        .await?
        .iter()
        .map(|d| Delivery {
            id: d.get(0),
            url: d.get(1),
            status: d.get(2),
            attempts: d.get(3),
            last_status: d.get(4),
            last_error: d.get(5),
            delivered_at: d.get(6),
        })
        .collect();
    Ok(Some(detail_of(r, deliveries)))
}
