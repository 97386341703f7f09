//! The Inspector's statements: why a subscribe is allowed or not besides the answer itself
//! (which is [`crate::pg::authz::check_subscribe`], the relay's own check): the channel row
//! `realtime.match_channel` picks, disabled rows that would have matched, and the SELECT
//! policies on `realtime.channels` that apply to a role; test publishes as the system; and the
//! settings the page shows.

use deadpool_postgres::{Pool, Transaction};
use serde::Serialize;
use serde_json::Value;

use super::query;
use crate::pg::PgError;

const MATCHED_SQL: &str = "SELECT c.id, c.pattern, c.enabled, c.description FROM realtime.channels c \
     WHERE c.id = realtime.match_channel(realtime.validate_channel($1))";
const DISABLED_SQL: &str = "SELECT c.pattern FROM realtime.channels c \
     WHERE NOT c.enabled AND $1 LIKE c.pattern ORDER BY length(c.pattern) DESC, c.pattern LIMIT $2";
const POLICIES_SQL: &str = "SELECT p.policyname::text, p.permissive, p.roles::text[], p.cmd, p.qual \
       FROM pg_catalog.pg_policies p \
      WHERE p.schemaname = 'realtime' AND p.tablename = 'channels' AND p.cmd IN ('SELECT', 'ALL') \
        AND EXISTS (SELECT 1 FROM unnest(p.roles) r \
                     WHERE r = 'public' OR pg_catalog.pg_has_role($1::text::name, r, 'MEMBER')) \
      ORDER BY p.policyname";

/// The channel row a name matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matched {
    pub id: i64,
    pub pattern: String,
    pub enabled: bool,
    pub description: Option<String>,
}

/// The row `realtime.match_channel` picks for `channel` (an invalid name is an error, 22023).
pub async fn matched(pool: &Pool, channel: &str) -> Result<Option<Matched>, PgError> {
    let rows = query(pool, MATCHED_SQL, &[&channel]).await?;
    Ok(rows.first().map(|r| Matched {
        id: r.get(0),
        pattern: r.get(1),
        enabled: r.get(2),
        description: r.get(3),
    }))
}

/// Patterns of up to `limit` disabled rows that match `channel`, most specific first.
pub async fn disabled_matches(pool: &Pool, channel: &str, limit: i64) -> Result<Vec<String>, PgError> {
    let rows = query(pool, DISABLED_SQL, &[&channel, &limit]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A row-level security policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub name: String,
    /// `PERMISSIVE` or `RESTRICTIVE`.
    pub permissive: String,
    pub roles: Vec<String>,
    pub cmd: String,
    /// Its `USING` expression.
    pub using: Option<String>,
}

/// The SELECT (or ALL) policies on `realtime.channels` that apply to `role`.
pub async fn policies(pool: &Pool, role: &str) -> Result<Vec<Policy>, PgError> {
    let rows = query(pool, POLICIES_SQL, &[&role]).await?;
    Ok(rows
        .iter()
        .map(|r| Policy {
            name: r.get(0),
            permissive: r.get(1),
            roles: r.get(2),
            cmd: r.get(3),
            using: r.get(4),
        })
        .collect())
}

/// `realtime.config.max_payload_bytes`.
pub async fn max_payload_bytes(pool: &Pool) -> Result<Option<i32>, PgError> {
    let rows = query(pool, "SELECT max_payload_bytes FROM realtime.config", &[]).await?;
    Ok(rows.first().map(|r| r.get(0)))
}

/// Publishes a test message in `tx` as the system: `realtime.publish` (its id) or, when not
/// `persist`, `realtime.broadcast` (no id). With `realtime.strict_publish` on, so a name no
/// enabled channel matches is an error (42704), not a warning.
pub async fn publish(
    tx: &Transaction<'_>,
    channel: &str,
    event: &str,
    payload: &Value,
    persist: bool,
) -> Result<Option<String>, PgError> {
    tx.batch_execute("SET LOCAL realtime.strict_publish = on").await?;
    if persist {
        let row =
            tx.query_one("SELECT realtime.publish($1, $2, $3)::text", &[&channel, &event, payload]).await?;
        Ok(row.get(0))
    } else {
        tx.execute("SELECT realtime.broadcast($1, $2, $3)", &[&channel, &event, payload]).await?;
        Ok(None)
    }
}
