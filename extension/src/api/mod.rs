//! The SQL-facing functions written in Rust (`#[pg_extern]`), one file per area.
//!
//! `publish` is Rust ([`publish`]): the hot path, with a per-backend channel/config cache
//! ([`cache`]) and the `jsonb` payload kept a Postgres datum. The rest of the SQL API
//! (`broadcast`, the claim helpers, `can_subscribe`, `cleanup_messages`) is hand-written
//! SQL/PL/pgSQL in `sql/api.sql`. The other Rust functions here are the pieces that need the pure
//! logic of [`realtime_core::names`] or [`realtime_core::seal`] ([`seal`]), and the trigger
//! `broadcast_changes` ([`changes`]), which needs fmgr-level access to the changed rows.

pub mod cache;
pub mod changes;
pub mod channels;
pub mod publish;
pub mod seal;
pub mod validate;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use realtime_core::NameError;

/// Reports a validation error as a Postgres `ERROR` with SQLSTATE 22023
/// (`invalid_parameter_value`); never returns.
pub(crate) fn raise(err: NameError) -> ! {
    ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("realtime: {err}"));
}
