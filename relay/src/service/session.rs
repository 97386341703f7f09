//! A connection's state, whatever its protocol and transport: who it is (identity and token
//! expiry), its subscriptions, its presence, its publish permission cache and rate limit, and
//! its queue (the hub's [`SessionHandle`]). Protocols turn requests into calls here and encode
//! the results; transports run the socket or stream around it.
//!
//! Subscribe replies are encoded by the caller's protocol (`reply` closures) but queued here,
//! under the hub lock, so a reply always precedes the channel's first event.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::presence::Tracking;
use super::publish::{Outgoing, PublishChecks, Published};
use super::stream::Authorized;
use super::{limits, ServiceError};
use crate::app::App;
use crate::core::error::close;
use crate::core::frame::WireFrame;
use crate::core::presence::Member;
use crate::core::{hints, Cursor, Identity};
use crate::hub::gated::Wants;
use crate::hub::{session_queue, Joined, Outbound, SessionHandle, SessionQueue};
use crate::metrics::{Kind, PublishOutcome};
use crate::pg::authz::{check_subscribe, Access};
use crate::pg::history::Page;

/// What a subscribe reply tells the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribed {
    /// The hub position at registration: `history(before = position)` is exactly what came
    /// before the subscription.
    pub position: Option<Cursor>,
    /// For a resume: whether the missed messages follow (true) or a `reset` does (false).
    pub recovered: Option<bool>,
    /// The channel's presence members at registration.
    pub members: Vec<Member>,
}

/// A request to end the connection, with a close code (`crate::core::error::close`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: u16,
    pub reason: &'static str,
}

/// One connection's state. See the module docs.
pub struct Session {
    pub app: Arc<App>,
    identity: Identity,
    handle: SessionHandle,
    channels: HashSet<String>,
    publish_checks: PublishChecks,
    /// When the token expires (the connection then ends with 4001), if it has an `exp`.
    expires_at: Option<tokio::time::Instant>,
    publish_limiter: limits::RateLimiter,
    history_limiter: limits::RateLimiter,
    auth_limiter: limits::RateLimiter,
    tracking: Tracking,
    close_request: Option<CloseRequest>,
    /// Cancelled when the session ends (stops its catch-up task).
    ended: CancellationToken,
}

impl Session {
    /// A new session for `identity`: its queue (the writer's end is returned for the transport)
    /// and the task that catches up its subscriptions when they fall behind.
    pub fn open(app: Arc<App>, identity: Identity) -> (Session, SessionQueue) {
        let (handle, queue) = session_queue(app.hub.next_session_id(), app.queue_limits());
        let ended = CancellationToken::new();
        app.tracker.spawn(catch_up_when_behind(app.clone(), handle.clone(), ended.clone()));
        (Session::new(app, identity, handle, ended), queue)
    }

    /// A session for a stream ([`super::stream`]): its queue keeps dispatch order across
    /// channels ([`SessionHandle::keep_order`]), and no per-channel catch-up task runs: when it
    /// falls behind, the transport catches the whole group up ([`super::stream::catch_up`]).
    pub fn open_stream(app: Arc<App>, identity: Identity) -> (Session, SessionQueue) {
        let (handle, queue) = session_queue(app.hub.next_session_id(), app.queue_limits());
        handle.keep_order();
        (Session::new(app, identity, handle, CancellationToken::new()), queue)
    }

    fn new(app: Arc<App>, identity: Identity, handle: SessionHandle, ended: CancellationToken) -> Self {
        handle.set_identity(Arc::new(identity.clone()));
        let tracking = Tracking::new(&app, handle.id);
        let publish_limiter =
            limits::RateLimiter::new(app.config.max_publish_rate, std::time::Instant::now());
        let now = std::time::Instant::now();
        let history_limiter = limits::RateLimiter::new(app.config.max_history_rate, now);
        let auth_limiter = limits::RateLimiter::new(app.config.max_auth_rate, now);
        Session {
            history_limiter,
            auth_limiter,
            ended,
            expires_at: expiry_instant(identity.exp),
            app,
            identity,
            handle,
            channels: HashSet::new(),
            publish_checks: PublishChecks::default(),
            publish_limiter,
            tracking,
            close_request: None,
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub fn handle(&self) -> &SessionHandle {
        &self.handle
    }

    pub fn id(&self) -> u64 {
        self.handle.id
    }

    /// Queues an item (see [`SessionHandle::send`]).
    pub fn send(&self, item: Outbound) -> bool {
        self.handle.send(item)
    }

    /// Queues a frame the protocol encoded.
    pub fn send_frame(&self, frame: WireFrame) -> bool {
        self.handle.send_frame(frame)
    }

    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.channels.contains(channel)
    }

    /// When the token runs out, if it has an expiry.
    pub fn expires_at(&self) -> Option<tokio::time::Instant> {
        self.expires_at
    }

    /// A request to end the connection made by the last operation, if any.
    pub fn take_close_request(&mut self) -> Option<CloseRequest> {
        self.close_request.take()
    }

    /// Waits until a permission re-check ends subscriptions of this session
    /// ([`super::recheck`]); hand them to [`Self::forget_revoked`]. Transports wait on this
    /// beside the client's requests so presence ends promptly.
    pub async fn next_revoked(&self) -> Vec<String> {
        self.handle.next_revoked().await
    }

    /// Forgets subscriptions a re-check ended (the hub and the client already know) and the
    /// presence tracked on them.
    pub async fn forget_revoked(&mut self, channels: Vec<String>) {
        for channel in channels {
            if self.channels.remove(&channel) {
                self.tracking.forget(&self.app, &channel).await;
            }
        }
    }

    /// Applies revocations not yet handed over, before an operation that depends on them.
    async fn catch_up_revocations(&mut self) {
        let revoked = self.handle.take_revoked();
        if !revoked.is_empty() {
            self.forget_revoked(revoked).await;
        }
    }

    /// Subscribes to `channel` (resuming from `resume` when given) after the permission check;
    /// `reply` encodes the subscribe reply, which is queued before any event of the channel.
    /// Subscribing again to a channel answers with the current position and members.
    pub async fn subscribe(
        &mut self,
        channel: String,
        resume: Option<Cursor>,
        reply: impl FnOnce(Subscribed) -> Outbound,
    ) -> Result<(), ServiceError> {
        self.catch_up_revocations().await;
        if self.channels.contains(&channel) {
            let joined = self.app.hub.joined(&channel);
            self.send(reply(Subscribed {
                position: joined.position,
                recovered: None,
                members: joined.members,
            }));
            return Ok(());
        }
        let limit = self.app.config.max_subscriptions;
        if self.channels.len() >= limit {
            return Err(ServiceError::Invalid(format!(
                "too many subscriptions on this connection (limit {limit})"
            )));
        }
        super::visibility::refuse_direct(&channel)?;
        self.authorize(&channel).await?;
        let registered = match resume {
            Some(cursor) => {
                let reply = |joined: Joined, recovered| {
                    reply(Subscribed {
                        position: joined.position,
                        recovered: Some(recovered),
                        members: joined.members,
                    })
                };
                super::resume::subscribe(&self.app, &self.handle, &channel, cursor, reply).await?
            }
            None => self.app.hub.subscribe(&channel, &self.handle, |joined| {
                reply(Subscribed { position: joined.position, recovered: None, members: joined.members })
            }),
        };
        if registered {
            self.channels.insert(channel);
        }
        Ok(())
    }

    /// Binds a table's changes (its change channel `channel`, which the caller names) through
    /// the per-row visibility gate ([`super::visibility`]): the channel is checked like a
    /// subscribe, then the table access of this session's identity; afterwards this session
    /// gets each change its bindings `wants` that its identity may see, in commit order.
    pub async fn subscribe_changes(
        &mut self,
        channel: String,
        schema: &str,
        table: &str,
        wants: Wants,
    ) -> Result<(), ServiceError> {
        self.catch_up_revocations().await;
        if self.channels.contains(&channel) {
            return Err(ServiceError::Invalid(format!("already receiving the changes of '{channel}'")));
        }
        let limit = self.app.config.max_subscriptions;
        if self.channels.len() >= limit {
            return Err(ServiceError::Invalid(format!(
                "too many subscriptions on this connection (limit {limit})"
            )));
        }
        self.authorize(&channel).await?;
        super::visibility::bind(&self.app, &self.handle, &self.identity, &channel, schema, table, wants)
            .await?;
        self.channels.insert(channel);
        Ok(())
    }

    /// Subscribe permission for `channel` (counted in the subscribe-check metrics): a grant
    /// remembered from a recent check ([`crate::pg::authz_cache`]), else a check in Postgres.
    async fn authorize(&self, channel: &str) -> Result<(), ServiceError> {
        let cache = &self.app.access_cache;
        if cache.allowed(&self.identity, channel) {
            self.app.metrics.subscribe_checks_cached.inc();
            return Ok(());
        }
        let generation = cache.generation();
        let started = std::time::Instant::now();
        let checked = check_subscribe(&self.app.pool, &self.identity, channel).await;
        let outcome = super::recheck::outcome(checked.as_ref().ok().copied());
        self.app.metrics.subscribe_checked(outcome, started.elapsed());
        match checked {
            Ok(Access::Allowed) => cache.remember(generation, &self.identity, channel),
            Ok(Access::Denied) => {
                let who = &self.identity;
                return Err(ServiceError::Denied(hints::subscribe_denied(
                    &who.role,
                    who.user_id.as_deref(),
                    channel,
                )));
            }
            Ok(Access::NotFound) => return Err(ServiceError::NotFound(hints::channel_not_found(channel))),
            Err(e) => {
                tracing::warn!(%channel, error = %e, "subscribe check failed");
                return Err(ServiceError::Internal(e.client_message()));
            }
        }
        Ok(())
    }

    /// Checks every channel of a stream (deduplicated, at least one, at most
    /// `--max-subscriptions`); the first refusal refuses them all.
    pub async fn authorize_group(&self, channels: Vec<String>) -> Result<Authorized, ServiceError> {
        let mut unique: Vec<String> = Vec::with_capacity(channels.len());
        for c in channels {
            if !unique.contains(&c) {
                unique.push(c);
            }
        }
        let limit = self.app.config.max_subscriptions;
        if unique.is_empty() {
            return Err(ServiceError::Invalid("name at least one channel".into()));
        }
        if unique.len() > limit {
            return Err(ServiceError::Invalid(format!("too many channels (limit {limit})")));
        }
        for c in &unique {
            crate::core::names::validate_channel(Some(c))
                .map_err(|e| ServiceError::Invalid(e.to_string()))?;
            super::visibility::refuse_direct(c)?;
            self.authorize(c).await?;
        }
        Ok(Authorized(unique))
    }

    /// Subscribes an authorized group as one stream, resuming from `from` when given (see
    /// [`super::stream::subscribe`]). A session holds at most one group.
    pub async fn subscribe_group(
        &mut self,
        group: &Authorized,
        from: Option<Cursor>,
        reply: impl Fn(&str, &Joined, Option<bool>) -> Outbound,
        marker: impl Fn(Cursor) -> Option<Outbound>,
    ) -> Result<(), ServiceError> {
        if !self.channels.is_empty() {
            return Err(ServiceError::Invalid("this session is already subscribed".into()));
        }
        self.channels.extend(group.channels().iter().cloned());
        super::stream::subscribe(&self.app, &self.handle, group, from, reply, marker).await
    }

    /// One long-poll of an authorized group on this (stream) session, whose queue the poll
    /// reads (see [`super::poll`]).
    pub async fn poll(
        &mut self,
        group: &Authorized,
        queue: &mut SessionQueue,
        cursor: Option<Cursor>,
        wait: Duration,
        limit: usize,
    ) -> Result<super::poll::Polled, ServiceError> {
        if !self.channels.is_empty() {
            return Err(ServiceError::Invalid("this session is already subscribed".into()));
        }
        self.channels.extend(group.channels().iter().cloned());
        super::poll::poll(&self.app, &self.handle, queue, group, cursor, wait, limit).await
    }

    /// Ends the subscription to `channel` (and its presence).
    pub async fn unsubscribe(&mut self, channel: &str) -> Result<(), ServiceError> {
        self.catch_up_revocations().await;
        if !self.channels.remove(channel) {
            return Err(ServiceError::NotSubscribed(format!("not subscribed to '{channel}'")));
        }
        self.app.hub.unsubscribe(channel, self.handle.id);
        self.app.hub.gated.unbind(channel, self.handle.id);
        self.tracking.forget(&self.app, channel).await;
        Ok(())
    }

    /// Publishes `m`, stored (`persist`) or ephemeral, within the connection's publish rate.
    /// Past the rate: `RateLimited`; a client that keeps going is asked to close (4008).
    pub async fn publish(&mut self, m: Outgoing, persist: bool) -> Result<Published, ServiceError> {
        use limits::Verdict;
        let verdict = self.publish_limiter.check(std::time::Instant::now());
        if verdict == Verdict::Abusive {
            self.close_request =
                Some(CloseRequest { code: close::RATE_LIMITED, reason: "rate limit exceeded repeatedly" });
        }
        if verdict != Verdict::Allow {
            self.app.metrics.published(Kind::of_persist(persist), PublishOutcome::RateLimited);
            let rate = self.app.config.max_publish_rate;
            return Err(ServiceError::RateLimited(format!("more than {rate} publishes per second")));
        }
        if persist {
            let mut done = super::publish::persist(&self.app, &self.identity, vec![m]).await?;
            Ok(done.pop().expect("one message published"))
        } else {
            super::publish::ephemeral(&self.app, &self.identity, &mut self.publish_checks, m).await
        }
    }

    /// History of `channel` (see [`super::history::fetch`]), within `--max-history-rate`.
    pub async fn history(
        &mut self,
        channel: &str,
        limit: Option<u64>,
        before: Option<&str>,
    ) -> Result<Page, ServiceError> {
        if self.history_limiter.check(std::time::Instant::now()) != limits::Verdict::Allow {
            let rate = self.app.config.max_history_rate;
            return Err(ServiceError::RateLimited(format!("more than {rate} history requests per second")));
        }
        super::history::fetch(&self.app, &self.identity, channel, limit, before).await
    }

    /// Tracks `state` as this connection's presence on `channel` (a subscribed one).
    pub async fn track(&mut self, channel: &str, state: Value) -> Result<(), ServiceError> {
        self.catch_up_revocations().await;
        let subscribed = self.channels.contains(channel);
        self.tracking.track(&self.app, &self.identity, subscribed, channel, state).await
    }

    /// Stops tracking `channel`.
    pub async fn untrack(&mut self, channel: &str) -> Result<(), ServiceError> {
        let subscribed = self.channels.contains(channel);
        self.tracking.untrack(&self.app, subscribed, channel).await
    }

    /// Swaps the token: on success `reply` is queued, then an `unsubscribed` item for every
    /// subscription the new identity may no longer hold. A token of another user also ends
    /// this connection's presence (it was the previous user's; track again). An invalid token
    /// changes nothing.
    pub async fn reauthenticate(
        &mut self,
        token: &str,
        reply: impl FnOnce() -> Outbound,
    ) -> Result<(), ServiceError> {
        if self.auth_limiter.check(std::time::Instant::now()) != limits::Verdict::Allow {
            let rate = self.app.config.max_auth_rate;
            return Err(ServiceError::RateLimited(format!("more than {rate} auth requests per second")));
        }
        self.catch_up_revocations().await;
        let app = self.app.clone();
        let before: Vec<String> = self.channels.iter().cloned().collect();
        let user_before = self.identity.user_id.clone();
        let revoked =
            super::auth::reauthenticate(&app, token, &mut self.identity, &mut self.channels, self.handle.id)
                .await?;
        if self.identity.user_id != user_before {
            // Presence is per user: what this connection tracked was the previous user's.
            self.tracking.close(&app).await;
        }
        for channel in before.iter().filter(|c| !self.channels.contains(*c)) {
            self.tracking.forget(&app, channel).await;
        }
        self.publish_checks.clear();
        self.handle.set_identity(Arc::new(self.identity.clone()));
        self.expires_at = expiry_instant(self.identity.exp);
        self.send(reply());
        revoked.into_iter().for_each(|item| {
            self.send(item);
        });
        Ok(())
    }

    /// The connection ended: leaves every channel and every presence.
    pub async fn close(mut self) {
        self.ended.cancel();
        for channel in self.channels.drain() {
            self.app.hub.unsubscribe(&channel, self.handle.id);
            self.app.hub.gated.unbind(&channel, self.handle.id);
        }
        let app = self.app.clone();
        self.tracking.close(&app).await;
    }
}

/// Catches up each subscription of the session that falls behind (see `crate::hub`), one task
/// per channel, until the session ends.
async fn catch_up_when_behind(app: Arc<App>, handle: SessionHandle, ended: CancellationToken) {
    loop {
        let channels = tokio::select! {
            _ = ended.cancelled() => return,
            c = handle.next_lagging() => c,
        };
        for channel in channels {
            let (app2, handle) = (app.clone(), handle.clone());
            app.tracker
                .spawn(async move { super::resume::catch_up_or_reset(&app2, &handle, &channel).await });
        }
    }
}

/// The instant a token with expiry `exp` (seconds since the epoch) runs out; None (never)
/// when it has no `exp` or one too far ahead to represent.
fn expiry_instant(exp: Option<u64>) -> Option<tokio::time::Instant> {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    exp.and_then(|exp| tokio::time::Instant::now().checked_add(Duration::from_secs(exp.saturating_sub(now))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_far_in_the_future_means_never_rather_than_a_panic() {
        assert_eq!(expiry_instant(None), None);
        assert_eq!(expiry_instant(Some(u64::MAX)), None);
        let soon = expiry_instant(Some(0)).unwrap();
        assert!(soon <= tokio::time::Instant::now());
    }
}
