//! In-database tests (`#[pg_test]`) of the webhook queue (`sql/webhooks.sql`): every insert path
//! enqueues one delivery per URL in the inserting transaction, nothing for channels without
//! webhooks or rolled-back inserts, the URLs come from the matched channel (not from a row's
//! claims), bad webhook settings are refused when written, and the stats / failures views,
//! `retry_failed_webhooks`, retention and privileges.
//!
//! Each test runs in its own transaction that is rolled back; each uses its own channel prefix.

#[pgrx::pg_schema]
mod tests {
    use crate::pg_test_sql::{count, one, run, try_sql};
    use pgrx::prelude::*;

    fn deliveries_of(message: &str) -> i64 {
        count(&format!("SELECT count(*) FROM realtime.webhook_deliveries WHERE message_id = '{message}'"))
    }

    fn audience_of(message: &str) -> i32 {
        one::<i32>(&format!("SELECT wh_audience_count FROM realtime.messages WHERE id = '{message}'"))
            .unwrap()
    }

    #[pg_test]
    fn publish_enqueues_one_pending_delivery_per_distinct_url() {
        run("INSERT INTO realtime.channels (pattern, webhook_urls) VALUES \
             ('w01:%', ARRAY['http://a.example/h', 'http://b.example/h', 'http://a.example/h'])");
        let id = one::<String>("SELECT realtime.publish('w01:x', 'e', '{\"n\":1}')::text").unwrap();
        assert_eq!(deliveries_of(&id), 2);
        assert_eq!(audience_of(&id), 2, "the count is corrected to the distinct URLs");
        let pending = count(&format!(
            "SELECT count(*) FROM realtime.webhook_deliveries WHERE message_id = '{id}' \
             AND status = 'pending' AND attempts = 0 AND channel = 'w01:x' \
             AND channel_id = (SELECT id FROM realtime.channels WHERE pattern = 'w01:%')"
        ));
        assert_eq!(pending, 2);
    }

    #[pg_test]
    fn bad_webhook_urls_and_secrets_are_refused_with_a_clear_error() {
        for (urls, bad) in [
            ("ARRAY['ftp://a.example/']", "'ftp://a.example/'"),
            ("ARRAY['http://ok.example/', 'not a url']", "'not a url'"),
            ("ARRAY['']", "''"),
            ("ARRAY[NULL]::text[]", "NULL"),
            ("ARRAY['https://a.example/x y']", "'https://a.example/x y'"),
        ] {
            let got = try_sql(&format!(
                "INSERT INTO realtime.channels (pattern, webhook_urls) VALUES ('w08', {urls})"
            ));
            assert_eq!(got, format!("22023: realtime: webhook URL {bad} is not valid"));
        }
        let got =
            try_sql("INSERT INTO realtime.channels (pattern, webhook_secret) VALUES ('w08', 'whsec_@@@')");
        assert!(got.starts_with("22023: realtime: webhook_secret starts with whsec_"), "{got}");
        run("INSERT INTO realtime.channels (pattern, webhook_urls, webhook_secret) \
             VALUES ('w08', ARRAY['HTTPS://a.example:8443/h?x=1'], 'plain secret')");
        let got =
            try_sql("UPDATE realtime.channels SET webhook_urls = ARRAY['gopher://x'] WHERE pattern = 'w08'");
        assert!(got.starts_with("22023:"), "{got}");
    }

    #[pg_test]
    fn publish_on_a_channel_without_webhooks_enqueues_nothing() {
        run("INSERT INTO realtime.channels (pattern) VALUES ('w02')");
        let id = one::<String>("SELECT realtime.publish('w02', 'e')::text").unwrap();
        assert_eq!((deliveries_of(&id), audience_of(&id)), (0, 0));
    }

    #[pg_test]
    fn rolled_back_publish_enqueues_nothing() {
        run("INSERT INTO realtime.channels (pattern, webhook_urls) VALUES ('w03', ARRAY['http://a.example/'])");
        run("DO $$ BEGIN PERFORM realtime.publish('w03', 'e'); RAISE EXCEPTION 'roll back'; \
             EXCEPTION WHEN raise_exception THEN NULL; END $$");
        assert_eq!(count("SELECT count(*) FROM realtime.messages WHERE channel = 'w03'"), 0);
        assert_eq!(count("SELECT count(*) FROM realtime.webhook_deliveries WHERE channel = 'w03'"), 0);
    }

    #[pg_test]
    fn table_change_trigger_enqueues_webhooks() {
        run("INSERT INTO realtime.channels (pattern, webhook_urls) VALUES ('w04:%', ARRAY['http://a.example/'])");
        run("CREATE TABLE w04_items (id int PRIMARY KEY, name text)");
        run("SELECT realtime.watch_table('w04_items', 'w04:{id}')");
        run("INSERT INTO w04_items VALUES (7, 'seven')");
        let id = one::<String>("SELECT id::text FROM realtime.messages WHERE channel = 'w04:7'").unwrap();
        assert_eq!((deliveries_of(&id), audience_of(&id)), (1, 1));
    }

    #[pg_test]
    fn client_insert_with_channel_webhook_count_enqueues_from_the_matched_channel() {
        run("INSERT INTO realtime.channels (pattern, webhook_urls) VALUES \
             ('w05', ARRAY['http://mine.example/']), ('w05other', ARRAY['http://other.example/', 'http://x.example/'])");
        // what the relay's client publish inserts
        run("INSERT INTO realtime.messages (id, channel, channel_id, event, sender_type, sender_id, wh_audience_count) \
             SELECT '00000000-0000-0000-0000-0000000000a5', 'w05', realtime.match_channel('w05'), 'e', 'user', 'u', \
                    realtime.channel_webhook_count(realtime.match_channel('w05'))");
        let id = "00000000-0000-0000-0000-0000000000a5";
        assert_eq!((deliveries_of(id), audience_of(id)), (1, 1));
        // a row claiming another channel's id and a made-up count gets its own channel's URLs
        let other = one::<i64>("SELECT id FROM realtime.channels WHERE pattern = 'w05other'").unwrap();
        run(&format!(
            "INSERT INTO realtime.messages (id, channel, channel_id, event, sender_type, wh_audience_count) \
             VALUES ('00000000-0000-0000-0000-0000000000b5', 'w05', {other}, 'e', 'user', 9)"
        ));
        let id = "00000000-0000-0000-0000-0000000000b5";
        assert_eq!((deliveries_of(id), audience_of(id)), (1, 1));
        let url =
            one::<String>(&format!("SELECT url FROM realtime.webhook_deliveries WHERE message_id = '{id}'"));
        assert_eq!(url.as_deref(), Some("http://mine.example/"));
        assert_eq!(one::<i32>("SELECT realtime.channel_webhook_count(-1)"), Some(0));
    }

    #[pg_test]
    fn stats_failures_and_retry_failed_webhooks() {
        run("INSERT INTO realtime.channels (pattern, webhook_urls) VALUES ('w06', ARRAY['http://a.example/', 'http://b.example/', 'http://c.example/'])");
        run("SELECT realtime.publish('w06', 'e')");
        run("SELECT realtime.publish('w06', 'e')");
        let ch = one::<i64>("SELECT id FROM realtime.channels WHERE pattern = 'w06'").unwrap();
        run("UPDATE realtime.webhook_deliveries SET status = 'delivered', attempts = 1, \
             delivered_at = created_at + interval '20 ms' WHERE channel = 'w06' AND url = 'http://a.example/'");
        run("UPDATE realtime.webhook_deliveries SET status = 'failed', attempts = 8, last_status = 503, \
             last_error = 'HTTP 503' WHERE channel = 'w06' AND url = 'http://b.example/'");
        let stats = Spi::get_three::<i64, i64, i64>(&format!(
            "SELECT delivered, failed, pending FROM realtime.webhook_stats WHERE channel_id = {ch}"
        ))
        .unwrap();
        assert_eq!(stats, (Some(2), Some(2), Some(2)));
        let p50 =
            one::<f64>(&format!("SELECT p50_latency_ms FROM realtime.webhook_stats WHERE channel_id = {ch}"));
        assert!((p50.unwrap() - 20.0).abs() < 0.5, "{p50:?}");
        assert_eq!(
            count("SELECT count(*) FROM realtime.webhook_failures WHERE channel = 'w06' AND last_status = 503 AND last_error = 'HTTP 503'"),
            2
        );
        assert_eq!(one::<i32>("SELECT realtime.retry_failed_webhooks(url => 'http://nowhere/')"), Some(0));
        assert_eq!(one::<i32>(&format!("SELECT realtime.retry_failed_webhooks({ch})")), Some(2));
        assert_eq!(
            count("SELECT count(*) FROM realtime.webhook_deliveries WHERE channel = 'w06' AND status = 'pending' AND attempts = 0"),
            4
        );
        assert_eq!(one::<i32>(&format!("SELECT realtime.retry_failed_webhooks({ch})")), Some(0));
    }

    #[pg_test]
    fn cleanup_messages_also_removes_old_deliveries() {
        run("INSERT INTO realtime.channels (pattern, webhook_urls) VALUES ('w07', ARRAY['http://a.example/'])");
        run("SELECT realtime.publish('w07', 'e')");
        run("UPDATE realtime.messages SET created_at = now() - interval '30 days' WHERE channel = 'w07'");
        run("UPDATE realtime.webhook_deliveries SET created_at = now() - interval '30 days' WHERE channel = 'w07'");
        run("SELECT realtime.cleanup_messages(100000)");
        assert_eq!(count("SELECT count(*) FROM realtime.webhook_deliveries WHERE channel = 'w07'"), 0);
    }

    #[pg_test]
    fn generated_secrets_are_whsec_base64_of_32_bytes() {
        let s = one::<String>("SELECT realtime.generate_webhook_secret()").unwrap();
        assert!(s.starts_with("whsec_"), "{s}");
        let bytes = one::<i32>(&format!("SELECT length(decode(substr('{s}', 7), 'base64'))"));
        assert_eq!(bytes, Some(32));
        assert_ne!(s, one::<String>("SELECT realtime.generate_webhook_secret()").unwrap());
    }

    #[pg_test]
    fn public_cannot_read_the_queue_or_requeue() {
        for (sql, want) in [
            ("SELECT has_table_privilege('public', 'realtime.webhook_deliveries', 'SELECT')", false),
            ("SELECT has_table_privilege('public', 'realtime.webhook_failures', 'SELECT')", false),
            ("SELECT has_table_privilege('public', 'realtime.webhook_stats', 'SELECT')", false),
            (
                "SELECT has_function_privilege('public', 'realtime.retry_failed_webhooks(bigint, text, timestamptz)', 'EXECUTE')",
                false,
            ),
            ("SELECT has_function_privilege('public', 'realtime.webhook_queue_depth()', 'EXECUTE')", false),
            ("SELECT has_function_privilege('public', 'realtime.add_ws_audience(text[], integer[])', 'EXECUTE')", false),
            (
                "SELECT has_function_privilege('public', 'realtime.claim_webhook_deliveries(integer, double precision, text, text[])', 'EXECUTE')",
                false,
            ),
            ("SELECT has_function_privilege('public', 'realtime.channel_webhook_count(bigint)', 'EXECUTE')", true),
        ] {
            assert_eq!(one::<bool>(sql), Some(want), "{sql}");
        }
    }

    #[pg_test]
    fn claim_leases_and_finish_counts_each_success_once() {
        run("INSERT INTO realtime.channels (pattern, webhook_urls, webhook_secret) \
             VALUES ('w09', ARRAY['http://a.example/', 'http://b.example/'], 's')");
        let id = one::<String>("SELECT realtime.publish('w09', 'e', '{\"k\":1}')::text").unwrap();
        run("UPDATE realtime.webhook_deliveries SET next_attempt_at = now() - interval '1 hour' WHERE channel = 'w09'");
        let claimed = count(
            "SELECT count(*) FROM realtime.claim_webhook_deliveries(100, 60000, 'r1', ARRAY['http://b.example/']) \
             WHERE channel = 'w09' AND attempt = 1 AND secret = 's' AND payload = '{\"k\": 1}' AND message_exists",
        );
        assert_eq!(claimed, 1, "the busy URL is skipped");
        let a =
            one::<i64>("SELECT id FROM realtime.webhook_deliveries WHERE url = 'http://a.example/'").unwrap();
        assert_eq!(
            count("SELECT count(*) FROM realtime.webhook_deliveries WHERE channel = 'w09' AND next_attempt_at > now() + interval '50 seconds'"),
            1,
            "the claimed row is leased"
        );
        let finish = |outcome: &str, attempt: i32| {
            run(&format!(
                "SELECT realtime.finish_webhook_deliveries(ARRAY[{a}]::bigint[], ARRAY[{attempt}], ARRAY['{outcome}'], \
                 ARRAY[200], ARRAY[NULL]::text[], ARRAY[0]::float8[])"
            ))
        };
        finish("retry", 7);
        assert_eq!(count("SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'pending' AND channel = 'w09' AND last_status IS NULL"), 2, "a stale claim's retry is ignored");
        finish("delivered", 1);
        finish("delivered", 1);
        let delivered =
            one::<i32>(&format!("SELECT wh_delivered_count FROM realtime.messages WHERE id = '{id}'"));
        assert_eq!(delivered, Some(1), "counted once");
        assert_eq!(
            count("SELECT realtime.webhook_queue_depth()"),
            count("SELECT count(*) FROM realtime.webhook_deliveries WHERE status = 'pending'")
        );
        run(&format!("SELECT realtime.add_ws_audience(ARRAY['{id}', '{id}'], ARRAY[2, 3])"));
        let ws = one::<i32>(&format!("SELECT ws_audience_count FROM realtime.messages WHERE id = '{id}'"));
        assert_eq!(ws, Some(5));
    }
}
