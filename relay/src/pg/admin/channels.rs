//! Channel rows for the console: the list with subscriber counts (this relay's, matched to rows
//! by `realtime.match_channel`, plus what other relays reported within the last 30 s, see
//! [`super::relays::report`]), create and edit (the extension's triggers validate them), delete,
//! and the webhook secret. The list never carries a secret, only whether there is one.

use deadpool_postgres::{Pool, Transaction};
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::query;
use crate::pg::PgError;

/// The row as the page shows it (epoch milliseconds for times; `has_secret`, never the secret).
macro_rules! columns {
    () => {
        "c.id, c.pattern, c.description, c.enabled, c.webhook_urls, c.webhook_secret IS NOT NULL, \
         (extract(epoch FROM c.created_at) * 1000)::float8, (extract(epoch FROM c.updated_at) * 1000)::float8"
    };
}

/// A channel row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelRow {
    pub id: i64,
    pub pattern: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub webhook_urls: Vec<String>,
    pub has_secret: bool,
    /// Epoch milliseconds.
    pub created_at: f64,
    pub updated_at: f64,
}

impl ChannelRow {
    fn of(r: &Row) -> Self {
        ChannelRow {
            id: r.get(0),
            pattern: r.get(1),
            description: r.get(2),
            enabled: r.get(3),
            webhook_urls: r.get(4),
            has_secret: r.get(5),
            created_at: r.get(6),
            updated_at: r.get(7),
        }
    }
}

/// A listed row with its subscribers over every reporting relay.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub row: ChannelRow,
    pub subscribers: i64,
}

/// What the list returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelList {
    pub channels: Vec<Listed>,
    /// Other relays whose counts are included (reported within the last 30 s).
    pub other_relays_reporting: i64,
}

/// Subscribers of this relay by channel name (two arrays of the same length).
#[derive(Debug, Clone, Copy)]
pub struct LocalCounts<'a> {
    pub relay_id: &'a str,
    pub names: &'a [String],
    pub counts: &'a [i64],
}

const LIST_SQL: &str = concat!(
    "WITH here AS ( \
       SELECT realtime.match_channel(u.name) AS id, sum(u.n)::bigint AS n \
         FROM unnest($1::text[], $2::int8[]) AS u(name, n) GROUP BY 1), \
     fresh AS ( \
       SELECT r.stats FROM realtime.relays r \
        WHERE r.relay_id <> $3 AND r.stats IS NOT NULL \
          AND (r.stats->>'reported_at')::timestamptz > now() - interval '30 seconds'), \
     there AS ( \
       SELECT kv.key::bigint AS id, sum(kv.value::bigint)::bigint AS n \
         FROM fresh, jsonb_each_text(coalesce(fresh.stats->'by_channel', '{}'::jsonb)) kv GROUP BY 1) \
     SELECT ",
    columns!(),
    ", coalesce(h.n, 0) + coalesce(t.n, 0), (SELECT count(*) FROM fresh) \
       FROM realtime.channels c LEFT JOIN here h ON h.id = c.id LEFT JOIN there t ON t.id = c.id \
      WHERE $4::text IS NULL OR strpos(c.pattern, $4) > 0 \
      ORDER BY c.pattern LIMIT $5"
);

/// Up to `limit` rows whose pattern contains `filter` (all without), by pattern.
pub async fn list(
    pool: &Pool,
    here: LocalCounts<'_>,
    filter: Option<&str>,
    limit: i64,
) -> Result<ChannelList, PgError> {
    let params: [&(dyn ToSql + Sync); 5] = [&here.names, &here.counts, &here.relay_id, &filter, &limit];
    let rows = query(pool, LIST_SQL, &params).await?;
    Ok(ChannelList {
        other_relays_reporting: rows.first().map_or(0, |r| r.get(9)),
        channels: rows.iter().map(|r| Listed { row: ChannelRow::of(r), subscribers: r.get(8) }).collect(),
    })
}

/// What a write does to the webhook secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secret<'a> {
    Keep,
    Clear,
    Set(&'a str),
    /// `realtime.generate_webhook_secret()`.
    Generate,
}

/// The fields of a channel row the console writes.
#[derive(Debug, Clone, Copy)]
pub struct ChannelWrite<'a> {
    pub pattern: &'a str,
    pub description: Option<&'a str>,
    pub enabled: bool,
    pub webhook_urls: &'a [String],
    pub secret: Secret<'a>,
}

const INSERT_SQL: &str = concat!(
    "INSERT INTO realtime.channels AS c (pattern, description, enabled, webhook_urls, webhook_secret) \
     VALUES ($1, $2, $3, $4, CASE WHEN $6 THEN realtime.generate_webhook_secret() ELSE $5 END) \
     RETURNING ",
    columns!()
);

const UPDATE_SQL: &str = concat!(
    "UPDATE realtime.channels AS c SET pattern = $2, description = $3, enabled = $4, \
       webhook_urls = $5, webhook_secret = CASE WHEN $7 THEN realtime.generate_webhook_secret() \
                                                WHEN $8 THEN $6 ELSE c.webhook_secret END \
     WHERE c.id = $1 RETURNING ",
    columns!()
);

/// Inserts a row (`id` None) or updates row `id`; the row as written, `None` when there is no
/// row `id`.
pub async fn write(
    tx: &Transaction<'_>,
    id: Option<i64>,
    w: &ChannelWrite<'_>,
) -> Result<Option<ChannelRow>, PgError> {
    let (secret, generate, set) = match w.secret {
        Secret::Keep => (None, false, false),
        Secret::Clear => (None, false, true),
        Secret::Set(s) => (Some(s), false, true),
        Secret::Generate => (None, true, true),
    };
    let row = match id {
        None => {
            let params: [&(dyn ToSql + Sync); 6] =
                [&w.pattern, &w.description, &w.enabled, &w.webhook_urls, &secret, &generate];
            tx.query_opt(INSERT_SQL, &params).await?
        }
        Some(id) => {
            let params: [&(dyn ToSql + Sync); 8] =
                [&id, &w.pattern, &w.description, &w.enabled, &w.webhook_urls, &secret, &generate, &set];
            tx.query_opt(UPDATE_SQL, &params).await?
        }
    };
    Ok(row.as_ref().map(ChannelRow::of))
}

/// Deletes row `id`; its pattern, `None` when there is no such row.
pub async fn delete(tx: &Transaction<'_>, id: i64) -> Result<Option<String>, PgError> {
    let row = tx.query_opt("DELETE FROM realtime.channels WHERE id = $1 RETURNING pattern", &[&id]).await?;
    Ok(row.map(|r| r.get(0)))
}

/// Row `id`'s pattern and webhook secret, `None` when there is no such row.
pub async fn secret(tx: &Transaction<'_>, id: i64) -> Result<Option<(String, Option<String>)>, PgError> {
    let row =
        tx.query_opt("SELECT pattern, webhook_secret FROM realtime.channels WHERE id = $1", &[&id]).await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}
