//! The replication task: follows `realtime.messages` (publication `realtime_messages`) and the
//! `realtime:` logical messages through a `pgoutput` slot and hands every commit to the hub as a
//! [`CommitBatch`], in commit order, each commit once.
//!
//! * **Connection.** `database_url` is parsed with tokio-postgres' parser (URL or `key=value`,
//!   `host=/tmp` Unix sockets included). A normal connection makes sure the slot exists
//!   (`pg_create_logical_replication_slot(slot, 'pgoutput')`) and reads its confirmed position;
//!   `pgwire-replication` then streams from there with `proto_version '1'`,
//!   `publication_names`, `messages 'true'`. The walsender session pins `TimeZone=UTC` and
//!   `DateStyle=ISO`, so `created_at` decodes as `2026-11-23 10:50:00.123456+00` and becomes
//!   `2026-11-23T10:50:00.123456Z`.
//! * **Commits.** Events between Begin and Commit are collected; at Commit the batch is built
//!   with cursors from the commit record's LSN (`Commit.lsn`, equal to Begin's `final_lsn`, the
//!   same on every relay), replays are dropped (see `repl_txn.rs`), the batch is sent on
//!   `out` (awaited: bounded backpressure), then `(xid8, commit_lsn)` goes to
//!   [`super::positions`]. Non-transactional logical messages become one-event batches.
//! * **Acknowledgement.** The slot is told `end_lsn` of a commit only after its batch was sent
//!   and its position is durably in `realtime.commits`; on an idle stream the keepalive's WAL
//!   end is acknowledged the same way, so unrelated database traffic does not pin WAL.
//!   A Postgres fast shutdown waits for its logical walsender until the client confirmed all
//!   it was sent, while refusing the new connection the position writer needs: when the writer
//!   loses its connection and an acknowledgement has waited over a second, the session is
//!   dropped ([`ReplicationError::PositionsStalled`]) so the server can stop; the slot replays.
//! * **Failures.** Any error ends the session: `streaming` goes false, a warning with the
//!   attempt number is logged, and it reconnects with jittered backoff (100 ms doubling to 5 s)
//!   until `shutdown`. Only an unusable configuration (bad URL, slot or publication name) is
//!   returned as an error. A row that cannot be decoded is logged and skipped (counted in
//!   [`ReplicationStatus::decode_errors`]) rather than wedging the stream forever.
//! * **Sealed messages.** A `realtime:` logical message is handled only when its body carries a
//!   seal made with a key of `realtime.relay_keys` ([`keys`]); any other is dropped, counted per
//!   prefix ([`ReplicationStatus::forged_messages`]) and logged (at most one warning per
//!   [`FORGED_WARN_EVERY`]). Keys that cannot be read end the session (the slot replays).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pgwire_replication::{Lsn, ReplicationClient, ReplicationEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, trace, warn};

use self::pgoutput::{DecodeError, PgOutputMessage, RelationCache};
use super::positions::PositionsHandle;
use crate::core::event::{CommitBatch, LogEvent};
use crate::core::format_pg_lsn;

mod conn;
pub(crate) mod events;
mod keys;
pub mod pgoutput;
mod txn;

use super::jitter;
use conn::{ensure_slot, stream_config, validate_names};
pub use conn::{ReplicationConfig, ReplicationError};
pub use events::{
    pg_timestamptz_to_rfc3339, prefix_label, EventError, BROADCAST_PREFIX, CHANNELS_PREFIX, FORGED_LABELS,
    KEYS_PREFIX, PRESENCE_PREFIX, REALTIME_PREFIX,
};
use keys::KeyRing;
use txn::{AckQueue, Assembler, CommitOutcome};

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long an acknowledgement may wait on a failing position writer before the session is
/// released (see [`ReplicationError::PositionsStalled`]).
const ACK_STALL_LIMIT: Duration = Duration::from_secs(1);
/// At most one warning about dropped (unsealed or wrongly sealed) messages per this interval.
pub const FORGED_WARN_EVERY: Duration = Duration::from_secs(10);

/// Shared, lock-free view of the stream for health checks and metrics.
#[derive(Debug, Default)]
pub struct ReplicationStatus {
    /// True while START_REPLICATION is confirmed and the session is alive.
    pub streaming: AtomicBool,
    /// Commit LSN of the last transaction dispatched (0 before the first).
    pub last_commit_lsn: AtomicU64,
    /// Highest LSN acknowledged to the slot.
    pub acked_lsn: AtomicU64,
    /// Sessions lost and retried since start.
    pub reconnects: AtomicU64,
    /// Rows or messages that could not be decoded and were skipped.
    pub decode_errors: AtomicU64,
    /// The server's WAL end as last reported (XLogData and keepalive headers).
    pub server_wal_end: AtomicU64,
    /// WAL handled up to here: the end of the last commit, or a keepalive's WAL end between
    /// transactions. `server_wal_end - handled_lsn` is the catch-up lag in bytes.
    pub handled_lsn: AtomicU64,
    /// The slot position the first session of this process streamed from (0 before it
    /// started): every commit below it was dispatched by an earlier run, every commit above
    /// it comes through this process. Seeds the hub position.
    origin_lsn: AtomicU64,
    /// Highest LSN `X` such that every committed transaction with commit LSN `<= X` that
    /// stored messages has its row in `realtime.commits` (see [`Self::readable_lsn`]).
    readable_lsn: AtomicU64,
    readable: tokio::sync::Notify,
    /// Notified when a committed transaction changed `realtime.channels` (its trigger emits a
    /// `realtime:channels` message): permissions are checked again at once.
    pub channels_changed: tokio::sync::Notify,
    /// Transactions over `--max-txn-bytes` whose stored messages were read from the log.
    pub large_txns: AtomicU64,
    /// Ephemeral messages dropped from such transactions (past `--max-txn-bytes` themselves).
    pub large_txn_ephemeral_dropped: AtomicU64,
    /// `realtime:` logical messages dropped because their seal is missing or does not verify,
    /// by [`FORGED_LABELS`] index.
    forged: [AtomicU64; FORGED_LABELS.len()],
}

impl ReplicationStatus {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_streaming(&self) -> bool {
        self.streaming.load(Ordering::Relaxed)
    }

    pub fn last_commit_lsn(&self) -> u64 {
        self.last_commit_lsn.load(Ordering::Relaxed)
    }

    /// Bytes of WAL the server has and this relay has not handled yet (0 when caught up).
    pub fn lag_bytes(&self) -> u64 {
        let end = self.server_wal_end.load(Ordering::Relaxed);
        end.saturating_sub(self.handled_lsn.load(Ordering::Relaxed))
    }

    /// Dropped unsealed or wrongly sealed messages whose prefix has `label` (one of
    /// [`FORGED_LABELS`]; 0 for any other label).
    pub fn forged_messages(&self, label: &str) -> u64 {
        FORGED_LABELS.iter().position(|l| *l == label).map_or(0, |i| self.forged[i].load(Ordering::Relaxed))
    }

    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// See `origin_lsn`; 0 until the first session started.
    pub fn origin_lsn(&self) -> u64 {
        self.origin_lsn.load(Ordering::Acquire)
    }

    /// History and resume read `messages ⋈ commits`; a read that must be complete up to commit
    /// LSN `X` may run once `readable_lsn() >= X`. Raised from three sound sources: the slot's
    /// confirmed position at session start (acknowledged only after its positions were
    /// written), every acknowledgement, and the position writer's durable watermark.
    pub fn readable_lsn(&self) -> u64 {
        self.readable_lsn.load(Ordering::Acquire)
    }

    /// Raises [`Self::readable_lsn`] and wakes waiters.
    pub fn raise_readable(&self, lsn: u64) {
        if self.readable_lsn.fetch_max(lsn, Ordering::AcqRel) < lsn {
            self.readable.notify_waiters();
        }
    }

    /// Waits until [`Self::readable_lsn`] `>= lsn`, at most `limit`; returns whether it is.
    pub async fn wait_readable(&self, lsn: u64, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.readable.notified();
            if self.readable_lsn() >= lsn {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.readable_lsn() >= lsn;
            }
        }
    }

    /// A session streams from `start` (the slot's confirmed position).
    fn session_started(&self, start: u64) {
        let _ = self.origin_lsn.compare_exchange(0, start.max(1), Ordering::AcqRel, Ordering::Acquire);
        self.raise_readable(start);
    }
}

/// Follows the log until `shutdown`, reconnecting forever. Returns `Ok` on shutdown.
pub async fn run(
    cfg: ReplicationConfig,
    out: mpsc::Sender<CommitBatch>,
    status: Arc<ReplicationStatus>,
    shutdown: CancellationToken,
) -> Result<(), ReplicationError> {
    let db = super::db::Database::parse(&cfg.database_url)
        .map_err(|e| ReplicationError::InvalidDatabaseUrl(e.to_string()))?;
    validate_names(&cfg)?;
    let cfg_max_txn_bytes = cfg.max_txn_bytes;
    stream_config(&db.pg, &cfg, 0, None)?; // fail fast on a URL we cannot stream from
    let mut st = Stream {
        cfg,
        db: db.clone(),
        out,
        status,
        shutdown,
        positions: PositionsHandle::spawn(db),
        asm: Assembler::new(cfg_max_txn_bytes),
        acks: AckQueue::default(),
        ack_wait: None,
        backoff: BACKOFF_START,
        attempt: 0,
        keys: KeyRing::default(),
        forged_warned: None,
        forged_unwarned: 0,
    };
    let result = loop {
        let res = st.session().await;
        st.status.streaming.store(false, Ordering::Relaxed);
        st.asm.reset_session();
        match res {
            Ok(()) => break Ok(()),
            Err(_) if st.shutdown.is_cancelled() => break Ok(()),
            Err(ReplicationError::OutputClosed) => break Err(ReplicationError::OutputClosed),
            Err(e) => {
                st.attempt += 1;
                st.status.reconnects.fetch_add(1, Ordering::Relaxed);
                warn!(attempt = st.attempt, slot = %st.cfg.slot, error = %e,
                    "replication stream lost; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(jitter(st.backoff)) => {}
                    _ = st.shutdown.cancelled() => break Ok(()),
                }
                st.backoff = (st.backoff * 2).min(BACKOFF_MAX);
            }
        }
    };
    st.positions.shutdown().await;
    info!(slot = %st.cfg.slot, "replication stopped");
    result
}

/// Outcome of handling one event.
enum Step {
    Continue,
    Shutdown,
}

struct Stream {
    cfg: ReplicationConfig,
    db: super::db::Database,
    out: mpsc::Sender<CommitBatch>,
    status: Arc<ReplicationStatus>,
    shutdown: CancellationToken,
    positions: PositionsHandle,
    asm: Assembler,
    acks: AckQueue,
    /// Since when the oldest pending acknowledgement has been waiting, and the writer's
    /// connection-failure count at that moment.
    ack_wait: Option<(tokio::time::Instant, u64)>,
    backoff: Duration,
    attempt: u32,
    keys: KeyRing,
    /// When the last warning about dropped messages was logged, and how many were dropped
    /// since without one.
    forged_warned: Option<tokio::time::Instant>,
    forged_unwarned: u64,
}

impl Stream {
    /// One replication session. `Ok` only on shutdown.
    async fn session(&mut self) -> Result<(), ReplicationError> {
        let (start, encrypted) = tokio::select! {
            r = ensure_slot(&self.db, &self.cfg.slot) => r?,
            _ = self.shutdown.cancelled() => return Ok(()),
        };
        tokio::select! {
            r = self.keys.load(&self.db) => r.map_err(ReplicationError::Keys)?,
            _ = self.shutdown.cancelled() => return Ok(()),
        }
        debug!(keys = self.keys.len(), "relay keys loaded");
        // The stream is encrypted when the slot's connection was (same sslmode, same server).
        let bridge = match encrypted {
            true => Some(crate::pg::tls_bridge::bridge(&self.db).await.map_err(ReplicationError::Tls)?),
            false => None,
        };
        let config = stream_config(&self.db.pg, &self.cfg, start, bridge.as_ref())?;
        let mut client = ReplicationClient::connect(config).await?;
        tokio::select! {
            r = client.wait_started() => r?,
            _ = self.shutdown.cancelled() => {
                stop_client(client).await;
                return Ok(());
            }
        }
        self.status.session_started(start);
        self.status.streaming.store(true, Ordering::Relaxed);
        info!(slot = %self.cfg.slot, from = %format_pg_lsn(start), attempt = self.attempt,
            "replication streaming");
        self.backoff = BACKOFF_START;
        self.attempt = 0;
        let mut relations = RelationCache::default();
        let mut durable = self.positions.durable_watch();
        let mut writer_alive = true;
        let mut stall_check = tokio::time::interval(ACK_STALL_LIMIT / 2);
        let mut key_refresh = tokio::time::interval(keys::REFRESH_EVERY / 4);
        self.ack_wait = None;
        self.apply_acks(&client);
        loop {
            let step = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => Step::Shutdown,
                _ = stall_check.tick() => {
                    // Stalled: waiting for long, and the writer lost its connection during
                    // the wait (not a stale failure from before) and has not recovered.
                    let stalled = self.ack_wait.is_some_and(|(since, failures)| {
                        since.elapsed() >= ACK_STALL_LIMIT
                            && self.positions.connection_failures() > failures
                            && self.positions.is_failing()
                    });
                    if stalled {
                        client.abort();
                        return Err(ReplicationError::PositionsStalled);
                    }
                    Step::Continue
                }
                _ = key_refresh.tick() => {
                    if self.keys.is_stale() {
                        if let Err(e) = self.keys.load(&self.db).await {
                            warn!(error = %e, "relay keys could not be read again; keeping the loaded ones");
                        }
                    }
                    Step::Continue
                }
                changed = durable.changed(), if writer_alive => {
                    writer_alive = changed.is_ok();
                    self.status.raise_readable(self.positions.durable());
                    self.apply_acks(&client);
                    Step::Continue
                }
                ev = client.recv() => match ev? {
                    Some(ev) => self.handle(ev, &mut relations, &client).await?,
                    None => return Err(ReplicationError::StreamEnded),
                },
            };
            if let Step::Shutdown = step {
                stop_client(client).await;
                return Ok(());
            }
        }
    }

    async fn handle(
        &mut self,
        ev: ReplicationEvent,
        relations: &mut RelationCache,
        client: &ReplicationClient,
    ) -> Result<Step, ReplicationError> {
        match ev {
            ReplicationEvent::Begin { .. } => self.asm.begin(),
            ReplicationEvent::XLogData { data, wal_end, .. } => {
                self.status.server_wal_end.fetch_max(wal_end.as_u64(), Ordering::Relaxed);
                return self.xlog(data, relations, client).await;
            }
            ReplicationEvent::Message { transactional, lsn, prefix, content } => {
                return self.message(transactional, lsn.as_u64(), &prefix, &content).await
            }
            ReplicationEvent::Commit { lsn, end_lsn, commit_time_micros } => {
                return self.commit(lsn.as_u64(), end_lsn.as_u64(), commit_time_micros, client).await
            }
            ReplicationEvent::KeepAlive { wal_end, .. } => {
                self.status.server_wal_end.fetch_max(wal_end.as_u64(), Ordering::Relaxed);
                // Outside a transaction everything before wal_end has been handled.
                if !self.asm.in_txn() {
                    self.status.handled_lsn.fetch_max(wal_end.as_u64(), Ordering::Relaxed);
                    self.acks.push(self.positions.last_submitted(), wal_end.as_u64());
                    self.apply_acks(client);
                }
            }
            ReplicationEvent::StoppedAt { .. } => {}
        }
        Ok(Step::Continue)
    }

    async fn xlog(
        &mut self,
        data: Bytes,
        relations: &mut RelationCache,
        client: &ReplicationClient,
    ) -> Result<Step, ReplicationError> {
        let msg = match pgoutput::decode(&data) {
            Ok(m) => m,
            Err(e) => {
                self.decode_error(&e);
                return Ok(Step::Continue);
            }
        };
        match msg {
            PgOutputMessage::Relation(rel) => {
                debug!(relation = %rel.qualified_name(), id = rel.id, "relation");
                relations.insert(rel);
            }
            PgOutputMessage::Insert { relation_id, values } => {
                let rel = match relations.get(relation_id) {
                    Ok(r) => r,
                    Err(e) => {
                        self.decode_error(&e);
                        return Ok(Step::Continue);
                    }
                };
                if rel.namespace != "realtime" || rel.name != "messages" {
                    trace!(relation = %rel.qualified_name(), "insert into other table ignored");
                    return Ok(Step::Continue);
                }
                let decoded = rel
                    .row(&values)
                    .map_err(|e| e.to_string())
                    .and_then(|row| events::stored_from_row(&row, 0).map_err(|e| e.to_string()));
                match decoded {
                    Ok((msg, xid)) => {
                        if !self.asm.stored(msg, xid) {
                            warn!("insert outside a transaction ignored");
                        }
                    }
                    Err(e) => {
                        self.status.decode_errors.fetch_add(1, Ordering::Relaxed);
                        error!(error = %e, "realtime.messages row skipped");
                    }
                }
            }
            // pgwire-replication normally emits these as its own events; accept them anyway.
            PgOutputMessage::Begin { .. } => self.asm.begin(),
            PgOutputMessage::Commit { commit_lsn, end_lsn, commit_time_micros, .. } => {
                return self.commit(commit_lsn, end_lsn, commit_time_micros, client).await
            }
            PgOutputMessage::Message { transactional, lsn, prefix, content } => {
                return self.message(transactional, lsn, &prefix, &content).await
            }
            PgOutputMessage::Type { .. } | PgOutputMessage::Origin { .. } | PgOutputMessage::Ignored(_) => {
                trace!("pgoutput message ignored")
            }
        }
        Ok(Step::Continue)
    }

    /// Counts a dropped message and warns, at most once per [`FORGED_WARN_EVERY`].
    fn forged(&mut self, prefix: &str, why: &keys::Forged) {
        let label = prefix_label(prefix);
        let i = FORGED_LABELS.iter().position(|l| *l == label).unwrap_or(FORGED_LABELS.len() - 1);
        self.status.forged[i].fetch_add(1, Ordering::Relaxed);
        self.forged_unwarned += 1;
        if self.forged_warned.is_none_or(|t| t.elapsed() >= FORGED_WARN_EVERY) {
            warn!(prefix, reason = %why, dropped = self.forged_unwarned,
                "realtime logical message without a valid seal dropped (not emitted by realtime.emit_message)");
            self.forged_warned = Some(tokio::time::Instant::now());
            self.forged_unwarned = 0;
        }
    }

    fn decode_error(&self, e: &DecodeError) {
        self.status.decode_errors.fetch_add(1, Ordering::Relaxed);
        error!(error = %e, "undecodable pgoutput message skipped");
    }

    async fn message(
        &mut self,
        transactional: bool,
        lsn: u64,
        prefix: &str,
        content: &[u8],
    ) -> Result<Step, ReplicationError> {
        if !prefix.starts_with(REALTIME_PREFIX) {
            trace!(prefix, "foreign logical message ignored");
            return Ok(Step::Continue);
        }
        let content =
            match self.keys.open(&self.db, prefix, lsn, content).await.map_err(ReplicationError::Keys)? {
                Ok(content) => content,
                Err(why) => {
                    self.forged(prefix, &why);
                    return Ok(Step::Continue);
                }
            };
        let event = match prefix {
            BROADCAST_PREFIX => {
                events::ephemeral_from_body(content).map(LogEvent::Ephemeral).map_err(|e| e.to_string())
            }
            PRESENCE_PREFIX => crate::core::presence::PresenceOp::parse(content).map(LogEvent::Presence),
            CHANNELS_PREFIX => {
                // Carries nothing: whoever sends one only causes a re-check.
                self.status.channels_changed.notify_one();
                return Ok(Step::Continue);
            }
            KEYS_PREFIX => {
                // realtime.relay_keys changed (and committed): a deleted key stops verifying now.
                self.keys.load(&self.db).await.map_err(ReplicationError::Keys)?;
                debug!(keys = self.keys.len(), "relay keys changed; read again");
                return Ok(Step::Continue);
            }
            _ => {
                debug!(prefix, "logical message with unknown realtime prefix ignored");
                return Ok(Step::Continue);
            }
        };
        let e = match event {
            Ok(e) => e,
            Err(err) => {
                self.status.decode_errors.fetch_add(1, Ordering::Relaxed);
                warn!(prefix, error = %err, "logical message skipped");
                return Ok(Step::Continue);
            }
        };
        if transactional && self.asm.in_txn() {
            self.asm.logical(e);
            return Ok(Step::Continue);
        }
        match self.asm.non_transactional_event(lsn, e) {
            Some(batch) => self.send(batch).await,
            None => Ok(Step::Continue),
        }
    }

    async fn commit(
        &mut self,
        commit_lsn: u64,
        end_lsn: u64,
        commit_time_micros: i64,
        client: &ReplicationClient,
    ) -> Result<Step, ReplicationError> {
        match self.asm.commit(commit_lsn) {
            CommitOutcome::Duplicate => {
                debug!(commit_lsn = %format_pg_lsn(commit_lsn), "replayed commit skipped");
            }
            CommitOutcome::Fresh { batch, position } => {
                self.status.large_txns.store(self.asm.left_in_log, Ordering::Relaxed);
                self.status.large_txn_ephemeral_dropped.store(self.asm.ephemeral_dropped, Ordering::Relaxed);
                if let Some(mut batch) = batch {
                    batch.commit_time_micros = commit_time_micros;
                    if let Step::Shutdown = self.send(batch).await? {
                        return Ok(Step::Shutdown);
                    }
                }
                self.status.last_commit_lsn.store(commit_lsn, Ordering::Relaxed);
                if let Some(pos) = position {
                    tokio::select! {
                        _ = self.positions.submit(pos) => {}
                        _ = self.shutdown.cancelled() => return Ok(Step::Shutdown),
                    }
                }
            }
        }
        // dispatched (or skipped as a duplicate): the stream is caught up to the commit's end
        self.status.handled_lsn.fetch_max(end_lsn, Ordering::Relaxed);
        self.acks.push(self.positions.last_submitted(), end_lsn);
        self.apply_acks(client);
        Ok(Step::Continue)
    }

    async fn send(&mut self, batch: CommitBatch) -> Result<Step, ReplicationError> {
        tokio::select! {
            r = self.out.send(batch) => r.map(|_| Step::Continue).map_err(|_| ReplicationError::OutputClosed),
            _ = self.shutdown.cancelled() => Ok(Step::Shutdown),
        }
    }

    fn apply_acks(&mut self, client: &ReplicationClient) {
        if let Some(lsn) = self.acks.ready(self.positions.durable()) {
            client.update_applied_lsn(Lsn::from_u64(lsn));
            self.status.acked_lsn.fetch_max(lsn, Ordering::Relaxed);
            self.status.raise_readable(lsn);
            self.ack_wait = None;
        }
        if self.acks.is_empty() {
            self.ack_wait = None;
        } else if self.ack_wait.is_none() {
            let failures = self.positions.connection_failures();
            self.ack_wait = Some((tokio::time::Instant::now(), failures));
        }
    }
}

/// Ends a session gracefully (CopyDone), giving up after a short while.
async fn stop_client(mut client: ReplicationClient) {
    client.stop();
    if tokio::time::timeout(Duration::from_secs(2), client.shutdown()).await.is_err() {
        client.abort();
    }
}
