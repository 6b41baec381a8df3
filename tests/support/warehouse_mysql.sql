-- The warehouse of tests/support/warehouse.sql for MariaDB (tests/support/mariadb.py loads it
-- into the session's MariaDB): the examples' tables, the conformance suite's audit_log, and a
-- JSON column (MariaDB's JSON is LONGTEXT with a json_valid() check).
CREATE TABLE orders (
    order_id    BIGINT PRIMARY KEY,
    customer_id BIGINT NOT NULL,
    placed_at   DATETIME NOT NULL,
    status      VARCHAR(32) NOT NULL,
    total_cents BIGINT NOT NULL,
    currency    CHAR(3) NOT NULL
);
INSERT INTO orders VALUES
    (1001, 42, '2024-02-03 10:00:00', 'shipped',   12900, 'EUR'),
    (1002, 42, '2024-05-17 15:30:00', 'delivered',  4599, 'EUR'),
    (1003, 42, '2023-11-30 09:00:00', 'delivered',  2000, 'EUR'),
    (1004, 7,  '2024-06-01 12:00:00', 'cancelled',  9900, 'USD');

CREATE TABLE sales (
    sale_id      BIGINT AUTO_INCREMENT PRIMARY KEY,
    order_id     BIGINT NOT NULL,
    sold_at      DATETIME NOT NULL,
    region       VARCHAR(16) NOT NULL,
    amount_cents BIGINT NOT NULL
);
INSERT INTO sales (order_id, sold_at, region, amount_cents) VALUES
    (1, '2024-01-05', 'emea', 10050),
    (2, '2024-01-20', 'amer', 20000),
    (3, '2024-02-11', 'emea',  5025),
    (4, '2024-02-12', 'apac',  7000),
    (5, '2024-03-01', 'amer',  1000);

CREATE TABLE audit_log (id BIGINT AUTO_INCREMENT PRIMARY KEY, note TEXT NOT NULL);

CREATE TABLE documents (
    id    BIGINT PRIMARY KEY,
    title VARCHAR(100) NOT NULL,
    doc   JSON,
    raw   VARBINARY(16)
);
INSERT INTO documents VALUES
    (1, 'typed', '{"a": [1, 2.5, null], "b": "x"}', X'00FF10'),
    (2, 'no document', NULL, NULL);
