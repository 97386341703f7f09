//! The last stored message the hub dispatched on each channel that has subscribers here, so
//! that a resume which missed nothing turns live without reading the log
//! ([`super::Hub::subscribe_held_from`]).
//!
//! A client that reconnects and resumes from the cursor of the last message it got usually
//! missed nothing of its channel: then the replay `(cursor, position]` is empty, and the
//! statements that would prove it (the replay window, a count and a page of the log, after
//! waiting for durable commit positions) are pure cost — most of a reconnect's relay CPU,
//! and a wait that holds the channel's live messages back. The hub can answer from memory
//! when `cursor` is exactly the last stored message it dispatched on the channel: dispatch is
//! in commit order and gapless, so no stored message of the channel lies between `cursor` and
//! the position.
//!
//! A channel's entry is made by its first stored message dispatched while it has subscribers,
//! and goes with its last subscriber (a channel nobody here listens to is not tracked: its
//! entry would have to be kept for every channel of the database). A large transaction left
//! in the log ([`crate::core::event::LogEvent::FromLog`]) forgets the channels it touched,
//! since its messages were never dispatched one by one. No entry means "unknown", and the
//! resume reads the log as before.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::core::Cursor;

/// Channel → cursor of the last stored message dispatched on it (see the module docs).
/// Written by dispatch under the hub's read lock, read under its write lock.
#[derive(Default)]
pub(super) struct LastStored(Mutex<HashMap<String, Cursor>>);

impl LastStored {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cursor>> {
        self.0.lock().expect("last stored lock")
    }

    /// `cursor` is the newest stored message dispatched on `channel` (which has subscribers).
    pub(super) fn record(&self, channel: &str, cursor: Cursor) {
        let mut map = self.map();
        match map.get_mut(channel) {
            Some(last) => *last = cursor,
            None => {
                map.insert(channel.to_string(), cursor);
            }
        }
    }

    /// The channel lost its last subscriber: what it dispatches next is not seen.
    pub(super) fn forget(&self, channel: &str) {
        self.map().remove(channel);
    }

    /// Messages of `channels` (None: of any channel) were not dispatched one by one.
    pub(super) fn forget_some(&self, channels: Option<&[String]>) {
        let mut map = self.map();
        match channels {
            Some(list) => list.iter().for_each(|c| {
                map.remove(c);
            }),
            None => map.clear(),
        }
    }

    pub(super) fn get(&self, channel: &str) -> Option<Cursor> {
        self.map().get(channel).copied()
    }

    /// Channels tracked now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{CommitBatch, FromLog, LogEvent, StoredMessage};
    use crate::hub::tests::{hub, reply, session};
    use crate::hub::Hub;

    fn stored(channel: &str, lsn: u64, seq: i64) -> LogEvent {
        LogEvent::Stored(StoredMessage {
            id: format!("id-{lsn}-{seq}"),
            seq,
            channel: channel.into(),
            event: "e".into(),
            payload: "{}".into(),
            sender_type: "system".into(),
            sender_id: None,
            created_at: "2026-12-04T15:00:00Z".into(),
            cursor: Cursor::new(lsn, seq),
            wh_audience: 0,
        })
    }

    fn dispatch(hub: &Hub, events: Vec<LogEvent>) {
        hub.dispatch(CommitBatch { commit_lsn: 1, events, commit_time_micros: 0 }, &mut Vec::new());
    }

    /// Whether a resume of `channel` from `cursor` would need no replay (and unsubscribes it).
    fn caught_up(hub: &Hub, channel: &str, cursor: Cursor) -> bool {
        let (s, _q, _) = session(hub, 1 << 20);
        let (joined, caught_up) = hub.subscribe_held_from(channel, &s, cursor);
        assert!(joined.position.is_some());
        hub.unsubscribe(channel, s.id);
        caught_up
    }

    #[test]
    fn a_resume_from_the_channels_last_dispatched_message_needs_no_replay() {
        let hub = hub();
        let (listener, _q, _) = session(&hub, 1 << 20);
        hub.subscribe("c", &listener, reply);
        dispatch(&hub, vec![stored("c", 5, 1), stored("c", 5, 2)]);
        dispatch(&hub, vec![stored("other", 6, 3)]);
        assert!(caught_up(&hub, "c", Cursor::new(5, 2)), "other channels' commits do not matter");
        assert!(!caught_up(&hub, "c", Cursor::new(5, 1)), "(5,2) was missed");
        assert!(!caught_up(&hub, "c", Cursor::end_of_commit(5)), "a position is not a message of c");
        dispatch(&hub, vec![stored("c", 7, 4)]);
        assert!(!caught_up(&hub, "c", Cursor::new(5, 2)), "(7,4) was missed");
        assert!(caught_up(&hub, "c", Cursor::new(7, 4)));
    }

    #[test]
    fn channels_without_subscribers_are_not_tracked_and_the_last_one_leaving_forgets() {
        let hub = hub();
        dispatch(&hub, vec![stored("c", 5, 1)]);
        assert_eq!(hub.last_stored.len(), 0, "nobody listens to c here");
        assert!(!caught_up(&hub, "c", Cursor::new(5, 1)), "unknown: a message may have gone unseen");
        let (listener, _q, _) = session(&hub, 1 << 20);
        hub.subscribe("c", &listener, reply);
        dispatch(&hub, vec![stored("c", 6, 2)]);
        assert!(hub.unsubscribe("c", listener.id));
        assert_eq!(hub.last_stored.len(), 0, "churn leaves no entry behind");
        dispatch(&hub, vec![stored("c", 7, 3)]);
        assert!(!caught_up(&hub, "c", Cursor::new(6, 2)), "(7,3) went by while nobody listened");
    }

    #[test]
    fn a_transaction_left_in_the_log_forgets_the_channels_it_touched() {
        let hub = hub();
        let (listener, _q, _) = session(&hub, 1 << 20);
        hub.subscribe("c", &listener, reply);
        hub.subscribe("d", &listener, reply);
        dispatch(&hub, vec![stored("c", 5, 1), stored("d", 5, 2)]);
        let big = |channels| FromLog { channels, last: Cursor::new(9, 9), messages: 9, webhooks: false };
        dispatch(&hub, vec![LogEvent::FromLog(big(Some(vec!["c".into()])))]);
        assert!(!caught_up(&hub, "c", Cursor::new(5, 1)));
        assert!(caught_up(&hub, "d", Cursor::new(5, 2)), "d was not in it");
        dispatch(&hub, vec![LogEvent::FromLog(big(None))]);
        assert!(!caught_up(&hub, "d", Cursor::new(5, 2)), "a transaction of unlisted channels");
    }
}
