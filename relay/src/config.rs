//! Relay configuration: command-line flags with environment fallbacks, typed by clap (socket
//! addresses, comma lists, booleans, ranges; the presence, webhook and admin console code own
//! their flag groups), validated once at start-up.
//!
//! A bad setting is refused by clap with one line naming the flag and the reason; settings that
//! do not fit together become one [`ConfigError`], so `main` can print a single clear line and
//! exit.

use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::{BoolishValueParser, RangedU64ValueParser};
use clap::{ArgAction, Args, Parser, Subcommand};

use crate::core::auth::{is_plain_identifier, PublicKeys};
use crate::service::presence::settings::{PresenceArgs, PresenceLimits};
use crate::transport::admin::settings::{AdminArgs, AdminConfigError, AdminSettings};
use crate::webhook::{WebhookArgs, WebhookSettings};

/// Top-level command line.
#[derive(Debug, Parser)]
#[command(
    name = "realtime-relay",
    version,
    about = "Realtime relay for Postgres: follows committed messages and fans them out over WebSocket"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands besides the default `serve`.
// `Check` carries every server flag; the enum is parsed once at start-up, so its size is moot.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print an HS256 JWT signed with the relay's secret (for development and tests).
    Token(TokenArgs),
    /// Check the database, the login and the settings the relay would run with (same flags as the
    /// server); one line per item, with a fix for each failure. Exit code 0 when none failed.
    Check(Box<ServeArgs>),
    /// GET http://<bind>/healthz of a running relay; exit 0 when it answers 200 (for containers).
    Healthcheck(HealthcheckArgs),
}

/// Flags of `realtime-relay healthcheck`.
#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Address the relay listens on (a wildcard address is reached through loopback).
    #[arg(long, env = "REALTIME_BIND", default_value = "127.0.0.1:4000")]
    pub bind: SocketAddr,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout_secs: u64,
}

/// Flags of `realtime-relay token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Value of the `role` claim.
    #[arg(long, default_value = "authenticated")]
    pub role: String,
    /// Value of the `sub` claim (user id).
    #[arg(long)]
    pub sub: Option<String>,
    /// Seconds until the token expires.
    #[arg(long, default_value_t = 86_400)]
    pub ttl_secs: u64,
    /// HS256 secret used to sign.
    #[arg(long, env = "REALTIME_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
}

/// Flags of the relay server (the default command). Each flag's own rules (a socket address, a
/// valid URL, a number of at least 1, ...) are checked by clap as it parses; [`Config::try_from`]
/// adds only the checks that compare several settings.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Postgres connection URL (postgres://user:pass@host:port/db?sslmode=verify-full&sslrootcert=...).
    /// The user needs REPLICATION and membership in every role of --roles.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = database_url)]
    pub database_url: Option<String>,
    /// Address to listen on for WebSocket and HTTP.
    #[arg(long, env = "REALTIME_BIND", default_value = "127.0.0.1:4000")]
    pub bind: SocketAddr,
    /// HS256 shared secret for client JWTs (at least 16 bytes).
    #[arg(long, env = "REALTIME_JWT_SECRET", hide_env_values = true, value_parser = jwt_secret)]
    pub jwt_secret: Option<String>,
    /// JWKS file with RS256/ES256 public keys, chosen by the token's `kid`.
    #[arg(long, env = "REALTIME_JWKS_FILE", value_parser = jwks_file)]
    pub jwks_file: Option<PublicKeys>,
    /// Accepted JWT audiences (`aud`), comma-separated; when set, a token must name one of them.
    #[arg(long, env = "REALTIME_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,
    /// Accepted JWT issuers (`iss`), comma-separated; when set, a token must name one of them.
    #[arg(long, env = "REALTIME_JWT_ISSUER", value_delimiter = ',')]
    pub jwt_issuer: Vec<String>,
    /// Role of a token without a `role` claim (one of --roles). Unset: such tokens are refused.
    #[arg(long, env = "REALTIME_DEFAULT_ROLE", value_parser = role)]
    pub default_role: Option<String>,
    /// Postgres roles a JWT `role` claim may select, comma-separated.
    #[arg(long, env = "REALTIME_ROLES", default_value = "anon,authenticated,service_role",
          value_delimiter = ',', value_parser = role)]
    pub roles: Vec<String>,
    /// Accept connections without a token, as role `anon`.
    #[arg(long, env = "REALTIME_ALLOW_ANON", default_value_t = true, value_parser = BoolishValueParser::new(),
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_anon: bool,
    /// This relay's identity; names its replication slot `realtime_<id>`. Unset: the relay claims
    /// the first free id of the pool relay, relay_2, relay_3, ... (identical replicas just work).
    /// Set: this exact id, waiting while another running relay holds it.
    #[arg(long, env = "REALTIME_RELAY_ID", value_parser = relay_id)]
    pub relay_id: Option<String>,
    /// Seconds a relay slot may stay unclaimed and idle before a live relay drops it.
    #[arg(long, env = "REALTIME_SLOT_ABANDON_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub slot_abandon_secs: u64,
    /// Connections in the pool used for permission checks.
    #[arg(long, env = "REALTIME_POOL_SIZE", default_value_t = 8, value_parser = positive())]
    pub pool_size: usize,
    /// Bytes queued per connection. A subscriber whose queue is full is not closed: it catches
    /// up from realtime.messages at its own pace (ephemeral messages it misses meanwhile are
    /// counted in a `dropped` notice). History pages and replays are cut at half of it.
    #[arg(long, env = "REALTIME_SEND_QUEUE_BYTES", default_value_t = 1 << 20,
          value_parser = RangedU64ValueParser::<usize>::new().range(65_536..))]
    pub send_queue_bytes: usize,
    /// Bytes queued over all connections together; past it, subscribers catch up from the log
    /// and connections stop reading requests until their queues drain.
    #[arg(long, env = "REALTIME_SEND_QUEUE_TOTAL_BYTES", default_value_t = 256 << 20,
          value_parser = RangedU64ValueParser::<usize>::new().range(1_048_576..))]
    pub send_queue_total_bytes: usize,
    /// Seconds a connection may leave its queue unread (no progress writing to it) before it is
    /// closed as too slow (4009). A slow but steady reader is never closed.
    #[arg(long, env = "REALTIME_STALL_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub stall_timeout_secs: u64,
    /// Least milliseconds between two writes to one WebSocket while frames keep coming: what
    /// is queued in between goes out in one write (fewer TCP segments, less CPU per delivery,
    /// at most this much added latency). A frame for a connection that was not written to
    /// within it goes out at once. 0: write whatever is queued at once.
    #[arg(long, env = "REALTIME_WRITE_INTERVAL_MS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub write_interval_ms: u64,
    /// Bytes of one transaction's events the relay holds until its commit. A larger
    /// transaction's stored messages are read back from `realtime.messages` by their
    /// subscribers after the commit instead, so any transaction size works in bounded memory.
    #[arg(long, env = "REALTIME_MAX_TXN_BYTES", default_value_t = 32 << 20,
          value_parser = RangedU64ValueParser::<usize>::new().range(1_048_576..))]
    pub max_txn_bytes: usize,
    /// Seconds between permission re-checks of every open subscription (RLS policies may read
    /// data that changed). A change to `realtime.channels` re-checks at once; a subscription
    /// whose check keeps failing (database errors) for two intervals ends.
    #[arg(long, env = "REALTIME_RECHECK_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub recheck_secs: u64,
    /// Seconds between keep-alive comments on an idle Server-Sent Events stream (`GET /v1/sse`),
    /// so proxies do not close it for silence.
    #[arg(long, env = "REALTIME_SSE_KEEPALIVE_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub sse_keepalive_secs: u64,
    /// Seconds presence tracked over HTTP without a stream (long-poll clients,
    /// `POST /v1/presence/track` without `stream`) lives after its last track or heartbeat.
    #[arg(long, env = "REALTIME_PRESENCE_LEASE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(2..=600))]
    pub presence_lease_secs: u64,
    /// Largest accepted client frame in bytes (larger: close 1009).
    #[arg(long, env = "REALTIME_MAX_FRAME_BYTES", default_value_t = 1_048_576, value_parser = positive())]
    pub max_frame_bytes: usize,
    /// Most subscriptions one connection may hold.
    #[arg(long, env = "REALTIME_MAX_SUBSCRIPTIONS", default_value_t = 100, value_parser = positive())]
    pub max_subscriptions: usize,
    /// Publishes per second one connection may send (bursts up to the same number); more get
    /// REALTIME_RATE_LIMITED, and twice that many refusals within 10 s close it with 4008.
    #[arg(long, env = "REALTIME_MAX_PUBLISH_RATE", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_publish_rate: u32,
    /// `history` requests per second one connection (WebSocket) or one caller (HTTP: the user, or
    /// the client's address without one) may send; more get REALTIME_RATE_LIMITED.
    #[arg(long, env = "REALTIME_MAX_HISTORY_RATE", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_history_rate: u32,
    /// `auth` frames per second one connection may send (each re-checks every subscription);
    /// more get REALTIME_RATE_LIMITED.
    #[arg(long, env = "REALTIME_MAX_AUTH_RATE", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_auth_rate: u32,
    /// Seconds a connection has to send a request's headers (the first request, and each next
    /// one on a kept-alive connection); a client that sends half a request or idles is dropped.
    #[arg(long, env = "REALTIME_HEADER_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_secs: u64,
    /// Most sockets open at once (HTTP requests, handshakes, WebSockets and streams alike);
    /// more get HTTP 503.
    #[arg(long, env = "REALTIME_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = positive())]
    pub max_connections: usize,
    /// Role whose tokens publish as the system (through `realtime.publish()`, no RLS).
    #[arg(long, env = "REALTIME_SERVICE_ROLE", default_value = "service_role")]
    pub service_role: String,
    /// Seconds an allowed ephemeral publish (`persist:false`) is remembered per connection and
    /// channel before the permission is checked again.
    #[arg(long, env = "REALTIME_PUBLISH_CHECK_TTL_SECS", default_value_t = 10)]
    pub publish_check_ttl_secs: u64,
    /// Seconds a granted subscribe permission (role, claims and channel) is remembered, so a
    /// reconnect does not check it in Postgres again; never past the next permission re-check
    /// (`--recheck-secs`, or a change to `realtime.channels`), which forgets them all. Refusals
    /// are never remembered. `0` checks every time.
    #[arg(long, env = "REALTIME_SUBSCRIBE_CHECK_TTL_SECS", default_value_t = 60)]
    pub subscribe_check_ttl_secs: u64,
    /// Most messages in one `POST /v1/publish` batch.
    #[arg(long, env = "REALTIME_MAX_BATCH", default_value_t = 1000, value_parser = positive())]
    pub max_batch: usize,
    /// Seconds a resume cursor stays replayable: older cursors get `reset` instead of a replay.
    #[arg(long, env = "REALTIME_REPLAY_WINDOW_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub replay_window_secs: u64,
    /// Most messages one resume replays; more missed messages get `reset` instead.
    #[arg(long, env = "REALTIME_MAX_REPLAY", default_value_t = 10_000, value_parser = positive())]
    pub max_replay: usize,
    #[command(flatten)]
    pub presence: PresenceArgs,
    /// Seconds between WebSocket pings the relay sends to each client.
    #[arg(long, env = "REALTIME_PING_INTERVAL_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ping_interval_secs: u64,
    /// Seconds a client may stay silent (no frame, no pong) before it is disconnected (and
    /// leaves presence). Must exceed --ping-interval-secs.
    #[arg(long, env = "REALTIME_PING_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ping_timeout_secs: u64,
    /// Bearer token `GET /metrics` requires (at least 16 bytes); unset: metrics are open.
    #[arg(long, env = "REALTIME_METRICS_TOKEN", hide_env_values = true, value_parser = jwt_secret)]
    pub metrics_token: Option<String>,
    /// Emit logs as JSON lines.
    #[arg(long, env = "REALTIME_LOG_JSON", default_value_t = false, value_parser = BoolishValueParser::new(),
          action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub log_json: bool,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// A number of at least 1.
fn positive() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..)
}

fn database_url(s: &str) -> Result<String, String> {
    crate::pg::db::Database::parse(s).map(|_| s.to_string()).map_err(|e| match e {
        crate::pg::db::DbUrlError::Parse(e) => format!("not a valid Postgres URL: {e}"),
        tls => tls.to_string(),
    })
}

fn jwt_secret(s: &str) -> Result<String, String> {
    match s.len() {
        n if n < 16 => Err(format!("too short ({n} bytes); use at least 16 bytes")),
        _ => Ok(s.to_string()),
    }
}

fn jwks_file(path: &str) -> Result<PublicKeys, String> {
    PublicKeys::from_file(path).map_err(|e| e.to_string())
}

fn role(s: &str) -> Result<String, String> {
    let r = s.trim();
    if is_plain_identifier(r) {
        Ok(r.to_string())
    } else {
        Err(format!("'{r}' is not a valid role name (letters, digits, '_'; at most 63 bytes)"))
    }
}

fn relay_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 40
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(s.to_string())
    } else {
        Err("must be 1-40 characters of a-z, 0-9 and '_'".into())
    }
}

/// Why the configuration was refused: settings that do not fit together. Each message names
/// the settings.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--database-url / DATABASE_URL is required (e.g. postgres://postgres@127.0.0.1:5432/postgres)")]
    MissingDatabaseUrl,
    #[error("--jwt-secret / REALTIME_JWT_SECRET (at least 16 bytes) or --jwks-file / REALTIME_JWKS_FILE is required")]
    MissingJwtSecret,
    #[error("--roles / REALTIME_ROLES is empty")]
    NoRoles,
    #[error("--allow-anon is true but role 'anon' is not in --roles")]
    AnonNotAllowed,
    #[error("--default-role / REALTIME_DEFAULT_ROLE '{0}' is not one of --roles")]
    DefaultRoleNotAllowed(String),
    #[error("--{0} must be greater than --{1}")]
    NotAbove(&'static str, &'static str),
    #[error("--webhook-lease-secs ({lease}) must be greater than --webhook-timeout-secs ({timeout})")]
    LeaseNotOverTimeout { lease: u64, timeout: u64 },
    #[error(transparent)]
    Admin(#[from] AdminConfigError),
}

/// Validated settings the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub bind: SocketAddr,
    pub jwt_secret: Option<String>,
    pub public_keys: PublicKeys,
    pub roles: Vec<String>,
    pub allow_anon: bool,
    /// `aud`, `iss` and default-role rules for tokens.
    pub claim_rules: crate::core::auth::ClaimRules,
    /// The relay id: `--relay-id`, or the pool's base id `relay` until a member is claimed at
    /// start-up ([`crate::pg::slots`]), then the claimed one.
    pub relay_id: String,
    /// `--relay-id` was given: use exactly it.
    pub relay_id_fixed: bool,
    /// `--slot-abandon-secs`.
    pub slot_abandon: Duration,
    pub pool_size: usize,
    /// Bytes one connection may queue.
    pub send_queue_bytes: usize,
    /// Bytes all connections may queue together.
    pub send_queue_total_bytes: usize,
    /// Unread queue time after which a connection is closed (4009).
    pub stall_timeout: Duration,
    /// `--write-interval-ms`.
    pub write_interval: Duration,
    /// `--recheck-secs`.
    pub recheck_interval: Duration,
    /// `--max-txn-bytes`.
    pub max_txn_bytes: usize,
    pub max_frame_bytes: usize,
    pub max_subscriptions: usize,
    pub max_publish_rate: u32,
    pub max_history_rate: u32,
    pub max_auth_rate: u32,
    pub max_connections: usize,
    /// Time a connection has to send a request's headers.
    pub header_timeout: Duration,
    pub service_role: String,
    pub publish_check_ttl: Duration,
    /// `--subscribe-check-ttl-secs`.
    pub subscribe_check_ttl: Duration,
    pub max_batch: usize,
    pub replay_window: Duration,
    pub max_replay: usize,
    /// Keep-alive comment interval of SSE streams.
    pub sse_keepalive: Duration,
    /// How long HTTP presence without a stream lives after its last track or heartbeat.
    pub presence_lease: Duration,
    pub presence: PresenceLimits,
    /// Interval of the relay's WebSocket pings.
    pub ping_interval: Duration,
    /// Silence (no frame, no pong) after which a client is disconnected.
    pub ping_timeout: Duration,
    pub log_json: bool,
    /// Bearer token for `GET /metrics`; `None`: open.
    pub metrics_token: Option<String>,
    pub webhooks: WebhookSettings,
    /// The admin console (off without a token).
    pub admin: AdminSettings,
}

impl Config {
    /// The replication slot this relay owns.
    pub fn slot_name(&self) -> String {
        format!("realtime_{}", self.relay_id)
    }

    /// Bytes a history page or a replay page may hold: half a connection's queue, so a page
    /// always fits beside live traffic.
    pub fn history_page_bytes(&self) -> usize {
        self.send_queue_bytes / 2
    }
}

impl TryFrom<ServeArgs> for Config {
    type Error = ConfigError;

    fn try_from(a: ServeArgs) -> Result<Self, ConfigError> {
        // Optional to clap only because the `token` and `healthcheck` subcommands share the
        // top-level flags; the server and `check` need it.
        let database_url = a.database_url.ok_or(ConfigError::MissingDatabaseUrl)?;
        let public_keys = a.jwks_file.unwrap_or_default();
        let jwt_secret = a.jwt_secret.filter(|s| !s.is_empty());
        if jwt_secret.is_none() && public_keys.is_empty() {
            return Err(ConfigError::MissingJwtSecret);
        }
        if a.roles.is_empty() {
            return Err(ConfigError::NoRoles);
        }
        if a.allow_anon && !a.roles.iter().any(|r| r == "anon") {
            return Err(ConfigError::AnonNotAllowed);
        }
        if let Some(r) = a.default_role.as_ref().filter(|r| !a.roles.contains(r)) {
            return Err(ConfigError::DefaultRoleNotAllowed(r.clone()));
        }
        let list = |v: Vec<String>| -> Vec<String> {
            v.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
        };
        let claim_rules = crate::core::auth::ClaimRules {
            audience: list(a.jwt_audience),
            issuer: list(a.jwt_issuer),
            default_role: a.default_role,
        };
        if a.presence.relay_timeout_secs.saturating_mul(1000) <= a.presence.heartbeat_ms {
            return Err(ConfigError::NotAbove("presence-relay-timeout-secs", "presence-heartbeat-ms"));
        }
        if a.ping_timeout_secs <= a.ping_interval_secs {
            return Err(ConfigError::NotAbove("ping-timeout-secs", "ping-interval-secs"));
        }
        if a.webhooks.lease_secs <= a.webhooks.timeout_secs {
            return Err(ConfigError::LeaseNotOverTimeout {
                lease: a.webhooks.lease_secs,
                timeout: a.webhooks.timeout_secs,
            });
        }
        let secs = Duration::from_secs;
        Ok(Config {
            database_url,
            bind: a.bind,
            jwt_secret,
            public_keys,
            roles: a.roles,
            allow_anon: a.allow_anon,
            claim_rules,
            relay_id_fixed: a.relay_id.is_some(),
            relay_id: a.relay_id.unwrap_or_else(|| "relay".to_string()),
            slot_abandon: secs(a.slot_abandon_secs),
            pool_size: a.pool_size,
            send_queue_bytes: a.send_queue_bytes,
            send_queue_total_bytes: a.send_queue_total_bytes,
            stall_timeout: secs(a.stall_timeout_secs),
            write_interval: Duration::from_millis(a.write_interval_ms),
            recheck_interval: secs(a.recheck_secs),
            max_txn_bytes: a.max_txn_bytes,
            max_frame_bytes: a.max_frame_bytes,
            max_subscriptions: a.max_subscriptions,
            max_publish_rate: a.max_publish_rate,
            max_history_rate: a.max_history_rate,
            max_auth_rate: a.max_auth_rate,
            max_connections: a.max_connections,
            header_timeout: secs(a.header_timeout_secs),
            service_role: a.service_role,
            publish_check_ttl: secs(a.publish_check_ttl_secs),
            subscribe_check_ttl: secs(a.subscribe_check_ttl_secs),
            max_batch: a.max_batch,
            replay_window: secs(a.replay_window_secs),
            max_replay: a.max_replay,
            sse_keepalive: secs(a.sse_keepalive_secs),
            presence_lease: secs(a.presence_lease_secs),
            presence: PresenceLimits::from(&a.presence),
            ping_interval: secs(a.ping_interval_secs),
            ping_timeout: secs(a.ping_timeout_secs),
            log_json: a.log_json,
            metrics_token: a.metrics_token,
            webhooks: WebhookSettings::from(&a.webhooks),
            admin: AdminSettings::try_from(a.admin)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `extra` after a valid database URL and secret; the error text of clap or of
    /// [`Config::try_from`].
    fn args(extra: &[&str]) -> Result<Config, String> {
        let mut v = vec!["realtime-relay", "--database-url", "postgres://postgres@127.0.0.1:5432/postgres"];
        if !extra.contains(&"--jwt-secret") {
            v.extend_from_slice(&["--jwt-secret", "0123456789abcdef0123"]);
        }
        v.extend_from_slice(extra);
        let cli = Cli::try_parse_from(v).map_err(|e| e.to_string())?;
        Config::try_from(cli.serve).map_err(|e| e.to_string())
    }

    #[test]
    fn check_subcommand_takes_the_server_flags() {
        let v = ["realtime-relay", "check", "--database-url", "postgres://p@h/d", "--relay-id", "r2"];
        let Some(Command::Check(a)) = Cli::try_parse_from(v).unwrap().command else { panic!("not check") };
        let c = Config::try_from(ServeArgs { jwt_secret: Some("0123456789abcdef".into()), ..*a }).unwrap();
        assert_eq!((c.database_url.as_str(), c.slot_name().as_str()), ("postgres://p@h/d", "realtime_r2"));
    }

    #[test]
    fn claim_rules_come_from_the_flags_and_the_default_role_must_be_allowed() {
        let c = args(&[]).unwrap();
        assert_eq!(
            c.claim_rules,
            crate::core::auth::ClaimRules::default(),
            "no aud/iss check, no default role"
        );
        let c = args(&[
            "--jwt-audience",
            "authenticated, app",
            "--jwt-issuer",
            "https://id.example",
            "--default-role",
            "authenticated",
        ])
        .unwrap();
        assert_eq!(c.claim_rules.audience, ["authenticated", "app"]);
        assert_eq!(c.claim_rules.issuer, ["https://id.example"]);
        assert_eq!(c.claim_rules.default_role.as_deref(), Some("authenticated"));
        let e = args(&["--default-role", "postgres"]).unwrap_err();
        assert!(e.contains("--default-role / REALTIME_DEFAULT_ROLE 'postgres' is not one of --roles"), "{e}");
    }

    #[test]
    fn metrics_token_is_optional_and_must_not_be_short() {
        assert_eq!(args(&[]).unwrap().metrics_token, None);
        let c = args(&["--metrics-token", "0123456789abcdef"]).unwrap();
        assert_eq!(c.metrics_token.as_deref(), Some("0123456789abcdef"));
        let e = args(&["--metrics-token", "short"]).unwrap_err();
        assert!(e.contains("--metrics-token") && e.contains("too short (5 bytes)"), "{e}");
    }

    #[test]
    fn defaults_are_valid() {
        let c = args(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:4000");
        assert_eq!(c.roles, ["anon", "authenticated", "service_role"]);
        assert!(c.allow_anon);
        assert!(!c.log_json);
        assert_eq!(c.slot_name(), "realtime_relay");
        assert!(!c.relay_id_fixed, "no --relay-id: a pool member is claimed");
        assert_eq!(c.slot_abandon, Duration::from_secs(300));
        assert!(args(&["--relay-id", "relay"]).unwrap().relay_id_fixed);
        assert_eq!((c.ping_interval, c.ping_timeout), (Duration::from_secs(20), Duration::from_secs(60)));
    }

    #[test]
    fn a_bad_value_is_refused_naming_its_flag_and_reason() {
        for (extra, flag, reason) in [
            (&["--jwt-secret", "short"][..], "--jwt-secret", "too short (5 bytes)"),
            (&["--bind", "nonsense"], "--bind", "invalid socket address"),
            (&["--relay-id", "Has-Caps"], "--relay-id", "a-z, 0-9 and '_'"),
            (&["--roles", "anon,evil\"role"], "--roles", "'evil\"role' is not a valid role name"),
            (&["--pool-size", "0"], "--pool-size", "0 is not in 1.."),
            (&["--presence-max-members", "0"], "--presence-max-members", "0 is not in 1.."),
            (&["--webhook-max-attempts", "0"], "--webhook-max-attempts", "0 is not in 1.."),
            (&["--max-replay", "0"], "--max-replay", "0 is not in 1.."),
            (&["--allow-anon", "maybe"], "--allow-anon", "invalid value"),
        ] {
            let e = args(extra).unwrap_err();
            assert!(e.contains(flag) && e.contains(reason), "{extra:?}: {e}");
        }
        let v = ["realtime-relay", "--database-url", "postgres://host:notaport/db"];
        let e = Cli::try_parse_from(v).unwrap_err().to_string();
        assert!(e.contains("--database-url") && e.contains("not a valid Postgres URL"), "{e}");
    }

    #[test]
    fn lists_and_booleans_are_parsed_by_clap() {
        let c =
            args(&["--roles", "authenticated, service_role", "--allow-anon", "no", "--log-json"]).unwrap();
        assert_eq!(c.roles, ["authenticated", "service_role"]);
        assert!(!c.allow_anon);
        assert!(c.log_json);
        let c = args(&["--webhook-allow-private"]).unwrap();
        assert!(c.webhooks.allow_private);
        assert!(!args(&["--webhook-allow-private", "off"]).unwrap().webhooks.allow_private);
    }

    #[test]
    fn anon_enabled_without_anon_role_is_refused() {
        let e = args(&["--roles", "authenticated"]).unwrap_err();
        assert_eq!(e, "--allow-anon is true but role 'anon' is not in --roles");
        assert!(args(&["--roles", "authenticated", "--allow-anon", "false"]).is_ok());
    }

    #[test]
    fn jwks_file_replaces_the_secret_and_a_bad_one_is_named() {
        let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwks.json");
        let v = ["realtime-relay", "--database-url", "postgres://p@h/d", "--jwks-file", jwks];
        let c = Config::try_from(Cli::try_parse_from(v).unwrap().serve).unwrap();
        assert_eq!((c.jwt_secret, c.public_keys.len()), (None, 2));
        let v = ["realtime-relay", "--database-url", "postgres://p@h/d", "--jwks-file", "/nonexistent.json"];
        let e = Cli::try_parse_from(v).unwrap_err().to_string();
        assert!(e.contains("--jwks-file") && e.contains("cannot read /nonexistent.json"), "{e}");
        let v = ["realtime-relay", "--database-url", "postgres://p@h/d"];
        let e = Config::try_from(Cli::try_parse_from(v).unwrap().serve).unwrap_err();
        assert!(matches!(e, ConfigError::MissingJwtSecret));
    }

    #[test]
    fn presence_flags_default_and_timeouts_must_exceed_intervals() {
        let c = args(&[]).unwrap();
        assert_eq!(
            (c.presence.max_members, c.presence.max_state_bytes, c.presence.track_rate),
            (1000, 4096, 10)
        );
        assert_eq!(c.presence.relay_timeout, Duration::from_secs(30));
        assert_eq!(c.presence.heartbeat, Duration::from_millis(5000));
        let e = args(&["--presence-relay-timeout-secs", "1", "--presence-heartbeat-ms", "1000"]).unwrap_err();
        assert_eq!(e, "--presence-relay-timeout-secs must be greater than --presence-heartbeat-ms");
        let e = args(&["--ping-timeout-secs", "5", "--ping-interval-secs", "5"]).unwrap_err();
        assert_eq!(e, "--ping-timeout-secs must be greater than --ping-interval-secs");
    }

    #[test]
    fn webhook_defaults_and_lease_must_exceed_timeout() {
        let w = args(&[]).unwrap().webhooks;
        assert_eq!((w.concurrency, w.per_endpoint, w.retry.max_attempts), (64, 8, 8));
        assert_eq!((w.timeout, w.lease), (Duration::from_secs(10), Duration::from_secs(60)));
        assert!(!w.allow_private);
        let e = args(&["--webhook-timeout-secs", "30", "--webhook-lease-secs", "30"]).unwrap_err();
        assert!(e.contains("--webhook-lease-secs (30) must be greater"), "{e}");
        assert_eq!(args(&["--webhook-concurrency", "0"]).unwrap().webhooks.concurrency, 0);
    }

    #[test]
    fn the_admin_console_is_off_by_default_and_its_flags_are_checked() {
        assert!(!args(&[]).unwrap().admin.enabled());
        let token = "0123456789abcdef0123456789abcdef";
        let c = args(&["--admin-token", token, "--admin-origin", "https://Admin.Example.com/"]).unwrap();
        assert_eq!(
            (c.admin.token(), c.admin.origins.as_slice()),
            (Some(token), &["https://admin.example.com".to_string()][..])
        );
        let e = args(&["--admin-token", "short"]).unwrap_err();
        assert!(e.starts_with("--admin-token / REALTIME_ADMIN_TOKEN is too short (5 bytes)"), "{e}");
    }

    #[test]
    fn replay_window_and_max_replay_default_and_can_be_set() {
        let c = args(&[]).unwrap();
        assert_eq!((c.replay_window, c.max_replay), (Duration::from_secs(600), 10_000));
        let c = args(&["--replay-window-secs", "5", "--max-replay", "3"]).unwrap();
        assert_eq!((c.replay_window.as_secs(), c.max_replay), (5, 3));
    }
}
