//! Write-back of `realtime.messages.ws_audience_count`: how many local subscribers each stored
//! message was sent to, off the delivery path.
//!
//! The dispatcher hands over `(message id, subscribers)` pairs for messages that had
//! subscribers ([`AudienceHandle::submit`], never waits: when the queue is full the counts are
//! dropped and counted in [`AudienceHandle::dropped`]). A task sums them per message and writes
//! each batch (up to [`MAX_BATCH`] messages or [`FLUSH_INTERVAL`]) with one call of
//! `realtime.add_ws_audience(ids, counts)` (one `UPDATE ... FROM unnest(...)`); several relays
//! each add their own count. The counts are best effort: a relay
//! that crashes loses its unwritten counts, never a message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::PgError;

/// Counts are written at most this long after they arrived.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Most messages in one statement.
pub const MAX_BATCH: usize = 1000;
/// Dispatched batches waiting for the writer.
pub const QUEUE_CAPACITY: usize = 4096;

const UPDATE_SQL: &str = "SELECT realtime.add_ws_audience($1, $2)";

/// The dispatcher's side of the writer.
pub struct AudienceHandle {
    tx: mpsc::Sender<Vec<(String, u32)>>,
    pub dropped: Arc<AtomicU64>,
    join: JoinHandle<()>,
}

impl AudienceHandle {
    /// Starts the writer on `pool`.
    pub fn spawn(pool: Pool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        AudienceHandle { tx, dropped: Arc::default(), join: tokio::spawn(writer(pool, rx)) }
    }

    /// Queues one dispatched batch's counts without waiting.
    pub fn submit(&self, counts: Vec<(String, u32)>) {
        if counts.is_empty() {
            return;
        }
        let n = counts.len() as u64;
        if self.tx.try_send(counts).is_err() {
            self.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Writes what is queued and stops (at most `limit`).
    pub async fn close(self, limit: Duration) {
        drop(self.tx);
        if tokio::time::timeout(limit, self.join).await.is_err() {
            tracing::warn!("ws_audience_count writer did not finish in time");
        }
    }
}

async fn writer(pool: Pool, mut rx: mpsc::Receiver<Vec<(String, u32)>>) {
    let mut pending: HashMap<String, u32> = HashMap::new();
    loop {
        let Some(first) = rx.recv().await else { return };
        add(&mut pending, first);
        let deadline = tokio::time::sleep(FLUSH_INTERVAL);
        tokio::pin!(deadline);
        let mut closed = false;
        while pending.len() < MAX_BATCH {
            tokio::select! {
                got = rx.recv() => match got {
                    Some(counts) => add(&mut pending, counts),
                    None => { closed = true; break; }
                },
                _ = &mut deadline => break,
            }
        }
        let (ids, counts): (Vec<String>, Vec<i32>) =
            pending.drain().map(|(id, n)| (id, i32::try_from(n).unwrap_or(i32::MAX))).unzip();
        if let Err(e) = write(&pool, &ids, &counts).await {
            tracing::warn!(error = %e, messages = ids.len(), "cannot write ws_audience_count; counts dropped");
        }
        if closed {
            return;
        }
    }
}

fn add(pending: &mut HashMap<String, u32>, counts: Vec<(String, u32)>) {
    for (id, n) in counts {
        *pending.entry(id).or_default() += n;
    }
}

async fn write(pool: &Pool, ids: &[String], counts: &[i32]) -> Result<(), PgError> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(UPDATE_SQL).await?;
    client.query_one(&stmt, &[&ids, &counts]).await?;
    Ok(())
}
