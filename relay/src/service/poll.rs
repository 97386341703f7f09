//! Long-poll: one request asks for the stored messages of its channels after a cursor and gets
//! them at once when there are any, else waits (bounded) for the next one. The answer's cursor
//! is where the next request continues, so a client that keeps polling receives every stored
//! message of its channels once, in cursor order (ephemeral messages and presence are not
//! polled: they exist only for who is connected at that moment).
//!
//! The request is a short session ([`super::Session::open_stream`]) whose channels are one group
//! (`super::stream`): registered held at one position `P`, so nothing committed between the
//! table read and the wait can slip through:
//!
//! 1. No cursor: the answer is the current position (a starting point) at once.
//! 2. A cursor `C` outside the replay window, or ahead of this database: `reset` at `P`.
//! 3. `(C, P]` holds messages: the first `limit` of them (and at most half a queue budget of
//!    bytes), merged in cursor order; the cursor is the last one's.
//! 4. Otherwise the group turns live and the request waits up to `wait` for stored messages;
//!    on time-out the cursor is the hub position then (nothing of these channels came up to
//!    it). The session ends with the request, also when the client goes away mid-wait.

use std::time::Duration;

use super::history::{current_position, wait_readable};
use super::resume::{wait_for_position, ReplayError};
use super::stream::{activate, Authorized, Merged};
use super::ServiceError;
use crate::app::App;
use crate::core::event::{Event, Message};
use crate::core::Cursor;
use crate::hub::{Outbound, SessionHandle, SessionQueue};
use crate::pg::history as sql;

/// `limit` when a poll names none.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest `limit` honoured (larger ones are capped).
pub const MAX_LIMIT: usize = 1000;
/// Longest `wait`.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// A poll's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    /// Stored messages after the cursor, in cursor order.
    pub messages: Vec<Message>,
    /// Where the next poll continues.
    pub cursor: Cursor,
    /// The answer was cut by its limit: more follow at once.
    pub more: bool,
    /// The cursor could not be honoured: refetch state, then poll from `cursor`.
    pub reset: bool,
}

impl Polled {
    fn at(cursor: Cursor) -> Self {
        Polled { messages: Vec::new(), cursor, more: false, reset: false }
    }
}

/// Runs one poll for an authorized group on a stream session (see the module docs).
pub async fn poll(
    app: &App,
    session: &SessionHandle,
    queue: &mut SessionQueue,
    group: &Authorized,
    cursor: Option<Cursor>,
    wait: Duration,
    limit: usize,
) -> Result<Polled, ServiceError> {
    let channels = group.channels();
    let Some(c) = cursor else { return Ok(Polled::at(current_position(app).await?)) };
    if c > current_position(app).await? {
        wait_for_position(app, c).await?;
    }
    let joined = app.hub.subscribe_group(channels, session);
    let p = joined.first().and_then(|j| j.position).ok_or(ServiceError::CatchingUp)?;
    wait_readable(app, p.commit_lsn).await?;
    if c > p || (c < p && !within_window(app, c).await?) {
        return Ok(Polled { reset: true, ..Polled::at(p) });
    }
    let max_bytes = session.budget_bytes() / 2;
    let mut merged = Merged::new(channels, vec![c; channels.len()], p, max_bytes);
    let (mut messages, mut bytes) = (Vec::new(), 0);
    while let Some(m) = merged.next(app).await.map_err(failed)? {
        bytes += m.payload.len() + m.event.len() + 128;
        messages.push(m);
        if messages.len() >= limit || bytes >= max_bytes {
            let more = merged.next(app).await.map_err(failed)?.is_some();
            return Ok(answer(messages, p, more));
        }
    }
    if !messages.is_empty() {
        return Ok(answer(messages, p, false));
    }
    match activate(app, session, channels, |_| None).await {
        Ok(()) => {}
        Err(ReplayError::Gone) => return Ok(Polled::at(p)),
        Err(ReplayError::Failed(e)) => return Err(e),
    }
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let first = tokio::select! {
            item = queue.recv() => item,
            _ = tokio::time::sleep_until(deadline) => None,
            _ = app.shutdown.cancelled() => None,
        };
        // Read the position before looking at the queue: everything dispatched up to it is
        // already in the queue.
        let now = app.hub.position().unwrap_or(p).max(p);
        let mut messages = Vec::new();
        first
            .into_iter()
            .chain(std::iter::from_fn(|| queue.try_recv()))
            .for_each(|item| stored(item, &mut messages));
        if !messages.is_empty() {
            let more = messages.len() > limit;
            messages.truncate(limit);
            return Ok(answer(messages, now, more));
        }
        if tokio::time::Instant::now() >= deadline || app.shutdown.is_cancelled() || session.is_gone() {
            return Ok(Polled::at(now));
        }
    }
}

/// The stored message an item carries, if any.
fn stored(item: Outbound, into: &mut Vec<Message>) {
    match item {
        Outbound::Event(e) => {
            if let Event::Message(m) = &e.event {
                if m.cursor.is_some() {
                    into.push(m.clone());
                }
            }
        }
        Outbound::Replayed(m) => into.push(*m),
        _ => {}
    }
}

/// An answer with messages. Cut by the limit (`more`), the next poll continues after the last
/// one; else after `upto` too, when everything of the channels up to it is in `messages`.
fn answer(messages: Vec<Message>, upto: Cursor, more: bool) -> Polled {
    let last = messages.last().and_then(|m| m.cursor).unwrap_or(upto);
    let cursor = if more { last } else { last.max(upto) };
    Polled { messages, cursor, more, reset: false }
}

fn failed(e: ReplayError) -> ServiceError {
    match e {
        ReplayError::Failed(e) => e,
        ReplayError::Gone => ServiceError::Internal("the poll ended".into()),
    }
}

async fn within_window(app: &App, c: Cursor) -> Result<bool, ServiceError> {
    let client = app.pool.get().await.map_err(crate::pg::PgError::from)?;
    Ok(sql::within_window(&client, c, app.config.replay_window.as_secs_f64()).await?)
}
