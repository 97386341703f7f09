-- Supabase postgres_changes benchmark (bench/supabase/run.sh), after bench/lib.sh's
-- cluster_setup (extension, roles, and a policy letting every role see every channel row).
-- A table whose row-level security lets each user SELECT only its own rows, watched by
-- realtime.watch_table on the channel that postgres_changes bindings of the table subscribe to.
-- The load generator (--mode changes) inserts (owner, s, t, pad): owner u<k> is user k's row,
-- s the row's sequence number, t its send time in µs.
CREATE TABLE public.benchrows (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner text   NOT NULL,
    s     bigint NOT NULL,
    t     bigint NOT NULL,
    pad   text   NOT NULL
);
ALTER TABLE public.benchrows ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON public.benchrows FOR SELECT TO authenticated
    USING (owner = realtime.user_id());
GRANT SELECT ON public.benchrows TO authenticated;

SELECT realtime.watch_table('public.benchrows', 'changes:public.benchrows');
INSERT INTO realtime.channels (pattern) VALUES ('changes:public.benchrows');

-- Supabase's per-change work, modelled for the comparison in the report: for one change, each
-- subscriber's claims are set and the row is read back by primary key under the subscriber's
-- role (what Supabase's realtime.apply_rls does per subscriber of a change), all in one call.
-- Returns how many subscribers may see the row (users / subscribers of it: a check of the
-- policy too). The plan of the SELECT is cached across subscribers (role unchanged), which is
-- the cheapest way to do it.
CREATE FUNCTION public.bench_reread(row_id bigint, subscribers int, users int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    visible int := 0;
    hit bigint;
BEGIN
    PERFORM set_config('role', 'authenticated', true);
    FOR i IN 0 .. subscribers - 1 LOOP
        PERFORM set_config('request.jwt.claims',
            json_build_object('sub', 'u' || (i % users), 'role', 'authenticated')::text, true);
        SELECT id INTO hit FROM public.benchrows WHERE id = row_id;
        IF FOUND THEN
            visible := visible + 1;
        END IF;
    END LOOP;
    PERFORM set_config('role', 'none', true);
    RETURN visible;
END $$;
