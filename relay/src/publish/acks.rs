//! Waiting publishers: message id → the channel that receives its cursor once the commit is
//! decoded from the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::pg::replication::{CommitBatch, LogEvent};

/// Pending publish acknowledgements.
#[derive(Default)]
pub struct Acks {
    pending: Mutex<HashMap<String, oneshot::Sender<String>>>,
    len: AtomicUsize,
}

impl Acks {
    /// Registers `id`; the receiver gets its cursor when [`Acks::resolve`] sees it.
    pub fn expect(&self, id: &str) -> oneshot::Receiver<String> {
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

    /// Resolves every waiting id in `batch`. Costs one atomic load when nobody waits.
    pub fn resolve(&self, batch: &CommitBatch) {
        if self.len.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut p = self.pending.lock().expect("acks lock");
        for e in &batch.events {
            if let LogEvent::Stored(m) = e {
                if let Some(tx) = p.remove(&m.id) {
                    let _ = tx.send(m.cursor.to_string());
                }
            }
        }
        self.len.store(p.len(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::cursor::Cursor;
    use crate::pg::replication::StoredMessage;

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
        acks.resolve(&CommitBatch { commit_lsn: 7, events: vec![stored("b", 7)], commit_time_micros: 0 });
        assert!(rx.try_recv().is_err());
        acks.resolve(&CommitBatch { commit_lsn: 9, events: vec![stored("a", 9)], commit_time_micros: 0 });
        assert_eq!(rx.try_recv().unwrap(), Cursor::new(9, 1).to_string());
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
