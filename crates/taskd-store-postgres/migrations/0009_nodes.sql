-- taskd on PostgreSQL, schema version 9: several nodes holding device connections (issue
-- 12, routing). The same tables as crates/taskd-store-sqlite/migrations/0009_nodes.sql.
--
-- Never edit this file once released. Add 0010_... instead.

-- The nodes that said they are alive, and when last. A node not seen in time is reaped:
-- its device sessions end (devices OFFLINE) and its row and mail go.
CREATE TABLE cluster_nodes (
    node_id TEXT COLLATE "C" PRIMARY KEY,
    seen_at BIGINT NOT NULL
);

-- Mail for a node: a device request for the node that holds the device's connection, or
-- the answer going back (JSON the device channel writes and reads). Taken (deleted) by
-- the receiving node; expired mail is deleted by the reaper.
CREATE TABLE node_mail (
    id BIGSERIAL PRIMARY KEY,
    node_id TEXT COLLATE "C" NOT NULL,
    body TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX node_mail_node ON node_mail (node_id, id);
CREATE INDEX node_mail_expiry ON node_mail (expires_at);
