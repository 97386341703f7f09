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
//! ## Acknowledgement
//!
//! The slot may be told "done up to X" only when every commit ending at or before X was
//! dispatched **and** its position written to `realtime.commits`. [`AckQueue`] holds
//! `(required durable commit LSN, LSN to acknowledge)` pairs and releases them as the
//! position writer's durable watermark rises.

use std::collections::VecDeque;

#[cfg(test)]
use crate::core::event::Ephemeral;
use crate::core::event::{CommitBatch, LogEvent, StoredMessage};
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

#[derive(Debug)]
struct OpenTxn {
    events: Vec<LogEvent>,
    xid: Option<String>,
}

/// Collects events between Begin and Commit and de-duplicates replays.
#[derive(Debug, Default)]
pub struct Assembler {
    txn: Option<OpenTxn>,
    last_commit_lsn: u64,
    last_nontx_lsn: u64,
}

impl Assembler {
    pub fn begin(&mut self) {
        self.txn = Some(OpenTxn { events: Vec::new(), xid: None });
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
        txn.events.push(LogEvent::Stored(msg));
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
