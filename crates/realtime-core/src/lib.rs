//! The rules the `realtime` extension and `realtime-relay` share, with no Postgres or network
//! dependency, so both sides agree by construction:
//!
//! - [`names`]: what a valid channel name, event name and channel pattern is, how a name
//!   matches a pattern, and which matching pattern wins;
//! - [`cursor`]: the [`Cursor`] of a stored message (commit order) and `pg_lsn` text;
//! - [`seal`]: the seal that authenticates the extension's `realtime:` logical messages.

pub mod cursor;
pub mod names;
pub mod seal;

pub use cursor::{Cursor, CursorError};
pub use names::NameError;
pub use seal::{SealError, Sealed};
