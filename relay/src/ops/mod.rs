//! Operations commands: `realtime-relay check` ([`check`]: is the database, the login and the
//! configuration ready?) and `realtime-relay healthcheck` ([`healthcheck`]: is a running relay
//! up?, for containers).

pub mod check;
pub mod healthcheck;
