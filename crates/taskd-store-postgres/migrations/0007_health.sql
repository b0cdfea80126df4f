-- taskd on PostgreSQL, schema version 7: the readiness probe's row, the same as
-- crates/taskd-store-sqlite/migrations/0007_health.sql. Every node's `check_writable`
-- updates it (one small transaction) to prove the database takes writes right now.
CREATE TABLE health (
    id         SMALLINT PRIMARY KEY CHECK (id = 1),
    checked_at BIGINT NOT NULL
);
INSERT INTO health (id, checked_at) VALUES (1, 0);
