//! Presence settings: the `--presence-*` flags (a group flattened into the server's flags) and
//! the limits and timing they become.

use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::Args;

/// The `--presence-*` flags.
#[derive(Debug, Clone, Args)]
pub struct PresenceArgs {
    /// Most presence members on one channel; more tracks get REALTIME_PRESENCE_LIMIT.
    #[arg(long = "presence-max-members", env = "REALTIME_PRESENCE_MAX_MEMBERS", default_value_t = 1000,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_members: usize,
    /// Most anonymous members (connections without a user id) on one channel, so anonymous
    /// clients cannot fill a channel's presence and lock signed-in users out; more get
    /// REALTIME_PRESENCE_LIMIT. 0: anonymous clients may not track presence.
    #[arg(long = "presence-max-anonymous", env = "REALTIME_PRESENCE_MAX_ANONYMOUS", default_value_t = 100)]
    pub max_anonymous: usize,
    /// Largest presence state (its JSON text) in bytes; larger gets REALTIME_PAYLOAD_TOO_LARGE.
    #[arg(long = "presence-max-state-bytes", env = "REALTIME_PRESENCE_MAX_STATE_BYTES", default_value_t = 4096,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_state_bytes: usize,
    /// `track` calls per second one connection may send (bursts up to the same number); more get
    /// REALTIME_RATE_LIMITED.
    #[arg(long = "presence-track-rate", env = "REALTIME_PRESENCE_TRACK_RATE", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub track_rate: u32,
    /// Milliseconds between this relay's presence heartbeats in Postgres.
    #[arg(long = "presence-heartbeat-ms", env = "REALTIME_PRESENCE_HEARTBEAT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_ms: u64,
    /// Seconds without a heartbeat after which a relay is declared dead and its members leave.
    /// Must exceed the heartbeat interval.
    #[arg(long = "presence-relay-timeout-secs", env = "REALTIME_PRESENCE_RELAY_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub relay_timeout_secs: u64,
}

/// Presence limits and timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceLimits {
    pub max_members: usize,
    pub max_anonymous: usize,
    pub max_state_bytes: usize,
    pub track_rate: u32,
    pub heartbeat: Duration,
    pub relay_timeout: Duration,
}

impl From<&PresenceArgs> for PresenceLimits {
    fn from(a: &PresenceArgs) -> Self {
        PresenceLimits {
            max_members: a.max_members,
            max_anonymous: a.max_anonymous,
            max_state_bytes: a.max_state_bytes,
            track_rate: a.track_rate,
            heartbeat: Duration::from_millis(a.heartbeat_ms),
            relay_timeout: Duration::from_secs(a.relay_timeout_secs),
        }
    }
}
