//! Presence in Postgres, the medium every relay of a database shares:
//!
//! * `realtime.presence` (UNLOGGED): one row per tracking connection; every write happens in
//!   the same transaction as a transactional `realtime:presence` logical message carrying the
//!   op, so every relay decodes the ops in commit order (the table is only read at start-up).
//!   Ops are emitted with `realtime.emit_message`, which seals them with the relay keys
//!   (relays drop unsealed ones, which any login could emit).
//! * `realtime.relays` (UNLOGGED): one row per live relay, with its heartbeat.
//!
//! [`Presence`] is the relay's handle: sessions queue writes to one writer task, which batches
//! whatever is queued into one transaction (one commit for many joins) and retries untracks
//! until they succeed, so a closed connection never stays a member because Postgres blinked.
//! The statements the presence task (`crate::service::presence_task`) runs: [`register`] the
//! relay (removing rows a previous crash of the same relay id left), [`heartbeat`], [`reap`]
//! relays whose heartbeat is older than the timeout (one `DELETE ... RETURNING` on
//! `realtime.relays`: row locks make exactly one relay win; their rows deleted and a `reap` op
//! emitted in the same transaction), the start-up marker and table read of the view's load.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::replication::PRESENCE_PREFIX;
use super::PgError;
use crate::core::presence::{canonical_state, PresenceOp, Tracked};

/// Writes queued at most.
const QUEUE: usize = 4096;
/// Writes in one transaction at most.
const BATCH: usize = 256;

enum Write {
    Track(Tracked, oneshot::Sender<Result<(), PgError>>),
    Untrack {
        conn: String,
        channels: Vec<String>,
        done: Option<oneshot::Sender<Result<(), PgError>>>,
    },
    /// Our registration was lost (reaped while alive, or the UNLOGGED tables were emptied by
    /// a crash of Postgres): write every local entry again.
    Resync,
}

/// The relay's presence handle (see the module docs).
pub struct Presence {
    relay_id: String,
    /// Random per process: connection ids never repeat across restarts.
    epoch: String,
    tx: mpsc::Sender<Write>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Write>>>,
    /// Relays this relay declared dead.
    pub reaped: AtomicU64,
}

impl Presence {
    pub fn new(relay_id: &str) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            relay_id: relay_id.to_string(),
            epoch: format!("{:08x}", rand::random::<u32>()),
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            reaped: AtomicU64::new(0),
        }
    }

    pub fn relay_id(&self) -> &str {
        &self.relay_id
    }

    /// This process's random epoch (registered with the relay id).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Our registration was lost: the writer writes every local entry again.
    pub async fn resync(&self) {
        let _ = self.tx.send(Write::Resync).await;
    }

    /// The presence connection id of session `session` of this process.
    pub fn conn_id(&self, session: u64) -> String {
        format!("{}.{}.{session}", self.relay_id, self.epoch)
    }

    /// Tracks (or re-tracks) `t`; answers once it is committed.
    pub async fn track(&self, t: Tracked) -> Result<(), PgError> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Write::Track(t, done)).await.map_err(|_| PgError::Closed)?;
        rx.await.map_err(|_| PgError::Closed)?
    }

    /// Untracks `conn` from `channels`; answers once committed (it is retried in the
    /// background after a failure either way).
    pub async fn untrack(&self, conn: &str, channels: Vec<String>) -> Result<(), PgError> {
        let (done, rx) = oneshot::channel();
        let w = Write::Untrack { conn: conn.to_string(), channels, done: Some(done) };
        self.tx.send(w).await.map_err(|_| PgError::Closed)?;
        rx.await.map_err(|_| PgError::Closed)?
    }

    /// Untracks without waiting for the outcome (a closing connection).
    pub async fn untrack_later(&self, conn: &str, channels: Vec<String>) {
        if channels.is_empty() {
            return;
        }
        let w = Write::Untrack { conn: conn.to_string(), channels, done: None };
        let _ = self.tx.send(w).await;
    }
}

/// `WITH w AS (upsert) SELECT realtime.emit_message(true, prefix, op)`: the row and its op
/// commit together.
const TRACK_SQL: &str = "WITH w AS (\
    INSERT INTO realtime.presence (channel, conn_id, presence_id, relay_id, user_id, state, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, clock_timestamp()) \
    ON CONFLICT (channel, conn_id) DO UPDATE SET presence_id = excluded.presence_id, \
    user_id = excluded.user_id, state = excluded.state, updated_at = excluded.updated_at) \
    SELECT realtime.emit_message(true, $7, $8)";
const UNTRACK_SQL: &str = "WITH w AS (\
    DELETE FROM realtime.presence WHERE conn_id = $1 AND channel = ANY($2)) \
    SELECT realtime.emit_message(true, $3, $4)";

/// The writer task: batches queued writes into transactions, in queue order.
pub async fn writer(pool: Pool, presence: Arc<Presence>, shutdown: CancellationToken) {
    let Some(mut rx) = presence.rx.lock().expect("presence rx").take() else { return };
    // Entries this relay wrote (for Resync); untracks still to be retried, oldest first.
    let mut local: HashMap<(String, String), Tracked> = HashMap::new();
    let mut retry: Vec<Write> = Vec::new();
    // Writes of a batch Postgres refused: tried one by one, so one bad write fails alone.
    let mut solo: std::collections::VecDeque<Write> = Default::default();
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut batch = std::mem::take(&mut retry);
        if batch.is_empty() {
            if let Some(w) = solo.pop_front() {
                batch.push(w);
            }
        }
        if batch.is_empty() {
            tokio::select! {
                w = rx.recv() => match w { Some(w) => batch.push(w), None => return },
                _ = shutdown.cancelled() => return,
            }
        }
        while batch.len() < BATCH && solo.is_empty() {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let resync = batch.iter().any(|w| matches!(w, Write::Resync));
        let mut ops: Vec<(String, Vec<String>, Option<Tracked>)> = Vec::new(); // for local bookkeeping
        let result =
            write_batch(&pool, &presence.relay_id, &batch, if resync { Some(&local) } else { None }).await;
        match result {
            Ok(()) => {
                backoff = Duration::from_millis(100);
                for w in batch {
                    match w {
                        Write::Track(t, done) => {
                            ops.push((t.conn.clone(), vec![t.channel.clone()], Some(t)));
                            let _ = done.send(Ok(()));
                        }
                        Write::Untrack { conn, channels, done } => {
                            ops.push((conn, channels, None));
                            if let Some(done) = done {
                                let _ = done.send(Ok(()));
                            }
                        }
                        Write::Resync => {}
                    }
                }
                for (conn, channels, t) in ops {
                    match t {
                        Some(t) => {
                            local.insert((t.channel.clone(), conn), t);
                        }
                        None => channels.into_iter().for_each(|c| {
                            local.remove(&(c, conn.clone()));
                        }),
                    }
                }
            }
            Err(PgError::Db(e)) if e.as_db_error().is_some() && batch.len() > 1 => {
                // Postgres refused something in the batch (not an outage): isolate it.
                tracing::warn!(error = %e, writes = batch.len(), "presence batch refused; writing one by one");
                solo.extend(batch);
            }
            Err(e) => {
                tracing::warn!(error = %e, writes = batch.len(), "presence write failed");
                let message = e.to_string();
                for w in batch {
                    match w {
                        Write::Track(_, done) => {
                            let _ = done.send(Err(PgError::Write(message.clone())));
                        }
                        Write::Untrack { conn, channels, done } => {
                            if let Some(done) = done {
                                let _ = done.send(Err(PgError::Write(message.clone())));
                            }
                            retry.push(Write::Untrack { conn, channels, done: None });
                        }
                        Write::Resync => retry.push(Write::Resync),
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(super::jitter(backoff)) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One transaction for the whole batch; `resync` first rewrites every local entry.
async fn write_batch(
    pool: &Pool,
    relay: &str,
    batch: &[Write],
    resync: Option<&HashMap<(String, String), Tracked>>,
) -> Result<(), PgError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let track = tx.prepare_cached(TRACK_SQL).await?;
    let untrack = tx.prepare_cached(UNTRACK_SQL).await?;
    let upsert = |t: &Tracked| {
        let op = PresenceOp::Track(t.clone()).to_json();
        let (tx, track) = (&tx, &track);
        let t = t.clone();
        async move {
            tx.execute(
                track,
                &[&t.channel, &t.conn, &t.presence_id, &relay, &t.user_id, &t.state, &PRESENCE_PREFIX, &op],
            )
            .await
        }
    };
    if let Some(local) = resync {
        for t in local.values() {
            upsert(t).await?;
        }
    }
    for w in batch {
        match w {
            Write::Track(t, _) => {
                upsert(t).await?;
            }
            Write::Untrack { conn, channels, .. } => {
                let op = PresenceOp::Untrack { conn: conn.clone(), channels: channels.clone() }.to_json();
                tx.execute(&untrack, &[conn, channels, &PRESENCE_PREFIX, &op]).await?;
            }
            Write::Resync => {}
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Registers this relay. With `cleanup`, first deletes rows a previous run with the same relay
/// id left behind and emits a `reap` op for them.
pub async fn register(pool: &Pool, relay: &str, epoch: &str, cleanup: bool) -> Result<u64, PgError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut left = 0;
    if cleanup {
        left = tx.execute("DELETE FROM realtime.presence WHERE relay_id = $1", &[&relay]).await?;
        let op = PresenceOp::Reap { relay: relay.to_string() }.to_json();
        tx.execute("SELECT realtime.emit_message(true, $1, $2)", &[&PRESENCE_PREFIX, &op]).await?;
    }
    tx.execute(
        "INSERT INTO realtime.relays (relay_id, epoch, started_at, heartbeat_at) VALUES ($1, $2, now(), now()) \
         ON CONFLICT (relay_id) DO UPDATE SET epoch = excluded.epoch, started_at = now(), heartbeat_at = now()",
        &[&relay, &epoch],
    )
    .await?;
    tx.commit().await?;
    Ok(left)
}

/// Heartbeat; false when our registration is gone.
pub async fn heartbeat(pool: &Pool, relay: &str, epoch: &str) -> Result<bool, PgError> {
    let client = pool.get().await?;
    let n = client
        .execute(
            "UPDATE realtime.relays SET heartbeat_at = now() WHERE relay_id = $1 AND epoch = $2",
            &[&relay, &epoch],
        )
        .await?;
    Ok(n == 1)
}

/// Declares relays with a heartbeat older than `timeout` dead; returns their ids.
pub async fn reap(pool: &Pool, me: &str, timeout: Duration) -> Result<Vec<String>, PgError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let dead: Vec<String> = tx
        .query(
            "DELETE FROM realtime.relays WHERE relay_id <> $1 \
             AND heartbeat_at < now() - make_interval(secs => $2) RETURNING relay_id",
            &[&me, &timeout.as_secs_f64()],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for relay in &dead {
        tx.execute("DELETE FROM realtime.presence WHERE relay_id = $1", &[relay]).await?;
        let op = PresenceOp::Reap { relay: relay.clone() }.to_json();
        tx.execute("SELECT realtime.emit_message(true, $1, $2)", &[&PRESENCE_PREFIX, &op]).await?;
    }
    tx.commit().await?;
    Ok(dead)
}

/// Emits the non-transactional start-up marker `nonce` of `relay` (see
/// `crate::hub::presence_sync`).
pub async fn emit_marker(pool: &Pool, relay: &str, nonce: &str) -> Result<(), PgError> {
    let op = PresenceOp::Sync { relay: relay.to_string(), nonce: nonce.to_string() }.to_json();
    pool.get()
        .await?
        .execute("SELECT realtime.emit_message(false, $1, $2)", &[&PRESENCE_PREFIX, &op])
        .await?;
    Ok(())
}

/// Every entry of `realtime.presence`, oldest first, states in canonical form.
pub async fn entries(pool: &Pool) -> Result<Vec<Tracked>, PgError> {
    let rows = pool
        .get()
        .await?
        .query(
            "SELECT channel, conn_id, relay_id, presence_id, user_id, state::text \
             FROM realtime.presence ORDER BY updated_at, conn_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Tracked {
            channel: r.get(0),
            conn: r.get(1),
            relay: r.get(2),
            presence_id: r.get(3),
            user_id: r.get(4),
            state: canonical_state(r.get(5)),
        })
        .collect())
}

/// Graceful stop: this relay's entries leave everywhere and its registration is removed.
pub async fn retire(pool: &Pool, relay: &str) -> Result<(), PgError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("DELETE FROM realtime.presence WHERE relay_id = $1", &[&relay]).await?;
    let op = PresenceOp::Reap { relay: relay.to_string() }.to_json();
    tx.execute("SELECT realtime.emit_message(true, $1, $2)", &[&PRESENCE_PREFIX, &op]).await?;
    tx.execute("DELETE FROM realtime.relays WHERE relay_id = $1", &[&relay]).await?;
    tx.commit().await?;
    Ok(())
}
