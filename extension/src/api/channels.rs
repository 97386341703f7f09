//! `realtime.match_channel(name)`: the id of the best enabled channel row for a channel name,
//! and its twin `realtime.match_channel_invoker(name)` for `broadcast` (`publish` matches from
//! its own cache, `super::cache`, with the same rule).
//!
//! Two cached SPI plans (prepared once per backend, kept with `SPI_keepplan`):
//! an exact lookup through the unique index on `pattern`, and, only when that finds nothing, a
//! read of the enabled wildcard rows (a small partial index; patterns are few). The choice among
//! wildcard rows is [`realtime_core::names::best_match`].

use std::cell::OnceCell;

use pgrx::pg_sys::{BuiltinOid, PgOid};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult};

use realtime_core::names as pattern;

// Fully qualified, operators included, so the result never depends on the caller's search_path.
const EXACT_SQL: &str = "SELECT c.id FROM realtime.channels c \
     WHERE c.pattern OPERATOR(pg_catalog.=) $1 AND c.enabled";

const WILDCARDS_SQL: &str = "SELECT c.id, c.pattern FROM realtime.channels c \
     WHERE c.enabled AND pg_catalog.strpos(c.pattern, '%') OPERATOR(pg_catalog.>) 0";

struct Plans {
    exact: OwnedPreparedStatement,
    wildcards: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: OnceCell<Plans> = const { OnceCell::new() };
}

fn prepare(client: &SpiClient<'_>) -> SpiResult<Plans> {
    let text: PgOid = BuiltinOid::TEXTOID.into();
    Ok(Plans {
        exact: client.prepare(EXACT_SQL, &[text])?.keep(),
        wildcards: client.prepare(WILDCARDS_SQL, &[])?.keep(),
    })
}

fn lookup(client: &SpiClient<'_>, plans: &Plans, name: &str) -> SpiResult<Option<i64>> {
    let exact = client.select(&plans.exact, Some(1), &[name.into()])?;
    if !exact.is_empty() {
        return exact.first().get_one::<i64>();
    }
    let rows = client.select(&plans.wildcards, None, &[])?;
    let mut candidates: Vec<(i64, String)> = Vec::with_capacity(rows.len());
    for row in rows {
        if let (Some(id), Some(p)) = (row.get::<i64>(1)?, row.get::<String>(2)?) {
            candidates.push((id, p));
        }
    }
    Ok(pattern::best_match(name, candidates.iter().map(|(id, p)| (*id, p.as_str()))))
}

/// The id of the best enabled channel row for `name`: an exact pattern beats any `%` pattern;
/// among `%` patterns that `LIKE`-match, the longest wins, ties by pattern text; NULL if none.
///
/// SECURITY DEFINER: sees every row regardless of RLS (`can_subscribe` then checks visibility).
#[pg_extern(stable, strict, parallel_safe, security_definer)]
#[search_path(pg_catalog, pg_temp)]
pub fn match_channel(name: &str) -> Option<i64> {
    best_channel(name)
}

/// [`match_channel`] run as the calling role, without the SECURITY DEFINER / `SET search_path`
/// wrapper, whose GUC save/restore costs about as much as the lookup itself.
///
/// Only for `broadcast`, which already runs as the owner with a pinned `search_path`; EXECUTE
/// is revoked from PUBLIC (for anyone else it would see only the rows RLS lets them see).
#[pg_extern(stable, strict, parallel_safe)]
pub fn match_channel_invoker(name: &str) -> Option<i64> {
    best_channel(name)
}

fn best_channel(name: &str) -> Option<i64> {
    let found = Spi::connect(|client| {
        PLANS.with(|cell| {
            let plans = match cell.get() {
                Some(plans) => plans,
                None => {
                    let plans = prepare(client)?;
                    cell.get_or_init(|| plans)
                }
            };
            lookup(client, plans, name)
        })
    });
    found.unwrap_or_else(|e| error!("realtime: match_channel failed: {e}"))
}
