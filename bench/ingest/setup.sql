-- Schema for the ingest benchmark (run once in a throwaway cluster by run.sh and profile.sh).
\set ON_ERROR_STOP on

-- The roles the relay's allowlist names come first, from bench/lib.sh's create_roles.
CREATE EXTENSION realtime;

-- One wildcard channel: every 'bench:<client>' name resolves through the pattern path of
-- realtime.match_channel (no exact row), which is the more expensive lookup.
INSERT INTO realtime.channels (pattern) VALUES ('bench:%');

-- Twins of realtime.messages: same columns, defaults, identity, constraints and indexes.
CREATE TABLE public.bench_plain  (LIKE realtime.messages INCLUDING ALL);
CREATE TABLE public.bench_notify (LIKE realtime.messages INCLUDING ALL);

-- The NOTIFY design (as InsForge does it): one notification per inserted row.
CREATE FUNCTION public.bench_notify_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bench', NEW.id::text);
    RETURN NULL;
END;
$$;
CREATE TRIGGER bench_notify_row AFTER INSERT ON public.bench_notify
    FOR EACH ROW EXECUTE FUNCTION public.bench_notify_row();

-- Fail loudly if LIKE did not bring the shape across: both copies must have exactly the
-- indexes, identity column and column defaults realtime.messages has (counted, not listed, so
-- a schema change to the log is followed here without editing this file).
DO $$
DECLARE
    t text;
    n_idx int;
    n_ident int;
    n_def int;
    ref_idx int;
    ref_def int;
BEGIN
    FOREACH t IN ARRAY ARRAY['realtime.messages', 'public.bench_plain', 'public.bench_notify'] LOOP
        SELECT count(*) INTO n_idx FROM pg_index WHERE indrelid = t::regclass;
        SELECT count(*) FILTER (WHERE attidentity <> ''), count(*) FILTER (WHERE atthasdef)
          INTO n_ident, n_def
          FROM pg_attribute WHERE attrelid = t::regclass AND attnum > 0 AND NOT attisdropped;
        RAISE NOTICE '% : % indexes, % identity column(s), % column default(s)', t, n_idx, n_ident, n_def;
        IF t = 'realtime.messages' THEN
            ref_idx := n_idx;
            ref_def := n_def;
        END IF;
        IF n_idx <> ref_idx OR n_ident <> 1 OR n_def <> ref_def OR n_def < 8 THEN
            RAISE EXCEPTION 'table % does not have the shape of realtime.messages', t;
        END IF;
    END LOOP;
    IF (SELECT id FROM realtime.channels WHERE pattern = 'bench:%') <> 1 THEN
        RAISE EXCEPTION 'expected the bench channel to get id 1 (plain.sql and notify.sql use it)';
    END IF;
END $$;
