-- The warehouse the example workflows query (sql-question-answering, sales-report-chart).
CREATE TABLE orders (
    order_id    bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    placed_at   timestamptz NOT NULL,
    status      text NOT NULL,
    total_cents bigint NOT NULL,
    currency    text NOT NULL
);
INSERT INTO orders VALUES
    (1001, 42, '2024-02-03 10:00+00', 'shipped',   12900, 'EUR'),
    (1002, 42, '2024-05-17 15:30+00', 'delivered',  4599, 'EUR'),
    (1003, 42, '2023-11-30 09:00+00', 'delivered',  2000, 'EUR'),
    (1004, 7,  '2024-06-01 12:00+00', 'cancelled',  9900, 'USD');

CREATE TABLE sales (
    sale_id      bigserial PRIMARY KEY,
    order_id     bigint NOT NULL,
    sold_at      timestamptz NOT NULL,
    region       text NOT NULL,
    amount_cents bigint NOT NULL
);
INSERT INTO sales (order_id, sold_at, region, amount_cents) VALUES
    (1, '2024-01-05', 'emea', 10050),
    (2, '2024-01-20', 'amer', 20000),
    (3, '2024-02-11', 'emea',  5025),
    (4, '2024-02-12', 'apac',  7000),
    (5, '2024-03-01', 'amer',  1000);

CREATE TABLE audit_log (id bigserial PRIMARY KEY, note text NOT NULL);
