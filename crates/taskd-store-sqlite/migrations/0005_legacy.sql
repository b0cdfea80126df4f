-- The legacy IoT northbound API (v1.5.0 upgrade tasks, `crates/taskd-api/src/legacy/`):
-- applications and their tokens, the per-app flow-control window, the legacy device
-- attributes, the legacy operation of a task, and task deadlines (a custom window's end).
--
-- Never edit this file once released: sqlx records its checksum.

-- A network application (NA): logs in with app_id and secret.
CREATE TABLE legacy_apps (
    app_id TEXT NOT NULL PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (project_id),
    -- 'sha256$<salt hex>$<hex of sha256(salt || secret)>': verifiable, never the secret.
    secret_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    -- Set when revoked (frozen): login answers 100247, tokens stop working.
    revoked_at INTEGER
) STRICT;

-- The last tokens issued to an app (only the last access token is valid): one row per
-- app, replaced on every login and refresh. Only hashes (hex sha256) are stored.
CREATE TABLE legacy_tokens (
    app_id TEXT NOT NULL PRIMARY KEY REFERENCES legacy_apps (app_id) ON DELETE CASCADE,
    access_hash TEXT NOT NULL,
    access_expires_at INTEGER NOT NULL,
    refresh_hash TEXT NOT NULL,
    refresh_expires_at INTEGER NOT NULL,
    issued_at INTEGER NOT NULL
) STRICT;

-- Flow control: calls per app in a fixed window (window_start = floor(now / window)),
-- counted with one upsert, so every node of a cluster shares the count.
CREATE TABLE legacy_rate (
    app_id TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    calls INTEGER NOT NULL CHECK (calls >= 0),
    PRIMARY KEY (app_id, window_start)
) STRICT, WITHOUT ROWID;

-- The legacy device attributes (deviceType, model, manufacturerName) of registry devices.
CREATE TABLE legacy_device_attributes (
    project_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    device_type TEXT,
    model TEXT,
    manufacturer_name TEXT,
    PRIMARY KEY (project_id, instance_id, device_id),
    FOREIGN KEY (project_id, instance_id, device_id)
        REFERENCES devices (project_id, instance_id, device_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

-- A task created through the legacy API: what the legacy listing filters on. The rest of
-- the legacy document is the task's own document_json / targets_json.
CREATE TABLE legacy_operations (
    task_id INTEGER NOT NULL PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    operate_type TEXT NOT NULL,
    device_type TEXT,
    model TEXT,
    manufacturer_name TEXT
) STRICT;

CREATE INDEX legacy_operations_scope ON legacy_operations (project_id, instance_id, task_id);

-- A task's deadline: no sub-task of it is claimed at or after deadline_at, and the
-- maintenance pass ends the unfinished ones as failed with error_code 'TIMEOUT'.
-- n_timed_out counts them, moved in the same transaction as the rows.
CREATE TABLE task_deadlines (
    task_id INTEGER NOT NULL PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
    deadline_at INTEGER NOT NULL,
    -- 1 until maintenance has ended the task's unfinished sub-tasks.
    pending INTEGER NOT NULL CHECK (pending IN (0, 1)),
    n_timed_out INTEGER NOT NULL DEFAULT 0 CHECK (n_timed_out >= 0)
) STRICT;

CREATE INDEX task_deadlines_due ON task_deadlines (deadline_at) WHERE pending = 1;
