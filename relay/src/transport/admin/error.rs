//! The console's one error type and its HTTP answer: `{"error": {"code", "message", "field",
//! "hint"}}`, where `field` names the form field a validation error belongs to, so the page
//! shows it inline.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::pg::admin::{ROLE as ADMIN_ROLE, STATEMENT_TIMEOUT_SECS};
use crate::pg::PgError;

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("sign in to the admin console first")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    /// Bad input, usually an extension validator's error (SQLSTATE 22023).
    #[error("{message}")]
    Invalid { field: Option<&'static str>, message: String, hint: Option<String> },
    #[error("{message}")]
    Conflict { field: Option<&'static str>, message: String },
    #[error(
        "the relay's database login may not SET ROLE realtime_admin; run GRANT realtime_admin TO <login> \
         (`realtime-relay check` shows the login)"
    )]
    NotMember,
    #[error("the database took too long (over {0} s); narrow the query")]
    Timeout(u64),
    #[error("no database connection available: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Db(String),
}

impl AdminError {
    /// A validation error on `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        AdminError::Invalid { field: Some(field), message: message.into(), hint: None }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            AdminError::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
            AdminError::Forbidden(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            AdminError::Invalid { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "INVALID"),
            AdminError::Conflict { .. } => (StatusCode::CONFLICT, "CONFLICT"),
            AdminError::NotMember => (StatusCode::INTERNAL_SERVER_ERROR, "NOT_MEMBER"),
            AdminError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "TIMEOUT"),
            AdminError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"),
            AdminError::Db(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        }
    }
}

/// The form field an extension error message is about, from the validators' own wording.
pub fn field_of(message: &str) -> Option<&'static str> {
    if message.contains("channel pattern") {
        Some("pattern")
    } else if message.contains("webhook URL") {
        Some("webhook_urls")
    } else if message.contains("webhook_secret") {
        Some("webhook_secret")
    } else if message.contains("realtime: channel") || message.contains("no enabled channel") {
        Some("channel")
    } else if message.contains("realtime: event") {
        Some("event")
    } else if message.contains("payload") {
        Some("payload")
    } else {
        None
    }
}

impl From<tokio_postgres::Error> for AdminError {
    fn from(e: tokio_postgres::Error) -> Self {
        let Some(db) = e.as_db_error() else { return AdminError::Db(e.to_string()) };
        let message = db.message().to_string();
        match db.code().code() {
            "22023" if message.contains(&format!("role \"{ADMIN_ROLE}\" does not exist")) => {
                AdminError::Db(format!(
                    "role {ADMIN_ROLE} does not exist: the realtime extension predates the console \
                 (ALTER EXTENSION realtime UPDATE)"
                ))
            }
            "22023" | "22P02" | "22001" | "23514" | "54000" | "42704" => {
                AdminError::Invalid { field: field_of(&message), message, hint: db.hint().map(String::from) }
            }
            "23505" if message.contains("channels_pattern_key") => AdminError::Conflict {
                field: Some("pattern"),
                message: "a channel row with this pattern exists already".into(),
            },
            "23505" => AdminError::Conflict { field: None, message },
            "42501" if message.contains("set role") => AdminError::NotMember,
            "57014" => AdminError::Timeout(STATEMENT_TIMEOUT_SECS),
            _ => AdminError::Db(message),
        }
    }
}

impl From<deadpool_postgres::PoolError> for AdminError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        AdminError::Unavailable(e.to_string())
    }
}

impl From<PgError> for AdminError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Db(e) => e.into(),
            PgError::Pool(e) => e.into(),
            other => AdminError::Db(other.to_string()),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::warn!(error = %self, "admin request failed");
        }
        let (field, hint) = match &self {
            AdminError::Invalid { field, hint, .. } => (*field, hint.clone()),
            AdminError::Conflict { field, .. } => (*field, None),
            _ => (None, None),
        };
        let body =
            json!({"error": {"code": code, "message": self.to_string(), "field": field, "hint": hint}});
        (status, [(axum::http::header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
    }
}

/// A JSON request body whose rejections (not JSON, wrong fields, over the size limit) answer
/// in the console's error format.
pub struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    axum::Json<T>: axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rejection) => {
                let status = rejection.status();
                let mut r = AdminError::Invalid { field: None, message: rejection.body_text(), hint: None }
                    .into_response();
                *r.status_mut() = status;
                Err(r)
            }
        }
    }
}

/// Any other path under `/admin` (after the guard let the request through).
pub async fn not_found() -> AdminError {
    AdminError::NotFound("no such admin page or API".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validator_messages_name_their_form_field() {
        let msg = "realtime: channel pattern 'a_b' contains '_'; only '%' is a wildcard";
        assert_eq!(field_of(msg), Some("pattern"));
        assert_eq!(field_of("realtime: webhook URL 'ftp://x' is not valid"), Some("webhook_urls"));
        assert_eq!(field_of("realtime: webhook_secret starts with whsec_ but"), Some("webhook_secret"));
        assert_eq!(field_of("realtime: channel must not be empty"), Some("channel"));
        assert_eq!(field_of("realtime: no enabled channel matches 'x'"), Some("channel"));
        assert_eq!(field_of("realtime: event must not be empty"), Some("event"));
        assert_eq!(field_of("something else"), None);
    }

    #[test]
    fn errors_answer_with_their_status() {
        let status = |e: AdminError| e.into_response().status();
        assert_eq!(status(AdminError::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(status(AdminError::Forbidden("x")), StatusCode::FORBIDDEN);
        assert_eq!(status(AdminError::invalid("pattern", "bad")), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(status(AdminError::NotMember), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
