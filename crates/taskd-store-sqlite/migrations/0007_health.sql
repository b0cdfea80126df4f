-- taskd on SQLite, schema version 7: the readiness probe's row. `check_writable` writes
-- it (one small transaction) to prove the store can take a write right now.
CREATE TABLE health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    checked_at INTEGER NOT NULL
) STRICT;
INSERT INTO health (id, checked_at) VALUES (1, 0);
