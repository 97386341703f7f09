//! The replication stream's decoders: pgoutput messages (generated, encoded and decoded back;
//! random and mutated bytes) and the bodies of `realtime:` logical messages. Whatever the bytes,
//! a clear error or a value, never a panic.

use bytes::Bytes;
use proptest::prelude::*;

use super::{mutated_bytes, MAX_ERROR};
use crate::core::presence::PresenceOp;
use crate::pg::replication::events::ephemeral_from_body;
use crate::pg::replication::pgoutput::{decode, Column, PgOutputMessage, Relation, TupleValue};

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// Names as Postgres sends them: NUL-terminated, so without NUL.
fn name() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,20}"
}

fn value() -> impl Strategy<Value = TupleValue> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
    prop_oneof![
        Just(TupleValue::Null),
        Just(TupleValue::UnchangedToast),
        bytes.clone().prop_map(TupleValue::Text),
        bytes.prop_map(TupleValue::Binary),
    ]
}

fn column() -> impl Strategy<Value = Column> {
    (any::<u8>(), name(), any::<u32>(), any::<i32>())
        .prop_map(|(flags, name, type_oid, type_modifier)| Column { flags, name, type_oid, type_modifier })
}

/// Any message the decoder knows, with its encoding.
fn message() -> impl Strategy<Value = PgOutputMessage> {
    prop_oneof![
        (any::<u64>(), any::<i64>(), any::<u32>()).prop_map(|(final_lsn, commit_time_micros, xid)| {
            PgOutputMessage::Begin { final_lsn, commit_time_micros, xid }
        }),
        (any::<u8>(), any::<u64>(), any::<u64>(), any::<i64>()).prop_map(
            |(flags, commit_lsn, end_lsn, commit_time_micros)| PgOutputMessage::Commit {
                flags,
                commit_lsn,
                end_lsn,
                commit_time_micros
            }
        ),
        (any::<u32>(), name(), name(), any::<u8>(), proptest::collection::vec(column(), 0..8)).prop_map(
            |(id, namespace, name, replica_identity, columns)| {
                PgOutputMessage::Relation(Relation { id, namespace, name, replica_identity, columns })
            }
        ),
        (any::<u32>(), proptest::collection::vec(value(), 0..8))
            .prop_map(|(relation_id, values)| PgOutputMessage::Insert { relation_id, values }),
        (any::<bool>(), any::<u64>(), "realtime:[a-z]{0,10}", proptest::collection::vec(any::<u8>(), 0..128))
            .prop_map(|(transactional, lsn, prefix, content)| PgOutputMessage::Message {
                transactional,
                lsn,
                prefix,
                content: Bytes::from(content)
            }),
    ]
}

fn encode(m: &PgOutputMessage) -> Vec<u8> {
    let mut b = Vec::new();
    match m {
        PgOutputMessage::Begin { final_lsn, commit_time_micros, xid } => {
            b.push(b'B');
            b.extend_from_slice(&final_lsn.to_be_bytes());
            b.extend_from_slice(&commit_time_micros.to_be_bytes());
            b.extend_from_slice(&xid.to_be_bytes());
        }
        PgOutputMessage::Commit { flags, commit_lsn, end_lsn, commit_time_micros } => {
            b.push(b'C');
            b.push(*flags);
            b.extend_from_slice(&commit_lsn.to_be_bytes());
            b.extend_from_slice(&end_lsn.to_be_bytes());
            b.extend_from_slice(&commit_time_micros.to_be_bytes());
        }
        PgOutputMessage::Relation(r) => {
            b.push(b'R');
            b.extend_from_slice(&r.id.to_be_bytes());
            cstr(&mut b, &r.namespace);
            cstr(&mut b, &r.name);
            b.push(r.replica_identity);
            b.extend_from_slice(&(r.columns.len() as u16).to_be_bytes());
            for c in &r.columns {
                b.push(c.flags);
                cstr(&mut b, &c.name);
                b.extend_from_slice(&c.type_oid.to_be_bytes());
                b.extend_from_slice(&c.type_modifier.to_be_bytes());
            }
        }
        PgOutputMessage::Insert { relation_id, values } => {
            b.push(b'I');
            b.extend_from_slice(&relation_id.to_be_bytes());
            b.push(b'N');
            b.extend_from_slice(&(values.len() as u16).to_be_bytes());
            for v in values {
                let (kind, data) = match v {
                    TupleValue::Null => (b'n', None),
                    TupleValue::UnchangedToast => (b'u', None),
                    TupleValue::Text(d) => (b't', Some(d)),
                    TupleValue::Binary(d) => (b'b', Some(d)),
                };
                b.push(kind);
                if let Some(d) = data {
                    b.extend_from_slice(&(d.len() as u32).to_be_bytes());
                    b.extend_from_slice(d);
                }
            }
        }
        PgOutputMessage::Message { transactional, lsn, prefix, content } => {
            b.push(b'M');
            b.push(u8::from(*transactional));
            b.extend_from_slice(&lsn.to_be_bytes());
            cstr(&mut b, prefix);
            b.extend_from_slice(&(content.len() as u32).to_be_bytes());
            b.extend_from_slice(content);
        }
        other => unreachable!("not generated: {other:?}"),
    }
    b
}

/// Decodes `bytes`: a value or an error with a short message, never a panic.
fn decodes_or_refuses(bytes: Vec<u8>) {
    if let Err(e) = decode(&Bytes::from(bytes)) {
        prop_assert_bounded(&e.to_string());
    }
}

fn prop_assert_bounded(error: &str) {
    assert!(!error.is_empty() && error.len() <= MAX_ERROR, "error of {} bytes: {error:.200}", error.len());
}

proptest! {
    #[test]
    fn proptest_pgoutput_messages_decode_back_to_themselves(m in message()) {
        prop_assert_eq!(decode(&Bytes::from(encode(&m))).unwrap(), m);
    }

    #[test]
    fn proptest_pgoutput_random_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decodes_or_refuses(bytes);
    }

    #[test]
    fn proptest_pgoutput_mutated_messages_decode_or_are_refused(bytes in message().prop_flat_map(|m| mutated_bytes(encode(&m)))) {
        decodes_or_refuses(bytes);
    }

    #[test]
    fn proptest_logical_message_bodies_parse_or_are_refused(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            mutated_bytes(br#"{"channel":"c","event":"e","payload":{"a":[1,2]},"sender_id":"u"}"#.to_vec()),
            mutated_bytes(br#"{"op":"track","channel":"c","conn":"r.1","relay":"r","presence_id":"p","user_id":null,"state":{}}"#.to_vec()),
        ]
    ) {
        if let Err(e) = ephemeral_from_body(&body) {
            prop_assert_bounded(&e.to_string());
        }
        if let Err(e) = PresenceOp::parse(&body) {
            prop_assert_bounded(&e);
        }
    }
}

#[test]
fn a_short_message_announcing_many_values_or_columns_is_refused() {
    let insert = [b'I', 0, 0, 0, 1, b'N', 0xff, 0xff];
    assert!(
        matches!(decode(&Bytes::copy_from_slice(&insert)), Err(e) if e.to_string().contains("truncated"))
    );
    let mut relation = vec![b'R', 0, 0, 0, 1];
    relation.extend_from_slice(b"realtime\0messages\0d\xff\xff");
    assert!(decode(&Bytes::from(relation)).is_err());
}
