//! Wire protocols. Each is a folder: a sans-IO codec (parse client frames, encode server
//! frames; pure functions with plain unit tests) plus its [`Protocol`] driver, which turns one
//! connection's requests into calls on its [`Session`] and encodes the results. Transports
//! (`crate::transport`) move the frames; they know no protocol.
//!
//! Adding a protocol: a folder here with a codec and a [`Protocol`] implementation, an encode
//! slot below, and one route in `crate::transport`.

use std::future::Future;

use bytes::Bytes;

use crate::hub::Outbound;
use crate::service::session::{CloseRequest, Session};

pub use crate::core::frame::WireFrame;

pub mod phoenix;
pub mod sse;
pub mod v1;

/// Slots of the per-event encode cache ([`crate::core::frame::ENCODINGS`]): one per wire
/// encoding, so each event is encoded at most once per encoding however many sessions use it.
pub mod slot {
    /// Protocol v1 JSON text frames.
    pub const V1: usize = 0;
    /// Protocol v1 JSON in Server-Sent Events framing.
    pub const SSE: usize = 1;
    /// Phoenix serializer vsn 1.0.0 (JSON objects).
    pub const PHOENIX_V1: usize = 2;
    /// Phoenix serializer vsn 2.0.0 (JSON arrays and binary frames).
    pub const PHOENIX_V2: usize = 3;
    /// Protocol v1 `hint` frames (hint subscriptions: no payload).
    pub const V1_HINT: usize = 4;
    /// Protocol v1 `hint` frames in Server-Sent Events framing.
    pub const SSE_HINT: usize = 5;
}

/// Turns a session's queue items into frames; runs in the connection's writer.
pub trait Encoder: Send + Sync + 'static {
    /// The frame of `item`, or None when this protocol sends nothing for it.
    fn encode(&self, item: Outbound) -> Option<WireFrame>;
}

/// One connection's protocol: its requests in, its replies out (queued on the session).
pub trait Protocol: Send + 'static {
    type Encoder: Encoder;

    /// The encoder the connection's writer uses.
    fn encoder(&self) -> Self::Encoder;

    /// Handles one text frame.
    fn on_text(&mut self, session: &mut Session, text: &str) -> impl Future<Output = ()> + Send;

    /// Handles one binary frame; `Err` ends the connection.
    fn on_binary(
        &mut self,
        session: &mut Session,
        data: Bytes,
    ) -> impl Future<Output = Result<(), CloseRequest>> + Send;
}
