\set id random(1, :rows)
UPDATE bench_watched SET balance = balance + 1, updated_at = now() WHERE id = :id;
