//! Property tests of the decoders that take bytes from the network or the database: client
//! frames, cursors, tokens, the HTTP routes' query parameters, the database connection string,
//! the replication stream (pgoutput messages and the bodies of logical messages) and the seals
//! of logical messages. Generated and mutated input must never panic and must get a clear,
//! bounded error.
//!
//! Case counts come from `PROPTEST_CASES` (proptest's default, 256, in `make test`);
//! `make fuzz` runs every test whose name contains `proptest` with many more.

mod conn_string;
mod cursor;
mod frames;
mod pgoutput;
mod query;
mod seal;
mod tokens;

use proptest::prelude::*;

/// Longest error message any decoder may produce: errors never echo unbounded input.
pub const MAX_ERROR: usize = 600;

/// `base` with up to four random edits: byte flips, truncation, insertion, deletion,
/// duplication of a slice.
pub fn mutated(base: String) -> impl Strategy<Value = String> {
    mutated_bytes(base.into_bytes()).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// [`mutated`] for binary input.
pub fn mutated_bytes(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let edits = proptest::collection::vec((0u8..5, any::<usize>(), any::<u8>()), 1..4);
    edits.prop_map(move |edits| {
        let mut bytes = base.clone();
        for (kind, at, byte) in edits {
            let at = if bytes.is_empty() { 0 } else { at % bytes.len() };
            match kind {
                0 if !bytes.is_empty() => bytes[at] = byte,
                1 => bytes.truncate(at),
                2 => bytes.insert(at, byte),
                3 if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                _ => {
                    let tail: Vec<u8> = bytes[at..].iter().take(16).copied().collect();
                    bytes.splice(at..at, tail);
                }
            }
        }
        bytes
    })
}
