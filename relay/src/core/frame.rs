//! Encoded wire frames, and the per-event cache that makes each encoding once.
//!
//! A [`WireFrame`] is shared bytes (cloning it copies a pointer), so the frame a protocol
//! encodes for an event goes to every subscriber on that protocol without copying.

use std::sync::OnceLock;

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;

/// How many encodings an event may be cached in (one slot per wire encoding; the protocol
/// layer assigns the slots).
pub const ENCODINGS: usize = 6;

/// One encoded frame: text (JSON protocols) or binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireFrame {
    Text(Utf8Bytes),
    Binary(Bytes),
}

impl WireFrame {
    /// A text frame (no UTF-8 check: a `String` is UTF-8). Spare capacity is given back first
    /// (serde_json grows its buffer by doubling), so a frame costs about its length.
    pub fn text(mut s: String) -> Self {
        if s.capacity() > s.len() + s.len() / 8 + 64 {
            s.shrink_to_fit();
        }
        WireFrame::Text(Utf8Bytes::from(s))
    }

    /// The frame's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            WireFrame::Text(t) => t.as_str().as_bytes(),
            WireFrame::Binary(b) => b,
        }
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An event's frames, one slot per encoding, each made at most once.
#[derive(Debug, Default)]
pub struct EncodeCache([OnceLock<WireFrame>; ENCODINGS]);

impl EncodeCache {
    /// The frame in `slot`, made by `encode` on first use.
    pub fn get_or_encode(&self, slot: usize, encode: impl FnOnce() -> WireFrame) -> WireFrame {
        self.0[slot].get_or_init(encode).clone()
    }
}
