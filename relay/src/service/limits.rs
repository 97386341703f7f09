//! Rate limits.
//!
//! * Per connection: [`RateLimiter`], a token bucket (`rate` per second, bursts up to `rate`)
//!   with a strike count, so a client that keeps publishing past its limit is closed (4008)
//!   instead of being answered forever; also used for `history`, `auth` and `track` requests.
//! * Per caller on the HTTP routes, which have no connection: [`HttpLimits`], keyed by the user
//!   (role and `sub`) when the token names one, else by the client's address (the `governor`
//!   crate's keyed limiter; idle keys are dropped).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota};

use super::ServiceError;
use crate::core::Identity;

/// What to do with one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Refuse this publish with `REALTIME_RATE_LIMITED`.
    Limited,
    /// Refused, and the client has been over its limit for long enough: close with 4008.
    Abusive,
}

/// Strikes are counted over this window.
const STRIKE_WINDOW: Duration = Duration::from_secs(10);

/// A token bucket plus a strike counter.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    tokens: f64,
    last: Instant,
    strikes: u32,
    window_start: Instant,
}

impl RateLimiter {
    pub fn new(rate_per_sec: u32, now: Instant) -> Self {
        let rate = f64::from(rate_per_sec.max(1));
        Self { rate, tokens: rate, last: now, strikes: 0, window_start: now }
    }

    /// Judges one publish at `now`. After `2 × rate` refusals within ten seconds the client is
    /// abusive.
    pub fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        if now.saturating_duration_since(self.window_start) > STRIKE_WINDOW {
            self.window_start = now;
            self.strikes = 0;
        }
        self.strikes += 1;
        if f64::from(self.strikes) >= 2.0 * self.rate {
            Verdict::Abusive
        } else {
            Verdict::Limited
        }
    }
}

/// Per-caller limits of the HTTP publish and history routes.
pub struct HttpLimits {
    publish: DefaultKeyedRateLimiter<String>,
    history: DefaultKeyedRateLimiter<String>,
    rates: (u32, u32),
}

impl HttpLimits {
    /// `publish_rate` and `history_rate` requests per second per caller (bursts up to the same).
    pub fn new(publish_rate: u32, history_rate: u32) -> Self {
        let quota = |r: u32| Quota::per_second(NonZeroU32::new(r.max(1)).expect("at least 1"));
        HttpLimits {
            publish: DefaultKeyedRateLimiter::keyed(quota(publish_rate)),
            history: DefaultKeyedRateLimiter::keyed(quota(history_rate)),
            rates: (publish_rate, history_rate),
        }
    }

    /// One publish request of `caller` ([`caller`]).
    pub fn publish(&self, caller: &String) -> Result<(), ServiceError> {
        self.publish.check_key(caller).map_err(|_| {
            ServiceError::RateLimited(format!("more than {} publish requests per second", self.rates.0))
        })
    }

    /// One history request of `caller`.
    pub fn history(&self, caller: &String) -> Result<(), ServiceError> {
        self.history.check_key(caller).map_err(|_| {
            ServiceError::RateLimited(format!("more than {} history requests per second", self.rates.1))
        })
    }

    /// Drops the state of callers whose buckets are full again (run it now and then, so the
    /// keys of callers that went away do not pile up).
    pub fn forget_idle(&self) {
        self.publish.retain_recent();
        self.history.retain_recent();
        self.publish.shrink_to_fit();
        self.history.shrink_to_fit();
    }
}

/// Who a request counts against: the user when the token names one, else the client's address.
pub fn caller(who: &Identity, addr: Option<IpAddr>) -> String {
    match (&who.user_id, addr) {
        (Some(sub), _) => format!("{}:{sub}", who.role),
        (None, Some(ip)) => format!("{}@{ip}", who.role),
        (None, None) => who.role.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_up_to_rate_then_limited_then_refilled() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(5, t0);
        for _ in 0..5 {
            assert_eq!(l.check(t0), Verdict::Allow);
        }
        assert_eq!(l.check(t0), Verdict::Limited);
        assert_eq!(l.check(t0 + Duration::from_millis(200)), Verdict::Allow, "one token per 1/rate s");
        assert_eq!(l.check(t0 + Duration::from_millis(200)), Verdict::Limited);
    }

    #[test]
    fn sustained_abuse_becomes_abusive() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(2, t0);
        let verdicts: Vec<Verdict> = (0..6).map(|_| l.check(t0)).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Allow,
                Verdict::Allow,
                Verdict::Limited,
                Verdict::Limited,
                Verdict::Limited,
                Verdict::Abusive
            ]
        );
    }

    #[test]
    fn strikes_are_forgotten_after_the_window() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(1, t0);
        assert_eq!(l.check(t0), Verdict::Allow);
        assert_eq!(l.check(t0), Verdict::Limited);
        let later = t0 + STRIKE_WINDOW + Duration::from_millis(1);
        assert_eq!(l.check(later), Verdict::Allow);
        assert_eq!(l.check(later), Verdict::Limited, "a fresh window starts with one strike, not two");
    }

    #[test]
    fn http_limits_are_per_caller() {
        let limits = HttpLimits::new(2, 1);
        let (a, b) = ("authenticated:alice".to_string(), "anon@127.0.0.1".to_string());
        assert!(limits.publish(&a).is_ok() && limits.publish(&a).is_ok());
        let e = limits.publish(&a).unwrap_err();
        assert_eq!(e.to_string(), "more than 2 publish requests per second");
        assert!(limits.publish(&b).is_ok(), "another caller has its own bucket");
        assert!(limits.history(&a).is_ok());
        assert!(limits.history(&a).is_err());
        limits.forget_idle();
    }
}
