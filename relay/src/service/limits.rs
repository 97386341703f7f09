//! Per-connection rate limiting: [`RateLimiter`], a token bucket (`rate` per second, bursts up
//! to `rate`) with a strike count, so a client that keeps publishing past its limit is closed
//! (4008) instead of being answered forever; also used for `history`, `auth` and `track`
//! requests. (The HTTP routes, which have no connection, limit per caller:
//! `crate::transport::http::limits`.)

use std::time::{Duration, Instant};

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
}
