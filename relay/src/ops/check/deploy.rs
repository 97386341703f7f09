//! The deployment items of `realtime-relay check`: the JWT keys, whether the connection to Postgres is
//! encrypted and the server verified (`sslmode`), how long messages are kept
//! (`realtime.config.retention`) and how much WAL a stopped relay's slot may hold
//! (`max_slot_wal_keep_size`). Facts are read by [`gather`] and judged by [`evaluate`] without
//! I/O, like the rest of [`super`].

use super::item::{CheckError, Item};
use crate::config::Config;

/// Below this an HS256 secret is accepted, with a warning.
const GOOD_SECRET_LEN: usize = 32;

/// Retention above this is reported (a log kept for months grows with every message).
pub const LONG_RETENTION_SECS: f64 = 30.0 * 86_400.0;

/// What the database and the configuration say about retention and WAL.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployFacts {
    /// `realtime.config.retention` in seconds; `None` when the extension is not installed.
    pub retention_secs: Option<f64>,
    /// The login may read `realtime.config` (`None` without the extension).
    pub config_readable: Option<bool>,
    /// `max_slot_wal_keep_size` in MB; -1 is unlimited.
    pub wal_keep_mb: i64,
    /// `--replay-window-secs`.
    pub replay_window_secs: u64,
    pub tls: TlsFacts,
}

/// The check's own connection, made as the relay makes its connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    /// `pg_stat_ssl`: the protocol version and cipher, `None` when not encrypted.
    pub encrypted: Option<(String, String)>,
    /// Full verification (`sslmode=verify-full`).
    pub verify_full: bool,
    /// Over a Unix socket or to a loopback address.
    pub local: bool,
    /// [`crate::pg::db::Database::describe_tls`].
    pub settings: String,
}

/// Whether `host` is this machine.
fn is_local(db: &crate::pg::db::Database) -> bool {
    match db.pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => {
            h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        _ => true,
    }
}

/// Reads the [`DeployFacts`] on `client`, a connection made with the relay's settings
/// (`encrypted`: whether TLS was negotiated).
pub async fn gather(
    client: &tokio_postgres::Client,
    config: &Config,
    encrypted: bool,
) -> Result<DeployFacts, CheckError> {
    let db = crate::pg::db::Database::parse(&config.database_url)
        .map_err(|e| CheckError::Connect(e.to_string()))?;
    let ssl = client
        .query_opt("SELECT version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl", &[])
        .await?
        .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)));
    let tls = TlsFacts {
        encrypted: ssl.filter(|_| encrypted),
        verify_full: db.tls.mode == crate::pg::tls::SslMode::VerifyFull,
        local: is_local(&db),
        settings: db.describe_tls(),
    };
    let row = client
        .query_one(
            "SELECT (SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size'), \
             CASE WHEN to_regclass('realtime.config') IS NOT NULL \
                  THEN has_table_privilege('realtime.config', 'SELECT') END",
            &[],
        )
        .await?;
    let config_readable: Option<bool> = row.get(1);
    let retention_secs = if config_readable == Some(true) {
        client
            .query_opt("SELECT extract(epoch FROM retention)::float8 FROM realtime.config LIMIT 1", &[])
            .await?
            .map(|r| r.get(0))
    } else {
        None
    };
    Ok(DeployFacts {
        retention_secs,
        config_readable,
        wal_keep_mb: row.get(0),
        replay_window_secs: config.replay_window.as_secs(),
        tls,
    })
}

/// The items for [`DeployFacts`].
pub fn evaluate(f: &DeployFacts) -> Vec<Item> {
    let mut items = vec![tls(&f.tls)];
    match (f.config_readable, f.retention_secs) {
        (Some(true), Some(secs)) => items.push(retention(secs, f.replay_window_secs)),
        (Some(false), _) => items.push(Item::warn(
            "retention",
            "this login may not read realtime.config (retention, payload limit)",
            "GRANT SELECT ON realtime.config TO <the relay's login>;",
        )),
        _ => {}
    }
    items.push(wal_keep(f.wal_keep_mb));
    items
}

/// The JWT settings the relay would verify tokens with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwtFacts {
    pub secret_len: Option<usize>,
    pub jwks_keys: usize,
}

impl JwtFacts {
    pub fn of(config: &Config) -> Self {
        JwtFacts {
            secret_len: config.jwt_secret.as_ref().map(String::len),
            jwks_keys: config.public_keys.len(),
        }
    }
}

pub(crate) fn jwt_item(j: &JwtFacts) -> Item {
    const NAME: &str = "jwt";
    let keys = match j.jwks_keys {
        0 => String::new(),
        1 => "; JWKS with 1 key".to_string(),
        n => format!("; JWKS with {n} keys"),
    };
    match j.secret_len {
        Some(n) if n < GOOD_SECRET_LEN => Item::warn(
            NAME,
            format!("HS256 secret of {n} bytes{keys}"),
            format!("use at least {GOOD_SECRET_LEN} random bytes (e.g. `head -c 32 /dev/urandom | base64`)"),
        ),
        Some(n) => Item::ok(NAME, format!("HS256 secret of {n} bytes{keys}")),
        None if j.jwks_keys > 0 => Item::ok(NAME, format!("no HS256 secret{keys}")),
        None => Item::fail(
            NAME,
            "no HS256 secret and no JWKS keys",
            "set --jwt-secret / REALTIME_JWT_SECRET or --jwks-file / REALTIME_JWKS_FILE",
        ),
    }
}

fn tls(t: &TlsFacts) -> Item {
    const NAME: &str = "tls";
    let fix = "enable ssl on the server and use sslmode=verify-full&sslrootcert=<CA file> in --database-url";
    match (&t.encrypted, t.verify_full, t.local) {
        (Some((version, cipher)), true, _) => Item::ok(NAME, format!("{version} ({cipher}); {}", t.settings)),
        (Some((version, _)), false, true) => {
            Item::ok(NAME, format!("{version} to this machine; {}", t.settings))
        }
        (Some((version, _)), false, false) => Item::warn(
            NAME,
            format!("{version}, but the server's identity is not fully checked ({})", t.settings),
            "use sslmode=verify-full&sslrootcert=<CA file> in --database-url",
        ),
        (None, _, true) => Item::ok(NAME, format!("not encrypted, to this machine ({})", t.settings)),
        (None, _, false) => Item::warn(
            NAME,
            format!(
                "not encrypted: the password and every message cross the network in clear ({})",
                t.settings
            ),
            fix,
        ),
    }
}

/// `3 days`, `6 hours`, `90 s`.
fn human(secs: f64) -> String {
    match secs {
        s if s >= 86_400.0 && s % 86_400.0 == 0.0 => format!("{} days", s / 86_400.0),
        s if s >= 3_600.0 && s % 3_600.0 == 0.0 => format!("{} hours", s / 3_600.0),
        s => format!("{s} s"),
    }
}

fn retention(secs: f64, replay_window: u64) -> Item {
    const NAME: &str = "retention";
    let kept = human(secs);
    let schedule = "run SELECT realtime.cleanup_messages(); on a schedule (pg_cron or the host's cron)";
    if secs > LONG_RETENTION_SECS {
        Item::warn(
            NAME,
            format!("realtime.config.retention is {kept}: the message log grows with every message for that long"),
            format!("UPDATE realtime.config SET retention = '7 days'; (or what your history needs) and {schedule}"),
        )
    } else if secs < replay_window as f64 {
        Item::warn(
            NAME,
            format!(
                "realtime.config.retention is {kept}, shorter than --replay-window-secs ({replay_window} s): \
                 a resume inside the window can find its messages deleted and get a reset"
            ),
            format!("UPDATE realtime.config SET retention = '{replay_window} seconds'; or lower --replay-window-secs"),
        )
    } else {
        Item::ok(NAME, format!("messages are kept {kept}; {schedule} to delete older ones"))
    }
}

fn wal_keep(mb: i64) -> Item {
    const NAME: &str = "max_slot_wal_keep_size";
    if mb < 0 {
        Item::warn(
            NAME,
            "is -1 (unlimited): the slot of a relay that stopped keeps WAL without bound and can fill the disk",
            "ALTER SYSTEM SET max_slot_wal_keep_size = '10GB'; SELECT pg_reload_conf(); \
             (a relay whose slot lost WAL starts a fresh one; clients resume from the table)",
        )
    } else {
        Item::ok(NAME, format!("{mb} MB: a stopped relay's slot cannot hold more WAL than that"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::check::item::Status;

    fn facts(retention_secs: Option<f64>, wal_keep_mb: i64) -> DeployFacts {
        DeployFacts {
            retention_secs,
            config_readable: retention_secs.map(|_| true),
            wal_keep_mb,
            replay_window_secs: 600,
            tls: TlsFacts {
                encrypted: None,
                verify_full: false,
                local: true,
                settings: "sslmode=prefer".into(),
            },
        }
    }

    fn item<'a>(items: &'a [Item], name: &str) -> &'a Item {
        items.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("no {name}: {items:?}"))
    }

    fn status(items: &[Item], name: &str) -> Status {
        item(items, name).status
    }

    #[test]
    fn tls_is_ok_when_verified_or_local_and_warns_otherwise() {
        let t = |encrypted: bool, verify_full: bool, local: bool| {
            let mut f = facts(None, 0);
            f.tls = TlsFacts {
                encrypted: encrypted.then(|| ("TLSv1.3".to_string(), "TLS_AES_256_GCM_SHA384".to_string())),
                verify_full,
                local,
                settings: "sslmode=x".into(),
            };
            status(&evaluate(&f), "tls")
        };
        assert_eq!(t(true, true, false), Status::Ok);
        assert_eq!(t(true, false, true), Status::Ok);
        assert_eq!(t(false, false, true), Status::Ok);
        assert_eq!(t(true, false, false), Status::Warn);
        assert_eq!(t(false, false, false), Status::Warn);
    }

    #[test]
    fn default_retention_and_a_wal_cap_are_ok() {
        let items = evaluate(&facts(Some(7.0 * 86_400.0), 1024));
        assert_eq!(status(&items, "retention"), Status::Ok);
        assert_eq!(status(&items, "max_slot_wal_keep_size"), Status::Ok);
        assert!(item(&items, "retention").detail.contains("7 days"), "{items:?}");
    }

    #[test]
    fn long_or_short_retention_and_unlimited_wal_warn() {
        let items = evaluate(&facts(Some(400.0 * 86_400.0), -1));
        assert_eq!(status(&items, "retention"), Status::Warn);
        assert!(item(&items, "retention").detail.contains("400 days"), "{items:?}");
        assert_eq!(status(&items, "max_slot_wal_keep_size"), Status::Warn);
        let items = evaluate(&facts(Some(60.0), 0));
        assert_eq!(status(&items, "retention"), Status::Warn);
        assert!(item(&items, "retention").detail.contains("shorter than --replay-window-secs"), "{items:?}");
    }

    #[test]
    fn retention_is_skipped_without_the_extension_and_warns_when_unreadable() {
        let items = evaluate(&facts(None, 100));
        assert!(items.iter().all(|i| i.name != "retention"));
        let unreadable = DeployFacts { config_readable: Some(false), ..facts(None, 100) };
        assert_eq!(status(&evaluate(&unreadable), "retention"), Status::Warn);
    }
}
