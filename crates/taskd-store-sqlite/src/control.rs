//! Stop, retry and confirm: one `BEGIN IMMEDIATE` transaction per call.
//!
//! Every decision comes from `taskd_core::state`: whether the op may touch the task at
//! all (`ControlOp::allowed_for_task`), where it moves each sub-task
//! (`ControlOp::sub_task_target`), and where the task ends up (`whole_task_state`, then
//! `TaskState::derive` on the new counters). Every `UPDATE` is guarded by the state it
//! expects, and the counters move with the rows in the same transaction.

use std::collections::HashMap;

use sqlx::SqliteConnection;
use taskd_core::{ControlOp, Id, Progress, SubTaskState, TaskState, Timestamp};
use taskd_store::{StoreResult, TaskControlOutcome, TaskControlParams};
use taskd_store_sql::control_plan::plan_targets;

use crate::rows::{corrupt, parse_sub_task_state};
use taskd_store_sql::tasks::{count_move, load};

use crate::driver::SqliteConn;
use crate::{SqliteDriver, begin_write, db};

pub(crate) async fn task_control(
    store: &SqliteDriver,
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
    let Some(mut task) = load(&mut SqliteConn(&mut tx), &scope, task_id).await? else {
        return Ok(TaskControlOutcome::NotFound);
    };
    let before = task.state;
    if !op.allowed_for_task(before) {
        return Ok(TaskControlOutcome::TaskStateRefused(before));
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
            let found = find(&mut tx, task_id, &targets).await?;
            let plan = plan_targets(op, targets, &found, &mut progress);
            for (from, to, ids) in &plan.moves {
                for id in ids {
                    move_one(&mut tx, *id, op, *from, *to, release, now).await?;
                }
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
        count_move(&mut SqliteConn(&mut tx), &task, before, after).await?;
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

/// The columns a control op sets besides the state (`?1` the op's name, `?2` the release
/// time): stop holds the sub-task back and ends its lease; retry releases it now and gives
/// it its automatic retries back; confirm releases a held sub-task and leaves a released
/// one as it is.
macro_rules! control_sets {
    () => {
        "ready_at = CASE ?1 WHEN 'stop' THEN NULL WHEN 'retry' THEN ?2 \
                    ELSE COALESCE(ready_at, ?2) END, \
         retries = CASE ?1 WHEN 'retry' THEN 0 ELSE retries END, \
         lease_expiries = CASE ?1 WHEN 'retry' THEN 0 ELSE lease_expiries END, \
         lease_owner = CASE ?1 WHEN 'confirm' THEN lease_owner ELSE NULL END, \
         lease_until = CASE ?1 WHEN 'confirm' THEN lease_until ELSE NULL END"
    };
}

pub(crate) const MOVE_ALL_SQL: &str = concat!(
    "UPDATE sub_tasks SET ",
    control_sets!(),
    ", state = ?3, updated_at = ?4 WHERE task_id = ?5 AND state = ?6"
);
const MOVE_ONE_SQL: &str = concat!(
    "UPDATE sub_tasks SET ",
    control_sets!(),
    ", state = ?3, updated_at = ?4 WHERE id = ?5 AND state = ?6"
);

fn op_name(op: ControlOp) -> &'static str {
    match op {
        ControlOp::Stop => "stop",
        ControlOp::Retry => "retry",
        ControlOp::Confirm => "confirm",
    }
}
/// One indexed lookup per named target: a statement over a list of targets would scan
/// the list, and per-target ops name at most 100.
pub(crate) const FIND_SQL: &str =
    "SELECT id, state FROM sub_tasks WHERE task_id = ? AND target = ?";

/// Moves every sub-task of `task_id` in `from` to `to`; returns how many moved.
#[allow(clippy::too_many_arguments)]
async fn move_all(
    conn: &mut SqliteConnection,
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

#[allow(clippy::too_many_arguments)]
async fn move_one(
    conn: &mut SqliteConnection,
    id: i64,
    op: ControlOp,
    from: SubTaskState,
    to: SubTaskState,
    release: Timestamp,
    now: Timestamp,
) -> StoreResult<()> {
    debug_assert!(from.can_transition(to), "{from:?} -> {to:?}");
    let changed = sqlx::query(MOVE_ONE_SQL)
        .bind(op_name(op))
        .bind(release.0)
        .bind(to.as_str())
        .bind(now.0)
        .bind(id)
        .bind(from.as_str())
        .execute(conn)
        .await
        .map_err(db)?
        .rows_affected();
    if changed != 1 {
        // We read it in this transaction, under the write lock.
        return Err(corrupt(format!(
            "sub-task {} changed under the write lock",
            Id(id)
        )));
    }
    Ok(())
}

/// The id and state of each of `targets` the task holds, by target.
async fn find(
    conn: &mut SqliteConnection,
    task_id: Id,
    targets: &[String],
) -> StoreResult<HashMap<String, (i64, SubTaskState)>> {
    let mut found = HashMap::with_capacity(targets.len());
    for target in targets {
        // A target with a NUL is in no task (`taskd_store::text`).
        if found.contains_key(target) || taskd_store::text::has_nul(target) {
            continue;
        }
        let row: Option<(i64, String)> = sqlx::query_as(FIND_SQL)
            .bind(task_id.0)
            .bind(target)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
        if let Some((id, state)) = row {
            found.insert(target.clone(), (id, parse_sub_task_state(&state)?));
        }
    }
    Ok(found)
}

/// Writes the task's new state and counters, guarded by the state it was read in (the
/// caller has checked the transition). `runnable`: something was released, so claims
/// must look at the task again (the flag is only ever raised here).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn write_task(
    conn: &mut SqliteConnection,
    task_id: Id,
    before: TaskState,
    after: TaskState,
    p: &Progress,
    runnable: bool,
    now: Timestamp,
) -> StoreResult<()> {
    let changed = sqlx::query(
        "UPDATE tasks SET state = ?, n_total = ?, n_waiting = ?, n_processing = ?, \
         n_succeeded = ?, n_failed = ?, n_retry_waiting = ?, n_stopped = ?, n_removed = ?, \
         updated_at = ?, runnable = MAX(runnable, ?) \
         WHERE id = ? AND state = ?",
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
    .bind(runnable)
    .bind(task_id.0)
    .bind(before.as_str())
    .execute(conn)
    .await
    .map_err(db)?
    .rows_affected();
    if changed != 1 {
        return Err(corrupt(format!(
            "task {task_id} changed under the write lock"
        )));
    }
    Ok(())
}
