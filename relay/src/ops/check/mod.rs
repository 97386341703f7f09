//! `realtime-relay check`: is this database, this login and this configuration fit to run the
//! relay? One line per item, each failing one with how to fix it:
//!
//! ```text
//! ok   wal_level: logical
//! FAIL extension: realtime is not installed in database 'app' (0.2.0 is available) — fix: CREATE EXTENSION realtime;
//! warn jwt: HS256 secret of 20 bytes — fix: use at least 32 random bytes
//! ```
//!
//! The work is split in two: [`gather`] runs the catalog queries and returns plain [`Facts`];
//! [`evaluate`] turns facts into [`Item`]s without I/O, so every rule has a unit test. The exit
//! code is 0 only when no item failed ([`passed`]); `warn` items do not fail the check.

mod admin;
pub mod deploy;
mod item;

pub use item::{CheckError, Item, Status};

use std::time::Duration;

use crate::config::Config;
use crate::pg::describe_pg_error;

/// The extension version this relay is built for (`pg_extension.extversion`): the version of
/// extension/Cargo.toml (a unit test keeps the two equal; bump both together).
pub const EXPECTED_EXTENSION_VERSION: &str = "0.2.0";
/// The publication the replication stream follows.
pub const PUBLICATION: &str = "realtime_messages";
/// Oldest supported server (`server_version_num`).
const MIN_SERVER_VERSION: i32 = 150_000;

/// True when no item failed.
pub fn passed(items: &[Item]) -> bool {
    items.iter().all(|i| i.status != Status::Fail)
}

/// The one-line summary printed after the items.
pub fn summary(items: &[Item]) -> String {
    let count = |s| items.iter().filter(|i| i.status == s).count();
    format!(
        "realtime-relay check: {} ok, {} warn, {} FAIL",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail)
    )
}

/// The relay's replication slot as the server has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotFacts {
    pub plugin: Option<String>,
    pub same_database: bool,
    pub active: bool,
}

/// One role of `--roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleFacts {
    pub name: String,
    pub exists: bool,
    /// `pg_has_role(current_user, role, 'MEMBER')`: the login may `SET ROLE` to it.
    pub member: bool,
}

/// The login's privileges on the extension's objects; `None` where the object is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub select_messages: Option<bool>,
    pub insert_messages: Option<bool>,
    pub insert_commits: Option<bool>,
    pub execute_publish: Option<bool>,
    /// EXECUTE on the webhook queue functions (`realtime.claim_webhook_deliveries`, ...).
    pub execute_webhooks: Option<bool>,
    /// SELECT, INSERT, UPDATE and DELETE on both presence tables (`realtime.presence`,
    /// `realtime.relays`), which the relay writes directly.
    pub presence_tables: Option<bool>,
    /// SELECT on `realtime.relay_keys`: the relay verifies sealed logical messages, and its
    /// presence and ephemeral writes seal them (`realtime.emit_message`).
    pub select_relay_keys: Option<bool>,
}

/// What the catalog says, read by [`gather`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub server_version_num: i32,
    pub server_version: String,
    pub database: String,
    pub login: String,
    pub superuser: bool,
    pub replication: bool,
    /// `pg_extension.extversion`, `None` when not created in this database.
    pub extension_version: Option<String>,
    /// `pg_available_extensions.default_version`, `None` when the server lacks the files.
    pub extension_available: Option<String>,
    pub wal_level: String,
    pub max_replication_slots: i32,
    pub replication_slots_used: i32,
    pub max_wal_senders: i32,
    pub wal_senders_used: i32,
    pub publication_exists: bool,
    pub publication_has_messages: bool,
    pub slot_name: String,
    pub slot: Option<SlotFacts>,
    /// Without `--relay-id`: the slot pool's `(slots, streaming)` (see [`crate::pg::slots`]).
    pub pool: Option<(i64, i64)>,
    pub roles: Vec<RoleFacts>,
    pub grants: Grants,
}

pub use deploy::JwtFacts;

/// Evaluates every item. Pure: no I/O.
pub fn evaluate(f: &Facts, jwt: &JwtFacts) -> Vec<Item> {
    let mut items = vec![
        server_version(f),
        extension(f),
        wal_level(f),
        slots_room(f),
        senders_room(f),
        publication(f),
        slot(f),
        replication_privilege(f),
    ];
    items.extend(f.roles.iter().map(|r| role(f, r)));
    items.push(grants(f));
    items.push(deploy::jwt_item(jwt));
    items
}

fn server_version(f: &Facts) -> Item {
    let detail = format!("PostgreSQL {} ({})", f.server_version, f.server_version_num);
    if f.server_version_num >= MIN_SERVER_VERSION {
        Item::ok("server version", detail)
    } else {
        Item::fail(
            "server version",
            format!("{detail} is older than 15"),
            "upgrade to PostgreSQL 15 or newer",
        )
    }
}

/// Dotted version numbers compared numerically (`0.10.0 > 0.9.1`); non-numbers count as 0.
fn version_key(v: &str) -> Vec<u64> {
    v.split(['.', '-']).map(|p| p.parse().unwrap_or(0)).collect()
}

fn extension(f: &Facts) -> Item {
    const NAME: &str = "extension";
    let want = EXPECTED_EXTENSION_VERSION;
    let db = &f.database;
    match (&f.extension_version, &f.extension_available) {
        (Some(v), _) if v == want => {
            Item::ok(NAME, format!("realtime {v} installed (this relay expects {want})"))
        }
        (Some(v), available) if version_key(v) < version_key(want) => {
            let fix = match available {
                Some(a) if version_key(a) >= version_key(want) => {
                    format!("ALTER EXTENSION realtime UPDATE TO '{want}'; (in database '{db}')")
                }
                _ => format!(
                    "install the extension {want} files into the server, then ALTER EXTENSION realtime UPDATE TO '{want}';"
                ),
            };
            Item::fail(NAME, format!("realtime {v} installed, but this relay expects {want}"), fix)
        }
        (Some(v), _) => Item::fail(
            NAME,
            format!("realtime {v} installed, but this relay expects {want}"),
            format!("run a realtime-relay built for extension {v}"),
        ),
        (None, Some(a)) => Item::fail(
            NAME,
            format!("realtime is not installed in database '{db}' ({a} is available)"),
            format!("CREATE EXTENSION realtime; (as a superuser, in database '{db}')"),
        ),
        (None, None) => Item::fail(
            NAME,
            "realtime is not installed, and the server has no realtime extension files",
            "install the extension into the server (`cargo pgrx install --release --pg-config <pg_config>` \
             in extension/, or the deploy/postgres.Dockerfile image), then CREATE EXTENSION realtime;",
        ),
    }
}

fn wal_level(f: &Facts) -> Item {
    if f.wal_level == "logical" {
        Item::ok("wal_level", "logical")
    } else {
        Item::fail(
            "wal_level",
            format!("is '{}', the relay needs 'logical'", f.wal_level),
            "ALTER SYSTEM SET wal_level = logical; then restart Postgres",
        )
    }
}

fn slots_room(f: &Facts) -> Item {
    const NAME: &str = "max_replication_slots";
    let (used, max) = (f.replication_slots_used, f.max_replication_slots);
    if f.slot.is_some() {
        Item::ok(NAME, format!("{used} of {max} in use, this relay's slot included"))
    } else if used < max {
        Item::ok(NAME, format!("{used} of {max} in use; room for this relay's slot"))
    } else {
        Item::fail(
            NAME,
            format!("all {max} slots are in use; none left for {}", f.slot_name),
            format!(
                "ALTER SYSTEM SET max_replication_slots = {}; then restart Postgres, or drop an unused slot \
                 (SELECT pg_drop_replication_slot('<name>');)",
                max + 4
            ),
        )
    }
}

fn senders_room(f: &Facts) -> Item {
    const NAME: &str = "max_wal_senders";
    let (used, max) = (f.wal_senders_used, f.max_wal_senders);
    if used < max {
        Item::ok(NAME, format!("{used} of {max} in use; room for this relay's stream"))
    } else {
        Item::fail(
            NAME,
            format!("all {max} WAL senders are in use; the replication stream could not connect"),
            format!("ALTER SYSTEM SET max_wal_senders = {}; then restart Postgres", max + 4),
        )
    }
}

fn publication(f: &Facts) -> Item {
    const NAME: &str = "publication";
    if f.publication_exists && f.publication_has_messages {
        Item::ok(NAME, format!("{PUBLICATION} publishes realtime.messages"))
    } else if f.publication_exists {
        Item::fail(
            NAME,
            format!("{PUBLICATION} exists but does not publish realtime.messages"),
            format!("ALTER PUBLICATION {PUBLICATION} SET TABLE realtime.messages;"),
        )
    } else if f.extension_version.is_none() {
        Item::fail(NAME, format!("{PUBLICATION} does not exist"), "CREATE EXTENSION realtime; creates it")
    } else {
        Item::fail(
            NAME,
            format!("{PUBLICATION} does not exist"),
            format!("CREATE PUBLICATION {PUBLICATION} FOR TABLE realtime.messages;"),
        )
    }
}

fn slot(f: &Facts) -> Item {
    if let Some((slots, streaming)) = f.pool {
        return Item::ok(
            "slot pool",
            format!(
                "{slots} relay slots realtime_relay[_<n>], {streaming} streaming; this relay takes an idle one \
                 or adds the next (no --relay-id: each replica claims its own)"
            ),
        );
    }
    let name = format!("slot {}", f.slot_name);
    let s = &f.slot_name;
    match &f.slot {
        None => Item::ok(name, "does not exist yet; the relay creates it when it starts"),
        Some(SlotFacts { plugin, same_database, .. })
            if plugin.as_deref() != Some("pgoutput") || !same_database =>
        {
            Item::fail(
                name,
                format!(
                    "exists but is not a pgoutput slot of database '{}' (plugin {})",
                    f.database,
                    plugin.as_deref().unwrap_or("none: physical slot")
                ),
                format!("pick another --relay-id, or SELECT pg_drop_replication_slot('{s}');"),
            )
        }
        Some(SlotFacts { active: true, .. }) => Item::warn(
            name,
            "exists and is in use by another connection (is a relay with this --relay-id running?)",
            "give every relay its own --relay-id, or leave it unset so each claims its own; a second relay with this id waits until it is free",
        ),
        Some(_) => Item::ok(name, "exists (pgoutput); the relay resumes from its confirmed position"),
    }
}

fn replication_privilege(f: &Facts) -> Item {
    const NAME: &str = "replication privilege";
    let login = &f.login;
    if f.superuser {
        Item::ok(NAME, format!("login '{login}' is a superuser"))
    } else if f.replication {
        Item::ok(NAME, format!("login '{login}' has REPLICATION"))
    } else {
        Item::fail(
            NAME,
            format!("login '{login}' has neither REPLICATION nor superuser"),
            format!("ALTER ROLE \"{login}\" REPLICATION;"),
        )
    }
}

fn role(f: &Facts, r: &RoleFacts) -> Item {
    let name = format!("role {}", r.name);
    let (role, login) = (&r.name, &f.login);
    if !r.exists {
        Item::fail(
            name,
            format!("role '{role}' (in --roles) does not exist"),
            format!(
                "CREATE ROLE \"{role}\" NOLOGIN; GRANT \"{role}\" TO \"{login}\"; or remove it from --roles"
            ),
        )
    } else if !r.member {
        Item::fail(
            name,
            format!("login '{login}' may not SET ROLE {role}"),
            format!("GRANT \"{role}\" TO \"{login}\";"),
        )
    } else {
        Item::ok(name, format!("exists; login '{login}' may SET ROLE to it"))
    }
}

fn grants(f: &Facts) -> Item {
    const NAME: &str = "grants";
    if f.extension_version.is_none() {
        return Item::fail(
            NAME,
            "cannot be checked: the extension is not installed",
            "CREATE EXTENSION realtime; first",
        );
    }
    let g = &f.grants;
    let login = &f.login;
    let wanted = [
        (g.select_messages, "SELECT on realtime.messages", "GRANT SELECT ON realtime.messages"),
        (g.insert_messages, "INSERT on realtime.messages", "GRANT INSERT ON realtime.messages"),
        (g.insert_commits, "INSERT on realtime.commits", "GRANT INSERT ON realtime.commits"),
        (
            g.execute_publish,
            "EXECUTE on realtime.publish",
            "GRANT EXECUTE ON FUNCTION realtime.publish(text, text, jsonb)",
        ),
        (
            g.execute_webhooks,
            "EXECUTE on the webhook queue functions",
            "GRANT EXECUTE ON FUNCTION realtime.claim_webhook_deliveries(integer, double precision, text, text[]), \
             realtime.finish_webhook_deliveries(bigint[], integer[], text[], integer[], text[], double precision[]), \
             realtime.webhook_queue_depth(), realtime.add_ws_audience(text[], integer[])",
        ),
        (
            g.presence_tables,
            "SELECT, INSERT, UPDATE and DELETE on realtime.presence and realtime.relays",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON realtime.presence, realtime.relays",
        ),
        (g.select_relay_keys, "SELECT on realtime.relay_keys", "GRANT SELECT ON realtime.relay_keys"),
    ];
    let missing: Vec<_> = wanted.iter().filter(|(has, _, _)| *has != Some(true)).collect();
    if missing.is_empty() {
        return Item::ok(
            NAME,
            format!(
                "login '{login}' may SELECT/INSERT realtime.messages, INSERT realtime.commits, EXECUTE realtime.publish and the webhook queue functions, write the presence tables and read the relay keys"
            ),
        );
    }
    let what: Vec<String> = missing
        .iter()
        .map(|(has, what, _)| match has {
            None => format!("{what} (object missing)"),
            Some(_) => what.to_string(),
        })
        .collect();
    let fix: Vec<String> = missing.iter().map(|(_, _, grant)| format!("{grant} TO \"{login}\";")).collect();
    Item::fail(NAME, format!("login '{login}' lacks {}", what.join(", ")), fix.join(" "))
}

/// Connects with the relay's settings (TLS included).
async fn connect(config: &Config) -> Result<crate::pg::db::Connection, CheckError> {
    let db = crate::pg::db::Database::parse(&config.database_url)
        .map_err(|e| CheckError::Connect(e.to_string()))?;
    tokio::time::timeout(Duration::from_secs(10), db.connect())
        .await
        .map_err(|_| CheckError::Connect("no answer within 10 s".into()))?
        .map_err(|e| CheckError::Connect(describe_pg_error(&e)))
}

/// Reads the [`Facts`] on `client`.
pub async fn gather(client: &tokio_postgres::Client, config: &Config) -> Result<Facts, CheckError> {
    let slot_name = config.slot_name();
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, current_setting('server_version'), \
             current_database()::text, current_user::text, r.rolsuper, r.rolreplication, \
             current_setting('wal_level'), current_setting('max_replication_slots')::int, \
             (SELECT count(*) FROM pg_replication_slots)::int, current_setting('max_wal_senders')::int, \
             (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::int, \
             (SELECT extversion FROM pg_extension WHERE extname = 'realtime'), \
             (SELECT default_version FROM pg_available_extensions WHERE name = 'realtime'), \
             EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1), \
             EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 \
                     AND schemaname = 'realtime' AND tablename = 'messages') \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[&PUBLICATION],
        )
        .await?;
    let mut facts = Facts {
        server_version_num: row.get(0),
        server_version: row.get(1),
        database: row.get(2),
        login: row.get(3),
        superuser: row.get(4),
        replication: row.get(5),
        wal_level: row.get(6),
        max_replication_slots: row.get(7),
        replication_slots_used: row.get(8),
        max_wal_senders: row.get(9),
        wal_senders_used: row.get(10),
        extension_version: row.get(11),
        extension_available: row.get(12),
        publication_exists: row.get(13),
        publication_has_messages: row.get(14),
        slot_name: slot_name.clone(),
        slot: None,
        pool: None,
        roles: Vec::new(),
        grants: Grants::default(),
    };
    facts.slot = client
        .query_opt(
            "SELECT plugin::text, coalesce(database = current_database(), false), active \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot_name],
        )
        .await?
        .map(|r| SlotFacts { plugin: r.get(0), same_database: r.get(1), active: r.get(2) });
    if !config.relay_id_fixed {
        let r = client
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE active) FROM pg_replication_slots \
                 WHERE database = current_database() AND slot_name ~ ('^realtime_' || $1 || '(_[0-9]+)?$')",
                &[&config.relay_id],
            )
            .await?;
        facts.pool = Some((r.get(0), r.get(1)));
    }
    for name in &config.roles {
        let r = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1::text), \
                 CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1::text) \
                      THEN pg_has_role(current_user, $1::text::name, 'MEMBER') ELSE false END",
                &[name],
            )
            .await?;
        facts.roles.push(RoleFacts { name: name.clone(), exists: r.get(0), member: r.get(1) });
    }
    let g = client
        .query_one(
            "SELECT CASE WHEN to_regclass('realtime.messages') IS NOT NULL \
                    THEN has_table_privilege('realtime.messages', 'SELECT') END, \
                    CASE WHEN to_regclass('realtime.messages') IS NOT NULL \
                    THEN has_table_privilege('realtime.messages', 'INSERT') END, \
                    CASE WHEN to_regclass('realtime.commits') IS NOT NULL \
                    THEN has_table_privilege('realtime.commits', 'INSERT') END, \
                    CASE WHEN to_regprocedure('realtime.publish(text,text,jsonb)') IS NOT NULL \
                    THEN has_function_privilege('realtime.publish(text,text,jsonb)', 'EXECUTE') END, \
                    CASE WHEN to_regprocedure('realtime.add_ws_audience(text[],integer[])') IS NOT NULL \
                    THEN has_function_privilege('realtime.claim_webhook_deliveries(integer,double precision,text,text[])', 'EXECUTE') \
                     AND has_function_privilege('realtime.finish_webhook_deliveries(bigint[],integer[],text[],integer[],text[],double precision[])', 'EXECUTE') \
                     AND has_function_privilege('realtime.webhook_queue_depth()', 'EXECUTE') \
                     AND has_function_privilege('realtime.add_ws_audience(text[],integer[])', 'EXECUTE') END, \
                    CASE WHEN to_regclass('realtime.presence') IS NOT NULL AND to_regclass('realtime.relays') IS NOT NULL \
                    THEN (SELECT bool_and(has_table_privilege(t, p)) \
                          FROM unnest(ARRAY['realtime.presence', 'realtime.relays']) AS t, \
                               unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p) END, \
                    CASE WHEN to_regclass('realtime.relay_keys') IS NOT NULL \
                    THEN has_table_privilege('realtime.relay_keys', 'SELECT') END",
            &[],
        )
        .await?;
    facts.grants = Grants {
        select_messages: g.get(0),
        insert_messages: g.get(1),
        insert_commits: g.get(2),
        execute_publish: g.get(3),
        execute_webhooks: g.get(4),
        presence_tables: g.get(5),
        select_relay_keys: g.get(6),
    };
    Ok(facts)
}

/// Runs the whole check: the items (or one `FAIL` line when the database cannot be read).
pub async fn run(config: &Config) -> Vec<Item> {
    let target = describe_target(&config.database_url);
    let gathered = match connect(config).await {
        Ok(c) => {
            let (client, conn) = (c.client, c.task);
            let facts = gather(&client, config).await;
            let deploy = deploy::gather(&client, config, c.tls).await;
            let admin = match config.admin.enabled() {
                true => Some(admin::gather(&client).await),
                false => None,
            };
            drop(client);
            let _ = conn.await;
            facts.and_then(|f| Ok((f, deploy?, admin)))
        }
        Err(e) => Err(e),
    };
    match gathered {
        Ok((facts, deploy, admin)) => {
            let slot = match facts.pool {
                Some(_) => "slot from the pool realtime_relay[_<n>]".to_string(),
                None => format!("slot {}", facts.slot_name),
            };
            let mut items = vec![Item::ok("connection", format!("{target} as '{}' ({slot})", facts.login))];
            items.extend(evaluate(&facts, &JwtFacts::of(config)));
            items.extend(deploy::evaluate(&deploy));
            match admin {
                Some(Ok(a)) => items.push(admin::evaluate(&a)),
                Some(Err(e)) => items.push(Item::fail(
                    "admin console",
                    format!("cannot read the role: {e}"),
                    "see the connection line",
                )),
                None => {}
            }
            items
        }
        Err(e @ CheckError::Connect(_)) => vec![Item::fail(
            "connection",
            format!("{target}: {e}"),
            "check --database-url / DATABASE_URL (its sslmode and sslrootcert too), that Postgres is running, and that pg_hba.conf admits this login",
        )],
        Err(e) => vec![Item::fail(
            "connection",
            format!("{target}: {e}"),
            "connect as a login that can read the system catalogs",
        )],
    }
}

/// `database 'db' on host:port` from a connection string, without the password.
fn describe_target(url: &str) -> String {
    let Ok(db) = crate::pg::db::Database::parse(url) else { return "database".into() };
    let cfg = db.pg;
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("database '{}' on {host}:{port}", cfg.get_dbname().or(cfg.get_user()).unwrap_or("postgres"))
}

#[cfg(test)]
mod tests;
