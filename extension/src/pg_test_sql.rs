//! SQL helpers shared by the in-database tests (`pg_tests*.rs`): run a statement, read one
//! value, count, and run a statement catching its error as text.

use pgrx::datum::{FromDatum, IntoDatum};
use pgrx::prelude::*;

/// Runs `sql`; panics with the statement and the error.
pub fn run(sql: &str) {
    Spi::run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The first column of the first row of `sql`.
pub fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
    Spi::get_one::<T>(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A `SELECT count(*) ...`.
pub fn count(sql: &str) -> i64 {
    one::<i64>(sql).expect("count is never NULL")
}

/// Runs `sql` in a subtransaction: `"ok"`, or `"<SQLSTATE>: <message>"` when it raised.
pub fn try_sql(sql: &str) -> String {
    run("CREATE OR REPLACE FUNCTION pg_temp.try_sql(q text) RETURNS text LANGUAGE plpgsql AS $$ \
         BEGIN EXECUTE q; RETURN 'ok'; \
         EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $$");
    Spi::get_one_with_args::<String>("SELECT pg_temp.try_sql($1)", &[sql.into()]).unwrap().unwrap()
}
