//! What clients can do, whatever their protocol or transport: subscribe (permission check,
//! resume, presence snapshot), unsubscribe, publish, read history, track and untrack presence,
//! swap the token. Typed inputs, typed results and one error type ([`ServiceError`]); no wire
//! format here. A connection's state is a [`session::Session`]; protocols (`crate::protocol`)
//! turn frames into calls on it and its results into frames.
//!
//! Also here: the background presence task ([`presence::task`]), the permission re-checks
//! of open subscriptions ([`recheck`]) and the per-row visibility of table changes for
//! Supabase `postgres_changes` ([`visibility`]).

pub mod auth;
pub mod error;
pub mod history;
pub mod limits;
pub mod poll;
pub mod presence;
pub mod publish;
pub mod recheck;
pub mod resume;
pub mod session;
pub mod stream;
pub mod visibility;

pub use error::ServiceError;
pub use session::Session;
