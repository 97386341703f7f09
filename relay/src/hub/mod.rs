//! The hub: which sessions listen to which channel, and fan-out of committed and ephemeral
//! messages to them. No sockets here.
//!
//! Each session owns one bounded queue ([`SessionHandle`]). The hub only ever `try_send`s: a
//! full queue marks the session as too slow (it is then closed with 4009 by its own task) and
//! never delays delivery to anyone else. A message frame is encoded once and the same shared
//! bytes go to every subscriber.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pg::replication::{CommitBatch, LogEvent};
use crate::protocol::server::{message, MessageFields, Sender};

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
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[derive(Default)]
struct State {
    channels: HashMap<String, HashMap<u64, SessionHandle>>,
}

/// Counters the hub keeps for health and metrics.
#[derive(Default, Debug)]
pub struct HubStats {
    pub delivered: AtomicU64,
    pub dropped_slow: AtomicU64,
    pub messages: AtomicU64,
}

/// Channel → subscribed sessions, plus the position (cursor) of the last dispatched message.
#[derive(Default)]
pub struct Hub {
    state: RwLock<State>,
    position: Mutex<Option<String>>,
    next_session: AtomicU64,
    pub stats: HubStats,
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
        state.channels.entry(channel.to_string()).or_default().insert(session.id, session.clone());
        true
    }

    /// Removes `session_id` from `channel`; returns whether it was subscribed.
    pub fn unsubscribe(&self, channel: &str, session_id: u64) -> bool {
        let mut state = self.state.write().expect("hub lock");
        let Some(subs) = state.channels.get_mut(channel) else { return false };
        let removed = subs.remove(&session_id).is_some();
        if subs.is_empty() {
            state.channels.remove(channel);
        }
        removed
    }

    /// Number of sessions subscribed to `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.state.read().expect("hub lock").channels.get(channel).map_or(0, HashMap::len)
    }

    /// Delivers one committed batch, in order. Returns the number of frames queued.
    pub fn dispatch(&self, batch: &CommitBatch) -> usize {
        let state = self.state.read().expect("hub lock");
        let mut queued = 0;
        for event in &batch.events {
            self.stats.messages.fetch_add(1, Ordering::Relaxed);
            let (channel, fields) = match event {
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
                        sender: Sender { kind: "system", id: None },
                        created_at: None,
                        replayed: false,
                    },
                ),
            };
            let cursor = match event {
                LogEvent::Stored(m) => Some(m.cursor.to_string()),
                LogEvent::Ephemeral(_) => None,
            };
            if let Some(subs) = state.channels.get(channel) {
                let frame = Frame::from(message(&MessageFields { cursor: cursor.as_deref(), ..fields }));
                for s in subs.values() {
                    if s.send(frame.clone()) {
                        queued += 1;
                    } else {
                        self.stats.dropped_slow.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if let Some(c) = &cursor {
                self.advance_position(c);
            }
        }
        self.stats.delivered.fetch_add(queued as u64, Ordering::Relaxed);
        queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::cursor::Cursor;
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
        })
    }

    fn batch(events: Vec<LogEvent>) -> CommitBatch {
        CommitBatch { commit_lsn: 1, events }
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
        assert_eq!(rx.try_recv().unwrap().as_str(), format!("reply {}", Cursor { commit_lsn: 5, seq: 1 }));
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
    fn full_queue_marks_only_that_session_slow() {
        let hub = Hub::new();
        let (slow_s, _slow_rx, slow_flag) = session(&hub, 1);
        let (ok_s, mut ok_rx, ok_flag) = session(&hub, 16);
        hub.subscribe("c", &slow_s, |_| Frame::from("r"));
        hub.subscribe("c", &ok_s, |_| Frame::from("r"));
        hub.dispatch(&batch(vec![stored("c", 2, 1), stored("c", 2, 2), stored("c", 2, 3)]));
        assert!(slow_flag.is_cancelled());
        assert!(!ok_flag.is_cancelled());
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
        assert!(hub.unsubscribe("c", s.id));
        assert!(!hub.unsubscribe("c", s.id));
        assert_eq!(hub.subscriber_count("c"), 0);
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
        });
        hub.dispatch(&batch(vec![e]));
        let m = json(&rx.try_recv().unwrap());
        assert_eq!(m["event"], "typing");
        assert!(m.get("cursor").is_none());
        assert_eq!(hub.position(), None);
    }

    #[test]
    fn position_never_moves_backwards() {
        let hub = Hub::new();
        hub.advance_position("0000000000000002");
        hub.advance_position("0000000000000001");
        assert_eq!(hub.position().as_deref(), Some("0000000000000002"));
    }
}
