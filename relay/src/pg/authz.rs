//! Permission checks, run the way DESIGN prescribes: inside a transaction on a pooled
//! connection, `SET LOCAL ROLE <role>` (an allowlisted plain identifier, quoted), the client's
//! claims in `request.jwt.claims` and the channel in `realtime.channel_name`, then the
//! extension's own functions decide under the owner's RLS policies.

use deadpool_postgres::Pool;

use super::PgError;
use crate::auth::Identity;
use crate::config::is_plain_identifier;

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

/// May `who` subscribe to `channel`?
///
/// One round trip: BEGIN + `SET LOCAL ROLE`, the settings, the check and ROLLBACK are pipelined
/// on the pooled connection (all sent before any reply is awaited; Postgres runs them in order).
/// Every subscribe pays this check, so waiting for five replies in turn made the pool's round
/// trips, not Postgres' work, the limit on subscribes per second. ROLLBACK is sent with the
/// others, so it runs even when an earlier statement failed (they then fail as "transaction
/// aborted") and the connection goes back to the pool outside any transaction.
pub async fn check_subscribe(pool: &Pool, who: &Identity, channel: &str) -> Result<Access, PgError> {
    let client = pool.get().await?;
    let begin = format!("BEGIN; {}", set_role_sql(&who.role)?);
    let settings = client
        .prepare_cached(
            "SELECT set_config('request.jwt.claims', $1, true), set_config('realtime.channel_name', $2, true)",
        )
        .await?;
    let check = client
        .prepare_cached("SELECT realtime.match_channel($1) IS NOT NULL, realtime.can_subscribe($1)")
        .await?;
    let settings_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&who.claims, &channel];
    let check_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&channel];
    let (_, _, row, _) = tokio::try_join!(
        client.batch_execute(&begin),
        client.query_one(&settings, &settings_params),
        client.query_one(&check, &check_params),
        client.batch_execute("ROLLBACK"),
    )?;
    let (exists, allowed): (bool, Option<bool>) = (row.get(0), row.get(1));
    Ok(match (exists, allowed.unwrap_or(false)) {
        (false, _) => Access::NotFound,
        (true, false) => Access::Denied,
        (true, true) => Access::Allowed,
    })
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
