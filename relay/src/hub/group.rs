//! Channel groups: several subscriptions of one session that start and turn live together, at
//! one position, so that the session's stored messages leave in cursor order across all of
//! them. A stream whose resume point is a single cursor for every channel (Server-Sent Events
//! and its `Last-Event-ID`) needs exactly that: after it wrote the message with cursor `X`,
//! every message of its channels at or below `X` was written before.
//!
//! [`Hub::subscribe_group`] registers every channel *held* at one position `P` under one lock.
//! The session replays what it missed from the table (merged across its channels in cursor
//! order), then [`Hub::activate_group`] queues a marker at the floor (everything at or below it
//! is out), then the channels' held events merged in dispatch order, and turns them all live at
//! once. If any buffer overflowed meanwhile, every channel's buffer is given up and the floor
//! moves to the current position: the session replays the gap for all channels from the table
//! and tries again. Once live, the session's queue keeps order by refusing every offer after
//! its first refusal ([`super::SessionHandle::keep_order`]).

use super::{Event, Held, Hub, Joined, Live, Outbound, SessionHandle, SharedEvent, Sub};
use crate::core::Cursor;

/// What [`Hub::activate_group`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupActivation {
    /// The marker and the held events are queued; every channel of the group is live.
    Done,
    /// A side buffer overflowed: replay `(from[i], to]` of channel `i` of the group from the
    /// table (merged in cursor order), then try again.
    Overflowed { from: Vec<Cursor>, to: Cursor },
    /// The session queue has no room for the held events yet; try again shortly.
    NoRoom,
    /// A subscription of the group is gone (the session ended), or was not held.
    Gone,
}

impl Hub {
    /// Adds `session` to every channel of `channels`, held, at one position read under the
    /// same lock; returns what each joined (same order). See the module docs.
    pub fn subscribe_group(&self, channels: &[String], session: &SessionHandle) -> Vec<Joined> {
        let mut state = self.state.write().expect("hub lock");
        let position = self.position();
        let floor = position.unwrap_or(Cursor::MIN);
        channels
            .iter()
            .map(|channel| {
                let held = Held::new(session.clone(), floor, session.budget_bytes());
                self.insert(
                    &mut state,
                    channel,
                    session.id,
                    Sub::Held(Box::new(std::sync::Mutex::new(held))),
                );
                Joined { position, members: self.presence.members(channel) }
            })
            .collect()
    }

    /// Turns a group registered by [`Hub::subscribe_group`] live: queues `marker(floor)` (if any), then
    /// per channel a presence snapshot and a dropped-messages notice when it missed any, then
    /// the held events of all channels merged in dispatch order. See [`GroupActivation`].
    pub fn activate_group(
        &self,
        channels: &[String],
        session_id: u64,
        marker: impl FnOnce(Cursor) -> Option<Outbound>,
    ) -> GroupActivation {
        let mut state = self.state.write().expect("hub lock");
        let position = self.position().unwrap_or(Cursor::MIN);
        let mut helds: Vec<(&String, &mut Held)> = Vec::with_capacity(channels.len());
        // Each channel once, in the order of `channels`.
        let mut subs: Vec<(&String, &mut Sub)> = Vec::with_capacity(channels.len());
        for (name, map) in state.channels.iter_mut() {
            if channels.contains(name) {
                if let Some(sub) = map.get_mut(&session_id) {
                    subs.push((name, sub));
                }
            }
        }
        if subs.len() != channels.len() {
            return GroupActivation::Gone;
        }
        subs.sort_by_key(|(name, _)| channels.iter().position(|c| c == *name));
        for (name, sub) in subs.iter_mut() {
            match sub {
                Sub::Held(h) => helds.push((name, h.get_mut().expect("held lock"))),
                Sub::Live(_) => return GroupActivation::Gone,
            }
        }
        let floor = helds.iter().map(|(_, h)| h.floor).min().unwrap_or(position);
        if helds.iter().any(|(_, h)| h.overflowed) {
            let mut from = Vec::with_capacity(helds.len());
            for (_, h) in helds.iter_mut() {
                h.overflow();
                h.overflowed = false;
                from.push(std::mem::replace(&mut h.floor, position));
            }
            return GroupActivation::Overflowed { from, to: position };
        }
        let bytes: usize = helds.iter().map(|(_, h)| h.bytes).sum();
        let Some((_, first)) = helds.first() else { return GroupActivation::Done };
        let session = first.session.clone();
        if !session.fits(bytes) {
            return GroupActivation::NoRoom;
        }
        if let Some(m) = marker(floor) {
            session.send(m);
        }
        for (channel, h) in helds.iter_mut() {
            if h.presence_stale {
                let members = self.presence.members(channel);
                session.send(Outbound::PresenceSync { channel: channel.to_string(), members });
            }
            if h.dropped > 0 {
                session.send(Outbound::Dropped { channel: channel.to_string(), count: h.dropped });
            }
        }
        let buffers = helds.iter_mut().map(|(_, h)| (h.floor, std::mem::take(&mut h.events))).collect();
        for event in merge(buffers) {
            session.send(Outbound::Event(event));
        }
        let since = position.max(floor);
        for (_, sub) in subs {
            *sub = Sub::Live(Live { session: session.clone(), since });
        }
        // Everything the group missed is queued: offers may go in again.
        session.accept_offers();
        GroupActivation::Done
    }

    /// A group member fell behind (its ordered queue refused an event, see
    /// [`super::SessionHandle::keep_order`]): holds every channel of the group so that it
    /// catches up as one, in cursor order, through [`Hub::activate_group`]. A live channel has
    /// been sent everything up to the position (anything newer would have been refused and made
    /// it fall behind), so it is held from there; a channel already held keeps its floor.
    pub fn hold_group(&self, channels: &[String], session_id: u64) {
        let mut state = self.state.write().expect("hub lock");
        let position = self.position().unwrap_or(Cursor::MIN);
        for channel in channels {
            let Some(sub) = state.channels.get_mut(channel).and_then(|m| m.get_mut(&session_id)) else {
                continue;
            };
            if let Sub::Live(live) = sub {
                let mut held = Held::new(live.session.clone(), position, live.session.budget_bytes());
                held.overflowed = true;
                *sub = Sub::Held(Box::new(std::sync::Mutex::new(held)));
            }
        }
    }
}

/// The events of several channels' buffers (each in dispatch order, above its floor) in one
/// dispatch order: stored messages by cursor; an ephemeral or presence event right after the
/// stored message that preceded it in its own buffer.
fn merge(buffers: Vec<(Cursor, Vec<SharedEvent>)>) -> Vec<SharedEvent> {
    let mut keyed: Vec<(Cursor, SharedEvent)> = Vec::new();
    for (floor, events) in buffers {
        let mut last = floor;
        for e in events {
            if let Event::Message(m) = &e.event {
                if let Some(c) = m.cursor {
                    last = c;
                }
            }
            keyed.push((last, e));
        }
    }
    // Stable: a buffer's own order is kept among equal keys.
    keyed.sort_by_key(|(k, _)| *k);
    keyed.into_iter().map(|(_, e)| e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{Message, Sender, Shared};

    fn msg(channel: &str, cursor: Option<u64>) -> SharedEvent {
        Shared::new(
            Event::Message(Message {
                channel: channel.into(),
                id: cursor.map(|c| c.to_string()),
                cursor: cursor.map(|c| Cursor::new(c, 1)),
                event: "e".into(),
                payload: "{}".into(),
                sender: Sender { kind: "system".into(), id: None },
                created_at: None,
            }),
            0,
        )
    }

    fn names(events: &[SharedEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match &e.event {
                Event::Message(m) => {
                    format!("{}{}", m.channel, m.cursor.map_or("~".into(), |c| c.commit_lsn.to_string()))
                }
                Event::Presence(_) => "p".into(),
            })
            .collect()
    }

    #[test]
    fn buffers_merge_by_cursor_and_ephemerals_follow_their_predecessor() {
        let floor = Cursor::new(1, 0);
        let a = vec![msg("a", Some(2)), msg("a", None), msg("a", Some(5))];
        let b = vec![msg("b", None), msg("b", Some(3)), msg("b", Some(4)), msg("b", Some(6))];
        let merged = merge(vec![(floor, a), (floor, b)]);
        assert_eq!(names(&merged), ["b~", "a2", "a~", "b3", "b4", "a5", "b6"]);
    }
}
