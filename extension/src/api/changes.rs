//! `realtime.broadcast_changes()`: the row trigger that turns table changes into messages, and
//! `realtime.channel_template_columns(template)`, the template check `watch_table` uses.
//!
//! Per row (`AFTER ... FOR EACH ROW`; `AFTER TRUNCATE ... FOR EACH STATEMENT` for TRUNCATE):
//!
//! 1. the trigger's arguments (`TG_ARGV`) are parsed once per trigger and cached per backend,
//!    keyed by the trigger's OID (and re-parsed when `CREATE OR REPLACE TRIGGER` changed them);
//! 2. the channel is the template with each `{column}` replaced by the column's text output, from
//!    NEW (OLD for DELETE); a missing column (42703) or a NULL value (22004) is an ERROR;
//! 3. `record` / `old_record` are Postgres' own `to_jsonb(row)` (called through fmgr, no SQL and no
//!    hand-written encoder), minus the excluded columns;
//! 4. `realtime.publish(channel, event, payload)`, or `realtime.broadcast(...)` when `persist` is
//!    false, is called: the very same code path as an application's own publish (validation,
//!    channel matching, size limit, no-match WARNING/ERROR, webhooks).
//!
//! Every per-row call goes through fmgr with `FmgrInfo`s cached per backend (`to_jsonb`,
//! `jsonb_build_object`, `publish`, `broadcast`), the way PL/pgSQL evaluates simple expressions:
//! no SQL statement and no executor start-up per row, so a statement changing N rows costs N
//! times one row.
//!
//! Privileges: steps 1–3 run as the role that changed the row (so a user type's cast to json runs
//! with that role's rights). `publish` / `broadcast` are SECURITY DEFINER and run as their owner;
//! called through fmgr there is no EXECUTE check, so roles that may write a watched table need no
//! grant on them. Who may *attach* the trigger is governed by EXECUTE on `broadcast_changes`
//! (revoked from PUBLIC in `sql/finalize.sql`) and by the TRIGGER privilege on the table.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::fcinfo::direct_function_call_as_datum;
use pgrx::pg_sys;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use pgrx::{IntoDatum, PgMemoryContexts, PgRelation};

use crate::changes::{ChangeArgs, ChangeArgsError, Operation, Template};
use realtime_core::names as pattern;

/// One trigger's parsed arguments, cached by trigger OID.
struct Spec {
    /// `TG_ARGV` as stored, to notice `CREATE OR REPLACE TRIGGER` with new arguments.
    raw_args: Vec<Vec<u8>>,
    args: ChangeArgs,
    /// Per placeholder (in template order): the attribute number last found for its column, a hint
    /// that is re-checked on every use (columns can be renamed, dropped or added).
    attnums: Vec<Cell<i32>>,
}

thread_local! {
    static SPECS: RefCell<HashMap<pg_sys::Oid, Rc<Spec>>> = RefCell::new(HashMap::new());
    static TO_JSONB: Cell<*mut pg_sys::FmgrInfo> = const { Cell::new(std::ptr::null_mut()) };
    static BUILD_OBJECT: Cell<*mut pg_sys::FmgrInfo> = const { Cell::new(std::ptr::null_mut()) };
    static PUBLISH: Cell<Option<(pg_sys::Oid, *mut pg_sys::FmgrInfo)>> = const { Cell::new(None) };
    static BROADCAST: Cell<Option<(pg_sys::Oid, *mut pg_sys::FmgrInfo)>> = const { Cell::new(None) };
}

fn fail(code: PgSqlErrorCode, message: String) -> ! {
    ereport!(ERROR, code, message);
}

fn fail_args(err: ChangeArgsError) -> ! {
    fail(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, err.to_string())
}

/// The placeholder columns of a channel template, in order (repeats included); raises 22023
/// when the template is malformed or could never render a valid channel name.
///
/// `watch_table` uses it to check the template against the table's columns before creating the
/// trigger.
#[pg_extern(immutable, strict, parallel_safe)]
pub fn channel_template_columns(template: &str) -> Vec<String> {
    let parsed = Template::parse(template).unwrap_or_else(|e| fail_args(e));
    if let Err(e) = pattern::validate_channel(Some(&parsed.sample_channel())) {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("realtime: channel template '{template}' cannot produce a valid channel: realtime: {e}"),
        );
    }
    parsed.columns().map(str::to_owned).collect()
}

/// Row trigger publishing `INSERT` / `UPDATE` / `DELETE` (and statement-level `TRUNCATE`)
/// events. Arguments: `(channel template [, event [, persist [, excluded column ...]]])`.
/// See the module docs and the README section "Table change events".
#[pg_trigger]
pub fn broadcast_changes<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    let td = trigger.trigger_data();
    let tg = trigger.trigger();
    if !matches!(trigger.when(), Ok(PgTriggerWhen::After)) {
        fail(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "realtime.broadcast_changes must be an AFTER trigger (use realtime.watch_table)".into(),
        );
    }
    let op = match trigger.op() {
        Ok(PgTriggerOperation::Insert) => Operation::Insert,
        Ok(PgTriggerOperation::Update) => Operation::Update,
        Ok(PgTriggerOperation::Delete) => Operation::Delete,
        Ok(PgTriggerOperation::Truncate) => Operation::Truncate,
        Err(e) => fail(PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED, format!("realtime: {e}")),
    };
    let row_level = matches!(trigger.level(), PgTriggerLevel::Row);
    if row_level == (op == Operation::Truncate) {
        fail(
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "realtime.broadcast_changes must be FOR EACH ROW for INSERT, UPDATE and DELETE, and \
             FOR EACH STATEMENT for TRUNCATE (use realtime.watch_table)"
                .into(),
        );
    }
    let relation = trigger.relation().unwrap_or_else(|e| error!("realtime: {e}"));
    let spec = spec_for(tg);

    // SAFETY: Postgres fired this row trigger: the tuples that exist for `op` are valid and
    // described by the relation's tuple descriptor; the relation is open and locked.
    let (new, old) = match op {
        Operation::Insert => (td.tg_trigtuple, std::ptr::null_mut()),
        Operation::Update => (td.tg_newtuple, td.tg_trigtuple),
        Operation::Delete => (std::ptr::null_mut(), td.tg_trigtuple),
        Operation::Truncate => (std::ptr::null_mut(), std::ptr::null_mut()),
    };
    // SAFETY: the relation the trigger fired on is open; rd_att describes its rows.
    let tupdesc_ptr = unsafe { (*td.tg_relation).rd_att };
    let keyed = if new.is_null() { old } else { new };
    let channel = render_channel(&spec, &relation, tupdesc_ptr, keyed);
    let record = unsafe { row_jsonb(new, tupdesc_ptr, &spec.args.exclude) };
    let old_record = unsafe { row_jsonb(old, tupdesc_ptr, &spec.args.exclude) };

    let event = spec.args.event.as_deref().unwrap_or(op.as_str());
    send(spec.args.persist, &channel, event, op, relation.namespace(), relation.name(), record, old_record);
    Ok(None)
}

/// The cached [`Spec`] of trigger `tg`, parsed on first use and whenever its arguments changed.
fn spec_for(tg: &pg_sys::Trigger) -> Rc<Spec> {
    let nargs = usize::try_from(tg.tgnargs).unwrap_or(0);
    // SAFETY: tgargs holds tgnargs NUL-terminated strings owned by the relcache entry.
    let raw: Vec<&[u8]> =
        (0..nargs).map(|i| unsafe { CStr::from_ptr(*tg.tgargs.add(i)) }.to_bytes()).collect();
    let cached = SPECS.with(|specs| specs.borrow().get(&tg.tgoid).cloned());
    if let Some(spec) = cached {
        if spec.raw_args.len() == raw.len() && spec.raw_args.iter().zip(&raw).all(|(a, b)| a == b) {
            return spec;
        }
    }
    let text: Vec<&str> = raw
        .iter()
        .map(|b| {
            std::str::from_utf8(b).unwrap_or_else(|_| {
                fail(
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    "realtime: broadcast_changes arguments must be UTF-8".into(),
                )
            })
        })
        .collect();
    let args = ChangeArgs::parse(&text).unwrap_or_else(|e| fail_args(e));
    let spec = Rc::new(Spec {
        raw_args: raw.iter().map(|b| b.to_vec()).collect(),
        attnums: args.template.columns().map(|_| Cell::new(0)).collect(),
        args,
    });
    SPECS.with(|specs| specs.borrow_mut().insert(tg.tgoid, Rc::clone(&spec)));
    spec
}

/// The channel for this row: the template with each `{column}` replaced by its text.
fn render_channel(
    spec: &Spec,
    relation: &PgRelation,
    tupdesc: pg_sys::TupleDesc,
    tuple: pg_sys::HeapTuple,
) -> String {
    let template = &spec.args.template;
    if !template.has_placeholders() {
        return template.source().to_owned();
    }
    let table = || format!("{}.{}", relation.namespace(), relation.name());
    if tuple.is_null() {
        fail(
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "realtime: channel template '{}' of table {} has placeholders, and TRUNCATE has no row \
                 to fill them from",
                template.source(),
                table()
            ),
        );
    }
    let rendered: Result<String, std::convert::Infallible> = template.render(|i, column| {
        let hint = &spec.attnums[i];
        // SAFETY: tupdesc describes the relation the trigger fired on.
        let attnum = unsafe { find_column(tupdesc, column, hint.get()) }.unwrap_or_else(|| {
            fail(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!(
                    "realtime: column \"{column}\" of channel template '{}' does not exist in table {}",
                    template.source(),
                    table()
                ),
            )
        });
        hint.set(attnum);
        // SAFETY: tuple is a row of that relation; attnum is a live attribute of tupdesc.
        let text = unsafe { column_text(tuple, tupdesc, attnum) };
        Ok(text.unwrap_or_else(|| {
            fail(
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                format!(
                    "realtime: column \"{column}\" is NULL, so channel template '{}' of table {} has no \
                     value for it",
                    template.source(),
                    table()
                ),
            )
        }))
    });
    match rendered {
        Ok(channel) => channel,
        Err(never) => match never {},
    }
}

/// Attribute number of the live column `name`, trying `hint` first.
unsafe fn find_column(tupdesc: pg_sys::TupleDesc, name: &str, hint: i32) -> Option<i32> {
    let natts = unsafe { (*tupdesc).natts };
    let matches = |attnum: i32| {
        // SAFETY: 1 <= attnum <= natts
        let att = unsafe { &*(*tupdesc).attrs.as_ptr().add((attnum - 1) as usize) };
        !att.attisdropped
            && unsafe { CStr::from_ptr(att.attname.data.as_ptr()) }.to_bytes() == name.as_bytes()
    };
    if hint >= 1 && hint <= natts && matches(hint) {
        return Some(hint);
    }
    (1..=natts).find(|&a| matches(a))
}

/// The text output of column `attnum` of `tuple`, `None` when it is NULL.
unsafe fn column_text(tuple: pg_sys::HeapTuple, tupdesc: pg_sys::TupleDesc, attnum: i32) -> Option<String> {
    let mut isnull = false;
    let datum = unsafe { pg_sys::heap_getattr(tuple, attnum, tupdesc, &mut isnull) };
    if isnull {
        return None;
    }
    let typid = unsafe { (*(*tupdesc).attrs.as_ptr().add((attnum - 1) as usize)).atttypid };
    let mut output = pg_sys::InvalidOid;
    let mut varlena = false;
    unsafe {
        pg_sys::getTypeOutputInfo(typid, &mut output, &mut varlena);
        let text = pg_sys::OidOutputFunctionCall(output, datum);
        Some(CStr::from_ptr(text).to_string_lossy().into_owned())
    }
}

/// `to_jsonb(row)` minus the excluded keys, or `None` for a null tuple pointer.
unsafe fn row_jsonb(
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    exclude: &[String],
) -> Option<pg_sys::Datum> {
    if tuple.is_null() {
        return None;
    }
    unsafe {
        // A composite datum carrying the table's row type (toasted values flattened).
        let row = pg_sys::heap_copy_tuple_as_datum(tuple, tupdesc);
        let mut json = pg_sys::FunctionCall1Coll(to_jsonb_finfo(), pg_sys::InvalidOid, row);
        for column in exclude {
            let key = column.as_str().into_datum().expect("text datum");
            json = direct_function_call_as_datum(pg_sys::jsonb_delete, &[Some(json), Some(key)])
                .expect("jsonb - text is never NULL");
        }
        Some(json)
    }
}

/// A long-lived `FmgrInfo` for `pg_catalog.to_jsonb(anyelement)` whose call expression says the
/// argument is a `record`, so it encodes any table's rows exactly as SQL `to_jsonb(t)` does.
fn to_jsonb_finfo() -> *mut pg_sys::FmgrInfo {
    TO_JSONB.with(|cell| {
        if cell.get().is_null() {
            // SAFETY: to_jsonb exists in every Postgres; allocated for the backend's lifetime.
            cell.set(unsafe {
                finfo_with_arg_types(pg_sys::F_TO_JSONB, pg_sys::JSONBOID, &[pg_sys::RECORDOID])
            });
        }
        cell.get()
    })
}

/// `jsonb_build_object(text, text, text, text, text, text, text, jsonb, text, jsonb)`: the
/// variadic `"any"` function needs the argument types in its call expression.
fn build_object_finfo() -> *mut pg_sys::FmgrInfo {
    BUILD_OBJECT.with(|cell| {
        if cell.get().is_null() {
            let (t, j) = (pg_sys::TEXTOID, pg_sys::JSONBOID);
            // SAFETY: as in to_jsonb_finfo.
            cell.set(unsafe {
                finfo_with_arg_types(pg_sys::F_JSONB_BUILD_OBJECT_ANY, j, &[t, t, t, t, t, t, t, j, t, j])
            });
        }
        cell.get()
    })
}

/// An `FmgrInfo` for built-in function `func` with a call expression whose arguments have
/// `arg_types` (what polymorphic and variadic-"any" functions look at), in TopMemoryContext.
unsafe fn finfo_with_arg_types(
    func: u32,
    rettype: pg_sys::Oid,
    arg_types: &[pg_sys::Oid],
) -> *mut pg_sys::FmgrInfo {
    unsafe {
        PgMemoryContexts::TopMemoryContext.switch_to(|_| {
            let finfo = pg_sys::palloc0(std::mem::size_of::<pg_sys::FmgrInfo>()).cast::<pg_sys::FmgrInfo>();
            let func = pg_sys::Oid::from(func);
            pg_sys::fmgr_info_cxt(func, finfo, pg_sys::TopMemoryContext);
            let mut args = std::ptr::null_mut();
            for &typ in arg_types {
                let arg = pg_sys::makeNullConst(typ, -1, pg_sys::InvalidOid);
                args = pg_sys::lappend(args, arg.cast());
            }
            let call = pg_sys::makeFuncExpr(
                func,
                rettype,
                args,
                pg_sys::InvalidOid,
                pg_sys::InvalidOid,
                pg_sys::CoercionForm::COERCE_EXPLICIT_CALL,
            );
            (*finfo).fn_expr = call.cast();
            finfo
        })
    }
}

/// The cached `FmgrInfo` of `realtime.publish` or `realtime.broadcast` (by signature), looked up
/// again when the function no longer exists (the extension was dropped and created again).
fn sql_function(
    cell: &Cell<Option<(pg_sys::Oid, *mut pg_sys::FmgrInfo)>>,
    signature: &str,
) -> *mut pg_sys::FmgrInfo {
    if let Some((oid, finfo)) = cell.get() {
        // SAFETY: a syscache probe by OID.
        let exists = unsafe {
            pg_sys::SearchSysCacheExists(
                pg_sys::SysCacheIdentifier::PROCOID as i32,
                oid.into(),
                0.into(),
                0.into(),
                0.into(),
            )
        };
        if exists {
            return finfo;
        }
    }
    let oid = Spi::get_one_with_args::<pg_sys::Oid>(
        "SELECT pg_catalog.to_regprocedure($1)::pg_catalog.oid",
        &[signature.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| error!("realtime: function {signature} does not exist"));
    // SAFETY: allocated once per backend (per re-creation), in TopMemoryContext, like a PL's cache.
    let finfo = unsafe {
        let finfo =
            pg_sys::MemoryContextAllocZero(pg_sys::TopMemoryContext, std::mem::size_of::<pg_sys::FmgrInfo>())
                .cast::<pg_sys::FmgrInfo>();
        pg_sys::fmgr_info_cxt(oid, finfo, pg_sys::TopMemoryContext);
        finfo
    };
    cell.set(Some((oid, finfo)));
    finfo
}

/// Calls `finfo` with `args` (`None` = SQL NULL) and returns its result (`None` = NULL). Unlike
/// `FunctionCallNColl`, a NULL result is allowed (`publish` returns NULL when nothing matched).
unsafe fn call(finfo: *mut pg_sys::FmgrInfo, args: &[Option<pg_sys::Datum>]) -> Option<pg_sys::Datum> {
    unsafe {
        let size = std::mem::size_of::<pg_sys::FunctionCallInfoBaseData>()
            + args.len() * std::mem::size_of::<pg_sys::NullableDatum>();
        let fcinfo = pg_sys::palloc0(size).cast::<pg_sys::FunctionCallInfoBaseData>();
        (*fcinfo).flinfo = finfo;
        (*fcinfo).nargs = args.len() as i16;
        (*fcinfo).fncollation = pg_sys::DEFAULT_COLLATION_OID;
        let slots = (*fcinfo).args.as_mut_slice(args.len());
        for (slot, arg) in slots.iter_mut().zip(args) {
            *slot =
                pg_sys::NullableDatum { value: arg.unwrap_or(pg_sys::Datum::from(0)), isnull: arg.is_none() };
        }
        let addr = (*finfo).fn_addr.expect("fmgr_info sets fn_addr");
        let result = pg_sys::submodules::ffi::pg_guard_ffi_boundary(|| addr(fcinfo));
        if (*fcinfo).isnull {
            None
        } else {
            Some(result)
        }
    }
}

/// Publishes (or broadcasts) the change by calling `realtime.publish` / `realtime.broadcast`.
///
/// They are called through fmgr, the way PL/pgSQL evaluates a simple expression, not through an
/// SQL statement: no executor start-up per row. Being SECURITY DEFINER, they run as their owner;
/// the caller needs no EXECUTE on them (that is checked when the trigger is attached).
#[allow(clippy::too_many_arguments)]
fn send(
    persist: bool,
    channel: &str,
    event: &str,
    op: Operation,
    schema: &str,
    table: &str,
    record: Option<pg_sys::Datum>,
    old_record: Option<pg_sys::Datum>,
) {
    let text = |s: &str| s.into_datum();
    // SAFETY: argument types match the FmgrInfo's call expression and the functions' signatures.
    unsafe {
        let payload = call(
            build_object_finfo(),
            &[
                text("operation"),
                text(op.as_str()),
                text("schema"),
                text(schema),
                text("table"),
                text(table),
                text("record"),
                record,
                text("old_record"),
                old_record,
            ],
        );
        let (cell, signature) = if persist {
            (&PUBLISH, "realtime.publish(text,text,jsonb)")
        } else {
            (&BROADCAST, "realtime.broadcast(text,text,jsonb)")
        };
        let finfo = cell.with(|c| sql_function(c, signature));
        call(finfo, &[text(channel), text(event), payload]);
    }
}
