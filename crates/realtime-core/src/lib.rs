//! The rules the `realtime` extension and `realtime-relay` share, with no Postgres or network
//! dependency, so both sides agree by construction:
//!
//! - [`names`]: what a valid channel name, event name and channel pattern is, how a name
//!   matches a pattern, and which matching pattern wins;
//! - [`cursor`]: the [`Cursor`] of a stored message (commit order) and `pg_lsn` text.

pub mod cursor;
pub mod names;

pub use cursor::{Cursor, CursorError};
pub use names::NameError;
