-- Table change events benchmark: two identical tables, one watched by realtime.watch_table.
CREATE EXTENSION realtime;
INSERT INTO realtime.channels (pattern) VALUES ('acct:%');

CREATE TABLE bench_plain (
    id         int PRIMARY KEY,
    owner      text        NOT NULL,
    balance    bigint      NOT NULL,
    note       text        NOT NULL,
    updated_at timestamptz NOT NULL
) WITH (fillfactor = 80);
CREATE TABLE bench_watched (LIKE bench_plain INCLUDING ALL) WITH (fillfactor = 80);

INSERT INTO bench_plain
SELECT g, 'user' || (g % 1000), 0, repeat('x', 60), now() FROM generate_series(1, :rows) g;
INSERT INTO bench_watched SELECT * FROM bench_plain;

-- One channel per row, as an app with per-account channels would do.
SELECT realtime.watch_table('bench_watched', 'acct:{id}');
VACUUM ANALYZE bench_plain, bench_watched;
