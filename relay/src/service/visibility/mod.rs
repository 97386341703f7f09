//! Row-level security per subscriber for table changes (Supabase `postgres_changes`,
//! docs/supabase.md): a subscriber gets a change only if its identity (role and JWT claims, as
//! for the channel check) may SELECT that row under the table's RLS policies, checked by
//! primary key against the table after the commit.
//!
//! Sessions are bound to a table in the hub's registry ([`crate::hub::gated`]), not to its
//! change channel. One gate per table on this relay ([`gate`]) subscribes to the channel, takes
//! the changes in commit order in batches, and runs one statement per batch
//! (`realtime.visible_rows`, [`crate::pg::visibility`]) for every identity that needs it:
//! sessions of the same role and claims (apart from a token's timing claims,
//! [`plan::TIMING_CLAIMS`]) share its answer, identities whose bindings want none
//! of the batch are not asked about, and an identity that sees the whole table (no RLS for its
//! role) is asked again only every [`ACCESS_TTL`]. What each may see is then queued to its
//! sessions in commit order ([`plan`] holds the rules).
//!
//! Binding ([`bind`]) checks, after the channel's own check, that the identity's role may
//! SELECT the table and that a table under RLS has a primary key: a clear refusal otherwise.
//! Change channels (`changes:...`) cannot be subscribed to or read back any other way
//! ([`refuse_direct`]), so nothing bypasses the rows' policies.

mod catchup;
mod change;
mod gate;
pub mod plan;
mod roster;

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ServiceError;
use crate::app::App;
use crate::core::Identity;
use crate::hub::gated::{Subscriber, Wants};
use crate::hub::SessionHandle;
use crate::pg::visibility::{is_undefined_table, visible_rows};

/// The prefix of the channels `watch_table` publishes a table's changes to for
/// `postgres_changes` (`changes:<schema>.<table>`).
pub const CHANGES_PREFIX: &str = "changes:";

/// Refuses to read a change channel other than through a binding: a plain subscription or a
/// history read would hand over every row, whatever the table's row-level security.
pub fn refuse_direct(channel: &str) -> Result<(), ServiceError> {
    if channel.starts_with(CHANGES_PREFIX) {
        return Err(ServiceError::Invalid(format!(
            "'{channel}' carries a table's row changes, delivered only through postgres_changes \
             bindings (each row checked against the table's row-level security)"
        )));
    }
    Ok(())
}

/// How long an identity's access to a table (its SELECT privilege, whether RLS applies) is
/// trusted before it is asked about again; rows under RLS are checked with every batch.
pub const ACCESS_TTL: Duration = Duration::from_secs(10);

/// Binds `session` (acting as `who`) to the changes of `schema.table`, which its channel
/// `channel` carries; the channel check is the caller's. Refused when the role may not SELECT
/// the table or the table is under RLS without a primary key.
pub async fn bind(
    app: &Arc<App>,
    session: &SessionHandle,
    who: &Identity,
    channel: &str,
    schema: &str,
    table: &str,
    wants: Wants,
) -> Result<(), ServiceError> {
    let started = Instant::now();
    let checked =
        visible_rows(&app.pool, schema, table, &[], &[], &[(who.role.as_str(), who.claims.as_str())]).await;
    app.metrics.visibility.checked(checked.is_ok(), 1, started.elapsed());
    let checked = match checked {
        Ok(c) => c,
        Err(e) if is_undefined_table(&e) => {
            return Err(ServiceError::NotFound(format!("table {schema}.{table} does not exist")))
        }
        Err(e) => {
            tracing::warn!(%channel, error = %e, "table access check failed");
            return Err(ServiceError::Internal(e.client_message()));
        }
    };
    let Some(access) = checked.answers.first() else {
        return Err(ServiceError::Internal("the table access check gave no answer".into()));
    };
    if !access.selectable {
        let role = &who.role;
        return Err(ServiceError::Denied(format!(
            "role '{role}' may not SELECT {schema}.{table}, so it cannot receive its changes \
             (GRANT SELECT ON {schema}.{table} TO {role})"
        )));
    }
    if access.row_security && checked.pk.is_none() {
        return Err(ServiceError::Invalid(format!(
            "{schema}.{table} has row-level security but no primary key, so its changes cannot \
             be checked per subscriber; add a primary key"
        )));
    }
    let sub = Subscriber { session: session.clone(), wants };
    if let Some(t) = app.hub.gated.bind(channel, schema, table, checked.pk, sub) {
        gate::start(app, t);
    }
    Ok(())
}
