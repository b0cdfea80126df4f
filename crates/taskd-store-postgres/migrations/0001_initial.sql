-- taskd on PostgreSQL, schema version 1. The same tables as the SQLite backend
-- (crates/taskd-store-sqlite/migrations/0001_initial.sql), in PostgreSQL's types.
--
-- Conventions:
-- * ids and timestamps are BIGINT (ids from `id_allocator`, timestamps unix milliseconds);
-- * states are the names of `TaskState::as_str` / `SubTaskState::as_str`, checked here;
-- * JSON documents are TEXT: they are echoed byte for byte, never queried;
-- * keys and names that are compared or ordered use COLLATE "C": byte order and byte
--   equality, as in SQLite, whatever the database's default collation;
-- * no table names a schema: the store runs in whatever `search_path` it was given.
--
-- Never edit this file once released: sqlx records its checksum. Add 0002_... instead.

CREATE TABLE projects (
    project_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE credentials (
    access_key TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    secret_key TEXT NOT NULL,
    project_id TEXT COLLATE "C" NOT NULL REFERENCES projects (project_id),
    created_at BIGINT NOT NULL,
    -- NULL while the key is active.
    revoked_at BIGINT,
    -- Insertion order, the tie-break of "oldest first" (SQLite's rowid).
    seq BIGINT GENERATED ALWAYS AS IDENTITY
);

-- The one id sequence for tasks and sub-tasks (see `Id::floor_at`): a single row. Its row
-- lock, held from allocation to commit, orders task inserts across every node sharing
-- this database, so id order is commit order.
CREATE TABLE id_allocator (
    singleton SMALLINT NOT NULL PRIMARY KEY CHECK (singleton = 0),
    last_id BIGINT NOT NULL
);
INSERT INTO id_allocator (singleton, last_id) VALUES (0, 0);

CREATE TABLE tasks (
    id BIGINT NOT NULL PRIMARY KEY,
    project_id TEXT COLLATE "C" NOT NULL,
    -- '' when the request carried no Instance-Id.
    instance_id TEXT COLLATE "C" NOT NULL,
    -- NULL is the default resource space (never '').
    app_id TEXT COLLATE "C" CHECK (app_id <> ''),
    name TEXT NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    mode TEXT,
    need_confirm BOOLEAN NOT NULL,
    ext_info_json TEXT,
    targets_json TEXT,
    targets_filter_json TEXT,
    document_json TEXT,
    document_source TEXT,
    schedule_at BIGINT,
    retry_count BIGINT CHECK (retry_count >= 0),
    retry_interval_minutes BIGINT CHECK (retry_interval_minutes >= 0),
    state TEXT COLLATE "C" NOT NULL CHECK (state IN (
        'initializing', 'waiting', 'processing', 'stopping',
        'succeeded', 'failed', 'partially_succeeded', 'stopped')),
    state_detail TEXT,
    -- Progress counters: how many sub-tasks are in each state. Changed in the same
    -- transaction as the sub-task rows, so they are never counted.
    n_total BIGINT NOT NULL,
    n_waiting BIGINT NOT NULL CHECK (n_waiting >= 0),
    n_processing BIGINT NOT NULL CHECK (n_processing >= 0),
    n_succeeded BIGINT NOT NULL CHECK (n_succeeded >= 0),
    n_failed BIGINT NOT NULL CHECK (n_failed >= 0),
    n_retry_waiting BIGINT NOT NULL CHECK (n_retry_waiting >= 0),
    n_stopped BIGINT NOT NULL CHECK (n_stopped >= 0),
    n_removed BIGINT NOT NULL CHECK (n_removed >= 0),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK ((retry_count IS NULL) = (retry_interval_minutes IS NULL)),
    CHECK (n_total = n_waiting + n_processing + n_succeeded + n_failed
                     + n_retry_waiting + n_stopped + n_removed)
);

-- Listing is `WHERE project_id = $1 AND instance_id = $2 [AND filter = $n] AND id < $3
-- ORDER BY id DESC`: one index per filter keeps every page a backward index range scan.
CREATE INDEX tasks_scope ON tasks (project_id, instance_id, id);
CREATE INDEX tasks_scope_state ON tasks (project_id, instance_id, state, id);
CREATE INDEX tasks_scope_kind ON tasks (project_id, instance_id, kind, id);
CREATE INDEX tasks_scope_app ON tasks (project_id, instance_id, app_id, id);

-- Unlike SQLite, no foreign key to tasks: PostgreSQL checks one row at a time, which
-- made a 30,000-target insert ~40% slower (about 440 ms instead of 260 ms on 2 cores).
-- The store keeps the reference itself: sub-tasks are inserted in their task's
-- transaction, and deleted explicitly with it, the count checked against its counters.
CREATE TABLE sub_tasks (
    id BIGINT NOT NULL PRIMARY KEY,
    task_id BIGINT NOT NULL,
    target TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL CHECK (state IN (
        'waiting', 'processing', 'succeeded', 'failed', 'retry_waiting', 'stopped', 'removed')),
    input_json TEXT,
    output TEXT,
    error_code TEXT,
    error_msg TEXT,
    attempts BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    updated_at BIGINT NOT NULL,
    CONSTRAINT sub_tasks_task_target UNIQUE (task_id, target)
);

-- Unfiltered listing of a task's sub-tasks, newest first.
CREATE INDEX sub_tasks_task ON sub_tasks (task_id, id);
-- Listing by state, and whole-task ops (`UPDATE ... WHERE task_id = $1 AND state = $2`).
CREATE INDEX sub_tasks_task_state ON sub_tasks (task_id, state, id);

-- How many tasks each (scope, app, kind, state) holds, kept in the same transaction as
-- every task insert, delete and state change: a list's total is SUM(n) over a handful of
-- rows, never a COUNT(*) over tasks.
CREATE TABLE task_counts (
    project_id TEXT COLLATE "C" NOT NULL,
    instance_id TEXT COLLATE "C" NOT NULL,
    -- '' for the default resource space (tasks.app_id IS NULL).
    app_id TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    n BIGINT NOT NULL CHECK (n >= 0),
    PRIMARY KEY (project_id, instance_id, app_id, kind, state)
);

CREATE TABLE task_files (
    file_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    project_id TEXT COLLATE "C" NOT NULL,
    instance_id TEXT COLLATE "C" NOT NULL,
    file_name TEXT NOT NULL,
    -- JSON array of the header's column names.
    columns_json TEXT NOT NULL,
    -- JSON array of rows, each an array of cells (strings).
    rows_json TEXT NOT NULL,
    row_count BIGINT NOT NULL CHECK (row_count >= 0),
    uploaded_at BIGINT NOT NULL
);

CREATE INDEX task_files_scope ON task_files (project_id, instance_id, uploaded_at DESC, file_id);
