//! The core every layer shares and that depends on no other part of the relay: the cursor and
//! the name rules (from the `realtime-core` crate, shared with the extension), identities and
//! JWT verification ([`auth`]), error codes ([`error`]) and refusal texts that say the fix ([`hints`]), the log's events and what subscribers
//! receive ([`event`]), encoded frames ([`frame`]) and presence data ([`presence`]).

pub mod auth;
pub mod error;
pub mod event;
pub mod frame;
pub mod hints;
pub mod presence;

pub use auth::{AuthError, Identity};
pub use error::ErrorCode;
pub use realtime_core::cursor::{format_pg_lsn, parse_pg_lsn, CursorError};
pub use realtime_core::{names, Cursor};
