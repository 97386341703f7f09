//! Publishing, shared by WebSocket `publish` frames and `POST /v1/publish`.
//!
//! Persisted publishes answer with each message's `id` and `cursor`. The cursor exists only once
//! the commit has been decoded from the log, so the publisher registers the ids in [`Acks`]
//! before committing and waits (bounded) for the dispatcher to resolve them.

mod acks;

use std::time::Duration;

use serde_json::Value;

pub use acks::Acks;

use crate::auth::Identity;
use crate::metrics::Kind;
use crate::pg::publish::{emit_ephemeral, insert_as, publish_as_service, NewMessage, PublishError};
use crate::server::App;

/// How long a persisted publish waits for its cursor before answering without one.
const CURSOR_WAIT: Duration = Duration::from_secs(5);

/// A message as a client asks to publish it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub channel: String,
    pub event: String,
    pub payload: Value,
}

/// The result for one published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: String,
    /// Known once the commit was decoded; None if that took longer than the wait.
    pub cursor: Option<String>,
}

/// A time-ordered (version 7) UUID: 48 bits of Unix milliseconds, then random bits, made the
/// same way (the `uuid` crate) as the ids of `realtime.publish`; consecutive ids append to the
/// right edge of `realtime.messages`' primary key instead of landing on a random leaf.
pub fn new_uuid() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Persists `messages` in one transaction (all or nothing) and returns their ids and cursors.
/// The service role publishes as the system through `realtime.publish()`; every other role
/// inserts under its own role and claims, so RLS decides.
pub async fn persist(
    app: &App,
    who: &Identity,
    messages: Vec<Outgoing>,
) -> Result<Vec<Published>, PublishError> {
    let msgs: Vec<NewMessage> = messages
        .into_iter()
        .map(|m| NewMessage { id: new_uuid(), channel: m.channel, event: m.event, payload: m.payload })
        .collect();
    // Waiters are registered before the commit, so the dispatcher cannot resolve an id first.
    let mut waits = Vec::with_capacity(msgs.len());
    let result = if who.role == app.config.service_role {
        // realtime.publish() assigns the ids; the relay's are unused on this path.
        publish_as_service(&app.pool, &msgs, |id| waits.push((id.to_string(), app.acks.expect(id))))
            .await
            .map(drop)
    } else {
        waits.extend(msgs.iter().map(|m| (m.id.clone(), app.acks.expect(&m.id))));
        insert_as(&app.pool, who, &msgs, false).await
    };
    if let Err(e) = result {
        waits.iter().for_each(|(id, _)| app.acks.forget(id));
        return Err(app.metrics.publish_failed(Kind::Stored, e));
    }
    let deadline = tokio::time::Instant::now() + CURSOR_WAIT;
    let mut out = Vec::with_capacity(waits.len());
    for (id, rx) in waits {
        let cursor = tokio::time::timeout_at(deadline, rx).await.ok().and_then(Result::ok);
        if cursor.is_none() {
            app.acks.forget(&id);
            tracing::warn!(%id, "published, but its commit was not decoded within {CURSOR_WAIT:?}; replying without cursor");
        }
        out.push(Published { id, cursor });
    }
    app.metrics.published(Kind::Stored, crate::metrics::PublishOutcome::Ok);
    Ok(out)
}

/// Checks that `who` may publish to the message's channel (an insert that is rolled back).
pub async fn check(app: &App, who: &Identity, m: &Outgoing) -> Result<(), PublishError> {
    let probe = NewMessage {
        id: new_uuid(),
        channel: m.channel.clone(),
        event: m.event.clone(),
        payload: m.payload.clone(),
    };
    let r = insert_as(&app.pool, who, std::slice::from_ref(&probe), true).await;
    r.map_err(|e| app.metrics.publish_failed(Kind::Ephemeral, e))
}

/// Sends an ephemeral message to subscribers on every relay; never stored.
pub async fn ephemeral(app: &App, who: &Identity, m: Outgoing) -> Result<(), PublishError> {
    let msg = NewMessage { id: String::new(), channel: m.channel, event: m.event, payload: m.payload };
    app.metrics.record(Kind::Ephemeral, emit_ephemeral(&app.pool, &msg, who.user_id.as_deref()).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_7_distinct_and_ordered_in_time() {
        let a = new_uuid();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_uuid();
        assert!(a < b, "{a} then {b}");
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_eq!(a.matches('-').count(), 4);
    }
}
