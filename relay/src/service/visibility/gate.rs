//! One table's gate: the relay's only subscriber of the table's change channel. It takes the
//! changes in commit order, a batch at a time (whatever queued while the previous check ran,
//! and at least [`CHECK_INTERVAL`] after it started; at most [`MAX_BATCH`]), checks the batch
//! in one round trip for the identities that need it, and queues each bound session what its
//! identity may see, in commit order. Its sessions, grouped by identity, are kept from batch to
//! batch ([`super::roster`]).
//!
//! * Its queue is a session queue (bounded in bytes): when checks fall behind the changes, the
//!   hub makes it catch up from `realtime.messages` as any subscriber would, so nothing is
//!   skipped; a session's other channels never wait for it.
//! * Only changes the extension made are taken (sender `system`, and the table's own schema and
//!   name in the payload, [`super::change`]): a client publishing to the channel cannot forge
//!   one.
//! * A failed check never delivers unchecked rows: the bindings of the identities it was for
//!   end with a `system` error. So do those of an identity that lost SELECT on the table.
//! * A session whose queue has no room for a stored change is not cut off: it lags, gets no
//!   live changes meanwhile, and is caught up from `realtime.messages` between batches, paced
//!   by its queue and checked as live changes are ([`super::catchup`]); then it is live again,
//!   nothing lost or doubled. A change that is not stored (`watch_table` with `persist` false)
//!   cannot be read back: a session that cannot take one (or would get one while it lags)
//!   ends its binding with a `system` error rather than miss it silently. So does every
//!   binding of the table when the gate's own queue had to drop unstored changes (more of
//!   them at once than it holds).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::catchup::{self, Lagging};
use super::change::{
    self, access_of, change_of, end, lost_select, message_id, no_primary_key, reduce, Change,
};
use super::plan::{self, Access, Op, Verdict};
use super::roster::{Member, Roster, Who};
use super::ACCESS_TTL;
use crate::app::App;
use crate::core::event::SharedEvent;
use crate::core::{Cursor, ErrorCode};
use crate::hub::gated::Table;
use crate::hub::{session_queue, Outbound, SessionHandle, SessionQueue};
use crate::metrics::since_pg_timestamp;

/// Most changes checked in one round trip.
const MAX_BATCH: usize = 512;

/// Least time between the starts of two checks of one table: changes that arrive sooner wait
/// for the next batch. A batch costs the database a statement per identity and the relay a
/// pass over the table's sessions, whatever its size, so under a steady stream of changes
/// batches of one or two changes cost several times what fuller ones do; this bounds the
/// checks to 100 a second per table for at most this much added latency. An idle table's
/// first change is checked at once.
const CHECK_INTERVAL: Duration = Duration::from_millis(10);

/// When each identity's access was last learned.
type Cache = HashMap<Who, (Access, Instant)>;

/// How often a gate with lagging sessions looks for room in their queues when no change
/// arrives.
const CATCH_UP_POLL: Duration = Duration::from_millis(20);

/// Subscribes the gate of `table` to its change channel now (so no change committed after the
/// binding is missed) and starts it.
pub(super) fn start(app: &Arc<App>, table: Arc<Table>) {
    let (handle, queue) = session_queue(app.hub.next_session_id(), app.queue_limits());
    // Its deliveries are counted when they reach the bound sessions, not on the way in.
    handle.mark_internal();
    let nothing = |_| Outbound::Dropped { channel: String::new(), count: 0 };
    app.hub.subscribe(&table.channel, &handle, nothing);
    app.tracker.spawn(catch_up_when_behind(app.clone(), handle.clone(), table.clone()));
    app.tracker.spawn(run(app.clone(), table, handle, queue));
}

/// Replays what the gate missed from `realtime.messages` when it fell behind.
async fn catch_up_when_behind(app: Arc<App>, handle: SessionHandle, table: Arc<Table>) {
    loop {
        let channels = tokio::select! {
            _ = table.stop.cancelled() => return,
            _ = app.shutdown.cancelled() => return,
            c = handle.next_lagging() => c,
        };
        for channel in channels {
            crate::service::resume::catch_up_or_reset(&app, &handle, &channel).await;
        }
    }
}

async fn run(app: Arc<App>, table: Arc<Table>, handle: SessionHandle, mut queue: SessionQueue) {
    let mut cache = Cache::new();
    let mut roster = Roster::default();
    let mut lagging = Lagging::default();
    // The last stored change processed: what lagging sessions catch up to.
    let mut last: Option<Cursor> = None;
    let mut last_check: Option<Instant> = None;
    loop {
        let first = tokio::select! {
            _ = table.stop.cancelled() => break,
            _ = app.shutdown.cancelled() => break,
            item = queue.recv() => Some(item),
            _ = tokio::time::sleep(CATCH_UP_POLL), if !lagging.is_empty() => None,
        };
        let Some(first) = first else {
            catchup::turn(&app, &table, &mut roster, &mut lagging, last).await;
            continue;
        };
        let Some(first) = first else { break };
        if let Some(due) = last_check.map(|at| at + CHECK_INTERVAL).filter(|due| *due > Instant::now()) {
            tokio::select! {
                _ = table.stop.cancelled() => break,
                _ = app.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(due.into()) => {}
            }
        }
        last_check = Some(Instant::now());
        let mut items = vec![first];
        while items.len() < MAX_BATCH {
            match queue.try_recv() {
                Some(item) => items.push(item),
                None => break,
            }
        }
        queue.progressed();
        // The changes in order, cut where the gate's own queue dropped some (see `dropped`).
        let mut changes: Vec<Change> = Vec::new();
        for item in items {
            if let Outbound::Dropped { count, .. } = item {
                if count > 0 {
                    deliver(&app, &table, &mut cache, &mut roster, &mut lagging, &changes).await;
                    last = newest(&changes, last);
                    changes.clear();
                    dropped(&app, &table, &mut roster, count);
                }
                continue;
            }
            changes.extend(change_of(&table, item));
        }
        deliver(&app, &table, &mut cache, &mut roster, &mut lagging, &changes).await;
        last = newest(&changes, last);
        catchup::turn(&app, &table, &mut roster, &mut lagging, last).await;
    }
    app.hub.unsubscribe(&table.channel, handle.id);
}

/// The cursor of the newest stored change of `changes`, or `last` when it is newer.
fn newest(changes: &[Change], last: Option<Cursor>) -> Option<Cursor> {
    changes.iter().filter_map(|c| c.event.event.cursor()).max().max(last)
}

/// A bound session in this batch.
struct Bound<'a> {
    m: &'a Member,
    /// Which changes of the batch it wants.
    wants: Vec<bool>,
}

/// Checks one batch and queues to each bound session what it may see, in order.
async fn deliver(
    app: &App,
    table: &Table,
    cache: &mut Cache,
    roster: &mut Roster,
    lagging: &mut Lagging,
    changes: &[Change],
) {
    if changes.is_empty() {
        return;
    }
    roster.refresh(table);
    let groups = &roster.groups;
    let mut wanted = vec![vec![false; changes.len()]; groups.len()];
    let bound: Vec<Bound> = roster
        .members
        .iter()
        .map(|m| {
            let wants: Vec<bool> = changes.iter().map(|c| (m.sub.wants)(&c.value)).collect();
            wants.iter().enumerate().filter(|(_, w)| **w).for_each(|(c, _)| wanted[m.group][c] = true);
            Bound { m, wants }
        })
        .collect();
    if bound.is_empty() {
        return;
    }
    let now = Instant::now();
    cache.retain(|_, (_, at)| now.duration_since(*at) < ACCESS_TTL);
    let mut access: Vec<Option<Access>> = groups.iter().map(|g| cache.get(g).map(|(a, _)| *a)).collect();
    let ops: Vec<Op> = changes.iter().map(|c| c.op).collect();
    let needed = plan::needed(&ops, &wanted, &access);
    tracing::trace!(channel = %table.channel, changes = changes.len(), sessions = bound.len(),
        identities = groups.len(), asked = needed.groups.len(), rows = needed.changes.len(), "gate batch");
    let mut visible = vec![vec![false; changes.len()]; groups.len()];
    // Why a group's bindings end (a failed check, or a table under RLS without a primary key).
    let mut failed: Vec<Option<String>> = vec![None; groups.len()];
    if !needed.groups.is_empty() {
        let pk = table.primary_key().unwrap_or_default();
        let keyed: Vec<(usize, Value)> = needed
            .changes
            .iter()
            .filter_map(|c| plan::key_of(&changes[*c].value["record"], &pk).map(|k| (*c, k)))
            .collect();
        let row_keys: Vec<Value> = keyed.iter().map(|(_, k)| k.clone()).collect();
        let messages: Vec<String> = keyed.iter().filter_map(|(c, _)| message_id(&changes[*c])).collect();
        let who: Vec<(&str, &str)> = needed
            .groups
            .iter()
            .map(|g| {
                let w = &roster.checked_as[*g];
                (w.role.as_str(), w.claims.as_str())
            })
            .collect();
        let checked = change::check(app, table, &row_keys, &messages, &who).await;
        tracing::trace!(channel = %table.channel, keys = row_keys.len(), identities = who.len(), ?checked, "gate check");
        match checked {
            Ok(checked) => {
                for (answer, g) in checked.answers.iter().zip(&needed.groups) {
                    let a = access_of(answer);
                    cache.insert(groups[*g].clone(), (a, now));
                    access[*g] = Some(a);
                    if a.selectable && a.row_security && checked.pk.is_none() {
                        failed[*g] = Some(no_primary_key(table));
                    }
                    change::visible_of(answer, &keyed).for_each(|c| visible[*g][c] = true);
                }
                table.set_primary_key(checked.pk);
            }
            Err(why) => needed.groups.iter().for_each(|g| failed[*g] = Some(why.clone())),
        }
    }
    // Bindings that cannot be served end first: nothing unchecked is ever delivered.
    let mut ended = vec![false; bound.len()];
    for (b, s) in bound.iter().enumerate() {
        let reason = match (&failed[s.m.group], access[s.m.group]) {
            (Some(why), _) => Some((ErrorCode::InternalError, why.clone())),
            (None, Some(a)) if !a.selectable => {
                Some((ErrorCode::Unauthorized, lost_select(&groups[s.m.group].0, table)))
            }
            _ => None,
        };
        if let Some((code, message)) = reason {
            end(app, table, s.m.id, &s.m.sub.session, code, message);
            ended[b] = true;
        }
    }
    let pk = table.primary_key().unwrap_or_default();
    let mut reduced: Vec<Option<SharedEvent>> = vec![None; changes.len()];
    let mut hidden = 0u64;
    let latencies = app.hub.metrics.commit_to_send.local();
    for (c, change) in changes.iter().enumerate() {
        let mut counted = vec![false; groups.len()];
        for (b, s) in bound.iter().enumerate() {
            if ended[b] || !s.wants[c] {
                continue;
            }
            let Some(a) = access[s.m.group] else { continue };
            let event = match plan::verdict(change.op, a, visible[s.m.group][c]) {
                Verdict::Hidden => {
                    if !counted[s.m.group] {
                        counted[s.m.group] = true;
                        hidden += 1;
                    }
                    continue;
                }
                Verdict::Full => change.event.clone(),
                Verdict::Reduced => reduced[c].get_or_insert_with(|| reduce(change, &pk)).clone(),
            };
            let stored = change.event.event.cursor();
            if lagging.contains(s.m.id) {
                // It gets this change when it catches up from the log; an unstored one is not
                // there to catch up from.
                if stored.is_none() {
                    end(app, table, s.m.id, &s.m.sub.session, ErrorCode::RateLimited, UNSTORED.into());
                    ended[b] = true;
                }
                continue;
            }
            if !table.is_bound(s.m.id) {
                ended[b] = true;
                continue;
            }
            match s.m.sub.session.offer(Outbound::Event(event)) {
                Ok(()) => {
                    let m = &app.hub.metrics;
                    let path = if stored.is_some() { &m.delivered_persisted } else { &m.delivered_ephemeral };
                    path.inc();
                    if let Some(d) = since_pg_timestamp(change.event.commit_time_micros) {
                        latencies.observe(d.as_secs_f64());
                    }
                }
                Err(_) if s.m.sub.session.is_gone() => ended[b] = true,
                Err(_) => match stored {
                    Some(cursor) => {
                        tracing::debug!(session = s.m.id, channel = %table.channel, %cursor, "fell behind the table's changes; catching up");
                        lagging.fell_behind(s.m.id, cursor);
                    }
                    None => {
                        end(app, table, s.m.id, &s.m.sub.session, ErrorCode::RateLimited, UNSTORED.into());
                        ended[b] = true;
                    }
                },
            }
        }
    }
    latencies.flush();
    app.metrics.visibility.rows_hidden.inc_by(hidden);
}

/// The gate's own queue had no room for `count` changes that are not stored (`watch_table`
/// with `persist` false: more of them at once than `--send-queue-bytes` holds). Stored changes
/// it misses are read back from the log before anything newer; these cannot be, and nothing
/// tells which sessions would have got them, so every binding of the table ends with a
/// `system` error rather than miss them silently. Sessions that bind later are not affected.
fn dropped(app: &App, table: &Table, roster: &mut Roster, count: u64) {
    tracing::warn!(channel = %table.channel, count, "changes that are not stored were dropped before their check");
    roster.refresh(table);
    let message = format!(
        "{count} change(s) of {}.{} that are not stored (watch_table with persist false) came faster than \
         the relay could check them and were dropped; join again",
        table.schema, table.table
    );
    for m in &roster.members {
        end(app, table, m.id, &m.sub.session, ErrorCode::RateLimited, message.clone());
    }
}

/// Why a session that cannot take a change that is not stored ends its binding.
const UNSTORED: &str = "fell behind the table's changes (send queue full) and a change that is not stored \
     (watch_table with persist false) cannot be read back; join again";
