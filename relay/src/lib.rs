//! realtime-relay: follows the realtime message log in Postgres and fans it out to clients.
//!
//! Layers (imports point one way: transport → protocol → service → hub → core; pg → core;
//! see docs/ARCHITECTURE.md):
//!
//! - [`core`]: cursor and name rules (shared with the extension), identities and JWTs, error
//!   codes, events, encoded frames, presence data;
//! - [`hub`]: channels and subscribers, fan-out of shared events, presence view;
//! - [`service`]: what clients can do (subscribe, publish, history, presence, auth), typed;
//! - [`protocol`]: one codec and driver per wire protocol (`v1/`);
//! - [`transport`]: WebSocket and HTTP routes, authentication as an extractor, the admin console;
//! - [`pg`]: everything that talks to Postgres (pool, checks, reads, writes, replication);
//! - [`webhook`]: the webhook worker; [`metrics`]: the one registry;
//! - wiring: [`config`] (flags), [`app`] (shared state), [`server`] (start and stop),
//!   [`shutdown`] (signals); operations: [`ops`] (`check`, `healthcheck`).

pub mod app;
pub mod config;
pub mod core;
pub mod hub;
pub mod metrics;
pub mod ops;
pub mod pg;
pub mod protocol;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod transport;
pub mod webhook;

#[cfg(test)]
mod proptests;
