//! Wire protocol v1, sans-IO: parsing client frames and encoding server frames.
//!
//! Nothing here touches a socket. [`parse_client_frame`] turns a text frame into a
//! [`ClientFrame`] or a [`ProtocolError`] that still carries the request's `ref` so the error
//! reply can echo it. The `server` module builds server frames; a `message` frame is encoded once
//! per message and shared by every subscriber.

mod codes;
pub mod history;
mod parse;
pub mod presence;
pub mod server;

pub use codes::{close, ErrorCode};
pub use parse::{
    parse_client_frame, validate_channel, ClientFrame, ProtocolError, Request, MAX_CHANNEL_BYTES,
};
