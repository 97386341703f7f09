//! The admin console's statements (the console itself is `crate::transport::admin`). Every one
//! runs on a pooled connection, in a transaction with `SET LOCAL ROLE realtime_admin` and a
//! statement timeout ([`begin`]), so the console can do exactly what that role may
//! (sql/admin.sql) and never holds the database for long. A change is appended to
//! `realtime.admin_log` in its own transaction ([`commit_logged`]), so an action is logged
//! exactly when it took effect. Reads take the pool; writes take the caller's transaction, so
//! the caller decides what the audit entry says.
//!
//! - [`channels`]: channel rows with subscriber counts, create / edit / delete, the secret;
//! - [`messages`]: the message log by channel and time, one message with its deliveries;
//! - [`webhooks`]: the delivery queue by state, retry and discard;
//! - [`relays`]: relays, their slots and reports, presence, the audit log;
//! - [`inspect`]: why a subscribe is allowed or not (matched row, disabled rows, policies),
//!   test publishes, the settings the page shows.

use deadpool_postgres::{Object, Pool, Transaction};
use serde_json::Value;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::PgError;

pub mod channels;
pub mod inspect;
pub mod messages;
pub mod relays;
pub mod webhooks;

/// The role every console statement runs as (created by the extension, sql/admin.sql).
pub const ROLE: &str = "realtime_admin";

/// Longest a console statement may run.
pub const STATEMENT_TIMEOUT_SECS: u64 = 10;

/// Starts a transaction on `client` as [`ROLE`], with the statement timeout.
pub async fn begin(client: &mut Object) -> Result<Transaction<'_>, PgError> {
    let tx = client.transaction().await?;
    let setup = format!("SET LOCAL ROLE {ROLE}; SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT_SECS}s'");
    tx.batch_execute(&setup).await?;
    Ok(tx)
}

/// Runs one query as [`ROLE`] in a transaction of its own, which is rolled back (reads only).
pub async fn query(pool: &Pool, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, PgError> {
    let mut client = pool.get().await?;
    let tx = begin(&mut client).await?;
    let stmt = tx.prepare_cached(sql).await?;
    Ok(tx.query(&stmt, params).await?)
}

/// An entry of `realtime.admin_log`: who (the name given at sign-in), on which relay, what, on
/// what, with which details.
#[derive(Debug, Clone)]
pub struct Audit<'a> {
    pub who: &'a str,
    pub relay_id: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub detail: Value,
}

/// Appends `entry` to `realtime.admin_log` in `tx` and commits.
pub async fn commit_logged(tx: Transaction<'_>, entry: &Audit<'_>) -> Result<(), PgError> {
    tx.execute(
        "INSERT INTO realtime.admin_log (who, relay_id, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        &[&entry.who, &entry.relay_id, &entry.action, &entry.target, &entry.detail],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
