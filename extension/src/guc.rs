//! The extension's GUCs, registered when the library is loaded.
//!
//! - `realtime.strict_publish` (bool, default off, any user may set it): when on, `publish` and
//!   `broadcast` raise an ERROR (SQLSTATE 42704) instead of a WARNING when no enabled channel
//!   matches. `sql/api.sql` reads it with `current_setting`.
//!
//! `realtime.channel_name` and `request.jwt.claims` are deliberately *not* registered: they are
//! free-form placeholders set per transaction by the relay, and the `realtime.` prefix is not
//! reserved so such placeholders stay allowed.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

pub static STRICT_PUBLISH: GucSetting<bool> = GucSetting::<bool>::new(false);

pub fn register() {
    GucRegistry::define_bool_guc(
        c"realtime.strict_publish",
        c"Make publish/broadcast to a channel with no enabled match an ERROR instead of a WARNING.",
        c"When off (the default) realtime.publish returns NULL with a WARNING and realtime.broadcast \
          only warns; when on, both raise SQLSTATE 42704.",
        &STRICT_PUBLISH,
        GucContext::Userset,
        GucFlags::default(),
    );
}
