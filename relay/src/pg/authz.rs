//! Permission checks, run the way DESIGN prescribes: inside a transaction on a pooled
//! connection, `SET LOCAL ROLE <role>` (an allowlisted plain identifier, quoted), the client's
//! claims in `request.jwt.claims` and the channel in `realtime.channel_name`, then the
//! extension's own functions decide under the owner's RLS policies.

use deadpool_postgres::Pool;

use super::PgError;
use crate::core::auth::{is_plain_identifier, Identity};

/// The outcome of a subscribe check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// A channel matches but the role may not see it.
    Denied,
    /// No enabled channel matches the name.
    NotFound,
}

/// `SET LOCAL ROLE "<role>"`, refusing anything that is not a plain identifier.
pub fn set_role_sql(role: &str) -> Result<String, PgError> {
    if !is_plain_identifier(role) {
        return Err(PgError::BadRole(role.to_string()));
    }
    Ok(format!("SET LOCAL ROLE \"{role}\""))
}

/// The whole subscribe check as one statement in its own implicit transaction: the subquery sets
/// the role and claims transaction-locally (`set_config(..., true)`, exactly `SET LOCAL`), then
/// the outer select decides under them. A subquery whose select list calls volatile functions
/// is never pulled up or pruned, so the settings are made before the outer functions run; and
/// `can_subscribe` is PL/pgSQL, whose queries are planned and permission-checked as the role
/// in effect when they run. The transaction ends with the statement, and the settings with it.
const CHECK_SUBSCRIBE_SQL: &str =
    "SELECT realtime.match_channel($3) IS NOT NULL, realtime.can_subscribe($3) \
     FROM (SELECT pg_catalog.set_config('role', $1, true), \
                  pg_catalog.set_config('request.jwt.claims', $2, true)) AS settings";

/// May `who` subscribe to `channel`?
///
/// One statement, one round trip ([`CHECK_SUBSCRIBE_SQL`]). Every subscribe pays this check:
/// BEGIN, `SET LOCAL ROLE`, the settings, the check and ROLLBACK as five statements cost
/// Postgres twice the work of one (measured in bench/RESULTS.md), and waiting for each reply in
/// turn made the pool's round trips the limit before that.
pub async fn check_subscribe(pool: &Pool, who: &Identity, channel: &str) -> Result<Access, PgError> {
    if !is_plain_identifier(&who.role) {
        return Err(PgError::BadRole(who.role.clone()));
    }
    let client = pool.get().await?;
    let check = client.prepare_cached(CHECK_SUBSCRIBE_SQL).await?;
    let row = client.query_one(&check, &[&who.role, &who.claims, &channel]).await?;
    Ok(access(row.get(0), row.get(1)))
}

/// The answer of a check row: whether a channel matched, and `can_subscribe`.
fn access(exists: bool, allowed: Option<bool>) -> Access {
    match (exists, allowed.unwrap_or(false)) {
        (false, _) => Access::NotFound,
        (true, false) => Access::Denied,
        (true, true) => Access::Allowed,
    }
}

/// [`CHECK_SUBSCRIBE_SQL`] for many channels at once (the same settings subquery, joined to
/// the channel names): one round trip per identity for a permission re-check.
const CHECK_MANY_SQL: &str = "SELECT c, realtime.match_channel(c) IS NOT NULL, realtime.can_subscribe(c) \
     FROM (SELECT pg_catalog.set_config('role', $1, true), \
                  pg_catalog.set_config('request.jwt.claims', $2, true)) AS settings, \
          pg_catalog.unnest($3::text[]) AS c";

/// May `who` still subscribe to each of `channels`? One statement ([`CHECK_MANY_SQL`]);
/// channels absent from the answer (none, unless Postgres misbehaves) count as not found.
pub async fn check_many(
    pool: &Pool,
    who: &Identity,
    channels: &[String],
) -> Result<Vec<(String, Access)>, PgError> {
    if !is_plain_identifier(&who.role) {
        return Err(PgError::BadRole(who.role.clone()));
    }
    let client = pool.get().await?;
    let check = client.prepare_cached(CHECK_MANY_SQL).await?;
    let rows = client.query(&check, &[&who.role, &who.claims, &channels]).await?;
    let mut answers: std::collections::HashMap<String, Access> =
        rows.iter().map(|row| (row.get::<_, String>(0), access(row.get(1), row.get(2)))).collect();
    Ok(channels.iter().map(|c| (c.clone(), answers.remove(c).unwrap_or(Access::NotFound))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_role_quotes_plain_identifiers_and_refuses_others() {
        assert_eq!(set_role_sql("authenticated").unwrap(), "SET LOCAL ROLE \"authenticated\"");
        assert!(set_role_sql("x\"; DROP TABLE t; --").is_err());
        assert!(set_role_sql("").is_err());
    }
}
