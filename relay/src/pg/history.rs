//! Reads of the stored message log for `history` and resume: `realtime.messages ⋈
//! realtime.commits`, with the cursor and `created_at` computed in SQL in exactly the text form
//! live `message` frames carry. Run on the relay's own login (the tables' owner) after the
//! caller's subscribe permission was checked.
//!
//! Index use: the bounds are on `commits.commit_lsn` (index `commits_commit_lsn_idx`) and the
//! join is on `(messages.channel, messages.xid)` (index `messages_channel_xid_idx`, which also
//! serves channel-heavy plans); ordering is `(commit_lsn, seq)`, which a backward or forward scan
//! of the `commit_lsn` index yields up to an incremental sort on `seq`. A channel with few stored
//! messages is read from its own rows instead (`messages_channel_xid_idx` then the `commits`
//! primary key): walking every commit of a busy database backwards to find a rare channel's
//! messages took 1.5 s on 100k commits, the channel-driven read a millisecond. Cursor bounds are split into an
//! indexable `commit_lsn` range plus a residual `seq` test, never a cross-table row comparison.
//!
//! A read is only complete up to commit LSN `X` once positions up to `X` are durable (see
//! [`super::replication::ReplicationStatus::readable_lsn`]); callers wait for that first.

use super::PgError;
use crate::core::event::{Message, Sender};
use crate::core::{format_pg_lsn, Cursor};

/// `limit` when a history request names none.
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest `limit` honoured; larger requests are capped to it silently.
pub const MAX_LIMIT: u64 = 1000;
/// Rows per query while replaying a resume.
pub const REPLAY_PAGE: i64 = 500;

/// The select list: id, cursor, event, payload, sender, created_at.
macro_rules! columns {
    () => {
        "m.id::text, \
         lpad(to_hex((c.commit_lsn - '0/0'::pg_lsn)::bigint), 16, '0') || lpad(to_hex(m.seq), 16, '0'), \
         m.event, m.payload::text, m.sender_type, m.sender_id, \
         to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
    };
}

/// Newest first, strictly before `($2, $3)`.
const BEFORE_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM realtime.commits c JOIN realtime.messages m ON m.xid = c.xid \
     WHERE m.channel = $1 AND c.commit_lsn <= $2::text::pg_lsn \
       AND (c.commit_lsn < $2::text::pg_lsn OR m.seq < $3) \
     ORDER BY c.commit_lsn DESC, m.seq DESC LIMIT $4"
);

/// [`BEFORE_SQL`] driven by the channel's own rows: for channels with few stored messages,
/// where walking every commit of the database backwards would be the slow way round.
const BEFORE_SMALL_SQL: &str = concat!(
    "WITH m AS MATERIALIZED (SELECT * FROM realtime.messages WHERE channel = $1) SELECT ",
    columns!(),
    " FROM m JOIN realtime.commits c ON c.xid = m.xid \
     WHERE c.commit_lsn <= $2::text::pg_lsn AND (c.commit_lsn < $2::text::pg_lsn OR m.seq < $3) \
     ORDER BY c.commit_lsn DESC, m.seq DESC LIMIT $4"
);

/// Channels with at most this many stored messages are read with [`BEFORE_SMALL_SQL`].
const SMALL_CHANNEL: i64 = 5000;
const SMALL_CHANNEL_SQL: &str =
    "SELECT count(*) FROM (SELECT 1 FROM realtime.messages WHERE channel = $1 LIMIT $2) t";

/// Oldest first, the rest of the commit at `$2` after `seq $3` (and at or before `seq $5` when
/// that commit is also the upper bound `$4`): one ordered range of `messages_channel_xid_idx`
/// however large the commit, so paging through a 100,000-row commit never sorts it whole.
const AFTER_IN_COMMIT_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM realtime.messages m \
       CROSS JOIN (SELECT xid, commit_lsn FROM realtime.commits WHERE commit_lsn = $2::text::pg_lsn LIMIT 1) c \
     WHERE m.channel = $1 AND m.xid = (SELECT xid FROM realtime.commits WHERE commit_lsn = $2::text::pg_lsn LIMIT 1) \
       AND m.seq > $3 AND (c.commit_lsn < $4::text::pg_lsn OR m.seq <= $5) \
     ORDER BY m.seq LIMIT $6"
);

/// Oldest first, in the commits strictly after `$2` and at or before `($3, $4)`.
const AFTER_SQL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM realtime.commits c JOIN realtime.messages m ON m.xid = c.xid \
     WHERE m.channel = $1 AND c.commit_lsn > $2::text::pg_lsn AND c.commit_lsn <= $3::text::pg_lsn \
       AND (c.commit_lsn < $3::text::pg_lsn OR m.seq <= $4) \
     ORDER BY c.commit_lsn, m.seq LIMIT $5"
);

const COUNT_SQL: &str = "SELECT count(*) FROM (SELECT 1 \
     FROM realtime.commits c JOIN realtime.messages m ON m.xid = c.xid \
     WHERE m.channel = $1 AND c.commit_lsn >= $2::text::pg_lsn AND c.commit_lsn <= $4::text::pg_lsn \
       AND (c.commit_lsn > $2::text::pg_lsn OR m.seq > $3) \
       AND (c.commit_lsn < $4::text::pg_lsn OR m.seq <= $5) \
     LIMIT $6) t";

const ID_SQL: &str =
    "SELECT lpad(to_hex((c.commit_lsn - '0/0'::pg_lsn)::bigint), 16, '0') || lpad(to_hex(m.seq), 16, '0') \
     FROM realtime.messages m JOIN realtime.commits c ON c.xid = m.xid \
     WHERE m.id = $1::text::uuid AND m.channel = $2";

/// A message cursor: its own commit is known and recent. A position cursor (seq 0 or the
/// end-of-commit form): the last commit at or before it is recent, or else the first commit
/// after it is recent (or there is none), so nothing older than the window was missed.
const RECENT_MESSAGE_SQL: &str = "SELECT EXISTS (SELECT 1 FROM realtime.commits \
     WHERE commit_lsn = $1::text::pg_lsn AND committed_at >= now() - make_interval(secs => $2))";
const RECENT_POSITION_SQL: &str = "SELECT coalesce((SELECT committed_at >= now() - make_interval(secs => $2) \
         FROM realtime.commits WHERE commit_lsn <= $1::text::pg_lsn ORDER BY commit_lsn DESC LIMIT 1), false) \
     OR coalesce((SELECT committed_at >= now() - make_interval(secs => $2) \
         FROM realtime.commits WHERE commit_lsn > $1::text::pg_lsn ORDER BY commit_lsn LIMIT 1), true)";

/// One stored message of `channel` as read back (the cursor and `created_at` in exactly the
/// text form the live stream gives them).
fn message(row: &tokio_postgres::Row, channel: &str) -> Message {
    Message {
        channel: channel.to_string(),
        id: Some(row.get(0)),
        cursor: row.get::<_, String>(1).parse().ok(),
        event: row.get(2),
        payload: row.get(3),
        sender: Sender { kind: row.get(4), id: row.get(5) },
        created_at: Some(row.get(6)),
    }
}

/// What `before` names: a cursor, or the id of a message whose cursor is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Before {
    Cursor(Cursor),
    Id(String),
}

/// Parses a `before` value: a 32-hex cursor or a UUID message id.
pub fn parse_before(s: &str) -> Result<Before, String> {
    if let Ok(c) = s.parse::<Cursor>() {
        return Ok(Before::Cursor(c));
    }
    if is_uuid(s) {
        return Ok(Before::Id(s.to_ascii_lowercase()));
    }
    Err(format!("'before' must be a cursor (32 lowercase hex characters) or a message id (UUID), not {s:?}"))
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The limit to use: default [`DEFAULT_LIMIT`], capped at [`MAX_LIMIT`]; 0 is refused.
pub fn effective_limit(limit: Option<u64>) -> Result<i64, String> {
    match limit {
        Some(0) => Err("'limit' must be at least 1".into()),
        Some(n) => Ok(n.min(MAX_LIMIT) as i64),
        None => Ok(DEFAULT_LIMIT as i64),
    }
}

/// A cursor as SQL bounds: `pg_lsn` text and a `bigint` seq. A seq printed above `i64::MAX`
/// (the end-of-commit form) becomes `i64::MAX`, which keeps every comparison with real
/// (positive) seqs the same as the cursors' string order.
pub fn sql_bound(c: Cursor) -> (String, i64) {
    (format_pg_lsn(c.commit_lsn), if c.seq < 0 { i64::MAX } else { c.seq })
}

/// True for cursors that are positions (a seed or an end-of-commit), not a message's cursor.
pub fn is_position_cursor(c: Cursor) -> bool {
    c.seq <= 0
}

/// A page of messages: at most the rows and about the bytes asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub messages: Vec<Message>,
    /// The page was cut by its row or byte bound: more may follow.
    pub more: bool,
    bytes: usize,
}

/// Adds the rows of `stmt` to `page` one at a time (never the whole result in memory), stopping
/// once it holds `limit` rows or `max_bytes` (at least one row is always read, however large: a
/// message's size is bounded by the extension's `max_payload_bytes`). Returns whether the page
/// is full.
async fn fill(
    page: &mut Page,
    client: &deadpool_postgres::Client,
    stmt: &tokio_postgres::Statement,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    channel: &str,
    (limit, max_bytes): (i64, usize),
) -> Result<bool, PgError> {
    use futures_util::TryStreamExt;
    let rows = client.query_raw(stmt, params.iter().map(|p| *p as &dyn tokio_postgres::types::ToSql)).await?;
    futures_util::pin_mut!(rows);
    while let Some(row) = rows.try_next().await? {
        let m = message(&row, channel);
        page.bytes += m.payload.len() + m.event.len() + 128;
        page.messages.push(m);
        if page.bytes >= max_bytes || page.messages.len() as i64 >= limit {
            page.more = true;
            return Ok(true);
        }
    }
    Ok(false)
}

/// Up to `limit` messages (and about `max_bytes`) of `channel` strictly before `before`,
/// newest first.
pub async fn page_before(
    client: &deadpool_postgres::Client,
    channel: &str,
    before: Cursor,
    limit: i64,
    max_bytes: usize,
) -> Result<Page, PgError> {
    let (lsn, seq) = sql_bound(before);
    let small = client.prepare_cached(SMALL_CHANNEL_SQL).await?;
    let count: i64 = client.query_one(&small, &[&channel, &(SMALL_CHANNEL + 1)]).await?.get(0);
    let sql = if count <= SMALL_CHANNEL { BEFORE_SMALL_SQL } else { BEFORE_SQL };
    let stmt = client.prepare_cached(sql).await?;
    let mut page = Page::default();
    fill(&mut page, client, &stmt, &[&channel, &lsn, &seq, &limit], channel, (limit, max_bytes)).await?;
    Ok(page)
}

/// Up to `limit` messages (and about `max_bytes`) of `channel` with `after < cursor <= upto`,
/// oldest first: the rest of `after`'s own commit, then the commits after it.
pub async fn page_after(
    client: &deadpool_postgres::Client,
    channel: &str,
    after: Cursor,
    upto: Cursor,
    limit: i64,
    max_bytes: usize,
) -> Result<Page, PgError> {
    let ((alsn, aseq), (ulsn, useq)) = (sql_bound(after), sql_bound(upto));
    let mut page = Page::default();
    let bounds = (limit, max_bytes);
    let in_commit = client.prepare_cached(AFTER_IN_COMMIT_SQL).await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&channel, &alsn, &aseq, &ulsn, &useq, &limit];
    if !fill(&mut page, client, &in_commit, &params, channel, bounds).await? {
        let later = client.prepare_cached(AFTER_SQL).await?;
        let rest = limit - page.messages.len() as i64;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [&channel, &alsn, &ulsn, &useq, &rest];
        fill(&mut page, client, &later, &params, channel, bounds).await?;
    }
    Ok(page)
}

/// How many messages of `channel` lie in `(after, upto]`, counting at most `cap`.
pub async fn count_between(
    client: &deadpool_postgres::Client,
    channel: &str,
    after: Cursor,
    upto: Cursor,
    cap: i64,
) -> Result<i64, PgError> {
    let ((alsn, aseq), (ulsn, useq)) = (sql_bound(after), sql_bound(upto));
    let stmt = client.prepare_cached(COUNT_SQL).await?;
    let row = client.query_one(&stmt, &[&channel, &alsn, &aseq, &ulsn, &useq, &cap]).await?;
    Ok(row.get(0))
}

/// The cursor of message `id` on `channel`, if it is stored and its position known.
pub async fn cursor_of(
    client: &deadpool_postgres::Client,
    channel: &str,
    id: &str,
) -> Result<Option<Cursor>, PgError> {
    let stmt = client.prepare_cached(ID_SQL).await?;
    let row = client.query_opt(&stmt, &[&id, &channel]).await?;
    Ok(row.and_then(|r| r.get::<_, String>(0).parse().ok()))
}

/// Is `cursor` inside the replay window of `window_secs` (see the SQL comments above)?
pub async fn within_window(
    client: &deadpool_postgres::Client,
    cursor: Cursor,
    window_secs: f64,
) -> Result<bool, PgError> {
    let sql = if is_position_cursor(cursor) { RECENT_POSITION_SQL } else { RECENT_MESSAGE_SQL };
    let stmt = client.prepare_cached(sql).await?;
    let lsn = format_pg_lsn(cursor.commit_lsn);
    Ok(client.query_one(&stmt, &[&lsn, &window_secs]).await?.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_is_a_cursor_or_a_uuid() {
        let c = Cursor::new(0x16_B374_D848, 42);
        assert_eq!(parse_before(&c.to_string()), Ok(Before::Cursor(c)));
        assert_eq!(
            parse_before("6F9619FF-8B86-D011-B42D-00CF4FC964FF"),
            Ok(Before::Id("6f9619ff-8b86-d011-b42d-00cf4fc964ff".into()))
        );
        for bad in [
            "",
            "abc",
            "00000016B374D848000000000000002a",
            "6f9619ff-8b86-d011-b42d-00cf4fc964f",
            "x".repeat(36).as_str(),
        ] {
            assert!(parse_before(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limit_defaults_caps_and_refuses_zero() {
        assert_eq!(effective_limit(None), Ok(50));
        assert_eq!(effective_limit(Some(7)), Ok(7));
        assert_eq!(effective_limit(Some(1000)), Ok(1000));
        assert_eq!(effective_limit(Some(1_000_000)), Ok(1000));
        assert!(effective_limit(Some(0)).is_err());
    }

    #[test]
    fn sql_bounds_keep_cursor_order_for_end_of_commit() {
        assert_eq!(sql_bound(Cursor::new(0x1_0000_0002, 5)), ("1/2".to_string(), 5));
        assert_eq!(sql_bound(Cursor::end_of_commit(16)), ("0/10".to_string(), i64::MAX));
        assert!(is_position_cursor(Cursor::end_of_commit(16)));
        assert!(is_position_cursor(Cursor::new(16, 0)));
        assert!(!is_position_cursor(Cursor::new(16, 1)));
    }

    #[test]
    fn sql_text_is_what_the_live_stream_prints() {
        // cursor: 16 hex of the commit LSN, 16 hex of seq; created_at with microseconds and Z.
        assert!(BEFORE_SQL.contains("lpad(to_hex((c.commit_lsn - '0/0'::pg_lsn)::bigint), 16, '0')"));
        assert!(BEFORE_SQL.contains(r#"'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"#));
        assert_eq!(BEFORE_SQL.matches("$2::text::pg_lsn").count(), 2);
    }
}
