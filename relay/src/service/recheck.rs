//! Permission re-checks: access granted at subscribe time is not granted forever. Every open
//! subscription (table change bindings included, [`crate::hub::gated`]) is checked again every `--recheck-secs` and at once after a change to
//! `realtime.channels` (the replication stream tells: [`crate::pg::replication`]'s
//! `channels_changed`). A subscription no longer allowed, or whose channel row is gone or
//! disabled, ends: the hub stops delivering it, the client gets an `unsubscribed` item, and
//! the session forgets it (and its presence) through [`SessionHandle::revoked`].
//!
//! Every round first forgets the subscribe permissions granted recently
//! ([`crate::pg::authz_cache`]), and so does a change to `realtime.channels` the moment it is
//! seen: a subscription made from a remembered grant is re-checked no later than one checked
//! in Postgres at that moment.
//!
//! Checks are grouped by identity (role and claims): one round trip per identity for all its
//! channels, a few identities at a time so re-checks never take the pool from subscribes and
//! publishes. A database error is not an answer: the subscription stays while its permission
//! was confirmed within the last two intervals, and ends (`unverified`) after that.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::app::App;
use crate::core::{ErrorCode, Identity};
use crate::hub::{Outbound, SessionHandle};
use crate::metrics::{CheckOutcome, Revoked};
use crate::pg::authz::{check_many, Access};

/// Identities checked at once (each holds one pool connection for its statement).
const CONCURRENCY: usize = 2;
/// Channels per statement, so one identity with very many channels is checked in pieces.
const CHUNK: usize = 500;
/// Least time between two re-checks that a change to `realtime.channels` starts, so a burst
/// of changes costs one re-check.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The subscriptions of one identity.
struct Group {
    identity: Arc<Identity>,
    subs: Vec<(String, SessionHandle)>,
}

/// When each subscription's permission was last confirmed, by (session, channel).
type Confirmed = HashMap<(u64, String), Instant>;

/// Re-checks every subscription on a schedule and after each change to `realtime.channels`,
/// until shutdown.
pub async fn run(app: Arc<App>) {
    let every = app.config.recheck_interval;
    let mut confirmed = Confirmed::new();
    let mut next = Instant::now() + every;
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
            _ = app.replication.channels_changed.notified() => {
                app.access_cache.forget_all();
                tokio::time::sleep(DEBOUNCE).await;
            }
        }
        app.access_cache.forget_all();
        round(&app, &mut confirmed).await;
        next = Instant::now() + every;
    }
}

/// One re-check of every subscription.
async fn round(app: &App, confirmed: &mut Confirmed) {
    let grace = app.config.recheck_interval * 2;
    let now = Instant::now();
    let mut subscriptions = app.hub.subscriptions();
    subscriptions.extend(app.hub.gated.subscriptions());
    let groups = group(subscriptions);
    let mut seen = BTreeSet::new();
    let checks = futures_util::stream::iter(groups)
        .map(|g| async move {
            let channels: Vec<String> =
                g.subs.iter().map(|(c, _)| c.clone()).collect::<BTreeSet<_>>().into_iter().collect();
            let mut answers = HashMap::new();
            for chunk in channels.chunks(CHUNK) {
                match check_many(&app.pool, &g.identity, chunk).await {
                    Ok(found) => answers.extend(found.into_iter().map(|(c, a)| (c, Some(a)))),
                    Err(e) => {
                        tracing::warn!(role = %g.identity.role, error = %e, "permission re-check failed");
                        answers.extend(chunk.iter().map(|c| (c.clone(), None)));
                    }
                }
            }
            (g, answers)
        })
        .buffer_unordered(CONCURRENCY);
    futures_util::pin_mut!(checks);
    while let Some((g, answers)) = checks.next().await {
        for (channel, handle) in g.subs {
            let key = (handle.id, channel);
            seen.insert(key.clone());
            let verdict = answers.get(&key.1).copied().flatten();
            app.metrics.rechecked(outcome(verdict), 1);
            let first_seen = *confirmed.entry(key.clone()).or_insert(now);
            let reason = match verdict {
                Some(Access::Allowed) => {
                    confirmed.insert(key, Instant::now());
                    continue;
                }
                Some(Access::Denied) => Revoked::Denied,
                Some(Access::NotFound) => Revoked::NotFound,
                None if now.duration_since(first_seen) < grace => continue,
                None => Revoked::Unverified,
            };
            revoke(app, &handle, key.1, reason);
        }
    }
    confirmed.retain(|k, _| seen.contains(k));
}

/// Subscriptions grouped by identity; sessions gone or not yet identified are skipped.
fn group(subs: Vec<(String, SessionHandle)>) -> Vec<Group> {
    let mut groups: HashMap<(String, String), Group> = HashMap::new();
    for (channel, handle) in subs {
        if handle.is_gone() {
            continue;
        }
        let Some(identity) = handle.identity() else { continue };
        let key = (identity.role.clone(), identity.claims.clone());
        groups
            .entry(key)
            .or_insert_with(|| Group { identity, subs: Vec::new() })
            .subs
            .push((channel, handle));
    }
    groups.into_values().collect()
}

/// The metrics label of a permission check's answer (None: the check failed).
pub(super) fn outcome(verdict: Option<Access>) -> CheckOutcome {
    match verdict {
        Some(Access::Allowed) => CheckOutcome::Allowed,
        Some(Access::Denied) => CheckOutcome::Denied,
        Some(Access::NotFound) => CheckOutcome::NotFound,
        None => CheckOutcome::Error,
    }
}

/// Ends `handle`'s subscription to `channel`: nothing more is delivered, the client is told,
/// the session forgets it. Nothing happens if the session left the channel meanwhile.
fn revoke(app: &App, handle: &SessionHandle, channel: String, reason: Revoked) {
    let subscribed = app.hub.unsubscribe(&channel, handle.id);
    let bound = app.hub.gated.unbind(&channel, handle.id);
    if !subscribed && !bound {
        return;
    }
    app.metrics.revoked(reason);
    tracing::debug!(session = handle.id, %channel, ?reason, "subscription revoked by a re-check");
    let (code, message) = match reason {
        Revoked::Denied => (ErrorCode::Unauthorized, "access revoked"),
        Revoked::NotFound => (ErrorCode::NotFound, "no enabled channel matches any more"),
        Revoked::Unverified => (ErrorCode::InternalError, "permission could not be checked again"),
    };
    handle.revoked(&channel);
    handle.send(Outbound::Unsubscribed { channel, code, message: message.to_string() });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{session_queue, Budget, QueueLimits};

    fn who(role: &str, claims: &str) -> Arc<Identity> {
        Arc::new(Identity { role: role.into(), user_id: None, claims: claims.into(), exp: None })
    }

    #[test]
    fn subscriptions_are_grouped_by_role_and_claims_and_gone_or_unidentified_sessions_skipped() {
        let limits = || QueueLimits { bytes: 1 << 20, budget: Budget::new(1 << 30) };
        let (alice1, _q1) = session_queue(1, limits());
        let (alice2, _q2) = session_queue(2, limits());
        let (anon, _q3) = session_queue(3, limits());
        let (unknown, _q4) = session_queue(4, limits());
        let (gone, q5) = session_queue(5, limits());
        alice1.set_identity(who("authenticated", r#"{"sub":"alice"}"#));
        alice2.set_identity(who("authenticated", r#"{"sub":"alice"}"#));
        anon.set_identity(who("anon", r#"{"sub":"alice"}"#));
        gone.set_identity(who("anon", "{}"));
        drop(q5);
        let subs = [(&alice1, "a"), (&alice2, "b"), (&anon, "a"), (&unknown, "a"), (&gone, "a")]
            .into_iter()
            .map(|(h, c)| (c.to_string(), h.clone()))
            .collect();
        let mut groups: Vec<(String, Vec<(String, u64)>)> = group(subs)
            .into_iter()
            .map(|g| (g.identity.role.clone(), g.subs.into_iter().map(|(c, h)| (c, h.id)).collect()))
            .collect();
        groups.sort();
        assert_eq!(
            groups,
            vec![
                ("anon".to_string(), vec![("a".to_string(), 3)]),
                ("authenticated".to_string(), vec![("a".to_string(), 1), ("b".to_string(), 2)]),
            ]
        );
    }

    #[test]
    fn an_error_is_its_own_outcome() {
        assert_eq!(outcome(None), CheckOutcome::Error);
        assert_eq!(outcome(Some(Access::NotFound)), CheckOutcome::NotFound);
    }
}
