//! `realtime`: the Postgres side of the realtime system.
//!
//! `CREATE EXTENSION realtime` installs the schema `realtime`: channel configuration, the durable
//! message log followed by relays through logical replication, `publish` / `broadcast`, and the
//! RLS hooks. This file only wires the pieces together:
//!
//! - `realtime_core::names` (crates/realtime-core, shared with the relay): the rules for channel
//!   patterns, names and matching (plain unit tests);
//! - [`changes`]: pure Rust channel templates and trigger arguments of table change events;
//! - [`api`]: the `#[pg_extern]` functions written in Rust;
//! - `guc`: the `realtime.strict_publish` setting;
//! - `sql/schema.sql`, `sql/api.sql`, `sql/changes.sql`, `sql/presence.sql`, `sql/webhooks.sql`,
//!   `sql/admin.sql`, `sql/finalize.sql`: the hand-written SQL, in install order.

use pgrx::prelude::*;

pub mod api;
pub mod changes;
mod guc;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../../sql/schema.sql", name = "schema", bootstrap);

extension_sql_file!(
    "../../sql/api.sql",
    name = "api",
    requires = [
        "schema",
        api::channels::match_channel,
        api::channels::match_channel_invoker,
        api::validate::validate_pattern,
        api::validate::validate_channel,
        api::validate::validate_event,
        api::publish::publish,
        api::cache::invalidate_publish_cache,
        api::seal::seal_message,
        api::seal::generate_relay_key,
    ]
);

extension_sql_file!(
    "../../sql/changes.sql",
    name = "changes",
    requires = ["api", api::changes::broadcast_changes, api::changes::channel_template_columns]
);

extension_sql_file!("../../sql/presence.sql", name = "presence", requires = ["schema"]);
extension_sql_file!("../../sql/webhooks.sql", name = "webhooks", requires = ["api"]);
extension_sql_file!("../../sql/admin.sql", name = "admin", requires = ["presence", "webhooks"]);

extension_sql_file!("../../sql/finalize.sql", name = "finalize", finalize);

/// Called when Postgres loads the library: registers the GUCs and the publish cache's relcache
/// callback.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::register();
    api::cache::register();
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_test_sql;

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests_changes;

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests_publish;

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests_webhooks;

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests_admin;

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests_seal;

/// Required by `cargo pgrx test`; must be visible at the crate root.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        // what the relay needs in production; publications and logical messages work either way
        vec!["wal_level = 'logical'"]
    }
}
