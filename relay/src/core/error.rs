//! The error codes clients see, whatever the protocol or transport: in v1 `reply` and
//! `unsubscribed` frames, in HTTP error bodies, and mapped to their Supabase equivalents by the
//! Phoenix protocol. Which HTTP status goes with an error is the transport's business
//! (`crate::transport::error`).

use serde::Serialize;

/// Error codes of `reply` and `unsubscribed` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    #[serde(rename = "REALTIME_UNAUTHORIZED")]
    Unauthorized,
    #[serde(rename = "REALTIME_NOT_FOUND")]
    NotFound,
    #[serde(rename = "REALTIME_INVALID_REQUEST")]
    InvalidRequest,
    #[serde(rename = "REALTIME_PAYLOAD_TOO_LARGE")]
    PayloadTooLarge,
    #[serde(rename = "REALTIME_RATE_LIMITED")]
    RateLimited,
    #[serde(rename = "REALTIME_NOT_SUBSCRIBED")]
    NotSubscribed,
    /// A channel already has the most presence members allowed.
    #[serde(rename = "REALTIME_PRESENCE_LIMIT")]
    PresenceLimit,
    InternalError,
}

/// Why a connection is ended, as WebSocket close codes (protocol v1 names them; other
/// transports end their stream for the same reasons and report the same codes).
pub mod close {
    /// Server going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Data type the server does not accept (binary frames).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Frame payload is not valid UTF-8 or otherwise inconsistent.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Frame too large.
    pub const TOO_BIG: u16 = 1009;
    /// Unauthenticated or token expired.
    pub const UNAUTHENTICATED: u16 = 4001;
    /// Rate limited.
    pub const RATE_LIMITED: u16 = 4008;
    /// Too slow: the connection's send queue filled up.
    pub const TOO_SLOW: u16 = 4009;
    /// The server failed to continue the stream; reconnect with the last cursor.
    pub const INTERNAL: u16 = 1011;
}
