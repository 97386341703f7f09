//! `realtime.publish(channel, event, payload)`: persist one message in the caller's transaction.
//!
//! The hot path of the whole system, so it does as little as a plain `INSERT`:
//!
//! 1. validate channel and event ([`realtime_core::names`], the same rules as the SQL validators);
//! 2. match the channel and read the payload limit from the per-backend cache
//!    ([`super::cache`]; no query unless a channel or config change invalidated it);
//! 3. check the payload size without converting it to text unless it could be over the limit
//!    ([`payload_size_within`]);
//! 4. run one kept SPI plan: `INSERT INTO realtime.messages ...` with an id made here.
//!
//! Ids are UUIDv7 (time-ordered, [`new_message_id`]): consecutive publishes append to the right
//! edge of the primary key, where Postgres' B-tree takes its rightmost-leaf fast path instead of a
//! descent to a random leaf, and no call goes to OpenSSL (`gen_random_uuid`, the column default
//! for direct INSERTs, reads `pg_strong_random` every time).
//!
//! The `jsonb` payload stays a Postgres datum throughout (no serde round trip).
//!
//! SECURITY DEFINER without `SET search_path`: a `SET` clause costs a GUC save/restore per call,
//! and nothing here resolves a name through the search path: the statement names
//! `realtime.messages` fully and contains no operator or function call, the cache queries qualify
//! every table, function and operator, and plans resolve OIDs once. See docs/ARCHITECTURE.md.

use std::cell::OnceCell;
use std::ffi::CStr;

use pgrx::callconv::{Arg, ArgAbi};
use pgrx::datum::DatumWithOid;
use pgrx::fcinfo::direct_function_call_as_datum;
use pgrx::nullable::Nullable;
use pgrx::pg_sys;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::spi::OwnedPreparedStatement;

use super::cache::{self, Matched};
use super::raise;
use realtime_core::names as pattern;

const INSERT_SQL: &str = "INSERT INTO realtime.messages \
     (id, channel, channel_id, event, payload, sender_type, wh_audience_count) \
     VALUES ($1, $2, $3, $4, $5, 'system', $6)";

const HINT_NO_MATCH: &str =
    "Add a realtime.channels row whose pattern matches it, or enable the matching one.";

thread_local! {
    static INSERT: OnceCell<OwnedPreparedStatement> = const { OnceCell::new() };
}

/// A `jsonb` argument kept as the Postgres datum: never parsed into Rust.
pub struct JsonbDatum(pg_sys::Datum);

impl FromDatum for JsonbDatum {
    unsafe fn from_polymorphic_datum(datum: pg_sys::Datum, is_null: bool, _: pg_sys::Oid) -> Option<Self> {
        (!is_null).then_some(JsonbDatum(datum))
    }
}

// SAFETY: a jsonb argument is a by-reference datum valid for the call; we only pass it on.
unsafe impl<'fcx> ArgAbi<'fcx> for JsonbDatum {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

pgrx::impl_sql_translatable!(JsonbDatum, arg_only = "jsonb");

/// Persists a message to the best matching enabled channel, in the caller's transaction;
/// delivered only if it commits. Returns the message id, or NULL with a WARNING when no enabled
/// channel matches (an ERROR, SQLSTATE 42704, when `realtime.strict_publish` is on). A payload
/// over `realtime.config.max_payload_bytes` is an ERROR (SQLSTATE 54000); NULL is `'{}'`.
#[pg_extern(volatile, parallel_unsafe, security_definer)]
pub fn publish(
    channel: Option<&str>,
    event: Option<&str>,
    payload: default!(Option<JsonbDatum>, "'{}'"),
) -> Option<pgrx::Uuid> {
    let channel = pattern::validate_channel(channel).unwrap_or_else(|e| raise(e));
    let event = pattern::validate_event(event).unwrap_or_else(|e| raise(e));
    let payload = payload.map_or_else(empty_object, |p| p.0);
    let found = cache::lookup(channel);
    if let Some(limit) = found.max_payload_bytes {
        check_payload_size(payload, limit);
    }
    match found.matched {
        Some(matched) => Some(insert(channel, matched, event, payload)),
        None => {
            no_match(channel, "message not published");
            None
        }
    }
}

/// `'{}'::jsonb`.
fn empty_object() -> pg_sys::Datum {
    // SAFETY: jsonb_in takes a C string.
    unsafe { direct_function_call_as_datum(pg_sys::jsonb_in, &[Some(pg_sys::Datum::from(c"{}".as_ptr()))]) }
        .expect("jsonb_in never returns NULL")
}

/// Whether a payload whose binary (`jsonb` varlena) size is `raw_bytes` is certainly within
/// `limit` bytes of text. The text form is at most 6 times the binary size (a control character
/// stored as 1 byte prints as `\u0001`); 8 leaves a margin. When this says no, the caller
/// measures the text exactly.
pub fn payload_size_within(raw_bytes: usize, limit: i32) -> bool {
    let limit = usize::try_from(limit).unwrap_or(0);
    raw_bytes.saturating_mul(8) <= limit
}

/// Raises 54000 when the text form of `payload` (`octet_length(payload::text)`) is over `limit`.
fn check_payload_size(payload: pg_sys::Datum, limit: i32) {
    // SAFETY: payload is a (possibly toasted) jsonb datum; both calls accept that.
    let raw = unsafe { pg_sys::toast_raw_datum_size(payload) };
    if payload_size_within(raw, limit) {
        return;
    }
    let size = unsafe {
        let text = direct_function_call_as_datum(pg_sys::jsonb_out, &[Some(payload)])
            .expect("jsonb_out never returns NULL")
            .cast_mut_ptr::<std::ffi::c_char>();
        let size = CStr::from_ptr(text).to_bytes().len();
        pg_sys::pfree(text.cast());
        size
    };
    if size > usize::try_from(limit).unwrap_or(0) {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "realtime: payload is {size} bytes, over the limit of {limit} bytes \
                 (realtime.config.max_payload_bytes)"
            ),
            "realtime.publish",
        )
        .set_hint("Send a smaller payload, or raise realtime.config.max_payload_bytes.")
        .report(PgLogLevel::ERROR);
    }
}

/// No enabled channel matches: ERROR 42704 when `realtime.strict_publish` is on, else WARNING.
fn no_match(channel: &str, what: &str) {
    if crate::guc::STRICT_PUBLISH.get() {
        ErrorReport::new(
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("realtime: no enabled channel matches '{channel}'"),
            "realtime.publish",
        )
        .set_hint(HINT_NO_MATCH)
        .report(PgLogLevel::ERROR);
    }
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_WARNING,
        format!("realtime: no enabled channel matches '{channel}'; {what}"),
        "realtime.publish",
    )
    .set_hint(HINT_NO_MATCH)
    .report(PgLogLevel::WARNING);
}

/// A fresh message id: UUIDv7 (48-bit Unix milliseconds, then 74 random bits from a
/// per-process ChaCha generator seeded by the OS), ordered by time within a backend.
pub fn new_message_id() -> pgrx::Uuid {
    pgrx::Uuid::from_bytes(*uuid::Uuid::now_v7().as_bytes())
}

/// The one statement: insert the row, return its id.
fn insert(channel: &str, matched: Matched, event: &str, payload: pg_sys::Datum) -> pgrx::Uuid {
    let id = new_message_id();
    let inserted = Spi::connect_mut(|client| {
        INSERT.with(|cell| {
            let plan = match cell.get() {
                Some(plan) => plan,
                None => {
                    let types = [
                        pg_sys::UUIDOID.into(),
                        pg_sys::TEXTOID.into(),
                        pg_sys::INT8OID.into(),
                        pg_sys::TEXTOID.into(),
                        pg_sys::JSONBOID.into(),
                        pg_sys::INT4OID.into(),
                    ];
                    let plan = client.prepare_mut(INSERT_SQL, &types)?.keep();
                    cell.get_or_init(|| plan)
                }
            };
            // SAFETY: payload is a jsonb datum valid for this call.
            let payload = unsafe { DatumWithOid::new(payload, pg_sys::JSONBOID) };
            let args = [
                id.into(),
                channel.into(),
                matched.id.into(),
                event.into(),
                payload,
                matched.webhooks.into(),
            ];
            client.update(plan, None, &args).map(|t| t.len())
        })
    });
    match inserted {
        Ok(1) => id,
        Ok(n) => error!("realtime: publish inserted {n} rows"),
        Err(e) => error!("realtime: publish failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{new_message_id, payload_size_within};

    #[test]
    fn message_ids_are_version_7_and_ordered_in_time() {
        let a = new_message_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_message_id();
        assert_eq!(a.as_bytes()[6] >> 4, 7, "version nibble");
        assert_eq!(a.as_bytes()[8] >> 6, 0b10, "RFC 9562 variant");
        assert!(a.as_bytes() < b.as_bytes(), "a later id sorts after an earlier one");
    }

    #[test]
    fn small_payloads_skip_the_text_measurement() {
        assert!(payload_size_within(100, 800));
        assert!(payload_size_within(131_072, 1_048_576));
    }

    #[test]
    fn payloads_that_could_be_over_are_measured() {
        assert!(!payload_size_within(101, 800));
        assert!(!payload_size_within(200, 1000));
        assert!(!payload_size_within(usize::MAX, i32::MAX));
    }
}
