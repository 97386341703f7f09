//! In-database tests (`#[pg_test]`, run by `cargo pgrx test`) of the installed SQL surface:
//! publish / broadcast, channel matching, validation, limits, RLS, privileges, retention and
//! the publication.
//!
//! Each test runs in its own transaction that is rolled back, and tests may run concurrently, so
//! every test uses its own channel prefix and role names.

#[pgrx::pg_schema]
mod tests {
    use crate::pg_test_sql::{count, one, run, try_sql};
    use pgrx::prelude::*;

    fn channel(pattern: &str) -> i64 {
        let sql = format!("INSERT INTO realtime.channels (pattern) VALUES ('{pattern}') RETURNING id");
        one::<i64>(&sql).expect("id")
    }

    /// Creates `pg_temp.try_sql(text)`: runs a statement, returns `ok` or `SQLSTATE: message`.
    #[pg_test]
    fn publish_inserts_row_with_matched_channel_id_and_returns_its_uuid() {
        let id = channel("t01:room");
        let msg = one::<String>(r#"SELECT realtime.publish('t01:room', 'said', '{"text":"hi"}')::text"#)
            .expect("a message id");
        let sql = format!(
            "SELECT channel_id FROM realtime.messages WHERE id = '{msg}' AND channel = 't01:room' \
             AND event = 'said' AND payload = '{{\"text\":\"hi\"}}' AND sender_type = 'system' \
             AND wh_audience_count = 0"
        );
        assert_eq!(one::<i64>(&sql), Some(id));
    }

    #[pg_test]
    fn publish_ids_are_time_ordered_uuid_v7() {
        channel("t17:%");
        let a = one::<String>("SELECT realtime.publish('t17:a', 'e')::text").expect("id");
        let b = one::<String>("SELECT pg_sleep(0.002)::text || realtime.publish('t17:b', 'e')::text")
            .expect("id");
        assert_eq!(&a[14..15], "7", "version 7: {a}");
        assert!(a.as_str() < b.as_str(), "a later publish sorts after an earlier one: {a} {b}");
    }

    #[pg_test]
    fn messages_refuse_an_unknown_sender_type() {
        let err = try_sql(
            "INSERT INTO realtime.messages (channel, event, sender_type) VALUES ('t18:x', 'e', 'robot')",
        );
        assert!(err.starts_with("23514: value for domain realtime.sender_kind"), "{err}");
        run("INSERT INTO realtime.messages (channel, event, sender_type) VALUES ('t18:x', 'e', 'user')");
    }

    #[pg_test]
    fn publish_counts_webhook_urls_as_webhook_audience() {
        run("INSERT INTO realtime.channels (pattern, webhook_urls) \
             VALUES ('t02:%', '{http://a.example/h,http://b.example/h}')");
        let msg = one::<String>("SELECT realtime.publish('t02:x', 'e')::text").unwrap();
        let n = one::<i32>(&format!("SELECT wh_audience_count FROM realtime.messages WHERE id = '{msg}'"));
        assert_eq!(n, Some(2));
    }

    #[pg_test]
    fn exact_pattern_beats_wildcard_pattern() {
        let _wild = channel("t03:%");
        let exact = channel("t03:lobby");
        let _longer = channel("t03:lobby%");
        assert_eq!(one::<i64>("SELECT realtime.match_channel('t03:lobby')"), Some(exact));
    }

    #[pg_test]
    fn longest_wildcard_pattern_wins() {
        let short = channel("t04:%");
        let long = channel("t04:order:%");
        assert_eq!(one::<i64>("SELECT realtime.match_channel('t04:order:42')"), Some(long));
        assert_eq!(one::<i64>("SELECT realtime.match_channel('t04:misc')"), Some(short));
    }

    #[pg_test]
    fn equal_length_patterns_tie_broken_by_pattern_text() {
        let _ab = channel("t05:ab%");
        let bc = channel("t05:%bc");
        let _ac = channel("t05:a%c");
        assert_eq!(one::<i64>("SELECT realtime.match_channel('t05:abc')"), Some(bc));
    }

    #[pg_test]
    fn disabled_channel_is_not_matched() {
        let wild = channel("t06:%");
        run("INSERT INTO realtime.channels (pattern, enabled) VALUES ('t06:exact', false)");
        assert_eq!(one::<i64>("SELECT realtime.match_channel('t06:exact')"), Some(wild));
        run("UPDATE realtime.channels SET enabled = false WHERE pattern = 't06:%'");
        assert_eq!(one::<i64>("SELECT realtime.match_channel('t06:exact')"), None);
        run("SET LOCAL client_min_messages = error");
        assert_eq!(one::<String>("SELECT realtime.publish('t06:exact', 'e')::text"), None);
    }

    #[pg_test(
        error = "realtime: channel pattern 'a_b' contains '_'; only '%' is a wildcard and '_' and '\\' are not allowed"
    )]
    fn underscore_in_pattern_is_rejected() {
        run("INSERT INTO realtime.channels (pattern) VALUES ('a_b')");
    }

    #[pg_test(
        error = "realtime: channel pattern 'a\\b' contains '\\'; only '%' is a wildcard and '_' and '\\' are not allowed"
    )]
    fn backslash_in_pattern_is_rejected() {
        run(r"INSERT INTO realtime.channels (pattern) VALUES ('a\b')");
    }

    #[pg_test]
    fn pattern_updates_are_validated_and_stamp_updated_at() {
        channel("t07:x");
        run("UPDATE realtime.channels SET updated_at = '2000-01-01' WHERE pattern = 't07:x'");
        assert_eq!(
            one::<bool>("SELECT updated_at = now() FROM realtime.channels WHERE pattern = 't07:x'"),
            Some(true)
        );
        assert_eq!(
            try_sql("UPDATE realtime.channels SET pattern = 't07: x' WHERE pattern = 't07:x'"),
            "22023: realtime: channel pattern 't07: x' contains whitespace at byte 4; \
             channel patterns cannot contain control characters or whitespace"
        );
        assert_eq!(
            try_sql("INSERT INTO realtime.channels (pattern) VALUES ('')"),
            "22023: realtime: channel pattern must not be empty"
        );
    }

    #[pg_test]
    fn publish_without_matching_channel_returns_null() {
        run("SET LOCAL client_min_messages = error");
        assert_eq!(one::<String>("SELECT realtime.publish('t08:nowhere', 'e')::text"), None);
        assert_eq!(count("SELECT count(*) FROM realtime.messages WHERE channel = 't08:nowhere'"), 0);
    }

    #[pg_test(error = "realtime: no enabled channel matches 't09:nowhere'")]
    fn publish_without_matching_channel_is_an_error_when_strict() {
        run("SET LOCAL realtime.strict_publish = on");
        run("SELECT realtime.publish('t09:nowhere', 'e')");
    }

    #[pg_test(
        error = "realtime: payload is 1048585 bytes, over the limit of 1048576 bytes (realtime.config.max_payload_bytes)"
    )]
    fn publish_over_max_payload_is_an_error() {
        channel("t10:big");
        run("SELECT realtime.publish('t10:big', 'e', jsonb_build_object('x', repeat('a', 1048576)))");
    }

    #[pg_test]
    fn changing_config_max_payload_bytes_changes_the_limit() {
        channel("t11:%");
        run("UPDATE realtime.config SET max_payload_bytes = 20");
        // '{"a": 1}' is 8 bytes; '{"a": "0123456789abc"}' is 22
        assert_eq!(try_sql(r#"SELECT realtime.publish('t11:x', 'e', '{"a":1}')"#), "ok");
        assert_eq!(
            try_sql(r#"SELECT realtime.publish('t11:x', 'e', '{"a":"0123456789abc"}')"#),
            "54000: realtime: payload is 22 bytes, over the limit of 20 bytes \
             (realtime.config.max_payload_bytes)"
        );
        assert_eq!(
            count("SELECT count(*) FROM realtime.messages WHERE channel = 't11:x'"),
            1,
            "the rejected message left no row"
        );
        run("UPDATE realtime.config SET max_payload_bytes = 22");
        assert_eq!(try_sql(r#"SELECT realtime.publish('t11:x', 'e', '{"a":"0123456789abc"}')"#), "ok");
    }

    #[pg_test]
    fn publish_validates_channel_and_event() {
        channel("t12:%");
        assert_eq!(try_sql("SELECT realtime.publish('', 'e')"), "22023: realtime: channel must not be empty");
        assert_eq!(
            try_sql("SELECT realtime.publish(NULL, 'e')"),
            "22023: realtime: channel must not be null"
        );
        assert_eq!(
            try_sql("SELECT realtime.publish('t12:x', '')"),
            "22023: realtime: event must not be empty"
        );
        assert_eq!(
            try_sql("SELECT realtime.publish('t12:' || repeat('x', 300), 'e')"),
            "22023: realtime: channel is 304 bytes long; the limit is 255 bytes"
        );
        assert_eq!(
            try_sql("SELECT realtime.publish(E't12:\\x01', 'e')"),
            "22023: realtime: channel 't12:\\u{1}' contains a control character at byte 4; \
             channels cannot contain control characters"
        );
    }

    #[pg_test]
    fn messages_xid_is_the_publishing_transaction() {
        channel("t13:x");
        let msg = one::<String>("SELECT realtime.publish('t13:x', 'e')::text").unwrap();
        let same = one::<bool>(&format!(
            "SELECT xid = pg_current_xact_id() FROM realtime.messages WHERE id = '{msg}'"
        ));
        assert_eq!(same, Some(true));
    }

    #[pg_test]
    fn broadcast_validates_and_stores_nothing() {
        channel("t14:%");
        run(r#"SELECT realtime.broadcast('t14:x', 'typing', '{"who":"ada"}')"#);
        assert_eq!(count("SELECT count(*) FROM realtime.messages WHERE channel = 't14:x'"), 0);
        assert_eq!(
            try_sql("SELECT realtime.broadcast('t14:x', NULL)"),
            "22023: realtime: event must not be null"
        );
        run("SET LOCAL realtime.strict_publish = on");
        assert_eq!(
            try_sql("SELECT realtime.broadcast('t14-none', 'e')"),
            "42704: realtime: no enabled channel matches 't14-none'"
        );
    }

    #[pg_test]
    fn claim_helpers_read_the_request_gucs() {
        assert_eq!(one::<String>("SELECT realtime.user_id()"), None);
        run("SELECT set_config('realtime.channel_name', '', true)");
        assert_eq!(one::<String>("SELECT realtime.channel_name()"), None);
        run(r#"SELECT set_config('request.jwt.claims', '{"sub":"u1","role":"authenticated"}', true)"#);
        assert_eq!(one::<String>("SELECT realtime.user_id()"), Some("u1".into()));
        assert_eq!(one::<String>("SELECT realtime.role()"), Some("authenticated".into()));
        assert_eq!(one::<String>("SELECT realtime.claims()->>'sub'"), Some("u1".into()));
        run("SELECT set_config('request.jwt.claims', '', true)");
        assert_eq!(one::<String>("SELECT realtime.claims()::text"), None);
    }

    #[pg_test]
    fn can_subscribe_follows_rls_policies_of_the_caller() {
        run("CREATE ROLE rt_test_auth NOLOGIN");
        run("CREATE ROLE rt_test_anon NOLOGIN");
        run("CREATE POLICY rt_test_own_user_channel ON realtime.channels FOR SELECT TO rt_test_auth \
             USING (realtime.channel_name() = 'user:' || realtime.user_id())");
        channel("user:%");
        run("SET LOCAL ROLE rt_test_auth");
        run(r#"SELECT set_config('request.jwt.claims', '{"sub":"42","role":"rt_test_auth"}', true)"#);
        assert_eq!(one::<bool>("SELECT realtime.can_subscribe('user:42')"), Some(true));
        assert_eq!(one::<String>("SELECT realtime.channel_name()"), Some("user:42".into()));
        assert_eq!(one::<bool>("SELECT realtime.can_subscribe('user:43')"), Some(false));
        assert_eq!(one::<bool>("SELECT realtime.can_subscribe('nomatch:1')"), Some(false));
        assert_eq!(one::<bool>("SELECT realtime.can_subscribe(NULL)"), Some(false));
        run("RESET ROLE");
        run("SET LOCAL ROLE rt_test_anon");
        assert_eq!(one::<bool>("SELECT realtime.can_subscribe('user:42')"), Some(false));
        run("RESET ROLE");
    }

    #[pg_test]
    fn role_without_grants_cannot_publish_cleanup_or_read_private_columns() {
        run("CREATE ROLE rt_test_nobody NOLOGIN");
        let has = |sql: &str| one::<bool>(&format!("SELECT {sql}")).unwrap();
        let r = "'rt_test_nobody'";
        assert!(!has(&format!(
            "has_function_privilege({r}, 'realtime.publish(text,text,jsonb)', 'EXECUTE')"
        )));
        assert!(!has(&format!(
            "has_function_privilege({r}, 'realtime.broadcast(text,text,jsonb)', 'EXECUTE')"
        )));
        assert!(!has(&format!(
            "has_function_privilege({r}, 'realtime.cleanup_messages(integer)', 'EXECUTE')"
        )));
        assert!(has(&format!("has_function_privilege({r}, 'realtime.can_subscribe(text)', 'EXECUTE')")));
        assert!(!has(&format!(
            "has_function_privilege({r}, 'realtime.match_channel_invoker(text)', 'EXECUTE')"
        )));
        assert!(has(&format!("has_function_privilege({r}, 'realtime.match_channel(text)', 'EXECUTE')")));
        assert!(!has(&format!("has_table_privilege({r}, 'realtime.messages', 'SELECT')")));
        assert!(has(&format!("has_table_privilege({r}, 'realtime.messages', 'INSERT')")));
        assert!(!has(&format!("has_table_privilege({r}, 'realtime.config', 'SELECT')")));
        assert!(!has(&format!("has_table_privilege({r}, 'realtime.commits', 'SELECT')")));
        assert!(has(&format!("has_column_privilege({r}, 'realtime.channels', 'pattern', 'SELECT')")));
        assert!(!has(&format!("has_column_privilege({r}, 'realtime.channels', 'webhook_secret', 'SELECT')")));
        assert!(!has(&format!("has_column_privilege({r}, 'realtime.channels', 'webhook_urls', 'SELECT')")));
        channel("t15:x");
        run("SET LOCAL ROLE rt_test_nobody");
        assert_eq!(
            try_sql("SELECT realtime.publish('t15:x', 'e')"),
            "42501: permission denied for function publish"
        );
        assert_eq!(
            try_sql("SELECT realtime.cleanup_messages()"),
            "42501: permission denied for function cleanup_messages"
        );
        assert_eq!(
            try_sql("SELECT webhook_secret FROM realtime.channels"),
            "42501: permission denied for table channels"
        );
        assert_eq!(try_sql("SELECT * FROM realtime.messages"), "42501: permission denied for table messages");
        assert_eq!(
            try_sql("INSERT INTO realtime.messages (channel, event) VALUES ('t15:x', 'e')"),
            "42501: new row violates row-level security policy for table \"messages\""
        );
        assert_eq!(count("SELECT count(*) FROM realtime.channels"), 0, "RLS hides every row");
        run("RESET ROLE");
    }

    #[pg_test]
    fn cleanup_messages_deletes_only_rows_older_than_retention() {
        run("UPDATE realtime.config SET retention = '1 hour'");
        run("INSERT INTO realtime.messages (channel, event, created_at) \
             SELECT 't16:x', 'old', now() - interval '2 hours' - g * interval '1 second' \
             FROM generate_series(1, 3) g");
        run("INSERT INTO realtime.messages (channel, event, created_at) \
             SELECT 't16:x', 'new', now() - interval '10 minutes' FROM generate_series(1, 2)");
        run("INSERT INTO realtime.commits (xid, commit_lsn, committed_at) VALUES \
             ('900000001', '0/10', now() - interval '2 hours'), ('900000002', '0/20', now())");
        assert_eq!(one::<i32>("SELECT realtime.cleanup_messages(2)"), Some(2));
        assert_eq!(one::<i32>("SELECT realtime.cleanup_messages(100)"), Some(1));
        assert_eq!(one::<i32>("SELECT realtime.cleanup_messages()"), Some(0));
        assert_eq!(
            count("SELECT count(*) FROM realtime.messages WHERE channel = 't16:x' AND event = 'new'"),
            2
        );
        assert_eq!(count("SELECT count(*) FROM realtime.messages WHERE channel = 't16:x'"), 2);
        assert_eq!(
            one::<String>(
                "SELECT string_agg(xid::text, ',') FROM realtime.commits \
                           WHERE xid IN ('900000001', '900000002')"
            ),
            Some("900000002".into())
        );
    }

    #[pg_test]
    fn publication_realtime_messages_contains_messages_inserts_only() {
        assert_eq!(
            count(
                "SELECT count(*) FROM pg_publication_tables WHERE pubname = 'realtime_messages' \
                   AND schemaname = 'realtime' AND tablename = 'messages'"
            ),
            1
        );
        assert_eq!(
            one::<bool>(
                "SELECT pubinsert AND NOT pubupdate AND NOT pubdelete AND NOT pubtruncate \
                         FROM pg_publication WHERE pubname = 'realtime_messages'"
            ),
            Some(true)
        );
    }
}
