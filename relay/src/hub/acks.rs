//! Waiting publishers: message id → the channel that receives its cursor once the commit is
//! decoded from the log. The dispatcher [`Acks::claim`]s a batch's waiters before the hub
//! dispatches it and answers them after, so a publisher's reply follows the message's frames.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::core::event::{CommitBatch, LogEvent};
use crate::core::Cursor;

/// Pending publish acknowledgements.
#[derive(Default)]
pub struct Acks {
    pending: Mutex<HashMap<String, oneshot::Sender<Cursor>>>,
    len: AtomicUsize,
}

impl Acks {
    /// Registers `id`; the receiver gets its cursor when [`Acks::resolve`] sees it.
    pub fn expect(&self, id: &str) -> oneshot::Receiver<Cursor> {
        let (tx, rx) = oneshot::channel();
        let mut p = self.pending.lock().expect("acks lock");
        p.insert(id.to_string(), tx);
        self.len.store(p.len(), Ordering::Release);
        rx
    }

    /// Drops a registration nobody waits for any more.
    pub fn forget(&self, id: &str) {
        let mut p = self.pending.lock().expect("acks lock");
        p.remove(id);
        self.len.store(p.len(), Ordering::Release);
    }

    /// Takes the waiters of `batch`'s stored messages out of the table. Costs one atomic load
    /// when nobody waits.
    pub fn claim(&self, batch: &CommitBatch) -> Claimed {
        if self.len.load(Ordering::Acquire) == 0 {
            return Claimed(Vec::new());
        }
        let mut p = self.pending.lock().expect("acks lock");
        let mut claimed = Vec::new();
        for e in &batch.events {
            if let LogEvent::Stored(m) = e {
                if let Some(tx) = p.remove(&m.id) {
                    claimed.push((tx, m.cursor));
                }
            }
        }
        self.len.store(p.len(), Ordering::Release);
        Claimed(claimed)
    }
}

/// Waiters taken out by [`Acks::claim`], answered by [`Claimed::resolve`].
#[must_use]
pub struct Claimed(Vec<(oneshot::Sender<Cursor>, Cursor)>);

impl Claimed {
    /// Gives each waiter its cursor.
    pub fn resolve(self) {
        for (tx, cursor) in self.0 {
            let _ = tx.send(cursor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::StoredMessage;

    fn stored(id: &str, lsn: u64) -> LogEvent {
        LogEvent::Stored(StoredMessage {
            id: id.into(),
            seq: 1,
            channel: "c".into(),
            event: "e".into(),
            payload: "{}".into(),
            sender_type: "user".into(),
            sender_id: None,
            created_at: "2026-11-23T10:00:00.000000Z".into(),
            cursor: Cursor::new(lsn, 1),
            wh_audience: 0,
        })
    }

    #[test]
    fn waiting_id_gets_its_cursor_and_others_are_ignored() {
        let acks = Acks::default();
        let mut rx = acks.expect("a");
        acks.claim(&CommitBatch { commit_lsn: 7, events: vec![stored("b", 7)], commit_time_micros: 0 })
            .resolve();
        assert!(rx.try_recv().is_err());
        let claimed =
            acks.claim(&CommitBatch { commit_lsn: 9, events: vec![stored("a", 9)], commit_time_micros: 0 });
        assert!(rx.try_recv().is_err(), "answered only when resolved");
        claimed.resolve();
        assert_eq!(rx.try_recv().unwrap(), Cursor::new(9, 1));
        assert_eq!(acks.len.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn forgotten_id_is_not_kept() {
        let acks = Acks::default();
        let _rx = acks.expect("a");
        acks.forget("a");
        assert!(acks.pending.lock().unwrap().is_empty());
    }
}
