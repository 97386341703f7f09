//! Presence inside the hub: the shared [`View`], its start-up synchronisation, and fan-out of
//! presence events to the channel's subscribers (one shared event each, encoded once per
//! protocol like messages).
//!
//! ## Start-up: table snapshot plus stream, nothing lost, nothing stale
//!
//! A relay's replication slot may replay old `realtime:presence` ops, and ops committed while
//! it reads the table also arrive through the stream. So a relay builds its view like this:
//!
//! 1. [`PresenceHub::expect_sync`] arms a nonce; until then ops from the stream are dropped.
//! 2. The relay emits a *non-transactional* `sync` op carrying the nonce. Non-transactional
//!    logical messages are decoded at their own WAL position, so every op committed before it
//!    comes before it in the stream, every op committed after it comes after it.
//! 3. When dispatch meets that marker, ops start being buffered (phase `Buffering`) and the
//!    waiting presence task reads `realtime.presence` (a snapshot taken after the marker was
//!    written, so it contains every op before the marker).
//! 4. `Hub::presence_load` applies the rows, then the buffered ops, in order, under the hub's
//!    write lock. An op that the table already reflected is applied again harmlessly: ops
//!    carry whole entries (idempotent), and applying the buffer in commit order leaves every
//!    entry as its last op left it. From then on ops are applied as they arrive.
//!
//! Subscribers that arrived before the view was loaded got an empty snapshot; loading emits
//! `join`s to them like any other change.

use std::sync::Mutex;

use super::presence::View;
use crate::core::presence::{Member, PresenceEvent, PresenceOp, Tracked};

/// Ops buffered while the table snapshot is read; more restarts the synchronisation.
const MAX_BUFFERED: usize = 200_000;

#[derive(Debug)]
enum Phase {
    /// Not synchronised; ops are dropped. `Some(nonce)`: waiting for that marker.
    Waiting { relay: String, nonce: Option<String> },
    /// Marker seen; ops wait here for the snapshot.
    Buffering(Vec<PresenceOp>),
    /// Live.
    Ready,
}

/// How full a channel's presence is, for one would-be member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occupancy {
    pub members: usize,
    /// Members tracked without a user id.
    pub anonymous: usize,
    /// Whether the asking member is already one of them.
    pub is_member: bool,
}

/// The hub's presence state.
#[derive(Debug)]
pub struct PresenceHub {
    inner: Mutex<Inner>,
    /// Signalled when the armed marker was seen.
    pub marker_seen: tokio::sync::Notify,
}

#[derive(Debug)]
struct Inner {
    view: View,
    phase: Phase,
}

impl Default for PresenceHub {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                view: View::new(),
                phase: Phase::Waiting { relay: String::new(), nonce: None },
            }),
            marker_seen: tokio::sync::Notify::new(),
        }
    }
}

impl PresenceHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("presence lock")
    }

    /// The members of `channel` now.
    pub fn members(&self, channel: &str) -> Vec<Member> {
        self.lock().view.members(channel)
    }

    /// How full `channel` is, and whether `presence_id` is already a member.
    pub fn occupancy(&self, channel: &str, presence_id: &str) -> Occupancy {
        let inner = self.lock();
        Occupancy {
            members: inner.view.member_count(channel),
            anonymous: inner.view.anonymous_count(channel),
            is_member: inner.view.is_member(channel, presence_id),
        }
    }

    /// Members over all channels.
    pub fn total_members(&self) -> usize {
        self.lock().view.total_members()
    }

    /// Whether the view has been loaded.
    pub fn is_ready(&self) -> bool {
        matches!(self.lock().phase, Phase::Ready)
    }
}

impl PresenceHub {
    /// Arms the start-up marker `nonce` of `relay` (step 1 of the module docs).
    pub fn expect_sync(&self, relay: &str, nonce: &str) {
        let mut inner = self.lock();
        if !matches!(inner.phase, Phase::Ready) {
            inner.phase = Phase::Waiting { relay: relay.to_string(), nonce: Some(nonce.to_string()) };
        }
    }

    /// Whether the armed marker has been seen (ops are being buffered, or the view is live).
    pub fn marker_reached(&self) -> bool {
        !matches!(self.lock().phase, Phase::Waiting { .. })
    }

    /// Loads the table snapshot `rows` plus the buffered ops (step 4) and returns the events
    /// they cause; None when the marker was not reached (or the buffer overflowed), in which
    /// case nothing changed. The caller holds the hub's write lock.
    pub(super) fn load(&self, rows: Vec<Tracked>) -> Option<Vec<PresenceEvent>> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Phase::Buffering(ops) = std::mem::replace(&mut inner.phase, Phase::Ready) else {
            if !matches!(inner.phase, Phase::Ready) {
                inner.phase = Phase::Waiting { relay: String::new(), nonce: None };
            }
            return None;
        };
        let mut events = Vec::new();
        for row in rows {
            events.extend(inner.view.track(row));
        }
        for op in ops {
            events.extend(inner.view.apply(op));
        }
        Some(events)
    }

    /// One op from the stream: the events it causes now (none while the view is not loaded).
    /// The caller holds the hub's read lock.
    pub(super) fn apply(&self, op: &PresenceOp) -> Vec<PresenceEvent> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        match &mut inner.phase {
            Phase::Ready => inner.view.apply(op.clone()),
            Phase::Buffering(ops) => {
                ops.push(op.clone());
                if ops.len() > MAX_BUFFERED {
                    tracing::warn!("presence: too many ops while loading the view; starting over");
                    inner.phase = Phase::Waiting { relay: String::new(), nonce: None };
                }
                Vec::new()
            }
            Phase::Waiting { relay, nonce } => {
                if let PresenceOp::Sync { relay: r, nonce: n } = op {
                    if r == relay && Some(n) == nonce.as_ref() {
                        inner.phase = Phase::Buffering(Vec::new());
                        self.marker_seen.notify_waiters();
                    }
                }
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{CommitBatch, Event, LogEvent};
    use crate::core::presence::EventKind;
    use crate::hub::tests::{event, hub, reply, session};
    use crate::hub::Hub;
    use crate::hub::Outbound;

    fn t(conn: &str, pid: &str, state: &str) -> Tracked {
        Tracked {
            channel: "c".into(),
            conn: conn.into(),
            relay: "r".into(),
            presence_id: pid.into(),
            user_id: None,
            state: state.into(),
        }
    }

    fn op(hub: &Hub, op: PresenceOp) {
        let batch =
            CommitBatch { commit_lsn: 1, events: vec![LogEvent::Presence(op)], commit_time_micros: 0 };
        hub.dispatch(batch, &mut Vec::new());
    }

    fn presence(o: Outbound) -> PresenceEvent {
        match &event(o).event {
            Event::Presence(p) => p.clone(),
            other => panic!("not presence: {other:?}"),
        }
    }

    #[test]
    fn ops_before_the_marker_are_dropped_and_buffered_ones_apply_after_the_snapshot() {
        let hub = hub();
        op(&hub, PresenceOp::Track(t("k0", "stale", "{}"))); // before arming: dropped
        hub.presence.expect_sync("me", "n1");
        op(&hub, PresenceOp::Track(t("k1", "old", "{}"))); // before the marker: dropped
        op(&hub, PresenceOp::Sync { relay: "me".into(), nonce: "other".into() });
        assert!(!hub.presence.marker_reached(), "another nonce is not our marker");
        op(&hub, PresenceOp::Sync { relay: "me".into(), nonce: "n1".into() });
        assert!(hub.presence.marker_reached());
        // committed after the marker: buffered, and (maybe) also in the snapshot
        op(&hub, PresenceOp::Track(t("k2", "bob", r#"{"v":2}"#)));
        op(&hub, PresenceOp::Untrack { conn: "k1".into(), channels: vec!["c".into()] });
        assert!(!hub.presence.is_ready());
        // the snapshot read after the marker: k1 (not yet untracked when read) and k2
        assert!(hub.presence_load(vec![t("k1", "old", "{}"), t("k2", "bob", r#"{"v":2}"#)]));
        assert!(hub.presence.is_ready());
        let members = hub.presence.members("c");
        assert_eq!(members.len(), 1, "{members:?}");
        assert_eq!((members[0].presence_id.as_str(), members[0].state.as_str()), ("bob", r#"{"v":2}"#));
        assert!(!hub.presence_load(vec![]), "loading twice does nothing");
    }

    #[test]
    fn snapshot_and_events_fit_exactly_and_events_are_shared() {
        let hub = hub();
        hub.presence.expect_sync("me", "n");
        op(&hub, PresenceOp::Sync { relay: "me".into(), nonce: "n".into() });
        hub.presence_load(vec![t("k1", "alice", "{}")]);
        let (s, mut rx, _) = session(&hub, 1 << 20);
        let (s2, mut rx2, _) = session(&hub, 1 << 20);
        let mut joined = None;
        hub.subscribe("c", &s, |j| {
            joined = Some(j.clone());
            reply(j)
        });
        hub.subscribe("c", &s2, reply);
        assert_eq!(joined.unwrap().members[0].presence_id, "alice");
        rx.try_recv().unwrap();
        rx2.try_recv().unwrap();
        op(&hub, PresenceOp::Track(t("k2", "bob", "{}")));
        let (a, b) = (rx.try_recv().unwrap(), rx2.try_recv().unwrap());
        let (ea, eb) = (event(a.clone()), event(b));
        assert!(std::sync::Arc::ptr_eq(&ea, &eb), "one event for all");
        let join = presence(a);
        assert_eq!((join.kind, join.member.presence_id.as_str()), (EventKind::Join, "bob"));
        op(&hub, PresenceOp::Reap { relay: "r".into() });
        assert_eq!(presence(rx.try_recv().unwrap()).kind, EventKind::Leave);
        assert_eq!(presence(rx.try_recv().unwrap()).kind, EventKind::Leave);
        assert!(rx.try_recv().is_none());
        assert_eq!(hub.metrics.presence_frames.get(), 6);
        assert_eq!(hub.presence.total_members(), 0);
    }

    #[test]
    fn subscribers_before_the_load_receive_the_members_as_joins() {
        let hub = hub();
        let (s, mut rx, _) = session(&hub, 1 << 20);
        let mut members = None;
        hub.subscribe("c", &s, |j| {
            members = Some(j.members.clone());
            reply(j)
        });
        assert_eq!(members, Some(vec![]));
        rx.try_recv().unwrap();
        hub.presence.expect_sync("me", "n");
        op(&hub, PresenceOp::Sync { relay: "me".into(), nonce: "n".into() });
        hub.presence_load(vec![t("k1", "alice", "{}")]);
        let join = presence(rx.try_recv().unwrap());
        assert_eq!((join.kind, join.member.presence_id.as_str()), (EventKind::Join, "alice"));
    }
}
