//! `subscribe` with `resume: {cursor}`: replay exactly the missed messages, then live ones,
//! with nothing lost or doubled at the seam, on any relay of the database. The same replay
//! serves a subscriber that fell behind ([`catch_up_or_reset`], see `crate::hub`).
//!
//! 1. If the cursor `C` is ahead of this relay's position (it came from a relay further along
//!    the WAL), wait (bounded) for this relay to get there.
//! 2. Register the subscription *held* ([`crate::hub::Hub::subscribe_held_from`]) and read the
//!    position `P` under the hub lock: every stored message above `P` now goes to the side
//!    buffer, every one at or below `P` must come from the table. If `C` is the last stored
//!    message this relay dispatched on the channel, nothing was missed: recovered, no read of
//!    the table (steps 3 and 4 and the replay are skipped; the usual reconnect costs no
//!    statement beyond the permission check).
//! 3. Wait until commit positions up to `P` are durable, so `messages ⋈ commits` has no holes.
//! 4. Decide: `C == P` (nothing missed), or `C < P`, the cursor inside the replay window and
//!    at most `--max-replay` messages in `(C, P]` → recovered. Otherwise → `reset`.
//! 5. Queue the reply (before any frame of the channel), then the replay `(C, P]` in order
//!    with `replayed: true` (or the `reset` frame).
//! 6. Activate: the side buffer (frames above `P`, ephemeral ones included) goes to the session
//!    queue and the subscription turns live. If the buffer overflowed meanwhile, the replay goes
//!    on from the table up to the new position and activation is retried. Replays are paced by
//!    the session's queue (half its byte budget stays free for its other channels) and read a
//!    page at a time, bounded in rows and bytes.

use std::time::Duration;

use super::history::{current_position, wait_readable, READ_WAIT};
use super::ServiceError;
use crate::app::App;
use crate::core::Cursor;
use crate::hub::{Activation, Joined, Outbound, SessionHandle};
use crate::pg::history::{self as sql, REPLAY_PAGE};

/// Why a replay could not finish after the reply was sent.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Failed(#[from] ServiceError),
    #[error("session gone or too slow")]
    Gone,
}

impl From<crate::pg::PgError> for ReplayError {
    fn from(e: crate::pg::PgError) -> Self {
        ReplayError::Failed(e.into())
    }
}

/// Resumes `channel` from `cursor` for an authorised session; `reply` encodes the subscribe
/// reply from what the subscription joined and whether the replay follows (`recovered`). Returns whether the channel is now registered in the hub (the caller records it); on
/// `Err` nothing is registered and the caller answers with the error.
pub async fn subscribe(
    app: &App,
    session: &SessionHandle,
    channel: &str,
    cursor: Cursor,
    reply: impl FnOnce(Joined, bool) -> Outbound,
) -> Result<bool, ServiceError> {
    if cursor > current_position(app).await? {
        wait_for_position(app, cursor).await?;
    }
    let (joined, missed_nothing) = app.hub.subscribe_held_from(channel, session, cursor);
    let Some(p) = joined.position else {
        app.hub.unsubscribe(channel, session.id);
        return Err(ServiceError::CatchingUp);
    };
    let decided = async {
        if missed_nothing {
            return Ok(true);
        }
        wait_readable(app, p.commit_lsn).await?;
        decide(app, channel, cursor, p).await
    };
    let recovered = match decided.await {
        Ok(r) => r,
        Err(e) => {
            app.hub.unsubscribe(channel, session.id);
            return Err(e);
        }
    };
    let path =
        if missed_nothing { &app.hub.metrics.resumes_from_memory } else { &app.hub.metrics.resumes_from_log };
    path.inc();
    tracing::debug!(session = session.id, %channel, from = %cursor, to = %p, recovered, missed_nothing, "resume");
    if !session.send(reply(joined, recovered)) {
        return Ok(true);
    }
    if !recovered {
        session.send(Outbound::Reset { channel: channel.to_string(), cursor: Some(p) });
        catch_up_or_reset(app, session, channel).await;
        return Ok(true);
    }
    let replayed = if missed_nothing {
        catch_up(app, session, channel).await
    } else {
        replay_and_activate(app, session, channel, cursor, p).await
    };
    if let Err(ReplayError::Failed(e)) = replayed {
        // The reply is out; tell the client to refetch rather than leave a hole.
        tracing::warn!(session = session.id, %channel, error = %e, "replay failed; sending reset");
        let at = app.hub.position().unwrap_or(p);
        session.send(Outbound::Reset { channel: channel.to_string(), cursor: Some(at) });
        let _ = activate_without_replay(app, session, channel).await;
    }
    Ok(true)
}

/// Waits (bounded) until this relay's position reaches `cursor`. If it never gets there the
/// cursor stays ahead and the resume is answered with `reset`.
pub(super) async fn wait_for_position(app: &App, cursor: Cursor) -> Result<(), ServiceError> {
    let deadline = tokio::time::Instant::now() + READ_WAIT;
    loop {
        let p = current_position(app).await?;
        if p >= cursor || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Is an exact replay of `(cursor, p]` possible and allowed?
async fn decide(app: &App, channel: &str, cursor: Cursor, p: Cursor) -> Result<bool, ServiceError> {
    if cursor == p {
        return Ok(true);
    }
    if cursor > p {
        return Ok(false); // ahead of this database's stream: not ours, or far ahead
    }
    let client = app.pool.get().await.map_err(crate::pg::PgError::from)?;
    if !sql::within_window(&client, cursor, app.config.replay_window.as_secs_f64()).await? {
        return Ok(false);
    }
    let max = app.config.max_replay as i64;
    Ok(sql::count_between(&client, channel, cursor, p, max + 1).await? <= max)
}

/// Replays `(from, to]`, then catches up and turns live ([`catch_up`]).
async fn replay_and_activate(
    app: &App,
    session: &SessionHandle,
    channel: &str,
    from: Cursor,
    to: Cursor,
) -> Result<(), ReplayError> {
    replay(app, session, channel, from, to).await?;
    catch_up(app, session, channel).await
}

/// Turns a held subscription live: when its side buffer overflowed (or it fell behind, see
/// `crate::hub`), first replays what it missed from the table, as often as it takes.
pub async fn catch_up(app: &App, session: &SessionHandle, channel: &str) -> Result<(), ReplayError> {
    loop {
        match activate(app, session, channel).await? {
            None => return Ok(()),
            Some((from, to)) => {
                wait_readable(app, to.commit_lsn).await?;
                replay(app, session, channel, from, to).await?;
            }
        }
    }
}

/// A subscription fell behind (see `crate::hub`): replay what it missed and turn it live again.
/// If the log cannot be read, the client gets `reset` rather than a hole.
pub async fn catch_up_or_reset(app: &App, session: &SessionHandle, channel: &str) {
    match catch_up(app, session, channel).await {
        Ok(()) | Err(ReplayError::Gone) => {}
        Err(ReplayError::Failed(e)) => {
            tracing::warn!(session = session.id, %channel, error = %e, "catch-up failed; sending reset");
            session.send(Outbound::Reset { channel: channel.to_string(), cursor: app.hub.position() });
            let _ = activate_without_replay(app, session, channel).await;
        }
    }
}

/// Queues the messages of `(from, to]` in order, as replayed frames, a page at a time (bounded
/// in rows and bytes; the database connection is returned between pages).
async fn replay(
    app: &App,
    session: &SessionHandle,
    channel: &str,
    from: Cursor,
    to: Cursor,
) -> Result<(), ReplayError> {
    let mut after = from;
    let page_bytes = session.budget_bytes() / 2;
    loop {
        let page = {
            let _slot = app.replay_slots.acquire().await.map_err(|_| ReplayError::Gone)?;
            let client = app.pool.get().await.map_err(crate::pg::PgError::from)?;
            sql::page_after(&client, channel, after, to, REPLAY_PAGE, page_bytes).await?
        };
        let more = page.more;
        let last = page.messages.last().map(|m| m.cursor);
        for m in page.messages {
            send_paced(app, session, Outbound::Replayed(Box::new(m))).await?;
            app.hub.metrics.delivered_replay.inc();
        }
        match last {
            Some(Some(c)) if more => after = c,
            Some(None) => return Err(ServiceError::Internal("bad cursor from SQL".into()).into()),
            _ => return Ok(()),
        }
    }
}

/// Switches the held subscription live. `Some((from, to))` when the side buffer overflowed and
/// `(from, to]` must be read from the table first. Waits for room in the session's queue for
/// the held events; a client that reads nothing is closed by its stall timeout meanwhile.
async fn activate(
    app: &App,
    session: &SessionHandle,
    channel: &str,
) -> Result<Option<(Cursor, Cursor)>, ReplayError> {
    loop {
        match app.hub.activate(channel, session.id) {
            Activation::Done => return Ok(None),
            Activation::Gone => return Err(ReplayError::Gone),
            Activation::Overflowed { from, to } => {
                return Ok(Some((from, to.ok_or(ServiceError::CatchingUp)?)))
            }
            Activation::NoRoom => {
                if session.is_gone() || app.shutdown.is_cancelled() {
                    return Err(ReplayError::Gone);
                }
                wait_for_room(app, session).await?;
            }
        }
    }
}

/// Activation after a `reset`: held events above the position go out; an overflow just moves
/// the floor (the client refetches its state anyway).
async fn activate_without_replay(
    app: &App,
    session: &SessionHandle,
    channel: &str,
) -> Result<(), ReplayError> {
    loop {
        if activate(app, session, channel).await?.is_none() {
            return Ok(());
        }
    }
}

/// Waits until the session's queue is under half its budget (so live traffic of its other
/// channels keeps flowing while a replay fills the rest), or the session is gone.
pub(super) async fn wait_for_room(app: &App, session: &SessionHandle) -> Result<(), ReplayError> {
    tokio::select! {
        _ = session.wait_room() => {}
        _ = app.shutdown.cancelled() => {}
    }
    if session.is_gone() || app.shutdown.is_cancelled() {
        return Err(ReplayError::Gone);
    }
    Ok(())
}

/// Queues a replayed item once the queue has room (see [`wait_for_room`]).
pub(super) async fn send_paced(
    app: &App,
    session: &SessionHandle,
    item: Outbound,
) -> Result<(), ReplayError> {
    if !session.has_room() {
        wait_for_room(app, session).await?;
    }
    if session.send(item) {
        Ok(())
    } else {
        Err(ReplayError::Gone)
    }
}
