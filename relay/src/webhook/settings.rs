//! Webhook settings: the `--webhook-*` flags (a group flattened into the server's flags) and the
//! settings they become.

use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::Args;

use super::retry::RetryPolicy;

/// The `--webhook-*` flags.
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// Allow webhook URLs on loopback, private, link-local, CGNAT and IPv6 unique-local
    /// addresses (refused by default, so channel owners cannot probe the relay's network).
    #[arg(long = "webhook-allow-private", env = "REALTIME_WEBHOOK_ALLOW_PRIVATE", default_value_t = false,
          value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true")]
    pub allow_private: bool,
    /// Seconds one webhook attempt may take (connect, send, response).
    #[arg(long = "webhook-timeout-secs", env = "REALTIME_WEBHOOK_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_secs: u64,
    /// Attempts per webhook delivery before it is marked failed.
    #[arg(long = "webhook-max-attempts", env = "REALTIME_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Webhook attempts in flight at once on this relay; 0 disables webhook delivery here.
    #[arg(long = "webhook-concurrency", env = "REALTIME_WEBHOOK_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,
    /// Webhook attempts in flight at once to one URL.
    #[arg(long = "webhook-endpoint-concurrency", env = "REALTIME_WEBHOOK_ENDPOINT_CONCURRENCY", default_value_t = 8,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub endpoint_concurrency: usize,
    /// Seconds a claimed delivery stays with this relay; after that (relay crashed) another
    /// relay retries it. Must exceed --webhook-timeout-secs.
    #[arg(long = "webhook-lease-secs", env = "REALTIME_WEBHOOK_LEASE_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_secs: u64,
    /// First retry delay in milliseconds; doubles per attempt, with jitter.
    #[arg(long = "webhook-retry-base-ms", env = "REALTIME_WEBHOOK_RETRY_BASE_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub retry_base_ms: u64,
    /// Longest retry delay in seconds (also caps Retry-After).
    #[arg(long = "webhook-retry-max-secs", env = "REALTIME_WEBHOOK_RETRY_MAX_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub retry_max_secs: u64,
}

/// Webhook settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Attempts in flight at once; 0 disables webhook delivery on this relay.
    pub concurrency: usize,
    pub per_endpoint: usize,
    pub timeout: Duration,
    pub lease: Duration,
    pub allow_private: bool,
    pub retry: RetryPolicy,
}

impl From<&WebhookArgs> for WebhookSettings {
    fn from(a: &WebhookArgs) -> Self {
        WebhookSettings {
            concurrency: a.concurrency,
            per_endpoint: a.endpoint_concurrency,
            timeout: Duration::from_secs(a.timeout_secs),
            lease: Duration::from_secs(a.lease_secs),
            allow_private: a.allow_private,
            retry: RetryPolicy {
                max_attempts: a.max_attempts,
                base: Duration::from_millis(a.retry_base_ms),
                max_delay: Duration::from_secs(a.retry_max_secs),
            },
        }
    }
}
