//! Publishing from clients and services into Postgres.
//!
//! * A persisted client publish is an `INSERT` into `realtime.messages` under the client's role
//!   and claims, so the owner's RLS `WITH CHECK` policies decide; the row then flows through
//!   logical replication like any other message. It stores the channel's webhook count in
//!   `wh_audience_count` (`realtime.channel_webhook_count`, which the client's role may call), so
//!   the `enqueue_webhooks` trigger queues its webhooks in the same transaction.
//! * An ephemeral client publish passes the same check (the insert is rolled back) and is
//!   emitted as a transactional `realtime:broadcast` logical message that every relay decodes,
//!   sealed by `realtime.emit_message` as the relay's login (relays drop unsealed ones).
//! * A trusted service (the `service_role` token) publishes with `realtime.publish()` as the
//!   relay's own login: a system message, same path as SQL and triggers.

use deadpool_postgres::Pool;
use serde_json::Value;

use super::authz::set_role_sql;
use super::PgError;
use crate::core::Identity;

/// One message to publish. `id` is a UUID chosen by the relay.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub channel: String,
    pub event: String,
    pub payload: Value,
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{}", crate::core::hints::channel_not_found(.0))]
    NotFound(String),
    #[error("{}", crate::core::hints::publish_denied(.role, .user_id.as_deref(), .channel))]
    Unauthorized { role: String, user_id: Option<String>, channel: String },
    #[error("payload is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Pg(#[from] PgError),
}

impl From<tokio_postgres::Error> for PublishError {
    fn from(e: tokio_postgres::Error) -> Self {
        PublishError::Pg(PgError::Db(e))
    }
}

impl From<deadpool_postgres::PoolError> for PublishError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        PublishError::Pg(PgError::Pool(e))
    }
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.code().map(|c| c.code())
}

/// Inserts `messages` under `who`'s role and claims in one transaction: all or nothing.
/// With `dry_run` the transaction is rolled back: the permission check of ephemeral publishes.
pub async fn insert_as(
    pool: &Pool,
    who: &Identity,
    messages: &[NewMessage],
    dry_run: bool,
) -> Result<(), PublishError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let limit: i32 = tx.query_one("SELECT max_payload_bytes FROM realtime.config", &[]).await?.get(0);
    // Serialised once: the text is both what the limit measures and what Postgres receives.
    let payloads: Vec<String> = messages.iter().map(|m| m.payload.to_string()).collect();
    if let Some(size) = payloads.iter().map(String::len).find(|size| *size > limit as usize) {
        return Err(PublishError::TooLarge { size, limit: limit as usize });
    }
    tx.batch_execute(&set_role_sql(&who.role)?).await?;
    tx.execute("SELECT set_config('request.jwt.claims', $1, true)", &[&who.claims]).await?;
    let set_channel = tx
        .prepare_cached("SELECT realtime.match_channel($1), set_config('realtime.channel_name', $1, true)")
        .await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO realtime.messages \
             (id, channel, channel_id, event, payload, sender_type, sender_id, wh_audience_count) \
             VALUES ($1::text::uuid, $2, $3, $4, $5::text::jsonb, 'user', $6, \
                     realtime.channel_webhook_count($3))",
        )
        .await?;
    for (m, payload) in messages.iter().zip(&payloads) {
        let channel_id: Option<i64> = tx.query_one(&set_channel, &[&m.channel]).await?.get(0);
        let Some(channel_id) = channel_id else {
            return Err(PublishError::NotFound(m.channel.clone()));
        };
        let inserted =
            tx.execute(&insert, &[&m.id, &m.channel, &channel_id, &m.event, payload, &who.user_id]).await;
        if let Err(e) = inserted {
            return Err(match sqlstate(&e) {
                Some("42501") => PublishError::Unauthorized {
                    role: who.role.clone(),
                    user_id: who.user_id.clone(),
                    channel: m.channel.clone(),
                },
                _ => e.into(),
            });
        }
    }
    if dry_run {
        tx.rollback().await?;
    } else {
        tx.commit().await?;
    }
    Ok(())
}

/// Publishes `messages` as system messages with `realtime.publish()` in one transaction, as
/// the relay's own login. `register` sees each id Postgres assigned before the commit, so a
/// waiter cannot miss the message; returns the ids in order.
pub async fn publish_as_service(
    pool: &Pool,
    messages: &[NewMessage],
    mut register: impl FnMut(&str),
) -> Result<Vec<String>, PublishError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL realtime.strict_publish = on").await?;
    let stmt = tx.prepare_cached("SELECT realtime.publish($1, $2, $3)::text").await?;
    let mut ids = Vec::with_capacity(messages.len());
    for m in messages {
        match tx.query_one(&stmt, &[&m.channel, &m.event, &m.payload]).await {
            Ok(row) => {
                let id: String = row.get(0);
                register(&id);
                ids.push(id);
            }
            Err(e) => {
                return Err(match sqlstate(&e) {
                    Some("42704") => PublishError::NotFound(m.channel.clone()),
                    Some("54000") => PublishError::TooLarge {
                        size: m.payload.to_string().len(),
                        limit: configured_limit(&e),
                    },
                    _ => e.into(),
                })
            }
        }
    }
    tx.commit().await?;
    Ok(ids)
}

/// The limit named in the extension's "over the limit of N bytes" message, or 0.
fn configured_limit(e: &tokio_postgres::Error) -> usize {
    e.as_db_error()
        .and_then(|d| d.message().split("limit of ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Emits an ephemeral message that every relay delivers live; nothing is stored.
pub async fn emit_ephemeral(
    pool: &Pool,
    m: &NewMessage,
    sender_id: Option<&str>,
) -> Result<(), PublishError> {
    let body = serde_json::json!({"channel": m.channel, "event": m.event, "payload": m.payload, "sender_id": sender_id});
    let client = pool.get().await?;
    let stmt =
        client.prepare_cached("SELECT realtime.emit_message(true, 'realtime:broadcast', $1::text)").await?;
    client.execute(&stmt, &[&body.to_string()]).await?;
    Ok(())
}
