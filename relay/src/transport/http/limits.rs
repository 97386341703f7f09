//! Per-caller rate limits of the HTTP publish and history routes, which have no connection:
//! keyed by the user (role and `sub`) when the token names one, else by the client's address
//! (the `governor` crate's keyed limiter; the state of callers that went quiet is dropped every
//! 30 s).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota};

use crate::app::App;
use crate::core::Identity;
use crate::service::ServiceError;

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

/// The limits for `app`'s settings, with the task that drops idle callers until shutdown.
pub fn start(app: &Arc<App>) -> Arc<HttpLimits> {
    let limits = Arc::new(HttpLimits::new(app.config.max_publish_rate, app.config.max_history_rate));
    let (l, shutdown) = (limits.clone(), app.shutdown.clone());
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => l.forget_idle(),
            }
        }
    });
    limits
}

#[cfg(test)]
mod tests {
    use super::*;

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
