//! Swapping a live connection's token (the v1 `auth` frame, Supabase's `access_token`): the new
//! claims and role apply at once; every subscription is checked again and the ones no longer
//! allowed end with an `unsubscribed` item. The connection's expiry moves to the new token's
//! `exp` (the session's business).

use std::collections::HashSet;

use super::ServiceError;
use crate::app::App;
use crate::core::{AuthError, ErrorCode, Identity};
use crate::hub::Outbound;
use crate::pg::authz::{check_many, Access};

/// Verifies `token` and, if valid, makes it the connection's identity and re-checks each of
/// `channels`. Returns the `unsubscribed` items to queue, after removing those channels from
/// `channels` and the hub. An invalid token changes nothing.
pub async fn reauthenticate(
    app: &App,
    token: &str,
    identity: &mut Identity,
    channels: &mut HashSet<String>,
    session_id: u64,
) -> Result<Vec<Outbound>, ServiceError> {
    if token.is_empty() {
        return Err(AuthError::Invalid("token is empty".into()).into());
    }
    *identity = app.auth.authenticate(Some(token))?;
    let mut revoked = Vec::new();
    let mut sorted: Vec<String> = channels.iter().cloned().collect();
    sorted.sort();
    if sorted.is_empty() {
        return Ok(revoked);
    }
    // One statement for every channel (as the scheduled re-checks do).
    let answers = match check_many(&app.pool, identity, &sorted).await {
        Ok(answers) => answers,
        Err(e) => {
            // Postgres unreachable: keep the subscriptions rather than drop them on a guess (the
            // scheduled re-check ends them if this goes on).
            tracing::warn!(error = %e, "could not re-check subscriptions after auth");
            return Ok(revoked);
        }
    };
    for (channel, access) in answers {
        let (code, message) = match access {
            Access::Allowed => continue,
            Access::Denied => (ErrorCode::Unauthorized, "access revoked"),
            Access::NotFound => (ErrorCode::NotFound, "no enabled channel matches any more"),
        };
        app.hub.unsubscribe(&channel, session_id);
        app.hub.gated.unbind(&channel, session_id);
        channels.remove(&channel);
        revoked.push(Outbound::Unsubscribed { channel, code, message: message.to_string() });
    }
    Ok(revoked)
}
