-- taskd on SQLite, schema version 3: running sub-tasks (claims, leases, retries).
--
-- A sub-task is claimable when it is 'waiting' with ready_at <= now and its task's
-- schedule time has come. ready_at is NULL while it is held back (awaiting confirm or a
-- stop); for 'retry_waiting' it is the time the retry is due. A claim moves it to
-- 'processing' with a lease (lease_owner, lease_until) and counts the attempt; the
-- attempt number fences results, so a late result of an expired lease changes nothing.

ALTER TABLE sub_tasks ADD COLUMN ready_at INTEGER;
ALTER TABLE sub_tasks ADD COLUMN lease_owner TEXT;
ALTER TABLE sub_tasks ADD COLUMN lease_until INTEGER;
ALTER TABLE sub_tasks ADD COLUMN progress INTEGER CHECK (progress BETWEEN 0 AND 100);
-- Automatic retries used since the last user retry (the task's retry_count bounds it).
ALTER TABLE sub_tasks ADD COLUMN retries INTEGER NOT NULL DEFAULT 0 CHECK (retries >= 0);

-- A hint, not a count: 1 when the task may hold claimable sub-tasks. Set whenever one is
-- released; a claim that finds the task empty clears it. Claims only look at these tasks.
ALTER TABLE tasks ADD COLUMN runnable INTEGER NOT NULL DEFAULT 0 CHECK (runnable IN (0, 1));
-- Fairness: the claim serves the task served longest ago first (0 = never served, so a
-- new small task goes before a big one that has been running for a while).
ALTER TABLE tasks ADD COLUMN served_seq INTEGER NOT NULL DEFAULT 0;

-- Sub-tasks that existed before this version: released unless they await a confirm;
-- 'processing' ones had no lease, so they expire at once and are queued again.
UPDATE sub_tasks SET ready_at = (
    SELECT COALESCE(t.schedule_at, 0) FROM tasks t
    WHERE t.id = sub_tasks.task_id AND t.need_confirm = 0)
WHERE state = 'waiting';
UPDATE sub_tasks SET ready_at = 0 WHERE state = 'retry_waiting';
UPDATE sub_tasks SET lease_until = 0, lease_owner = '' WHERE state = 'processing';
UPDATE tasks SET runnable = 1 WHERE n_waiting > 0 OR n_retry_waiting > 0 OR n_processing > 0;

-- Claimable rows only: the claim's per-task range scan never walks finished or held rows.
CREATE INDEX sub_tasks_ready ON sub_tasks (task_id, id)
    WHERE state = 'waiting' AND ready_at IS NOT NULL;
-- Maintenance: retries due, leases expired.
CREATE INDEX sub_tasks_retry_due ON sub_tasks (ready_at) WHERE state = 'retry_waiting';
CREATE INDEX sub_tasks_leases ON sub_tasks (lease_until) WHERE state = 'processing';
-- The claim's candidate tasks, least recently served first.
CREATE INDEX tasks_runnable ON tasks (served_seq, id) WHERE runnable = 1;
-- Running totals for the limits: only tasks with something running.
CREATE INDEX tasks_running ON tasks (project_id) WHERE n_processing > 0;
