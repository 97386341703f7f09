//! Pure transaction bookkeeping for the replication stream: assembling a transaction's events
//! into a [`CommitBatch`], de-duplicating replays after a reconnect, and deciding what may be
//! acknowledged to the slot. No I/O; driven by [`crate::pg::replication`].
//!
//! ## De-duplication
//!
//! After a reconnect the walsender resumes at the slot's confirmed position, i.e. the end of
//! the last commit we acknowledged, so commits that were dispatched but not yet acknowledged
//! come again. Commits arrive in strictly increasing commit-LSN order, so a commit whose
//! commit LSN is `<=` the last one dispatched is a replay and is dropped whole.
//!
//! Non-transactional logical messages are not part of any commit: the walsender sends each
//! one the moment decoding reaches its WAL record, and its LSN is a record position, not a
//! commit position. They get their **own** watermark and never touch the commit watermark.
//! In a single walsender stream both kinds happen to arrive in WAL order, so one shared
//! watermark would work today, but then the guarantee that a stored message is never skipped
//! would rest on that subtle property (and on nobody ever feeding it a non-commit position such
//! as a transactional message's own LSN, which is *below* its commit). Kept apart, the worst a
//! wrong ephemeral LSN can do is drop or repeat an ephemeral message, which is at-most-best-effort
//! by contract anyway.
//!
//! ## Large transactions
//!
//! A transaction's events are held until its commit. Past `max_txn_bytes` of them, its stored
//! messages are let go: only their channels (up to [`MAX_LISTED_CHANNELS`]), count and last
//! `seq` are kept, and the batch ends with a [`LogEvent::FromLog`] that sends their
//! subscribers to read them from `realtime.messages` after the commit, like any subscriber that
//! fell behind. Presence ops are always kept (small, and the presence view needs every one);
//! ephemeral messages past the limit are dropped and counted. So memory stays bounded whatever
//! the transaction's size, and the slot never replays a transaction the relay cannot hold.
//!
//! ## Acknowledgement
//!
//! The slot may be told "done up to X" only when every commit ending at or before X was
//! dispatched **and** its position written to `realtime.commits`. [`AckQueue`] holds
//! `(required durable commit LSN, LSN to acknowledge)` pairs and releases them as the
//! position writer's durable watermark rises.

use std::collections::VecDeque;

#[cfg(test)]
use crate::core::event::Ephemeral;
use std::collections::BTreeSet;

use crate::core::event::{CommitBatch, FromLog, LogEvent, StoredMessage};
use crate::core::Cursor;
use crate::pg::positions::CommitPosition;

/// What a Commit produced.
#[derive(Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    /// First time this commit was seen. `batch` is `None` for a transaction that carried no
    /// events for us; `position` is set when it stored messages (and their `xid` was known).
    Fresh { batch: Option<CommitBatch>, position: Option<CommitPosition> },
    /// A replay of a commit already dispatched: nothing to send.
    Duplicate,
}

/// Channels a [`FromLog`] lists at most; past it, every subscriber catches up.
pub const MAX_LISTED_CHANNELS: usize = 10_000;

#[derive(Debug, Default)]
struct OpenTxn {
    events: Vec<LogEvent>,
    xid: Option<String>,
    /// Bytes held in `events`.
    bytes: usize,
    /// Set once the stored messages were let go (see the module docs).
    left: Option<Left>,
}

/// What is kept of stored messages left in the log.
#[derive(Debug, Default)]
struct Left {
    channels: BTreeSet<String>,
    too_many_channels: bool,
    last_seq: i64,
    messages: u64,
    webhooks: bool,
}

impl Left {
    fn add(&mut self, m: &StoredMessage) {
        if !self.too_many_channels && !self.channels.contains(&m.channel) {
            if self.channels.len() == MAX_LISTED_CHANNELS {
                self.too_many_channels = true;
                self.channels.clear();
            } else {
                self.channels.insert(m.channel.clone());
            }
        }
        self.last_seq = self.last_seq.max(m.seq);
        self.messages += 1;
        self.webhooks |= m.wh_audience > 0;
    }
}

/// Collects events between Begin and Commit and de-duplicates replays.
#[derive(Debug)]
pub struct Assembler {
    txn: Option<OpenTxn>,
    last_commit_lsn: u64,
    last_nontx_lsn: u64,
    max_txn_bytes: usize,
    /// Transactions whose stored messages were left in the log, and ephemeral messages dropped
    /// from them, since start.
    pub left_in_log: u64,
    pub ephemeral_dropped: u64,
}

impl Default for Assembler {
    fn default() -> Self {
        Assembler::new(usize::MAX)
    }
}

impl Assembler {
    /// An assembler that holds at most `max_txn_bytes` of a transaction's events.
    pub fn new(max_txn_bytes: usize) -> Self {
        Assembler {
            txn: None,
            last_commit_lsn: 0,
            last_nontx_lsn: 0,
            max_txn_bytes,
            left_in_log: 0,
            ephemeral_dropped: 0,
        }
    }

    pub fn begin(&mut self) {
        self.txn = Some(OpenTxn::default());
    }

    pub fn in_txn(&self) -> bool {
        self.txn.is_some()
    }

    /// Highest commit LSN dispatched so far.
    #[cfg(test)]
    pub fn last_commit_lsn(&self) -> u64 {
        self.last_commit_lsn
    }

    /// A session ended: a transaction cut off mid-way will be sent again in full.
    pub fn reset_session(&mut self) {
        self.txn = None;
    }

    /// Adds a stored message of the open transaction (ignored outside one).
    pub fn stored(&mut self, msg: StoredMessage, xid: Option<String>) -> bool {
        let Some(txn) = self.txn.as_mut() else {
            return false;
        };
        if txn.xid.is_none() {
            txn.xid = xid;
        }
        if let Some(left) = txn.left.as_mut() {
            left.add(&msg);
            return true;
        }
        txn.bytes += msg.weight();
        txn.events.push(LogEvent::Stored(msg));
        if txn.bytes > self.max_txn_bytes {
            // Let the stored messages go; keep the rest in order.
            let mut left = Left::default();
            let mut bytes = 0;
            txn.events.retain(|e| match e {
                LogEvent::Stored(m) => {
                    left.add(m);
                    false
                }
                LogEvent::Ephemeral(e) => {
                    bytes += e.payload.len() + e.channel.len() + e.event.len();
                    true
                }
                _ => true,
            });
            txn.events.shrink_to_fit();
            txn.bytes = bytes;
            txn.left = Some(left);
            self.left_in_log += 1;
        }
        true
    }

    /// Adds a transactional ephemeral message of the open transaction (ignored outside one).
    #[cfg(test)]
    pub fn ephemeral(&mut self, e: Ephemeral) -> bool {
        self.logical(LogEvent::Ephemeral(e))
    }

    /// Adds a transactional logical message's event (ephemeral or presence) to the open
    /// transaction (ignored outside one).
    pub fn logical(&mut self, e: LogEvent) -> bool {
        let Some(txn) = self.txn.as_mut() else {
            return false;
        };
        if let LogEvent::Ephemeral(m) = &e {
            let w = m.payload.len() + m.channel.len() + m.event.len();
            if txn.bytes + w > self.max_txn_bytes {
                self.ephemeral_dropped += 1;
                return true;
            }
            txn.bytes += w;
        }
        txn.events.push(e);
        true
    }

    /// A non-transactional message at `lsn`: its own one-event batch, unless it is a replay.
    #[cfg(test)]
    pub fn non_transactional(&mut self, lsn: u64, e: Ephemeral) -> Option<CommitBatch> {
        self.non_transactional_event(lsn, LogEvent::Ephemeral(e))
    }

    /// A non-transactional logical message's event at `lsn`: its own one-event batch, unless
    /// it is a replay.
    pub fn non_transactional_event(&mut self, lsn: u64, e: LogEvent) -> Option<CommitBatch> {
        if lsn <= self.last_nontx_lsn {
            return None;
        }
        self.last_nontx_lsn = lsn;
        Some(CommitBatch { commit_lsn: lsn, events: vec![e], commit_time_micros: 0 })
    }

    /// Closes the open transaction at its commit record's LSN.
    pub fn commit(&mut self, commit_lsn: u64) -> CommitOutcome {
        let txn = self.txn.take();
        if commit_lsn <= self.last_commit_lsn {
            return CommitOutcome::Duplicate;
        }
        self.last_commit_lsn = commit_lsn;
        let Some(mut txn) = txn else {
            return CommitOutcome::Fresh { batch: None, position: None };
        };
        let mut any_stored = false;
        for ev in &mut txn.events {
            if let LogEvent::Stored(m) = ev {
                m.cursor.commit_lsn = commit_lsn;
                any_stored = true;
            }
        }
        if let Some(left) = txn.left.take() {
            any_stored = true;
            txn.events.push(LogEvent::FromLog(FromLog {
                channels: (!left.too_many_channels).then(|| left.channels.into_iter().collect()),
                last: Cursor::new(commit_lsn, left.last_seq),
                messages: left.messages,
                webhooks: left.webhooks,
            }));
        }
        let position = match (any_stored, txn.xid) {
            (true, Some(xid)) => Some(CommitPosition { xid, commit_lsn }),
            _ => None,
        };
        let batch = (!txn.events.is_empty()).then_some(CommitBatch {
            commit_lsn,
            events: txn.events,
            commit_time_micros: 0,
        });
        CommitOutcome::Fresh { batch, position }
    }
}

/// Acknowledgements waiting for positions to become durable.
#[derive(Debug, Default)]
pub struct AckQueue {
    pending: VecDeque<(u64, u64)>,
    last_queued: u64,
}

impl AckQueue {
    /// `ack` may be acknowledged once the durable commit LSN reaches `required`.
    /// Both must be non-decreasing across calls; a non-increasing `ack` is dropped.
    pub fn push(&mut self, required: u64, ack: u64) {
        if ack <= self.last_queued {
            return;
        }
        self.last_queued = ack;
        match self.pending.back_mut() {
            Some(back) if back.0 >= required => back.1 = ack,
            _ => self.pending.push_back((required, ack)),
        }
    }

    /// The highest LSN that may be acknowledged now, if any became ready.
    pub fn ready(&mut self, durable: u64) -> Option<u64> {
        let mut out = None;
        while let Some(&(required, ack)) = self.pending.front() {
            if required > durable {
                break;
            }
            out = Some(ack);
            self.pending.pop_front();
        }
        out
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Cursor;

    fn msg(seq: i64) -> StoredMessage {
        StoredMessage {
            id: format!("id{seq}"),
            seq,
            channel: "c".into(),
            event: "e".into(),
            payload: "{}".into(),
            sender_type: "system".into(),
            sender_id: None,
            created_at: "2026-11-23T10:50:00.000000Z".into(),
            cursor: Cursor::new(0, seq),
            wh_audience: 0,
        }
    }

    fn eph(n: &str) -> Ephemeral {
        Ephemeral { channel: "c".into(), event: n.into(), payload: "{}".into(), sender_id: None }
    }

    #[test]
    fn commit_builds_batch_in_wal_order_with_commit_lsn_cursors() {
        let mut a = Assembler::default();
        a.begin();
        a.stored(msg(2), Some("900".into()));
        a.ephemeral(eph("x"));
        a.stored(msg(3), Some("900".into()));
        let CommitOutcome::Fresh { batch, position } = a.commit(500) else { panic!() };
        let batch = batch.unwrap();
        assert_eq!(batch.commit_lsn, 500);
        assert_eq!(batch.events.len(), 3);
        assert!(matches!(&batch.events[0], LogEvent::Stored(m) if m.cursor == Cursor::new(500, 2)));
        assert!(matches!(&batch.events[1], LogEvent::Ephemeral(e) if e.event == "x"));
        assert!(matches!(&batch.events[2], LogEvent::Stored(m) if m.cursor == Cursor::new(500, 3)));
        assert_eq!(position, Some(CommitPosition { xid: "900".into(), commit_lsn: 500 }));
        assert!(!a.in_txn());
    }

    #[test]
    fn a_transaction_over_the_limit_leaves_its_stored_messages_in_the_log() {
        let per = msg(1).weight();
        let mut a = Assembler::new(per * 3);
        a.begin();
        let presence = crate::core::presence::PresenceOp::Sync { relay: "r".into(), nonce: "n".into() };
        a.stored(msg(1), Some("900".into()));
        a.ephemeral(eph("kept"));
        a.logical(LogEvent::Presence(presence.clone()));
        for seq in 2..=10 {
            let mut m = msg(seq);
            m.channel = if seq % 2 == 0 { "a".into() } else { "b".into() };
            m.wh_audience = i32::from(seq == 7);
            a.stored(m, Some("900".into()));
        }
        let CommitOutcome::Fresh { batch, position } = a.commit(500) else { panic!() };
        let events = batch.unwrap().events;
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(matches!(&events[0], LogEvent::Ephemeral(e) if e.event == "kept"));
        assert_eq!(events[1], LogEvent::Presence(presence));
        let expected = FromLog {
            channels: Some(vec!["a".into(), "b".into(), "c".into()]),
            last: Cursor::new(500, 10),
            messages: 10,
            webhooks: true,
        };
        assert_eq!(events[2], LogEvent::FromLog(expected));
        assert_eq!(position, Some(CommitPosition { xid: "900".into(), commit_lsn: 500 }));
        assert_eq!(a.left_in_log, 1);

        a.begin();
        a.stored(msg(11), Some("901".into()));
        let CommitOutcome::Fresh { batch, .. } = a.commit(600) else { panic!() };
        assert!(
            matches!(&batch.unwrap().events[0], LogEvent::Stored(_)),
            "the next transaction is held again"
        );
    }

    #[test]
    fn too_many_channels_means_every_subscriber_and_ephemeral_messages_past_the_limit_are_dropped() {
        let mut a = Assembler::new(1 << 20);
        a.begin();
        for seq in 0..=MAX_LISTED_CHANNELS as i64 + 1 {
            let mut m = msg(seq);
            m.channel = format!("c{seq}");
            m.payload = "x".repeat(200);
            a.stored(m, Some("1".into()));
        }
        let big = Ephemeral { payload: "y".repeat(1 << 20), ..eph("big") };
        a.ephemeral(big);
        let CommitOutcome::Fresh { batch, .. } = a.commit(700) else { panic!() };
        let events = batch.unwrap().events;
        assert_eq!(events.len(), 1, "the ephemeral message did not fit");
        let LogEvent::FromLog(f) = &events[0] else { panic!("{events:?}") };
        assert_eq!((f.channels.as_ref(), f.messages), (None, MAX_LISTED_CHANNELS as u64 + 2));
        assert_eq!(a.ephemeral_dropped, 1);
    }

    #[test]
    fn replayed_commits_after_reconnect_are_dropped() {
        let mut a = Assembler::default();
        for lsn in [100, 200] {
            a.begin();
            a.stored(msg(1), Some("1".into()));
            assert!(matches!(a.commit(lsn), CommitOutcome::Fresh { .. }));
        }
        a.reset_session();
        for lsn in [100, 200] {
            a.begin();
            a.stored(msg(1), Some("1".into()));
            assert_eq!(a.commit(lsn), CommitOutcome::Duplicate);
        }
        a.begin();
        assert!(matches!(a.commit(300), CommitOutcome::Fresh { batch: None, position: None }));
        assert_eq!(a.last_commit_lsn(), 300);
    }

    #[test]
    fn non_transactional_messages_never_cause_stored_messages_to_be_skipped() {
        let mut a = Assembler::default();
        assert!(a.non_transactional(1_000, eph("n1")).is_some());
        a.begin();
        a.stored(msg(1), Some("7".into()));
        let CommitOutcome::Fresh { batch, .. } = a.commit(400) else {
            panic!("a commit below an ephemeral's LSN must still be delivered")
        };
        assert_eq!(batch.unwrap().commit_lsn, 400);
        // replayed ephemeral is dropped, a later one passes
        assert!(a.non_transactional(1_000, eph("n1")).is_none());
        assert!(a.non_transactional(900, eph("old")).is_none());
        let b = a.non_transactional(1_100, eph("n2")).unwrap();
        assert_eq!(b.commit_lsn, 1_100);
        assert_eq!(a.last_commit_lsn(), 400);
    }

    #[test]
    fn transaction_without_stored_messages_has_no_position() {
        let mut a = Assembler::default();
        a.begin();
        a.ephemeral(eph("only"));
        let CommitOutcome::Fresh { batch, position } = a.commit(10) else { panic!() };
        assert_eq!(batch.unwrap().events.len(), 1);
        assert_eq!(position, None);
        assert!(!a.stored(msg(1), None), "outside a transaction");
    }

    #[test]
    fn acks_wait_for_durable_positions_and_coalesce() {
        let mut q = AckQueue::default();
        assert_eq!(q.ready(0), None);
        q.push(0, 50); // nothing to wait for
        q.push(100, 150);
        q.push(200, 250);
        q.push(200, 260); // same requirement: coalesced
        q.push(200, 255); // not increasing: dropped
        assert_eq!(q.len(), 3);
        assert_eq!(q.ready(0), Some(50));
        assert_eq!(q.ready(99), None);
        assert_eq!(q.ready(100), Some(150));
        assert_eq!(q.ready(1_000), Some(260));
        assert!(q.is_empty());
    }
}
