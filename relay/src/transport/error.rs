//! [`ApiError`]: every refusal an HTTP route (or a WebSocket handshake) answers with, and the
//! one mapping from each to its HTTP status and `{"error":{"code","message"}}` body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::core::{AuthError, ErrorCode};
use crate::service::ServiceError;

/// Why an HTTP request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A service refused it (the token's refusal included: [`ServiceError::Unauthenticated`]).
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The relay has no room for another connection.
    #[error("{0}")]
    Busy(String),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        ApiError::Service(e.into())
    }
}

impl ApiError {
    /// A malformed request (400).
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::Service(ServiceError::Invalid(message.into()))
    }

    /// The HTTP status of this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Service(e) => match e {
                ServiceError::Invalid(_) | ServiceError::NotSubscribed(_) => StatusCode::BAD_REQUEST,
                ServiceError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                ServiceError::Denied(_) => StatusCode::FORBIDDEN,
                ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
                ServiceError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                ServiceError::RateLimited(_) | ServiceError::PresenceLimit(_) => {
                    StatusCode::TOO_MANY_REQUESTS
                }
                ServiceError::CatchingUp => StatusCode::SERVICE_UNAVAILABLE,
                ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    /// The code in the body.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Busy(_) => ErrorCode::RateLimited,
            ApiError::Service(e) => e.code(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        (self.status(), Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_one_status_and_its_code() {
        let cases: [(ApiError, u16, &str); 5] = [
            (AuthError::Expired.into(), 401, "REALTIME_UNAUTHORIZED"),
            (ServiceError::Denied("no".into()).into(), 403, "REALTIME_UNAUTHORIZED"),
            (ServiceError::NotFound("x".into()).into(), 404, "REALTIME_NOT_FOUND"),
            (ServiceError::CatchingUp.into(), 503, "INTERNAL_ERROR"),
            (ApiError::Busy("full".into()), 503, "REALTIME_RATE_LIMITED"),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status().as_u16(), status, "{e}");
            assert_eq!(serde_json::to_value(e.code()).unwrap(), code);
        }
    }
}
