//! The pure conversions that build the log's events ([`crate::core::event`]) from what the
//! replication stream decodes: a `realtime.messages` row → [`StoredMessage`], a `realtime:`
//! logical message → [`Ephemeral`], and Postgres `timestamptz` text → RFC 3339. No I/O here.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::pgoutput::Row;
use crate::core::event::{Ephemeral, StoredMessage};
use crate::core::Cursor;

/// Prefix of `pg_logical_emit_message()` records that carry ephemeral broadcasts.
pub const BROADCAST_PREFIX: &str = "realtime:broadcast";
/// Prefix of `pg_logical_emit_message()` records that carry presence ops (see
/// [`crate::core::presence::PresenceOp`]).
pub const PRESENCE_PREFIX: &str = "realtime:presence";
/// Prefix of the (empty) logical message `realtime.channels`' trigger emits on every change.
pub const CHANNELS_PREFIX: &str = "realtime:channels";
/// Prefix of the (empty) logical message `realtime.relay_keys`' trigger emits on every change:
/// the relay reads the keys again (see `keys.rs`).
pub const KEYS_PREFIX: &str = "realtime:keys";
/// Prefix shared by every logical message meant for the relay.
pub const REALTIME_PREFIX: &str = "realtime:";
/// Label values of `realtime_replication_forged_messages_total{prefix}`.
pub const FORGED_LABELS: [&str; 5] = ["broadcast", "presence", "channels", "keys", "other"];

/// The metric label of a `realtime:` prefix: one of [`FORGED_LABELS`] (`other` for any prefix
/// the relay does not handle, so a forger cannot make up new series).
pub fn prefix_label(prefix: &str) -> &'static str {
    match prefix {
        BROADCAST_PREFIX => FORGED_LABELS[0],
        PRESENCE_PREFIX => FORGED_LABELS[1],
        CHANNELS_PREFIX => FORGED_LABELS[2],
        KEYS_PREFIX => FORGED_LABELS[3],
        _ => FORGED_LABELS[4],
    }
}

/// A row or logical message that cannot be turned into an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("realtime.messages row has no value for column {0:?}")]
    MissingColumn(&'static str),
    #[error("realtime.messages.seq {0:?} is not a bigint")]
    BadSeq(String),
    #[error("unrecognised timestamptz text {0:?}")]
    BadTimestamp(String),
    #[error("logical message body is not {{channel, event, payload}} JSON: {0}")]
    BadMessageBody(String),
}

/// Builds the stored message of a decoded `realtime.messages` insert. Returns it with the
/// row's `xid` (xid8 text), if present. The cursor uses `commit_lsn`.
pub fn stored_from_row(
    row: &Row<'_>,
    commit_lsn: u64,
) -> Result<(StoredMessage, Option<String>), EventError> {
    let get = |name: &'static str| row.get(name).cloned().flatten();
    let need = |name: &'static str| get(name).ok_or(EventError::MissingColumn(name));
    let seq_text = need("seq")?;
    let seq: i64 = seq_text.parse().map_err(|_| EventError::BadSeq(seq_text))?;
    let created_at = pg_timestamptz_to_rfc3339(&need("created_at")?)?;
    let msg = StoredMessage {
        id: need("id")?,
        seq,
        channel: need("channel")?,
        event: need("event")?,
        payload: get("payload").unwrap_or_else(|| "null".to_string()),
        sender_type: get("sender_type").unwrap_or_else(|| "system".to_string()),
        sender_id: get("sender_id"),
        created_at,
        cursor: Cursor::new(commit_lsn, seq),
        wh_audience: get("wh_audience_count").and_then(|v| v.parse().ok()).unwrap_or(0),
    };
    Ok((msg, get("xid")))
}

#[derive(Deserialize)]
struct MessageBody<'a> {
    #[serde(borrow)]
    channel: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    event: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
    #[serde(default)]
    sender_id: Option<String>,
}

/// Parses the body of a `realtime:broadcast` logical message:
/// `{"channel": .., "event": .., "payload": <any JSON>}`. A missing payload reads as `{}`.
pub fn ephemeral_from_body(content: &[u8]) -> Result<Ephemeral, EventError> {
    let body: MessageBody<'_> =
        serde_json::from_slice(content).map_err(|e| EventError::BadMessageBody(e.to_string()))?;
    Ok(Ephemeral {
        channel: body.channel.into_owned(),
        event: body.event.into_owned(),
        payload: body.payload.map_or_else(|| "{}".to_string(), |p| p.get().to_string()),
        sender_id: body.sender_id,
    })
}

/// Converts `timestamptz` text in DateStyle ISO (`2026-11-23 10:50:00.123456+00`, any
/// offset such as `+05:30` or `-08`, fraction optional) to RFC 3339 UTC with exactly six
/// fractional digits: `2026-11-23T10:50:00.123456Z`. The relay pins TimeZone=UTC on the
/// replication session, so the offset is normally `+00`; others are converted anyway.
pub fn pg_timestamptz_to_rfc3339(s: &str) -> Result<String, EventError> {
    let bad = || EventError::BadTimestamp(s.to_string());
    let (date, time) = s.split_once(' ').ok_or_else(bad)?;
    let mut d = date.splitn(3, '-');
    let year: i64 = num(d.next(), 4..=6).ok_or_else(bad)?;
    let month: u32 = num(d.next(), 2..=2).ok_or_else(bad)?;
    let day: u32 = num(d.next(), 2..=2).ok_or_else(bad)?;
    let sign_at = time.rfind(['+', '-']).ok_or_else(bad)?;
    let (clock, offset) = time.split_at(sign_at);
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.splitn(3, ':');
    let hour: u32 = num(t.next(), 2..=2).ok_or_else(bad)?;
    let minute: u32 = num(t.next(), 2..=2).ok_or_else(bad)?;
    let second: u32 = num(t.next(), 2..=2).ok_or_else(bad)?;
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let micros: u32 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err(bad());
    }
    // Offset: ±HH, ±HH:MM or ±HH:MM:SS.
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let mut o = offset[1..].splitn(3, ':');
    let oh: i64 = num(o.next(), 2..=2).ok_or_else(bad)?;
    let om: i64 = o.next().map_or(Some(0), |p| num(Some(p), 2..=2)).ok_or_else(bad)?;
    let os: i64 = o.next().map_or(Some(0), |p| num(Some(p), 2..=2)).ok_or_else(bad)?;
    let offset_secs = sign * (oh * 3600 + om * 60 + os);

    let local = days_from_civil(year, month, day) * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    let utc = local - offset_secs;
    let (y, m, dd) = civil_from_days(utc.div_euclid(86_400));
    let sod = utc.rem_euclid(86_400);
    Ok(format!("{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{micros:06}Z", sod / 3600, sod % 3600 / 60, sod % 60))
}

fn num<T: std::str::FromStr>(part: Option<&str>, len: std::ops::RangeInclusive<usize>) -> Option<T> {
    let p = part?;
    if !len.contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(pairs: &[(&'a str, Option<&str>)]) -> Row<'a> {
        Row::from_pairs(pairs.iter().map(|(k, v)| (*k, v.map(str::to_string))))
    }

    #[test]
    fn timestamptz_utc_text_becomes_rfc3339_with_microseconds() {
        let t = |s| pg_timestamptz_to_rfc3339(s).unwrap();
        assert_eq!(t("2026-11-23 10:50:00.123456+00"), "2026-11-23T10:50:00.123456Z");
        assert_eq!(t("2026-11-23 10:50:00+00"), "2026-11-23T10:50:00.000000Z");
        assert_eq!(t("2026-11-23 10:50:00.12+00"), "2026-11-23T10:50:00.120000Z");
        assert_eq!(t("2026-11-23 10:50:00.000001+00"), "2026-11-23T10:50:00.000001Z");
    }

    #[test]
    fn timestamptz_with_other_offsets_is_converted_to_utc() {
        let t = |s| pg_timestamptz_to_rfc3339(s).unwrap();
        assert_eq!(t("2026-11-23 12:50:00.5+02"), "2026-11-23T10:50:00.500000Z");
        assert_eq!(t("2026-11-23 05:30:00+05:30"), "2026-11-23T00:00:00.000000Z");
        assert_eq!(t("2026-12-31 20:00:00-08"), "2027-01-01T04:00:00.000000Z");
        assert_eq!(t("2024-03-01 00:10:00+01"), "2024-02-29T23:10:00.000000Z");
        assert_eq!(t("1970-01-01 00:00:00+00:00:30"), "1969-12-31T23:59:30.000000Z");
    }

    #[test]
    fn timestamptz_garbage_is_rejected() {
        for s in [
            "",
            "2026-11-23",
            "2026-11-23T10:50:00Z",
            "2026-11-23 10:50:00",
            "2026-13-23 10:50:00+00",
            "2026-11-23 10:50:00.1234567+00",
            "2026-11-23 10:50:00.12a+00",
            "infinity",
            "2026-11-23 10:5:00+00",
        ] {
            assert!(pg_timestamptz_to_rfc3339(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn days_roundtrip_over_a_wide_range() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn stored_message_from_full_row() {
        let r = row(&[
            ("id", Some("6f9619ff-8b86-d011-b42d-00cf4fc964ff")),
            ("seq", Some("42")),
            ("channel", Some("chat:lobby")),
            ("channel_id", Some("1")),
            ("event", Some("message")),
            ("payload", Some(r#"{"text": "hi"}"#)),
            ("sender_type", Some("user")),
            ("sender_id", Some("u1")),
            ("created_at", Some("2026-11-23 10:50:00.123456+00")),
            ("xid", Some("748")),
        ]);
        let (m, xid) = stored_from_row(&r, 0x1234).unwrap();
        assert_eq!(xid.as_deref(), Some("748"));
        assert_eq!(m.id, "6f9619ff-8b86-d011-b42d-00cf4fc964ff");
        assert_eq!(m.seq, 42);
        assert_eq!(m.channel, "chat:lobby");
        assert_eq!(m.event, "message");
        assert_eq!(m.payload, r#"{"text": "hi"}"#);
        assert_eq!(m.sender_type, "user");
        assert_eq!(m.sender_id.as_deref(), Some("u1"));
        assert_eq!(m.created_at, "2026-11-23T10:50:00.123456Z");
        assert_eq!(m.cursor, Cursor::new(0x1234, 42));
    }

    #[test]
    fn stored_message_defaults_and_missing_columns() {
        let with_seq = |seq: Option<&'static str>| {
            let seq_col = seq.map(|v| ("seq", Some(v)));
            row(&[
                Some(("id", Some("x"))),
                seq_col,
                Some(("channel", Some("c"))),
                Some(("event", Some("e"))),
                Some(("payload", None)),
                Some(("sender_type", None)),
                Some(("sender_id", None)),
                Some(("created_at", Some("2026-11-23 10:50:00+00"))),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>())
        };
        let r = row(&[
            ("id", Some("x")),
            ("seq", Some("1")),
            ("channel", Some("c")),
            ("event", Some("e")),
            ("payload", None),
            ("sender_type", None),
            ("sender_id", None),
            ("created_at", Some("2026-11-23 10:50:00+00")),
        ]);
        let (m, xid) = stored_from_row(&r, 1).unwrap();
        assert_eq!((m.payload.as_str(), m.sender_type.as_str()), ("null", "system"));
        assert_eq!((m.sender_id, xid), (None, None));
        assert_eq!(stored_from_row(&with_seq(Some("ten")), 1), Err(EventError::BadSeq("ten".into())));
        assert_eq!(stored_from_row(&with_seq(None), 1), Err(EventError::MissingColumn("seq")));
    }

    #[test]
    fn ephemeral_body_keeps_raw_payload_json() {
        let e = ephemeral_from_body(br#"{"channel":"room:1","event":"typing","payload":{"a": [1, 2.50]}}"#)
            .unwrap();
        assert_eq!(e.channel, "room:1");
        assert_eq!(e.event, "typing");
        assert_eq!(e.payload, r#"{"a": [1, 2.50]}"#);
        let e = ephemeral_from_body(br#"{"event":"e","channel":"c\u0041"}"#).unwrap();
        assert_eq!((e.channel.as_str(), e.payload.as_str()), ("cA", "{}"));
        assert!(ephemeral_from_body(b"not json").is_err());
        assert!(ephemeral_from_body(br#"{"channel":"c"}"#).is_err());
    }

    #[test]
    fn ephemeral_body_carries_optional_sender() {
        let e = ephemeral_from_body(br#"{"channel":"c","event":"e","sender_id":"alice"}"#).unwrap();
        assert_eq!(e.sender_id.as_deref(), Some("alice"));
        assert_eq!(ephemeral_from_body(br#"{"channel":"c","event":"e"}"#).unwrap().sender_id, None);
    }
}
