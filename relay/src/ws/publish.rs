//! The `publish` frame: persisted messages go through the log (reply carries `id` and
//! `cursor`); ephemeral ones pass the same permission check, remembered per connection and
//! channel for a short while, and are delivered live on every relay.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::Value;

use crate::auth::Identity;
use crate::pg::publish::PublishError;
use crate::protocol::{server, ErrorCode};
use crate::publish::{self, Outgoing};
use crate::server::App;

/// Channels this connection was recently allowed to publish ephemeral messages to.
#[derive(Default)]
pub struct PublishChecks {
    allowed_until: HashMap<String, Instant>,
}

impl PublishChecks {
    fn allowed(&self, channel: &str) -> bool {
        self.allowed_until.get(channel).is_some_and(|until| Instant::now() < *until)
    }

    /// Forgets every remembered decision (the token changed).
    pub fn clear(&mut self) {
        self.allowed_until.clear();
    }
}

/// Maps a publish failure to a reply error.
pub fn error_reply(r: Option<&Value>, e: &PublishError) -> String {
    let code = match e {
        PublishError::NotFound(_) => ErrorCode::NotFound,
        PublishError::Unauthorized { .. } => ErrorCode::Unauthorized,
        PublishError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
        PublishError::Pg(_) => ErrorCode::InternalError,
    };
    let message = match e {
        PublishError::Pg(p) => p.client_message(),
        other => other.to_string(),
    };
    if code == ErrorCode::InternalError {
        tracing::warn!(error = %e, "publish failed");
    }
    server::reply_error(r, code, &message)
}

/// Handles one `publish` frame and returns the reply frame.
pub async fn handle(
    app: &App,
    who: &Identity,
    checks: &mut PublishChecks,
    r: Option<&Value>,
    m: Outgoing,
    persist: bool,
) -> String {
    let channel = m.channel.clone();
    if persist {
        return match publish::persist(app, who, vec![m]).await {
            Ok(mut done) => {
                let p = done.pop().expect("one message published");
                server::reply_published(r, &channel, Some(&p.id), p.cursor.as_deref())
            }
            Err(e) => error_reply(r, &e),
        };
    }
    if !checks.allowed(&channel) {
        if let Err(e) = publish::check(app, who, &m).await {
            return error_reply(r, &e);
        }
        checks.allowed_until.insert(channel.clone(), Instant::now() + app.config.publish_check_ttl);
    }
    match publish::ephemeral(app, who, m).await {
        Ok(()) => server::reply_published(r, &channel, None, None),
        Err(e) => error_reply(r, &e),
    }
}
