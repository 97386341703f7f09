//! In-database tests (`#[pg_test]`) of `realtime.publish`'s per-backend cache and size check:
//! channel and config changes are seen by the same transaction at its next statement, forgotten
//! when rolled back, and seen by other backends once committed (through `dblink`, in a database
//! of their own so no other test sees those commits).
//!
//! Each test runs in its own transaction that is rolled back; tests may run concurrently, so each
//! uses its own channel prefix.

#[pgrx::pg_schema]
mod tests {
    use crate::pg_test_sql::{one, run, try_sql};
    use pgrx::prelude::*;

    fn published(channel: &str) -> bool {
        one::<String>(&format!("SELECT realtime.publish('{channel}', 'e')::text")).is_some()
    }

    #[pg_test]
    fn channel_inserted_in_the_same_transaction_is_matched_by_the_next_publish() {
        assert!(!published("p01:a"), "no channel yet (and the miss is now cached)");
        run("INSERT INTO realtime.channels (pattern) VALUES ('p01:%')");
        assert!(published("p01:a"));
        run("INSERT INTO realtime.channels (pattern) VALUES ('p01:a')");
        let exact = one::<i64>("SELECT id FROM realtime.channels WHERE pattern = 'p01:a'");
        let msg = one::<String>("SELECT realtime.publish('p01:a', 'e')::text").unwrap();
        let got = one::<i64>(&format!("SELECT channel_id FROM realtime.messages WHERE id = '{msg}'"));
        assert_eq!(got, exact, "the exact row added later wins at once");
    }

    #[pg_test]
    fn disabling_or_deleting_a_channel_stops_matching_at_the_next_statement() {
        run("INSERT INTO realtime.channels (pattern) VALUES ('p02:%'), ('p02:x')");
        assert!(published("p02:x"));
        assert!(published("p02:y"));
        run("UPDATE realtime.channels SET enabled = false WHERE pattern = 'p02:%'");
        assert!(!published("p02:y"));
        assert!(published("p02:x"));
        run("DELETE FROM realtime.channels WHERE pattern = 'p02:x'");
        assert!(!published("p02:x"));
    }

    #[pg_test]
    fn webhook_url_changes_update_the_webhook_audience() {
        run("INSERT INTO realtime.channels (pattern) VALUES ('p03:%')");
        assert!(published("p03:x"));
        run("UPDATE realtime.channels SET webhook_urls = '{http://a.example/h}' WHERE pattern = 'p03:%'");
        let msg = one::<String>("SELECT realtime.publish('p03:x', 'e')::text").unwrap();
        let n = one::<i32>(&format!("SELECT wh_audience_count FROM realtime.messages WHERE id = '{msg}'"));
        assert_eq!(n, Some(1));
    }

    #[pg_test]
    fn rolled_back_channel_insert_is_not_matched_afterwards() {
        // a subtransaction that adds a channel, publishes to it (caching the match), then fails
        run("DO $$ BEGIN \
                 INSERT INTO realtime.channels (pattern) VALUES ('p04:%'); \
                 IF realtime.publish('p04:x', 'e') IS NULL THEN RAISE EXCEPTION 'not matched'; END IF; \
                 RAISE EXCEPTION 'roll back'; \
             EXCEPTION WHEN raise_exception THEN \
                 IF SQLERRM <> 'roll back' THEN RAISE; END IF; \
             END $$");
        assert_eq!(one::<i64>("SELECT count(*) FROM realtime.channels WHERE pattern = 'p04:%'"), Some(0));
        assert!(!published("p04:x"), "the rolled-back channel must not stay cached");
    }

    #[pg_test]
    fn rolled_back_channel_disable_keeps_matching() {
        run("INSERT INTO realtime.channels (pattern) VALUES ('p05:%')");
        run("DO $$ BEGIN \
                 UPDATE realtime.channels SET enabled = false WHERE pattern = 'p05:%'; \
                 IF realtime.publish('p05:x', 'e') IS NOT NULL THEN RAISE EXCEPTION 'matched'; END IF; \
                 RAISE EXCEPTION 'roll back'; \
             EXCEPTION WHEN raise_exception THEN \
                 IF SQLERRM <> 'roll back' THEN RAISE; END IF; \
             END $$");
        assert!(published("p05:x"));
    }

    #[pg_test]
    fn payload_just_under_and_just_over_the_limit() {
        run("INSERT INTO realtime.channels (pattern) VALUES ('p06:%')");
        // 100 control characters: ~120 bytes of jsonb, 609 bytes of text ({"a": "\u0001..."})
        let payload = "jsonb_build_object('a', repeat(chr(1), 100))";
        assert_eq!(one::<i32>(&format!("SELECT octet_length({payload}::text)")), Some(609));
        run("UPDATE realtime.config SET max_payload_bytes = 609");
        assert_eq!(try_sql(&format!("SELECT realtime.publish('p06:x', 'e', {payload})")), "ok");
        run("UPDATE realtime.config SET max_payload_bytes = 608");
        assert_eq!(
            try_sql(&format!("SELECT realtime.publish('p06:x', 'e', {payload})")),
            "54000: realtime: payload is 609 bytes, over the limit of 608 bytes \
             (realtime.config.max_payload_bytes)"
        );
        // plain text: {"a": "xxx...x"} is 7 + 1000 + 2 = 1009 bytes
        let plain = "jsonb_build_object('a', repeat('x', 1000))";
        assert_eq!(one::<i32>(&format!("SELECT octet_length({plain}::text)")), Some(1009));
        run("UPDATE realtime.config SET max_payload_bytes = 1009");
        assert_eq!(try_sql(&format!("SELECT realtime.publish('p06:x', 'e', {plain})")), "ok");
        run("UPDATE realtime.config SET max_payload_bytes = 1008");
        assert_eq!(
            try_sql(&format!("SELECT realtime.publish('p06:x', 'e', {plain})")),
            "54000: realtime: payload is 1009 bytes, over the limit of 1008 bytes \
             (realtime.config.max_payload_bytes)"
        );
    }

    #[pg_test]
    fn publish_does_not_depend_on_the_callers_search_path() {
        run("INSERT INTO realtime.channels (pattern) VALUES ('p07:%')");
        run("CREATE TEMP TABLE messages (id uuid)");
        run("SET LOCAL search_path = pg_temp, public");
        assert!(published("p07:x"));
        run("SET LOCAL search_path = ''");
        assert!(published("p07:x"));
        assert_eq!(one::<i64>("SELECT count(*) FROM realtime.messages WHERE channel = 'p07:x'"), Some(2));
        assert_eq!(one::<i64>("SELECT count(*) FROM pg_temp.messages"), Some(0));
    }

    /// Runs `sql` on dblink connection `conn`; returns `ok` or the remote error message.
    fn remote(conn: &str, sql: &str) -> String {
        let status =
            Spi::get_one_with_args::<String>("SELECT dblink_exec($1, $2, false)", &[conn.into(), sql.into()])
                .unwrap()
                .unwrap_or_default();
        if status == "ERROR" {
            Spi::get_one_with_args::<String>("SELECT dblink_error_message($1)", &[conn.into()])
                .unwrap()
                .unwrap_or_default()
        } else {
            "ok".into()
        }
    }

    /// Runs query `sql` (one text column) on connection `conn`; returns `OK` or the error text.
    fn remote_query(conn: &str, sql: &str) -> String {
        run(&format!("SELECT count(*) FROM dblink('{conn}', $q${sql}$q$, false) AS t(x text)"));
        Spi::get_one_with_args::<String>("SELECT dblink_error_message($1)", &[conn.into()])
            .unwrap()
            .unwrap_or_default()
    }

    /// Whether `realtime.publish(channel, 'e')` returned an id on connection `conn`.
    fn remote_published(conn: &str, channel: &str) -> bool {
        let sql = format!(
            "SELECT x FROM dblink('{conn}', 'SELECT realtime.publish(''{channel}'', ''e'')::text') AS t(x text)"
        );
        one::<String>(&sql).is_some()
    }

    #[pg_test]
    fn committed_channel_and_config_changes_reach_other_backends() {
        run("CREATE EXTENSION IF NOT EXISTS dblink");
        let base = one::<String>(
            "SELECT format('host=localhost port=%s user=%s', current_setting('port'), current_user)",
        )
        .unwrap();
        let admin = format!("{base} dbname={}", one::<String>("SELECT current_database()::text").unwrap());
        let db = "realtime_publish_cache_test";
        assert_eq!(remote(&admin, &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")), "ok");
        assert_eq!(remote(&admin, &format!("CREATE DATABASE {db}")), "ok");
        let target = format!("{base} dbname={db}");
        run(&format!("SELECT dblink_connect('a', '{target}')"));
        run(&format!("SELECT dblink_connect('b', '{target}')"));
        assert_eq!(remote("a", "CREATE EXTENSION realtime"), "ok");
        assert_eq!(remote("a", "SET client_min_messages = error"), "ok");
        assert_eq!(remote("b", "SET client_min_messages = error"), "ok");

        // b caches a miss, a adds the channel and commits: b's next publish matches
        assert!(!remote_published("b", "r:1"));
        assert_eq!(remote("a", "INSERT INTO realtime.channels (pattern) VALUES ('r:%')"), "ok");
        assert!(remote_published("b", "r:1"));

        // config: b caches the default limit, a lowers it and commits
        let big = "SELECT realtime.publish('r:1', 'e', '{\"a\":\"0123456789abc\"}')::text";
        assert_eq!(remote_query("b", big), "OK");
        assert_eq!(remote("a", "UPDATE realtime.config SET max_payload_bytes = 20"), "ok");
        let err = remote_query("b", big);
        assert!(err.contains("realtime: payload is 22 bytes, over the limit of 20 bytes"), "got {err:?}");

        // uncommitted changes of a are not seen by b; a rollback is forgotten by a too
        assert_eq!(remote("a", "BEGIN"), "ok");
        assert_eq!(remote("a", "UPDATE realtime.channels SET enabled = false"), "ok");
        assert!(!remote_published("a", "r:1"));
        assert!(remote_published("b", "r:1"));
        assert_eq!(remote("a", "ROLLBACK"), "ok");
        assert!(remote_published("a", "r:1"));

        // a commit is seen inside b's already open transaction, at its next statement
        assert_eq!(remote("b", "BEGIN"), "ok");
        assert!(!remote_published("b", "s:1"));
        assert_eq!(remote("a", "INSERT INTO realtime.channels (pattern) VALUES ('s:%')"), "ok");
        assert!(remote_published("b", "s:1"));
        assert_eq!(remote("a", "UPDATE realtime.channels SET enabled = false WHERE pattern = 's:%'"), "ok");
        assert!(!remote_published("b", "s:1"));
        assert_eq!(remote("b", "COMMIT"), "ok");

        run("SELECT dblink_disconnect('a')");
        run("SELECT dblink_disconnect('b')");
        assert_eq!(remote(&admin, &format!("DROP DATABASE {db} WITH (FORCE)")), "ok");
    }
}
