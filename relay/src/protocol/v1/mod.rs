//! Wire protocol v1 (JSON text frames at `/v1/socket`; see docs/protocol.md): the codec
//! ([`parse`], [`frames`], [`presence`], [`history`]) and the [`V1`] driver.

pub mod frames;
pub mod hinted;
pub mod history;
pub mod parse;
pub mod presence;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use self::frames as f;
use self::hinted::HintedChannels;
use self::parse::{parse_client_frame, Request};
use super::{slot, Encoder, Protocol, WireFrame};
use crate::core::error::close;
use crate::core::event::Event;
use crate::core::Cursor;
use crate::hub::Outbound;
use crate::service::publish::Outgoing;
use crate::service::session::{CloseRequest, Session};
use crate::service::ServiceError;

/// Protocol v1 on one connection: its only state is which channels are hint subscriptions.
#[derive(Debug, Default, Clone)]
pub struct V1 {
    hinted: Arc<HintedChannels>,
}

/// The v1 encoding of queue items (messages of hint subscriptions as `hint` frames).
#[derive(Debug, Default, Clone)]
pub struct V1Encoder {
    hinted: Arc<HintedChannels>,
}

/// The v1 `hint` frame of a shared event (cached per event, see [`slot::V1_HINT`]); presence
/// events are never hints.
pub fn hint_frame(event: &Event) -> WireFrame {
    match event {
        Event::Message(m) => WireFrame::text(f::hint_of(m, false)),
        Event::Presence(_) => event_frame(event),
    }
}

/// The v1 frame of a shared event (cached per event, see [`slot::V1`]).
pub fn event_frame(event: &Event) -> WireFrame {
    WireFrame::text(match event {
        Event::Message(m) => f::message_of(m, false),
        Event::Presence(p) => presence::event(&p.channel, p.kind, &p.member),
    })
}

impl Encoder for V1Encoder {
    fn encode(&self, item: Outbound) -> Option<WireFrame> {
        Some(match item {
            Outbound::Event(e) if self.hinted.contains(e.event.channel()) => {
                e.frame(slot::V1_HINT, hint_frame)
            }
            Outbound::Event(e) => e.frame(slot::V1, event_frame),
            Outbound::Replayed(m) if self.hinted.contains(&m.channel) => {
                WireFrame::text(f::hint_of(&m, true))
            }
            Outbound::Replayed(m) => WireFrame::text(f::message_of(&m, true)),
            Outbound::Reset { channel, cursor } => {
                WireFrame::text(history::reset(&channel, cursor.map(|c| c.to_string()).as_deref()))
            }
            Outbound::Unsubscribed { channel, code, message } => {
                WireFrame::text(f::unsubscribed(&channel, code, &message))
            }
            Outbound::Dropped { channel, count } => WireFrame::text(f::dropped(&channel, count)),
            Outbound::PresenceSync { channel, members } => {
                WireFrame::text(presence::sync(&channel, &members))
            }
            Outbound::Frame(frame) => frame,
        })
    }
}

fn text(s: String) -> Outbound {
    Outbound::Frame(WireFrame::text(s))
}

fn error_reply(r: Option<&Value>, e: &ServiceError) -> Outbound {
    text(f::reply_error(r, e.code(), &e.to_string()))
}

impl Protocol for V1 {
    type Encoder = V1Encoder;

    fn encoder(&self) -> V1Encoder {
        V1Encoder { hinted: self.hinted.clone() }
    }

    async fn on_text(&mut self, session: &mut Session, text: &str) {
        let frame = match parse_client_frame(text) {
            Ok(f) => f,
            Err(e) => {
                session.send(self::text(f::reply_error(e.reference.as_ref(), e.code, &e.message)));
                return;
            }
        };
        let r = frame.reference.as_ref();
        let result = handle(session, &self.hinted, r, frame.request).await;
        if let Err(e) = result {
            session.send(error_reply(r, &e));
        }
    }

    async fn on_binary(&mut self, _: &mut Session, _: Bytes) -> Result<(), CloseRequest> {
        Err(CloseRequest { code: close::UNSUPPORTED_DATA, reason: "binary frames are not supported" })
    }
}

/// Runs one request; successful replies are queued here, errors by the caller.
async fn handle(
    session: &mut Session,
    hinted: &HintedChannels,
    r: Option<&Value>,
    request: Request,
) -> Result<(), ServiceError> {
    match request {
        Request::Ping => {
            session.send(text(f::pong(r)));
        }
        Request::Subscribe { channel, resume_cursor, hint } => {
            let resume = resume_cursor
                .as_deref()
                .map(str::parse::<Cursor>)
                .transpose()
                .map_err(|e| ServiceError::Invalid(format!("'resume.cursor': {e}")))?;
            let name = channel.clone();
            // Marked before subscribing, so the channel's first frame is already a hint.
            let was = hinted.contains(&channel);
            hinted.set(&channel, hint);
            let subscribed = session
                .subscribe(channel, resume, |s| {
                    let cursor = s.position.map(|c| c.to_string());
                    text(presence::subscribe_reply(r, &name, cursor.as_deref(), s.recovered, &s.members))
                })
                .await;
            if subscribed.is_err() {
                hinted.set(&name, was && session.is_subscribed(&name));
            }
            subscribed?;
        }
        Request::Unsubscribe { channel } => {
            session.unsubscribe(&channel).await?;
            hinted.set(&channel, false);
            session.send(text(f::reply_ok(r, Some(&channel), None)));
        }
        Request::Publish { channel, event, payload, persist } => {
            let m = Outgoing::new(channel, event, payload)?;
            let channel = m.channel.clone();
            let p = session.publish(m, persist).await?;
            let cursor = p.cursor.map(|c| c.to_string());
            session.send(text(f::reply_published(r, &channel, p.id.as_deref(), cursor.as_deref())));
        }
        Request::History { channel, limit, before } => {
            let page = session.history(&channel, limit, before.as_deref()).await?;
            session.send(text(history::history_reply(
                r,
                &history::history_entries(&page.messages),
                page.more,
            )));
        }
        Request::Auth { token } => {
            session.reauthenticate(&token, || text(f::reply_ok(r, None, None))).await?;
        }
        Request::Track { channel, state } => {
            session.track(&channel, state).await?;
            session.send(text(f::reply_ok(r, Some(&channel), None)));
        }
        Request::Untrack { channel } => {
            session.untrack(&channel).await?;
            session.send(text(f::reply_ok(r, Some(&channel), None)));
        }
    }
    Ok(())
}
