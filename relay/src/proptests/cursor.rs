//! Cursors (`pg::cursor`): what clients send as `resume.cursor` and `before`.

use proptest::prelude::*;

use super::{mutated, MAX_ERROR};
use crate::core::{format_pg_lsn, parse_pg_lsn, Cursor};

proptest! {
    #[test]
    fn proptest_cursors_round_trip_and_sort_like_their_text(a in any::<(u64, i64)>(), b in any::<(u64, i64)>()) {
        let (x, y) = (Cursor::new(a.0, a.1), Cursor::new(b.0, b.1));
        let (tx, ty) = (x.to_string(), y.to_string());
        prop_assert_eq!(tx.parse::<Cursor>().unwrap(), x);
        prop_assert_eq!(x.cmp(&y), tx.cmp(&ty), "cursor order is text order");
    }

    #[test]
    fn proptest_any_text_parses_only_as_32_lowercase_hex(text in ".{0,64}") {
        match text.parse::<Cursor>() {
            Ok(c) => prop_assert_eq!(c.to_string(), text),
            Err(e) => prop_assert!(!e.to_string().is_empty() && e.to_string().len() <= MAX_ERROR),
        }
    }

    #[test]
    fn proptest_mutated_cursors_parse_back_exactly_or_are_refused(text in any::<(u64, i64)>().prop_flat_map(|(l, s)| mutated(Cursor::new(l, s).to_string()))) {
        if let Ok(c) = text.parse::<Cursor>() {
            prop_assert_eq!(c.to_string(), text);
        }
    }

    #[test]
    fn proptest_pg_lsns_round_trip_and_junk_is_refused(lsn in any::<u64>(), junk in "[0-9A-Fa-f/xg ]{0,24}") {
        prop_assert_eq!(parse_pg_lsn(&format_pg_lsn(lsn)).unwrap(), lsn);
        match parse_pg_lsn(&junk) {
            Ok(v) => prop_assert_eq!(parse_pg_lsn(&format_pg_lsn(v)).unwrap(), v),
            Err(e) => prop_assert!(e.to_string().len() <= MAX_ERROR),
        }
    }
}
