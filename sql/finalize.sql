-- realtime: privileges. Runs last in the install script (pgrx `finalize`), after every table
-- and function, including the CREATE FUNCTION statements pgrx generates for the Rust functions.
--
-- Model: RLS decides. Everyone may look at the schema, at the public columns of
-- realtime.channels (rows only where a SELECT policy lets them) and may try to INSERT into
-- realtime.messages (rows only where an INSERT ... WITH CHECK policy lets them; none by default).
-- Publishing through the SQL API, broadcasting and retention are for roles the owner grants.
-- realtime.config, realtime.commits, realtime.presence and realtime.relays get no grants at
-- all (the relay's login must own them or be granted them; clients never touch them).

GRANT USAGE ON SCHEMA realtime TO PUBLIC;

GRANT SELECT (id, pattern, description, enabled, created_at, updated_at)
    ON realtime.channels TO PUBLIC;

GRANT INSERT ON realtime.messages TO PUBLIC;

GRANT EXECUTE ON FUNCTION
    realtime.channel_name(),
    realtime.topic(),
    realtime.claims(),
    realtime.user_id(),
    realtime.role(),
    realtime.can_subscribe(text),
    realtime.match_channel(text),
    realtime.validate_pattern(text),
    realtime.validate_channel(text),
    realtime.validate_event(text),
    realtime.channel_template_columns(text),
    realtime.channel_webhook_count(bigint),
    realtime.visible_rows(text, text, jsonb, jsonb, uuid[])
TO PUBLIC;

REVOKE EXECUTE ON FUNCTION
    realtime.publish(text, text, jsonb),
    realtime.send(jsonb, text, text, boolean),
    realtime.broadcast(text, text, jsonb),
    realtime.cleanup_messages(integer),
    realtime.match_channel_invoker(text),
    realtime.invalidate_publish_cache(),
    realtime.signal_relays(),
    realtime.broadcast_changes(),
    realtime.watch_table(regclass, text, text[], text, boolean, text[]),
    realtime.unwatch_table(regclass),
    realtime.enqueue_webhooks(),
    realtime.check_webhook_settings(),
    realtime.claim_webhook_deliveries(integer, double precision, text, text[]),
    realtime.finish_webhook_deliveries(bigint[], integer[], text[], integer[], text[], double precision[]),
    realtime.webhook_queue_depth(),
    realtime.add_ws_audience(text[], integer[]),
    realtime.retry_failed_webhooks(bigint, text, timestamptz),
    realtime.retry_webhook_delivery(bigint),
    realtime.discard_webhook_delivery(bigint)
FROM PUBLIC;

-- Webhooks (sql/webhooks.sql): the queue and its views hold webhook URLs, so, like config and
-- commits, they get no grants; retry_failed_webhooks is for roles the owner grants.
-- channel_webhook_count is PUBLIC: the relay's client publish runs it under the client's role.
-- The relay's queue functions (claim/finish_webhook_deliveries, webhook_queue_depth,
-- add_ws_audience) are for the relay's login: GRANT EXECUTE on them unless it owns the extension.

-- Table change events: whoever may attach realtime.broadcast_changes to a table (EXECUTE on it,
-- plus the TRIGGER privilege on the table) decides what that table publishes, so it is granted
-- like publish. Firing needs no grant: any role that may write a watched table triggers it, and
-- the trigger calls publish / broadcast (SECURITY DEFINER) directly through fmgr, where no
-- EXECUTE check applies (see extension/src/api/changes.rs).

-- The admin console's role (sql/admin.sql): exactly what the console does, nothing more.
-- No EXECUTE on the relay's queue functions, no UPDATE or DELETE on the log or the queue.
GRANT SELECT, INSERT, UPDATE, DELETE ON realtime.channels TO realtime_admin;
GRANT SELECT ON realtime.messages, realtime.commits, realtime.config, realtime.presence,
    realtime.relays, realtime.webhook_deliveries TO realtime_admin;
GRANT SELECT, INSERT ON realtime.admin_log TO realtime_admin;
GRANT EXECUTE ON FUNCTION
    realtime.publish(text, text, jsonb),
    realtime.broadcast(text, text, jsonb),
    realtime.retry_webhook_delivery(bigint),
    realtime.discard_webhook_delivery(bigint)
TO realtime_admin;

-- Relay keys (sql/api.sql): realtime.relay_keys gets no grants (the owner and the relay's login
-- read it; GRANT SELECT ON realtime.relay_keys TO <relay login> when it does not own the
-- extension). realtime.emit_message and realtime.seal_message keep PUBLIC's EXECUTE: without
-- SELECT on the keys, emit_message fails with "permission denied for table relay_keys", and
-- seal_message only seals with a key its caller already has.
