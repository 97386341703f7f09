-- realtime: table change events. watch_table / unwatch_table attach and remove the Rust trigger
-- function realtime.broadcast_changes() (extension/src/api/changes.rs).
--
-- Runs after api.sql (it relies on realtime.validate_event) and after the Rust functions
-- broadcast_changes() and channel_template_columns(text). Grants are in finalize.sql.
--
-- Both functions are SECURITY INVOKER: creating a trigger needs the TRIGGER privilege on the
-- table and EXECUTE on realtime.broadcast_changes (revoked from PUBLIC), so only roles the owner
-- trusts to publish can make a table publish. The triggers are named
-- realtime_broadcast_changes (AFTER INSERT/UPDATE/DELETE, FOR EACH ROW) and
-- realtime_broadcast_changes_truncate (AFTER TRUNCATE, FOR EACH STATEMENT).
--
-- SQLSTATEs raised here:
--   22023 invalid_parameter_value  bad template / events / event / excluded column list
--   42703 undefined_column         a {column} or an excluded column is not a column of the table
--   42809 wrong_object_type        not a table

CREATE FUNCTION realtime.watch_table(
    tbl     regclass,
    channel text    DEFAULT NULL,
    events  text[]  DEFAULT '{INSERT,UPDATE,DELETE}',
    event   text    DEFAULT NULL,
    persist boolean DEFAULT true,
    exclude text[]  DEFAULT '{}'
) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    v_relkind  "char";
    v_relname  text;
    v_template text;
    v_columns  text[];
    v_col      text;
    v_events   text[];
    v_row_ops  text[];
    v_args     text;
BEGIN
    SELECT c.relkind, c.relname INTO v_relkind, v_relname FROM pg_catalog.pg_class c WHERE c.oid = tbl;
    IF v_relkind IS NULL OR v_relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'realtime: watch_table needs a table, got %', COALESCE(tbl::text, 'NULL')
              USING ERRCODE = 'wrong_object_type';
    END IF;

    v_template := COALESCE(channel, v_relname);
    v_columns := realtime.channel_template_columns(v_template);
    FOREACH v_col IN ARRAY v_columns LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid = tbl AND a.attname = v_col
                          AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'realtime: column "%" of channel template ''%'' does not exist in table %',
                            v_col, v_template, tbl
                  USING ERRCODE = 'undefined_column';
        END IF;
    END LOOP;

    IF exclude IS NULL OR pg_catalog.array_position(exclude, NULL) IS NOT NULL
       OR '' = ANY (exclude) THEN
        RAISE EXCEPTION 'realtime: watch_table exclude must be a list of column names without NULL or empty names'
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOREACH v_col IN ARRAY exclude LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                        WHERE a.attrelid = tbl AND a.attname = v_col
                          AND a.attnum > 0 AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'realtime: excluded column "%" does not exist in table %', v_col, tbl
                  USING ERRCODE = 'undefined_column';
        END IF;
    END LOOP;

    SELECT pg_catalog.array_agg(DISTINCT pg_catalog.upper(pg_catalog.btrim(e)))
      INTO v_events FROM pg_catalog.unnest(events) e;
    IF v_events IS NULL OR pg_catalog.array_position(v_events, NULL) IS NOT NULL
       OR NOT v_events <@ ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'] THEN
        RAISE EXCEPTION 'realtime: watch_table events must be a non-empty subset of {INSERT,UPDATE,DELETE,TRUNCATE}, got %',
                        COALESCE(events::text, 'NULL')
              USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF 'TRUNCATE' = ANY (v_events) AND pg_catalog.cardinality(v_columns) > 0 THEN
        RAISE EXCEPTION 'realtime: TRUNCATE cannot be watched with channel template ''%'': TRUNCATE has no row to fill its placeholders',
                        v_template
              USING ERRCODE = 'invalid_parameter_value',
                    HINT = 'Watch TRUNCATE with a channel template without {column} placeholders.';
    END IF;
    IF event IS NOT NULL THEN
        PERFORM realtime.validate_event(event);
    END IF;

    -- TG_ARGV: template, event ('' = the operation), persist, excluded columns...
    SELECT pg_catalog.string_agg(pg_catalog.quote_literal(a), ', ' ORDER BY o)
      INTO v_args
      FROM pg_catalog.unnest(ARRAY[v_template, COALESCE(event, ''), COALESCE(persist, true)::text]
                             OPERATOR(pg_catalog.||) exclude) WITH ORDINALITY AS x(a, o);

    SELECT pg_catalog.array_agg(op ORDER BY ord) INTO v_row_ops
      FROM pg_catalog.unnest(ARRAY['INSERT', 'UPDATE', 'DELETE']) WITH ORDINALITY AS x(op, ord)
     WHERE op = ANY (v_events);

    IF v_row_ops IS NOT NULL THEN
        EXECUTE pg_catalog.format(
            'CREATE OR REPLACE TRIGGER realtime_broadcast_changes AFTER %s ON %s '
            'FOR EACH ROW EXECUTE FUNCTION realtime.broadcast_changes(%s)',
            pg_catalog.array_to_string(v_row_ops, ' OR '), tbl, v_args);
    ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                   WHERE t.tgrelid = tbl AND t.tgname = 'realtime_broadcast_changes') THEN
        EXECUTE pg_catalog.format('DROP TRIGGER realtime_broadcast_changes ON %s', tbl);
    END IF;

    IF 'TRUNCATE' = ANY (v_events) THEN
        EXECUTE pg_catalog.format(
            'CREATE OR REPLACE TRIGGER realtime_broadcast_changes_truncate AFTER TRUNCATE ON %s '
            'FOR EACH STATEMENT EXECUTE FUNCTION realtime.broadcast_changes(%s)',
            tbl, v_args);
    ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t
                   WHERE t.tgrelid = tbl AND t.tgname = 'realtime_broadcast_changes_truncate') THEN
        EXECUTE pg_catalog.format('DROP TRIGGER realtime_broadcast_changes_truncate ON %s', tbl);
    END IF;
END;
$$;
COMMENT ON FUNCTION realtime.watch_table(regclass, text, text[], text, boolean, text[]) IS
    'Publish the table''s row changes (trigger realtime.broadcast_changes); idempotent';

CREATE FUNCTION realtime.unwatch_table(tbl regclass) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_name    text;
    v_dropped boolean := false;
BEGIN
    FOREACH v_name IN ARRAY ARRAY['realtime_broadcast_changes', 'realtime_broadcast_changes_truncate'] LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = tbl AND t.tgname = v_name) THEN
            EXECUTE pg_catalog.format('DROP TRIGGER %I ON %s', v_name, tbl);
            v_dropped := true;
        END IF;
    END LOOP;
    RETURN v_dropped;
END;
$$;
COMMENT ON FUNCTION realtime.unwatch_table(regclass) IS
    'Stop publishing the table''s changes (drops the watch_table triggers); false if none existed';

-- Row-level security for Supabase `postgres_changes` subscribers (the relay, docs/supabase.md):
-- which of a table's changed rows each of several identities may SELECT now. `keys` is a JSON
-- array of row keys (objects with the primary-key columns, e.g. [{"id": 1}, {"id": 7}]);
-- `identities` a JSON array of [role, claims text] pairs. One row per identity, in order
-- (`who` counts from 1): whether its role may SELECT the table (`selectable`, with USAGE on the
-- schema), whether row-level security applies to it (`row_security`: it does not for the owner
-- or a BYPASSRLS role, or when RLS is off), and then the 1-based positions in `keys` of the rows
-- its RLS policies let it see (`visible`; NULL when rows were not checked: not selectable, no
-- row security, or no keys). `pk` is the table's primary key, in key order (NULL: none).
-- `messages` are the realtime.messages ids of the changes whose keys are checked: the function
-- first waits (at most a second) until they are visible, so the rows are too.
--
-- SECURITY INVOKER: each identity's role is taken with set_config('role', ..., true), which
-- Postgres allows only for roles the caller (the relay's login) is a member of, and its claims
-- go into request.jwt.claims, so policies read them through realtime.claims() and friends; the
-- caller's role and claims are set back before it returns (an error aborts the transaction,
-- and the settings with it). One statement is built per table (its name and key columns, all
-- quoted by format()), prepared once per connection (named after its text's md5) and run once
-- per identity whose rows are checked, so identities of one role share its plan.
--
-- SQLSTATEs raised here:
--   42P01 undefined_table                   no such table
--   55000 object_not_in_prerequisite_state  row-level security applies but the table has no
--                                           primary key, so rows cannot be checked
CREATE FUNCTION realtime.visible_rows(schema_name text, table_name text, keys jsonb, identities jsonb,
                                       messages uuid[] DEFAULT '{}')
RETURNS TABLE (who integer, selectable boolean, row_security boolean, visible integer[], pk text[])
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
DECLARE
    v_tbl   oid;
    v_cols  text;
    v_match text;
    v_query text;
    v_stmt  text;
    v_ident jsonb;
    v_n     integer := 0;
    v_keys  integer := pg_catalog.jsonb_array_length(keys);
    v_role  text := pg_catalog.current_setting('role');
    v_claims text := pg_catalog.current_setting('request.jwt.claims', true);
BEGIN
    -- The relay learns of a commit from the WAL, a moment before the committing transaction
    -- may be visible to other snapshots: wait (at most a second) until the messages of the
    -- changes to check are visible, and with them the rows those transactions wrote.
    IF pg_catalog.cardinality(messages) > 0 THEN
        FOR v_try IN 1..1000 LOOP
            EXIT WHEN (SELECT pg_catalog.count(*) FROM realtime.messages m WHERE m.id = ANY (messages))
                      >= pg_catalog.cardinality(messages);
            PERFORM pg_catalog.pg_sleep(0.001);
        END LOOP;
    END IF;

    SELECT c.oid INTO v_tbl
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace
     WHERE s.nspname = schema_name AND c.relname = table_name AND c.relkind IN ('r', 'p');
    IF v_tbl IS NULL THEN
        RAISE EXCEPTION 'realtime: table %.% does not exist',
                        pg_catalog.quote_ident(schema_name), pg_catalog.quote_ident(table_name)
              USING ERRCODE = 'undefined_table';
    END IF;

    -- The keys are cast to the columns' types in a subquery, so each comparison with a key
    -- column is a plain (leakproof) equality that may use the primary-key index under RLS.
    -- Each key is looked up on its own (LATERAL ... LIMIT 1: a nested loop over the keys) and
    -- sequential scans are off in this function, so the plan is an index probe per key
    -- whatever the table's statistics say. A plan made while the table was small (a new table:
    -- a hash join over a scan of the table, or a scan per key) would otherwise be kept as the
    -- generic plan while the table grows, and each check would read the whole table once per
    -- identity.
    SELECT pg_catalog.array_agg(a.attname::text ORDER BY k.ord),
           pg_catalog.string_agg(pg_catalog.format('(e.key ->> %L)::%s AS c%s', a.attname,
                                                   pg_catalog.format_type(a.atttypid, a.atttypmod), k.ord),
                                 ', ' ORDER BY k.ord),
           pg_catalog.string_agg(pg_catalog.format('r.%I = k.c%s', a.attname, k.ord), ' AND ' ORDER BY k.ord)
      INTO pk, v_cols, v_match
      FROM pg_catalog.pg_index x
     CROSS JOIN LATERAL pg_catalog.unnest(x.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, ord)
      JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
     WHERE x.indrelid = v_tbl AND x.indisprimary;
    IF v_match IS NOT NULL THEN
        v_query := pg_catalog.format(
            'SELECT pg_catalog.array_agg(k.n::integer ORDER BY k.n) '
            'FROM (SELECT e.n, %s FROM pg_catalog.jsonb_array_elements($1) WITH ORDINALITY AS e(key, n) '
            'OFFSET 0) AS k CROSS JOIN LATERAL (SELECT 1 FROM %I.%I AS r WHERE %s LIMIT 1) AS r',
            v_cols, schema_name, table_name, v_match);
        -- Prepared once per connection and statement text, so identities of one role share
        -- one plan (Postgres plans again for another role; claims are read when it runs).
        v_stmt := 'realtime_visible_' || pg_catalog.md5(v_query);
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_prepared_statements p WHERE p.name = v_stmt) THEN
            EXECUTE pg_catalog.format('PREPARE %I(jsonb) AS %s', v_stmt, v_query);
        END IF;
        v_query := pg_catalog.format('EXECUTE %I(%L)', v_stmt, keys);
    END IF;

    FOR v_ident IN SELECT i.elem FROM pg_catalog.jsonb_array_elements(identities) AS i(elem) LOOP
        v_n := v_n + 1;
        who := v_n;
        PERFORM pg_catalog.set_config('role', v_ident ->> 0, true),
                pg_catalog.set_config('request.jwt.claims', v_ident ->> 1, true);
        selectable := pg_catalog.has_schema_privilege(schema_name, 'USAGE')
                      AND pg_catalog.has_table_privilege(v_tbl, 'SELECT');
        row_security := pg_catalog.row_security_active(v_tbl::pg_catalog.regclass);
        visible := NULL;
        IF selectable AND row_security AND v_keys > 0 THEN
            IF v_query IS NULL THEN
                RAISE EXCEPTION 'realtime: %.% has row-level security but no primary key, so its changes cannot be checked per row',
                                pg_catalog.quote_ident(schema_name), pg_catalog.quote_ident(table_name)
                      USING ERRCODE = 'object_not_in_prerequisite_state',
                            HINT = 'Add a primary key to the table.';
            END IF;
            EXECUTE v_query INTO visible;
            visible := COALESCE(visible, '{}');
        END IF;
        RETURN NEXT;
    END LOOP;
    PERFORM pg_catalog.set_config('role', v_role, true),
            pg_catalog.set_config('request.jwt.claims', COALESCE(v_claims, ''), true);
END;
$$;
COMMENT ON FUNCTION realtime.visible_rows(text, text, jsonb, jsonb, uuid[]) IS
    'For each [role, claims] identity: may it SELECT the table, does RLS apply, which keyed rows it may see';
