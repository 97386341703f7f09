//! Subscribe permissions granted recently, so a client that reconnects (or a second tab of the
//! same user) does not pay a round trip and an RLS evaluation in Postgres for the answer it got
//! seconds ago. Only grants are kept, keyed by role, claims and channel: a refusal is always
//! asked again, so a permission granted in the database takes effect at once.
//!
//! A remembered grant never outlives what the relay would honour anyway. Access ends at the
//! next permission re-check of open subscriptions (`--recheck-secs`, and at once after a
//! change to `realtime.channels`); the re-checks forget every remembered grant when they start
//! ([`AccessCache::forget_all`]), so a subscription made from one is re-checked no later than a
//! subscription checked in the database at that moment. A check that was running while the
//! grants were forgotten is not remembered (its answer may predate the change), and every
//! grant expires after `ttl` whatever happens. Token expiry is the session's business (the
//! claims, `exp` included, are part of the key). The map is bounded ([`MAX_GRANTS`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::core::auth::Identity;

/// Grants remembered at most; past it, expired ones are dropped, and if none had expired, all.
pub const MAX_GRANTS: usize = 10_000;

/// Recently granted subscribe permissions (see the module docs).
pub struct AccessCache {
    ttl: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Bumped by every [`AccessCache::forget_all`].
    generation: u64,
    /// `role \n claims \n channel` → when the grant expires.
    grants: HashMap<String, Instant>,
}

/// The generation a check started in (see [`AccessCache::remember`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

/// The key of a grant. Roles are plain identifiers and claims compact JSON text, neither holds
/// a raw newline, so the key is unambiguous.
fn key(who: &Identity, channel: &str) -> String {
    let mut k = String::with_capacity(who.role.len() + who.claims.len() + channel.len() + 2);
    for part in [who.role.as_str(), "\n", who.claims.as_str(), "\n", channel] {
        k.push_str(part);
    }
    k
}

impl AccessCache {
    /// Grants are kept for `ttl` at most (zero: never kept).
    pub fn new(ttl: Duration) -> Self {
        AccessCache { ttl, inner: Mutex::default() }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("access cache lock")
    }

    /// Whether `who` was granted `channel` recently.
    pub fn allowed(&self, who: &Identity, channel: &str) -> bool {
        let now = Instant::now();
        self.inner().grants.get(&key(who, channel)).is_some_and(|until| now < *until)
    }

    /// Take before asking the database; hand to [`Self::remember`] with the answer.
    pub fn generation(&self) -> Generation {
        Generation(self.inner().generation)
    }

    /// Remembers that `who` may subscribe to `channel`, as answered by a check that started in
    /// `generation`; a check overtaken by [`Self::forget_all`] is not remembered.
    pub fn remember(&self, generation: Generation, who: &Identity, channel: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut inner = self.inner();
        if inner.generation != generation.0 {
            return;
        }
        if inner.grants.len() >= MAX_GRANTS {
            inner.grants.retain(|_, until| now < *until);
            if inner.grants.len() >= MAX_GRANTS {
                inner.grants.clear();
            }
        }
        inner.grants.insert(key(who, channel), now + self.ttl);
    }

    /// Forgets every grant (a permission re-check starts, or `realtime.channels` changed).
    pub fn forget_all(&self) {
        let mut inner = self.inner();
        inner.generation += 1;
        inner.grants.clear();
        inner.grants.shrink_to(MAX_GRANTS / 10);
    }

    /// Grants remembered now.
    pub fn len(&self) -> usize {
        self.inner().grants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(role: &str, claims: &str) -> Identity {
        Identity { role: role.into(), user_id: None, claims: claims.into(), exp: None }
    }

    #[test]
    fn a_grant_is_per_role_claims_and_channel() {
        let cache = AccessCache::new(Duration::from_secs(60));
        let alice = who("authenticated", r#"{"sub":"alice"}"#);
        cache.remember(cache.generation(), &alice, "room:1");
        assert!(cache.allowed(&alice, "room:1"));
        assert!(!cache.allowed(&alice, "room:2"));
        assert!(!cache.allowed(&who("authenticated", r#"{"sub":"bob"}"#), "room:1"));
        assert!(!cache.allowed(&who("anon", r#"{"sub":"alice"}"#), "room:1"));
    }

    #[test]
    fn grants_expire_and_a_zero_ttl_keeps_none() {
        let cache = AccessCache::new(Duration::from_millis(30));
        let anon = who("anon", "{}");
        cache.remember(cache.generation(), &anon, "c");
        assert!(cache.allowed(&anon, "c"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!cache.allowed(&anon, "c"), "expired");
        let off = AccessCache::new(Duration::ZERO);
        off.remember(off.generation(), &anon, "c");
        assert!(!off.allowed(&anon, "c") && off.is_empty());
    }

    #[test]
    fn forgetting_drops_every_grant_and_a_check_it_overtook() {
        let cache = AccessCache::new(Duration::from_secs(60));
        let anon = who("anon", "{}");
        cache.remember(cache.generation(), &anon, "c");
        let started = cache.generation();
        cache.forget_all();
        assert!(!cache.allowed(&anon, "c"));
        cache.remember(started, &anon, "d");
        assert!(!cache.allowed(&anon, "d"), "answered before the change: not remembered");
        cache.remember(cache.generation(), &anon, "d");
        assert!(cache.allowed(&anon, "d"));
    }

    #[test]
    fn the_map_stays_bounded() {
        let cache = AccessCache::new(Duration::from_secs(60));
        let anon = who("anon", "{}");
        for n in 0..MAX_GRANTS + 5 {
            cache.remember(cache.generation(), &anon, &format!("c{n}"));
        }
        assert!(cache.len() <= MAX_GRANTS);
        assert!(cache.allowed(&anon, &format!("c{}", MAX_GRANTS + 4)), "the newest is kept");
    }
}
