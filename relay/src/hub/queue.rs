//! A session's queue as the hub and the services see it: the bounded channel to the session's
//! writer, and the "too slow" signal.
//!
//! What goes in is protocol-neutral ([`Outbound`]): events shared by every subscriber, this
//! session's replays, resets and revocations, and frames the session's protocol already
//! encoded (replies). The writer encodes the rest with its protocol's codec.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::core::event::{Message, SharedEvent};
use crate::core::frame::WireFrame;
use crate::core::{Cursor, ErrorCode};

/// One item of a session's queue.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A live event (message or presence change), shared with the channel's other subscribers.
    Event(SharedEvent),
    /// A stored message replayed from the table on resume (this session's own).
    Replayed(Message),
    /// The channel's stream starts again at `cursor`: the client must refetch its state.
    Reset { channel: String, cursor: Option<Cursor> },
    /// The subscription was ended by the server (access revoked, channel gone).
    Unsubscribed { channel: String, code: ErrorCode, message: String },
    /// A frame the session's protocol has already encoded (a reply).
    Frame(WireFrame),
}

/// The hub's end of one session: its bounded queue and its "too slow" signal.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    pub id: u64,
    tx: mpsc::Sender<Outbound>,
    slow: CancellationToken,
}

impl SessionHandle {
    pub fn new(id: u64, tx: mpsc::Sender<Outbound>, slow: CancellationToken) -> Self {
        Self { id, tx, slow }
    }

    /// Queues an item without waiting. A full queue marks the session too slow; returns whether
    /// the item was queued.
    pub fn send(&self, item: Outbound) -> bool {
        // Once an item was dropped, nothing more may follow it: the client must see a clean
        // prefix of the stream and then its close (4009), never a gap followed by later frames.
        if self.slow.is_cancelled() {
            return false;
        }
        match self.tx.try_send(item) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a frame its protocol already encoded.
    pub fn send_frame(&self, frame: WireFrame) -> bool {
        self.send(Outbound::Frame(frame))
    }

    /// Free slots in the queue right now.
    pub fn room(&self) -> usize {
        self.tx.capacity()
    }

    /// The queue's size.
    pub fn queue_size(&self) -> usize {
        self.tx.max_capacity()
    }

    /// Marks the session too slow (it is then closed with 4009).
    pub fn mark_slow(&self) {
        self.slow.cancel();
    }

    /// True once the session was marked too slow or its queue closed.
    pub fn is_gone(&self) -> bool {
        self.slow.is_cancelled() || self.tx.is_closed()
    }
}
