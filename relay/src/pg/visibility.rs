//! The row-visibility check of table changes: `realtime.visible_rows` (sql/changes.sql) tells,
//! for several identities (role and claims) in one statement, whether each may SELECT a table,
//! whether row-level security applies to it, and which of a batch of changed rows (by primary
//! key) its policies let it see now. The relay's per-subscriber RLS of Supabase
//! `postgres_changes` (`crate::service::visibility`) is built on it.

use deadpool_postgres::Pool;
use serde_json::Value;
use tokio_postgres::error::SqlState;

use super::PgError;
use crate::core::auth::is_plain_identifier;

/// One statement, its own implicit transaction: the function takes each identity's role and
/// claims transaction-locally, and the transaction ends with the statement.
const VISIBLE_ROWS_SQL: &str = "SELECT who, selectable, row_security, visible, pk \
     FROM realtime.visible_rows($1, $2, $3::jsonb, $4::jsonb, $5::text[]::uuid[])";

/// What one identity may see of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Its role may SELECT the table (and use its schema).
    pub selectable: bool,
    /// Row-level security applies to it (not the owner, not BYPASSRLS, RLS enabled).
    pub row_security: bool,
    /// Indexes (from 0) into the keys checked of the rows it may see; None when rows were not
    /// checked (not selectable, no row security, or no keys).
    pub visible: Option<Vec<usize>>,
}

/// The answer of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// One per identity asked about, in the same order.
    pub answers: Vec<Answer>,
    /// The table's primary-key columns in key order; None when it has none.
    pub pk: Option<Vec<String>>,
}

/// Checks `keys` (JSON objects of primary-key columns) of `schema.table` for each of
/// `identities` (role, claims JSON text) in one round trip, once the `realtime.messages` rows
/// `messages` (the ids of the changes' stored messages) are visible: the relay hears of a
/// commit from the WAL a moment before its transaction may be visible to other snapshots. With
/// no keys it only tells the access of each identity and the primary key.
pub async fn visible_rows(
    pool: &Pool,
    schema: &str,
    table: &str,
    keys: &[Value],
    messages: &[String],
    identities: &[(&str, &str)],
) -> Result<Checked, PgError> {
    if let Some((role, _)) = identities.iter().find(|(role, _)| !is_plain_identifier(role)) {
        return Err(PgError::BadRole(role.to_string()));
    }
    let keys = Value::Array(keys.to_vec());
    let who = Value::Array(
        identities
            .iter()
            .map(|(role, claims)| Value::from(vec![role.to_string(), claims.to_string()]))
            .collect(),
    );
    let client = pool.get().await?;
    let statement = client.prepare_cached(VISIBLE_ROWS_SQL).await?;
    let rows = client.query(&statement, &[&schema, &table, &keys, &who, &messages]).await?;
    let mut answers: Vec<Option<Answer>> = vec![None; identities.len()];
    let mut pk = None;
    for row in rows {
        let n: i32 = row.get(0);
        let visible: Option<Vec<i32>> = row.get(3);
        let answer = Answer {
            selectable: row.get(1),
            row_security: row.get(2),
            visible: visible.map(|v| v.into_iter().filter_map(|i| usize::try_from(i - 1).ok()).collect()),
        };
        pk = row.get(4);
        if let Some(slot) = usize::try_from(n - 1).ok().and_then(|i| answers.get_mut(i)) {
            *slot = Some(answer);
        }
    }
    // An identity missing from the answer (none is, unless Postgres misbehaves) sees nothing.
    let nothing = Answer { selectable: false, row_security: true, visible: None };
    let answers = answers.into_iter().map(|a| a.unwrap_or_else(|| nothing.clone())).collect();
    Ok(Checked { answers, pk })
}

/// Whether `e` says the table does not exist.
pub fn is_undefined_table(e: &PgError) -> bool {
    matches!(e, PgError::Db(db) if db.code() == Some(&SqlState::UNDEFINED_TABLE))
}
