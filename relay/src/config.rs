//! Relay configuration: command-line flags with environment fallbacks, validated once at start-up.
//!
//! A bad or missing setting becomes one [`ConfigError`] whose message names the setting and the
//! reason, so `main` can print a single clear line and exit.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

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
    pub bind: String,
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

/// Flags of the relay server (the default command).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Postgres connection URL (postgres://user:pass@host:port/db). The user needs REPLICATION and
    /// membership in every role of --roles.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Address to listen on for WebSocket and HTTP.
    #[arg(long, env = "REALTIME_BIND", default_value = "127.0.0.1:4000")]
    pub bind: String,
    /// HS256 shared secret for client JWTs.
    #[arg(long, env = "REALTIME_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// JWKS file with RS256/ES256 public keys, chosen by the token's `kid`.
    #[arg(long, env = "REALTIME_JWKS_FILE")]
    pub jwks_file: Option<String>,
    /// Postgres roles a JWT `role` claim may select, comma-separated.
    #[arg(long, env = "REALTIME_ROLES", default_value = "anon,authenticated,service_role")]
    pub roles: String,
    /// Accept connections without a token, as role `anon`.
    #[arg(long, env = "REALTIME_ALLOW_ANON", default_value = "true", action = clap::ArgAction::Set)]
    pub allow_anon: String,
    /// This relay's identity; names its replication slot `realtime_<id>`. Unique per relay.
    #[arg(long, env = "REALTIME_RELAY_ID", default_value = "relay")]
    pub relay_id: String,
    /// Connections in the pool used for permission checks.
    #[arg(long, env = "REALTIME_POOL_SIZE", default_value_t = 8)]
    pub pool_size: usize,
    /// Frames queued per connection before it is closed as too slow (4009).
    #[arg(long, env = "REALTIME_SEND_QUEUE", default_value_t = 1024)]
    pub send_queue: usize,
    /// Largest accepted client frame in bytes (larger: close 1009).
    #[arg(long, env = "REALTIME_MAX_FRAME_BYTES", default_value_t = 1_048_576)]
    pub max_frame_bytes: usize,
    /// Most subscriptions one connection may hold.
    #[arg(long, env = "REALTIME_MAX_SUBSCRIPTIONS", default_value_t = 100)]
    pub max_subscriptions: usize,
    /// Publishes per second one connection may send (bursts up to the same number); more get
    /// REALTIME_RATE_LIMITED, and twice that many refusals within 10 s close it with 4008.
    #[arg(long, env = "REALTIME_MAX_PUBLISH_RATE", default_value_t = 100)]
    pub max_publish_rate: u32,
    /// Most WebSocket connections at once; more are refused with HTTP 503.
    #[arg(long, env = "REALTIME_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Role whose tokens publish as the system (through `realtime.publish()`, no RLS).
    #[arg(long, env = "REALTIME_SERVICE_ROLE", default_value = "service_role")]
    pub service_role: String,
    /// Seconds an allowed ephemeral publish (`persist:false`) is remembered per connection and
    /// channel before the permission is checked again.
    #[arg(long, env = "REALTIME_PUBLISH_CHECK_TTL_SECS", default_value_t = 10)]
    pub publish_check_ttl_secs: u64,
    /// Most messages in one `POST /v1/publish` batch.
    #[arg(long, env = "REALTIME_MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,
    /// Seconds a resume cursor stays replayable: older cursors get `reset` instead of a replay.
    #[arg(long, env = "REALTIME_REPLAY_WINDOW_SECS", default_value_t = 600)]
    pub replay_window_secs: u64,
    /// Most messages one resume replays; more missed messages get `reset` instead.
    #[arg(long, env = "REALTIME_MAX_REPLAY", default_value_t = 10_000)]
    pub max_replay: usize,
    /// Most presence members on one channel; more tracks get REALTIME_PRESENCE_LIMIT.
    #[arg(long, env = "REALTIME_PRESENCE_MAX_MEMBERS", default_value_t = 1000)]
    pub presence_max_members: usize,
    /// Largest presence state (its JSON text) in bytes; larger gets REALTIME_PAYLOAD_TOO_LARGE.
    #[arg(long, env = "REALTIME_PRESENCE_MAX_STATE_BYTES", default_value_t = 4096)]
    pub presence_max_state_bytes: usize,
    /// `track` calls per second one connection may send (bursts up to the same number); more get
    /// REALTIME_RATE_LIMITED.
    #[arg(long, env = "REALTIME_PRESENCE_TRACK_RATE", default_value_t = 10)]
    pub presence_track_rate: u32,
    /// Milliseconds between this relay's presence heartbeats in Postgres.
    #[arg(long, env = "REALTIME_PRESENCE_HEARTBEAT_MS", default_value_t = 5000)]
    pub presence_heartbeat_ms: u64,
    /// Seconds without a heartbeat after which a relay is declared dead and its members leave.
    #[arg(long, env = "REALTIME_PRESENCE_RELAY_TIMEOUT_SECS", default_value_t = 30)]
    pub presence_relay_timeout_secs: u64,
    /// Seconds between WebSocket pings the relay sends to each client.
    #[arg(long, env = "REALTIME_PING_INTERVAL_SECS", default_value_t = 20)]
    pub ping_interval_secs: u64,
    /// Seconds a client may stay silent (no frame, no pong) before it is disconnected (and
    /// leaves presence).
    #[arg(long, env = "REALTIME_PING_TIMEOUT_SECS", default_value_t = 60)]
    pub ping_timeout_secs: u64,
    /// Emit logs as JSON lines.
    #[arg(long, env = "REALTIME_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
    /// Allow webhook URLs on loopback, private, link-local, CGNAT and IPv6 unique-local
    /// addresses (refused by default, so channel owners cannot probe the relay's network).
    #[arg(long, env = "REALTIME_WEBHOOK_ALLOW_PRIVATE", default_value_t = false)]
    pub webhook_allow_private: bool,
    /// Seconds one webhook attempt may take (connect, send, response).
    #[arg(long, env = "REALTIME_WEBHOOK_TIMEOUT_SECS", default_value_t = 10)]
    pub webhook_timeout_secs: u64,
    /// Attempts per webhook delivery before it is marked failed.
    #[arg(long, env = "REALTIME_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8)]
    pub webhook_max_attempts: u32,
    /// Webhook attempts in flight at once on this relay; 0 disables webhook delivery here.
    #[arg(long, env = "REALTIME_WEBHOOK_CONCURRENCY", default_value_t = 64)]
    pub webhook_concurrency: usize,
    /// Webhook attempts in flight at once to one URL.
    #[arg(long, env = "REALTIME_WEBHOOK_ENDPOINT_CONCURRENCY", default_value_t = 8)]
    pub webhook_endpoint_concurrency: usize,
    /// Seconds a claimed delivery stays with this relay; after that (relay crashed) another
    /// relay retries it. Must exceed --webhook-timeout-secs.
    #[arg(long, env = "REALTIME_WEBHOOK_LEASE_SECS", default_value_t = 60)]
    pub webhook_lease_secs: u64,
    /// First retry delay in milliseconds; doubles per attempt, with jitter.
    #[arg(long, env = "REALTIME_WEBHOOK_RETRY_BASE_MS", default_value_t = 1000)]
    pub webhook_retry_base_ms: u64,
    /// Longest retry delay in seconds (also caps Retry-After).
    #[arg(long, env = "REALTIME_WEBHOOK_RETRY_MAX_SECS", default_value_t = 3600)]
    pub webhook_retry_max_secs: u64,
}

/// Why the configuration was refused. Each message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--database-url / DATABASE_URL is required (e.g. postgres://postgres@127.0.0.1:5432/postgres)")]
    MissingDatabaseUrl,
    #[error("--database-url / DATABASE_URL is not a valid Postgres URL: {0}")]
    BadDatabaseUrl(String),
    #[error("--bind / REALTIME_BIND '{0}' is not a socket address like 127.0.0.1:4000")]
    BadBind(String),
    #[error("--jwt-secret / REALTIME_JWT_SECRET (at least 16 bytes) or --jwks-file / REALTIME_JWKS_FILE is required")]
    MissingJwtSecret,
    #[error("--jwt-secret / REALTIME_JWT_SECRET is too short ({0} bytes); use at least 16 bytes")]
    ShortJwtSecret(usize),
    #[error("--jwks-file / REALTIME_JWKS_FILE: {0}")]
    Jwks(#[from] crate::auth::JwksError),
    #[error(
        "--roles / REALTIME_ROLES: '{0}' is not a valid role name (letters, digits, '_'; at most 63 bytes)"
    )]
    BadRole(String),
    #[error("--roles / REALTIME_ROLES is empty")]
    NoRoles,
    #[error("--allow-anon / REALTIME_ALLOW_ANON must be true or false, not '{0}'")]
    BadAllowAnon(String),
    #[error("--allow-anon is true but role 'anon' is not in --roles")]
    AnonNotAllowed,
    #[error("--relay-id / REALTIME_RELAY_ID '{0}' must be 1-40 characters of a-z, 0-9 and '_'")]
    BadRelayId(String),
    #[error("--{0} must be greater than zero")]
    Zero(&'static str),
    #[error("--{0} must be greater than --{1}")]
    NotAbove(&'static str, &'static str),
    #[error("--webhook-lease-secs ({lease}) must be greater than --webhook-timeout-secs ({timeout})")]
    LeaseNotOverTimeout { lease: u64, timeout: u64 },
}

/// Validated settings the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub bind: SocketAddr,
    pub jwt_secret: Option<String>,
    pub public_keys: crate::auth::PublicKeys,
    pub roles: Vec<String>,
    pub allow_anon: bool,
    pub relay_id: String,
    pub pool_size: usize,
    pub send_queue: usize,
    pub max_frame_bytes: usize,
    pub max_subscriptions: usize,
    pub max_publish_rate: u32,
    pub max_connections: usize,
    pub service_role: String,
    pub publish_check_ttl: std::time::Duration,
    pub max_batch: usize,
    pub replay_window: std::time::Duration,
    pub max_replay: usize,
    pub presence: PresenceLimits,
    pub log_json: bool,
    pub webhooks: crate::webhook::WebhookSettings,
}

/// Presence limits and timing.
#[derive(Debug, Clone, Copy)]
pub struct PresenceLimits {
    pub max_members: usize,
    pub max_state_bytes: usize,
    pub track_rate: u32,
    pub heartbeat: std::time::Duration,
    pub relay_timeout: std::time::Duration,
    pub ping_interval: std::time::Duration,
    pub ping_timeout: std::time::Duration,
}

impl Config {
    /// The replication slot this relay owns.
    pub fn slot_name(&self) -> String {
        format!("realtime_{}", self.relay_id)
    }
}

/// A Postgres role name we are willing to `SET ROLE` to: a plain identifier.
pub fn is_plain_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl TryFrom<ServeArgs> for Config {
    type Error = ConfigError;

    fn try_from(a: ServeArgs) -> Result<Self, ConfigError> {
        let database_url = a.database_url.ok_or(ConfigError::MissingDatabaseUrl)?;
        database_url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| ConfigError::BadDatabaseUrl(e.to_string()))?;
        let bind = a.bind.parse().map_err(|_| ConfigError::BadBind(a.bind.clone()))?;
        let public_keys = match &a.jwks_file {
            Some(path) => crate::auth::PublicKeys::from_file(path)?,
            None => crate::auth::PublicKeys::default(),
        };
        let jwt_secret = a.jwt_secret.filter(|s| !s.is_empty());
        match &jwt_secret {
            Some(s) if s.len() < 16 => return Err(ConfigError::ShortJwtSecret(s.len())),
            None if public_keys.is_empty() => return Err(ConfigError::MissingJwtSecret),
            _ => {}
        }
        let roles: Vec<String> =
            a.roles.split(',').map(str::trim).filter(|r| !r.is_empty()).map(String::from).collect();
        if roles.is_empty() {
            return Err(ConfigError::NoRoles);
        }
        if let Some(bad) = roles.iter().find(|r| !is_plain_identifier(r)) {
            return Err(ConfigError::BadRole(bad.clone()));
        }
        let allow_anon = match a.allow_anon.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err(ConfigError::BadAllowAnon(a.allow_anon)),
        };
        if allow_anon && !roles.iter().any(|r| r == "anon") {
            return Err(ConfigError::AnonNotAllowed);
        }
        let id_ok = !a.relay_id.is_empty()
            && a.relay_id.len() <= 40
            && a.relay_id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !id_ok {
            return Err(ConfigError::BadRelayId(a.relay_id));
        }
        for (name, v) in [
            ("pool-size", a.pool_size),
            ("send-queue", a.send_queue),
            ("max-frame-bytes", a.max_frame_bytes),
            ("max-subscriptions", a.max_subscriptions),
            ("max-publish-rate", a.max_publish_rate as usize),
            ("max-connections", a.max_connections),
            ("max-batch", a.max_batch),
            ("replay-window-secs", a.replay_window_secs as usize),
            ("max-replay", a.max_replay),
            ("presence-max-members", a.presence_max_members),
            ("presence-max-state-bytes", a.presence_max_state_bytes),
            ("presence-track-rate", a.presence_track_rate as usize),
            ("presence-heartbeat-ms", a.presence_heartbeat_ms as usize),
            ("presence-relay-timeout-secs", a.presence_relay_timeout_secs as usize),
            ("ping-interval-secs", a.ping_interval_secs as usize),
            ("ping-timeout-secs", a.ping_timeout_secs as usize),
            ("webhook-timeout-secs", a.webhook_timeout_secs as usize),
            ("webhook-max-attempts", a.webhook_max_attempts as usize),
            ("webhook-endpoint-concurrency", a.webhook_endpoint_concurrency),
            ("webhook-retry-base-ms", a.webhook_retry_base_ms as usize),
            ("webhook-retry-max-secs", a.webhook_retry_max_secs as usize),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if a.presence_relay_timeout_secs * 1000 <= a.presence_heartbeat_ms {
            return Err(ConfigError::NotAbove("presence-relay-timeout-secs", "presence-heartbeat-ms"));
        }
        if a.ping_timeout_secs <= a.ping_interval_secs {
            return Err(ConfigError::NotAbove("ping-timeout-secs", "ping-interval-secs"));
        }
        let secs = std::time::Duration::from_secs;
        let presence = PresenceLimits {
            max_members: a.presence_max_members,
            max_state_bytes: a.presence_max_state_bytes,
            track_rate: a.presence_track_rate,
            heartbeat: std::time::Duration::from_millis(a.presence_heartbeat_ms),
            relay_timeout: secs(a.presence_relay_timeout_secs),
            ping_interval: secs(a.ping_interval_secs),
            ping_timeout: secs(a.ping_timeout_secs),
        };
        if a.webhook_lease_secs <= a.webhook_timeout_secs {
            return Err(ConfigError::LeaseNotOverTimeout {
                lease: a.webhook_lease_secs,
                timeout: a.webhook_timeout_secs,
            });
        }
        let webhooks = crate::webhook::WebhookSettings {
            concurrency: a.webhook_concurrency,
            per_endpoint: a.webhook_endpoint_concurrency,
            timeout: Duration::from_secs(a.webhook_timeout_secs),
            lease: Duration::from_secs(a.webhook_lease_secs),
            allow_private: a.webhook_allow_private,
            retry: crate::webhook::retry::RetryPolicy {
                max_attempts: a.webhook_max_attempts,
                base: Duration::from_millis(a.webhook_retry_base_ms),
                max_delay: Duration::from_secs(a.webhook_retry_max_secs),
            },
        };
        Ok(Config {
            database_url,
            bind,
            jwt_secret,
            public_keys,
            roles,
            allow_anon,
            relay_id: a.relay_id,
            pool_size: a.pool_size,
            send_queue: a.send_queue,
            max_frame_bytes: a.max_frame_bytes,
            max_subscriptions: a.max_subscriptions,
            max_publish_rate: a.max_publish_rate,
            max_connections: a.max_connections,
            service_role: a.service_role,
            publish_check_ttl: std::time::Duration::from_secs(a.publish_check_ttl_secs),
            max_batch: a.max_batch,
            replay_window: std::time::Duration::from_secs(a.replay_window_secs),
            max_replay: a.max_replay,
            presence,
            log_json: a.log_json,
            webhooks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Config, ConfigError> {
        let mut v = vec!["realtime-relay", "--database-url", "postgres://postgres@127.0.0.1:5432/postgres"];
        if !extra.contains(&"--jwt-secret") {
            v.extend_from_slice(&["--jwt-secret", "0123456789abcdef0123"]);
        }
        v.extend_from_slice(extra);
        Config::try_from(Cli::try_parse_from(v).expect("parse").serve)
    }

    #[test]
    fn check_subcommand_takes_the_server_flags() {
        let v = ["realtime-relay", "check", "--database-url", "postgres://p@h/d", "--relay-id", "r2"];
        let Some(Command::Check(a)) = Cli::try_parse_from(v).unwrap().command else { panic!("not check") };
        let c = Config::try_from(ServeArgs { jwt_secret: Some("0123456789abcdef".into()), ..*a }).unwrap();
        assert_eq!((c.database_url.as_str(), c.slot_name().as_str()), ("postgres://p@h/d", "realtime_r2"));
    }

    #[test]
    fn defaults_are_valid() {
        let c = args(&[]).unwrap();
        assert_eq!(c.bind.to_string(), "127.0.0.1:4000");
        assert_eq!(c.roles, ["anon", "authenticated", "service_role"]);
        assert!(c.allow_anon);
        assert_eq!(c.slot_name(), "realtime_relay");
    }

    #[test]
    fn short_secret_is_refused_with_its_length() {
        let e = args(&["--jwt-secret", "short"]).unwrap_err();
        assert!(e.to_string().contains("too short (5 bytes)"), "{e}");
    }

    #[test]
    fn role_with_quote_is_refused() {
        let e = args(&["--roles", "anon,evil\"role"]).unwrap_err();
        assert!(matches!(e, ConfigError::BadRole(r) if r == "evil\"role"));
    }

    #[test]
    fn anon_enabled_without_anon_role_is_refused() {
        let e = args(&["--roles", "authenticated"]).unwrap_err();
        assert!(matches!(e, ConfigError::AnonNotAllowed));
        assert!(args(&["--roles", "authenticated", "--allow-anon", "false"]).is_ok());
    }

    #[test]
    fn bad_bind_and_relay_id_are_named() {
        assert!(args(&["--bind", "nonsense"]).unwrap_err().to_string().contains("--bind"));
        assert!(args(&["--relay-id", "Has-Caps"]).unwrap_err().to_string().contains("--relay-id"));
    }

    #[test]
    fn jwks_file_replaces_the_secret_and_a_bad_one_is_named() {
        let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwks.json");
        let v = ["realtime-relay", "--database-url", "postgres://p@h/d", "--jwks-file", jwks];
        let c = Config::try_from(Cli::try_parse_from(v).unwrap().serve).unwrap();
        assert_eq!((c.jwt_secret, c.public_keys.len()), (None, 2));
        let v = ["realtime-relay", "--database-url", "postgres://p@h/d", "--jwks-file", "/nonexistent.json"];
        let e = Config::try_from(Cli::try_parse_from(v).unwrap().serve).unwrap_err();
        assert!(
            e.to_string().starts_with("--jwks-file / REALTIME_JWKS_FILE: cannot read /nonexistent.json"),
            "{e}"
        );
        let v = ["realtime-relay", "--database-url", "postgres://p@h/d"];
        let e = Config::try_from(Cli::try_parse_from(v).unwrap().serve).unwrap_err();
        assert!(matches!(e, ConfigError::MissingJwtSecret));
    }

    #[test]
    fn bad_database_url_is_refused() {
        let v = [
            "realtime-relay",
            "--database-url",
            "postgres://host:notaport/db",
            "--jwt-secret",
            "0123456789abcdef",
        ];
        let e = Config::try_from(Cli::try_parse_from(v).unwrap().serve).unwrap_err();
        assert!(e.to_string().contains("DATABASE_URL"), "{e}");
    }

    #[test]
    fn presence_flags_default_and_timeouts_must_exceed_intervals() {
        let c = args(&[]).unwrap();
        assert_eq!(
            (c.presence.max_members, c.presence.max_state_bytes, c.presence.track_rate),
            (1000, 4096, 10)
        );
        assert_eq!(c.presence.relay_timeout, std::time::Duration::from_secs(30));
        assert_eq!(c.presence.ping_timeout, std::time::Duration::from_secs(60));
        let e = args(&["--presence-relay-timeout-secs", "1", "--presence-heartbeat-ms", "1000"]).unwrap_err();
        assert!(e.to_string().contains("--presence-relay-timeout-secs"), "{e}");
        let e = args(&["--ping-timeout-secs", "5", "--ping-interval-secs", "5"]).unwrap_err();
        assert!(
            e.to_string().contains("--ping-timeout-secs must be greater than --ping-interval-secs"),
            "{e}"
        );
        assert!(args(&["--presence-max-members", "0"])
            .unwrap_err()
            .to_string()
            .contains("presence-max-members"));
    }

    #[test]
    fn webhook_defaults_and_lease_must_exceed_timeout() {
        let w = args(&[]).unwrap().webhooks;
        assert_eq!((w.concurrency, w.per_endpoint, w.retry.max_attempts), (64, 8, 8));
        assert_eq!((w.timeout, w.lease), (Duration::from_secs(10), Duration::from_secs(60)));
        assert!(!w.allow_private);
        assert!(args(&["--webhook-allow-private"]).unwrap().webhooks.allow_private);
        let e = args(&["--webhook-timeout-secs", "30", "--webhook-lease-secs", "30"]).unwrap_err();
        assert!(e.to_string().contains("--webhook-lease-secs (30) must be greater"), "{e}");
        assert!(args(&["--webhook-max-attempts", "0"])
            .unwrap_err()
            .to_string()
            .contains("--webhook-max-attempts"));
        assert_eq!(args(&["--webhook-concurrency", "0"]).unwrap().webhooks.concurrency, 0);
    }

    #[test]
    fn replay_window_and_max_replay_default_and_must_be_positive() {
        let c = args(&[]).unwrap();
        assert_eq!(c.replay_window, std::time::Duration::from_secs(600));
        assert_eq!(c.max_replay, 10_000);
        let c = args(&["--replay-window-secs", "5", "--max-replay", "3"]).unwrap();
        assert_eq!((c.replay_window.as_secs(), c.max_replay), (5, 3));
        assert!(args(&["--replay-window-secs", "0"])
            .unwrap_err()
            .to_string()
            .contains("--replay-window-secs"));
        assert!(args(&["--max-replay", "0"]).unwrap_err().to_string().contains("--max-replay"));
    }
}
