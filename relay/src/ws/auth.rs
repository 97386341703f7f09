//! The `auth` frame: swaps a live connection's token. The new claims and role apply at once;
//! every subscription is checked again and the ones no longer allowed end with an
//! `unsubscribed` frame. The connection's expiry moves to the new token's `exp`.

use std::collections::HashSet;

use crate::auth::{AuthError, Identity};
use crate::pg::authz::{check_subscribe, Access};
use crate::protocol::{server, ErrorCode};
use crate::server::App;

/// Verifies `token` and, if valid, makes it the connection's identity and re-checks each of
/// `channels`. Returns the `unsubscribed` frames to send, after removing those channels from
/// `channels` and the hub. An invalid token changes nothing.
pub async fn reauthenticate(
    app: &App,
    token: &str,
    identity: &mut Identity,
    channels: &mut HashSet<String>,
    session_id: u64,
) -> Result<Vec<String>, AuthError> {
    if token.is_empty() {
        return Err(AuthError::Invalid("token is empty".into()));
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
        revoked.push(server::unsubscribed(&channel, code, message));
    }
    Ok(revoked)
}
