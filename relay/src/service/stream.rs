//! Streams: a session's channels subscribed as one group with a single resume point, for
//! transports whose client keeps one cursor for everything it receives (Server-Sent Events:
//! the browser sends back the last event `id`, nothing per channel).
//!
//! The rule that makes one cursor enough: the stream's stored messages leave in cursor order
//! across all its channels, so after the message with cursor `X` every message of its channels
//! at or below `X` was sent. Hence:
//!
//! 1. Every channel is permission-checked first ([`authorize`]); a refusal refuses the stream.
//! 2. All channels are registered held at one position `P` ([`crate::hub::Hub::subscribe_group`]).
//! 3. With a resume cursor `C`: `C == P`, or `C < P` inside the replay window with at most
//!    `--max-replay` messages in `(C, P]` over all channels → recovered; otherwise every
//!    channel gets `reset` (at `P`). Replies say which.
//! 4. The missed messages `(C, P]` of all channels are replayed merged in cursor order, paged
//!    and paced by the queue; then the group turns live at once behind a marker that carries
//!    the floor (`--` everything at or below it was sent), replaying again from the table
//!    whenever a side buffer overflowed meanwhile.
//! 5. Live, the session's queue refuses everything after its first refused offer
//!    ([`crate::hub::SessionHandle::keep_order`]), so nothing newer than a missed message is
//!    queued before it; the group then catches up as one ([`catch_up`]): every channel is held
//!    from where it was, the missed messages are replayed merged in cursor order, and the group
//!    turns live again, as in step 4.

use std::collections::VecDeque;

use super::history::{current_position, wait_readable};
use super::resume::{send_paced, wait_for_position, wait_for_room, ReplayError};
use super::ServiceError;
use crate::app::App;
use crate::core::event::Message;
use crate::core::Cursor;
use crate::hub::group::GroupActivation;
use crate::hub::{Joined, Outbound, SessionHandle};
use crate::pg::history::{self as sql, REPLAY_PAGE};

/// Channels whose subscribe permission was checked for the session's identity, deduplicated
/// (made by [`super::Session::authorize_group`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized(pub(super) Vec<String>);

impl Authorized {
    pub fn channels(&self) -> &[String] {
        &self.0
    }

    /// Leaves out channels whose subscription a permission re-check ended.
    pub fn remove(&mut self, revoked: &[String]) {
        self.0.retain(|c| !revoked.contains(c));
    }
}

/// Subscribes the group (steps 2 to 4 of the module docs). `reply(channel, joined, recovered)`
/// encodes each channel's subscribe reply (`recovered` is None without a resume cursor);
/// `marker(floor)` the item queued when the group turns live. On `Err` after registration the
/// caller ends the stream (the client resumes with its last cursor).
pub async fn subscribe(
    app: &App,
    session: &SessionHandle,
    group: &Authorized,
    from: Option<Cursor>,
    reply: impl Fn(&str, &Joined, Option<bool>) -> Outbound,
    marker: impl Fn(Cursor) -> Option<Outbound>,
) -> Result<(), ServiceError> {
    let channels = group.channels();
    if let Some(c) = from {
        if c > current_position(app).await? {
            wait_for_position(app, c).await?;
        }
    }
    let joined = app.hub.subscribe_group(channels, session);
    let p = joined.first().and_then(|j| j.position).ok_or(ServiceError::CatchingUp)?;
    wait_readable(app, p.commit_lsn).await?;
    let recovered = match from {
        Some(c) => Some(decide(app, channels, c, p).await?),
        None => None,
    };
    for (channel, j) in channels.iter().zip(&joined) {
        session.send(reply(channel, j, recovered));
    }
    let start = match (from, recovered) {
        (Some(c), Some(true)) => c,
        _ => p,
    };
    if recovered == Some(false) {
        for channel in channels {
            session.send(Outbound::Reset { channel: channel.clone(), cursor: Some(p) });
        }
    }
    let result = async {
        replay(app, session, channels, vec![start; channels.len()], p).await?;
        activate(app, session, channels, marker).await
    };
    match result.await {
        Ok(()) => Ok(()),
        Err(ReplayError::Failed(e)) => Err(e),
        Err(ReplayError::Gone) => Ok(()),
    }
}

/// The group fell behind (its queue refused an event): holds all its channels and catches
/// them up as one, in cursor order, from where each was (see the module docs). The stream stays
/// open; a client that reads nothing is closed by its stall timeout meanwhile.
pub async fn catch_up(app: &App, session: &SessionHandle, group: Authorized) -> Result<(), ServiceError> {
    app.hub.hold_group(group.channels(), session.id);
    app.hub.metrics.catch_ups.inc();
    match activate(app, session, group.channels(), |_| None).await {
        Ok(()) | Err(ReplayError::Gone) => Ok(()),
        Err(ReplayError::Failed(e)) => Err(e),
    }
}

/// Is an exact replay of `(cursor, p]` for all `channels` possible and allowed?
pub(super) async fn decide(
    app: &App,
    channels: &[String],
    cursor: Cursor,
    p: Cursor,
) -> Result<bool, ServiceError> {
    if cursor == p {
        return Ok(true);
    }
    if cursor > p {
        return Ok(false);
    }
    let client = app.pool.get().await.map_err(crate::pg::PgError::from)?;
    if !sql::within_window(&client, cursor, app.config.replay_window.as_secs_f64()).await? {
        return Ok(false);
    }
    let max = app.config.max_replay as i64;
    let mut total = 0;
    for channel in channels {
        total += sql::count_between(&client, channel, cursor, p, max + 1 - total).await?;
        if total > max {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Turns the group live, replaying from the table whenever a side buffer overflowed.
pub(super) async fn activate(
    app: &App,
    session: &SessionHandle,
    channels: &[String],
    marker: impl Fn(Cursor) -> Option<Outbound>,
) -> Result<(), ReplayError> {
    loop {
        match app.hub.activate_group(channels, session.id, &marker) {
            GroupActivation::Done => return Ok(()),
            GroupActivation::Gone => return Err(ReplayError::Gone),
            GroupActivation::Overflowed { from, to } => {
                wait_readable(app, to.commit_lsn).await?;
                replay(app, session, channels, from, to).await?;
            }
            GroupActivation::NoRoom => wait_for_room(app, session).await?,
        }
    }
}

/// One channel's part of a merged read: its next rows and where its next page starts.
struct Source {
    channel: String,
    rows: VecDeque<Message>,
    after: Cursor,
    more: bool,
}

/// The stored messages of `(from, to]` of several channels, merged in cursor order: read a page
/// per channel at a time (bounded in rows and bytes), so memory stays bounded however much lies
/// in the range.
pub(super) struct Merged {
    sources: Vec<Source>,
    to: Cursor,
    page_bytes: usize,
}

impl Merged {
    /// Channel `i` is read after `from[i]`; `page_bytes` is shared by the channels' pages.
    pub(super) fn new(channels: &[String], from: Vec<Cursor>, to: Cursor, page_bytes: usize) -> Self {
        let sources = channels
            .iter()
            .zip(from)
            .map(|(c, after)| Source { channel: c.clone(), rows: VecDeque::new(), after, more: after < to })
            .collect();
        Merged { sources, to, page_bytes: (page_bytes / channels.len().max(1)).max(16 * 1024) }
    }

    /// The next message in cursor order, or None at the end of the range.
    pub(super) async fn next(&mut self, app: &App) -> Result<Option<Message>, ReplayError> {
        for s in self.sources.iter_mut().filter(|s| s.rows.is_empty() && s.more) {
            let page = {
                let _slot = app.replay_slots.acquire().await.map_err(|_| ReplayError::Gone)?;
                let client = app.pool.get().await.map_err(crate::pg::PgError::from)?;
                sql::page_after(&client, &s.channel, s.after, self.to, REPLAY_PAGE, self.page_bytes).await?
            };
            s.more = page.more;
            if let Some(last) = page.messages.last() {
                s.after = last.cursor.ok_or_else(|| ServiceError::Internal("bad cursor from SQL".into()))?;
            }
            s.rows.extend(page.messages);
        }
        let next = self
            .sources
            .iter_mut()
            .filter(|s| !s.rows.is_empty())
            .min_by_key(|s| s.rows.front().and_then(|m| m.cursor));
        Ok(next.and_then(|s| s.rows.pop_front()))
    }
}

/// Queues the stored messages of `(from[i], to]` of every channel `i`, merged in cursor order,
/// as replayed items, paced by the session's queue.
async fn replay(
    app: &App,
    session: &SessionHandle,
    channels: &[String],
    from: Vec<Cursor>,
    to: Cursor,
) -> Result<(), ReplayError> {
    let mut merged = Merged::new(channels, from, to, session.budget_bytes() / 2);
    while let Some(m) = merged.next(app).await? {
        send_paced(app, session, Outbound::Replayed(Box::new(m))).await?;
        app.hub.metrics.delivered_replay.inc();
    }
    Ok(())
}
