//! A table change as a gate handles it, live or read back for a subscriber that fell behind
//! ([`super::gate`], [`super::catchup`]): taken from the change channel only when the extension
//! made it (sender `system`, the table's own schema and name: a client publishing to the
//! channel cannot forge one), cut down for subscribers under row security, checked in one
//! round trip ([`check`]), and how a binding that cannot be served ends.

use std::time::Instant;

use serde_json::Value;

use super::plan::{self, Access, Op};
use crate::app::App;
use crate::core::event::{Event, Message, Shared, SharedEvent};
use crate::core::ErrorCode;
use crate::hub::gated::Table;
use crate::hub::{Outbound, SessionHandle};
use crate::pg::visibility::{visible_rows, Answer, Checked};

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

/// Checks the rows `keys` of `table` for the identities `who` (role, claims) in one round trip
/// once the stored messages `messages` are visible, and counts it in the metrics. The error is
/// what the bindings it was for end with.
pub async fn check(
    app: &App,
    table: &Table,
    keys: &[Value],
    messages: &[String],
    who: &[(&str, &str)],
) -> Result<Checked, String> {
    let started = Instant::now();
    let checked = visible_rows(&app.pool, &table.schema, &table.table, keys, messages, who).await;
    app.metrics.visibility.checked(checked.is_ok(), who.len(), started.elapsed());
    checked.map_err(|e| {
        tracing::warn!(channel = %table.channel, error = %e, "row visibility check failed");
        format!("the row visibility check failed: {}", e.client_message())
    })
}

/// What an identity may do with the table, by a check's answer.
pub fn access_of(answer: &Answer) -> Access {
    Access { selectable: answer.selectable, row_security: answer.row_security }
}

/// The changes an identity may see by a check's answer: `keyed` pairs each checked key (in the
/// order they were sent) with its change's index.
pub fn visible_of<'a>(answer: &'a Answer, keyed: &'a [(usize, Value)]) -> impl Iterator<Item = usize> + 'a {
    answer.visible.iter().flatten().filter_map(|i| keyed.get(*i).map(|(c, _)| *c))
}

/// Why the bindings of an identity under row security end when the table has no primary key.
pub fn no_primary_key(table: &Table) -> String {
    format!(
        "{}.{} has row-level security but no primary key, so its changes cannot be checked per subscriber",
        table.schema, table.table
    )
}

/// Why the bindings of role `role` end when it lost SELECT on the table.
pub fn lost_select(role: &str, table: &Table) -> String {
    format!("role '{role}' may no longer SELECT {}.{}", table.schema, table.table)
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
