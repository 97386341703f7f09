//! Sans-IO decoder of `pgoutput` logical replication messages, protocol version 1.
//!
//! Layout: PostgreSQL docs, "Logical Replication Message Formats". `pgwire-replication`
//! already turns Begin (`B`), Commit (`C`) and logical Message (`M`) payloads into its own
//! events and forwards everything else as raw `XLogData`; this module decodes what arrives
//! there (Relation `R`, Insert `I`, Type `Y`, Origin `O`) and, for completeness and tests,
//! `B`, `C` and `M` too. Update/Delete/Truncate are recognised and ignored (the publication
//! only publishes inserts). Values are borrowed as [`Bytes`] slices of the message, so a large
//! row is not copied until it is turned into a [`Row`].

use std::collections::HashMap;

use bytes::Bytes;

/// Decoding failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty pgoutput message")]
    Empty,
    #[error("unknown pgoutput message type {0:?}")]
    UnknownMessageType(char),
    #[error("truncated pgoutput {msg:?} message (needed {needed} more bytes)")]
    Truncated { msg: char, needed: usize },
    #[error("unterminated string in pgoutput {0:?} message")]
    UnterminatedString(char),
    #[error("invalid tuple value kind {0:?}")]
    BadValueKind(char),
    #[error("unexpected tuple marker {0:?} in Insert")]
    BadTupleMarker(char),
    #[error("insert for relation {0} that was never described")]
    UnknownRelation(u32),
    #[error("relation {relation} has {expected} columns but the tuple has {got}")]
    ColumnCount { relation: String, expected: usize, got: usize },
    #[error("column {0:?} is not valid UTF-8")]
    NotUtf8(String),
    #[error("column {0:?} arrived in binary format; only text format is supported")]
    BinaryValue(String),
    #[error("column {0:?} is an unchanged TOAST value, which an insert cannot have")]
    UnchangedToast(String),
}

/// One column of a Relation message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Bit 1 set: part of the replica identity key.
    pub flags: u8,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// A Relation message: the schema of the rows that follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub id: u32,
    /// Empty for `pg_catalog`.
    pub namespace: String,
    pub name: String,
    pub replica_identity: u8,
    pub columns: Vec<Column>,
}

/// One value of a TupleData.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleValue {
    Null,
    UnchangedToast,
    Text(Bytes),
    Binary(Bytes),
}

/// A decoded `pgoutput` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgOutputMessage {
    Begin {
        final_lsn: u64,
        commit_time_micros: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: u64,
        end_lsn: u64,
        commit_time_micros: i64,
    },
    Origin {
        commit_lsn: u64,
        name: String,
    },
    Relation(Relation),
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation_id: u32,
        values: Vec<TupleValue>,
    },
    Message {
        transactional: bool,
        lsn: u64,
        prefix: String,
        content: Bytes,
    },
    /// Update (`U`), Delete (`D`) or Truncate (`T`): not published by our publication.
    Ignored(char),
}

/// A decoded row: column names (borrowed from the relation) and their text values (`None` for
/// SQL NULL), in column order. Looked up by name with a linear scan: a handful of columns, and
/// no per-row hashing or copying of column names on the replication hot path.
#[derive(Debug, Default, PartialEq)]
pub struct Row<'a> {
    names: Vec<&'a str>,
    values: Vec<Option<String>>,
}

impl<'a> Row<'a> {
    /// A row from (name, value) pairs, in column order.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (&'a str, Option<String>)>) -> Self {
        let (names, values) = pairs.into_iter().unzip();
        Row { names, values }
    }

    /// The value of column `name`: `None` when there is no such column, `Some(None)` for NULL.
    pub fn get(&self, name: &str) -> Option<&Option<String>> {
        self.names.iter().position(|n| *n == name).map(|i| &self.values[i])
    }
}

/// Decodes one `pgoutput` (v1) message.
pub fn decode(data: &Bytes) -> Result<PgOutputMessage, DecodeError> {
    let tag = *data.first().ok_or(DecodeError::Empty)?;
    let mut r = Reader { buf: data, pos: 1, tag: tag as char };
    let msg = match tag {
        b'B' => {
            PgOutputMessage::Begin { final_lsn: r.u64()?, commit_time_micros: r.u64()? as i64, xid: r.u32()? }
        }
        b'C' => PgOutputMessage::Commit {
            flags: r.u8()?,
            commit_lsn: r.u64()?,
            end_lsn: r.u64()?,
            commit_time_micros: r.u64()? as i64,
        },
        b'O' => PgOutputMessage::Origin { commit_lsn: r.u64()?, name: r.string()? },
        b'R' => {
            let id = r.u32()?;
            let namespace = r.string()?;
            let name = r.string()?;
            let replica_identity = r.u8()?;
            let n = r.u16()? as usize;
            // Each column takes at least ten bytes: a short message cannot reserve much.
            let mut columns = Vec::with_capacity(n.min((data.len() - r.pos) / 10));
            for _ in 0..n {
                columns.push(Column {
                    flags: r.u8()?,
                    name: r.string()?,
                    type_oid: r.u32()?,
                    type_modifier: r.u32()? as i32,
                });
            }
            PgOutputMessage::Relation(Relation { id, namespace, name, replica_identity, columns })
        }
        b'Y' => PgOutputMessage::Type { oid: r.u32()?, namespace: r.string()?, name: r.string()? },
        b'I' => {
            let relation_id = r.u32()?;
            let marker = r.u8()?;
            if marker != b'N' {
                return Err(DecodeError::BadTupleMarker(marker as char));
            }
            PgOutputMessage::Insert { relation_id, values: r.tuple()? }
        }
        b'M' => {
            let flags = r.u8()?;
            let lsn = r.u64()?;
            let prefix = r.string()?;
            let len = r.u32()? as usize;
            PgOutputMessage::Message { transactional: flags & 1 != 0, lsn, prefix, content: r.bytes(len)? }
        }
        b'U' | b'D' | b'T' => PgOutputMessage::Ignored(tag as char),
        other => return Err(DecodeError::UnknownMessageType(other as char)),
    };
    Ok(msg)
}

impl Relation {
    /// `"namespace.name"`, for messages.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// Turns an Insert's tuple into column name → text value.
    pub fn row(&self, values: &[TupleValue]) -> Result<Row<'_>, DecodeError> {
        if values.len() != self.columns.len() {
            return Err(DecodeError::ColumnCount {
                relation: self.qualified_name(),
                expected: self.columns.len(),
                got: values.len(),
            });
        }
        let mut row =
            Row { names: Vec::with_capacity(values.len()), values: Vec::with_capacity(values.len()) };
        for (col, value) in self.columns.iter().zip(values) {
            let text = match value {
                TupleValue::Null => None,
                TupleValue::Text(b) => {
                    Some(String::from_utf8(b.to_vec()).map_err(|_| DecodeError::NotUtf8(col.name.clone()))?)
                }
                TupleValue::Binary(_) => return Err(DecodeError::BinaryValue(col.name.clone())),
                TupleValue::UnchangedToast => return Err(DecodeError::UnchangedToast(col.name.clone())),
            };
            row.names.push(&col.name);
            row.values.push(text);
        }
        Ok(row)
    }
}

/// Relations seen on one replication session, by relation id. A new session re-sends every
/// relation before first use, so the cache is per session.
#[derive(Debug, Default)]
pub struct RelationCache {
    relations: HashMap<u32, Relation>,
}

impl RelationCache {
    pub fn insert(&mut self, rel: Relation) {
        self.relations.insert(rel.id, rel);
    }

    pub fn get(&self, id: u32) -> Result<&Relation, DecodeError> {
        self.relations.get(&id).ok_or(DecodeError::UnknownRelation(id))
    }

    pub fn clear(&mut self) {
        self.relations.clear();
    }
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    tag: char,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let remaining = self.buf.len() - self.pos;
        if remaining < n {
            return Err(DecodeError::Truncated { msg: self.tag, needed: n - remaining });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    /// A NUL-terminated string (Postgres sends names in the database encoding, UTF-8 here).
    fn string(&mut self) -> Result<String, DecodeError> {
        let rest = &self.buf[self.pos..];
        let end = rest.iter().position(|&b| b == 0).ok_or(DecodeError::UnterminatedString(self.tag))?;
        let s = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(s)
    }

    /// `n` bytes as a zero-copy slice of the message.
    fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.take(n)?;
        Ok(self.buf.slice(self.pos - n..self.pos))
    }

    fn tuple(&mut self) -> Result<Vec<TupleValue>, DecodeError> {
        let n = self.u16()? as usize;
        // Each value takes at least one byte: a short message cannot reserve much.
        let mut values = Vec::with_capacity(n.min(self.buf.len() - self.pos));
        for _ in 0..n {
            let kind = self.u8()?;
            values.push(match kind {
                b'n' => TupleValue::Null,
                b'u' => TupleValue::UnchangedToast,
                b't' => {
                    let len = self.u32()? as usize;
                    TupleValue::Text(self.bytes(len)?)
                }
                b'b' => {
                    let len = self.u32()? as usize;
                    TupleValue::Binary(self.bytes(len)?)
                }
                other => return Err(DecodeError::BadValueKind(other as char)),
            });
        }
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cstr(buf: &mut Vec<u8>, s: &str) {
        buf.extend_from_slice(s.as_bytes());
        buf.push(0);
    }

    fn relation_msg(id: u32, cols: &[(&str, u32)]) -> Bytes {
        let mut b = vec![b'R'];
        b.extend_from_slice(&id.to_be_bytes());
        cstr(&mut b, "realtime");
        cstr(&mut b, "messages");
        b.push(b'd');
        b.extend_from_slice(&(cols.len() as u16).to_be_bytes());
        for (i, (name, oid)) in cols.iter().enumerate() {
            b.push(u8::from(i == 0));
            cstr(&mut b, name);
            b.extend_from_slice(&oid.to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes());
        }
        Bytes::from(b)
    }

    enum V<'a> {
        T(&'a [u8]),
        N,
        U,
        B(&'a [u8]),
    }

    fn insert_msg(id: u32, values: &[V]) -> Bytes {
        let mut b = vec![b'I'];
        b.extend_from_slice(&id.to_be_bytes());
        b.push(b'N');
        b.extend_from_slice(&(values.len() as u16).to_be_bytes());
        for v in values {
            match v {
                V::N => b.push(b'n'),
                V::U => b.push(b'u'),
                V::T(s) | V::B(s) => {
                    b.push(if matches!(v, V::T(_)) { b't' } else { b'b' });
                    b.extend_from_slice(&(s.len() as u32).to_be_bytes());
                    b.extend_from_slice(s);
                }
            }
        }
        Bytes::from(b)
    }

    #[test]
    fn decodes_relation_with_columns_and_type_oids() {
        let msg = decode(&relation_msg(16390, &[("id", 2950), ("payload", 3802)])).unwrap();
        let PgOutputMessage::Relation(rel) = msg else { panic!("not a relation: {msg:?}") };
        assert_eq!(rel.id, 16390);
        assert_eq!(rel.qualified_name(), "realtime.messages");
        assert_eq!(rel.replica_identity, b'd');
        assert_eq!(rel.columns.len(), 2);
        assert_eq!(rel.columns[0].name, "id");
        assert_eq!(rel.columns[0].type_oid, 2950);
        assert_eq!(rel.columns[0].flags, 1);
        assert_eq!(rel.columns[1].name, "payload");
        assert_eq!(rel.columns[1].type_oid, 3802);
        assert_eq!(rel.columns[1].type_modifier, -1);
    }

    #[test]
    fn decodes_insert_with_text_null_and_100kb_value_into_row() {
        let big = format!("{{\"blob\":\"{}\"}}", "x".repeat(100 * 1024));
        let mut cache = RelationCache::default();
        let PgOutputMessage::Relation(rel) =
            decode(&relation_msg(7, &[("channel", 25), ("payload", 3802), ("sender_id", 25)])).unwrap()
        else {
            panic!()
        };
        cache.insert(rel);
        let msg = decode(&insert_msg(7, &[V::T(b"chat:lobby"), V::T(big.as_bytes()), V::N])).unwrap();
        let PgOutputMessage::Insert { relation_id, values } = msg else { panic!() };
        let row = cache.get(relation_id).unwrap().row(&values).unwrap();
        assert_eq!(row.get("channel").cloned().flatten().as_deref(), Some("chat:lobby"));
        assert_eq!(row.get("payload").cloned().flatten().as_deref(), Some(big.as_str()));
        assert_eq!(row.get("sender_id"), Some(&None));
        assert_eq!(row.get("no_such_column"), None);
    }

    #[test]
    fn insert_keeps_binary_and_unchanged_toast_markers_but_row_rejects_them() {
        let msg = decode(&insert_msg(7, &[V::B(&[0, 1]), V::U])).unwrap();
        let PgOutputMessage::Insert { values, .. } = msg else { panic!() };
        assert_eq!(values, vec![TupleValue::Binary(Bytes::from_static(&[0, 1])), TupleValue::UnchangedToast]);
        let rel = Relation {
            id: 7,
            namespace: "realtime".into(),
            name: "messages".into(),
            replica_identity: b'd',
            columns: vec![
                Column { flags: 0, name: "a".into(), type_oid: 17, type_modifier: -1 },
                Column { flags: 0, name: "b".into(), type_oid: 25, type_modifier: -1 },
            ],
        };
        assert_eq!(rel.row(&values), Err(DecodeError::BinaryValue("a".into())));
        assert_eq!(
            rel.row(&values[1..]),
            Err(DecodeError::ColumnCount { relation: "realtime.messages".into(), expected: 2, got: 1 })
        );
    }

    #[test]
    fn insert_for_unknown_relation_is_an_error() {
        assert_eq!(RelationCache::default().get(99), Err(DecodeError::UnknownRelation(99)));
    }

    #[test]
    fn decodes_begin_commit_origin_type_and_message() {
        let mut b = vec![b'B'];
        b.extend_from_slice(&0x16_B374_D848u64.to_be_bytes());
        b.extend_from_slice(&5i64.to_be_bytes());
        b.extend_from_slice(&77u32.to_be_bytes());
        assert_eq!(
            decode(&Bytes::from(b)).unwrap(),
            PgOutputMessage::Begin { final_lsn: 0x16_B374_D848, commit_time_micros: 5, xid: 77 }
        );

        let mut c = vec![b'C', 0];
        c.extend_from_slice(&100u64.to_be_bytes());
        c.extend_from_slice(&140u64.to_be_bytes());
        c.extend_from_slice(&9i64.to_be_bytes());
        assert_eq!(
            decode(&Bytes::from(c)).unwrap(),
            PgOutputMessage::Commit { flags: 0, commit_lsn: 100, end_lsn: 140, commit_time_micros: 9 }
        );

        let mut o = vec![b'O'];
        o.extend_from_slice(&100u64.to_be_bytes());
        cstr(&mut o, "node_a");
        assert_eq!(
            decode(&Bytes::from(o)).unwrap(),
            PgOutputMessage::Origin { commit_lsn: 100, name: "node_a".into() }
        );

        let mut y = vec![b'Y'];
        y.extend_from_slice(&16400u32.to_be_bytes());
        cstr(&mut y, "public");
        cstr(&mut y, "mood");
        assert_eq!(
            decode(&Bytes::from(y)).unwrap(),
            PgOutputMessage::Type { oid: 16400, namespace: "public".into(), name: "mood".into() }
        );

        let body = br#"{"channel":"c","event":"e","payload":{}}"#;
        let mut m = vec![b'M', 1];
        m.extend_from_slice(&200u64.to_be_bytes());
        cstr(&mut m, "realtime:broadcast");
        m.extend_from_slice(&(body.len() as u32).to_be_bytes());
        m.extend_from_slice(body);
        assert_eq!(
            decode(&Bytes::from(m)).unwrap(),
            PgOutputMessage::Message {
                transactional: true,
                lsn: 200,
                prefix: "realtime:broadcast".into(),
                content: Bytes::from_static(body)
            }
        );
    }

    #[test]
    fn unknown_and_ignored_message_types() {
        assert_eq!(decode(&Bytes::from_static(b"Zabc")), Err(DecodeError::UnknownMessageType('Z')));
        assert_eq!(decode(&Bytes::new()), Err(DecodeError::Empty));
        for t in [b'U', b'D', b'T'] {
            assert_eq!(decode(&Bytes::from(vec![t, 0, 0])).unwrap(), PgOutputMessage::Ignored(t as char));
        }
    }

    #[test]
    fn truncated_and_malformed_messages_are_errors_not_panics() {
        let full = insert_msg(7, &[V::T(b"hello"), V::N]);
        for cut in 1..full.len() {
            assert!(decode(&full.slice(..cut)).is_err(), "cut at {cut}");
        }
        let rel = relation_msg(1, &[("a", 25)]);
        for cut in 1..rel.len() {
            assert!(decode(&rel.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad_kind = insert_msg(7, &[V::N]).to_vec();
        *bad_kind.last_mut().unwrap() = b'x';
        assert_eq!(decode(&Bytes::from(bad_kind)), Err(DecodeError::BadValueKind('x')));
        let mut bad_marker = insert_msg(7, &[V::N]).to_vec();
        bad_marker[5] = b'K';
        assert_eq!(decode(&Bytes::from(bad_marker)), Err(DecodeError::BadTupleMarker('K')));
        // length field claims more than is there
        let mut b = vec![b'I', 0, 0, 0, 7, b'N', 0, 1, b't'];
        b.extend_from_slice(&1000u32.to_be_bytes());
        b.extend_from_slice(b"short");
        assert!(matches!(decode(&Bytes::from(b)), Err(DecodeError::Truncated { msg: 'I', .. })));
    }
}
