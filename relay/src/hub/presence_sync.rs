//! Presence inside the hub: the shared [`View`], its start-up synchronisation, and fan-out of
//! presence events to the channel's subscribers (one encoded frame per event, shared).
//!
//! ## Start-up: table snapshot plus stream, nothing lost, nothing stale
//!
//! A relay's replication slot may replay old `realtime:presence` ops, and ops committed while
//! it reads the table also arrive through the stream. So a relay builds its view like this:
//!
//! 1. [`Hub::presence_expect_sync`] arms a nonce; until then ops from the stream are dropped.
//! 2. The relay emits a *non-transactional* `sync` op carrying the nonce. Non-transactional
//!    logical messages are decoded at their own WAL position, so every op committed before it
//!    comes before it in the stream, every op committed after it comes after it.
//! 3. When dispatch meets that marker, ops start being buffered (phase `Buffering`) and the
//!    waiting presence task reads `realtime.presence` (a snapshot taken after the marker was
//!    written, so it contains every op before the marker).
//! 4. [`Hub::presence_load`] applies the rows, then the buffered ops, in order, under the hub's
//!    write lock. An op that the table already reflected is applied again harmlessly: ops
//!    carry whole entries (idempotent), and applying the buffer in commit order leaves every
//!    entry as its last op left it. From then on ops are applied as they arrive.
//!
//! Subscribers that arrived before the view was loaded got an empty snapshot; loading emits
//! `join`s to them like any other change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::presence::{Member, PresenceEvent, PresenceOp, Tracked, View};
use super::{hold, Frame, Hub, State, Sub};
use crate::protocol::presence as frames;

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

/// The hub's presence state.
#[derive(Debug)]
pub struct PresenceHub {
    inner: Mutex<Inner>,
    /// Signalled when the armed marker was seen.
    pub marker_seen: tokio::sync::Notify,
    /// Presence frames queued to sessions.
    pub frames_sent: AtomicU64,
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
            frames_sent: AtomicU64::new(0),
        }
    }
}

impl PresenceHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("presence lock")
    }

    /// `{"members":[..]}` of `channel` now.
    pub fn snapshot_json(&self, channel: &str) -> String {
        frames::snapshot_json(&self.lock().view.members(channel))
    }

    /// The members of `channel` now.
    pub fn members(&self, channel: &str) -> Vec<Member> {
        self.lock().view.members(channel)
    }

    /// (members of `channel`, whether `presence_id` is one of them).
    pub fn occupancy(&self, channel: &str, presence_id: &str) -> (usize, bool) {
        let inner = self.lock();
        (inner.view.member_count(channel), inner.view.is_member(channel, presence_id))
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

impl Hub {
    /// Arms the start-up marker `nonce` of `relay` (step 1 of the module docs).
    pub fn presence_expect_sync(&self, relay: &str, nonce: &str) {
        let mut inner = self.presence.lock();
        if !matches!(inner.phase, Phase::Ready) {
            inner.phase = Phase::Waiting { relay: relay.to_string(), nonce: Some(nonce.to_string()) };
        }
    }

    /// Whether the armed marker has been seen (ops are being buffered, or the view is live).
    pub fn presence_marker_reached(&self) -> bool {
        !matches!(self.presence.lock().phase, Phase::Waiting { .. })
    }

    /// Loads the table snapshot `rows` plus the buffered ops (step 4); returns false when the
    /// marker was not reached (or the buffer overflowed), in which case nothing changed.
    pub fn presence_load(&self, rows: Vec<Tracked>) -> bool {
        let state = self.state.write().expect("hub lock");
        let mut guard = self.presence.lock();
        let inner = &mut *guard;
        let Phase::Buffering(ops) = std::mem::replace(&mut inner.phase, Phase::Ready) else {
            if !matches!(inner.phase, Phase::Ready) {
                inner.phase = Phase::Waiting { relay: String::new(), nonce: None };
            }
            return false;
        };
        let mut events = Vec::new();
        for row in rows {
            events.extend(inner.view.track(row));
        }
        for op in ops {
            events.extend(inner.view.apply(op));
        }
        drop(guard);
        self.send_presence(&state, events);
        true
    }

    /// Dispatch of one op from the stream (hub read lock held by the caller).
    pub(super) fn presence_op(&self, state: &State, op: &PresenceOp) -> usize {
        let mut guard = self.presence.lock();
        let inner = &mut *guard;
        let events = match &mut inner.phase {
            Phase::Ready => inner.view.apply(op.clone()),
            Phase::Buffering(ops) => {
                ops.push(op.clone());
                if ops.len() > MAX_BUFFERED {
                    tracing::warn!("presence: too many ops while loading the view; starting over");
                    inner.phase = Phase::Waiting { relay: String::new(), nonce: None };
                }
                return 0;
            }
            Phase::Waiting { relay, nonce } => {
                if let PresenceOp::Sync { relay: r, nonce: n } = op {
                    if r == relay && Some(n) == nonce.as_ref() {
                        inner.phase = Phase::Buffering(Vec::new());
                        self.presence.marker_seen.notify_waiters();
                    }
                }
                return 0;
            }
        };
        drop(guard);
        self.send_presence(state, events)
    }

    /// Encodes each event once and queues it to the channel's subscribers.
    fn send_presence(&self, state: &State, events: Vec<PresenceEvent>) -> usize {
        let mut queued = 0;
        for e in events {
            let Some(subs) = state.channels.get(&e.channel) else { continue };
            let frame = Frame::from(frames::event(&e.channel, e.kind, &e.member));
            for s in subs.values() {
                match s {
                    Sub::Live(s) => {
                        if s.send(frame.clone()) {
                            queued += 1;
                        } else {
                            self.stats.dropped_slow.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Sub::Held(h) => hold(&mut h.lock().expect("held lock"), None, &frame),
                }
            }
        }
        self.presence.frames_sent.fetch_add(queued as u64, Ordering::Relaxed);
        queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::SessionHandle;
    use crate::pg::replication::{CommitBatch, LogEvent};
    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

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
        hub.dispatch(&CommitBatch {
            commit_lsn: 1,
            events: vec![LogEvent::Presence(op)],
            commit_time_micros: 0,
        });
    }

    fn json(f: &Frame) -> serde_json::Value {
        serde_json::from_str(f.as_str()).unwrap()
    }

    #[test]
    fn ops_before_the_marker_are_dropped_and_buffered_ones_apply_after_the_snapshot() {
        let hub = Hub::new();
        op(&hub, PresenceOp::Track(t("k0", "stale", "{}"))); // before arming: dropped
        hub.presence_expect_sync("me", "n1");
        op(&hub, PresenceOp::Track(t("k1", "old", "{}"))); // before the marker: dropped
        op(&hub, PresenceOp::Sync { relay: "me".into(), nonce: "other".into() });
        assert!(!hub.presence_marker_reached(), "another nonce is not our marker");
        op(&hub, PresenceOp::Sync { relay: "me".into(), nonce: "n1".into() });
        assert!(hub.presence_marker_reached());
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
    fn snapshot_and_events_fit_exactly_and_frames_are_shared() {
        let hub = Hub::new();
        hub.presence_expect_sync("me", "n");
        op(&hub, PresenceOp::Sync { relay: "me".into(), nonce: "n".into() });
        hub.presence_load(vec![t("k1", "alice", "{}")]);
        let (tx, mut rx) = mpsc::channel(8);
        let s = SessionHandle::new(hub.next_session_id(), tx, CancellationToken::new());
        let (tx2, mut rx2) = mpsc::channel(8);
        let s2 = SessionHandle::new(hub.next_session_id(), tx2, CancellationToken::new());
        hub.subscribe("c", &s, |_| Frame::from(hub.presence.snapshot_json("c")));
        hub.subscribe("c", &s2, |_| Frame::from("r"));
        let snap = json(&rx.try_recv().unwrap());
        assert_eq!(snap["members"][0]["presence_id"], "alice");
        rx2.try_recv().unwrap();
        op(&hub, PresenceOp::Track(t("k2", "bob", "{}")));
        let (a, b) = (rx.try_recv().unwrap(), rx2.try_recv().unwrap());
        assert_eq!(json(&a)["event"], "join");
        assert_eq!(json(&a)["member"]["presence_id"], "bob");
        assert_eq!(a.as_str().as_ptr(), b.as_str().as_ptr(), "one encoded frame for all");
        op(&hub, PresenceOp::Reap { relay: "r".into() });
        assert_eq!(json(&rx.try_recv().unwrap())["event"], "leave");
        assert_eq!(json(&rx.try_recv().unwrap())["event"], "leave");
        assert!(rx.try_recv().is_err());
        assert_eq!(hub.presence.frames_sent.load(Ordering::Relaxed), 6);
        assert_eq!(hub.presence.total_members(), 0);
    }

    #[test]
    fn subscribers_before_the_load_receive_the_members_as_joins() {
        let hub = Hub::new();
        let (tx, mut rx) = mpsc::channel(8);
        let s = SessionHandle::new(hub.next_session_id(), tx, CancellationToken::new());
        hub.subscribe("c", &s, |_| Frame::from(hub.presence.snapshot_json("c")));
        assert_eq!(json(&rx.try_recv().unwrap())["members"], serde_json::json!([]));
        hub.presence_expect_sync("me", "n");
        op(&hub, PresenceOp::Sync { relay: "me".into(), nonce: "n".into() });
        hub.presence_load(vec![t("k1", "alice", "{}")]);
        let join = json(&rx.try_recv().unwrap());
        assert_eq!(
            (join["event"].as_str(), join["member"]["presence_id"].as_str()),
            (Some("join"), Some("alice"))
        );
    }
}
