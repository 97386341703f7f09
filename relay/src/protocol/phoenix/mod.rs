//! Supabase Realtime's protocol (Phoenix channels, at `/realtime/v1/websocket` and
//! `/socket/websocket`; see docs/supabase.md): the codec ([`codec`], [`join`], [`presence`])
//! and the [`Phoenix`] driver.
//!
//! Topic `realtime:<name>` is the relay's channel `<name>`; joins pass the same RLS check as a
//! v1 subscribe. Client broadcasts are the relay's ephemeral publishes (stored ones with
//! `persist`), so they reach every subscriber on every relay, and every message of a channel
//! (`realtime.publish` from SQL included) reaches Supabase clients as a `broadcast`.
//!
//! `postgres_changes` bindings bind the connection to the table's change channel
//! (`changes:<schema>.<table>`, see [`changes`]) under the same check, through the per-row
//! visibility gate (`crate::service::visibility`: only rows the connection's role and claims
//! may SELECT reach it); each change is matched against this connection's bindings and sent
//! to the topic that bound it.
//!
//! Per-connection state shared by the driver and its encoder ([`Topics`]): each joined
//! topic's options, its `postgres_changes` bindings, and the fingerprints of this connection's own broadcasts on topics that
//! asked not to hear them (`broadcast.self: false`), so the writer drops their echo.

pub mod changes;
pub mod codec;
pub mod join;
pub mod presence;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;

use self::codec::{Frame, FrameError, Vsn};
use super::{slot, Encoder, Protocol, WireFrame};
use crate::core::event::{Event, Message};
use crate::hub::gated::Wants;
use crate::hub::Outbound;
use crate::service::publish::Outgoing;
use crate::service::session::{CloseRequest, Session};
use crate::service::ServiceError;

/// The topic prefix of channels.
pub const TOPIC_PREFIX: &str = "realtime:";
/// Own broadcasts remembered per connection for dropping their echo; the oldest go first.
const MAX_ECHOES: usize = 256;

/// A joined topic's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Joined {
    echo: bool,
    ack: bool,
    presence: bool,
}

/// What the driver and the encoder of one connection share.
#[derive(Debug, Default)]
struct Topics {
    /// By channel name.
    joined: HashMap<String, Joined>,
    /// (channel, event, sender, canonical payload) of own broadcasts not to echo.
    echoes: VecDeque<(String, String, Option<String>, String)>,
    /// By change channel: the topic channel that bound it, and its bindings.
    changes: HashMap<String, (String, Vec<changes::Binding>)>,
    /// The id of the last binding made.
    next_id: u64,
}

type Shared = Arc<Mutex<Topics>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Topics> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Supabase protocol on one connection.
#[derive(Debug)]
pub struct Phoenix {
    vsn: Vsn,
    topics: Shared,
    /// The token the connection's identity came from (a join's `access_token` that differs
    /// re-authenticates the connection).
    token: Option<String>,
}

impl Phoenix {
    /// A connection speaking `vsn`, authenticated with `token`.
    pub fn new(vsn: Vsn, token: Option<String>) -> Self {
        Phoenix { vsn, topics: Shared::default(), token }
    }
}

/// The encoding of queue items for one connection.
pub struct PhoenixEncoder {
    vsn: Vsn,
    topics: Shared,
}

fn topic_of(channel: &str) -> String {
    format!("{TOPIC_PREFIX}{channel}")
}

/// The frame of a shared event for every subscriber on `vsn` (cached per event).
pub fn event_frame(vsn: Vsn, event: &Event) -> WireFrame {
    match event {
        Event::Message(m) => codec::broadcast(vsn, &topic_of(&m.channel), &m.event, &m.payload, None),
        Event::Presence(p) => WireFrame::text(codec::message(
            vsn,
            None,
            None,
            &topic_of(&p.channel),
            "presence_diff",
            &presence::diff(p.kind, &p.member),
        )),
    }
}

/// The canonical text of a JSON payload (objects in key order), for echo fingerprints.
fn canonical(payload: &str) -> String {
    serde_json::from_str::<Value>(payload).map(|v| v.to_string()).unwrap_or_else(|_| payload.to_string())
}

impl PhoenixEncoder {
    /// Whether `m` is the echo of this connection's own broadcast on a topic without `self`.
    fn is_own_echo(&self, m: &Message) -> bool {
        if m.id.is_some() {
            return false;
        }
        let mut t = lock(&self.topics);
        if t.echoes.is_empty() {
            return false;
        }
        let payload = canonical(&m.payload);
        let found = t
            .echoes
            .iter()
            .position(|(c, e, s, p)| *c == m.channel && *e == m.event && *s == m.sender.id && *p == payload);
        found.map(|i| t.echoes.remove(i)).is_some()
    }

    /// For a message of a change channel this connection bound: the `postgres_changes` frame
    /// of the bindings it matches (`Some(None)`: none does). None for other channels.
    fn change_frame(&self, m: &Message) -> Option<Option<WireFrame>> {
        let t = lock(&self.topics);
        let (topic, bindings) = t.changes.get(&m.channel)?;
        let Some(change) = changes::Change::parse(&m.payload) else { return Some(None) };
        let ids: Vec<u64> = bindings.iter().filter(|b| change.matches(b)).map(|b| b.id).collect();
        if ids.is_empty() {
            return Some(None);
        }
        let payload = change.payload(&ids, m.created_at.as_deref());
        let text = codec::message(self.vsn, None, None, &topic_of(topic), "postgres_changes", &payload);
        Some(Some(WireFrame::text(text)))
    }

    fn joined(&self, channel: &str) -> Option<Joined> {
        lock(&self.topics).joined.get(channel).copied()
    }
}

impl Encoder for PhoenixEncoder {
    fn encode(&self, item: Outbound) -> Option<WireFrame> {
        let vsn = self.vsn;
        let slot = match vsn {
            Vsn::V1 => slot::PHOENIX_V1,
            Vsn::V2 => slot::PHOENIX_V2,
        };
        match item {
            Outbound::Event(e) => {
                if let Event::Message(m) = &e.event {
                    if let Some(frame) = self.change_frame(m) {
                        return frame;
                    }
                }
                match &e.event {
                    Event::Message(m) if self.is_own_echo(m) => return None,
                    Event::Presence(p) if !self.joined(&p.channel).is_some_and(|j| j.presence) => {
                        return None
                    }
                    _ => {}
                }
                Some(e.frame(slot, |ev| event_frame(vsn, ev)))
            }
            Outbound::Replayed(m) => {
                let meta = serde_json::json!({"replayed": true, "id": m.id}).to_string();
                Some(codec::broadcast(vsn, &topic_of(&m.channel), &m.event, &m.payload, Some(&meta)))
            }
            Outbound::PresenceSync { channel, members } => {
                self.joined(&channel).is_some_and(|j| j.presence).then(|| {
                    WireFrame::text(codec::message(
                        vsn,
                        None,
                        None,
                        &topic_of(&channel),
                        "presence_state",
                        &presence::state(&members),
                    ))
                })
            }
            Outbound::Unsubscribed { channel, message, .. }
                if lock(&self.topics).changes.contains_key(&channel) =>
            {
                // A table's changes were revoked: the topic hears why; its other parts go on.
                let (topic, _) = lock(&self.topics).changes.remove(&channel).expect("checked");
                let payload = serde_json::json!({"status": "error", "extension": "postgres_changes",
                    "channel": topic, "message": message});
                Some(WireFrame::text(codec::message(
                    vsn,
                    None,
                    None,
                    &topic_of(&topic),
                    "system",
                    &payload.to_string(),
                )))
            }
            Outbound::Unsubscribed { channel, message, .. } => {
                // The relay ended the subscription (access revoked, channel gone): the client
                // closes the channel; the reason rides along in the payload.
                lock(&self.topics).joined.remove(&channel);
                let payload = serde_json::json!({ "reason": message }).to_string();
                Some(WireFrame::text(codec::message(
                    vsn,
                    None,
                    None,
                    &topic_of(&channel),
                    "phx_close",
                    &payload,
                )))
            }
            // Supabase broadcasts are not resumable, so a gap is not announced; a `Dropped`
            // with count 0 is this driver's no-op reply (see `Phoenix::authenticate`).
            Outbound::Reset { .. } | Outbound::Dropped { .. } => None,
            Outbound::Frame(f) => Some(f),
        }
    }
}

impl Protocol for Phoenix {
    type Encoder = PhoenixEncoder;

    fn encoder(&self) -> PhoenixEncoder {
        PhoenixEncoder { vsn: self.vsn, topics: self.topics.clone() }
    }

    async fn on_text(&mut self, session: &mut Session, text: &str) {
        let frame = codec::parse_text(self.vsn, text);
        self.on_frame(session, frame).await;
    }

    async fn on_binary(&mut self, session: &mut Session, data: Bytes) -> Result<(), CloseRequest> {
        let frame = codec::parse_binary(self.vsn, &data);
        self.on_frame(session, frame).await;
        Ok(())
    }
}

/// Where a reply goes.
struct To<'a> {
    join_ref: Option<&'a str>,
    reference: Option<&'a str>,
    topic: &'a str,
}

impl Phoenix {
    fn text(s: String) -> Outbound {
        Outbound::Frame(WireFrame::text(s))
    }

    fn ok(&self, to: &To, response: &str) -> Outbound {
        Self::text(codec::reply(self.vsn, to.join_ref, to.reference, to.topic, true, response))
    }

    fn error(&self, to: &To, reason: &str) -> Outbound {
        Self::text(codec::error_reply(self.vsn, to.join_ref, to.reference, to.topic, reason))
    }

    async fn on_frame(&mut self, session: &mut Session, frame: Result<Frame, FrameError>) {
        let f = match frame {
            Ok(f) => f,
            Err(e) => {
                let to = To {
                    join_ref: e.join_ref.as_deref(),
                    reference: e.reference.as_deref(),
                    topic: e.topic.as_deref().unwrap_or("phoenix"),
                };
                session.send(self.error(&to, &e.message));
                return;
            }
        };
        let to = To { join_ref: f.join_ref.as_deref(), reference: f.reference.as_deref(), topic: &f.topic };
        if let Err(reason) = self.handle(session, &to, &f.event, &f.payload).await {
            session.send(self.error(&to, &reason));
        }
    }

    /// Runs one request; replies are queued here, except the error returned.
    async fn handle(
        &mut self,
        session: &mut Session,
        to: &To<'_>,
        event: &str,
        payload: &Value,
    ) -> Result<(), String> {
        if to.topic == "phoenix" {
            return match event {
                "heartbeat" => {
                    session.send(self.ok(to, "{}"));
                    Ok(())
                }
                other => Err(format!("unknown event '{other}' on topic 'phoenix'")),
            };
        }
        let Some(channel) = to.topic.strip_prefix(TOPIC_PREFIX) else {
            return Err(format!("topics are '{TOPIC_PREFIX}<channel>', not '{}'", to.topic));
        };
        let channel = channel.to_string();
        match event {
            "phx_join" => self.join(session, to, channel, payload).await,
            "phx_leave" => {
                lock(&self.topics).joined.remove(&channel);
                self.unbind(session, &channel).await;
                // Leaving a topic that is not joined is not an error in Phoenix.
                let _ = session.unsubscribe(&channel).await;
                session.send(self.ok(to, "{}"));
                Ok(())
            }
            "broadcast" => self.broadcast(session, to, channel, payload).await,
            "presence" => self.presence(session, to, &channel, payload).await,
            "access_token" => {
                let Some(Value::String(token)) = payload.get("access_token") else {
                    return Err("access_token must be a string".into());
                };
                self.authenticate(session, token).await.map_err(|e| e.to_string())
            }
            other => Err(format!("unknown event '{other}'")),
        }
    }

    /// Makes `token` the connection's identity unless it already is.
    async fn authenticate(&mut self, session: &mut Session, token: &str) -> Result<(), ServiceError> {
        if self.token.as_deref() == Some(token) {
            return Ok(());
        }
        let nothing = || Outbound::Dropped { channel: String::new(), count: 0 };
        session.reauthenticate(token, nothing).await?;
        self.token = Some(token.to_string());
        Ok(())
    }

    async fn join(
        &mut self,
        session: &mut Session,
        to: &To<'_>,
        channel: String,
        payload: &Value,
    ) -> Result<(), String> {
        let config = join::parse(payload)?;
        if let Some(token) = &config.access_token {
            self.authenticate(session, token).await.map_err(|e| e.to_string())?;
        }
        let bindings = self.bind(session, &channel, &config.postgres_changes).await?;
        let joined = Joined { echo: config.echo, ack: config.ack, presence: config.presence };
        let before = lock(&self.topics).joined.insert(channel.clone(), joined);
        let (mut members, mut position) = (None, None);
        let response = serde_json::json!({ "postgres_changes": changes::reply_list(&bindings) }).to_string();
        let reply = self.ok(to, &response);
        let result = session
            .subscribe(channel.clone(), None, |s| {
                members = Some(s.members);
                position = s.position;
                reply.clone()
            })
            .await;
        let result = match result {
            // A topic that only carries table changes needs no channel row of its own.
            Err(ServiceError::NotFound(_)) if !bindings.is_empty() => {
                session.send(reply);
                Ok(())
            }
            other => other,
        };
        if let Err(e) = result {
            self.unbind(session, &channel).await;
            let mut t = lock(&self.topics);
            match before {
                Some(b) => t.joined.insert(channel, b),
                None => t.joined.remove(&channel),
            };
            return Err(e.to_string());
        }
        // After the reply; a diff queued before it is applied after it by the client, and the
        // member it names is already in this state (Phoenix's Presence handles both orders).
        if let (true, Some(members)) = (config.presence, members) {
            let state = presence::state(&members);
            session.send(Self::text(codec::message(
                self.vsn,
                None,
                None,
                to.topic,
                "presence_state",
                &state,
            )));
        }
        if !bindings.is_empty() {
            // As Supabase does once the bindings are live (apps listen with `.on('system', ..)`).
            let payload = serde_json::json!({"status": "ok", "message": "Subscribed to PostgreSQL",
                "extension": "postgres_changes", "channel": channel});
            let text = codec::message(self.vsn, None, None, to.topic, "system", &payload.to_string());
            session.send(Self::text(text));
        }
        if let (Some(replay), Some(position)) = (config.replay, position) {
            self.replay(session, &channel, replay, position).await?;
        }
        Ok(())
    }

    /// Sends the stored messages `replay` asks for, oldest first: those before the
    /// subscription's `position` (so none is also delivered live), from history.
    async fn replay(
        &mut self,
        session: &mut Session,
        channel: &str,
        replay: join::Replay,
        position: crate::core::Cursor,
    ) -> Result<(), String> {
        let since = join::rfc3339_of_millis(replay.since_ms);
        let before = position.to_string();
        let page =
            session.history(channel, Some(replay.limit), Some(&before)).await.map_err(|e| e.to_string())?;
        let wanted =
            page.messages.into_iter().filter(|m| m.created_at.as_deref().is_some_and(|t| *t >= *since));
        let mut wanted: Vec<_> = wanted.collect();
        wanted.reverse();
        for m in wanted {
            session.send(Outbound::Replayed(Box::new(m)));
        }
        Ok(())
    }

    /// Subscribes the change channels of a join's bindings (each checked like a channel) and
    /// records the bindings for the encoder. A table is bound by one topic per connection.
    async fn bind(
        &mut self,
        session: &mut Session,
        channel: &str,
        list: &[Value],
    ) -> Result<Vec<changes::Binding>, String> {
        self.unbind(session, channel).await;
        // Ids start at 1: supabase-js ignores a binding whose id is falsy (0).
        let first = lock(&self.topics).next_id + 1;
        let bindings = changes::parse_bindings(list, first)?;
        lock(&self.topics).next_id += bindings.len() as u64;
        let mut by_table: Vec<(String, Vec<changes::Binding>)> = vec![];
        for b in &bindings {
            let ch = changes::channel_of(&b.schema, &b.table);
            match by_table.iter_mut().find(|(c, _)| *c == ch) {
                Some((_, list)) => list.push(b.clone()),
                None => by_table.push((ch, vec![b.clone()])),
            }
        }
        for (i, (ch, list)) in by_table.iter().enumerate() {
            let taken = lock(&self.topics).changes.get(ch).map(|(topic, _)| topic.clone());
            let result = match taken {
                Some(topic) => Err(format!("{TOPIC_PREFIX}{topic} already receives the changes of '{ch}' on this connection; bind a table on one topic")),
                None => {
                    // Recorded first: the gate may deliver a change as soon as it is bound.
                    lock(&self.topics).changes.insert(ch.clone(), (channel.to_string(), list.clone()));
                    let (schema, table) = (list[0].schema.clone(), list[0].table.clone());
                    let mine = list.clone();
                    let wants: Wants =
                        Arc::new(move |change: &Value| mine.iter().any(|b| changes::wants(b, change)));
                    let bound = session.subscribe_changes(ch.clone(), &schema, &table, wants).await;
                    if bound.is_err() {
                        lock(&self.topics).changes.remove(ch);
                    }
                    bound.map_err(|e| e.to_string())
                }
            };
            if let Err(e) = result {
                for (done, _) in &by_table[..i] {
                    lock(&self.topics).changes.remove(done);
                    let _ = session.unsubscribe(done).await;
                }
                return Err(e);
            }
        }
        Ok(bindings)
    }

    /// Drops the bindings of topic `channel` and their change channels' subscriptions.
    async fn unbind(&mut self, session: &mut Session, channel: &str) {
        let bound: Vec<String> = {
            let mut t = lock(&self.topics);
            let bound =
                t.changes.iter().filter(|(_, (topic, _))| topic == channel).map(|(c, _)| c.clone()).collect();
            t.changes.retain(|_, (topic, _)| topic != channel);
            bound
        };
        for ch in bound {
            let _ = session.unsubscribe(&ch).await;
        }
    }

    async fn broadcast(
        &mut self,
        session: &mut Session,
        to: &To<'_>,
        channel: String,
        payload: &Value,
    ) -> Result<(), String> {
        let Some(joined) = lock(&self.topics).joined.get(&channel).copied() else {
            return Err(format!("join '{}' before broadcasting on it", to.topic));
        };
        let Some(Value::String(event)) = payload.get("event") else {
            return Err("a broadcast needs a string 'event'".into());
        };
        let body = payload.get("payload").cloned().unwrap_or(Value::Null);
        let persist = payload.get("persist").and_then(Value::as_bool).unwrap_or(false);
        let m = Outgoing::new(channel.clone(), event.clone(), body.clone()).map_err(|e| e.to_string())?;
        let echo = (!joined.echo && !persist)
            .then(|| (channel, event.clone(), session.identity().user_id.clone(), body.to_string()));
        if let Some(e) = &echo {
            let mut t = lock(&self.topics);
            if t.echoes.len() >= MAX_ECHOES {
                t.echoes.pop_front();
            }
            t.echoes.push_back(e.clone());
        }
        match session.publish(m, persist).await {
            Ok(_) => {
                if joined.ack {
                    session.send(self.ok(to, "{}"));
                }
                Ok(())
            }
            Err(err) => {
                if let Some(e) = echo {
                    let mut t = lock(&self.topics);
                    if let Some(i) = t.echoes.iter().position(|x| *x == e) {
                        t.echoes.remove(i);
                    }
                }
                Err(err.to_string())
            }
        }
    }

    async fn presence(
        &mut self,
        session: &mut Session,
        to: &To<'_>,
        channel: &str,
        payload: &Value,
    ) -> Result<(), String> {
        let result = match payload.get("event").and_then(Value::as_str) {
            Some("track") => {
                let state =
                    payload.get("payload").cloned().unwrap_or_else(|| Value::Object(Default::default()));
                session.track(channel, state).await
            }
            Some("untrack") => session.untrack(channel).await,
            _ => return Err("a presence message's 'event' is 'track' or 'untrack'".into()),
        };
        result.map_err(|e| e.to_string())?;
        session.send(self.ok(to, "{}"));
        Ok(())
    }
}
