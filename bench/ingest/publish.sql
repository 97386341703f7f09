-- realtime.publish(): validators + channel match + one INSERT into realtime.messages.
SELECT realtime.publish('bench:' || :client_id, 'e', '{"type": "order_update", "order_id": "ord_0000012345", "status": "shipped", "items": [{"sku": "SKU-000123", "qty": 2}, {"sku": "SKU-000456", "qty": 1}], "note": "ingest benchmark payload, about 200 bytes of JSON"}'::jsonb);
