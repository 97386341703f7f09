//! A table change as a gate handles it, live or read back for a subscriber that fell behind
//! ([`super::gate`], [`super::catchup`]): taken from the change channel only when the extension
//! made it (sender `system`, the table's own schema and name: a client publishing to the
//! channel cannot forge one), cut down for subscribers under row security, and how a binding
//! that cannot be served ends.

use serde_json::Value;

use super::plan::{self, Op};
use crate::app::App;
use crate::core::event::{Event, Message, Shared, SharedEvent};
use crate::core::ErrorCode;
use crate::hub::gated::Table;
use crate::hub::{Outbound, SessionHandle};

/// One change of a batch.
pub struct Change {
    pub event: SharedEvent,
    /// The parsed payload.
    pub value: Value,
    pub op: Op,
}

/// The change a queue item carries, if it is one of this table's, made by the extension.
pub fn change_of(table: &Table, item: Outbound) -> Option<Change> {
    let event = match item {
        Outbound::Event(e) => e,
        Outbound::Replayed(m) => Shared::new(Event::Message(*m), 0),
        Outbound::Reset { .. } => {
            tracing::warn!(channel = %table.channel, "table changes could not be read back; some were not delivered");
            return None;
        }
        _ => return None,
    };
    let Event::Message(m) = &event.event else { return None };
    if m.sender.kind != "system" {
        return None;
    }
    let value: Value = serde_json::from_str(&m.payload).ok()?;
    let named = |k: &str, want: &str| value.get(k).and_then(Value::as_str) == Some(want);
    if !named("schema", &table.schema) || !named("table", &table.table) {
        return None;
    }
    Some(Change { op: Op::of(&value), event, value })
}

/// The id of the stored message that carried a change (None for an unstored one).
pub fn message_id(change: &Change) -> Option<String> {
    match &change.event.event {
        Event::Message(m) => m.id.clone(),
        Event::Presence(_) => None,
    }
}

/// The change as subscribers under row security get it (old row cut to the primary key).
pub fn reduce(change: &Change, pk: &[String]) -> SharedEvent {
    let Event::Message(m) = &change.event.event else { return change.event.clone() };
    let payload = plan::reduced(&change.value, pk).to_string();
    Shared::new(Event::Message(Message { payload, ..m.clone() }), change.event.commit_time_micros)
}

/// Ends session `id`'s binding to `table` with a `system` error (its protocol's shape for an
/// ended table binding); the session forgets it.
pub fn end(app: &App, table: &Table, id: u64, session: &SessionHandle, code: ErrorCode, message: String) {
    if !app.hub.gated.unbind(&table.channel, id) {
        return;
    }
    app.metrics.visibility.bindings_ended.inc();
    tracing::debug!(session = id, channel = %table.channel, %message, "table binding ended");
    session.revoked(&table.channel);
    session.send(Outbound::Unsubscribed { channel: table.channel.clone(), code, message });
}
