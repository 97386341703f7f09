//! Relays, presence and the audit log for the console: every relay of this database
//! (`realtime.relays`: heartbeat age and what it last reported, see [`report`]) with its slot and
//! the slot's lag from `pg_replication_slots`; replication slots no relay claims (they hold WAL
//! back); channels with presence members and one channel's members; `realtime.admin_log`.
//!
//! [`report`] is the one statement here not run as `realtime_admin`: each relay writes its own
//! row, as its own login, like its heartbeat.

use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::Value;

use super::query;
use crate::pg::PgError;

/// Which slot a relay row uses: the one it reported, else the default name.
macro_rules! slot_of {
    () => {
        "coalesce(r.stats->>'slot', 'realtime_' || r.relay_id)"
    };
}

const RELAYS_SQL: &str = concat!(
    "SELECT r.relay_id, (extract(epoch FROM r.started_at) * 1000)::float8, \
            extract(epoch FROM now() - r.heartbeat_at)::float8, r.stats - 'by_channel', \
            extract(epoch FROM now() - (r.stats->>'reported_at')::timestamptz)::float8, \
            s.slot_name::text, s.active, pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::float8 \
       FROM realtime.relays r LEFT JOIN pg_catalog.pg_replication_slots s \
         ON s.slot_name = ",
    slot_of!(),
    " AND s.database = current_database() ORDER BY r.relay_id LIMIT $1"
);

const ORPHAN_SLOTS_SQL: &str = concat!(
    "SELECT s.slot_name::text, s.active, pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::float8 \
       FROM pg_catalog.pg_replication_slots s \
      WHERE s.database = current_database() AND s.slot_name LIKE 'realtime%' \
        AND NOT EXISTS (SELECT 1 FROM realtime.relays r WHERE s.slot_name = ",
    slot_of!(),
    ") ORDER BY s.slot_name LIMIT $1"
);

/// A relay row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Relay {
    pub relay_id: String,
    /// Epoch milliseconds.
    pub started_at: f64,
    pub heartbeat_age_s: f64,
    /// Its last report (without the per-channel counts), `None` when it never reported.
    pub stats: Option<Value>,
    pub report_age_s: Option<f64>,
    pub slot: Option<String>,
    pub slot_active: Option<bool>,
    pub slot_lag_bytes: Option<f64>,
}

/// Up to `limit` relays, by id.
pub async fn relays(pool: &Pool, limit: i64) -> Result<Vec<Relay>, PgError> {
    let rows = query(pool, RELAYS_SQL, &[&limit]).await?;
    Ok(rows
        .iter()
        .map(|r| Relay {
            relay_id: r.get(0),
            started_at: r.get(1),
            heartbeat_age_s: r.get(2),
            stats: r.get(3),
            report_age_s: r.get(4),
            slot: r.get(5),
            slot_active: r.get(6),
            slot_lag_bytes: r.get(7),
        })
        .collect())
}

/// A `realtime%` replication slot of this database that no relay row claims.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrphanSlot {
    pub slot: String,
    pub active: bool,
    pub lag_bytes: Option<f64>,
}

/// Up to `limit` unclaimed slots, by name.
pub async fn orphan_slots(pool: &Pool, limit: i64) -> Result<Vec<OrphanSlot>, PgError> {
    let rows = query(pool, ORPHAN_SLOTS_SQL, &[&limit]).await?;
    Ok(rows.iter().map(|r| OrphanSlot { slot: r.get(0), active: r.get(1), lag_bytes: r.get(2) }).collect())
}

/// A channel with presence members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceChannel {
    pub channel: String,
    pub members: i64,
    /// Relays its members are connected to.
    pub relays: i64,
}

/// Up to `limit` channels with members, most members first.
pub async fn presence_channels(pool: &Pool, limit: i64) -> Result<Vec<PresenceChannel>, PgError> {
    let rows = query(
        pool,
        "SELECT channel, count(*), count(DISTINCT relay_id) FROM realtime.presence \
         GROUP BY channel ORDER BY 2 DESC, 1 LIMIT $1",
        &[&limit],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| PresenceChannel { channel: r.get(0), members: r.get(1), relays: r.get(2) })
        .collect())
}

/// A presence member.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    pub presence_id: String,
    pub user_id: Option<String>,
    pub relay_id: String,
    pub conn_id: String,
    pub state: Value,
    /// Epoch milliseconds.
    pub updated_at: f64,
}

/// Up to `limit` members of `channel`, oldest first.
pub async fn members(pool: &Pool, channel: &str, limit: i64) -> Result<Vec<Member>, PgError> {
    let rows = query(
        pool,
        "SELECT presence_id, user_id, relay_id, conn_id, state, (extract(epoch FROM updated_at) * 1000)::float8 \
           FROM realtime.presence WHERE channel = $1 ORDER BY updated_at, presence_id LIMIT $2",
        &[&channel, &limit],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| Member {
            presence_id: r.get(0),
            user_id: r.get(1),
            relay_id: r.get(2),
            conn_id: r.get(3),
            state: r.get(4),
            updated_at: r.get(5),
        })
        .collect())
}

/// An entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    /// Epoch milliseconds.
    pub at: f64,
    pub who: String,
    pub relay_id: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: Value,
}

/// Up to `limit` entries older than entry `before`, newest first.
pub async fn audit_log(pool: &Pool, before: Option<i64>, limit: i64) -> Result<Vec<AuditEntry>, PgError> {
    let rows = query(
        pool,
        "SELECT id, (extract(epoch FROM at) * 1000)::float8, who, relay_id, action, target, detail \
           FROM realtime.admin_log WHERE $1::int8 IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
        &[&before, &limit],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| AuditEntry {
            id: r.get(0),
            at: r.get(1),
            who: r.get(2),
            relay_id: r.get(3),
            action: r.get(4),
            target: r.get(5),
            detail: r.get(6),
        })
        .collect())
}

const REPORT_SQL: &str = "UPDATE realtime.relays SET stats = $2::jsonb || jsonb_build_object( \
       'reported_at', now(), \
       'by_channel', (SELECT coalesce(jsonb_object_agg(s.id::text, s.n), '{}'::jsonb) \
                        FROM (SELECT realtime.match_channel(u.name) AS id, sum(u.n)::bigint AS n \
                                FROM unnest($3::text[], $4::int8[]) AS u(name, n) GROUP BY 1) s \
                       WHERE s.id IS NOT NULL)) \
     WHERE relay_id = $1";

/// Writes relay `relay_id`'s report into its own `realtime.relays` row: `figures` (a JSON
/// object), the time, and `by_channel`, its subscribers per channel row (`names` matched to
/// rows by `realtime.match_channel` in the same statement, `counts` summed per row). As the
/// relay's own login.
pub async fn report(
    pool: &Pool,
    relay_id: &str,
    figures: &Value,
    names: &[String],
    counts: &[i64],
) -> Result<(), PgError> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(REPORT_SQL).await?;
    client.execute(&stmt, &[&relay_id, figures, &names, &counts]).await?;
    Ok(())
}
