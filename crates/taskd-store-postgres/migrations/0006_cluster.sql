-- taskd on PostgreSQL, schema version 6: guards for running on several nodes. The same
-- columns and meaning as crates/taskd-store-sqlite/migrations/0006_cluster.sql.
-- (Versions 4 and 5 are instance operations and the legacy northbound API.)

-- Leases of this sub-task that expired without a result since it last started over (a
-- user retry resets it). An executor that dies on a sub-task every time (a poison pill)
-- would otherwise have it handed out forever; maintenance fails it at the limit.
ALTER TABLE sub_tasks ADD COLUMN lease_expiries INTEGER NOT NULL DEFAULT 0
    CHECK (lease_expiries >= 0);

-- Leadership of a cluster-wide job (maintenance): one row per job, held by one node
-- until `until`; the holder renews it, anyone may take it once it has lapsed.
CREATE TABLE leaders (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  BIGINT NOT NULL
);
