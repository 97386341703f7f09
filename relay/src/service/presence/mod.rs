//! A connection's side of presence: `track` / `untrack` with their limits, and untracking when
//! a channel is unsubscribed, revoked, or the connection ends.
//!
//! Presence permission is subscribe permission: only a channel this connection is subscribed to
//! (so its subscribe check passed) may be tracked. The member is the JWT `sub` when there is one
//! (all tabs of a user are one member), else this connection.

use std::collections::HashSet;

use serde_json::Value;

pub mod settings;
pub mod task;

use super::limits::{RateLimiter, Verdict};
use super::ServiceError;
use crate::app::App;
use crate::core::presence::Tracked;
use crate::core::Identity;

/// Whether a string (or key) anywhere in `v` contains NUL, which `jsonb` refuses.
fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The channels this connection tracks, and its track rate limit.
pub struct Tracking {
    conn: String,
    channels: HashSet<String>,
    limiter: RateLimiter,
}

impl Tracking {
    pub fn new(app: &App, session_id: u64) -> Self {
        Self {
            conn: app.presence.conn_id(session_id),
            channels: HashSet::new(),
            limiter: RateLimiter::new(app.config.presence.track_rate, std::time::Instant::now()),
        }
    }

    /// Tracks `state` as this connection's presence on `channel`.
    pub async fn track(
        &mut self,
        app: &App,
        who: &Identity,
        subscribed: bool,
        channel: &str,
        state: Value,
    ) -> Result<(), ServiceError> {
        if !subscribed {
            return Err(ServiceError::NotSubscribed(format!(
                "subscribe to '{channel}' before tracking presence on it"
            )));
        }
        let limits = &app.config.presence;
        // Only allowed calls take a token; refusals never close the connection.
        if self.limiter.check(std::time::Instant::now()) != Verdict::Allow {
            return Err(ServiceError::RateLimited(format!(
                "more than {} track calls per second",
                limits.track_rate
            )));
        }
        if has_nul(&state) {
            return Err(ServiceError::Invalid(
                "presence state must not contain \\u0000 (Postgres jsonb cannot store it)".into(),
            ));
        }
        let state = state.to_string();
        if state.len() > limits.max_state_bytes {
            return Err(ServiceError::TooLarge(format!(
                "presence state is {} bytes, over the limit of {} bytes",
                state.len(),
                limits.max_state_bytes
            )));
        }
        let presence_id = who.user_id.clone().unwrap_or_else(|| self.conn.clone());
        let o = app.hub.presence.occupancy(channel, &presence_id);
        if !o.is_member && o.members >= limits.max_members {
            let members = o.members;
            return Err(ServiceError::PresenceLimit(format!(
                "'{channel}' has {members} presence members, the limit"
            )));
        }
        if !o.is_member && who.user_id.is_none() && o.anonymous >= limits.max_anonymous {
            let n = o.anonymous;
            return Err(ServiceError::PresenceLimit(format!(
                "'{channel}' has {n} anonymous presence members, the limit for clients without a user id; \
                 sign in to appear (--presence-max-anonymous)"
            )));
        }
        let t = Tracked {
            channel: channel.to_string(),
            conn: self.conn.clone(),
            relay: app.presence.relay_id().to_string(),
            presence_id,
            user_id: who.user_id.clone(),
            state,
        };
        match app.presence.track(t).await {
            Ok(()) => {
                self.channels.insert(channel.to_string());
                Ok(())
            }
            Err(e) => {
                tracing::warn!(%channel, error = %e, "presence track failed");
                Err(ServiceError::Internal(e.client_message()))
            }
        }
    }

    /// Stops tracking `channel`. Untracking a channel that is not tracked is a no-op.
    pub async fn untrack(&mut self, app: &App, subscribed: bool, channel: &str) -> Result<(), ServiceError> {
        if !subscribed {
            return Err(ServiceError::NotSubscribed(format!("not subscribed to '{channel}'")));
        }
        if !self.channels.remove(channel) {
            return Ok(());
        }
        match app.presence.untrack(&self.conn, vec![channel.to_string()]).await {
            Ok(()) => Ok(()),
            Err(e) => {
                // The writer keeps retrying it in the background.
                tracing::warn!(%channel, error = %e, "presence untrack failed; retrying in the background");
                Err(ServiceError::Internal(e.client_message()))
            }
        }
    }

    /// The channel was unsubscribed or revoked: stop tracking it (not awaited).
    pub async fn forget(&mut self, app: &App, channel: &str) {
        if self.channels.remove(channel) {
            app.presence.untrack_later(&self.conn, vec![channel.to_string()]).await;
        }
    }

    /// The connection ends: stop tracking everything (not awaited).
    pub async fn close(&mut self, app: &App) {
        let channels: Vec<String> = self.channels.drain().collect();
        app.presence.untrack_later(&self.conn, channels).await;
    }
}
