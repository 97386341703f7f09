//! The hub: which sessions listen to which channel, and fan-out of committed and ephemeral
//! events to them. No sockets, no Postgres, no wire format here.
//!
//! Each session owns one queue bounded in bytes ([`SessionHandle`]). The hub only ever
//! [`SessionHandle::offer`]s, so it never waits on anyone. Each event is wrapped once in a
//! [`crate::core::event::Shared`] and the same `Arc` goes to every subscriber; each session
//! encodes it with its protocol, and the encoding is cached in the event, once per protocol.
//!
//! **Falling behind.** An event that does not fit in a live subscriber's queue does not close
//! it: the subscription turns *held* and *overflowed* from the last stored message it got
//! (the rest of the batch is skipped for it), and the session is told to catch up
//! ([`SessionHandle::lagged`]): it replays the missed stored messages from `realtime.messages`
//! at its own pace and turns live again through [`Hub::activate`] — the resume path. Ephemeral
//! messages missed meanwhile cannot be replayed: they are counted and the client gets an
//! [`Outbound::Dropped`] notice; presence changes missed meanwhile are made good by an
//! [`Outbound::PresenceSync`] snapshot at activation.
//!
//! A resuming subscription starts *held* ([`Hub::subscribe_held`]): its live events newer than
//! the position read at registration go to a bounded side buffer while the session replays the
//! missed messages from the table, then [`Hub::activate`] moves the buffer into the session
//! queue and switches it to direct delivery, atomically with respect to dispatch.
//!
//! Sessions bound to a table's changes with per-row visibility (Supabase `postgres_changes`
//! under RLS) are not subscribers of its change channel: they are registered in [`gated`], and
//! the table's one gate subscribes here and hands them what each may see.
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
use last_stored::LastStored;
use queue::Refused;

pub mod acks;
pub mod gated;
pub mod group;
mod last_stored;
pub mod presence;
mod presence_sync;
mod queue;

pub use presence_sync::PresenceHub;
pub use queue::{session_queue, Batch, Budget, Outbound, QueueLimits, SessionHandle, SessionQueue};

/// A subscriber getting events as they are dispatched.
struct Live {
    session: SessionHandle,
    /// Every stored message at or below this cursor was delivered to the subscriber (or came
    /// before its subscription): a catch-up never replays below it.
    since: Cursor,
}

/// Events held back for a subscription that is replaying from the table (a resume or a
/// catch-up).
struct Held {
    session: SessionHandle,
    /// Stored messages at or below this cursor are the replay's business.
    floor: Cursor,
    events: Vec<SharedEvent>,
    /// Bytes of `events`, at most `cap`.
    bytes: usize,
    cap: usize,
    /// The buffer was given up (or the subscriber fell behind): the replay must go on from the
    /// table from `floor` up to a newer position.
    overflowed: bool,
    /// Ephemeral messages given up since the last activation.
    dropped: u64,
    /// Presence events given up since the last activation: send a snapshot at activation.
    presence_stale: bool,
}

impl Held {
    fn new(session: SessionHandle, floor: Cursor, cap: usize) -> Self {
        Held {
            session,
            floor,
            events: Vec::new(),
            bytes: 0,
            cap,
            overflowed: false,
            dropped: 0,
            presence_stale: false,
        }
    }

    /// Gives up the buffer: its ephemeral messages count as dropped, its presence events make
    /// the view stale.
    fn overflow(&mut self) {
        self.overflowed = true;
        for e in std::mem::take(&mut self.events) {
            self.note_missed(&e);
        }
        self.bytes = 0;
    }

    /// Counts an event this subscription will not get live.
    fn note_missed(&mut self, event: &SharedEvent) {
        match &event.event {
            Event::Message(m) if m.cursor.is_none() => self.dropped += 1,
            Event::Message(_) => {}
            Event::Presence(_) => self.presence_stale = true,
        }
    }
}

/// One subscription. Held ones are rare and large: boxed, so a channel's map of live
/// subscribers stays small (every slot of a map is as large as its largest value).
enum Sub {
    Live(Live),
    Held(Box<Mutex<Held>>),
}

/// A live subscriber that fell behind during a dispatch: made held and overflowed after it.
struct Lag {
    channel: String,
    session: u64,
    /// Everything of the channel at or below this was delivered.
    from: Cursor,
    dropped: u64,
    presence_stale: bool,
}

/// What [`Hub::activate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    /// The held events are queued and the subscription is live.
    Done,
    /// The side buffer overflowed: replay `(from, to]` from the table, then try again. (The
    /// subscription stays held, with an empty buffer above `to`.)
    Overflowed { from: Cursor, to: Option<Cursor> },
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
    /// Sessions that get a table's changes through a visibility check ([`gated`]).
    pub gated: gated::Gated,
    /// The last stored message dispatched on each subscribed channel (resumes that missed
    /// nothing, [`Hub::subscribe_held_from`]).
    last_stored: LastStored,
}

impl Hub {
    pub fn new(metrics: HubMetrics) -> Self {
        Self {
            state: RwLock::default(),
            position: Mutex::default(),
            next_session: AtomicU64::new(0),
            metrics,
            presence: PresenceHub::default(),
            gated: gated::Gated::default(),
            last_stored: LastStored::default(),
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
        let since = joined.position.unwrap_or(Cursor::MIN);
        if !session.send(reply(joined)) {
            return false;
        }
        self.insert(&mut state, channel, session.id, Sub::Live(Live { session: session.clone(), since }));
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
    /// for the session (up to its queue's byte budget), every one at or below it is the
    /// replay's business; presence events after `members` are held too.
    pub fn subscribe_held(&self, channel: &str, session: &SessionHandle) -> Joined {
        let mut state = self.state.write().expect("hub lock");
        self.insert_held(&mut state, channel, session)
    }

    /// [`Hub::subscribe_held`] for a resume from `cursor`, and whether the subscriber missed
    /// nothing of `channel` up to the position it joined at: `cursor` is the last stored
    /// message dispatched on the channel (`last_stored.rs`, read under the same lock as the
    /// position). Then no replay is needed: [`Hub::activate`] right away.
    pub fn subscribe_held_from(
        &self,
        channel: &str,
        session: &SessionHandle,
        cursor: Cursor,
    ) -> (Joined, bool) {
        let mut state = self.state.write().expect("hub lock");
        let missed_nothing = self.last_stored.get(channel) == Some(cursor);
        (self.insert_held(&mut state, channel, session), missed_nothing)
    }

    /// [`Hub::subscribe_held`] (write lock held).
    fn insert_held(&self, state: &mut State, channel: &str, session: &SessionHandle) -> Joined {
        let position = self.position();
        let held = Held::new(session.clone(), position.unwrap_or(Cursor::MIN), session.budget_bytes());
        self.insert(state, channel, session.id, Sub::Held(Box::new(Mutex::new(held))));
        Joined { position, members: self.presence.members(channel) }
    }

    /// Ends the held state of `session_id` on `channel`: queues a presence snapshot and a
    /// dropped-messages notice when the subscription missed any, then the held events (all
    /// newer than the replayed range), and switches to direct delivery; unless the buffer
    /// overflowed or the queue lacks room for it. See [`Activation`].
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
            let from = std::mem::replace(&mut held.floor, position.unwrap_or(Cursor::MIN));
            return Activation::Overflowed { from, to: position };
        }
        if !held.session.fits(held.bytes) {
            return Activation::NoRoom;
        }
        if held.presence_stale {
            let members = self.presence.members(channel);
            held.session.send(Outbound::PresenceSync { channel: channel.to_string(), members });
        }
        if held.dropped > 0 {
            held.session.send(Outbound::Dropped { channel: channel.to_string(), count: held.dropped });
        }
        for event in held.events.drain(..) {
            held.session.send(Outbound::Event(event));
        }
        let since = position.unwrap_or(Cursor::MIN).max(held.floor);
        *sub = Sub::Live(Live { session: held.session.clone(), since });
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
            self.last_stored.forget(channel);
            self.metrics.channels.dec();
        }
        removed
    }

    /// Every subscription (channel, session), live or held: what permission re-checks cover.
    pub fn subscriptions(&self) -> Vec<(String, SessionHandle)> {
        let state = self.state.read().expect("hub lock");
        let mut all = Vec::with_capacity(self.metrics.subscriptions.get().max(0) as usize);
        for (channel, subs) in &state.channels {
            for sub in subs.values() {
                let session = match sub {
                    Sub::Live(live) => live.session.clone(),
                    Sub::Held(held) => held.lock().expect("held lock").session.clone(),
                };
                all.push((channel.clone(), session));
            }
        }
        all
    }

    /// Number of sessions subscribed to `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.state.read().expect("hub lock").channels.get(channel).map_or(0, HashMap::len)
    }

    /// The `limit` channels with the most subscriptions (live or held), busiest first (ties by
    /// name), and whether there were more.
    pub fn busiest_channels(&self, limit: usize) -> (Vec<(String, usize)>, bool) {
        let state = self.state.read().expect("hub lock");
        let mut all: Vec<(&String, usize)> = state.channels.iter().map(|(c, s)| (c, s.len())).collect();
        let more = all.len() > limit;
        if more {
            all.select_nth_unstable_by(limit, |a, b| b.1.cmp(&a.1));
            all.truncate(limit);
        }
        let mut out: Vec<(String, usize)> = all.into_iter().map(|(c, n)| (c.clone(), n)).collect();
        drop(state);
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        (out, more)
    }

    /// Delivers one committed batch, in order. Pushes `(message id, subscribers)` to `audience`
    /// for every stored message that had local subscribers (for
    /// `realtime.messages.ws_audience_count`). Returns the number of frames queued.
    pub fn dispatch(&self, batch: CommitBatch, audience: &mut Vec<(String, u32)>) -> usize {
        let state = self.state.read().expect("hub lock");
        let latency = since_pg_timestamp(batch.commit_time_micros).map(|d| d.as_secs_f64());
        let latencies = self.metrics.commit_to_send.local();
        let mut d = Dispatch { position: self.position().unwrap_or(Cursor::MIN), ..Dispatch::default() };
        for event in batch.events {
            let (message, subs): (Message, _) = match event {
                LogEvent::Presence(op) => {
                    let events = self.presence.apply(&op);
                    d.queued += self.send_presence(&state, events, &mut d);
                    continue;
                }
                LogEvent::Stored(m) => {
                    self.metrics.stored_dispatched.inc();
                    d.last_stored = Some(m.cursor);
                    let Some(subs) = state.channels.get(&m.channel).filter(|s| !s.is_empty()) else {
                        continue;
                    };
                    self.last_stored.record(&m.channel, m.cursor);
                    audience.push((m.id.clone(), u32::try_from(subs.len()).unwrap_or(u32::MAX)));
                    (m.into(), subs)
                }
                LogEvent::Ephemeral(e) => {
                    self.metrics.ephemeral_dispatched.inc();
                    let Some(subs) = state.channels.get(&e.channel) else { continue };
                    (e.into(), subs)
                }
                LogEvent::FromLog(f) => {
                    self.metrics.stored_dispatched.inc_by(f.messages);
                    d.last_stored = Some(f.last);
                    self.last_stored.forget_some(f.channels.as_deref());
                    from_log(&state, f.channels.as_deref(), &mut d);
                    continue;
                }
            };
            let stored = message.cursor.is_some();
            let shared = Shared::new(Event::Message(message), batch.commit_time_micros);
            let sent = self.deliver(subs, &shared, &mut d);
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
            d.queued += sent;
        }
        latencies.flush();
        // One advance per batch: the end of the commit sorts after every cursor in it. Made
        // before the lock is released: subscribers read the position under the write lock, and
        // one registered between the release and the advance would take the old position for a
        // batch it never got (a resume would replay up to it and lose the batch).
        if let Some(c) = d.last_stored {
            self.advance_position(Cursor::end_of_commit(c.commit_lsn));
        }
        drop(state);
        self.fall_behind(d.lagged);
        self.metrics.frames_queued.inc_by(d.queued as u64);
        d.queued
    }

    /// Queues `event` to every live subscriber in `subs` and holds it for held ones. A live
    /// subscriber it does not fit is noted as fallen behind. Returns how many live clients it
    /// was queued to (the relay's own consumers, [`SessionHandle::mark_internal`], not counted).
    fn deliver(&self, subs: &HashMap<u64, Sub>, event: &SharedEvent, d: &mut Dispatch) -> usize {
        let mut sent = 0;
        for (id, s) in subs {
            match s {
                Sub::Live(live) => {
                    if !d.lagged.is_empty()
                        && d.lagged.iter().any(|l| l.session == *id && l.channel == event.event.channel())
                    {
                        d.missed(*id, event);
                        continue;
                    }
                    match live.session.offer(Outbound::Event(event.clone())) {
                        Ok(()) => sent += usize::from(!live.session.is_internal()),
                        Err(Refused::Gone) => {}
                        Err(Refused::Full) => {
                            self.metrics.dropped_slow.inc();
                            // Everything of the channel before this event was delivered.
                            let before = match event.event.cursor() {
                                Some(c) => Cursor::new(c.commit_lsn, c.seq.saturating_sub(1)),
                                None => d.last_stored.map_or(d.position, |c| c.max(d.position)),
                            };
                            d.lagged.push(Lag {
                                channel: event.event.channel().to_string(),
                                session: *id,
                                from: before.max(live.since),
                                dropped: 0,
                                presence_stale: false,
                            });
                            d.missed(*id, event);
                        }
                    }
                }
                Sub::Held(h) => hold(&mut h.lock().expect("held lock"), event),
            }
        }
        sent
    }

    /// Turns the live subscribers that fell behind during a dispatch into held, overflowed
    /// ones and tells their sessions to catch up.
    fn fall_behind(&self, lagged: Vec<Lag>) {
        if lagged.is_empty() {
            return;
        }
        let mut state = self.state.write().expect("hub lock");
        for lag in lagged {
            let Some(sub) = state.channels.get_mut(&lag.channel).and_then(|s| s.get_mut(&lag.session)) else {
                continue;
            };
            let live = match sub {
                Sub::Live(live) => live,
                Sub::Held(held) => {
                    // Held since the dispatch (a group catching up, `group.rs`): its replay
                    // must start below what this subscription missed.
                    let held = held.get_mut().expect("held lock");
                    if held.session.is_ordered() {
                        held.floor = held.floor.min(lag.from);
                        held.overflowed = true;
                        held.dropped += lag.dropped;
                        held.presence_stale |= lag.presence_stale;
                        held.session.lagged(&lag.channel);
                    }
                    continue;
                }
            };
            let session = live.session.clone();
            let mut held = Held::new(session.clone(), lag.from, session.budget_bytes());
            held.overflowed = true;
            held.dropped = lag.dropped;
            held.presence_stale = lag.presence_stale;
            *sub = Sub::Held(Box::new(Mutex::new(held)));
            self.metrics.catch_ups.inc();
            session.lagged(&lag.channel);
        }
    }

    /// Loads the presence view from the table snapshot `rows` plus the ops buffered since the
    /// start-up marker (see [`presence_sync`]) and sends the events it causes; false when the
    /// marker was not reached (nothing changed).
    pub fn presence_load(&self, rows: Vec<crate::core::presence::Tracked>) -> bool {
        let state = self.state.write().expect("hub lock");
        let Some(events) = self.presence.load(rows) else { return false };
        let mut d = Dispatch { position: self.position().unwrap_or(Cursor::MIN), ..Dispatch::default() };
        self.send_presence(&state, events, &mut d);
        drop(state);
        self.fall_behind(d.lagged);
        true
    }

    /// Wraps each presence event once and queues it to the channel's subscribers.
    fn send_presence(
        &self,
        state: &State,
        events: Vec<crate::core::presence::PresenceEvent>,
        d: &mut Dispatch,
    ) -> usize {
        let mut queued = 0;
        for e in events {
            let Some(subs) = state.channels.get(&e.channel) else { continue };
            queued += self.deliver(subs, &Shared::new(Event::Presence(e), 0), d);
        }
        self.metrics.presence_frames.inc_by(queued as u64);
        queued
    }
}

/// What one dispatch keeps track of.
#[derive(Default)]
struct Dispatch {
    /// The hub position before the batch.
    position: Cursor,
    /// The last stored message of the batch so far.
    last_stored: Option<Cursor>,
    /// Live subscribers that fell behind in this batch (the rest of it is skipped for them).
    lagged: Vec<Lag>,
    queued: usize,
}

impl Dispatch {
    /// Notes an event skipped for a subscriber that fell behind.
    fn missed(&mut self, session: u64, event: &SharedEvent) {
        let channel = event.event.channel();
        if let Some(l) = self.lagged.iter_mut().find(|l| l.session == session && l.channel == channel) {
            match &event.event {
                Event::Message(m) if m.cursor.is_none() => l.dropped += 1,
                Event::Message(_) => {}
                Event::Presence(_) => l.presence_stale = true,
            }
        }
    }
}

/// Keeps `event` for a held subscription: stored messages at or below the floor are dropped
/// (the replay covers them); past the byte cap the buffer is given up (see
/// [`Activation::Overflowed`]), and so is everything after it until the next activation.
fn hold(held: &mut Held, event: &SharedEvent) {
    if event.event.cursor().is_some_and(|c| c <= held.floor) {
        return;
    }
    if held.overflowed {
        held.note_missed(event);
        return;
    }
    if held.bytes + event.weight() > held.cap {
        held.overflow();
        held.note_missed(event);
        return;
    }
    held.bytes += event.weight();
    held.events.push(event.clone());
}

/// Sends every subscriber of `channels` (None: of every channel) to read a large transaction's
/// stored messages from the log ([`LogEvent::FromLog`]): live ones fall behind from what they
/// had before this batch, held ones give up their buffer (their replay reads on).
fn from_log(state: &State, channels: Option<&[String]>, d: &mut Dispatch) {
    let mut visit = |channel: &str, subs: &HashMap<u64, Sub>| {
        for (id, s) in subs {
            match s {
                Sub::Live(live) => {
                    if d.lagged.iter().any(|l| l.session == *id && l.channel == channel) {
                        continue;
                    }
                    // A stream with one cursor must not get its other channels' later messages
                    // before these: they are refused too, and the stream catches up as one.
                    live.session.refuse_offers();
                    d.lagged.push(Lag {
                        channel: channel.to_string(),
                        session: *id,
                        from: d.position.max(live.since),
                        dropped: 0,
                        presence_stale: false,
                    });
                }
                Sub::Held(h) => h.lock().expect("held lock").overflow(),
            }
        }
    };
    match channels {
        Some(list) => {
            for channel in list {
                if let Some(subs) = state.channels.get(channel) {
                    visit(channel, subs);
                }
            }
        }
        None => state.channels.iter().for_each(|(c, subs)| visit(c, subs)),
    }
}

#[cfg(test)]
pub(crate) mod tests;
