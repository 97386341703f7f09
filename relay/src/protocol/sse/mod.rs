//! Server-Sent Events framing of protocol v1 (`GET /v1/sse`, see docs/transports.md): a sans-IO
//! codec. Each v1 server frame becomes one SSE event whose `event:` name is the frame's type
//! and whose `data:` is the frame's JSON; stored messages carry `id: <cursor>`, so a browser's
//! `EventSource` sends the last one back as `Last-Event-ID` when it reconnects. Frames of the
//! stream itself: `subscribed` (one per channel: the v1 subscribe reply), `ready` (the group is
//! live; its `id` is the floor: everything at or below it was sent), `close` (the relay ends the
//! stream: code and reason), and `:` comment lines that keep idle streams alive.
//!
//! The stream is one protocol with a single resume cursor for every channel; the transport
//! (`crate::transport::sse`) and `crate::service::stream` keep its stored messages in cursor
//! order across channels, which is what makes one cursor enough.

use super::v1::{self, frames as f, history, presence};
use super::{slot, Encoder, WireFrame};
use crate::core::event::Event;
use crate::core::presence::Member;
use crate::core::Cursor;
use crate::hub::Outbound;

/// One SSE event: `id:` when given, `event:` and the data, one `data:` line per line of it
/// (a JSON frame has no raw line breaks, but a client's payload text may: any of CR, LF or
/// CRLF ends an SSE line, and the client joins `data:` lines with LF, which JSON reads as the
/// same whitespace).
pub fn event(name: &str, id: Option<&str>, data: &str) -> String {
    let mut out = String::with_capacity(data.len() + name.len() + 64);
    if let Some(id) = id {
        out.push_str("id: ");
        out.push_str(id);
        out.push('\n');
    }
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
    for line in data.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// A comment line (`: text`), which clients ignore: the keep-alive.
pub fn comment(text: &str) -> String {
    format!(": {}\n\n", text.replace(['\r', '\n'], " "))
}

/// The stream's first bytes: the reconnection delay `EventSource` should use, in milliseconds.
pub fn retry(ms: u64) -> String {
    format!("retry: {ms}\n\n")
}

/// `ready`: the stream's channels are live; `id` is the floor `cursor`; `stream` names the
/// stream for presence requests.
pub fn ready(floor: Cursor, stream: &str) -> String {
    let c = floor.to_string();
    let data = serde_json::json!({"type": "ready", "cursor": c, "stream": stream}).to_string();
    event("ready", Some(&c), &data)
}

/// `subscribed`: the v1 subscribe reply of one channel (`cursor`: the position at
/// registration, `recovered` for a resume, the presence members).
pub fn subscribed(
    channel: &str,
    position: Option<Cursor>,
    recovered: Option<bool>,
    members: &[Member],
) -> String {
    let cursor = position.map(|c| c.to_string());
    event(
        "subscribed",
        None,
        &presence::subscribe_reply(None, channel, cursor.as_deref(), recovered, members),
    )
}

/// `close`: the relay ends the stream, with a close code (`crate::core::error::close`) and why.
pub fn close(code: u16, reason: &str) -> String {
    let data = serde_json::json!({"type": "close", "code": code, "reason": reason}).to_string();
    event("close", None, &data)
}

/// The SSE event of a shared event (cached per event, see [`slot::SSE`]).
pub fn event_frame(e: &Event) -> WireFrame {
    let data = v1::event_frame(e);
    let text = std::str::from_utf8(data.as_bytes()).expect("v1 frames are text");
    WireFrame::text(match e {
        Event::Message(m) => event("message", m.cursor.map(|c| c.to_string()).as_deref(), text),
        Event::Presence(_) => event("presence", None, text),
    })
}

/// The SSE `hint` event of a shared event (cached per event, see [`slot::SSE_HINT`]): a hint
/// stream's messages, named `hint`, without their payload; presence as usual.
pub fn hint_frame(e: &Event) -> WireFrame {
    match e {
        Event::Message(m) => {
            WireFrame::text(event("hint", m.cursor.map(|c| c.to_string()).as_deref(), &f::hint_of(m, false)))
        }
        Event::Presence(_) => event_frame(e),
    }
}

/// The SSE encoding of queue items; `hint`: the stream's messages are hints.
#[derive(Debug, Default, Clone, Copy)]
pub struct SseEncoder {
    pub hint: bool,
}

impl Encoder for SseEncoder {
    fn encode(&self, item: Outbound) -> Option<WireFrame> {
        let text = match item {
            Outbound::Event(e) if self.hint => return Some(e.frame(slot::SSE_HINT, hint_frame)),
            Outbound::Event(e) => return Some(e.frame(slot::SSE, event_frame)),
            Outbound::Replayed(m) if self.hint => {
                let id = m.cursor.map(|c| c.to_string());
                event("hint", id.as_deref(), &f::hint_of(&m, true))
            }
            Outbound::Replayed(m) => {
                let id = m.cursor.map(|c| c.to_string());
                event("message", id.as_deref(), &f::message_of(&m, true))
            }
            Outbound::Reset { channel, cursor } => {
                event("reset", None, &history::reset(&channel, cursor.map(|c| c.to_string()).as_deref()))
            }
            Outbound::Unsubscribed { channel, code, message } => {
                event("unsubscribed", None, &f::unsubscribed(&channel, code, &message))
            }
            Outbound::Dropped { channel, count } => event("dropped", None, &f::dropped(&channel, count)),
            Outbound::PresenceSync { channel, members } => {
                event("presence", None, &presence::sync(&channel, &members))
            }
            Outbound::Frame(frame) => return Some(frame),
        };
        Some(WireFrame::text(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{Message, Sender, Shared};

    fn message(cursor: Option<Cursor>, payload: &str) -> Message {
        Message {
            channel: "room:1".into(),
            id: cursor.map(|_| "u-1".into()),
            cursor,
            event: "said".into(),
            payload: payload.into(),
            sender: Sender { kind: "system".into(), id: None },
            created_at: None,
        }
    }

    fn text(f: WireFrame) -> String {
        String::from_utf8(f.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn a_stored_message_carries_its_cursor_as_id_and_its_v1_frame_as_data() {
        let c = Cursor::new(0x10, 2);
        let e = Shared::new(Event::Message(message(Some(c), r#"{"a":1}"#)), 0);
        let out = text(SseEncoder::default().encode(Outbound::Event(e.clone())).unwrap());
        let hint = text(SseEncoder { hint: true }.encode(Outbound::Event(e)).unwrap());
        assert!(
            hint.starts_with("id: 00000000000000100000000000000002\nevent: hint\ndata: {\"type\":\"hint\""),
            "{hint}"
        );
        assert!(!hint.contains("payload"), "{hint}");
        assert_eq!(
            out,
            "id: 00000000000000100000000000000002\nevent: message\ndata: {\"type\":\"message\",\"channel\":\"room:1\",\
             \"id\":\"u-1\",\"cursor\":\"00000000000000100000000000000002\",\"event\":\"said\",\"payload\":{\"a\":1},\
             \"sender\":{\"type\":\"system\"}}\n\n"
        );
    }

    #[test]
    fn ephemeral_messages_have_no_id_and_replays_are_marked() {
        let e = Shared::new(Event::Message(message(None, "{}")), 0);
        let out = text(SseEncoder::default().encode(Outbound::Event(e)).unwrap());
        assert!(out.starts_with("event: message\ndata: {"), "{out}");
        let r = text(
            SseEncoder::default()
                .encode(Outbound::Replayed(Box::new(message(Some(Cursor::new(1, 1)), "{}"))))
                .unwrap(),
        );
        assert!(
            r.starts_with("id: 00000000000000010000000000000001\n") && r.contains("\"replayed\":true"),
            "{r}"
        );
    }

    #[test]
    fn line_breaks_in_data_become_several_data_lines() {
        assert_eq!(event("x", None, "a\nb\r\nc\rd"), "event: x\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
        assert_eq!(comment("k\na"), ": k a\n\n");
    }

    #[test]
    fn stream_frames_name_their_type() {
        let floor = Cursor::new(0xab, 0);
        assert_eq!(
            ready(floor, "s1"),
            "id: 00000000000000ab0000000000000000\nevent: ready\ndata: {\"cursor\":\"00000000000000ab0000000000000000\",\"stream\":\"s1\",\"type\":\"ready\"}\n\n"
        );
        assert_eq!(
            close(4001, "token expired"),
            "event: close\ndata: {\"code\":4001,\"reason\":\"token expired\",\"type\":\"close\"}\n\n"
        );
        let reset = text(
            SseEncoder::default()
                .encode(Outbound::Reset { channel: "c".into(), cursor: Some(floor) })
                .unwrap(),
        );
        assert!(
            reset.starts_with("event: reset\ndata: {") && reset.contains("\"type\":\"reset\""),
            "{reset}"
        );
    }
}
