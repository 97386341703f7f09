//! The per-backend cache behind `realtime.publish`: which enabled channel a name matches (with
//! its webhook count) and `realtime.config.max_payload_bytes`, so a publish runs no query but
//! its one `INSERT`.
//!
//! What is cached: every enabled `realtime.channels` row (`id`, `pattern`, webhook count) when
//! there are at most [`MAX_ROWS`]; with more, the enabled `%` rows plus a bounded memo of exact
//! lookups per name (cleared when it exceeds [`MAX_ROWS`] entries). Matching is
//! [`realtime_core::names::best_match`], the same rule as `realtime.match_channel`.
//!
//! Invalidation, so no backend ever acts on a channel or config change it should not see:
//!
//! - statement-level `AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE` triggers on
//!   `realtime.channels` and `realtime.config` (`sql/api.sql`, `ENABLE ALWAYS`, so
//!   `session_replication_role = replica` does not skip them) call
//!   [`invalidate_publish_cache`], which queues a relcache invalidation of that table. Postgres
//!   applies it locally at the next `CommandCounterIncrement` (the writing transaction sees its
//!   own change on its next statement), locally again on (sub)transaction abort (a rolled-back
//!   change is forgotten), and in every other backend once the writer commits;
//! - a relcache callback ([`register`], from `_PG_init`) bumps a generation counter when the
//!   invalidated relation is one of the two tables, or on a full cache reset; a cached state of
//!   an older generation is never used;
//! - every lookup first calls `AcceptInvalidationMessages()` (a no-op unless another backend
//!   queued something), so a committed change is seen by the next publish, as a read-committed
//!   query would see it, even inside a long transaction;
//! - a state is loaded with the latest snapshot (what the catalog caches do), never with an old
//!   transaction snapshot, and kept only if no invalidation arrived while it was being read.
//!
//! The loads run as the caller of [`lookup`] (`publish` is SECURITY DEFINER, so as the owner) and
//! use fully qualified names and operators only.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_char, CString};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{FromDatum, IntoDatum};

use realtime_core::names as pattern;

/// Up to this many enabled channel rows are all cached; above it, lookups are memoised per name.
pub const MAX_ROWS: usize = 10_000;

const ALL_SQL: &str = "SELECT c.id, c.pattern, pg_catalog.cardinality(c.webhook_urls) \
     FROM realtime.channels c WHERE c.enabled LIMIT 10001";

const WILDCARDS_SQL: &str = "SELECT c.id, c.pattern, pg_catalog.cardinality(c.webhook_urls) \
     FROM realtime.channels c \
     WHERE c.enabled AND pg_catalog.strpos(c.pattern, '%') OPERATOR(pg_catalog.>) 0";

const EXACT_SQL: &str = "SELECT c.id, c.pattern, pg_catalog.cardinality(c.webhook_urls) \
     FROM realtime.channels c WHERE c.pattern OPERATOR(pg_catalog.=) $1 AND c.enabled";

const CONFIG_SQL: &str = "SELECT c.max_payload_bytes FROM realtime.config c LIMIT 1";

/// The enabled channel row a name matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched {
    pub id: i64,
    /// `cardinality(webhook_urls)`: the message's webhook audience.
    pub webhooks: i32,
}

/// What a publish needs to know about a channel name.
#[derive(Clone, Copy, Debug)]
pub struct Lookup {
    pub matched: Option<Matched>,
    /// `realtime.config.max_payload_bytes`; `None` when the config row is missing (no limit).
    pub max_payload_bytes: Option<i32>,
}

struct State {
    generation: u64,
    max_payload_bytes: Option<i32>,
    /// Every enabled row by pattern when `complete`, else empty.
    rows: HashMap<String, Matched>,
    complete: bool,
    /// The enabled `%` rows.
    wildcards: Vec<(String, Matched)>,
    /// Per-name results when not `complete`.
    memo: HashMap<String, Option<Matched>>,
}

impl State {
    fn best_wildcard(&self, name: &str) -> Option<Matched> {
        let id = pattern::best_match(name, self.wildcards.iter().map(|(p, m)| (m.id, p.as_str())))?;
        self.wildcards.iter().find(|(_, m)| m.id == id).map(|(_, m)| *m)
    }

    /// The match for `name` if it can be answered without a query.
    fn cached(&self, name: &str) -> Option<Option<Matched>> {
        if self.complete {
            Some(self.rows.get(name).copied().or_else(|| self.best_wildcard(name)))
        } else {
            self.memo.get(name).copied()
        }
    }
}

#[derive(Clone, Copy)]
struct Plans {
    all: pg_sys::SPIPlanPtr,
    wildcards: pg_sys::SPIPlanPtr,
    exact: pg_sys::SPIPlanPtr,
    config: pg_sys::SPIPlanPtr,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
    static GENERATION: Cell<u64> = const { Cell::new(1) };
    /// OIDs of realtime.channels and realtime.config, resolved lazily.
    static RELIDS: Cell<Option<(pg_sys::Oid, pg_sys::Oid)>> = const { Cell::new(None) };
    static PLANS: Cell<Option<Plans>> = const { Cell::new(None) };
}

/// Registers the relcache callback; call once per backend (from `_PG_init`).
pub fn register() {
    // SAFETY: a plain function pointer, registered once; the callback never raises an ERROR.
    unsafe { pg_sys::CacheRegisterRelcacheCallback(Some(on_relcache_inval), pg_sys::Datum::from(0)) };
}

/// Relcache invalidation callback: drops the cached state when one of our tables changed.
/// Runs inside invalidation processing, so it touches nothing but two `Cell`s.
unsafe extern "C-unwind" fn on_relcache_inval(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let ours = match RELIDS.with(Cell::get) {
        None => true,
        Some((channels, config)) => relid == pg_sys::InvalidOid || relid == channels || relid == config,
    };
    if ours {
        GENERATION.with(|g| g.set(g.get().wrapping_add(1)));
        // re-resolved on next use: the tables may have been dropped and created again
        RELIDS.with(|r| r.set(None));
    }
}

/// Statement trigger on `realtime.channels` and `realtime.config`: queues a relcache
/// invalidation of the table, which drops every backend's publish cache (this transaction's at
/// its next command, other backends' when it commits).
#[pg_trigger]
pub fn invalidate_publish_cache<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, std::convert::Infallible> {
    // SAFETY: Postgres fired this trigger; its relation is open.
    let relid = unsafe { (*trigger.trigger_data().tg_relation).rd_id };
    // SAFETY: the relation exists (it is locked by the statement that fired the trigger).
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(relid) };
    Ok(None)
}

/// The channel `name` matches and the payload limit, from the cache or, after an
/// invalidation, from the tables.
pub fn lookup(name: &str) -> Lookup {
    // SAFETY: the same call every lock acquisition makes; it only runs invalidation callbacks.
    unsafe { pg_sys::AcceptInvalidationMessages() };
    resolve_relids();
    let generation = GENERATION.with(Cell::get);

    let hit = STATE.with(|s| {
        let s = s.borrow();
        let state = s.as_ref().filter(|st| st.generation == generation)?;
        let matched = state.cached(name)?;
        Some(Lookup { matched, max_payload_bytes: state.max_payload_bytes })
    });
    if let Some(hit) = hit {
        return hit;
    }

    // Miss: work on a state taken out of the cell (no borrow is held while Postgres runs, and
    // an invalidation meanwhile just makes us drop the result instead of caching it).
    let taken = STATE.with(|s| s.borrow_mut().take()).filter(|st| st.generation == generation);
    let mut state = taken.unwrap_or_else(|| load(generation));
    let matched = match state.cached(name) {
        Some(m) => m,
        None => {
            let exact = query_exact(name);
            let m = exact.or_else(|| state.best_wildcard(name));
            if state.memo.len() >= MAX_ROWS {
                state.memo.clear();
            }
            state.memo.insert(name.to_owned(), m);
            m
        }
    };
    let result = Lookup { matched, max_payload_bytes: state.max_payload_bytes };
    if GENERATION.with(Cell::get) == generation {
        STATE.with(|s| *s.borrow_mut() = Some(state));
    }
    result
}

/// Resolves the OIDs the relcache callback compares against, if not known.
fn resolve_relids() {
    if RELIDS.with(Cell::get).is_some() {
        return;
    }
    // SAFETY: syscache lookups by name; missing objects give InvalidOid.
    let found = unsafe {
        let nsp = pg_sys::get_namespace_oid(c"realtime".as_ptr(), true);
        if nsp == pg_sys::InvalidOid {
            None
        } else {
            let channels = pg_sys::get_relname_relid(c"channels".as_ptr(), nsp);
            let config = pg_sys::get_relname_relid(c"config".as_ptr(), nsp);
            (channels != pg_sys::InvalidOid && config != pg_sys::InvalidOid).then_some((channels, config))
        }
    };
    if found.is_some() {
        RELIDS.with(|r| r.set(found));
    }
}

fn plans() -> Plans {
    if let Some(plans) = PLANS.with(Cell::get) {
        return plans;
    }
    let plans = Plans {
        all: prepare(ALL_SQL, &[]),
        wildcards: prepare(WILDCARDS_SQL, &[]),
        exact: prepare(EXACT_SQL, &[pg_sys::TEXTOID]),
        config: prepare(CONFIG_SQL, &[]),
    };
    PLANS.with(|p| p.set(Some(plans)));
    plans
}

/// Prepares `sql` and keeps the plan for the backend's lifetime. Must run inside SPI.
fn prepare(sql: &str, types: &[pg_sys::Oid]) -> pg_sys::SPIPlanPtr {
    let sql = CString::new(sql).expect("no NUL in SQL");
    let mut types = types.to_vec();
    // SAFETY: inside an SPI connection; the plan is moved to the cache memory context.
    unsafe {
        let plan = pg_sys::SPI_prepare(sql.as_ptr(), types.len() as i32, types.as_mut_ptr());
        if plan.is_null() || pg_sys::SPI_keepplan(plan) != 0 {
            error!("realtime: could not prepare the publish cache query");
        }
        plan
    }
}

/// Runs `plan` with the latest snapshot (read-only) and returns the rows, converted by `row`.
/// Must run inside SPI.
fn query<T>(
    plan: pg_sys::SPIPlanPtr,
    args: &[pg_sys::Datum],
    row: impl Fn(&dyn Fn(i32) -> Option<pg_sys::Datum>) -> T,
) -> Vec<T> {
    let mut values = args.to_vec();
    let nulls: Vec<c_char> = vec![b' ' as c_char; args.len()];
    // SAFETY: inside SPI; the plan is kept; args match its parameter types; the tuple table is
    // read before the next SPI call.
    unsafe {
        let rc = pg_sys::SPI_execute_snapshot(
            plan,
            values.as_mut_ptr(),
            nulls.as_ptr(),
            pg_sys::GetLatestSnapshot(),
            std::ptr::null_mut(),
            true,
            false,
            0,
        );
        if rc != pg_sys::SPI_OK_SELECT as i32 {
            error!("realtime: publish cache query failed (SPI code {rc})");
        }
        let table = pg_sys::SPI_tuptable;
        let n = pg_sys::SPI_processed as usize;
        (0..n)
            .map(|i| {
                let tuple = *(*table).vals.add(i);
                let get = |col: i32| {
                    let mut isnull = false;
                    let d = pg_sys::SPI_getbinval(tuple, (*table).tupdesc, col, &mut isnull);
                    (!isnull).then_some(d)
                };
                row(&get)
            })
            .collect()
    }
}

/// A channel row `(pattern, matched)` from columns `id, pattern, cardinality`.
fn channel_row(get: &dyn Fn(i32) -> Option<pg_sys::Datum>) -> Option<(String, Matched)> {
    // SAFETY: the columns have the types of the queries above.
    unsafe {
        let id = i64::from_datum(get(1)?, false)?;
        let pattern = String::from_datum(get(2)?, false)?;
        let webhooks = get(3).and_then(|d| i32::from_datum(d, false)).unwrap_or(0);
        Some((pattern, Matched { id, webhooks }))
    }
}

/// Reads a fresh state: the config limit and the enabled channels.
fn load(generation: u64) -> State {
    Spi::connect(|_| {
        let plans = plans();
        let limit = query(plans.config, &[], |get| get(1).and_then(|d| unsafe { i32::from_datum(d, false) }));
        let max_payload_bytes = limit.into_iter().next().flatten();
        let all: Vec<(String, Matched)> = query(plans.all, &[], channel_row).into_iter().flatten().collect();
        let complete = all.len() <= MAX_ROWS;
        let (rows, wildcards) = if complete {
            let wildcards = all.iter().filter(|(p, _)| pattern::is_wildcard(p)).cloned().collect();
            (all.into_iter().collect(), wildcards)
        } else {
            let wildcards = query(plans.wildcards, &[], channel_row).into_iter().flatten().collect();
            (HashMap::new(), wildcards)
        };
        State { generation, max_payload_bytes, rows, complete, wildcards, memo: HashMap::new() }
    })
}

/// The enabled row whose pattern equals `name` (used when not every row is cached).
fn query_exact(name: &str) -> Option<Matched> {
    Spi::connect(|_| {
        let plans = plans();
        let arg = name.into_datum().expect("text datum");
        query(plans.exact, &[arg], channel_row).into_iter().flatten().next().map(|(_, m)| m)
    })
}
