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
mod tests;
