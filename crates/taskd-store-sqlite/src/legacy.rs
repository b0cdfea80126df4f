//! The legacy northbound API's writes that run inside other use cases' transactions: a
//! legacy operation recorded with its task, and task deadlines ended by maintenance.
//! (The rest is written once, in `taskd_store_sql::legacy`.)

use sqlx::SqliteConnection;
use taskd_core::{Id, SubTaskState, TaskScope, Timestamp};
use taskd_store::{LegacyOperation, StoreResult, TIMEOUT_ERROR_CODE};

use crate::db;

/// Records a legacy operation (and its deadline) with its task, inside the insert.
pub(crate) async fn insert_operation(
    conn: &mut SqliteConnection,
    task_id: Id,
    scope: &TaskScope,
    op: &LegacyOperation,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO legacy_operations (task_id, project_id, instance_id, operate_type, \
         device_type, model, manufacturer_name) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(task_id.0)
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .bind(&op.operate_type)
    .bind(&op.device_type)
    .bind(&op.model)
    .bind(&op.manufacturer_name)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    if let Some(deadline) = op.deadline_at {
        sqlx::query(
            "INSERT INTO task_deadlines (task_id, deadline_at, pending, n_timed_out) \
             VALUES (?, ?, 1, 0)",
        )
        .bind(task_id.0)
        .bind(deadline.0)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

pub(crate) const DEADLINES_DUE_SQL: &str = "SELECT task_id FROM task_deadlines \
     INDEXED BY task_deadlines_due WHERE pending = 1 AND deadline_at <= ? \
     ORDER BY deadline_at LIMIT ?";

/// The sub-task states a deadline ends.
pub(crate) const UNFINISHED: [SubTaskState; 3] = [
    SubTaskState::Waiting,
    SubTaskState::RetryWaiting,
    SubTaskState::Processing,
];

/// Ends, as failed with `TIMEOUT`, the unfinished sub-tasks of `task_id`; returns how
/// many (from each state of [`UNFINISHED`]). Marks the deadline done.
pub(crate) async fn expire_task(
    conn: &mut SqliteConnection,
    task_id: Id,
    now: Timestamp,
) -> StoreResult<[i64; 3]> {
    let mut moved = [0i64; 3];
    for (i, from) in UNFINISHED.into_iter().enumerate() {
        debug_assert!(
            from.can_transition(SubTaskState::Failed),
            "{from:?} -> Failed"
        );
        moved[i] = sqlx::query(
            "UPDATE sub_tasks SET state = 'failed', error_code = ?1, \
             error_msg = 'The task window ended before the device finished.', \
             ready_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = ?2 \
             WHERE task_id = ?3 AND state = ?4",
        )
        .bind(TIMEOUT_ERROR_CODE)
        .bind(now.0)
        .bind(task_id.0)
        .bind(from.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db)?
        .rows_affected() as i64;
    }
    let total: i64 = moved.iter().sum();
    sqlx::query(
        "UPDATE task_deadlines SET pending = 0, n_timed_out = n_timed_out + ? WHERE task_id = ?",
    )
    .bind(total)
    .bind(task_id.0)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(moved)
}
