//! `realtime.validate_pattern`, `realtime.validate_channel`, `realtime.validate_event`:
//! the SQL faces of the validators in [`realtime_core::names`].
//!
//! Each returns its argument unchanged when it is valid and raises an `ERROR` (SQLSTATE 22023)
//! whose message says why when it is not. The `channels` trigger and `publish` / `broadcast`
//! call them, so there is exactly one implementation of the rules.

use pgrx::prelude::*;

use super::raise;
use realtime_core::names as pattern;

/// Validates a channel pattern (a `realtime.channels.pattern` value).
#[pg_extern(immutable, strict, parallel_safe)]
pub fn validate_pattern(pattern: &str) -> &str {
    match pattern::validate_pattern(pattern) {
        Ok(()) => pattern,
        Err(e) => raise(e),
    }
}

/// Validates a channel name given to `publish` / `broadcast` (NULL is an error).
#[pg_extern(immutable, parallel_safe)]
pub fn validate_channel(channel: Option<&str>) -> &str {
    pattern::validate_channel(channel).unwrap_or_else(|e| raise(e))
}

/// Validates an event name given to `publish` / `broadcast` (NULL is an error).
#[pg_extern(immutable, parallel_safe)]
pub fn validate_event(event: Option<&str>) -> &str {
    pattern::validate_event(event).unwrap_or_else(|e| raise(e))
}
