//! Stop, retry and confirm: one transaction per call, holding the task's lock.
//!
//! Every decision comes from `taskd_core::state`: whether the op may touch the task at
//! all (`ControlOp::allowed_for_task`), where it moves each sub-task
//! (`ControlOp::sub_task_target`), and where the task ends up (`whole_task_state`, then
//! `TaskState::derive` on the new counters); per-target ops are planned before any write
//! ([`crate::control_plan`]). The task is locked (PostgreSQL: its row, `FOR UPDATE`;
//! SQLite: the database's one write lock) before its state and counters are read, so
//! concurrent calls on one task, from any node, run one after the other and each sees the
//! previous one's result. Every `UPDATE` is still guarded by the state it expects and its
//! row count checked, and the counters move with the rows in the same transaction.

use std::collections::HashMap;

use taskd_core::{ControlOp, Id, Progress, SubTaskState, TaskState, Timestamp};
use taskd_store::{StoreResult, TaskControlOutcome, TaskControlParams};

use crate::control_plan::plan_targets;
use crate::driver::{Conn, Driver, Stmt, Tx};
use crate::tasks::{count_move, load_locked};
use crate::{corrupt, parse_sub_task_state};

pub async fn task_control<D: Driver>(
    driver: &D,
    params: TaskControlParams,
) -> StoreResult<TaskControlOutcome> {
    let TaskControlParams {
        scope,
        task_id,
        op,
        targets,
        now,
    } = params;
    let mut tx = driver.begin_write().await?;
    let Some(mut task) = load_locked::<D>(&mut tx, &scope, task_id).await? else {
        return tx.give_up(TaskControlOutcome::NotFound).await;
    };
    let before = task.state;
    if !op.allowed_for_task(before) {
        return tx
            .give_up(TaskControlOutcome::TaskStateRefused(before))
            .await;
    }

    let mut progress = task.progress;
    let mut moved = 0_i64;
    // A confirmed sub-task may run from the task's schedule time on; a retried one now.
    let release = match op {
        ControlOp::Confirm => task.schedule_at.map_or(now, |s| s.max(now)),
        _ => now,
    };
    let sets = ControlSets { op, release, now };
    let (through, outcomes) = match targets {
        None => {
            // Every sub-task the op applies to: one guarded UPDATE per source state.
            for from in op.source_states() {
                let Some(to) = op.sub_task_target(from) else {
                    continue;
                };
                let expected = progress.move_all(from, to);
                let changed = tx
                    .execute(
                        sets.bind(Stmt::new(MOVE_ALL_SQL), to)
                            .bind(task_id.0)
                            .bind(from.as_str()),
                    )
                    .await?;
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
            let found = find::<D>(&mut tx, task_id, &targets).await?;
            let plan = plan_targets(op, targets, &found, &mut progress);
            for (from, to, ids) in &plan.moves {
                debug_assert!(from.can_transition(*to), "{from:?} -> {to:?}");
                let changed = tx
                    .execute(
                        sets.bind(Stmt::assembled(move_ids_sql::<D>()), *to)
                            .bind(ids)
                            .bind(from.as_str()),
                    )
                    .await?;
                if changed != ids.len() as u64 {
                    // We read them in this transaction, under the task's lock.
                    return Err(corrupt(format!(
                        "{changed} of {} sub-tasks moved from {}: they changed under the task's lock",
                        ids.len(),
                        from.as_str()
                    )));
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
        count_move(&mut tx, &task, before, after).await?;
        if runnable {
            D::notify_ready(&mut tx).await?;
        }
        task.state = after;
        task.progress = progress;
        task.updated_at = now;
    }
    tx.commit().await?;
    Ok(TaskControlOutcome::Applied {
        task,
        targets: outcomes,
    })
}

/// The columns a control op sets besides the state (`$1` the op's name, `$2` the release
/// time): stop holds the sub-task back and ends its lease; retry releases it now and gives
/// it its automatic retries back; confirm releases a held sub-task and leaves a released
/// one as it is. Output and error of the last run stay: they are shown until the sub-task
/// runs again.
macro_rules! control_sets {
    () => {
        "ready_at = CASE $1 WHEN 'stop' THEN NULL WHEN 'retry' THEN CAST($2 AS BIGINT) \
                    ELSE COALESCE(ready_at, CAST($2 AS BIGINT)) END, \
         retries = CASE $1 WHEN 'retry' THEN 0 ELSE retries END, \
         lease_expiries = CASE $1 WHEN 'retry' THEN 0 ELSE lease_expiries END, \
         lease_owner = CASE $1 WHEN 'confirm' THEN lease_owner END, \
         lease_until = CASE $1 WHEN 'confirm' THEN lease_until END"
    };
}

/// Every sub-task of task `$5` in state `$6`.
pub const MOVE_ALL_SQL: &str = concat!(
    "UPDATE sub_tasks SET ",
    control_sets!(),
    ", state = $3, updated_at = $4 WHERE task_id = $5 AND state = $6"
);

/// The sub-tasks `$5` (a list), each still in state `$6`.
pub fn move_ids_sql<D: Driver>() -> String {
    format!(
        concat!(
            "UPDATE sub_tasks SET ",
            control_sets!(),
            ", state = $3, updated_at = $4 WHERE id {} AND state = $6"
        ),
        D::in_list(5)
    )
}

/// The named targets `$2` (a list) among the sub-tasks of task `$1`.
pub fn find_sql<D: Driver>() -> String {
    format!(
        "SELECT target, id, state FROM sub_tasks WHERE task_id = $1 AND target {}",
        D::in_list(2)
    )
}

/// `$1`..`$4` of [`MOVE_ALL_SQL`] and [`move_ids_sql`].
struct ControlSets {
    op: ControlOp,
    release: Timestamp,
    now: Timestamp,
}

impl ControlSets {
    fn bind<'a>(&self, stmt: Stmt<'a>, to: SubTaskState) -> Stmt<'a> {
        let op = match self.op {
            ControlOp::Stop => "stop",
            ControlOp::Retry => "retry",
            ControlOp::Confirm => "confirm",
        };
        stmt.bind(op)
            .bind(self.release.0)
            .bind(to.as_str())
            .bind(self.now.0)
    }
}

/// The id and state of each of `targets` that is a sub-task of `task_id`.
async fn find<D: Driver>(
    tx: &mut D::Tx,
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
    let rows: Vec<(String, i64, String)> = tx
        .fetch_all(
            Stmt::assembled(find_sql::<D>())
                .bind(task_id.0)
                .bind(&targets),
        )
        .await?;
    rows.into_iter()
        .map(|(target, id, state)| Ok((target, (id, parse_sub_task_state(&state)?))))
        .collect()
}

/// Writes the task's new state and counters, guarded by the state it was read in (the
/// caller has checked the transition and holds the task's lock). `runnable`: something
/// was released, so claims must look at the task again (only ever raised here).
pub async fn write_task<C: Conn>(
    conn: &mut C,
    task_id: Id,
    before: TaskState,
    after: TaskState,
    p: &Progress,
    runnable: bool,
    now: Timestamp,
) -> StoreResult<()> {
    let changed = conn
        .execute(
            Stmt::new(
                "UPDATE tasks SET state = $1, n_total = $2, n_waiting = $3, n_processing = $4, \
                 n_succeeded = $5, n_failed = $6, n_retry_waiting = $7, n_stopped = $8, \
                 n_removed = $9, updated_at = $10, runnable = runnable OR $13 \
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
            .bind(runnable),
        )
        .await?;
    if changed != 1 {
        return Err(corrupt(format!("task {task_id} changed under its lock")));
    }
    Ok(())
}
