//! A session's queue: what the hub and the services put in for one connection, bounded in
//! bytes, and what its writer takes out.
//!
//! What goes in is protocol-neutral ([`Outbound`]): events shared by every subscriber, this
//! session's replays, resets, revocations and notices, and frames the session's protocol
//! already encoded (replies). The writer encodes the rest with its protocol's codec.
//!
//! **Bytes, not frames.** Every item has a weight (its payload and names plus a fixed
//! overhead, or an encoded frame's length). A session may hold at most its own budget
//! (`--send-queue-bytes`) and all sessions together at most a shared one
//! (`--send-queue-total-bytes`). The hub only [`SessionHandle::offer`]s: an event that does
//! not fit is refused and the hub turns the subscription into a catch-up from
//! `realtime.messages` (see `crate::hub`), so a burst never closes a client. A session's own
//! replies are always queued ([`SessionHandle::send`]); its reader stops reading requests
//! while the queue is over budget ([`SessionHandle::over_budget`]), so a client that sends
//! without reading is held back by TCP instead of growing the queue.
//!
//! **Stalls.** The writer records its progress; a queue that holds bytes and made no progress
//! for the stall timeout is a client that reads nothing ([`SessionHandle::stalled_for`]), the
//! only one that is closed (4009).
//!
//! **Per delivery, little.** The hub's offer is a few atomics and one uncontended lock; the
//! writer is woken only when an item goes into an empty queue (it empties the queue before it
//! waits again), and it takes what is queued as a [`Batch`] whose bytes leave the budgets, and
//! whose room waiters are told, once, when the batch is done.
//!
//! **An idle queue holds no storage.** Items sit in a `VecDeque` under a mutex (no channel: a
//! tokio mpsc channel allocates a block of 32 slots per session up front, and keeps a few such
//! blocks while items flow, several KiB per connection). Storage is made at the first item,
//! and given back once the writer has emptied a queue that had grown past [`KEEP_SLOTS`]
//! items, so a burst does not stay allocated in every connection it reached.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::core::event::{Message, SharedEvent};
use crate::core::frame::WireFrame;
use crate::core::presence::Member;
use crate::core::{Cursor, ErrorCode, Identity};

/// Fixed bytes counted per queued item beside what it carries.
const ITEM_OVERHEAD: usize = 160;

/// Slots an emptied queue keeps; a queue that grew beyond them gives its storage back when
/// the writer empties it (the next burst grows it again, a few reallocations per burst).
const KEEP_SLOTS: usize = 8;

/// One item of a session's queue.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A live event (message or presence change), shared with the channel's other subscribers.
    Event(SharedEvent),
    /// A stored message replayed from the table (on resume or catch-up; this session's own).
    /// Boxed: a queue slot is as large as the largest variant.
    Replayed(Box<Message>),
    /// The channel's stream starts again at `cursor`: the client must refetch its state.
    Reset { channel: String, cursor: Option<Cursor> },
    /// The subscription was ended by the server (access revoked, channel gone).
    Unsubscribed { channel: String, code: ErrorCode, message: String },
    /// `count` ephemeral messages of `channel` were not delivered: the subscriber had fallen
    /// behind (stored messages are caught up from the log; ephemeral ones cannot be).
    Dropped { channel: String, count: u64 },
    /// The channel's presence members now, replacing what the client knew: sent after a
    /// catch-up, since presence changes are not kept while a subscriber is behind.
    PresenceSync { channel: String, members: Vec<Member> },
    /// A frame the session's protocol has already encoded (a reply).
    Frame(WireFrame),
}

impl Outbound {
    /// Bytes this item holds while queued.
    pub fn weight(&self) -> usize {
        if let Outbound::Event(e) = self {
            return e.weight();
        }
        ITEM_OVERHEAD
            + match self {
                Outbound::Event(_) => 0,
                Outbound::Replayed(m) => m.channel.len() + m.event.len() + m.payload.len(),
                Outbound::Reset { channel, .. } | Outbound::Dropped { channel, .. } => channel.len(),
                Outbound::Unsubscribed { channel, message, .. } => channel.len() + message.len(),
                Outbound::PresenceSync { channel, members } => {
                    channel.len()
                        + members.iter().map(|m| 64 + m.presence_id.len() + m.state.len()).sum::<usize>()
                }
                Outbound::Frame(f) => f.len(),
            }
    }
}

/// The bytes every session's queue may hold together.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Budget { used: AtomicUsize::new(0), max })
    }

    /// Bytes queued over all sessions now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// The per-session limits.
#[derive(Debug, Clone)]
pub struct QueueLimits {
    /// Bytes this session may queue.
    pub bytes: usize,
    /// Shared by every session.
    pub budget: Arc<Budget>,
}

#[derive(Debug)]
struct Shared {
    /// The queued items, oldest first, with their weights.
    items: Mutex<VecDeque<(Outbound, usize)>>,
    /// Signalled when an item was queued or the last handle went away (the writer waits).
    ready: Notify,
    /// Live [`SessionHandle`]s: once none is left and the queue is empty, it has ended.
    handles: AtomicUsize,
    /// The writer's end was dropped: nothing is queued any more (set under `items`' lock).
    closed: AtomicBool,
    /// Bytes queued now.
    bytes: AtomicUsize,
    limits: QueueLimits,
    /// Signalled when the writer took items out.
    room: Notify,
    /// Milliseconds since `epoch` of the writer's last progress, or of the moment the queue
    /// went from empty to non-empty, whichever is later.
    progress_ms: AtomicU64,
    epoch: Instant,
    /// Cancelled to close the session as too slow (4009).
    slow: CancellationToken,
    /// `slow` was cancelled (an atomic load per offer; asking the token takes its lock).
    marked_slow: AtomicBool,
    /// Channels whose subscription fell behind and waits for a catch-up.
    lagging: Mutex<BTreeSet<String>>,
    lag: Notify,
    /// Who the session acts as now (its permission re-checks run as this identity).
    identity: Mutex<Option<Arc<Identity>>>,
    /// Channels whose subscription a permission re-check ended, for the session to forget.
    revoked: Mutex<BTreeSet<String>>,
    revoke: Notify,
    /// Kept in order ([`SessionHandle::keep_order`]): once an offer is refused, every later one
    /// is refused too.
    ordered: AtomicBool,
    /// The relay's own consumer, not a client ([`SessionHandle::mark_internal`]).
    internal: AtomicBool,
    /// An offer to an ordered session was refused: refuse the rest.
    refusing: AtomicBool,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn add(&self, w: usize) {
        if self.bytes.fetch_add(w, Ordering::AcqRel) == 0 {
            self.progress_ms.store(self.now_ms(), Ordering::Relaxed);
        }
        self.limits.budget.used.fetch_add(w, Ordering::AcqRel);
    }

    fn sub(&self, w: usize) {
        self.bytes.fetch_sub(w, Ordering::AcqRel);
        self.limits.budget.used.fetch_sub(w, Ordering::AcqRel);
    }

    /// Takes the oldest item and its weight, leaving its bytes counted (see [`Shared::release`]).
    fn take(&self) -> Option<(Outbound, usize)> {
        let mut items = self.items.lock().expect("queue lock");
        let next = items.pop_front();
        if items.is_empty() && items.capacity() > KEEP_SLOTS {
            *items = VecDeque::new();
        }
        next
    }

    /// `w` bytes taken out left the queue: the budgets get them back and room waiters are told.
    fn release(&self, w: usize) {
        if w > 0 {
            self.sub(w);
            self.room.notify_waiters();
        }
    }

    /// Takes the oldest item (for the writer).
    fn pop(&self) -> Option<Outbound> {
        let (item, w) = self.take()?;
        self.release(w);
        Some(item)
    }
}

/// Why [`SessionHandle::offer`] did not queue an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over the session's or the shared budget.
    Full,
    /// The session is ending.
    Gone,
}

/// The hub's and the services' end of one session's queue.
#[derive(Debug)]
pub struct SessionHandle {
    pub id: u64,
    shared: Arc<Shared>,
}

impl Clone for SessionHandle {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::AcqRel);
        SessionHandle { id: self.id, shared: self.shared.clone() }
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last one: a waiting writer sees the end of the queue.
            self.shared.ready.notify_one();
        }
    }
}

/// The writer's end of a session's queue.
#[derive(Debug)]
pub struct SessionQueue {
    shared: Arc<Shared>,
}

/// A new session queue: the handle (for the hub and the services) and the queue (for the
/// writer).
pub fn session_queue(id: u64, limits: QueueLimits) -> (SessionHandle, SessionQueue) {
    let shared = Arc::new(Shared {
        items: Mutex::new(VecDeque::new()),
        ready: Notify::new(),
        handles: AtomicUsize::new(1),
        closed: AtomicBool::new(false),
        bytes: AtomicUsize::new(0),
        limits,
        room: Notify::new(),
        progress_ms: AtomicU64::new(0),
        epoch: Instant::now(),
        slow: CancellationToken::new(),
        marked_slow: AtomicBool::new(false),
        lagging: Mutex::new(BTreeSet::new()),
        lag: Notify::new(),
        identity: Mutex::new(None),
        revoked: Mutex::new(BTreeSet::new()),
        revoke: Notify::new(),
        ordered: AtomicBool::new(false),
        internal: AtomicBool::new(false),
        refusing: AtomicBool::new(false),
    });
    (SessionHandle { id, shared: shared.clone() }, SessionQueue { shared })
}

impl SessionHandle {
    fn push(&self, item: Outbound, w: usize) -> Result<(), Refused> {
        let was_empty = {
            let mut items = self.shared.items.lock().expect("queue lock");
            if self.shared.closed.load(Ordering::Acquire) {
                return Err(Refused::Gone);
            }
            self.shared.add(w);
            let was_empty = items.is_empty();
            items.push_back((item, w));
            was_empty
        };
        // The writer waits only after it found the queue empty (under the lock), so only an
        // item that goes into an empty queue has a writer to wake.
        if was_empty {
            self.shared.ready.notify_one();
        }
        Ok(())
    }

    /// Queues an item whatever the budget (a reply or notice of this session's own; its reader
    /// stops reading requests while the queue is over budget). False when the session is gone.
    pub fn send(&self, item: Outbound) -> bool {
        if self.is_gone() {
            return false;
        }
        let w = item.weight();
        self.push(item, w).is_ok()
    }

    /// Queues a frame its protocol already encoded.
    pub fn send_frame(&self, frame: WireFrame) -> bool {
        self.send(Outbound::Frame(frame))
    }

    /// Queues an event if it fits in the session's and the shared budget.
    pub fn offer(&self, item: Outbound) -> Result<(), Refused> {
        if self.is_gone() {
            return Err(Refused::Gone);
        }
        let ordered = self.shared.ordered.load(Ordering::Acquire);
        if ordered && self.shared.refusing.load(Ordering::Acquire) {
            return Err(Refused::Full);
        }
        let w = item.weight();
        if !self.fits(w) {
            if ordered {
                self.shared.refusing.store(true, Ordering::Release);
            }
            return Err(Refused::Full);
        }
        self.push(item, w)
    }

    /// Keeps the queue in dispatch order across channels: after the first refused offer every
    /// later offer is refused too, so nothing newer than what the session missed is queued,
    /// until the session's channels caught up as one group (`Hub::activate_group`, which calls
    /// [`SessionHandle::accept_offers`]). For streams whose resume point is one cursor for all
    /// their channels (SSE). Set before subscribing.
    pub fn keep_order(&self) {
        self.shared.ordered.store(true, Ordering::Release);
    }

    /// Whether [`SessionHandle::keep_order`] was set.
    pub fn is_ordered(&self) -> bool {
        self.shared.ordered.load(Ordering::Acquire)
    }

    /// Marks the session as the relay's own consumer (a table's visibility gate), not a
    /// client: what the hub queues to it is not counted as delivered (what reaches clients
    /// through it is, when it does). Set before subscribing.
    pub fn mark_internal(&self) {
        self.shared.internal.store(true, Ordering::Release);
    }

    /// Whether [`SessionHandle::mark_internal`] was set.
    pub fn is_internal(&self) -> bool {
        self.shared.internal.load(Ordering::Relaxed)
    }

    /// An ordered session refuses offers from now on, as after a refused one: some of its
    /// messages are to be read from the log first ([`crate::core::event::LogEvent::FromLog`]).
    pub fn refuse_offers(&self) {
        if self.is_ordered() {
            self.shared.refusing.store(true, Ordering::Release);
        }
    }

    /// Offers may go in again (the group caught up; called under the hub lock).
    pub fn accept_offers(&self) {
        self.shared.refusing.store(false, Ordering::Release);
    }

    /// Whether `w` more bytes fit in the session's and the shared budget now.
    pub fn fits(&self, w: usize) -> bool {
        let l = &self.shared.limits;
        self.shared.bytes.load(Ordering::Acquire) + w <= l.bytes && l.budget.used() + w <= l.budget.max
    }

    /// Whether the queue is strictly under its budget.
    fn under(&self) -> bool {
        let l = &self.shared.limits;
        self.shared.bytes.load(Ordering::Acquire) < l.bytes && l.budget.used() < l.budget.max
    }

    /// Whether the queue is under half its budget (and the shared budget has room): the
    /// session may read the next request, and replays may queue more.
    pub fn has_room(&self) -> bool {
        self.fits(self.shared.limits.bytes / 2)
    }

    /// Waits until [`SessionHandle::has_room`] (or the session is gone).
    pub async fn wait_room(&self) {
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.has_room() || self.is_gone() {
                return;
            }
            notified.await;
        }
    }

    /// Whether the queue holds its whole budget (or the shared budget is spent): the session's
    /// reader then reads no more requests until the writer makes room.
    pub fn over_budget(&self) -> bool {
        !self.under()
    }

    /// Waits until [`SessionHandle::over_budget`] is false (or the session is gone).
    pub async fn wait_under_budget(&self) {
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.over_budget() || self.is_gone() {
                return;
            }
            notified.await;
        }
    }

    /// When the writer last handed data to the socket (or the queue last went from empty to
    /// not empty): a client that reads what it is sent is alive.
    pub fn last_progress(&self) -> Instant {
        self.shared.epoch + Duration::from_millis(self.shared.progress_ms.load(Ordering::Relaxed))
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.shared.bytes.load(Ordering::Acquire)
    }

    /// The session's byte budget.
    pub fn budget_bytes(&self) -> usize {
        self.shared.limits.bytes
    }

    /// How long the queue has held bytes without the writer making progress; zero when it is
    /// empty.
    pub fn stalled_for(&self) -> Duration {
        if self.queued_bytes() == 0 {
            return Duration::ZERO;
        }
        let since = self.shared.progress_ms.load(Ordering::Relaxed);
        Duration::from_millis(self.shared.now_ms().saturating_sub(since))
    }

    /// Marks the session too slow (it is then closed with 4009).
    pub fn mark_slow(&self) {
        self.shared.marked_slow.store(true, Ordering::Release);
        self.shared.slow.cancel();
    }

    /// Cancelled when the session was marked too slow.
    pub fn slow_signal(&self) -> CancellationToken {
        self.shared.slow.clone()
    }

    /// True once the session was marked too slow or its writer is gone.
    pub fn is_gone(&self) -> bool {
        self.shared.marked_slow.load(Ordering::Acquire) || self.shared.closed.load(Ordering::Acquire)
    }

    /// Notes that `channel`'s subscription fell behind and needs a catch-up.
    pub fn lagged(&self, channel: &str) {
        self.shared.lagging.lock().expect("lagging lock").insert(channel.to_string());
        self.shared.lag.notify_one();
    }

    /// Records who the session acts as (at open and after each token swap).
    pub fn set_identity(&self, identity: Arc<Identity>) {
        *self.shared.identity.lock().expect("identity lock") = Some(identity);
    }

    /// Who the session acts as, once set.
    pub fn identity(&self) -> Option<Arc<Identity>> {
        self.shared.identity.lock().expect("identity lock").clone()
    }

    /// Notes that the subscription to `channel` was ended from outside the session (the hub
    /// no longer delivers it and the client was told): the session forgets it.
    pub fn revoked(&self, channel: &str) {
        self.shared.revoked.lock().expect("revoked lock").insert(channel.to_string());
        self.shared.revoke.notify_one();
    }

    /// Takes the channels revoked since the last call, without waiting.
    pub fn take_revoked(&self) -> Vec<String> {
        std::mem::take(&mut *self.shared.revoked.lock().expect("revoked lock")).into_iter().collect()
    }

    /// Waits for and takes revoked channels.
    pub async fn next_revoked(&self) -> Vec<String> {
        loop {
            let taken = self.take_revoked();
            if !taken.is_empty() {
                return taken;
            }
            self.shared.revoke.notified().await;
        }
    }

    /// Waits for and takes the channels that fell behind.
    pub async fn next_lagging(&self) -> Vec<String> {
        loop {
            let taken: Vec<String> =
                std::mem::take(&mut *self.shared.lagging.lock().expect("lagging lock")).into_iter().collect();
            if !taken.is_empty() {
                return taken;
            }
            self.shared.lag.notified().await;
        }
    }
}

impl SessionQueue {
    /// The next item, waiting for one; None when every handle is gone and the queue is empty.
    /// Cancel-safe: an item is only taken when it is returned.
    pub async fn recv(&mut self) -> Option<Outbound> {
        let shared = &*self.shared;
        loop {
            // `notify_one` leaves a permit when nobody waits, so a push between the check
            // below and the wait is not missed.
            let ready = shared.ready.notified();
            // Read before looking at the queue: with no handle left, nothing more can come.
            let ended = shared.handles.load(Ordering::Acquire) == 0;
            if let Some(item) = shared.pop() {
                return Some(item);
            }
            if ended {
                return None;
            }
            ready.await;
        }
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        self.shared.pop()
    }

    /// Waits until an item is queued (true) or every handle is gone and the queue is empty
    /// (false). Takes nothing, so it is cancel-safe; take the items with [`Self::batch`].
    pub async fn ready(&mut self) -> bool {
        let shared = &*self.shared;
        loop {
            // As in `recv`: a permit left by `notify_one` is not missed.
            let ready = shared.ready.notified();
            let ended = shared.handles.load(Ordering::Acquire) == 0;
            if !shared.items.lock().expect("queue lock").is_empty() {
                return true;
            }
            if ended {
                return false;
            }
            ready.await;
        }
    }

    /// Whether the oldest queued item is an event shared by subscribers (not the session's own
    /// reply or notice, which a writer should not hold back).
    pub fn next_is_event(&self) -> bool {
        matches!(self.shared.items.lock().expect("queue lock").front(), Some((Outbound::Event(_), _)))
    }

    /// Takes items one by one (a [`Batch`] is an iterator); their bytes stay counted until the batch is
    /// dropped (they are still in memory, in the writer's hands), which gives them back and
    /// wakes room waiters once for the whole batch.
    pub fn batch(&mut self) -> Batch<'_> {
        Batch { shared: &self.shared, taken: 0 }
    }

    /// Records that the writer handed data to the socket.
    pub fn progressed(&self) {
        self.shared.progress_ms.store(self.shared.now_ms(), Ordering::Relaxed);
    }
}

/// Items the writer takes in one go (see [`SessionQueue::batch`]).
#[derive(Debug)]
pub struct Batch<'a> {
    shared: &'a Shared,
    /// Bytes of the items taken so far.
    taken: usize,
}

impl Iterator for Batch<'_> {
    type Item = Outbound;

    /// The next item if one is queued.
    fn next(&mut self) -> Option<Outbound> {
        let (item, w) = self.shared.take()?;
        self.taken += w;
        Some(item)
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.shared.release(self.taken);
    }
}

impl Drop for SessionQueue {
    fn drop(&mut self) {
        // Whatever is still queued leaves the shared budget; nothing is queued after this.
        let left = {
            let mut items = self.shared.items.lock().expect("queue lock");
            self.shared.closed.store(true, Ordering::Release);
            std::mem::take(&mut *items)
        };
        for (_, w) in &left {
            self.shared.sub(*w);
        }
        drop(left);
        self.shared.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests;
