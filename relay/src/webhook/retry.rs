//! What one attempt's result means for the delivery: delivered, retried later (when), or failed
//! for good. Pure functions; the worker supplies the randomness.
//!
//! - 2xx: delivered.
//! - network errors, timeouts, 408, 429 and 5xx: retried after an exponential backoff with
//!   jitter (`base * 2^(attempt-1)`, capped at `max_delay`, then a uniformly random value in
//!   its upper half), or after `Retry-After` when the endpoint sent one (capped at `max_delay`);
//!   after `max_attempts` attempts: failed, keeping the last status and error.
//! - any other status (1xx, 3xx — redirects are not followed —, 4xx) and refused targets
//!   (private address without the flag, malformed URL, unusable secret): failed at once.

use std::time::{Duration, SystemTime};

/// Retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max_delay: Duration,
}

/// What happened on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The endpoint answered. `detail` is the start of the body, for the error column.
    Status { code: u16, retry_after: Option<Duration>, detail: String },
    /// Connecting, sending or reading failed.
    Network(String),
    /// No answer within the per-attempt timeout.
    Timeout(Duration),
    /// Never sent: the target or the request is not acceptable. Not retried.
    Refused(String),
}

/// What to do with the delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered { status: u16 },
    Retry { status: Option<u16>, error: String, delay: Duration },
    Failed { status: Option<u16>, error: String },
}

impl RetryPolicy {
    /// The backoff before attempt `attempt + 1`, `jitter` in `[0, 1)`.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(30)).min(self.max_delay);
        exp / 2 + exp.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// The outcome of attempt number `attempt` (1-based).
    pub fn decide(&self, attempt: u32, result: Attempt, jitter: f64) -> Outcome {
        let (status, error, retry_after) = match result {
            Attempt::Status { code, .. } if (200..300).contains(&code) => {
                return Outcome::Delivered { status: code }
            }
            Attempt::Status { code, retry_after, detail } => {
                let error =
                    if detail.is_empty() { format!("HTTP {code}") } else { format!("HTTP {code}: {detail}") };
                if !(code == 408 || code == 429 || (500..600).contains(&code)) {
                    let error = if (300..400).contains(&code) {
                        format!("{error} (redirects are not followed)")
                    } else {
                        error
                    };
                    return Outcome::Failed { status: Some(code), error };
                }
                (Some(code), error, retry_after)
            }
            Attempt::Network(e) => (None, e, None),
            Attempt::Timeout(t) => (None, format!("timed out after {} ms", t.as_millis()), None),
            Attempt::Refused(e) => return Outcome::Failed { status: None, error: e },
        };
        if attempt >= self.max_attempts {
            return Outcome::Failed { status, error: format!("{error} (gave up after {attempt} attempts)") };
        }
        let delay = match retry_after {
            Some(d) => d.min(self.max_delay),
            None => self.backoff(attempt, jitter),
        };
        Outcome::Retry { status, error, delay }
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (a date in the past is zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy =
        RetryPolicy { max_attempts: 8, base: Duration::from_secs(1), max_delay: Duration::from_secs(60) };

    fn status(code: u16) -> Attempt {
        Attempt::Status { code, retry_after: None, detail: String::new() }
    }

    #[test]
    fn backoff_doubles_with_jitter_in_the_upper_half_and_is_capped() {
        assert_eq!(POLICY.backoff(1, 0.0), Duration::from_millis(500));
        let high = POLICY.backoff(1, 0.999);
        assert!(high > Duration::from_millis(990) && high < Duration::from_secs(1), "{high:?}");
        assert_eq!(POLICY.backoff(3, 0.0), Duration::from_secs(2));
        assert_eq!(POLICY.backoff(4, 1.0), Duration::from_secs(8));
        assert_eq!(POLICY.backoff(40, 1.0), Duration::from_secs(60));
    }

    #[test]
    fn success_retryable_and_permanent_statuses() {
        assert_eq!(POLICY.decide(1, status(204), 0.0), Outcome::Delivered { status: 204 });
        for code in [500, 503, 429, 408] {
            assert!(
                matches!(POLICY.decide(1, status(code), 0.0), Outcome::Retry { status: Some(c), .. } if c == code)
            );
        }
        for code in [400, 401, 404, 410, 301] {
            assert!(
                matches!(POLICY.decide(1, status(code), 0.0), Outcome::Failed { status: Some(c), .. } if c == code)
            );
        }
    }

    #[test]
    fn network_errors_and_timeouts_retry_until_max_attempts_then_fail_with_the_last_error() {
        assert!(matches!(
            POLICY.decide(7, Attempt::Network("reset".into()), 0.5),
            Outcome::Retry { status: None, .. }
        ));
        match POLICY.decide(8, Attempt::Timeout(Duration::from_secs(10)), 0.5) {
            Outcome::Failed { status: None, error } => {
                assert_eq!(error, "timed out after 10000 ms (gave up after 8 attempts)")
            }
            other => panic!("{other:?}"),
        }
        match POLICY.decide(8, Attempt::Status { code: 502, retry_after: None, detail: "bad gw".into() }, 0.5)
        {
            Outcome::Failed { status: Some(502), error } => {
                assert!(error.starts_with("HTTP 502: bad gw"), "{error}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let a =
            Attempt::Status { code: 429, retry_after: Some(Duration::from_secs(7)), detail: String::new() };
        assert!(
            matches!(POLICY.decide(1, a, 0.0), Outcome::Retry { delay, .. } if delay == Duration::from_secs(7))
        );
        let a = Attempt::Status {
            code: 503,
            retry_after: Some(Duration::from_secs(7200)),
            detail: String::new(),
        };
        assert!(
            matches!(POLICY.decide(1, a, 0.0), Outcome::Retry { delay, .. } if delay == Duration::from_secs(60))
        );
    }

    #[test]
    fn refused_targets_fail_at_once() {
        assert!(matches!(POLICY.decide(1, Attempt::Refused("private".into()), 0.0), Outcome::Failed { .. }));
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 UTC
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
