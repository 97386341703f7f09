//! The hub: which sessions listen to which channel, and fan-out of committed and ephemeral
//! events to them. No sockets, no Postgres, no wire format here.
//!
//! Each session owns one bounded queue ([`SessionHandle`]). The hub only ever `try_send`s: a
//! full queue marks the session as too slow (it is then closed with 4009 by its own task) and
//! never delays delivery to anyone else. Each event is wrapped once in a
//! [`crate::core::event::Shared`] and the same `Arc` goes to every subscriber; each session
//! encodes it with its protocol, and the encoding is cached in the event, once per protocol.
//!
//! A resuming subscription starts *held* ([`Hub::subscribe_held`]): its live events newer than
//! the position read at registration go to a bounded side buffer while the session replays the
//! missed messages from the table, then [`Hub::activate`] moves the buffer into the session
//! queue and switches it to direct delivery, atomically with respect to dispatch.
//!
//! The hub position is the cursor up to which everything has been dispatched. After a commit
//! it is [`Cursor::end_of_commit`] of that commit, so `history(before = position)` contains the
//! commit's last message and everything newer arrives live.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use crate::core::event::{CommitBatch, Event, LogEvent, Message, Shared, SharedEvent};
use crate::core::presence::Member;
use crate::core::Cursor;
use crate::metrics::{since_pg_timestamp, HubMetrics};

pub mod acks;
pub mod presence;
mod presence_sync;
mod queue;

pub use presence_sync::PresenceHub;
pub use queue::{Outbound, SessionHandle};

/// Live events held back for a resuming subscription.
struct Held {
    session: SessionHandle,
    /// Stored messages at or below this cursor are already covered by the replay.
    floor: Cursor,
    events: Vec<SharedEvent>,
    cap: usize,
    /// More than `cap` events arrived: the buffer was dropped; the replay must go on from the
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
    /// The held events are queued and the subscription is live.
    Done,
    /// The side buffer overflowed: replay from the table up to this new position, then try again.
    /// (The subscription stays held, with an empty buffer above the new position.)
    Overflowed(Option<Cursor>),
    /// The session queue has no room for the held events yet; try again shortly.
    NoRoom,
    /// The subscription is gone (unsubscribed or the session ended).
    Gone,
}

/// The state a subscribe reply describes, read under the hub lock at registration: the
/// position and the channel's presence members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub position: Option<Cursor>,
    pub members: Vec<Member>,
}

#[derive(Default)]
struct State {
    channels: HashMap<String, HashMap<u64, Sub>>,
}

/// Channel → subscribed sessions, plus the position (cursor) of the last dispatched message.
pub struct Hub {
    state: RwLock<State>,
    position: Mutex<Option<Cursor>>,
    next_session: AtomicU64,
    pub metrics: HubMetrics,
    /// Presence: the view of every channel's members and its synchronisation.
    pub presence: PresenceHub,
}

impl Hub {
    pub fn new(metrics: HubMetrics) -> Self {
        Self {
            state: RwLock::default(),
            position: Mutex::default(),
            next_session: AtomicU64::new(0),
            metrics,
            presence: PresenceHub::default(),
        }
    }

    /// A fresh session id.
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The cursor of the newest message this hub has dispatched (or the start position).
    pub fn position(&self) -> Option<Cursor> {
        *self.position.lock().expect("position lock")
    }

    /// Raises the position to `cursor` if it is newer.
    pub fn advance_position(&self, cursor: Cursor) {
        let mut p = self.position.lock().expect("position lock");
        if p.is_none_or(|old| old < cursor) {
            *p = Some(cursor);
        }
    }

    /// Adds `session` to `channel`. `reply` builds the subscribe reply from the position and
    /// the channel's presence members; it is queued before the subscription becomes visible to
    /// dispatch, so the reply always precedes the channel's first event, and no presence event
    /// is missed or doubled after the members it lists. Returns false if the reply could not
    /// be queued (session gone or too slow), in which case nothing is registered.
    pub fn subscribe(
        &self,
        channel: &str,
        session: &SessionHandle,
        reply: impl FnOnce(Joined) -> Outbound,
    ) -> bool {
        let mut state = self.state.write().expect("hub lock");
        let joined = Joined { position: self.position(), members: self.presence.members(channel) };
        if !session.send(reply(joined)) {
            return false;
        }
        self.insert(&mut state, channel, session.id, Sub::Live(session.clone()));
        true
    }

    /// What a subscribe reply of `channel` would describe now (for a repeated subscribe).
    pub fn joined(&self, channel: &str) -> Joined {
        let _state = self.state.read().expect("hub lock");
        Joined { position: self.position(), members: self.presence.members(channel) }
    }

    /// Registers `sub` and keeps the channel and subscription gauges in step (write lock held).
    fn insert(&self, state: &mut State, channel: &str, id: u64, sub: Sub) {
        let subs = state.channels.entry(channel.to_string()).or_insert_with(|| {
            self.metrics.channels.inc();
            HashMap::new()
        });
        if subs.insert(id, sub).is_none() {
            self.metrics.subscriptions.inc();
        }
    }

    /// Adds `session` to `channel` in the held state (see the module docs) and returns what it
    /// joined, read under the same lock: every stored message above `position` will be held
    /// for the session (up to `cap` events), every one at or below it is the replay's
    /// business; presence events after `members` are held too.
    pub fn subscribe_held(&self, channel: &str, session: &SessionHandle, cap: usize) -> Joined {
        let mut state = self.state.write().expect("hub lock");
        let position = self.position();
        let held = Held {
            session: session.clone(),
            floor: position.unwrap_or(Cursor::MIN),
            events: Vec::new(),
            cap,
            overflowed: false,
        };
        self.insert(&mut state, channel, session.id, Sub::Held(Mutex::new(held)));
        Joined { position, members: self.presence.members(channel) }
    }

    /// Ends the held state of `session_id` on `channel`: queues the held events (all newer than
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
            held.events.clear();
            held.floor = position.unwrap_or(Cursor::MIN);
            return Activation::Overflowed(position);
        }
        if held.events.len() > held.session.room() {
            return Activation::NoRoom;
        }
        for event in held.events.drain(..) {
            held.session.send(Outbound::Event(event));
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
            self.metrics.subscriptions.dec();
        }
        if subs.is_empty() {
            state.channels.remove(channel);
            self.metrics.channels.dec();
        }
        removed
    }

    /// Number of sessions subscribed to `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.state.read().expect("hub lock").channels.get(channel).map_or(0, HashMap::len)
    }

    /// Delivers one committed batch, in order. Pushes `(message id, subscribers)` to `audience`
    /// for every stored message that had local subscribers (for
    /// `realtime.messages.ws_audience_count`). Returns the number of frames queued.
    pub fn dispatch(&self, batch: CommitBatch, audience: &mut Vec<(String, u32)>) -> usize {
        let state = self.state.read().expect("hub lock");
        let latency = since_pg_timestamp(batch.commit_time_micros).map(|d| d.as_secs_f64());
        let latencies = self.metrics.commit_to_send.local();
        let mut queued = 0;
        let mut last_commit = None;
        for event in batch.events {
            let (message, subs): (Message, _) = match event {
                LogEvent::Presence(op) => {
                    queued += self.presence_op(&state, &op);
                    continue;
                }
                LogEvent::Stored(m) => {
                    self.metrics.stored_dispatched.inc();
                    last_commit = Some(m.cursor.commit_lsn);
                    let Some(subs) = state.channels.get(&m.channel).filter(|s| !s.is_empty()) else {
                        continue;
                    };
                    audience.push((m.id.clone(), u32::try_from(subs.len()).unwrap_or(u32::MAX)));
                    (m.into(), subs)
                }
                LogEvent::Ephemeral(e) => {
                    self.metrics.ephemeral_dispatched.inc();
                    let Some(subs) = state.channels.get(&e.channel) else { continue };
                    (e.into(), subs)
                }
            };
            let stored = message.cursor.is_some();
            let shared = Shared::new(Event::Message(message), batch.commit_time_micros);
            let sent = self.deliver(subs, &shared);
            if sent > 0 {
                if let Some(secs) = latency {
                    (0..sent).for_each(|_| latencies.observe(secs));
                }
                let path = if stored {
                    &self.metrics.delivered_persisted
                } else {
                    &self.metrics.delivered_ephemeral
                };
                path.inc_by(sent as u64);
            }
            queued += sent;
        }
        latencies.flush();
        // One advance per batch: the end of the commit sorts after every cursor in it, and
        // subscribers only read the position under the write lock, never mid-batch.
        if let Some(lsn) = last_commit {
            self.advance_position(Cursor::end_of_commit(lsn));
        }
        self.metrics.frames_queued.inc_by(queued as u64);
        queued
    }

    /// Queues `event` to every live subscriber in `subs` and holds it for held ones. Returns
    /// how many live subscribers it was queued to.
    fn deliver(&self, subs: &HashMap<u64, Sub>, event: &SharedEvent) -> usize {
        let mut sent = 0;
        for s in subs.values() {
            match s {
                Sub::Live(s) => {
                    if s.send(Outbound::Event(event.clone())) {
                        sent += 1;
                    } else {
                        self.metrics.dropped_slow.inc();
                    }
                }
                Sub::Held(h) => hold(&mut h.lock().expect("held lock"), event),
            }
        }
        sent
    }
}

impl Hub {
    /// Loads the presence view from the table snapshot `rows` plus the ops buffered since the
    /// start-up marker (see [`presence_sync`]) and sends the events it causes; false when the
    /// marker was not reached (nothing changed).
    pub fn presence_load(&self, rows: Vec<crate::core::presence::Tracked>) -> bool {
        let state = self.state.write().expect("hub lock");
        let Some(events) = self.presence.load(rows) else { return false };
        self.send_presence(&state, events);
        true
    }

    /// Dispatch of one presence op from the stream (hub read lock held by the caller).
    fn presence_op(&self, state: &State, op: &crate::core::presence::PresenceOp) -> usize {
        let events = self.presence.apply(op);
        self.send_presence(state, events)
    }

    /// Wraps each presence event once and queues it to the channel's subscribers.
    fn send_presence(&self, state: &State, events: Vec<crate::core::presence::PresenceEvent>) -> usize {
        let mut queued = 0;
        for e in events {
            let Some(subs) = state.channels.get(&e.channel) else { continue };
            queued += self.deliver(subs, &Shared::new(Event::Presence(e), 0));
        }
        self.metrics.presence_frames.inc_by(queued as u64);
        queued
    }
}

/// Keeps `event` for a held subscription: stored messages at or below the floor are dropped
/// (the replay covers them); past the cap the buffer is given up (see [`Activation::Overflowed`]).
fn hold(held: &mut Held, event: &SharedEvent) {
    if held.overflowed || event.event.cursor().is_some_and(|c| c <= held.floor) {
        return;
    }
    if held.events.len() >= held.cap {
        held.overflowed = true;
        held.events = Vec::new();
        return;
    }
    held.events.push(event.clone());
}

#[cfg(test)]
pub(crate) mod tests;
