//! [`ServiceError`]: why a client operation was refused, whatever the protocol. Each error has
//! the message the client reads and an [`ErrorCode`]; the protocols encode it in their own
//! shape and the HTTP transport maps each variant to one status (`crate::transport::error`).

use crate::core::{AuthError, ErrorCode};
use crate::pg::publish::PublishError;
use crate::pg::PgError;

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The request itself is wrong (a bad name, cursor, limit or state).
    #[error("{0}")]
    Invalid(String),
    /// The token was refused (bad, expired, or a role outside the allowlist).
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// The caller's role and claims may not do this (RLS said no).
    #[error("{0}")]
    Denied(String),
    /// No enabled channel matches.
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    RateLimited(String),
    /// The operation needs a subscription this connection does not have.
    #[error("{0}")]
    NotSubscribed(String),
    /// The channel has the most presence members allowed.
    #[error("{0}")]
    PresenceLimit(String),
    /// Reads wait for the relay's positions to become durable; they were not, in time.
    #[error("history is catching up; try again shortly")]
    CatchingUp,
    /// Postgres failed or the relay is shutting down; the message is safe to show clients.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    /// The code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Invalid(_) => ErrorCode::InvalidRequest,
            ServiceError::Unauthenticated(_) | ServiceError::Denied(_) => ErrorCode::Unauthorized,
            ServiceError::NotFound(_) => ErrorCode::NotFound,
            ServiceError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            ServiceError::RateLimited(_) => ErrorCode::RateLimited,
            ServiceError::NotSubscribed(_) => ErrorCode::NotSubscribed,
            ServiceError::PresenceLimit(_) => ErrorCode::PresenceLimit,
            ServiceError::CatchingUp | ServiceError::Internal(_) => ErrorCode::InternalError,
        }
    }
}

impl From<PgError> for ServiceError {
    fn from(e: PgError) -> Self {
        tracing::warn!(error = %e, "database operation failed");
        ServiceError::Internal(e.client_message())
    }
}

impl From<PublishError> for ServiceError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::NotFound(_) => ServiceError::NotFound(e.to_string()),
            PublishError::Unauthorized { .. } => ServiceError::Denied(e.to_string()),
            PublishError::TooLarge { .. } => ServiceError::TooLarge(e.to_string()),
            PublishError::Pg(p) => p.into(),
        }
    }
}
