//! Connection setup of the replication stream: validating names, mapping `database_url`
//! onto `pgwire-replication`'s config (through a TLS bridge when the connection is encrypted,
//! see [`crate::pg::tls_bridge`]), making sure the slot exists. Child module of
//! [`crate::pg::replication`].

use std::time::Duration;

use pgwire_replication::{Lsn, TlsConfig};
use tokio_postgres::config::Host;
use tracing::info;

use pgwire_replication::PgWireError;

use crate::core::parse_pg_lsn;
use crate::pg::db::Database;
use crate::pg::describe_pg_error;
use crate::pg::tls_bridge::{Bridge, BRIDGE_PORT};

/// Session settings pinned on the walsender so decoded text is deterministic.
const SESSION_OPTIONS: &str = "-c TimeZone=UTC -c DateStyle=ISO";

/// What to follow.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    pub database_url: String,
    /// Slot name (`[a-z0-9_]`, at most 63 characters), e.g. `realtime_<relay-id>`.
    pub slot: String,
    /// Publication, normally `realtime_messages`.
    pub publication: String,
    /// Bytes of one transaction's events held in memory (`--max-txn-bytes`).
    pub max_txn_bytes: usize,
}

/// Errors of the replication layer.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("invalid database url: {0}")]
    InvalidDatabaseUrl(String),
    #[error("invalid replication slot name {0:?}: use 1-63 of [a-z0-9_]")]
    InvalidSlotName(String),
    #[error("invalid publication name {0:?}: use 1-63 of [A-Za-z0-9_]")]
    InvalidPublication(String),
    #[error("replication slot {slot:?} is unusable: {reason}")]
    Slot { slot: String, reason: String },
    #[error("postgres: {}", describe_pg_error(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("encrypted connection for the stream: {0}")]
    Tls(std::io::Error),
    #[error("replication stream: {0}")]
    Stream(#[from] PgWireError),
    /// Acknowledgements are held back because `realtime.commits` cannot be written. During a
    /// Postgres fast shutdown the walsender waits for the client to confirm everything sent,
    /// while new connections (our writer's) are refused: holding the stream would block the
    /// shutdown indefinitely. The session is dropped instead; nothing is lost, the slot replays
    /// from the last acknowledged commit and the writer keeps the unwritten positions.
    #[error("commit positions cannot be written; released the replication session")]
    PositionsStalled,
    #[error(
        "realtime.relay_keys cannot be read: {} (the relay's login needs SELECT on it: \
         GRANT SELECT ON realtime.relay_keys TO <login>; an extension older than 0.2.0 needs \
         ALTER EXTENSION realtime UPDATE)",
        describe_pg_error(.0)
    )]
    Keys(tokio_postgres::Error),
    #[error("replication stream ended")]
    StreamEnded,
    #[error("the receiver of replication batches was dropped")]
    OutputClosed,
}

pub(super) fn validate_names(cfg: &ReplicationConfig) -> Result<(), ReplicationError> {
    let ok = |s: &str, upper: bool| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || (upper && b.is_ascii_uppercase())
            })
    };
    if !ok(&cfg.slot, false) {
        return Err(ReplicationError::InvalidSlotName(cfg.slot.clone()));
    }
    if !ok(&cfg.publication, true) {
        return Err(ReplicationError::InvalidPublication(cfg.publication.clone()));
    }
    Ok(())
}

/// The `pgwire-replication` config for the same server, user and database as `pg`; with a
/// `bridge`, it connects to the bridge's socket, which carries the encrypted connection.
pub(super) fn stream_config(
    pg: &tokio_postgres::Config,
    cfg: &ReplicationConfig,
    start_lsn: u64,
    bridge: Option<&Bridge>,
) -> Result<pgwire_replication::ReplicationConfig, ReplicationError> {
    let bad = |m: &str| ReplicationError::InvalidDatabaseUrl(m.to_string());
    let user = pg.get_user().ok_or_else(|| bad("no user"))?;
    let password = pg.get_password().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
    let dbname = pg.get_dbname().unwrap_or(user);
    let mut port = pg.get_ports().first().copied().unwrap_or(5432);
    let mut host = match pg.get_hosts().first().ok_or_else(|| bad("no host"))? {
        Host::Tcp(h) => h.clone(),
        Host::Unix(path) => path.to_str().ok_or_else(|| bad("socket path is not UTF-8"))?.to_string(),
    };
    if let Some(b) = bridge {
        host = b.dir.to_str().ok_or_else(|| bad("temporary directory is not UTF-8"))?.to_string();
        port = BRIDGE_PORT;
    }
    let options = match pg.get_options() {
        Some(o) if !o.is_empty() => format!("{o} {SESSION_OPTIONS}"),
        _ => SESSION_OPTIONS.to_string(),
    };
    Ok(pgwire_replication::ReplicationConfig::new(
        host,
        user,
        password,
        dbname,
        cfg.slot.clone(),
        cfg.publication.clone(),
    )
    .with_port(port)
    .with_tls(TlsConfig::disabled())
    .with_start_lsn(Lsn::from_u64(start_lsn))
    .with_options(options)
    .with_application_name(format!("realtime-relay/{}", cfg.slot))
    .with_status_interval(Duration::from_secs(1))
    .with_wakeup_interval(Duration::from_secs(10))
    .with_buffer_size(1024))
}

/// Makes sure the slot exists on a normal connection; returns its confirmed position and
/// whether that connection was encrypted (the stream then is too).
pub(super) async fn ensure_slot(db: &Database, slot: &str) -> Result<(u64, bool), ReplicationError> {
    let c = db.connect().await?;
    let (client, conn, tls) = (c.client, c.task, c.tls);
    let slot_err = |reason: String| ReplicationError::Slot { slot: slot.to_string(), reason };
    let row = client
        .query_opt(
            "SELECT plugin::text, database::text = current_database()::text, \
             confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    let lsn = match row {
        Some(row) => {
            let plugin: Option<String> = row.get(0);
            let same_db: Option<bool> = row.get(1);
            if plugin.as_deref() != Some("pgoutput") || same_db != Some(true) {
                return Err(slot_err(format!(
                    "exists with plugin {plugin:?} in another database or not logical"
                )));
            }
            let lsn: Option<String> = row.get(2);
            lsn.unwrap_or_else(|| "0/0".into())
        }
        None => {
            info!(slot, "creating logical replication slot");
            let row = client
                .query_one(
                    "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                    &[&slot],
                )
                .await?;
            row.get(0)
        }
    };
    drop(client);
    let _ = conn.await;
    Ok((parse_pg_lsn(&lsn).map_err(|e| slot_err(e.to_string()))?, tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> ReplicationConfig {
        ReplicationConfig {
            database_url: url.into(),
            slot: "realtime_r1".into(),
            publication: "realtime_messages".into(),
            max_txn_bytes: 1 << 20,
        }
    }

    #[test]
    fn url_with_tcp_host_maps_to_stream_config() {
        let c = cfg("postgres://app:s3cret@db.example:6543/appdb");
        let s = stream_config(&c.database_url.parse().unwrap(), &c, 0x10, None).unwrap();
        assert_eq!((s.host.as_str(), s.port), ("db.example", 6543));
        assert_eq!((s.user.as_str(), s.password.as_str()), ("app", "s3cret"));
        assert_eq!(s.database, "appdb");
        assert_eq!(s.slot, "realtime_r1");
        assert_eq!(s.start_lsn, Lsn::from_u64(0x10));
        assert_eq!(s.options.as_deref(), Some(SESSION_OPTIONS));
    }

    #[test]
    fn unix_socket_urls_map_to_socket_directory() {
        for url in [
            "host=/tmp port=55450 user=postgres dbname=postgres",
            "postgres://postgres@%2Ftmp:55450/postgres",
            "postgresql:///postgres?host=/tmp&port=55450&user=postgres",
        ] {
            let c = cfg(url);
            let s = stream_config(&url.parse().unwrap(), &c, 0, None).unwrap();
            assert!(s.is_unix_socket(), "{url}");
            assert_eq!((s.host.as_str(), s.port, s.database.as_str()), ("/tmp", 55450, "postgres"));
        }
    }

    #[test]
    fn a_bridge_replaces_the_tcp_host_with_its_socket() {
        let c = cfg("postgres://app:s3cret@db.example:6543/appdb");
        let bridge = Bridge { dir: "/tmp/realtime-relay-1-0-00000000".into() };
        let s = stream_config(&c.database_url.parse().unwrap(), &c, 0, Some(&bridge)).unwrap();
        assert!(s.is_unix_socket());
        assert_eq!((s.host.as_str(), s.port), ("/tmp/realtime-relay-1-0-00000000", BRIDGE_PORT));
        assert_eq!((s.user.as_str(), s.database.as_str()), ("app", "appdb"));
    }

    #[test]
    fn bad_names_are_rejected_before_connecting() {
        let mut c = cfg("postgres://u@h/d");
        c.slot = "Bad-Slot".into();
        assert!(matches!(validate_names(&c), Err(ReplicationError::InvalidSlotName(_))));
        c.slot = "ok_1".into();
        c.publication = "x' , y".into();
        assert!(matches!(validate_names(&c), Err(ReplicationError::InvalidPublication(_))));
        c.publication = "realtime_messages".into();
        assert!(validate_names(&c).is_ok());
    }
}
