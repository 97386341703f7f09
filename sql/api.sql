-- realtime: the SQL API written in SQL and PL/pgSQL.
--
-- Runs after schema.sql and after the Rust functions (realtime.match_channel,
-- realtime.validate_pattern / validate_channel / validate_event, realtime.publish,
-- realtime.invalidate_publish_cache) exist. Grants are in finalize.sql.
--
-- Conventions: every SECURITY DEFINER function written here pins
-- `search_path = pg_catalog, pg_temp` and qualifies every object (realtime.publish, in Rust,
-- has no SET clause and resolves nothing through the search path: docs/ARCHITECTURE.md). The
-- claim helpers stay plain SECURITY INVOKER SQL functions without a SET clause so the planner
-- can inline them into RLS policies; they qualify operators instead.
--
-- SQLSTATEs raised here (and, with the same texts, by realtime.publish):
--   22023 invalid_parameter_value  bad channel / event / pattern / batch (from the validators)
--   54000 program_limit_exceeded   payload over realtime.config.max_payload_bytes
--   42704 undefined_object         no enabled channel matches and realtime.strict_publish is on

------------------------------------------------------------------------------------------------
-- channels: validate the pattern (Rust validator) and stamp updated_at on every write.

CREATE FUNCTION realtime.channels_before_write() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.pattern := realtime.validate_pattern(NEW.pattern);
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER channels_before_write
    BEFORE INSERT OR UPDATE ON realtime.channels
    FOR EACH ROW EXECUTE FUNCTION realtime.channels_before_write();

------------------------------------------------------------------------------------------------
-- Helpers for RLS policies.

CREATE FUNCTION realtime.channel_name() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT NULLIF(pg_catalog.current_setting('realtime.channel_name', true), '')
$$;
COMMENT ON FUNCTION realtime.channel_name() IS
    'The channel being checked (GUC realtime.channel_name, set per transaction); NULL when unset';

CREATE FUNCTION realtime.claims() RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT NULLIF(pg_catalog.current_setting('request.jwt.claims', true), '')::pg_catalog.jsonb
$$;
COMMENT ON FUNCTION realtime.claims() IS
    'The caller''s JWT claims (GUC request.jwt.claims); NULL when unset';

CREATE FUNCTION realtime.user_id() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT NULLIF(pg_catalog.current_setting('request.jwt.claims', true), '')::pg_catalog.jsonb
           OPERATOR(pg_catalog.->>) 'sub'
$$;
COMMENT ON FUNCTION realtime.user_id() IS 'The caller''s JWT subject (claim sub); NULL when unset';

CREATE FUNCTION realtime.role() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT NULLIF(pg_catalog.current_setting('request.jwt.claims', true), '')::pg_catalog.jsonb
           OPERATOR(pg_catalog.->>) 'role'
$$;
COMMENT ON FUNCTION realtime.role() IS 'The caller''s JWT role claim; NULL when unset';

------------------------------------------------------------------------------------------------
-- can_subscribe: is the best-matching enabled channel row visible to the caller under RLS?
-- SECURITY INVOKER on purpose: the owner's SELECT policies on realtime.channels decide.
-- realtime.channel_name is set transaction-locally first so those policies can read it.
-- PL/pgSQL, not SQL: a multi-statement SQL function is parsed and planned again on every call,
-- policies included, which made Postgres the limit on subscribes per second; PL/pgSQL keeps the
-- plan for the session (planned again when the role changes, as RLS requires).

CREATE FUNCTION realtime.can_subscribe(channel text) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.set_config('realtime.channel_name', COALESCE($1, ''), true);
    RETURN EXISTS (
        SELECT 1 FROM realtime.channels c
        WHERE c.id OPERATOR(pg_catalog.=) realtime.match_channel($1)
    );
END;
$$;
COMMENT ON FUNCTION realtime.can_subscribe(text) IS
    'True when the best enabled channel row matching the name is visible to the caller under RLS';

------------------------------------------------------------------------------------------------
-- publish: Rust (extension/src/api/publish.rs), SECURITY DEFINER: one INSERT into
-- realtime.messages in the caller's transaction, no NOTIFY, no locks beyond the insert; relays
-- follow the table through logical replication. It keeps the matched channel and the payload
-- limit in a per-backend cache (extension/src/api/cache.rs), dropped by these statement
-- triggers: the relcache invalidation they queue reaches this transaction at its next command,
-- this backend again on rollback, and every other backend at commit. ENABLE ALWAYS: they fire
-- under session_replication_role = replica too.

CREATE TRIGGER channels_invalidate_publish_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON realtime.channels
    FOR EACH STATEMENT EXECUTE FUNCTION realtime.invalidate_publish_cache();
ALTER TABLE realtime.channels ENABLE ALWAYS TRIGGER channels_invalidate_publish_cache;

CREATE TRIGGER config_invalidate_publish_cache
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON realtime.config
    FOR EACH STATEMENT EXECUTE FUNCTION realtime.invalidate_publish_cache();
ALTER TABLE realtime.config ENABLE ALWAYS TRIGGER config_invalidate_publish_cache;

------------------------------------------------------------------------------------------------
-- Sealed logical messages (issue 17): relays deliver a `realtime:` logical message only when
-- its body carries a seal (HMAC-SHA256, crates/realtime-core/src/seal.rs) made with a key of
-- realtime.relay_keys, so a login that calls pg_logical_emit_message() itself cannot forge a
-- broadcast, a presence op or a re-check signal. The table gets no grants: the owner and the
-- relay's login read it (GRANT SELECT ON realtime.relay_keys TO <relay login> when it does not
-- own the extension). Rotation: INSERT INTO realtime.relay_keys DEFAULT VALUES, then (once
-- relays have refreshed, within a minute) DELETE the old row; a deleted key stops verifying.

CREATE TABLE realtime.relay_keys (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key        bytea       NOT NULL DEFAULT realtime.generate_relay_key()
                           CHECK (pg_catalog.octet_length(key) >= 32),
    created_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE realtime.relay_keys IS
    'realtime: keys that seal logical messages for relays; the newest seals, every row verifies';

INSERT INTO realtime.relay_keys DEFAULT VALUES;

-- emit_message: pg_logical_emit_message with the body sealed by the newest key. SECURITY
-- INVOKER: a caller who may not read realtime.relay_keys gets "permission denied for table
-- relay_keys". broadcast and signal_relays (SECURITY DEFINER) and the relay's own
-- writes emit through it.
CREATE FUNCTION realtime.emit_message(transactional boolean, prefix text, content text)
RETURNS pg_lsn
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id  bigint;
    v_key bytea;
BEGIN
    SELECT k.id, k.key INTO v_id, v_key FROM realtime.relay_keys k ORDER BY k.id DESC LIMIT 1;
    IF v_id IS NULL THEN
        RAISE EXCEPTION 'realtime: realtime.relay_keys is empty; relays would drop this message'
              USING ERRCODE = 'object_not_in_prerequisite_state',
                    HINT = 'Add a key: INSERT INTO realtime.relay_keys DEFAULT VALUES;';
    END IF;
    RETURN pg_catalog.pg_logical_emit_message(
        transactional, prefix, realtime.seal_message(v_key, v_id, prefix, content));
END;
$$;
COMMENT ON FUNCTION realtime.emit_message(boolean, text, text) IS
    'pg_logical_emit_message with the body sealed for relays (needs SELECT on realtime.relay_keys)';

-- Signals to relays, in commit order: a statement trigger emits an empty sealed logical message
-- whose prefix is the trigger's argument. `realtime:keys` (on relay_keys) makes every relay read
-- the keys again at once, so a deleted key stops verifying right after its DELETE commits;
-- `realtime:channels` (on channels, below) makes it re-check open subscriptions. SECURITY
-- DEFINER: whoever may change those tables needs no right to read the keys. Nothing is emitted
-- once no key is left (nothing could be sealed; the scheduled re-check still runs).
CREATE FUNCTION realtime.signal_relays() RETURNS trigger
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM realtime.relay_keys) THEN
        PERFORM realtime.emit_message(true, TG_ARGV[0], '');
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION realtime.signal_relays() IS
    'Trigger: tells relays, by an empty sealed logical message with prefix TG_ARGV[0], that the table changed';

CREATE TRIGGER relay_keys_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON realtime.relay_keys
    FOR EACH STATEMENT EXECUTE FUNCTION realtime.signal_relays('realtime:keys');
ALTER TABLE realtime.relay_keys ENABLE ALWAYS TRIGGER relay_keys_changed;

------------------------------------------------------------------------------------------------
-- Permission re-checks: every change to realtime.channels emits an empty transactional logical
-- message (prefix realtime:channels) at commit; each relay that decodes it checks the permission
-- of its open subscriptions again at once, so a disabled or deleted row ends its subscriptions.
-- The trigger function is realtime.signal_relays (above). ENABLE ALWAYS, like the triggers above.

CREATE TRIGGER channels_recheck_subscriptions
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON realtime.channels
    FOR EACH STATEMENT EXECUTE FUNCTION realtime.signal_relays('realtime:channels');
ALTER TABLE realtime.channels ENABLE ALWAYS TRIGGER channels_recheck_subscriptions;

COMMENT ON FUNCTION realtime.publish(text, text, jsonb) IS
    'Persist a message to the best matching enabled channel; delivered if the transaction commits';

------------------------------------------------------------------------------------------------
-- broadcast: ephemeral. A transactional logical-decoding message, decoded by relays at commit;
-- nothing is stored.

CREATE FUNCTION realtime.broadcast(channel text, event text, payload jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    v_limit   integer;
    v_size    integer;
    v_chan_id bigint;
BEGIN
    channel := realtime.validate_channel(channel);
    event := realtime.validate_event(event);
    payload := COALESCE(payload, '{}'::jsonb);
    v_chan_id := realtime.match_channel_invoker(channel);

    SELECT cfg.max_payload_bytes INTO v_limit FROM realtime.config cfg;

    v_size := pg_catalog.octet_length(payload::text);
    IF v_size > v_limit THEN
        RAISE EXCEPTION 'realtime: payload is % bytes, over the limit of % bytes (realtime.config.max_payload_bytes)',
                        v_size, v_limit
              USING ERRCODE = 'program_limit_exceeded',
                    HINT = 'Send a smaller payload, or raise realtime.config.max_payload_bytes.';
    END IF;

    IF v_chan_id IS NULL THEN
        IF COALESCE(pg_catalog.current_setting('realtime.strict_publish', true), 'off')
           IN ('on', 'true', 'yes', '1') THEN
            RAISE EXCEPTION 'realtime: no enabled channel matches ''%''', channel
                  USING ERRCODE = 'undefined_object',
                        HINT = 'Add a realtime.channels row whose pattern matches it, or enable the matching one.';
        END IF;
        RAISE WARNING 'realtime: no enabled channel matches ''%''; broadcast not sent', channel
              USING HINT = 'Add a realtime.channels row whose pattern matches it, or enable the matching one.';
        RETURN;
    END IF;

    PERFORM realtime.emit_message(
        true,
        'realtime:broadcast',
        pg_catalog.jsonb_build_object('channel', channel, 'event', event, 'payload', payload)::text
    );
END;
$$;
COMMENT ON FUNCTION realtime.broadcast(text, text, jsonb) IS
    'Ephemeral message: a logical-decoding message (prefix realtime:broadcast) emitted at commit';

------------------------------------------------------------------------------------------------
-- cleanup_messages: retention, in batches, oldest first. Also trims the cursor mapping and the
-- webhook deliveries.

CREATE FUNCTION realtime.cleanup_messages(batch integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cutoff  timestamptz;
    v_deleted integer;
BEGIN
    IF batch IS NULL OR batch < 1 THEN
        RAISE EXCEPTION 'realtime: cleanup_messages batch must be at least 1, got %',
                        COALESCE(batch::text, 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT pg_catalog.now() - cfg.retention INTO v_cutoff FROM realtime.config cfg;
    IF v_cutoff IS NULL THEN
        RETURN 0;
    END IF;

    DELETE FROM realtime.messages m
     WHERE m.id IN (SELECT o.id FROM realtime.messages o
                     WHERE o.created_at < v_cutoff
                     ORDER BY o.created_at
                     LIMIT batch
                     FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS v_deleted = ROW_COUNT;

    DELETE FROM realtime.commits k
     WHERE k.xid IN (SELECT o.xid FROM realtime.commits o
                      WHERE o.committed_at < v_cutoff
                      ORDER BY o.commit_lsn
                      LIMIT batch
                      FOR UPDATE SKIP LOCKED);

    -- Webhook deliveries (sql/webhooks.sql) follow their messages' retention.
    DELETE FROM realtime.webhook_deliveries w
     WHERE w.id IN (SELECT o.id FROM realtime.webhook_deliveries o
                     WHERE o.created_at < v_cutoff
                     LIMIT batch
                     FOR UPDATE SKIP LOCKED);

    RETURN v_deleted;
END;
$$;
COMMENT ON FUNCTION realtime.cleanup_messages(integer) IS
    'Delete up to batch messages (and cursor-mapping rows) older than realtime.config.retention';

------------------------------------------------------------------------------------------------
-- Names Supabase apps use (docs/supabase.md): realtime.topic() in policies, realtime.send() to
-- publish from SQL.

CREATE FUNCTION realtime.topic() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT NULLIF(pg_catalog.current_setting('realtime.channel_name', true), '')
$$;
COMMENT ON FUNCTION realtime.topic() IS
    'Supabase''s name for realtime.channel_name(): the channel being checked; NULL when unset';

CREATE FUNCTION realtime.send(payload jsonb, event text, topic text, private boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Every channel is checked by RLS here, so `private` changes nothing. Unlike Supabase's,
    -- errors are raised, not swallowed: a failed send aborts the caller's transaction.
    PERFORM realtime.publish(topic, event, payload);
END;
$$;
COMMENT ON FUNCTION realtime.send(jsonb, text, text, boolean) IS
    'Supabase''s realtime.send(): realtime.publish(topic, event, payload), raising its errors';
