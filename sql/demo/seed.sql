-- Demo rows for the orders table, run by `make run` after the relay is up (see setup.sql).
-- Safe to run again: existing rows are left alone (and publish nothing).
INSERT INTO public.orders (id, customer, item, status, total) VALUES
    (1, 'Ada', 'keyboard', 'new', 89.00),
    (2, 'Grace', 'monitor', 'paid', 249.50),
    (3, 'Linus', 'laptop stand', 'new', 39.90)
ON CONFLICT (id) DO NOTHING;
