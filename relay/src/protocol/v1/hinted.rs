//! Which channels of one connection are hint subscriptions (`subscribe` with `"hint": true`):
//! shared by the connection's driver, which records them, and its encoder, which then writes
//! those channels' messages as `hint` frames. A connection without hint subscriptions pays one
//! atomic load per frame.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

/// See the module docs.
#[derive(Debug, Default)]
pub struct HintedChannels {
    any: AtomicBool,
    channels: RwLock<HashSet<String>>,
}

impl HintedChannels {
    /// Marks `channel` as a hint subscription (`hint`) or a full one.
    pub fn set(&self, channel: &str, hint: bool) {
        let mut set = self.channels.write().expect("hinted lock");
        if hint {
            set.insert(channel.to_string());
        } else {
            set.remove(channel);
        }
        self.any.store(!set.is_empty(), Ordering::Release);
    }

    /// Whether `channel` is a hint subscription.
    pub fn contains(&self, channel: &str) -> bool {
        self.any.load(Ordering::Acquire) && self.channels.read().expect("hinted lock").contains(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_marked_and_unmarked() {
        let h = HintedChannels::default();
        assert!(!h.contains("a"));
        h.set("a", true);
        h.set("b", false);
        assert!(h.contains("a") && !h.contains("b"));
        h.set("a", false);
        assert!(!h.contains("a"));
    }
}
