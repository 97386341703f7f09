//! Which replication slot (and so which relay id) this process uses, so that identical replicas
//! (same flags, same environment) work side by side.
//!
//! * **Claim.** Every relay id is guarded by a session advisory lock, `(CLASS, hashtext(slot))`,
//!   taken on a connection held for the relay's life. Without `--relay-id` the relay takes the
//!   first free member of the pool `relay`, `relay_2`, `relay_3`, ... (slots `realtime_relay`,
//!   `realtime_relay_2`, ...): existing slots first, so a replaced replica takes over an
//!   abandoned slot and its position, then the lowest unused number. A slot whose WAL was
//!   removed (`wal_status = 'lost'`) is dropped and made again. With `--relay-id` the relay
//!   waits, logging who holds it, until that id is free: two processes never share an id.
//! * **Guard.** If the lock connection drops, the relay reconnects and takes the lock again;
//!   a lock still held by its own dead session is released by ending that session. If another
//!   process took the id meanwhile, the relay stops (its supervisor restarts it with a fresh
//!   claim) rather than run as a second owner.
//! * **Janitor.** On the same connection, every [`janitor_interval`] a relay looks for
//!   `realtime_*` slots of this database that no relay holds and that are not streaming; one
//!   that stays so for `--slot-abandon-secs` is dropped, under its lock. The log is the source
//!   of truth: a relay that comes back after its slot was dropped starts a new slot at the
//!   current position, and its clients resume from `realtime.messages`; as long as one relay
//!   streams, every commit's cursor position is written to `realtime.commits`.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::db::{Connection, Database};
use super::describe_pg_error;

/// First key of every relay-id advisory lock ("rt" in ASCII).
pub const CLASS: i32 = 0x7274;
/// Most slots a pool may grow to.
const POOL_MAX: u32 = 1000;
/// How long a claim waits for a streaming but unheld member slot to go idle.
const IDLE_WAIT: Duration = Duration::from_secs(3);

/// Why no relay id could be claimed or kept.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error("cannot claim a relay id: {0}")]
    Db(String),
    #[error("all {POOL_MAX} relay ids of the pool '{0}' are held by running relays")]
    PoolFull(String),
    #[error("relay id '{0}' was taken by another relay process while this one was disconnected")]
    Lost(String),
    #[error("shutting down")]
    Shutdown,
}

impl From<tokio_postgres::Error> for SlotError {
    fn from(e: tokio_postgres::Error) -> Self {
        SlotError::Db(describe_pg_error(&e))
    }
}

/// The slot name of relay id `id`.
pub fn slot_of(id: &str) -> String {
    format!("realtime_{id}")
}

/// Member `n` (from 1) of pool `base`: `base`, `base_2`, `base_3`, ...
pub fn pool_member(base: &str, n: u32) -> String {
    if n <= 1 {
        base.to_string()
    } else {
        format!("{base}_{n}")
    }
}

/// The member number of `id` in pool `base`, if it is one.
pub fn member_number(base: &str, id: &str) -> Option<u32> {
    if id == base {
        return Some(1);
    }
    let n: u32 = id.strip_prefix(base)?.strip_prefix('_')?.parse().ok()?;
    (n >= 2 && pool_member(base, n) == id).then_some(n)
}

/// How often the janitor looks for abandoned slots.
pub fn janitor_interval(abandon_after: Duration) -> Duration {
    (abandon_after / 4).clamp(Duration::from_millis(250), Duration::from_secs(30))
}

/// A claimed relay id and the connection holding its lock.
pub struct Claim {
    pub relay_id: String,
    conn: Connection,
    /// `application_name` of the lock connection, unique to this process.
    tag: String,
}

fn tag() -> String {
    format!("realtime-relay/claim/{}-{:08x}", std::process::id(), rand::random::<u32>())
}

async fn lock_connection(db: &Database, tag: &str) -> Result<Connection, SlotError> {
    let mut db = db.clone();
    db.pg.application_name(tag);
    Ok(db.connect().await?)
}

async fn try_lock(c: &Connection, slot: &str) -> Result<bool, SlotError> {
    let sql = "SELECT pg_try_advisory_lock($1, hashtext($2))";
    Ok(c.client.query_one(sql, &[&CLASS, &slot]).await?.get(0))
}

/// The `application_name` and pid of the session holding `slot`'s lock, if any.
async fn holder(c: &Connection, slot: &str) -> Result<Option<(String, i32)>, SlotError> {
    let row = c
        .client
        .query_opt(
            "SELECT coalesce(a.application_name, ''), l.pid FROM pg_locks l \
             LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.database = \
                   (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND l.classid = $1::int4::oid AND l.objid = hashtext($2)::oid AND l.objsubid = 2",
            &[&CLASS, &slot],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Drops `slot` if its WAL is gone, so the relay starts it afresh (we hold its lock).
async fn drop_if_lost(c: &Connection, slot: &str) -> Result<(), SlotError> {
    let lost: Option<bool> = c
        .client
        .query_opt("SELECT wal_status = 'lost' FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await?
        .and_then(|r| r.get(0));
    if lost == Some(true) {
        warn!(slot, "slot lost its WAL (max_slot_wal_keep_size); dropping it to start afresh");
        c.client.execute("SELECT pg_drop_replication_slot($1)", &[&slot]).await?;
    }
    Ok(())
}

/// Claims a relay id: `fixed` (`--relay-id`), waiting until it is free, or the first free
/// member of pool `base`.
pub async fn claim(
    db: &Database,
    base: &str,
    fixed: bool,
    shutdown: &CancellationToken,
) -> Result<Claim, SlotError> {
    let tag = tag();
    let conn = lock_connection(db, &tag).await?;
    let relay_id =
        if fixed { wait_for(&conn, base, shutdown).await? } else { first_free(&conn, base).await? };
    drop_if_lost(&conn, &slot_of(&relay_id)).await?;
    info!(relay_id, slot = %slot_of(&relay_id), "claimed relay id");
    Ok(Claim { relay_id, conn, tag })
}

async fn wait_for(conn: &Connection, id: &str, shutdown: &CancellationToken) -> Result<String, SlotError> {
    let slot = slot_of(id);
    let mut told = None::<Instant>;
    loop {
        if try_lock(conn, &slot).await? {
            return Ok(id.to_string());
        }
        if told.is_none_or(|t| t.elapsed() >= Duration::from_secs(30)) {
            let who = holder(conn, &slot).await?.map(|(app, pid)| format!("{app} (backend pid {pid})"));
            warn!(
                relay_id = id,
                held_by = who.as_deref().unwrap_or("another session"),
                "relay id is held by another relay process; waiting for it to be free \
                 (leave --relay-id unset to let identical replicas pick their own)"
            );
            told = Some(Instant::now());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.cancelled() => return Err(SlotError::Shutdown),
        }
    }
}

async fn first_free(conn: &Connection, base: &str) -> Result<String, SlotError> {
    let rows = conn
        .client
        .query(
            "SELECT slot_name::text, active FROM pg_replication_slots \
             WHERE database = current_database() AND slot_name LIKE 'realtime\\_%'",
            &[],
        )
        .await?;
    let members: Vec<(u32, bool)> = rows
        .iter()
        .filter_map(|r| {
            let id = r.get::<_, String>(0).strip_prefix("realtime_").map(str::to_string)?;
            Some((member_number(base, &id)?, r.get::<_, bool>(1)))
        })
        .collect();
    let mut idle: Vec<u32> = members.iter().filter(|(_, active)| !active).map(|(n, _)| *n).collect();
    idle.sort_unstable();
    // Abandoned members first: their position is taken over.
    for n in idle {
        let id = pool_member(base, n);
        if try_lock(conn, &slot_of(&id)).await? {
            return Ok(id);
        }
    }
    // A streaming member nobody holds: its relay just died and the server has not noticed yet
    // (or it runs a relay version without claims). Take it if it goes idle within moments.
    for (n, _) in members.iter().filter(|(_, active)| *active) {
        let slot = slot_of(&pool_member(base, *n));
        if try_lock(conn, &slot).await? {
            if went_idle(conn, &slot).await? {
                return Ok(pool_member(base, *n));
            }
            conn.client.query_one("SELECT pg_advisory_unlock($1, hashtext($2))", &[&CLASS, &slot]).await?;
        }
    }
    // Then the lowest unused number.
    for n in (1..=POOL_MAX).filter(|n| members.iter().all(|(m, _)| m != n)) {
        let id = pool_member(base, n);
        if try_lock(conn, &slot_of(&id)).await? {
            return Ok(id);
        }
    }
    Err(SlotError::PoolFull(base.to_string()))
}

/// Waits up to [`IDLE_WAIT`] for `slot` to stop streaming.
async fn went_idle(conn: &Connection, slot: &str) -> Result<bool, SlotError> {
    let deadline = Instant::now() + IDLE_WAIT;
    loop {
        let active: Option<bool> = conn
            .client
            .query_opt("SELECT active FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
            .await?
            .map(|r| r.get(0));
        if active != Some(true) {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Claim {
    /// Keeps the claim for the relay's life and drops abandoned slots (see the module docs).
    /// Cancels `shutdown` and returns [`SlotError::Lost`] when the id was lost to another
    /// process. On shutdown it returns the claim: the id stays held until the caller drops it,
    /// after everything using it stopped.
    pub async fn guard(
        mut self,
        db: Database,
        abandon_after: Duration,
        shutdown: CancellationToken,
    ) -> Result<Claim, SlotError> {
        let slot = slot_of(&self.relay_id);
        let mut unclaimed: HashMap<String, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(janitor_interval(abandon_after));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(self),
                _ = tick.tick() => {}
            }
            if self.conn.task.is_finished() || self.conn.client.is_closed() {
                match self.reclaim(&db, &slot, &shutdown).await {
                    Ok(()) => unclaimed.clear(),
                    Err(e @ SlotError::Shutdown) => return Err(e),
                    Err(e) => {
                        tracing::error!(error = %e, "stopping: a second process must not use this relay id");
                        shutdown.cancel();
                        return Err(e);
                    }
                }
            }
            if let Err(e) = self.sweep(&slot, abandon_after, &mut unclaimed).await {
                warn!(error = %e, "could not look for abandoned replication slots");
            }
        }
    }

    /// Reconnects and takes this relay's lock again.
    async fn reclaim(
        &mut self,
        db: &Database,
        slot: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), SlotError> {
        warn!(relay_id = %self.relay_id, "lost the connection holding this relay's id; taking it again");
        let mut delay = Duration::from_millis(200);
        loop {
            let attempt = async {
                let conn = lock_connection(db, &self.tag).await?;
                if try_lock(&conn, slot).await? {
                    return Ok(Some(conn));
                }
                match holder(&conn, slot).await? {
                    // Our own session from before the break, not yet ended by the server.
                    Some((app, pid)) if app == self.tag => {
                        conn.client.execute("SELECT pg_terminate_backend($1)", &[&pid]).await?;
                        Ok(None)
                    }
                    Some(_) => Err(SlotError::Lost(self.relay_id.clone())),
                    None => Ok(None),
                }
            };
            match attempt.await {
                Ok(Some(conn)) => {
                    self.conn = conn;
                    info!(relay_id = %self.relay_id, "relay id held again");
                    return Ok(());
                }
                Ok(None) => {}
                Err(e @ SlotError::Lost(_)) => return Err(e),
                Err(e) => warn!(error = %e, "cannot take this relay's id again yet; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return Err(SlotError::Shutdown),
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// One janitor pass: notes relay slots nobody holds, drops those unheld for too long.
    async fn sweep(
        &self,
        own: &str,
        abandon_after: Duration,
        unclaimed: &mut HashMap<String, Instant>,
    ) -> Result<(), SlotError> {
        let rows = self
            .conn
            .client
            .query(
                "SELECT slot_name::text FROM pg_replication_slots \
                 WHERE database = current_database() AND NOT active AND NOT temporary \
                   AND slot_name LIKE 'realtime\\_%'",
                &[],
            )
            .await?;
        let idle: Vec<String> = rows.iter().map(|r| r.get(0)).filter(|s: &String| s != own).collect();
        unclaimed.retain(|s, _| idle.contains(s));
        for slot in idle {
            if !try_lock(&self.conn, &slot).await? {
                unclaimed.remove(&slot);
                continue;
            }
            let since = *unclaimed.entry(slot.clone()).or_insert_with(Instant::now);
            if since.elapsed() >= abandon_after {
                let sql = "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                           WHERE slot_name = $1 AND NOT active";
                match self.conn.client.execute(sql, &[&slot]).await {
                    Ok(1) => {
                        let abandoned_secs = since.elapsed().as_secs();
                        info!(slot, abandoned_secs, "dropped an abandoned replication slot");
                        unclaimed.remove(&slot);
                    }
                    Ok(_) => {}
                    Err(e) => warn!(slot, error = %describe_pg_error(&e), "could not drop an abandoned slot"),
                }
            }
            let unlock = "SELECT pg_advisory_unlock($1, hashtext($2))";
            self.conn.client.query_one(unlock, &[&CLASS, &slot]).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_members_are_numbered_from_the_base_id() {
        assert_eq!((pool_member("relay", 1), pool_member("relay", 2)), ("relay".into(), "relay_2".into()));
        assert_eq!(member_number("relay", "relay"), Some(1));
        assert_eq!(member_number("relay", "relay_17"), Some(17));
        for other in ["relay_1", "relay_02", "relay_x", "relayx", "relay_", "other_2", "relay_2_3"] {
            assert_eq!(member_number("relay", other), None, "{other}");
        }
        assert_eq!(slot_of("relay_2"), "realtime_relay_2");
    }

    #[test]
    fn janitor_looks_four_times_per_bound_within_limits() {
        assert_eq!(janitor_interval(Duration::from_secs(300)), Duration::from_secs(30));
        assert_eq!(janitor_interval(Duration::from_secs(8)), Duration::from_secs(2));
        assert_eq!(janitor_interval(Duration::from_millis(100)), Duration::from_millis(250));
    }
}
