-- taskd on PostgreSQL, schema version 3: running sub-tasks (claims, leases, retries).
-- The same columns and meaning as crates/taskd-store-sqlite/migrations/0003_execution.sql:
--
-- A sub-task is claimable when it is 'waiting' with ready_at <= now and its task's
-- schedule time has come. ready_at is NULL while it is held back (awaiting confirm or a
-- stop); for 'retry_waiting' it is the time the retry is due. A claim moves it to
-- 'processing' with a lease (lease_owner, lease_until) and counts the attempt; the
-- attempt number fences results, so a late result of an expired lease changes nothing.

ALTER TABLE sub_tasks
    ADD COLUMN ready_at BIGINT,
    ADD COLUMN lease_owner TEXT,
    ADD COLUMN lease_until BIGINT,
    ADD COLUMN progress BIGINT CHECK (progress BETWEEN 0 AND 100),
    -- Automatic retries used since the last user retry (the task's retry_count bounds it).
    ADD COLUMN retries INTEGER NOT NULL DEFAULT 0 CHECK (retries >= 0);

ALTER TABLE tasks
    -- A hint, not a count: true when the task may hold claimable sub-tasks. Raised
    -- whenever one is released; a claim that finds the task empty lowers it.
    ADD COLUMN runnable BOOLEAN NOT NULL DEFAULT FALSE,
    -- Fairness: claims serve the task served longest ago first (0 = never served).
    ADD COLUMN served_seq BIGINT NOT NULL DEFAULT 0;

-- Rows that existed before this version: released unless they await a confirm;
-- 'processing' ones had no lease, so they expire at once and are queued again.
UPDATE sub_tasks s SET ready_at = COALESCE(t.schedule_at, 0)
    FROM tasks t WHERE t.id = s.task_id AND s.state = 'waiting' AND NOT t.need_confirm;
UPDATE sub_tasks SET ready_at = 0 WHERE state = 'retry_waiting';
UPDATE sub_tasks SET lease_until = 0, lease_owner = '' WHERE state = 'processing';
UPDATE tasks SET runnable = TRUE WHERE n_waiting > 0 OR n_retry_waiting > 0 OR n_processing > 0;

-- Claimable rows only: a claim's per-task scan never walks finished or held rows.
CREATE INDEX sub_tasks_ready ON sub_tasks (task_id, id)
    WHERE state = 'waiting' AND ready_at IS NOT NULL;
-- Maintenance: retries due, leases expired.
CREATE INDEX sub_tasks_retry_due ON sub_tasks (ready_at) WHERE state = 'retry_waiting';
CREATE INDEX sub_tasks_leases ON sub_tasks (lease_until) WHERE state = 'processing';
-- The claim's candidate tasks, least recently served first.
CREATE INDEX tasks_runnable ON tasks (served_seq, id) WHERE runnable;
-- Running totals for the limits: only tasks with something running.
CREATE INDEX tasks_running ON tasks (project_id) WHERE n_processing > 0;
