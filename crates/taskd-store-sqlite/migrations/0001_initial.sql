-- taskd on SQLite, schema version 1.
--
-- Conventions:
-- * timestamps are INTEGER unix milliseconds (`taskd_core::Timestamp`);
-- * states are the names of `TaskState::as_str` / `SubTaskState::as_str`, checked here;
-- * JSON documents are kept as the text the user sent (`*_json` columns);
-- * every table is STRICT, so a value of the wrong type is an error, not a conversion.
--
-- Never edit this file once released: sqlx records its checksum. Add 0002_... instead.

CREATE TABLE projects (
    project_id TEXT NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE credentials (
    access_key TEXT NOT NULL PRIMARY KEY,
    secret_key TEXT NOT NULL,
    project_id TEXT NOT NULL REFERENCES projects (project_id),
    created_at INTEGER NOT NULL,
    -- NULL while the key is active.
    revoked_at INTEGER
) STRICT;

-- The one id sequence for tasks and sub-tasks (see `Id::floor_at`): a single row.
CREATE TABLE id_allocator (
    singleton INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 0),
    last_id INTEGER NOT NULL
) STRICT;
INSERT INTO id_allocator (singleton, last_id) VALUES (0, 0);

CREATE TABLE tasks (
    id INTEGER NOT NULL PRIMARY KEY,
    project_id TEXT NOT NULL,
    -- '' when the request carried no Instance-Id.
    instance_id TEXT NOT NULL,
    -- NULL is the default resource space (never '').
    app_id TEXT CHECK (app_id <> ''),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    mode TEXT,
    need_confirm INTEGER NOT NULL CHECK (need_confirm IN (0, 1)),
    ext_info_json TEXT,
    targets_json TEXT,
    targets_filter_json TEXT,
    document_json TEXT,
    document_source TEXT,
    schedule_at INTEGER,
    retry_count INTEGER CHECK (retry_count >= 0),
    retry_interval_minutes INTEGER CHECK (retry_interval_minutes >= 0),
    state TEXT NOT NULL CHECK (state IN (
        'initializing', 'waiting', 'processing', 'stopping',
        'succeeded', 'failed', 'partially_succeeded', 'stopped')),
    state_detail TEXT,
    -- Progress counters: how many sub-tasks are in each state. Changed in the same
    -- transaction as the sub-task rows, so they are never counted.
    n_total INTEGER NOT NULL,
    n_waiting INTEGER NOT NULL CHECK (n_waiting >= 0),
    n_processing INTEGER NOT NULL CHECK (n_processing >= 0),
    n_succeeded INTEGER NOT NULL CHECK (n_succeeded >= 0),
    n_failed INTEGER NOT NULL CHECK (n_failed >= 0),
    n_retry_waiting INTEGER NOT NULL CHECK (n_retry_waiting >= 0),
    n_stopped INTEGER NOT NULL CHECK (n_stopped >= 0),
    n_removed INTEGER NOT NULL CHECK (n_removed >= 0),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    CHECK ((retry_count IS NULL) = (retry_interval_minutes IS NULL)),
    CHECK (n_total = n_waiting + n_processing + n_succeeded + n_failed
                     + n_retry_waiting + n_stopped + n_removed)
) STRICT;

-- Listing is `WHERE project_id = ? AND instance_id = ? [AND filter = ?] AND id < ?
-- ORDER BY id DESC`: one index per filter keeps every page an index range scan.
CREATE INDEX tasks_scope ON tasks (project_id, instance_id, id);
CREATE INDEX tasks_scope_state ON tasks (project_id, instance_id, state, id);
CREATE INDEX tasks_scope_kind ON tasks (project_id, instance_id, kind, id);
CREATE INDEX tasks_scope_app ON tasks (project_id, instance_id, app_id, id);

CREATE TABLE sub_tasks (
    id INTEGER NOT NULL PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    target TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN (
        'waiting', 'processing', 'succeeded', 'failed', 'retry_waiting', 'stopped', 'removed')),
    input_json TEXT,
    output TEXT,
    error_code TEXT,
    error_msg TEXT,
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    updated_at INTEGER NOT NULL,
    UNIQUE (task_id, target)
) STRICT;

-- Unfiltered listing of a task's sub-tasks, newest first.
CREATE INDEX sub_tasks_task ON sub_tasks (task_id, id);
-- Listing by state, and whole-task ops (`UPDATE ... WHERE task_id = ? AND state = ?`).
CREATE INDEX sub_tasks_task_state ON sub_tasks (task_id, state, id);

-- How many tasks each (scope, app, kind, state) holds, kept in the same transaction as
-- every task insert, delete and state change: a list's total is SUM(n) over a handful of
-- rows, never a COUNT(*) over tasks.
CREATE TABLE task_counts (
    project_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    -- '' for the default resource space (tasks.app_id IS NULL).
    app_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    n INTEGER NOT NULL CHECK (n >= 0),
    PRIMARY KEY (project_id, instance_id, app_id, kind, state)
) STRICT, WITHOUT ROWID;

CREATE TABLE task_files (
    file_id TEXT NOT NULL PRIMARY KEY,
    project_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    file_name TEXT NOT NULL,
    -- JSON array of the header's column names.
    columns_json TEXT NOT NULL,
    -- JSON array of rows, each an array of cells (strings).
    rows_json TEXT NOT NULL,
    row_count INTEGER NOT NULL CHECK (row_count >= 0),
    uploaded_at INTEGER NOT NULL
) STRICT;

CREATE INDEX task_files_scope ON task_files (project_id, instance_id, uploaded_at DESC, file_id);
