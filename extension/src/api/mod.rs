//! The SQL-facing functions written in Rust (`#[pg_extern]`), one file per area.
//!
//! Most of the SQL API (`publish`, `broadcast`, the claim helpers, `can_subscribe`,
//! `cleanup_messages`) is hand-written SQL/PL/pgSQL in `sql/api.sql`, so the `jsonb` payload is
//! never converted through Rust and Postgres caches the plans. The Rust functions here are the
//! pieces that need the pure logic of [`crate::pattern`], and the trigger `broadcast_changes`
//! ([`changes`]), which needs fmgr-level access to the changed rows.

pub mod changes;
pub mod channels;
pub mod validate;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use crate::pattern::NameError;

/// Reports a validation error as a Postgres `ERROR` with SQLSTATE 22023
/// (`invalid_parameter_value`); never returns.
pub(crate) fn raise(err: NameError) -> ! {
    ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, err.to_string());
}
