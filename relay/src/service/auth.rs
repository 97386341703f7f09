//! Swapping a live connection's token (the v1 `auth` frame, Supabase's `access_token`): the new
//! claims and role apply at once; every subscription is checked again and the ones no longer
//! allowed end with an `unsubscribed` item. The connection's expiry moves to the new token's
//! `exp` (the session's business).

use std::collections::HashSet;

use super::ServiceError;
use crate::app::App;
use crate::core::{AuthError, ErrorCode, Identity};
use crate::hub::Outbound;
use crate::pg::authz::{check_subscribe, Access};

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
    for channel in sorted {
        let (code, message) = match check_subscribe(&app.pool, identity, &channel).await {
            Ok(Access::Allowed) => continue,
            Ok(Access::Denied) => (ErrorCode::Unauthorized, "access revoked"),
            Ok(Access::NotFound) => (ErrorCode::NotFound, "no enabled channel matches any more"),
            Err(e) => {
                // Postgres unreachable: keep the subscription rather than drop it on a guess.
                tracing::warn!(%channel, error = %e, "could not re-check subscription after auth");
                continue;
            }
        };
        app.hub.unsubscribe(&channel, session_id);
        channels.remove(&channel);
        revoked.push(Outbound::Unsubscribed { channel, code, message: message.to_string() });
    }
    Ok(revoked)
}
