-- CPU cost per call of publish and of its parts, inside one transaction each (no commit, no
-- fsync, no relay): run by profile.sh against a cluster set up by setup.sql. Each DO block runs
-- 20000 iterations; divide the time by 20000. 'loop' is the PL/pgSQL loop's own overhead.

\timing on
\echo warm-up
DO $$ BEGIN FOR i IN 1..2000 LOOP PERFORM realtime.publish('bench:' || (i % 64), 'e', '{}'::jsonb); INSERT INTO bench_plain (channel, channel_id, event, payload) VALUES ('bench:' || (i % 64), 1, 'e', '{}'::jsonb); END LOOP; END $$;
TRUNCATE realtime.messages, bench_plain;
\echo loop
DO $$ BEGIN FOR i IN 1..20000 LOOP PERFORM 'bench:' || (i % 64); END LOOP; END $$;
\echo validate_channel + validate_event
DO $$ BEGIN FOR i IN 1..20000 LOOP PERFORM realtime.validate_channel('bench:' || (i % 64)), realtime.validate_event('e'); END LOOP; END $$;
\echo match_channel_invoker (wildcard path)
DO $$ BEGIN FOR i IN 1..20000 LOOP PERFORM realtime.match_channel_invoker('bench:' || (i % 64)); END LOOP; END $$;
\echo match_channel (SECURITY DEFINER + SET search_path)
DO $$ BEGIN FOR i IN 1..20000 LOOP PERFORM realtime.match_channel('bench:' || (i % 64)); END LOOP; END $$;
\echo plain INSERT
DO $$ BEGIN FOR i IN 1..20000 LOOP INSERT INTO bench_plain (channel, channel_id, event, payload) VALUES ('bench:' || (i % 64), 1, 'e', '{"type": "order_update", "order_id": "ord_0000012345", "status": "shipped", "items": [{"sku": "SKU-000123", "qty": 2}, {"sku": "SKU-000456", "qty": 1}], "note": "ingest benchmark payload, about 200 bytes of JSON"}'::jsonb); END LOOP; END $$;
\echo realtime.publish
DO $$ BEGIN FOR i IN 1..20000 LOOP PERFORM realtime.publish('bench:' || (i % 64), 'e', '{"type": "order_update", "order_id": "ord_0000012345", "status": "shipped", "items": [{"sku": "SKU-000123", "qty": 2}, {"sku": "SKU-000456", "qty": 1}], "note": "ingest benchmark payload, about 200 bytes of JSON"}'::jsonb); END LOOP; END $$;
\echo plain INSERT again
DO $$ BEGIN FOR i IN 1..20000 LOOP INSERT INTO bench_plain (channel, channel_id, event, payload) VALUES ('bench:' || (i % 64), 1, 'e', '{"type": "order_update", "order_id": "ord_0000012345", "status": "shipped", "items": [{"sku": "SKU-000123", "qty": 2}, {"sku": "SKU-000456", "qty": 1}], "note": "ingest benchmark payload, about 200 bytes of JSON"}'::jsonb); END LOOP; END $$;
\echo realtime.publish again
DO $$ BEGIN FOR i IN 1..20000 LOOP PERFORM realtime.publish('bench:' || (i % 64), 'e', '{"type": "order_update", "order_id": "ord_0000012345", "status": "shipped", "items": [{"sku": "SKU-000123", "qty": 2}, {"sku": "SKU-000456", "qty": 1}], "note": "ingest benchmark payload, about 200 bytes of JSON"}'::jsonb); END LOOP; END $$;
