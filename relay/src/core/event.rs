//! The log's events and what subscribers receive of them, in protocol-neutral form.
//!
//! * What the replication stream produces: [`CommitBatch`]es of [`LogEvent`]s in commit order
//!   (a stored [`StoredMessage`], an [`Ephemeral`] broadcast, or a presence op).
//! * What the hub fans out: an [`Event`] (a [`Message`] or a presence change) wrapped once in a
//!   [`Shared`] and handed to every subscriber as an `Arc` ([`SharedEvent`]). Each protocol
//!   encodes it into a wire frame at most once: the frame is cached in the [`Shared`] per
//!   encoding ([`crate::core::frame::EncodeCache`]), so 500 subscribers of a channel on one
//!   protocol cost one encode.
//! * What history and resume read back from `realtime.messages`: [`Message`]s too, so a live,
//!   replayed and historical message are the same value.

use std::sync::Arc;

use super::frame::{EncodeCache, WireFrame};
use super::presence::{PresenceEvent, PresenceOp};
use super::Cursor;

/// A committed row of `realtime.messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: String,
    pub seq: i64,
    pub channel: String,
    pub event: String,
    /// The `jsonb` payload as Postgres printed it (valid JSON text).
    pub payload: String,
    pub sender_type: String,
    pub sender_id: Option<String>,
    /// RFC 3339 UTC with microseconds, e.g. `2026-11-23T10:50:00.123456Z`.
    pub created_at: String,
    pub cursor: Cursor,
    /// `wh_audience_count`: webhook deliveries enqueued with the message (0 for most).
    pub wh_audience: i32,
}

/// A `realtime.broadcast` (or client `persist:false`) message: delivered, never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ephemeral {
    pub channel: String,
    pub event: String,
    /// Raw JSON text.
    pub payload: String,
    /// The user who published it from a client (`sender.id`), or None for SQL `realtime.broadcast`.
    pub sender_id: Option<String>,
}

/// One event of the log, in WAL order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    Stored(StoredMessage),
    Ephemeral(Ephemeral),
    /// A presence change (never stored in `realtime.messages`, no cursor).
    Presence(PresenceOp),
    /// Stored messages of a transaction too large to hold in memory (`--max-txn-bytes`): not
    /// carried here; their subscribers read them from `realtime.messages` (catch-up), up to
    /// `last`. Always the last event of its batch.
    FromLog(FromLog),
}

/// The stored messages of a large transaction, left in the log (see [`LogEvent::FromLog`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromLog {
    /// The channels they went to, or None for "too many to list" (every subscriber catches up).
    pub channels: Option<Vec<String>>,
    /// The cursor of the last of them.
    pub last: Cursor,
    /// How many there were.
    pub messages: u64,
    /// Whether any has webhook deliveries.
    pub webhooks: bool,
}

impl StoredMessage {
    /// Bytes it holds in memory (what `--max-txn-bytes` counts).
    pub fn weight(&self) -> usize {
        const OVERHEAD: usize = 192;
        OVERHEAD
            + self.id.len()
            + self.channel.len()
            + self.event.len()
            + self.payload.len()
            + self.sender_type.len()
            + self.sender_id.as_ref().map_or(0, String::len)
            + self.created_at.len()
    }
}

/// Everything one transaction published, delivered at its commit.
///
/// `commit_lsn` is the LSN of the commit record for a transaction. For a non-transactional
/// logical message (sent on its own, outside any transaction) it is that message's LSN: it is
/// **not** a commit position, so positions and resume cursors must be taken from the
/// [`StoredMessage::cursor`]s, never from an ephemeral-only batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitBatch {
    pub commit_lsn: u64,
    pub events: Vec<LogEvent>,
    /// The transaction's commit timestamp from pgoutput Commit (microseconds since 2000-01-01,
    /// the primary's clock); 0 when unknown (a non-transactional logical message). Feeds the
    /// commit-to-send latency histogram.
    pub commit_time_micros: i64,
}

/// Who sent a message: `system` (SQL, triggers, service-role publishes) or `user` with the
/// publishing client's user id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// `"system"` or `"user"` (`realtime.messages.sender_type`).
    pub kind: String,
    pub id: Option<String>,
}

/// A message as subscribers receive it: live, replayed on resume, or read from history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub channel: String,
    /// The stored message's id; None for ephemeral messages.
    pub id: Option<String>,
    /// The stored message's position; None for ephemeral messages.
    pub cursor: Option<Cursor>,
    pub event: String,
    /// Raw JSON text (a payload that is not valid JSON is sent as a JSON string).
    pub payload: String,
    pub sender: Sender,
    /// RFC 3339 UTC with microseconds; None for ephemeral messages.
    pub created_at: Option<String>,
}

impl From<StoredMessage> for Message {
    fn from(m: StoredMessage) -> Self {
        Message {
            channel: m.channel,
            id: Some(m.id),
            cursor: Some(m.cursor),
            event: m.event,
            payload: m.payload,
            sender: Sender { kind: m.sender_type, id: m.sender_id },
            created_at: Some(m.created_at),
        }
    }
}

impl From<Ephemeral> for Message {
    fn from(e: Ephemeral) -> Self {
        let kind = if e.sender_id.is_some() { "user" } else { "system" };
        Message {
            channel: e.channel,
            id: None,
            cursor: None,
            event: e.event,
            payload: e.payload,
            sender: Sender { kind: kind.to_string(), id: e.sender_id },
            created_at: None,
        }
    }
}

/// What the hub delivers to a channel's subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Message(Message),
    Presence(PresenceEvent),
}

impl Event {
    /// The channel it belongs to.
    pub fn channel(&self) -> &str {
        match self {
            Event::Message(m) => &m.channel,
            Event::Presence(p) => &p.channel,
        }
    }

    /// The stored message's cursor; None for ephemeral messages and presence.
    pub fn cursor(&self) -> Option<Cursor> {
        match self {
            Event::Message(m) => m.cursor,
            Event::Presence(_) => None,
        }
    }

    /// Bytes it holds while queued (for byte-bounded queues): names and a fixed overhead, and
    /// its content twice, since its encoded frame (cached in the [`Shared`]) holds it again.
    pub fn weight(&self) -> usize {
        const OVERHEAD: usize = 160;
        OVERHEAD
            + match self {
                Event::Message(m) => m.channel.len() + m.event.len() + 2 * m.payload.len(),
                Event::Presence(p) => p.channel.len() + p.member.presence_id.len() + 2 * p.member.state.len(),
            }
    }
}

/// An event shared by every subscriber, with its encoded frames (one per encoding, made by the
/// first session that needs it).
#[derive(Debug)]
pub struct Shared {
    pub event: Event,
    /// `commit_time_micros` of its transaction (0: unknown).
    pub commit_time_micros: i64,
    weight: usize,
    frames: EncodeCache,
}

/// The form in which the hub hands events to sessions.
pub type SharedEvent = Arc<Shared>;

impl Shared {
    pub fn new(event: Event, commit_time_micros: i64) -> SharedEvent {
        let weight = event.weight();
        Arc::new(Shared { event, commit_time_micros, weight, frames: EncodeCache::default() })
    }

    /// [`Event::weight`], computed once.
    pub fn weight(&self) -> usize {
        self.weight
    }

    /// The frame of encoding `slot`, encoded by `encode` the first time it is asked for.
    pub fn frame(&self, slot: usize, encode: impl FnOnce(&Event) -> WireFrame) -> WireFrame {
        self.frames.get_or_encode(slot, || encode(&self.event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_encoding_is_made_once_and_shared() {
        let m = Message {
            channel: "c".into(),
            id: None,
            cursor: None,
            event: "e".into(),
            payload: "{}".into(),
            sender: Sender { kind: "system".into(), id: None },
            created_at: None,
        };
        let shared = Shared::new(Event::Message(m), 0);
        let mut calls = 0;
        let a = shared.frame(0, |_| {
            calls += 1;
            WireFrame::text("one".to_string())
        });
        let b = shared.frame(0, |_| unreachable!("encoded twice"));
        let c = shared.frame(1, |_| WireFrame::text("two".to_string()));
        assert_eq!(
            (calls, a.as_bytes(), b.as_bytes(), c.as_bytes()),
            (1, &b"one"[..], &b"one"[..], &b"two"[..])
        );
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr(), "the same shared bytes");
    }

    #[test]
    fn ephemeral_sender_is_the_user_when_known() {
        let e = Ephemeral {
            channel: "c".into(),
            event: "e".into(),
            payload: "{}".into(),
            sender_id: Some("u".into()),
        };
        assert_eq!(Message::from(e).sender, Sender { kind: "user".into(), id: Some("u".into()) });
        let e = Ephemeral { channel: "c".into(), event: "e".into(), payload: "{}".into(), sender_id: None };
        assert_eq!(Message::from(e).sender.kind, "system");
    }
}
