-- taskd on SQLite, schema version 9: several nodes holding device connections (issue 12,
-- routing). The embedded store has one node; the tables exist so that the store logic,
-- written once, runs unchanged (its node beats and reads its own, always empty, mailbox).
--
-- Never edit this file once released. Add 0010_... instead.

CREATE TABLE cluster_nodes (
    node_id TEXT PRIMARY KEY,
    seen_at INTEGER NOT NULL
) STRICT;

CREATE TABLE node_mail (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    node_id TEXT NOT NULL,
    body TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX node_mail_node ON node_mail (node_id, id);
CREATE INDEX node_mail_expiry ON node_mail (expires_at);
