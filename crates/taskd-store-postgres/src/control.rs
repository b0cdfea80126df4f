//! Stop, retry and confirm: one transaction per call, holding the task row's lock.
//!
//! Every decision comes from `taskd_core::state`: whether the op may touch the task at
//! all (`ControlOp::allowed_for_task`), where it moves each sub-task
//! (`ControlOp::sub_task_target`), and where the task ends up (`whole_task_state`, then
//! `TaskState::derive` on the new counters). The task row is locked (`FOR UPDATE`) before
//! its state and counters are read, so concurrent calls on one task, from any node, run
//! one after the other and each sees the previous one's result. Every `UPDATE` is still
//! guarded by the state it expects and its row count checked, and the counters move with
//! the rows in the same transaction.

use std::collections::HashMap;

use sqlx::PgConnection;
use taskd_core::{ControlOp, Id, Progress, SubTaskState, TaskState, Timestamp};
use taskd_store::{StoreResult, TaskControlOutcome, TaskControlParams};
use taskd_store_sql::control_plan::plan_targets;

use crate::rows::{corrupt, parse_sub_task_state};
use taskd_store_sql::tasks::{count_move, load_locked};

use crate::driver::PgConn;
use crate::{PgDriver, begin_write, db, give_up};

pub(crate) async fn task_control(
    store: &PgDriver,
    params: TaskControlParams,
) -> StoreResult<TaskControlOutcome> {
    let TaskControlParams {
        scope,
        task_id,
        op,
        targets,
        now,
    } = params;
    let mut tx = begin_write(store).await?;
    let Some(mut task) = load_locked::<PgDriver>(&mut PgConn(&mut tx), &scope, task_id).await?
    else {
        return give_up(tx, TaskControlOutcome::NotFound).await;
    };
    let before = task.state;
    if !op.allowed_for_task(before) {
        return give_up(tx, TaskControlOutcome::TaskStateRefused(before)).await;
    }

    let mut progress = task.progress;
    let mut moved = 0_i64;
    // A confirmed sub-task may run from the task's schedule time on; a retried one now.
    let release = match op {
        ControlOp::Confirm => task.schedule_at.map_or(now, |s| s.max(now)),
        _ => now,
    };
    let (through, outcomes) = match targets {
        None => {
            // Every sub-task the op applies to: one guarded UPDATE per source state.
            for from in op.source_states() {
                let Some(to) = op.sub_task_target(from) else {
                    continue;
                };
                let expected = progress.move_all(from, to);
                let changed = move_all(&mut tx, task_id, op, from, to, release, now).await?;
                if changed != expected as u64 {
                    return Err(corrupt(format!(
                        "task {task_id}: {changed} sub-tasks were {}, its counters say {expected}",
                        from.as_str()
                    )));
                }
                moved += expected;
            }
            (op.whole_task_state(before), Vec::new())
        }
        Some(targets) => {
            // All named targets in one lookup, then one guarded UPDATE per source state.
            let found = find(&mut tx, task_id, &targets).await?;
            let plan = plan_targets(op, targets, &found, &mut progress);
            for (from, to, ids) in &plan.moves {
                move_ids(&mut tx, ids, op, *from, *to, release, now).await?;
            }
            moved += plan.moved() as i64;
            // Per-target ops don't pass through a whole-task state.
            (before, plan.outcomes)
        }
    };
    debug_assert_eq!(progress.sum_of_states(), progress.total);
    debug_assert!(before.can_transition(through), "{before:?} -> {through:?}");
    let after = through.derive(&progress);
    debug_assert!(through.can_transition(after), "{through:?} -> {after:?}");

    if moved > 0 || after != before {
        // Retry and confirm release sub-tasks: the claim must look at this task again.
        let runnable = moved > 0 && op != ControlOp::Stop;
        write_task(&mut tx, task_id, before, after, &progress, runnable, now).await?;
        count_move(&mut PgConn(&mut tx), &task, before, after).await?;
        if runnable {
            crate::wakeups::notify_ready(&mut tx).await?;
        }
        task.state = after;
        task.progress = progress;
        task.updated_at = now;
    }
    tx.commit().await.map_err(db)?;
    Ok(TaskControlOutcome::Applied {
        task,
        targets: outcomes,
    })
}

/// The columns a control op sets besides the state (`$1` the op's name, `$2` the release
/// time): stop holds the sub-task back and ends its lease; retry releases it now and gives
/// it its automatic retries back; confirm releases a held sub-task and leaves a released
/// one as it is.
macro_rules! control_sets {
    () => {
        "ready_at = CASE $1 WHEN 'stop' THEN NULL WHEN 'retry' THEN $2::BIGINT \
                    ELSE COALESCE(ready_at, $2::BIGINT) END, \
         retries = CASE $1 WHEN 'retry' THEN 0 ELSE retries END, \
         lease_expiries = CASE $1 WHEN 'retry' THEN 0 ELSE lease_expiries END, \
         lease_owner = CASE $1 WHEN 'confirm' THEN lease_owner END, \
         lease_until = CASE $1 WHEN 'confirm' THEN lease_until END"
    };
}

pub(crate) const MOVE_ALL_SQL: &str = concat!(
    "UPDATE sub_tasks SET ",
    control_sets!(),
    ", state = $3, updated_at = $4 WHERE task_id = $5 AND state = $6"
);
pub(crate) const MOVE_IDS_SQL: &str = concat!(
    "UPDATE sub_tasks SET ",
    control_sets!(),
    ", state = $3, updated_at = $4 WHERE id = ANY($5) AND state = $6"
);

fn op_name(op: ControlOp) -> &'static str {
    match op {
        ControlOp::Stop => "stop",
        ControlOp::Retry => "retry",
        ControlOp::Confirm => "confirm",
    }
}
pub(crate) const FIND_SQL: &str =
    "SELECT target, id, state FROM sub_tasks WHERE task_id = $1 AND target = ANY($2)";

/// Moves every sub-task of `task_id` in `from` to `to`; returns how many moved.
#[allow(clippy::too_many_arguments)]
async fn move_all(
    conn: &mut PgConnection,
    task_id: Id,
    op: ControlOp,
    from: SubTaskState,
    to: SubTaskState,
    release: Timestamp,
    now: Timestamp,
) -> StoreResult<u64> {
    debug_assert!(from.can_transition(to), "{from:?} -> {to:?}");
    // Output and error of the last run stay: they are shown until the sub-task runs again.
    Ok(sqlx::query(MOVE_ALL_SQL)
        .bind(op_name(op))
        .bind(release.0)
        .bind(to.as_str())
        .bind(now.0)
        .bind(task_id.0)
        .bind(from.as_str())
        .execute(conn)
        .await
        .map_err(db)?
        .rows_affected())
}

/// Moves the sub-tasks `ids`, all read in `from`, to `to`; each must still be in `from`.
#[allow(clippy::too_many_arguments)]
async fn move_ids(
    conn: &mut PgConnection,
    ids: &[i64],
    op: ControlOp,
    from: SubTaskState,
    to: SubTaskState,
    release: Timestamp,
    now: Timestamp,
) -> StoreResult<()> {
    debug_assert!(from.can_transition(to), "{from:?} -> {to:?}");
    let changed = sqlx::query(MOVE_IDS_SQL)
        .bind(op_name(op))
        .bind(release.0)
        .bind(to.as_str())
        .bind(now.0)
        .bind(ids)
        .bind(from.as_str())
        .execute(conn)
        .await
        .map_err(db)?
        .rows_affected();
    if changed != ids.len() as u64 {
        // We read them in this transaction, under the task's row lock.
        return Err(corrupt(format!(
            "{} of {} sub-tasks moved from {}: they changed under the task's row lock",
            changed,
            ids.len(),
            from.as_str()
        )));
    }
    Ok(())
}

/// The id and state of each of `targets` that is a sub-task of `task_id`.
async fn find(
    conn: &mut PgConnection,
    task_id: Id,
    targets: &[String],
) -> StoreResult<HashMap<String, (i64, SubTaskState)>> {
    // A target with a NUL is in no task, and PostgreSQL would refuse it as a parameter
    // (`taskd_store::text`).
    let targets: Vec<&str> = targets
        .iter()
        .map(String::as_str)
        .filter(|t| !taskd_store::text::has_nul(t))
        .collect();
    let rows: Vec<(String, i64, String)> = sqlx::query_as(FIND_SQL)
        .bind(task_id.0)
        .bind(&targets)
        .fetch_all(conn)
        .await
        .map_err(db)?;
    rows.into_iter()
        .map(|(target, id, state)| Ok((target, (id, parse_sub_task_state(&state)?))))
        .collect()
}

/// Writes the task's new state and counters, guarded by the state it was read in (the
/// caller has checked the transition and holds the task's row lock). `runnable`:
/// something was released, so claims must look at the task again (only raised here).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write_task(
    conn: &mut PgConnection,
    task_id: Id,
    before: TaskState,
    after: TaskState,
    p: &Progress,
    runnable: bool,
    now: Timestamp,
) -> StoreResult<()> {
    let changed = sqlx::query(
        "UPDATE tasks SET state = $1, n_total = $2, n_waiting = $3, n_processing = $4, \
         n_succeeded = $5, n_failed = $6, n_retry_waiting = $7, n_stopped = $8, n_removed = $9, \
         updated_at = $10, runnable = runnable OR $13 \
         WHERE id = $11 AND state = $12",
    )
    .bind(after.as_str())
    .bind(p.total)
    .bind(p.waiting)
    .bind(p.processing)
    .bind(p.succeeded)
    .bind(p.failed)
    .bind(p.retry_waiting)
    .bind(p.stopped)
    .bind(p.removed)
    .bind(now.0)
    .bind(task_id.0)
    .bind(before.as_str())
    .bind(runnable)
    .execute(conn)
    .await
    .map_err(db)?
    .rows_affected();
    if changed != 1 {
        return Err(corrupt(format!(
            "task {task_id} changed under its row lock"
        )));
    }
    Ok(())
}
