//! The pure part of a table's gate (sans IO): subscribers grouped by identity, which
//! identities and rows a batch of changes must check in its one round trip, what each
//! subscriber then gets of each change, and the row keys and reduced old rows sent.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::core::Cursor;

/// A change's operation, as far as visibility goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Insert,
    Update,
    Delete,
    /// Anything else (`TRUNCATE`): never delivered as a row change.
    Other,
}

impl Op {
    /// The operation of a parsed `watch_table` payload.
    pub fn of(change: &Value) -> Op {
        match change.get("operation").and_then(Value::as_str) {
            Some("INSERT") => Op::Insert,
            Some("UPDATE") => Op::Update,
            Some("DELETE") => Op::Delete,
            _ => Op::Other,
        }
    }

    /// Whether the row exists after the change, so it can be checked by key.
    pub fn checkable(self) -> bool {
        matches!(self, Op::Insert | Op::Update)
    }
}

/// The cursor just before stored message `c`: reading the log after it starts with `c`, and
/// nothing of an earlier commit or earlier in `c`'s commit is read again. Where a subscriber
/// that could not take `c` catches up from.
pub fn just_before(c: Cursor) -> Cursor {
    Cursor::new(c.commit_lsn, c.seq - 1)
}

/// What one identity may do with the table (from a check, cached briefly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// Its role may SELECT the table.
    pub selectable: bool,
    /// Row-level security applies to it: rows are checked one by one.
    pub row_security: bool,
}

/// How a change goes to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// As published.
    Full,
    /// With `old_record` cut down to the primary key: row security applies and the old row
    /// cannot be checked (it is gone, or no longer what the table holds).
    Reduced,
    /// Not at all.
    Hidden,
}

/// What a subscriber of an identity with `access` gets of a change `op` whose row its policies
/// let it see (`visible`, meaningful only for checked rows).
pub fn verdict(op: Op, access: Access, visible: bool) -> Verdict {
    if !access.selectable {
        return Verdict::Hidden;
    }
    match (op, access.row_security) {
        (Op::Other, _) => Verdict::Hidden,
        (_, false) => Verdict::Full,
        // Supabase's rule: a delete reaches everyone allowed on the table, with the key only.
        (Op::Delete, true) => Verdict::Reduced,
        (Op::Insert, true) if visible => Verdict::Full,
        (Op::Update, true) if visible => Verdict::Reduced,
        (Op::Insert | Op::Update, true) => Verdict::Hidden,
    }
}

/// Claims that differ between tokens of one sign-in (each connection may hold its own token):
/// left out when sessions are grouped into identities, so all of a user's sessions share one
/// check. Row policies should not depend on them.
pub const TIMING_CLAIMS: [&str; 4] = ["exp", "iat", "nbf", "jti"];

/// The claims by which sessions are grouped: `claims` without [`TIMING_CLAIMS`] (the text as
/// it is when it is not a JSON object).
pub fn shareable_claims(claims: &str) -> String {
    match serde_json::from_str::<Value>(claims) {
        Ok(Value::Object(mut map)) => {
            TIMING_CLAIMS.iter().for_each(|c| {
                map.remove(*c);
            });
            Value::Object(map).to_string()
        }
        _ => claims.to_string(),
    }
}

/// Subscribers grouped by identity: the distinct identities in first-seen order, and for each
/// subscriber the index of its identity.
pub fn group<K: Clone + Eq + std::hash::Hash>(keys: &[K]) -> (Vec<K>, Vec<usize>) {
    let mut index: HashMap<&K, usize> = HashMap::new();
    let mut distinct = Vec::new();
    let of = keys
        .iter()
        .map(|k| {
            *index.entry(k).or_insert_with(|| {
                distinct.push(k.clone());
                distinct.len() - 1
            })
        })
        .collect();
    (distinct, of)
}

/// The one round trip a batch needs: the identities to ask about and the changes whose rows
/// are checked for them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Needed {
    /// Identities (group indexes), ascending.
    pub groups: Vec<usize>,
    /// Changes (indexes into the batch), in commit order.
    pub changes: Vec<usize>,
}

/// Which identities and rows a batch must check. `ops[c]` is change `c`'s operation,
/// `wanted[g][c]` whether some subscriber of identity `g` wants it (its bindings and filters),
/// `known[g]` the identity's access when fresh. An identity is asked about when its access is
/// not known, or when row security applies to it and it wants an insert or update; one that
/// wants nothing is never asked about, and one known to see the whole table needs no round trip.
pub fn needed(ops: &[Op], wanted: &[Vec<bool>], known: &[Option<Access>]) -> Needed {
    let mut rows = vec![false; ops.len()];
    let mut groups = Vec::new();
    for (g, w) in wanted.iter().enumerate() {
        let checkable = |c: usize| w[c] && ops[c].checkable();
        let ask = match known.get(g).copied().flatten() {
            None => w.iter().any(|x| *x),
            Some(a) => a.selectable && a.row_security && (0..ops.len()).any(checkable),
        };
        if ask {
            groups.push(g);
            (0..ops.len()).filter(|c| checkable(*c)).for_each(|c| rows[c] = true);
        }
    }
    let changes = (0..ops.len()).filter(|c| rows[*c]).collect();
    Needed { groups, changes }
}

/// The primary-key columns of `row` (`{"id": 7}`); None when there is no key or the row lacks
/// one of its columns.
pub fn key_of(row: &Value, pk: &[String]) -> Option<Value> {
    if pk.is_empty() {
        return None;
    }
    let mut key = Map::new();
    for column in pk {
        let v = row.get(column).filter(|v| !v.is_null())?;
        key.insert(column.clone(), v.clone());
    }
    Some(Value::Object(key))
}

/// The change with `old_record` cut down to the primary key (`{}` without one): what
/// subscribers under row security get of an update or delete.
pub fn reduced(change: &Value, pk: &[String]) -> Value {
    let mut out = change.clone();
    if let Some(old) = out.get_mut("old_record").filter(|o| !o.is_null()) {
        *old = key_of(old, pk).unwrap_or_else(|| Value::Object(Map::new()));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const RLS: Access = Access { selectable: true, row_security: true };
    const OPEN: Access = Access { selectable: true, row_security: false };
    const NONE: Access = Access { selectable: false, row_security: false };

    #[test]
    fn verdicts_follow_supabase_rules_under_row_security() {
        use Verdict::*;
        assert_eq!(verdict(Op::Insert, RLS, true), Full);
        assert_eq!(verdict(Op::Insert, RLS, false), Hidden, "a hidden row is never delivered");
        assert_eq!(verdict(Op::Update, RLS, true), Reduced, "the old row was not checked");
        assert_eq!(verdict(Op::Update, RLS, false), Hidden);
        assert_eq!(verdict(Op::Delete, RLS, false), Reduced, "deletes go out with the key only");
        for op in [Op::Insert, Op::Update, Op::Delete] {
            assert_eq!(verdict(op, OPEN, false), Full, "no row security: the whole change");
            assert_eq!(verdict(op, NONE, true), Hidden, "no SELECT privilege: nothing");
        }
        assert_eq!(verdict(Op::Other, OPEN, true), Hidden);
        assert_eq!(Op::of(&json!({"operation": "TRUNCATE"})), Op::Other);
        assert_eq!(Op::of(&json!({"operation": "DELETE"})), Op::Delete);
    }

    #[test]
    fn catch_up_starts_just_before_the_first_missed_change() {
        let missed = Cursor::new(0x10, 1);
        let from = just_before(missed);
        assert!(from < missed, "the missed change is read back");
        assert!(Cursor::end_of_commit(0x0f) < from, "nothing of an earlier commit is read again");
        let later = Cursor::new(0x20, 7);
        assert!(Cursor::new(0x20, 6) < later && just_before(later) == Cursor::new(0x20, 6));
    }

    #[test]
    fn subscribers_of_one_identity_share_a_group() {
        let keys = ["alice", "bob", "alice", "carol", "bob"];
        let (distinct, of) = group(&keys);
        assert_eq!(distinct, ["alice", "bob", "carol"]);
        assert_eq!(of, [0, 1, 0, 2, 1]);
        assert_eq!(group::<&str>(&[]), (vec![], vec![]));
    }

    #[test]
    fn tokens_of_one_sign_in_share_an_identity_and_other_claims_do_not() {
        let a = shareable_claims(r#"{"sub":"alice","role":"authenticated","exp":100,"iat":1,"jti":"x"}"#);
        let b = shareable_claims(r#"{"sub":"alice","role":"authenticated","exp":200,"iat":2,"nbf":2}"#);
        let other = shareable_claims(r#"{"sub":"alice","role":"authenticated","exp":100,"tenant":"t2"}"#);
        assert_eq!(a, b);
        assert_ne!(a, other, "any other claim may matter to a policy");
        assert_eq!(shareable_claims("not json"), "not json");
    }

    #[test]
    fn a_batch_checks_only_the_identities_and_rows_that_need_it() {
        let ops = [Op::Insert, Op::Delete, Op::Update, Op::Insert];
        let wanted = vec![
            vec![true, true, false, false],   // 0: RLS, wants insert 0 and the delete
            vec![false, true, false, false],  // 1: RLS, wants only the delete: nothing to check
            vec![true, true, true, true],     // 2: sees the whole table: no round trip
            vec![false, false, false, true],  // 3: access unknown: asked about
            vec![false, false, false, false], // 4: unknown but wants nothing
            vec![true, false, true, false],   // 5: no privilege: ends, never asked about
        ];
        let known = [Some(RLS), Some(RLS), Some(OPEN), None, None, Some(NONE)];
        let n = needed(&ops, &wanted, &known);
        assert_eq!(n.groups, [0, 3]);
        assert_eq!(n.changes, [0, 3], "the delete is never checked");
        assert_eq!(needed(&ops, &wanted[2..3], &known[2..3]), Needed::default(), "no round trip at all");
    }

    #[test]
    fn keys_and_reduced_old_rows_hold_only_the_primary_key() {
        let pk = vec!["org".to_string(), "id".to_string()];
        let row = json!({"id": 7, "org": "acme", "owner": "alice", "secret": "x"});
        assert_eq!(key_of(&row, &pk), Some(json!({"org": "acme", "id": 7})));
        assert_eq!(key_of(&json!({"id": 7}), &pk), None, "a key column is missing");
        assert_eq!(key_of(&json!({"id": 7, "org": null}), &pk), None);
        assert_eq!(key_of(&row, &[]), None, "no primary key");
        let change = json!({"operation": "UPDATE", "record": row, "old_record": row});
        let r = reduced(&change, &pk);
        assert_eq!(r["old_record"], json!({"org": "acme", "id": 7}));
        assert_eq!(r["record"], row, "the new row was checked and stays whole");
        let insert = json!({"operation": "INSERT", "record": row, "old_record": null});
        assert_eq!(reduced(&insert, &pk), insert);
        assert_eq!(reduced(&change, &[])["old_record"], json!({}));
    }
}
