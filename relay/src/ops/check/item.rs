//! One line of the `realtime-relay check` report ([`Item`], [`Status`]) and why the facts
//! could not be read ([`CheckError`]): shared by [`super`] and [`super::deploy`].

use std::fmt;

use crate::pg::describe_pg_error;

/// How an item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub status: Status,
    pub name: String,
    pub detail: String,
    /// How to fix it (for `warn` and `FAIL`).
    pub fix: Option<String>,
}

impl Item {
    pub(crate) fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Item { status: Status::Ok, name: name.into(), detail: detail.into(), fix: None }
    }

    pub(crate) fn warn(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Item { status: Status::Warn, name: name.into(), detail: detail.into(), fix: Some(fix.into()) }
    }

    pub(crate) fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Item { status: Status::Fail, name: name.into(), detail: detail.into(), fix: Some(fix.into()) }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        write!(f, "{tag} {}: {}", self.name, self.detail)?;
        match &self.fix {
            Some(fix) if self.status != Status::Ok => write!(f, " — fix: {fix}"),
            _ => Ok(()),
        }
    }
}

/// Why the facts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("catalog query failed: {0}")]
    Query(String),
}

impl From<tokio_postgres::Error> for CheckError {
    fn from(e: tokio_postgres::Error) -> Self {
        CheckError::Query(describe_pg_error(&e))
    }
}
