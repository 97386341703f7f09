//! Write-back of commit positions `(xid8, commit_lsn)` into `realtime.commits`.
//!
//! History and resume read cursors from the table (`messages ⋈ commits`), so every commit that
//! stored messages must get its row. The replication task hands positions over with
//! [`PositionsHandle::submit`] *after* the commit's batch was dispatched, so live delivery never
//! waits for this write. A background task batches them (up to [`MAX_BATCH`] or
//! [`FLUSH_INTERVAL`]) into one statement, retries with reconnect on any error, and publishes
//! the highest commit LSN whose position (and every earlier one) is durably written. The
//! replication task acknowledges WAL to the slot only up to that LSN, so a crash can never
//! lose a position: an unwritten commit is replayed by the slot and written again
//! (`ON CONFLICT DO NOTHING` makes that, and several relays writing the same rows, harmless).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::core::format_pg_lsn;

/// A batch is written at most this long after its first position arrived.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Largest number of positions in one statement.
pub const MAX_BATCH: usize = 1000;
/// Queue between replication and the writer. Only full when the writer has been failing for
/// this many commits; then replication waits (bounded memory) instead of growing without end.
pub const QUEUE_CAPACITY: usize = 100_000;

const INSERT_SQL: &str = "INSERT INTO realtime.commits (xid, commit_lsn) \
     SELECT x::xid8, l::pg_lsn FROM unnest($1::text[], $2::text[]) AS u(x, l) \
     ON CONFLICT DO NOTHING";

/// Writer health, shared with the replication task.
#[derive(Debug, Default)]
struct Health {
    /// The last attempt failed for lack of a working connection.
    failing: AtomicBool,
    /// Attempts that failed for lack of a working connection, ever.
    connection_failures: AtomicU64,
}

/// One commit's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPosition {
    /// The transaction's `xid8`, as text (decimal), taken from `realtime.messages.xid`.
    pub xid: String,
    pub commit_lsn: u64,
}

/// The replication task's side of the writer.
pub struct PositionsHandle {
    tx: mpsc::Sender<CommitPosition>,
    durable: watch::Receiver<u64>,
    last_submitted: u64,
    health: Arc<Health>,
    stop: CancellationToken,
    join: JoinHandle<()>,
}

impl PositionsHandle {
    /// Starts the writer on its own connection(s) made from `pg`.
    pub fn spawn(pg: super::db::Database) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (durable_tx, durable) = watch::channel(0);
        let stop = CancellationToken::new();
        let health = Arc::new(Health::default());
        let join = tokio::spawn(writer(pg, rx, durable_tx, health.clone(), stop.clone()));
        PositionsHandle { tx, durable, last_submitted: 0, health, stop, join }
    }

    /// Queues a position. Positions must be submitted in commit order. Waits only when
    /// [`QUEUE_CAPACITY`] positions are already waiting.
    pub async fn submit(&mut self, pos: CommitPosition) {
        let lsn = pos.commit_lsn;
        if self.tx.send(pos).await.is_ok() {
            self.last_submitted = self.last_submitted.max(lsn);
        }
    }

    /// Highest commit LSN submitted so far (0 if none).
    pub fn last_submitted(&self) -> u64 {
        self.last_submitted
    }

    /// Highest commit LSN such that it and every earlier submitted position are written.
    pub fn durable(&self) -> u64 {
        *self.durable.borrow()
    }

    /// True while the last write attempt failed for lack of a working connection (refused,
    /// closed, server shutting down) and the writer is retrying. SQL errors (say, a missing
    /// table) do not count: they hold acknowledgements back but are not a reason to drop the
    /// replication session.
    pub fn is_failing(&self) -> bool {
        self.health.failing.load(Ordering::Relaxed)
    }

    /// How many write attempts have failed for lack of a connection so far. Lets a caller tell
    /// a failure that happened while it waited from a stale one.
    pub fn connection_failures(&self) -> u64 {
        self.health.connection_failures.load(Ordering::Relaxed)
    }

    /// A receiver that changes whenever [`durable`](Self::durable) rises.
    pub fn durable_watch(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }

    /// Stops the writer after one best-effort flush (bounded by a few seconds). Anything not
    /// written was not acknowledged either, so the slot will replay it next time.
    pub async fn shutdown(self) {
        self.stop.cancel();
        drop(self.tx);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.join).await;
    }
}

async fn writer(
    pg: super::db::Database,
    mut rx: mpsc::Receiver<CommitPosition>,
    durable: watch::Sender<u64>,
    health: Arc<Health>,
    stop: CancellationToken,
) {
    let mut conn: Option<tokio_postgres::Client> = None;
    let mut batch: Vec<CommitPosition> = Vec::with_capacity(MAX_BATCH);
    loop {
        // Wait for the first position of a batch.
        let first = tokio::select! {
            p = rx.recv() => p,
            _ = stop.cancelled() => rx.try_recv().ok(),
        };
        let Some(first) = first else { return };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + FLUSH_INTERVAL;
        while batch.len() < MAX_BATCH {
            if stop.is_cancelled() {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
                continue;
            }
            tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => batch.push(p),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = stop.cancelled() => {}
            }
        }
        let top = batch.iter().map(|p| p.commit_lsn).max().unwrap_or(0);
        if !write_with_retry(&pg, &mut conn, &batch, &health, &stop).await {
            return; // stopped before it could be written: not acknowledged, will replay
        }
        debug!(
            count = batch.len(),
            up_to = %format_pg_lsn(top),
            "commit positions written"
        );
        batch.clear();
        durable.send_if_modified(|d| {
            let raised = top > *d;
            *d = (*d).max(top);
            raised
        });
    }
}

/// Writes `batch`, reconnecting with backoff until it succeeds. Returns false if stopped first
/// (after a stop, one attempt is still made so a clean shutdown flushes).
async fn write_with_retry(
    pg: &super::db::Database,
    conn: &mut Option<tokio_postgres::Client>,
    batch: &[CommitPosition],
    health: &Health,
    stop: &CancellationToken,
) -> bool {
    let xids: Vec<&str> = batch.iter().map(|p| p.xid.as_str()).collect();
    let lsns: Vec<String> = batch.iter().map(|p| format_pg_lsn(p.commit_lsn)).collect();
    let mut delay = Duration::from_millis(100);
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let result = async {
            if conn.as_ref().is_none_or(|c| c.is_closed()) {
                *conn = Some(connect(pg).await?);
            }
            let client = conn.as_ref().expect("connected above");
            client.execute(INSERT_SQL, &[&xids, &lsns]).await
        }
        .await;
        match result {
            Ok(_) => {
                health.failing.store(false, Ordering::Relaxed);
                return true;
            }
            Err(e) => {
                let lost = is_connection_error(&e);
                if lost {
                    health.connection_failures.fetch_add(1, Ordering::Relaxed);
                }
                health.failing.store(lost, Ordering::Relaxed);
                *conn = None;
                warn!(attempt, error = %super::describe_pg_error(&e), "writing commit positions to realtime.commits failed; retrying");
                if stop.is_cancelled() {
                    return false;
                }
                tokio::select! {
                    _ = tokio::time::sleep(super::jitter(delay)) => {}
                    _ = stop.cancelled() => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// No server error at all (I/O, closed), or SQLSTATE class 08 (connection exception) or 57
/// (operator intervention: admin shutdown, cannot connect now).
fn is_connection_error(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => matches!(&code.code()[..2], "08" | "57"),
    }
}

async fn connect(pg: &super::db::Database) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    Ok(pg.connect().await?.client)
}
