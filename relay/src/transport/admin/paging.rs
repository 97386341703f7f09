//! Pages of rows: a list is read with one row more than a page shows ([`ask`]), so whether a
//! next page exists costs no second query ([`split`]).

/// Rows to read for a page of `limit`.
pub fn ask(limit: i64) -> i64 {
    limit.saturating_add(1)
}

/// The page (at most `limit` rows) of what [`ask`] read, and whether there are more.
pub fn split<T>(mut rows: Vec<T>, limit: i64) -> (Vec<T>, bool) {
    let limit = usize::try_from(limit).unwrap_or(0);
    let more = rows.len() > limit;
    rows.truncate(limit);
    (rows, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_cut_at_its_limit_and_says_whether_more_were_read() {
        assert_eq!(split((0..ask(3)).collect(), 3), (vec![0, 1, 2], true));
        assert_eq!(split(vec![0, 1, 2], 3), (vec![0, 1, 2], false));
        assert_eq!(split(Vec::<i64>::new(), 3), (vec![], false));
    }
}
