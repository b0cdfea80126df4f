-- taskd on SQLite, schema version 4: instance operations and retention.
--
-- An instance operation is a task with one sub-task (its target is the instance or
-- resource) and these extra columns; batch tasks leave them NULL. Operations live in
-- scopes of their own (`tasks.instance_id` = '<service>:<instance>', see
-- `taskd_core::OpService::scope`), so the existing scope indexes and task_counts serve
-- them unchanged.

ALTER TABLE tasks ADD COLUMN service TEXT
    CHECK (service IN ('iotda-instance', 'rabbitmq', 'swr'));
-- The instance the operation acts on (the scope's instance, without the service prefix).
ALTER TABLE tasks ADD COLUMN op_instance_id TEXT;
ALTER TABLE tasks ADD COLUMN user_name TEXT;
ALTER TABLE tasks ADD COLUMN user_id TEXT;
ALTER TABLE tasks ADD COLUMN target_config_json TEXT;
-- Maintenance window, UTC minutes of the day: claimable only while
-- window_start <= minute < window_end (wrapping midnight when window_start > window_end).
ALTER TABLE tasks ADD COLUMN window_start INTEGER CHECK (window_start BETWEEN 0 AND 1439);
ALTER TABLE tasks ADD COLUMN window_end INTEGER CHECK (window_end BETWEEN 0 AND 1439);

-- When the current or last run of a sub-task was claimed.
ALTER TABLE sub_tasks ADD COLUMN started_at INTEGER;

-- Which project an instance's operations belong to (an instance belongs to one project).
CREATE INDEX tasks_op_instance ON tasks (service, op_instance_id) WHERE service IS NOT NULL;
-- Retention: finished tasks, oldest change first.
CREATE INDEX tasks_finished ON tasks (updated_at)
    WHERE state IN ('succeeded', 'failed', 'partially_succeeded', 'stopped');
