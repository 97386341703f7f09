//! SQL helpers for test setup: channels, policies, publishing.

use serde_json::Value;
use tokio_postgres::Client;

use crate::{exec, pg_error_text};

/// Inserts an enabled channel row with `pattern` (an exact name or a `%` pattern).
pub async fn create_channel(client: &Client, pattern: &str) {
    if let Err(e) = client.execute("INSERT INTO realtime.channels (pattern) VALUES ($1)", &[&pattern]).await {
        panic!("create channel {pattern:?}: {}", pg_error_text(&e));
    }
}

/// A policy letting every role see every channel row (so anyone may subscribe to any channel).
pub async fn allow_everyone(client: &Client) {
    exec(client, "CREATE POLICY e2e_everyone ON realtime.channels FOR SELECT USING (true)").await;
}

/// Creates channel `pattern` and the allow-everyone policy.
pub async fn open_channel(client: &Client, pattern: &str) {
    create_channel(client, pattern).await;
    allow_everyone(client).await;
}

/// `SELECT realtime.publish(channel, event, payload)` in its own transaction; returns the message id.
pub async fn publish(client: &Client, channel: &str, event: &str, payload: &Value) -> String {
    match try_publish(client, channel, event, payload).await {
        Ok(id) => id,
        Err(e) => panic!("publish to {channel:?} ({event}): {}", pg_error_text(&e)),
    }
}

/// Like [`publish`], returning the error. A NULL id (no channel matched) panics.
pub async fn try_publish(
    client: &Client,
    channel: &str,
    event: &str,
    payload: &Value,
) -> Result<String, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT realtime.publish($1::text, $2::text, $3::jsonb)::text",
            &[&channel, &event, payload],
        )
        .await?;
    let id: Option<String> = row.get(0);
    Ok(id.unwrap_or_else(|| {
        panic!("realtime.publish({channel:?}, {event:?}, …) returned NULL: no channel matched")
    }))
}

/// Asserts `s` looks like a UUID in canonical text form (8-4-4-4-12 hex digits).
pub fn assert_uuid(s: &str) {
    let groups: Vec<&str> = s.split('-').collect();
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(ok, "{s:?} is not a UUID");
}
