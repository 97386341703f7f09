-- Subscribe benchmark setup: channels room:<n>, subscribable by a member of room n only. The
-- policy joins a membership table, the way an application scopes rooms to users.
-- psql variables: users, rooms_per_user (room r belongs to user u<r % users>).
CREATE EXTENSION realtime;
INSERT INTO realtime.channels (pattern, description) VALUES ('room:%', 'bench: one room per channel');

CREATE TABLE public.memberships (
    user_id text NOT NULL,
    room    text NOT NULL,
    PRIMARY KEY (user_id, room)
);
INSERT INTO public.memberships (user_id, room)
SELECT 'u' || (r % :users), r::text
  FROM generate_series(0, :users * :rooms_per_user - 1) AS r;
ANALYZE public.memberships;
GRANT SELECT ON public.memberships TO authenticated;

CREATE POLICY room_members ON realtime.channels FOR SELECT TO authenticated
    USING (EXISTS (SELECT 1 FROM public.memberships m
                    WHERE m.user_id = realtime.user_id()
                      AND m.room = split_part(realtime.channel_name(), ':', 2)));
