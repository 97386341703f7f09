//! realtime-relay: follows the realtime message log in Postgres and fans it out over WebSocket.
//!
//! Layout: [`config`] (flags), [`auth`] (JWT), [`protocol`] (sans-IO frames), [`hub`]
//! (channels and subscribers, no sockets), [`pg`] (pool, permission checks, replication),
//! [`ws`] (sessions), [`http`] (routes), [`server`] (wiring), [`shutdown`] (signals),
//! [`hints`] (refusal texts that say the fix);
//! operations: [`check`] (`realtime-relay check`), [`metrics`] (`GET /metrics`),
//! [`healthcheck`] (`realtime-relay healthcheck`).

pub mod auth;
pub mod check;
pub mod config;
pub mod healthcheck;
pub mod hints;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod pg;
pub mod protocol;
pub mod publish;
pub mod server;
pub mod shutdown;
pub mod webhook;
pub mod ws;
