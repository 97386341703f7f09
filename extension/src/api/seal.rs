//! `realtime.seal_message` and `realtime.generate_relay_key`: the SQL faces of
//! [`realtime_core::seal`], which `realtime.emit_message` (sql/api.sql) uses to seal every
//! `realtime:` logical message with the newest key of `realtime.relay_keys`. The relay opens
//! the seal with the same code, so a message emitted with plain `pg_logical_emit_message()` by
//! any other login is dropped there.

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use realtime_core::seal;

/// `rt1.<key_id>.<mac>.<content>` for logical-message `prefix` (see [`realtime_core::seal`]).
/// Pure: the key comes from the caller (`realtime.emit_message` reads it from
/// `realtime.relay_keys`, which only the owner and relay logins may read).
#[pg_extern(immutable, strict, parallel_safe)]
pub fn seal_message(key: &[u8], key_id: i64, prefix: &str, content: &str) -> String {
    match seal::seal(key_id, key, prefix, content) {
        Ok(sealed) => sealed,
        Err(e) => {
            ereport!(ERROR, PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, format!("realtime: {e}"));
        }
    }
}

/// 32 bytes from Postgres' strong random source (`pg_strong_random`, the OpenSSL or
/// /dev/urandom source behind `gen_random_uuid`): the default of `realtime.relay_keys.key`.
#[pg_extern(volatile, parallel_safe)]
pub fn generate_relay_key() -> Vec<u8> {
    let mut buf = vec![0u8; seal::MIN_KEY_BYTES];
    // SAFETY: buf is a valid, writable buffer of exactly buf.len() bytes.
    let ok = unsafe { pg_sys::pg_strong_random(buf.as_mut_ptr().cast(), buf.len()) };
    if !ok {
        ereport!(ERROR, PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "realtime: could not generate random bytes");
    }
    buf
}
