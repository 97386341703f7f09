//! `postgres_changes` bindings (sans-IO): reading a join's bindings, matching a row change
//! against them (event and `filter`), and the `postgres_changes` payload supabase-js reads.
//!
//! A table's changes reach the relay as messages of the channel `changes:<schema>.<table>`,
//! published by `realtime.watch_table` (payload `{operation, schema, table, record,
//! old_record}`); see docs/supabase.md.

use serde_json::Value;

/// The relay channel that carries `schema.table`'s changes.
pub fn channel_of(schema: &str, table: &str) -> String {
    format!("changes:{schema}.{table}")
}

/// Which operations a binding wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    All,
    One(String),
}

/// A filter comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
}

/// `column=op.value` (for `in`, `column=in.(a,b)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub column: String,
    pub op: Op,
    pub values: Vec<String>,
}

/// One binding of a join, with the id the join reply gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub id: u64,
    pub schema: String,
    pub table: String,
    pub wanted: Wanted,
    pub filter: Option<Filter>,
    /// The binding as the client sent it (echoed with `id` in the join reply).
    pub sent: Value,
}

fn string<'a>(b: &'a Value, key: &str) -> Result<Option<&'a str>, String> {
    match b.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("postgres_changes '{key}' must be a string")),
    }
}

/// Parses `col=op.value`.
pub fn parse_filter(text: &str) -> Result<Filter, String> {
    let bad = || format!("filter '{text}' is not column=op.value (op: eq, neq, lt, lte, gt, gte, in)");
    let (column, rest) = text.split_once('=').ok_or_else(bad)?;
    let (op, value) = rest.split_once('.').ok_or_else(bad)?;
    let op = match op {
        "eq" => Op::Eq,
        "neq" => Op::Neq,
        "lt" => Op::Lt,
        "lte" => Op::Lte,
        "gt" => Op::Gt,
        "gte" => Op::Gte,
        "in" => Op::In,
        _ => return Err(bad()),
    };
    if column.is_empty() {
        return Err(bad());
    }
    let values = if op == Op::In {
        let inner = value.strip_prefix('(').and_then(|v| v.strip_suffix(')')).ok_or_else(bad)?;
        inner.split(',').map(|v| v.trim().trim_matches('"').to_string()).collect()
    } else {
        vec![value.to_string()]
    };
    Ok(Filter { column: column.to_string(), op, values })
}

/// Reads a join's `postgres_changes` list; ids are `first_id`, `first_id + 1`, ...
pub fn parse_bindings(list: &[Value], first_id: u64) -> Result<Vec<Binding>, String> {
    list.iter()
        .enumerate()
        .map(|(i, b)| {
            if !b.is_object() {
                return Err("each postgres_changes binding must be an object".into());
            }
            let wanted = match string(b, "event")?.unwrap_or("*") {
                "*" => Wanted::All,
                e @ ("INSERT" | "UPDATE" | "DELETE") => Wanted::One(e.to_string()),
                other => {
                    return Err(format!(
                        "postgres_changes event '{other}' is not *, INSERT, UPDATE or DELETE"
                    ))
                }
            };
            let schema = string(b, "schema")?.unwrap_or("public");
            let table = string(b, "table")?
                .filter(|t| *t != "*")
                .ok_or("postgres_changes needs a 'table' (all tables at once, '*', is not supported)")?;
            if schema == "*" {
                return Err("postgres_changes needs a 'schema' ('*' is not supported)".into());
            }
            let filter = string(b, "filter")?.filter(|f| !f.is_empty()).map(parse_filter).transpose()?;
            Ok(Binding {
                id: first_id + i as u64,
                schema: schema.into(),
                table: table.into(),
                wanted,
                filter,
                sent: b.clone(),
            })
        })
        .collect()
}

/// The join reply's `postgres_changes`: the bindings as sent, each with its `id`.
pub fn reply_list(bindings: &[Binding]) -> Value {
    Value::Array(
        bindings
            .iter()
            .map(|b| {
                let mut v = b.sent.clone();
                v["id"] = Value::from(b.id);
                v
            })
            .collect(),
    )
}

/// The text a filter compares: strings as they are, other JSON as its text.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn compare(a: &Value, b: &str) -> Option<std::cmp::Ordering> {
    match (a.as_f64(), b.parse::<f64>()) {
        (Some(x), Ok(y)) => x.partial_cmp(&y),
        _ => Some(text(a).as_str().cmp(b)),
    }
}

impl Filter {
    /// Whether `row` passes; a missing or null column passes only `neq`.
    pub fn passes(&self, row: &Value) -> bool {
        use std::cmp::Ordering::*;
        let Some(v) = row.get(&self.column).filter(|v| !v.is_null()) else { return self.op == Op::Neq };
        let first = &self.values[0];
        match self.op {
            Op::Eq => text(v) == *first,
            Op::Neq => text(v) != *first,
            Op::In => self.values.contains(&text(v)),
            Op::Lt => compare(v, first) == Some(Less),
            Op::Lte => matches!(compare(v, first), Some(Less | Equal)),
            Op::Gt => compare(v, first) == Some(Greater),
            Op::Gte => matches!(compare(v, first), Some(Greater | Equal)),
        }
    }
}

/// Whether `b` wants a change of `schema.table` by `operation` whose row (the new one, the old
/// one for DELETE) is `row`.
fn matches_row(b: &Binding, operation: &str, schema: &str, table: &str, row: &Value) -> bool {
    let op_ok = match &b.wanted {
        Wanted::All => matches!(operation, "INSERT" | "UPDATE" | "DELETE"),
        Wanted::One(e) => e == operation,
    };
    op_ok && b.schema == schema && b.table == table && b.filter.as_ref().is_none_or(|f| f.passes(row))
}

/// [`Change::matches`] on a parsed `watch_table` payload (what the visibility gate asks before
/// checking a row for this connection).
pub fn wants(b: &Binding, change: &Value) -> bool {
    let s = |k: &str| change.get(k).and_then(Value::as_str).unwrap_or_default();
    let operation = s("operation");
    let key = if operation == "DELETE" { "old_record" } else { "record" };
    matches_row(b, operation, s("schema"), s("table"), change.get(key).unwrap_or(&Value::Null))
}

/// A row change as `watch_table` publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub operation: String,
    pub schema: String,
    pub table: String,
    pub record: Value,
    pub old_record: Value,
}

impl Change {
    /// Reads a `watch_table` payload; None for anything else.
    pub fn parse(payload: &str) -> Option<Change> {
        let v: Value = serde_json::from_str(payload).ok()?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Change {
            operation: s("operation")?,
            schema: s("schema")?,
            table: s("table")?,
            record: v.get("record").cloned().unwrap_or(Value::Null),
            old_record: v.get("old_record").cloned().unwrap_or(Value::Null),
        })
    }

    /// Whether `b` wants this change: its table, operation and filter (on the new row, the old
    /// one for DELETE).
    pub fn matches(&self, b: &Binding) -> bool {
        let row = if self.operation == "DELETE" { &self.old_record } else { &self.record };
        matches_row(b, &self.operation, &self.schema, &self.table, row)
    }

    /// The `postgres_changes` payload for the bindings `ids`.
    pub fn payload(&self, ids: &[u64], commit_timestamp: Option<&str>) -> String {
        serde_json::json!({
            "ids": ids,
            "data": {
                "schema": self.schema, "table": self.table, "commit_timestamp": commit_timestamp,
                "type": self.operation, "record": self.record, "old_record": self.old_record,
                "columns": [], "errors": null,
            }
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn filters_of_each_operator() {
        let row = json!({"id": 5, "owner": "alice", "n": null});
        let f = |t: &str| parse_filter(t).unwrap().passes(&row);
        assert!(f("id=eq.5") && !f("id=eq.6") && f("owner=eq.alice"));
        assert!(f("id=neq.6") && !f("id=neq.5") && f("n=neq.1") && f("missing=neq.1"));
        assert!(
            f("id=lt.10") && !f("id=lt.5") && f("id=lte.5") && f("id=gt.4") && !f("id=gt.5") && f("id=gte.5")
        );
        assert!(f("id=lt.10"), "numeric, not text, comparison (\"5\" > \"10\" as text)");
        assert!(f("owner=in.(bob,alice)") && !f("owner=in.(bob)") && f("id=in.(1,5)"));
        assert!(!f("n=eq.null") && !f("missing=eq.x"));
        for bad in ["id", "id=eq", "id=like.x", "=eq.1", "id=in.1,2"] {
            assert!(parse_filter(bad).unwrap_err().contains("column=op.value"), "{bad}");
        }
    }

    #[test]
    fn bindings_get_ids_in_order_and_the_reply_echoes_them() {
        let sent = vec![
            json!({"event": "INSERT", "schema": "public", "table": "todos", "filter": "owner=eq.alice"}),
            json!({"event": "*", "schema": "public", "table": "todos"}),
        ];
        let b = parse_bindings(&sent, 7).unwrap();
        assert_eq!((b[0].id, b[1].id), (7, 8));
        assert_eq!(b[0].wanted, Wanted::One("INSERT".into()));
        assert_eq!(
            reply_list(&b),
            json!([
                {"event": "INSERT", "schema": "public", "table": "todos", "filter": "owner=eq.alice", "id": 7},
                {"event": "*", "schema": "public", "table": "todos", "id": 8},
            ])
        );
        assert!(parse_bindings(&[json!({"event": "*", "schema": "public"})], 1)
            .unwrap_err()
            .contains("'table'"));
        assert!(parse_bindings(&[json!({"event": "*", "schema": "*", "table": "t"})], 1)
            .unwrap_err()
            .contains("schema"));
        assert!(parse_bindings(&[json!({"event": "TRUNCATE", "table": "t"})], 1)
            .unwrap_err()
            .contains("TRUNCATE"));
        assert!(parse_bindings(&[json!({"table": "t", "filter": "x"})], 1)
            .unwrap_err()
            .contains("filter 'x'"));
        assert!(parse_bindings(&[json!(1)], 1).is_err());
    }

    #[test]
    fn changes_match_by_table_operation_and_filter_on_the_right_row() {
        let c = Change::parse(
            r#"{"operation":"DELETE","schema":"public","table":"todos","record":null,"old_record":{"id":1,"owner":"bob"}}"#,
        )
        .unwrap();
        let b = |v: Value| parse_bindings(&[v], 1).unwrap().remove(0);
        assert!(c.matches(&b(json!({"table": "todos", "filter": "owner=eq.bob"}))));
        assert!(!c.matches(&b(json!({"table": "todos", "filter": "owner=eq.alice"}))));
        assert!(!c.matches(&b(json!({"event": "INSERT", "table": "todos"}))));
        assert!(!c.matches(&b(json!({"table": "other"}))));
        let parsed: Value = serde_json::from_str(
            r#"{"operation":"DELETE","schema":"public","table":"todos","record":null,"old_record":{"id":1,"owner":"bob"}}"#,
        )
        .unwrap();
        for binding in [
            json!({"table": "todos", "filter": "owner=eq.bob"}),
            json!({"table": "todos", "filter": "owner=eq.alice"}),
            json!({"event": "INSERT", "table": "todos"}),
        ] {
            assert_eq!(
                wants(&b(binding.clone()), &parsed),
                c.matches(&b(binding)),
                "the gate asks what the encoder matches"
            );
        }
        let p: Value = serde_json::from_str(&c.payload(&[1, 3], Some("2026-12-04T12:00:00Z"))).unwrap();
        assert_eq!(p["ids"], json!([1, 3]));
        assert_eq!(p["data"]["type"], "DELETE");
        assert_eq!(p["data"]["old_record"], json!({"id": 1, "owner": "bob"}));
        assert_eq!(p["data"]["columns"], json!([]));
        assert!(Change::parse(r#"{"a":1}"#).is_none());
        assert_eq!(channel_of("public", "todos"), "changes:public.todos");
    }
}
