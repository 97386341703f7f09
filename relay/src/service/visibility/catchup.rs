//! Catch-up of a gate's sessions that fell behind: a bound session whose send queue could not
//! take a stored change is not cut off. The gate remembers where it lags (just before the first
//! change it missed, [`Lagging`]), gives it no live changes meanwhile, and between batches
//! reads what it missed back from `realtime.messages` of the table's change channel, in commit
//! order, a page at a time (bounded in rows and bytes, at most [`PAGES_PER_TURN`] pages per
//! turn for all sessions), only while its queue is under half its budget (as
//! `crate::service::resume` paces replays). Each page is checked for the session's identity in
//! one `realtime.visible_rows` call and delivered by the same rules as live changes
//! ([`plan::verdict`], the same forgery filter). Once it has read up to the last change the
//! gate processed, it is live again: the gate's next batch starts right after that change, so
//! nothing is lost, doubled or reordered. All of this runs in the gate's own task, so the live
//! stream cannot overtake a catch-up.
//!
//! A session gone or unbound meanwhile is forgotten. A failed read or check, a role that lost
//! SELECT, or a missed range older than the replay window (`--replay-window-secs`, so it may no
//! longer be stored) ends the binding with a `system` error, as the gate does: never a silent
//! gap, never an unchecked row.

use serde_json::Value;
use std::collections::BTreeMap;

use super::change::{self, access_of, change_of, end, lost_select, no_primary_key, reduce, Change};
use super::plan::{self, Access, Verdict};
use super::roster::{Member, Roster};
use crate::app::App;
use crate::core::{Cursor, ErrorCode};
use crate::hub::gated::Table;
use crate::hub::Outbound;
use crate::pg::history::{self as sql, REPLAY_PAGE};
use crate::pg::PgError;
use crate::service::ServiceError;

/// Most pages read back per turn of the gate, for all its lagging sessions together (so the
/// live changes of the others wait for at most this many reads).
const PAGES_PER_TURN: usize = 4;

/// The sessions of a gate that fell behind, by session id, each with the cursor it has
/// everything up to (of what it wants and may see).
#[derive(Debug, Default)]
pub(super) struct Lagging {
    after: BTreeMap<u64, Cursor>,
    /// Where the next turn starts (round robin).
    next: u64,
}

impl Lagging {
    pub fn is_empty(&self) -> bool {
        self.after.is_empty()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.after.contains_key(&id)
    }

    /// Session `id` could not take the stored change at `missed`: it lags from just before it
    /// (a session already lagging keeps its earlier point).
    pub fn fell_behind(&mut self, id: u64, missed: Cursor) {
        self.after.entry(id).or_insert_with(|| plan::just_before(missed));
    }

    /// The lagging sessions in this turn's order: from where the last turn stopped, round.
    fn order(&self) -> Vec<u64> {
        let (later, earlier): (Vec<u64>, Vec<u64>) = self.after.keys().partition(|id| **id >= self.next);
        later.into_iter().chain(earlier).collect()
    }
}

/// What one step of a session's catch-up came to.
enum Step {
    /// It has everything up to the gate's last change: live again.
    Caught,
    /// A page went out (or part of one, until its queue filled); more to read.
    More,
    /// Its queue has no room yet.
    Wait,
    /// Gone or unbound: forget it.
    Drop,
    /// It cannot be caught up: end its binding.
    End(ErrorCode, String),
}

/// One turn of catch-up: each lagging session with room (in turn, at most [`PAGES_PER_TURN`]
/// pages in all) gets the next page of what it missed, up to `upto`, the last change the gate
/// processed.
pub(super) async fn turn(
    app: &App,
    table: &Table,
    roster: &mut Roster,
    lagging: &mut Lagging,
    upto: Option<Cursor>,
) {
    if lagging.is_empty() {
        return;
    }
    roster.refresh(table);
    let mut pages = 0;
    for id in lagging.order() {
        if pages >= PAGES_PER_TURN {
            lagging.next = id;
            return;
        }
        let member = roster.members.binary_search_by_key(&id, |m| m.id).ok().map(|i| &roster.members[i]);
        let Some(m) = member.filter(|_| table.is_bound(id)) else {
            // Unbound (or bound again under an identity it no longer has): nothing to catch up.
            if !table.is_bound(id) {
                lagging.after.remove(&id);
            }
            continue;
        };
        let Some(mut after) = lagging.after.get(&id).copied() else { continue };
        let step = match upto {
            Some(upto) if after < upto => serve(app, table, m, &mut after, upto).await,
            _ => Step::Caught,
        };
        match step {
            Step::Caught => {
                tracing::debug!(session = id, channel = %table.channel, "caught up with the table's changes");
                app.hub.metrics.catch_ups.inc();
                lagging.after.remove(&id);
                pages += 1;
            }
            Step::More => {
                lagging.after.insert(id, after);
                pages += 1;
            }
            Step::Wait => {}
            Step::Drop => {
                lagging.after.remove(&id);
            }
            Step::End(code, message) => {
                end(app, table, id, &m.sub.session, code, message);
                lagging.after.remove(&id);
            }
        }
        lagging.next = id + 1;
    }
}

/// Reads, checks and queues the next page of what session `m` missed in `(after, upto]`,
/// moving `after` past what it queued (and what it does not get).
async fn serve(app: &App, table: &Table, m: &Member, after: &mut Cursor, upto: Cursor) -> Step {
    let session = &m.sub.session;
    if session.is_gone() {
        return Step::Drop;
    }
    if !session.has_room() {
        return Step::Wait;
    }
    let Some(who) = session.identity() else { return Step::Wait };
    // The log holds every change up to `upto` once its commit position is durable (the gate
    // hears of a commit a moment before): until then, try again next turn rather than wait
    // in the gate.
    if app.replication.readable_lsn() < upto.commit_lsn {
        return Step::Wait;
    }
    let from = *after;
    let read = async {
        let _slot =
            app.replay_slots.acquire().await.map_err(|_| ServiceError::Internal("shutting down".into()))?;
        let client = app.pool.get().await.map_err(PgError::from)?;
        if !sql::within_window(&client, from, app.config.replay_window.as_secs_f64()).await? {
            return Ok(None);
        }
        let page =
            sql::page_after(&client, &table.channel, from, upto, REPLAY_PAGE, session.budget_bytes() / 2);
        Ok::<_, ServiceError>(Some(page.await?))
    };
    let page = match read.await {
        Ok(Some(page)) => page,
        Ok(None) => {
            let window = app.config.replay_window.as_secs();
            return Step::End(
                ErrorCode::RateLimited,
                format!(
                    "fell behind the table's changes by more than the replay window ({window} s), so what it \
                     missed cannot be read back; join again"
                ),
            );
        }
        Err(e) => {
            tracing::warn!(session = session.id, channel = %table.channel, error = %e, "catch-up read failed");
            return Step::End(
                ErrorCode::InternalError,
                format!("the table's changes it fell behind on could not be read back: {e}"),
            );
        }
    };
    let more = page.more;
    let mut items: Vec<(Cursor, Option<Change>)> = Vec::with_capacity(page.messages.len());
    for message in page.messages {
        let Some(cursor) = message.cursor else {
            return Step::End(ErrorCode::InternalError, "a stored change had no cursor".into());
        };
        let change =
            change_of(table, Outbound::Replayed(Box::new(message))).filter(|c| (m.sub.wants)(&c.value));
        items.push((cursor, change));
    }
    let pk = table.primary_key().unwrap_or_default();
    let keyed: Vec<(usize, Value)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, (_, c))| c.as_ref().filter(|c| c.op.checkable()).map(|c| (i, c)))
        .filter_map(|(i, c)| plan::key_of(&c.value["record"], &pk).map(|k| (i, k)))
        .collect();
    let mut visible = vec![false; items.len()];
    let mut access = Access { selectable: true, row_security: false };
    if items.iter().any(|(_, c)| c.is_some()) {
        let keys: Vec<Value> = keyed.iter().map(|(_, k)| k.clone()).collect();
        // The log's messages are visible already: no wait for them.
        let checked =
            change::check(app, table, &keys, &[], &[(who.role.as_str(), who.claims.as_str())]).await;
        let checked = match checked {
            Ok(c) => c,
            Err(why) => return Step::End(ErrorCode::InternalError, why),
        };
        let Some(answer) = checked.answers.first() else {
            return Step::End(ErrorCode::InternalError, "the row visibility check gave no answer".into());
        };
        access = access_of(answer);
        if !access.selectable {
            return Step::End(ErrorCode::Unauthorized, lost_select(&who.role, table));
        }
        if access.row_security && checked.pk.is_none() {
            return Step::End(ErrorCode::InternalError, no_primary_key(table));
        }
        change::visible_of(answer, &keyed).for_each(|c| visible[c] = true);
        table.set_primary_key(checked.pk);
    }
    if !table.is_bound(m.id) {
        return Step::Drop;
    }
    let mut hidden = 0u64;
    let mut full = false;
    for (i, (cursor, change)) in items.iter().enumerate() {
        if let Some(change) = change {
            let event = match plan::verdict(change.op, access, visible[i]) {
                Verdict::Hidden => {
                    hidden += 1;
                    None
                }
                Verdict::Full => Some(change.event.clone()),
                Verdict::Reduced => Some(reduce(change, &pk)),
            };
            if let Some(event) = event {
                match session.offer(Outbound::Event(event)) {
                    Ok(()) => app.hub.metrics.delivered_replay.inc(),
                    Err(_) if session.is_gone() => return Step::Drop,
                    // Full again: the rest of the page is read again once it has room.
                    Err(_) => {
                        full = true;
                        break;
                    }
                }
            }
        }
        *after = *cursor;
    }
    app.metrics.visibility.rows_hidden.inc_by(hidden);
    if more || full {
        Step::More
    } else {
        Step::Caught
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lags_from_just_before_its_first_missed_change() {
        let mut l = Lagging::default();
        assert!(l.is_empty());
        l.fell_behind(7, Cursor::new(100, 3));
        l.fell_behind(7, Cursor::new(100, 9)); // still lagging: keeps the earlier point
        assert!(l.contains(7) && !l.contains(8));
        assert_eq!(l.after[&7], Cursor::new(100, 2));
        assert!(l.after[&7] < Cursor::new(100, 3) && Cursor::new(99, 50) < l.after[&7]);
    }

    #[test]
    fn turns_go_round_from_where_the_last_one_stopped() {
        let mut l = Lagging::default();
        for id in [3, 9, 5, 1] {
            l.fell_behind(id, Cursor::new(10, 1));
        }
        assert_eq!(l.order(), [1, 3, 5, 9]);
        l.next = 5;
        assert_eq!(l.order(), [5, 9, 1, 3]);
        l.next = 10;
        assert_eq!(l.order(), [1, 3, 5, 9]);
    }
}
