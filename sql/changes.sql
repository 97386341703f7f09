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
