//! The hub: which sessions listen to which channel, and fan-out of committed and ephemeral
//! messages to them. No sockets here.
//!
//! Each session owns one bounded queue ([`SessionHandle`]). The hub only ever `try_send`s: a
//! full queue marks the session as too slow (it is then closed with 4009 by its own task) and
//! never delays delivery to anyone else. A message frame is encoded once and the same shared
//! bytes go to every subscriber.
//!
//! A resuming subscription starts *held* ([`Hub::subscribe_held`]): its live frames newer than
//! the position read at registration go to a bounded side buffer while the session replays the
//! missed messages from the table, then [`Hub::activate`] moves the buffer into the session
//! queue and switches it to direct delivery, atomically with respect to dispatch.
//!
//! The hub position is the cursor up to which everything has been dispatched. After a commit
//! it is [`Cursor::end_of_commit`] of that commit, so `history(before = position)` contains the
//! commit's last message and everything newer arrives live.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metrics::{since_pg_timestamp, Histogram};
use crate::pg::cursor::Cursor;
use crate::pg::replication::{CommitBatch, LogEvent};
use crate::protocol::server::{message, MessageFields, Sender};

pub mod presence;
mod presence_sync;
pub use presence_sync::PresenceHub;

/// An encoded text frame, cheap to clone (shared bytes).
pub type Frame = axum::extract::ws::Utf8Bytes;

/// The hub's end of one session: its bounded queue and its "too slow" signal.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub id: u64,
    tx: mpsc::Sender<Frame>,
    slow: CancellationToken,
}

impl SessionHandle {
    pub fn new(id: u64, tx: mpsc::Sender<Frame>, slow: CancellationToken) -> Self {
        Self { id, tx, slow }
    }

    /// Queues a frame without waiting. A full queue marks the session too slow; returns whether
    /// the frame was queued.
    pub fn send(&self, frame: Frame) -> bool {
        // Once a frame was dropped, nothing more may follow it: the client must see a clean
        // prefix of the stream and then its close (4009), never a gap followed by later frames.
        if self.slow.is_cancelled() {
            return false;
        }
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Free slots in the queue right now.
    pub fn room(&self) -> usize {
        self.tx.capacity()
    }

    /// The queue's size.
    pub fn queue_size(&self) -> usize {
        self.tx.max_capacity()
    }

    /// Marks the session too slow (it is then closed with 4009).
    pub fn mark_slow(&self) {
        self.slow.cancel();
    }

    /// True once the session was marked too slow or its queue closed.
    pub fn is_gone(&self) -> bool {
        self.slow.is_cancelled() || self.tx.is_closed()
    }
}

/// Live frames held back for a resuming subscription.
struct Held {
    session: SessionHandle,
    /// Stored messages at or below this cursor are already covered by the replay.
    floor: String,
    frames: Vec<Frame>,
    cap: usize,
    /// More than `cap` frames arrived: the buffer was dropped; the replay must go on from the
    /// table up to a newer position.
    overflowed: bool,
}

enum Sub {
    Live(SessionHandle),
    Held(Mutex<Held>),
}

/// What [`Hub::activate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    /// The held frames are queued and the subscription is live.
    Done,
    /// The side buffer overflowed: replay from the table up to this new position, then try again.
    /// (The subscription stays held, with an empty buffer above the new position.)
    Overflowed(Option<String>),
    /// The session queue has no room for the held frames yet; try again shortly.
    NoRoom,
    /// The subscription is gone (unsubscribed or the session ended).
    Gone,
}

#[derive(Default)]
struct State {
    channels: HashMap<String, HashMap<u64, Sub>>,
}

/// Counters the hub keeps for health and metrics.
#[derive(Default, Debug)]
pub struct HubStats {
    /// Frames queued to sessions by dispatch.
    pub delivered: AtomicU64,
    /// Of `delivered`, frames of ephemeral messages.
    pub delivered_ephemeral: AtomicU64,
    /// Commit-to-send latency: from the transaction's commit timestamp (pgoutput Commit, the
    /// primary's clock) to the moment its frame was queued to a subscriber's send queue (this
    /// host's clock), one observation per queued frame. Read once per message, after the frame
    /// went to every local subscriber. Messages without a commit timestamp (non-transactional
    /// logical messages) and held frames of resuming subscriptions are not observed.
    pub commit_to_send: Histogram,
    /// Frames not queued because the session's queue was full (or it was already too slow).
    pub dropped_slow: AtomicU64,
    /// Events dispatched (stored + ephemeral).
    pub messages: AtomicU64,
    /// Ephemeral events dispatched (the rest of `messages` were stored messages).
    pub ephemeral: AtomicU64,
    /// Sessions closed with 4009 because their queue overflowed (counted by the session).
    pub slow_closes: AtomicU64,
    /// Channels with at least one subscription (kept under the hub's write lock).
    pub channels: AtomicUsize,
    /// Subscriptions (channel × session), live or held.
    pub subscriptions: AtomicUsize,
}

/// Channel → subscribed sessions, plus the position (cursor) of the last dispatched message.
#[derive(Default)]
pub struct Hub {
    state: RwLock<State>,
    position: Mutex<Option<String>>,
    next_session: AtomicU64,
    pub stats: HubStats,
    /// Presence: the view of every channel's members and its synchronisation.
    pub presence: PresenceHub,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh session id.
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The cursor of the newest message this hub has dispatched (or the start position).
    pub fn position(&self) -> Option<String> {
        self.position.lock().expect("position lock").clone()
    }

    /// Raises the position to `cursor` if it is newer (cursors sort as strings).
    pub fn advance_position(&self, cursor: &str) {
        let mut p = self.position.lock().expect("position lock");
        if p.as_deref().is_none_or(|old| old < cursor) {
            *p = Some(cursor.to_string());
        }
    }

    /// Adds `session` to `channel`. `reply` builds the subscribe reply from the current
    /// position; it is queued before the subscription becomes visible to dispatch, so the reply
    /// always precedes the channel's first message. Returns false if the reply could not be
    /// queued (session gone or too slow), in which case nothing is registered.
    pub fn subscribe(
        &self,
        channel: &str,
        session: &SessionHandle,
        reply: impl FnOnce(Option<&str>) -> Frame,
    ) -> bool {
        let mut state = self.state.write().expect("hub lock");
        let position = self.position();
        if !session.send(reply(position.as_deref())) {
            return false;
        }
        self.insert(&mut state, channel, session.id, Sub::Live(session.clone()));
        true
    }

    /// Registers `sub` and keeps the channel and subscription gauges in step (write lock held).
    fn insert(&self, state: &mut State, channel: &str, id: u64, sub: Sub) {
        let subs = state.channels.entry(channel.to_string()).or_insert_with(|| {
            self.stats.channels.fetch_add(1, Ordering::Relaxed);
            HashMap::new()
        });
        if subs.insert(id, sub).is_none() {
            self.stats.subscriptions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Adds `session` to `channel` in the held state (see the module docs) and returns the
    /// position read under the same lock: every stored message above it will be held for the
    /// session (up to `cap` frames), every one at or below it is the replay's business. Also
    /// returns the channel's presence snapshot taken under that lock (later presence events are
    /// held too).
    pub fn subscribe_held(
        &self,
        channel: &str,
        session: &SessionHandle,
        cap: usize,
    ) -> (Option<String>, String) {
        let mut state = self.state.write().expect("hub lock");
        let position = self.position();
        let held = Held {
            session: session.clone(),
            floor: position.clone().unwrap_or_default(),
            frames: Vec::new(),
            cap,
            overflowed: false,
        };
        self.insert(&mut state, channel, session.id, Sub::Held(Mutex::new(held)));
        (position, self.presence.snapshot_json(channel))
    }

    /// Ends the held state of `session_id` on `channel`: queues the held frames (all newer than
    /// the replayed range) and switches to direct delivery, unless the buffer overflowed or the
    /// queue lacks room for it. See [`Activation`].
    pub fn activate(&self, channel: &str, session_id: u64) -> Activation {
        let mut state = self.state.write().expect("hub lock");
        let position = self.position();
        let Some(sub) = state.channels.get_mut(channel).and_then(|subs| subs.get_mut(&session_id)) else {
            return Activation::Gone;
        };
        let Sub::Held(held) = sub else { return Activation::Done };
        let held = held.get_mut().expect("held lock");
        if held.overflowed {
            held.overflowed = false;
            held.frames.clear();
            held.floor = position.clone().unwrap_or_default();
            return Activation::Overflowed(position);
        }
        if held.frames.len() > held.session.room() {
            return Activation::NoRoom;
        }
        for frame in held.frames.drain(..) {
            held.session.send(frame);
        }
        *sub = Sub::Live(held.session.clone());
        Activation::Done
    }

    /// Removes `session_id` from `channel`; returns whether it was subscribed.
    pub fn unsubscribe(&self, channel: &str, session_id: u64) -> bool {
        let mut state = self.state.write().expect("hub lock");
        let Some(subs) = state.channels.get_mut(channel) else { return false };
        let removed = subs.remove(&session_id).is_some();
        if removed {
            self.stats.subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        if subs.is_empty() {
            state.channels.remove(channel);
            self.stats.channels.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Number of sessions subscribed to `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.state.read().expect("hub lock").channels.get(channel).map_or(0, HashMap::len)
    }

    /// Delivers one committed batch, in order. Returns the number of frames queued.
    pub fn dispatch(&self, batch: &CommitBatch) -> usize {
        self.dispatch_counting(batch, &mut Vec::new())
    }

    /// [`Hub::dispatch`], also pushing `(message id, subscribers)` to `audience` for every stored
    /// message that had local subscribers (for `realtime.messages.ws_audience_count`).
    pub fn dispatch_counting(&self, batch: &CommitBatch, audience: &mut Vec<(String, u32)>) -> usize {
        let state = self.state.read().expect("hub lock");
        let mut queued = 0;
        let mut last_commit = None;
        for event in &batch.events {
            let (channel, fields) = match event {
                LogEvent::Presence(op) => {
                    queued += self.presence_op(&state, op);
                    continue;
                }
                LogEvent::Stored(m) => (
                    m.channel.as_str(),
                    MessageFields {
                        channel: &m.channel,
                        id: Some(&m.id),
                        cursor: None,
                        event: &m.event,
                        payload: &m.payload,
                        sender: Sender { kind: &m.sender_type, id: m.sender_id.as_deref() },
                        created_at: Some(&m.created_at),
                        replayed: false,
                    },
                ),
                LogEvent::Ephemeral(e) => (
                    e.channel.as_str(),
                    MessageFields {
                        channel: &e.channel,
                        id: None,
                        cursor: None,
                        event: &e.event,
                        payload: &e.payload,
                        sender: match &e.sender_id {
                            Some(id) => Sender { kind: "user", id: Some(id) },
                            None => Sender { kind: "system", id: None },
                        },
                        created_at: None,
                        replayed: false,
                    },
                ),
            };
            self.stats.messages.fetch_add(1, Ordering::Relaxed);
            let cursor = match event {
                LogEvent::Stored(m) => {
                    last_commit = Some(m.cursor.commit_lsn);
                    Some(m.cursor)
                }
                _ => {
                    self.stats.ephemeral.fetch_add(1, Ordering::Relaxed);
                    None
                }
            };
            if let Some(subs) = state.channels.get(channel) {
                if let (LogEvent::Stored(m), false) = (event, subs.is_empty()) {
                    audience.push((m.id.clone(), u32::try_from(subs.len()).unwrap_or(u32::MAX)));
                }
                let cursor = cursor.map(|c| c.to_string());
                let frame = Frame::from(message(&MessageFields { cursor: cursor.as_deref(), ..fields }));
                let mut sent = 0u64;
                for s in subs.values() {
                    match s {
                        Sub::Live(s) => {
                            if s.send(frame.clone()) {
                                sent += 1;
                            } else {
                                self.stats.dropped_slow.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Sub::Held(h) => hold(&mut h.lock().expect("held lock"), cursor.as_deref(), &frame),
                    }
                }
                if sent > 0 {
                    if let Some(latency) = since_pg_timestamp(batch.commit_time_micros) {
                        self.stats.commit_to_send.observe_n(latency, sent);
                    }
                    if cursor.is_none() {
                        self.stats.delivered_ephemeral.fetch_add(sent, Ordering::Relaxed);
                    }
                }
                queued += sent as usize;
            }
        }
        // One advance per batch: the end of the commit sorts after every cursor in it, and
        // subscribers only read the position under the write lock, never mid-batch.
        if let Some(lsn) = last_commit {
            self.advance_position(&Cursor::end_of_commit(lsn).to_string());
        }
        self.stats.delivered.fetch_add(queued as u64, Ordering::Relaxed);
        queued
    }
}

/// Keeps `frame` for a held subscription: stored messages at or below the floor are dropped
/// (the replay covers them); past the cap the buffer is given up (see [`Activation::Overflowed`]).
fn hold(held: &mut Held, cursor: Option<&str>, frame: &Frame) {
    if held.overflowed || cursor.is_some_and(|c| c <= held.floor.as_str()) {
        return;
    }
    if held.frames.len() >= held.cap {
        held.overflowed = true;
        held.frames = Vec::new();
        return;
    }
    held.frames.push(frame.clone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::replication::{Ephemeral, StoredMessage};

    fn session(hub: &Hub, cap: usize) -> (SessionHandle, mpsc::Receiver<Frame>, CancellationToken) {
        let (tx, rx) = mpsc::channel(cap);
        let slow = CancellationToken::new();
        (SessionHandle::new(hub.next_session_id(), tx, slow.clone()), rx, slow)
    }

    fn stored(channel: &str, lsn: u64, seq: i64) -> LogEvent {
        LogEvent::Stored(StoredMessage {
            id: format!("id-{seq}"),
            seq,
            channel: channel.into(),
            event: "e".into(),
            payload: format!(r#"{{"n":{seq}}}"#),
            sender_type: "system".into(),
            sender_id: None,
            created_at: "2026-11-23T10:00:00Z".into(),
            cursor: Cursor { commit_lsn: lsn, seq },
            wh_audience: 0,
        })
    }

    fn batch(events: Vec<LogEvent>) -> CommitBatch {
        CommitBatch { commit_lsn: 1, events, commit_time_micros: 0 }
    }

    fn json(f: &Frame) -> serde_json::Value {
        serde_json::from_str(f.as_str()).unwrap()
    }

    #[test]
    fn subscribe_reply_is_queued_before_messages_and_carries_position() {
        let hub = Hub::new();
        hub.dispatch(&batch(vec![stored("other", 5, 1)]));
        let (s, mut rx, _) = session(&hub, 8);
        assert!(hub.subscribe("c", &s, |pos| Frame::from(format!("reply {}", pos.unwrap()))));
        hub.dispatch(&batch(vec![stored("c", 9, 2)]));
        assert_eq!(rx.try_recv().unwrap().as_str(), format!("reply {}", Cursor::end_of_commit(5)));
        let m = json(&rx.try_recv().unwrap());
        assert_eq!(m["channel"], "c");
        assert_eq!(m["cursor"], Cursor { commit_lsn: 9, seq: 2 }.to_string());
        assert_eq!(m["payload"], serde_json::json!({"n": 2}));
    }

    #[test]
    fn one_encoded_frame_is_shared_by_all_subscribers() {
        let hub = Hub::new();
        let (a, mut ra, _) = session(&hub, 8);
        let (b, mut rb, _) = session(&hub, 8);
        hub.subscribe("c", &a, |_| Frame::from("r"));
        hub.subscribe("c", &b, |_| Frame::from("r"));
        ra.try_recv().unwrap();
        rb.try_recv().unwrap();
        assert_eq!(hub.dispatch(&batch(vec![stored("c", 2, 1)])), 2);
        let (fa, fb) = (ra.try_recv().unwrap(), rb.try_recv().unwrap());
        assert_eq!(fa.as_str().as_ptr(), fb.as_str().as_ptr(), "frames share one buffer");
    }

    #[test]
    fn dispatch_counting_reports_subscribers_of_stored_messages_only() {
        let hub = Hub::new();
        let (a, _ra, _) = session(&hub, 8);
        let (b, _rb, _) = session(&hub, 8);
        hub.subscribe("c", &a, |_| Frame::from("r"));
        hub.subscribe("c", &b, |_| Frame::from("r"));
        let eph = LogEvent::Ephemeral(Ephemeral {
            channel: "c".into(),
            event: "e".into(),
            payload: "{}".into(),
            sender_id: None,
        });
        let mut counts = Vec::new();
        hub.dispatch_counting(&batch(vec![stored("c", 2, 1), stored("nobody", 2, 2), eph]), &mut counts);
        assert_eq!(counts, vec![("id-1".to_string(), 2)]);
    }

    #[test]
    fn full_queue_marks_only_that_session_slow() {
        let hub = Hub::new();
        let (slow_s, _slow_rx, slow_flag) = session(&hub, 1);
        let (ok_s, mut ok_rx, ok_flag) = session(&hub, 16);
        hub.subscribe("c", &slow_s, |_| Frame::from("r"));
        hub.subscribe("c", &ok_s, |_| Frame::from("r"));
        hub.dispatch(&batch(vec![stored("c", 2, 1), stored("c", 2, 2), stored("c", 2, 3)]));
        assert!(slow_flag.is_cancelled());
        assert!(!ok_flag.is_cancelled());
        assert!(!slow_s.send(Frame::from("later")), "nothing is queued after a drop");
        assert_eq!(ok_rx.try_recv().unwrap().as_str(), "r");
        for seq in 1..=3 {
            assert_eq!(json(&ok_rx.try_recv().unwrap())["payload"]["n"], seq);
        }
        assert_eq!(hub.stats.dropped_slow.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn unsubscribed_session_receives_nothing_more() {
        let hub = Hub::new();
        let (s, mut rx, _) = session(&hub, 8);
        hub.subscribe("c", &s, |_| Frame::from("r"));
        assert_eq!(hub.stats.channels.load(Ordering::Relaxed), 1);
        assert_eq!(hub.stats.subscriptions.load(Ordering::Relaxed), 1);
        assert!(hub.unsubscribe("c", s.id));
        assert!(!hub.unsubscribe("c", s.id));
        assert_eq!(hub.subscriber_count("c"), 0);
        assert_eq!(hub.stats.channels.load(Ordering::Relaxed), 0, "empty channels are not counted");
        assert_eq!(hub.stats.subscriptions.load(Ordering::Relaxed), 0);
        hub.dispatch(&batch(vec![stored("c", 2, 1)]));
        assert_eq!(rx.try_recv().unwrap().as_str(), "r");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn ephemeral_messages_have_no_cursor_and_do_not_move_position() {
        let hub = Hub::new();
        let (s, mut rx, _) = session(&hub, 8);
        hub.subscribe("c", &s, |_| Frame::from("r"));
        rx.try_recv().unwrap();
        let e = LogEvent::Ephemeral(Ephemeral {
            channel: "c".into(),
            event: "typing".into(),
            payload: "{}".into(),
            sender_id: None,
        });
        hub.dispatch(&batch(vec![e]));
        let m = json(&rx.try_recv().unwrap());
        assert_eq!(m["event"], "typing");
        assert!(m.get("cursor").is_none());
        assert_eq!(hub.position(), None);
    }

    #[test]
    fn commit_to_send_latency_is_observed_once_per_queued_frame() {
        let hub = Hub::new();
        let (a, _ra, _) = session(&hub, 8);
        let (b, _rb, _) = session(&hub, 8);
        hub.subscribe("c", &a, |_| Frame::from("r"));
        hub.subscribe("c", &b, |_| Frame::from("r"));
        let mut timed = batch(vec![stored("c", 2, 1), stored("nobody", 2, 2)]);
        // committed "now" by the Postgres epoch (2000-01-01), give or take the test's own run time
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        timed.commit_time_micros = unix.as_micros() as i64 - 946_684_800_000_000;
        hub.dispatch(&timed);
        hub.dispatch(&batch(vec![stored("c", 3, 3)])); // no commit time: not observed
        let s = hub.stats.commit_to_send.snapshot();
        assert_eq!(s.count(), 2, "two subscribers got the one timed frame");
        assert_eq!(hub.stats.delivered.load(Ordering::Relaxed), 4);
        assert_eq!(hub.stats.delivered_ephemeral.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn position_never_moves_backwards() {
        let hub = Hub::new();
        hub.advance_position("0000000000000002");
        hub.advance_position("0000000000000001");
        assert_eq!(hub.position().as_deref(), Some("0000000000000002"));
    }

    #[test]
    fn position_after_a_commit_covers_all_of_it() {
        let hub = Hub::new();
        hub.dispatch(&batch(vec![stored("c", 7, 3), stored("c", 7, 4)]));
        let p = hub.position().unwrap();
        assert_eq!(p, Cursor::end_of_commit(7).to_string());
        assert!(Cursor::new(7, 4).to_string() < p && p < Cursor::new(8, 1).to_string());
    }

    #[test]
    fn held_subscription_keeps_newer_frames_until_activated() {
        let hub = Hub::new();
        hub.dispatch(&batch(vec![stored("c", 5, 1)]));
        let (s, mut rx, _) = session(&hub, 8);
        let (p, _) = hub.subscribe_held("c", &s, 4);
        assert_eq!(p, Some(Cursor::end_of_commit(5).to_string()));
        hub.dispatch(&batch(vec![stored("c", 9, 2)]));
        let e = LogEvent::Ephemeral(Ephemeral {
            channel: "c".into(),
            event: "typing".into(),
            payload: "{}".into(),
            sender_id: None,
        });
        hub.dispatch(&batch(vec![e]));
        assert!(rx.try_recv().is_err(), "nothing reaches the queue while held");
        s.send(Frame::from("replayed"));
        assert_eq!(hub.activate("c", s.id), Activation::Done);
        hub.dispatch(&batch(vec![stored("c", 11, 3)]));
        assert_eq!(rx.try_recv().unwrap().as_str(), "replayed");
        assert_eq!(json(&rx.try_recv().unwrap())["payload"]["n"], 2);
        assert_eq!(json(&rx.try_recv().unwrap())["event"], "typing");
        assert_eq!(json(&rx.try_recv().unwrap())["payload"]["n"], 3);
        assert!(rx.try_recv().is_err());
        assert_eq!(hub.activate("c", s.id), Activation::Done, "activating a live subscription is a no-op");
    }

    #[test]
    fn held_subscription_drops_frames_at_or_below_its_floor() {
        let hub = Hub::new();
        hub.advance_position(&Cursor::new(10, 5).to_string());
        let (s, mut rx, _) = session(&hub, 8);
        hub.subscribe_held("c", &s, 4);
        // a late commit below the floor (possible only with an out-of-band position)
        hub.dispatch(&batch(vec![stored("c", 10, 5), stored("c", 10, 6)]));
        assert_eq!(hub.activate("c", s.id), Activation::Done);
        assert_eq!(json(&rx.try_recv().unwrap())["payload"]["n"], 6);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn held_overflow_asks_for_more_replay_from_a_new_position() {
        let hub = Hub::new();
        let (s, mut rx, slow) = session(&hub, 8);
        hub.subscribe_held("c", &s, 2);
        hub.dispatch(&batch(vec![stored("c", 2, 1), stored("c", 2, 2), stored("c", 2, 3)]));
        let p2 = Cursor::end_of_commit(2).to_string();
        assert_eq!(hub.activate("c", s.id), Activation::Overflowed(Some(p2)));
        hub.dispatch(&batch(vec![stored("c", 3, 4)]));
        assert_eq!(hub.activate("c", s.id), Activation::Done);
        assert_eq!(json(&rx.try_recv().unwrap())["payload"]["n"], 4);
        assert!(!slow.is_cancelled());
    }

    #[test]
    fn held_frames_wait_for_room_in_the_queue() {
        let hub = Hub::new();
        let (s, mut rx, _) = session(&hub, 2);
        hub.subscribe_held("c", &s, 8);
        hub.dispatch(&batch(vec![stored("c", 2, 1), stored("c", 2, 2)]));
        s.send(Frame::from("replayed"));
        assert_eq!(hub.activate("c", s.id), Activation::NoRoom);
        rx.try_recv().unwrap();
        assert_eq!(hub.activate("c", s.id), Activation::Done);
        assert_eq!(hub.activate("other", s.id), Activation::Gone);
        assert!(hub.unsubscribe("c", s.id));
        assert_eq!(hub.activate("c", s.id), Activation::Gone);
    }
}
