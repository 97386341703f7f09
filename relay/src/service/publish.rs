//! Publishing, shared by every protocol's publish and `POST /v1/publish`.
//!
//! * Persisted publishes answer with each message's `id` and `cursor`. The cursor exists only
//!   once the commit has been decoded from the log, so the publisher registers the ids in
//!   [`crate::hub::acks::Acks`] before committing and waits (bounded) for the dispatcher.
//! * Ephemeral publishes pass the same permission check, remembered per connection and channel
//!   for a short while ([`PublishChecks`]), and are delivered live on every relay.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ServiceError;
use crate::app::App;
use crate::core::{names, Cursor, ErrorCode, Identity};
use crate::metrics::{Kind, PublishOutcome};
use crate::pg::publish::{emit_ephemeral, insert_as, publish_as_service, NewMessage, PublishError};

/// How long a persisted publish waits for its cursor before answering without one.
const CURSOR_WAIT: Duration = Duration::from_secs(5);

/// A message as a client asks to publish it; its names were checked ([`Outgoing::new`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub channel: String,
    pub event: String,
    pub payload: Value,
}

impl Outgoing {
    /// A message to publish, with the channel and event checked by the rules the extension
    /// applies too (`realtime_core::names`).
    pub fn new(channel: String, event: String, payload: Value) -> Result<Self, ServiceError> {
        names::validate_channel(Some(&channel)).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        names::validate_event(Some(&event)).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        Ok(Outgoing { channel, event, payload })
    }
}

/// The result for one published message: `id` and `cursor` for a stored one (the cursor is
/// None if its commit took longer than the wait to be decoded), neither for an ephemeral one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub id: Option<String>,
    pub cursor: Option<Cursor>,
}

/// A time-ordered (version 7) UUID: 48 bits of Unix milliseconds, then random bits, made the
/// same way (the `uuid` crate) as the ids of `realtime.publish`; consecutive ids append to the
/// right edge of `realtime.messages`' primary key instead of landing on a random leaf.
pub fn new_uuid() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The `publishes_total` outcome of a refused publish.
fn outcome(e: &ServiceError) -> PublishOutcome {
    match e.code() {
        ErrorCode::Unauthorized => PublishOutcome::Unauthorized,
        ErrorCode::NotFound => PublishOutcome::NotFound,
        ErrorCode::PayloadTooLarge => PublishOutcome::TooLarge,
        ErrorCode::RateLimited => PublishOutcome::RateLimited,
        _ => PublishOutcome::Error,
    }
}

/// Counts a publish result and turns its error into a [`ServiceError`].
fn counted<T>(app: &App, kind: Kind, r: Result<T, PublishError>) -> Result<T, ServiceError> {
    match r {
        Ok(v) => {
            app.metrics.published(kind, PublishOutcome::Ok);
            Ok(v)
        }
        Err(e) => {
            let e = ServiceError::from(e);
            app.metrics.published(kind, outcome(&e));
            Err(e)
        }
    }
}

/// Persists `messages` in one transaction (all or nothing) and returns their ids and cursors.
/// The service role publishes as the system through `realtime.publish()`; every other role
/// inserts under its own role and claims, so RLS decides.
pub async fn persist(
    app: &App,
    who: &Identity,
    messages: Vec<Outgoing>,
) -> Result<Vec<Published>, ServiceError> {
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
    if result.is_err() {
        waits.iter().for_each(|(id, _)| app.acks.forget(id));
    }
    counted(app, Kind::Stored, result)?;
    let deadline = tokio::time::Instant::now() + CURSOR_WAIT;
    let mut out = Vec::with_capacity(waits.len());
    for (id, rx) in waits {
        let cursor = tokio::time::timeout_at(deadline, rx).await.ok().and_then(Result::ok);
        if cursor.is_none() {
            app.acks.forget(&id);
            tracing::warn!(%id, "published, but its commit was not decoded within {CURSOR_WAIT:?}; replying without cursor");
        }
        out.push(Published { id: Some(id), cursor });
    }
    Ok(out)
}

/// Checks that `who` may publish to the message's channel (an insert that is rolled back).
async fn check(app: &App, who: &Identity, m: &Outgoing) -> Result<(), PublishError> {
    let probe = NewMessage {
        id: new_uuid(),
        channel: m.channel.clone(),
        event: m.event.clone(),
        payload: m.payload.clone(),
    };
    insert_as(&app.pool, who, std::slice::from_ref(&probe), true).await
}

/// Channels a connection was recently allowed to publish ephemeral messages to.
#[derive(Default)]
pub struct PublishChecks {
    allowed_until: HashMap<String, Instant>,
}

/// Remembered channels per connection; past it, expired entries are dropped, and if none had
/// expired, all of them (they are only a cache of permission checks).
const MAX_CHECKS: usize = 256;

impl PublishChecks {
    fn allowed(&self, channel: &str) -> bool {
        self.allowed_until.get(channel).is_some_and(|until| Instant::now() < *until)
    }

    /// Remembers that `channel` was allowed until `until`, keeping the map bounded.
    fn remember(&mut self, channel: String, until: Instant) {
        if self.allowed_until.len() >= MAX_CHECKS {
            let now = Instant::now();
            self.allowed_until.retain(|_, t| now < *t);
            if self.allowed_until.len() >= MAX_CHECKS {
                self.allowed_until.clear();
            }
        }
        self.allowed_until.insert(channel, until);
    }

    /// Forgets every remembered decision (the token changed).
    pub fn clear(&mut self) {
        self.allowed_until.clear();
    }
}

/// Sends an ephemeral message to subscribers on every relay; never stored. The permission
/// check is remembered in `checks` for `--publish-check-ttl-secs`.
pub async fn ephemeral(
    app: &App,
    who: &Identity,
    checks: &mut PublishChecks,
    m: Outgoing,
) -> Result<Published, ServiceError> {
    if !checks.allowed(&m.channel) {
        if let Err(e) = check(app, who, &m).await {
            return counted(app, Kind::Ephemeral, Err(e));
        }
        checks.remember(m.channel.clone(), Instant::now() + app.config.publish_check_ttl);
    }
    let msg = NewMessage { id: String::new(), channel: m.channel, event: m.event, payload: m.payload };
    counted(app, Kind::Ephemeral, emit_ephemeral(&app.pool, &msg, who.user_id.as_deref()).await)?;
    Ok(Published { id: None, cursor: None })
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

    #[test]
    fn remembered_publish_checks_stay_bounded() {
        let mut checks = PublishChecks::default();
        let later = Instant::now() + Duration::from_secs(60);
        for n in 0..10 * MAX_CHECKS {
            checks.remember(format!("c{n}"), later);
        }
        assert!(checks.allowed_until.len() <= MAX_CHECKS);
        assert!(checks.allowed(&format!("c{}", 10 * MAX_CHECKS - 1)), "the newest is kept");
        let past = Instant::now();
        let mut checks = PublishChecks::default();
        (0..MAX_CHECKS).for_each(|n| checks.remember(format!("old{n}"), past));
        checks.remember("new".into(), later);
        assert_eq!(checks.allowed_until.len(), 1, "expired entries are dropped first");
    }

    #[test]
    fn outgoing_names_follow_the_shared_rules() {
        assert!(Outgoing::new("c".into(), "e".into(), Value::Null).is_ok());
        let e = Outgoing::new("c".into(), "".into(), Value::Null).unwrap_err();
        assert_eq!(e, ServiceError::Invalid("event must not be empty".into()));
        let e = Outgoing::new("c".into(), "e".repeat(256), Value::Null).unwrap_err();
        assert_eq!(e.to_string(), "event is 256 bytes long; the limit is 255 bytes");
        assert!(Outgoing::new("a\u{1}b".into(), "e".into(), Value::Null).is_err());
    }
}
