//! Running sub-tasks, the parts both dialects say alike: heartbeats, maintenance (due
//! retries, expired leases, legacy deadlines), the next due time, the maintenance leader,
//! and `settle`, which every runner write ends with. Claims and result batches are each
//! backend's own (`SKIP LOCKED` and an advisory lock on PostgreSQL, one writer on SQLite;
//! `unnest` bulk updates): see their `run` modules.
//!
//! Maintenance locks the tasks it touches in id order (the lock order: allocator, tasks
//! by id, counts), so it never deadlocks with a reporter. Every sub-task write is guarded
//! by the state (and for leases the expiry) it expects; counters, task state and
//! `task_counts` move in the same transaction.

use std::collections::{BTreeMap, HashMap};

use taskd_core::{Id, Progress, SubTaskState, Task, TaskState, Timestamp, minute_of_day};
use taskd_store::{
    ClaimParams, ClaimedSubTask, HeartbeatParams, LeaderParams, MaintenanceReport, ReportOutcome,
    ReportParams, RunOutcome, StoreResult,
};

use crate::control::write_task;
use crate::driver::{Conn, DialectSql, Driver, KeyLock, Stmt, Tx};
use crate::legacy::{UNFINISHED, expire_task};
use crate::registry::apply_device_effect;
use crate::run_plan::{
    LEASE_EXPIRED_CODE, LeasedRow, MAX_CANDIDATE_TASKS, ShareOut, abandons, claimed_sub_tasks,
    decide, lease_expired_message,
};
use crate::tasks::{count_move, load_by_id_locked};
use crate::{corrupt, parse_sub_task_state};

/// Writes a task's new counters and the state they imply, and moves its `task_counts`
/// (the caller holds the task's lock). Returns the new state.
pub async fn settle<C: Conn>(
    conn: &mut C,
    task: &Task,
    progress: Progress,
    runnable: bool,
    now: Timestamp,
) -> StoreResult<TaskState> {
    if !progress.is_consistent() {
        return Err(corrupt(format!(
            "task {}: counters would become {progress:?}",
            task.id
        )));
    }
    let before = task.state;
    let after = before.derive(&progress);
    debug_assert!(before.can_transition(after), "{before:?} -> {after:?}");
    write_task(conn, task.id, before, after, &progress, runnable, now).await?;
    count_move(conn, task, before, after).await?;
    Ok(after)
}

/// Extends a lease, guarded by the attempt it was handed out for (and the project, when
/// the worker is a project's).
pub const HEARTBEAT_SQL: &str = "UPDATE sub_tasks SET lease_until = $1, \
     progress = COALESCE($2, progress), updated_at = $3 \
     WHERE id = $4 AND state = 'processing' AND attempts = $5 \
     AND (CAST($6 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM tasks t \
                                  WHERE t.id = sub_tasks.task_id AND t.project_id = $6))";

pub async fn heartbeat<D: Driver>(
    driver: &D,
    p: HeartbeatParams,
) -> StoreResult<Option<Timestamp>> {
    let changed = driver
        .write_one(
            Stmt::new(HEARTBEAT_SQL)
                .bind(p.lease_until.0)
                .bind(p.progress.map(i64::from))
                .bind(p.now.0)
                .bind(p.sub_task_id.0)
                .bind(i64::from(p.attempt))
                .bind(&p.project_id),
        )
        .await?;
    Ok((changed == 1).then_some(p.lease_until))
}

pub const RETRIES_DUE_SQL: &str = "SELECT id, task_id, CAST(lease_expiries AS BIGINT) \
     FROM sub_tasks WHERE state = 'retry_waiting' AND ready_at <= $1 ORDER BY ready_at LIMIT $2";
pub const LEASES_EXPIRED_SQL: &str = "SELECT id, task_id, CAST(lease_expiries AS BIGINT) \
     FROM sub_tasks WHERE state = 'processing' AND lease_until < $1 ORDER BY lease_until LIMIT $2";

pub async fn maintain<D: Driver>(
    driver: &D,
    now: Timestamp,
    max_rows: u32,
) -> StoreResult<MaintenanceReport> {
    let retries = requeue(driver, Requeue::RetriesDue, now, max_rows).await?;
    let leases = requeue(driver, Requeue::LeasesExpired, now, max_rows).await?;
    let (deadline_tasks, timed_out) = expire_deadlines(driver, now, max_rows).await?;
    let messages_expired = crate::channel::messages_expire(driver, now, max_rows).await?;
    Ok(MaintenanceReport {
        messages_expired,
        retries_released: retries.requeued,
        leases_expired: leases.requeued,
        leases_abandoned: leases.abandoned,
        timed_out,
        more: retries.rows == u64::from(max_rows)
            || leases.rows == u64::from(max_rows)
            || deadline_tasks == u64::from(max_rows)
            || messages_expired == u64::from(max_rows),
    })
}

/// Ends the unfinished sub-tasks of up to `max_tasks` tasks whose deadline passed, as
/// failed (`TIMEOUT`), with the counters; each task locked in id order first. Returns
/// (tasks, sub-tasks) ended.
async fn expire_deadlines<D: Driver>(
    driver: &D,
    now: Timestamp,
    max_tasks: u32,
) -> StoreResult<(u64, u64)> {
    let mut tx = driver.begin_write().await?;
    let due: Vec<(i64,)> = tx
        .fetch_all(
            Stmt::new(D::sql(DialectSql::DeadlinesDue))
                .bind(now.0)
                .bind(i64::from(max_tasks)),
        )
        .await?;
    if due.is_empty() {
        return tx.give_up((0, 0)).await;
    }
    let mut ended = 0u64;
    for (task_id,) in &due {
        let Some(task) = load_by_id_locked::<D>(&mut tx, Id(*task_id)).await? else {
            continue;
        };
        let moved = expire_task(&mut tx, task.id, now).await?;
        let mut progress = task.progress;
        for (from, n) in UNFINISHED.into_iter().zip(moved) {
            progress.move_n(from, SubTaskState::Failed, n);
            ended += n as u64;
        }
        if progress != task.progress {
            settle(&mut tx, &task, progress, false, now).await?;
        }
    }
    tx.commit().await?;
    Ok((due.len() as u64, ended))
}

/// What `requeue` does to the sub-tasks one select finds.
#[derive(Clone, Copy)]
enum Requeue {
    RetriesDue,
    LeasesExpired,
}

#[derive(Default)]
struct Requeued {
    rows: u64,
    requeued: u64,
    abandoned: u64,
}

/// Puts sub-tasks back in the queue, claimable now (a due retry keeps its due time, which
/// is not later than now). Guarded by the state read before the task's lock; what changed
/// since stays put (a processing row only while its lease is still the expired one).
fn requeue_sql<D: Driver>() -> String {
    format!(
        "UPDATE sub_tasks SET state = 'waiting', \
         ready_at = CASE WHEN ready_at IS NOT NULL AND ready_at < $1 THEN ready_at ELSE $1 END, \
         lease_expiries = lease_expiries + $2, \
         lease_owner = NULL, lease_until = NULL, updated_at = $1 \
         WHERE id {} AND state = $4 AND (state <> 'processing' OR lease_until < $1)",
        D::in_list(3)
    )
}

/// Fails sub-tasks whose lease expired once too often.
fn abandon_sql<D: Driver>() -> String {
    format!(
        "UPDATE sub_tasks SET state = 'failed', \
         lease_expiries = lease_expiries + 1, error_code = $2, error_msg = $3, \
         lease_owner = NULL, lease_until = NULL, updated_at = $1 \
         WHERE id {} AND state = 'processing' AND lease_until < $1",
        D::in_list(4)
    )
}

/// Puts the sub-tasks the select finds back in the queue. An expired lease counts
/// against the sub-task; at `LEASE_EXPIRIES_BEFORE_FAILURE` it fails instead.
async fn requeue<D: Driver>(
    driver: &D,
    what: Requeue,
    now: Timestamp,
    max_rows: u32,
) -> StoreResult<Requeued> {
    let (select_sql, from) = match what {
        Requeue::RetriesDue => (RETRIES_DUE_SQL, SubTaskState::RetryWaiting),
        Requeue::LeasesExpired => (LEASES_EXPIRED_SQL, SubTaskState::Processing),
    };
    let expired = matches!(what, Requeue::LeasesExpired);
    let mut tx = driver.begin_write().await?;
    let rows: Vec<(i64, i64, i64)> = tx
        .fetch_all(Stmt::new(select_sql).bind(now.0).bind(i64::from(max_rows)))
        .await?;
    let mut done = Requeued {
        rows: rows.len() as u64,
        ..Requeued::default()
    };
    if rows.is_empty() {
        return tx.give_up(done).await;
    }
    // Per task, in id order (the lock order): (to requeue, to abandon).
    let mut by_task: BTreeMap<i64, (Vec<i64>, Vec<i64>)> = BTreeMap::new();
    for (id, task_id, expiries) in &rows {
        let ids = by_task.entry(*task_id).or_default();
        if expired && abandons(*expiries) {
            ids.1.push(*id);
        } else {
            ids.0.push(*id);
        }
    }
    let message = lease_expired_message();
    for (task_id, (requeue_ids, abandon_ids)) in by_task {
        let Some(task) = load_by_id_locked::<D>(&mut tx, Id(task_id)).await? else {
            continue;
        };
        let requeued = if requeue_ids.is_empty() {
            0
        } else {
            tx.execute(
                Stmt::assembled(requeue_sql::<D>())
                    .bind(now.0)
                    .bind(i64::from(expired))
                    .bind(&requeue_ids)
                    .bind(from.as_str()),
            )
            .await?
        };
        let abandoned = if abandon_ids.is_empty() {
            0
        } else {
            tx.execute(
                Stmt::assembled(abandon_sql::<D>())
                    .bind(now.0)
                    .bind(LEASE_EXPIRED_CODE)
                    .bind(&*message)
                    .bind(&abandon_ids),
            )
            .await?
        };
        if requeued + abandoned == 0 {
            continue;
        }
        let mut progress = task.progress;
        progress.move_n(from, SubTaskState::Waiting, requeued as i64);
        progress.move_n(from, SubTaskState::Failed, abandoned as i64);
        settle(&mut tx, &task, progress, requeued > 0, now).await?;
        done.requeued += requeued;
        done.abandoned += abandoned;
    }
    if done.requeued > 0 {
        D::notify_ready(&mut tx).await?;
    }
    tx.commit().await?;
    Ok(done)
}

pub async fn next_due<D: Driver>(driver: &D, now: Timestamp) -> StoreResult<Option<Timestamp>> {
    let (due,): (Option<i64>,) = driver
        .read()
        .await?
        .fetch_one(Stmt::new(D::sql(DialectSql::NextDue)).bind(now.0))
        .await?;
    Ok(due.map(Timestamp))
}

/// One statement: `INSERT ... ON CONFLICT DO UPDATE ... WHERE` takes the row lock, so of
/// two nodes racing for a lapsed term exactly one updates the row.
pub async fn leader_acquire<D: Driver>(driver: &D, p: &LeaderParams) -> StoreResult<bool> {
    let won = driver
        .write_one(
            Stmt::new(
                "INSERT INTO leaders (name, holder, until) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
                 until = excluded.until \
                 WHERE leaders.holder = excluded.holder OR leaders.until < $4",
            )
            .bind(&p.name)
            .bind(&p.holder)
            .bind(p.until.0)
            .bind(p.now.0),
        )
        .await?;
    Ok(won == 1)
}

pub async fn leader_release<D: Driver>(driver: &D, name: &str, holder: &str) -> StoreResult<()> {
    driver
        .write_one(
            Stmt::new("DELETE FROM leaders WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder),
        )
        .await?;
    Ok(())
}

/// One accepted result, as the driver writes it (`Driver::write_results`): the sub-task
/// `id` leaves `processing` for `state`, guarded by the attempt its lease had.
#[derive(Debug, Clone)]
pub struct ResultWrite {
    pub id: i64,
    pub state: SubTaskState,
    /// Written on success; on failure only when given (else the last output stays).
    pub output: Option<String>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    pub ready_at: Option<i64>,
    pub retries: i64,
    pub attempt: i64,
}

/// Records a batch of results in one transaction: the tasks first, locked in id order,
/// then the rows read under their tasks' locks (one statement for the batch), each
/// judged on its own (a lost lease or another project's sub-task costs the others
/// nothing), registry effects applied with their successes, the rows written by the
/// driver, and each touched task settled once.
pub async fn report<D: Driver>(
    driver: &D,
    params: ReportParams,
) -> StoreResult<Vec<ReportOutcome>> {
    let ReportParams {
        project_id,
        results,
        now,
    } = params;
    let ids: Vec<i64> = results.iter().map(|r| r.sub_task_id.0).collect();
    let mut tx = driver.begin_write().await?;
    let task_ids: Vec<(i64,)> = tx
        .fetch_all(
            Stmt::assembled(format!(
                "SELECT DISTINCT task_id FROM sub_tasks WHERE id {} ORDER BY task_id",
                D::in_list(1)
            ))
            .bind(&ids),
        )
        .await?;
    let mut touched: BTreeMap<i64, (Task, Progress)> = BTreeMap::new();
    for (task_id,) in task_ids {
        if let Some(task) = load_by_id_locked::<D>(&mut tx, Id(task_id)).await? {
            let progress = task.progress;
            touched.insert(task_id, (task, progress));
        }
    }
    let rows: Vec<(i64, i64, String, i64, i64)> = tx
        .fetch_all(
            Stmt::assembled(format!(
                "SELECT id, task_id, state, CAST(attempts AS BIGINT), CAST(retries AS BIGINT) \
                 FROM sub_tasks WHERE id {}",
                D::in_list(1)
            ))
            .bind(&ids),
        )
        .await?;
    let mut current: HashMap<i64, (i64, String, i64, i64)> = rows
        .into_iter()
        .map(|(id, task_id, state, attempts, retries)| (id, (task_id, state, attempts, retries)))
        .collect();

    let mut outcomes = Vec::with_capacity(results.len());
    let mut writes = Vec::new();
    for result in results {
        // A sub-task named twice in one batch takes its first accepted result only (it is
        // removed once accepted); a stale attempt before it costs it nothing.
        let Some((task_id, state, attempts, retries)) = current.get(&result.sub_task_id.0) else {
            outcomes.push(ReportOutcome::LeaseLost);
            continue;
        };
        let (task_id, attempts, retries) = (*task_id, *attempts, *retries);
        let Some((task, progress)) = touched.get_mut(&task_id) else {
            // Its task was deleted between the two reads.
            outcomes.push(ReportOutcome::LeaseLost);
            continue;
        };
        if parse_sub_task_state(state)? != SubTaskState::Processing
            || attempts != i64::from(result.attempt)
            || project_id
                .as_deref()
                .is_some_and(|p| p != task.scope.project_id)
        {
            outcomes.push(ReportOutcome::LeaseLost);
            continue;
        }
        current.remove(&result.sub_task_id.0);
        // A registry effect happens with the success, in this transaction, or not at all.
        let mut outcome = result.outcome;
        if let (RunOutcome::Succeeded { .. }, Some(effect)) = (&outcome, &result.effect)
            && let Err(refused) =
                apply_device_effect::<D>(&mut tx, &task.scope, effect, now).await?
        {
            outcome = RunOutcome::Failed {
                error_code: refused.error_code,
                error_msg: refused.error_msg,
                output: None,
            };
        }
        let decision = decide(task, retries, &outcome, now);
        let (output, error_code, error_msg) = match outcome {
            RunOutcome::Succeeded { output } => (output, None, None),
            RunOutcome::Failed {
                error_code,
                error_msg,
                output,
            } => (output, Some(error_code), Some(error_msg)),
            RunOutcome::Deferred {
                error_code,
                error_msg,
                ..
            } => (None, Some(error_code), Some(error_msg)),
        };
        writes.push(ResultWrite {
            id: result.sub_task_id.0,
            state: decision.state,
            output,
            error_code,
            error_msg,
            ready_at: decision.ready_at.map(|t| t.0),
            retries: decision.retries,
            attempt: attempts,
        });
        progress.move_n(SubTaskState::Processing, decision.state, 1);
        outcomes.push(ReportOutcome::Accepted(decision.state));
    }
    if !writes.is_empty() {
        let changed = D::write_results(&mut tx, now, &writes).await?;
        if changed != writes.len() as u64 {
            return Err(corrupt(format!(
                "{} of {} reported sub-tasks changed under their tasks' locks",
                writes.len() as u64 - changed,
                writes.len()
            )));
        }
    }
    for (task, progress) in touched.values() {
        if *progress != task.progress {
            settle(&mut tx, task, *progress, false, now).await?;
        }
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// Leases up to `params.max` claimable sub-tasks, shared out fairly between tasks
/// (`ShareOut`: least recently served first, within the running limits). Claims take
/// turns (`KeyLock::Claims`: on PostgreSQL an advisory lock, so the limits hold across
/// nodes; SQLite's one writer already serialises them), and the candidate tasks are read
/// locked (PostgreSQL `FOR UPDATE SKIP LOCKED`: a task another transaction is settling is
/// skipped, not waited for).
pub async fn claim<D: Driver>(driver: &D, params: ClaimParams) -> StoreResult<Vec<ClaimedSubTask>> {
    let ClaimParams {
        worker_id,
        project_id,
        kinds,
        max,
        lease_until,
        limits,
        now,
    } = params;
    if max == 0 || kinds.is_empty() {
        return Ok(Vec::new());
    }
    let mut tx = driver.begin_write().await?;
    D::lock_key(&mut tx, KeyLock::Claims, &[]).await?;
    let running: Vec<(String, i64)> = tx
        .fetch_all(Stmt::new(D::sql(DialectSql::ClaimRunning)))
        .await?;
    let Some(mut share_out) = ShareOut::new(limits, max, &running) else {
        return tx.give_up(Vec::new()).await;
    };
    let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
    let candidates: Vec<(i64, String)> = tx
        .fetch_all(
            Stmt::new(D::sql(DialectSql::ClaimCandidates))
                .bind(now.0)
                .bind(&kinds)
                .bind(&project_id)
                .bind(i64::from(MAX_CANDIDATE_TASKS))
                .bind(minute_of_day(now)),
        )
        .await?;
    if candidates.is_empty() {
        return tx.give_up(Vec::new()).await;
    }
    let served_seq = tx
        .fetch_int(Stmt::new(D::sql(DialectSql::NextServedSeq)))
        .await?;

    let mut claimed = Vec::new();
    share_out.candidates(candidates.iter().map(|c| c.1.clone()).collect());
    while let Some((i, want)) = share_out.next_claim() {
        let task_id = candidates[i].0;
        let mut rows: Vec<LeasedRow> = tx
            .fetch_all(
                Stmt::new(D::sql(DialectSql::ClaimRows))
                    .bind(&worker_id)
                    .bind(lease_until.0)
                    .bind(now.0)
                    .bind(task_id)
                    .bind(want),
            )
            .await?;
        rows.sort_unstable_by_key(|r| r.0);
        let got = rows.len() as i64;
        let still_runnable = if got < want {
            let (ready,): (bool,) = tx
                .fetch_one(Stmt::new(D::sql(DialectSql::HasReady)).bind(task_id))
                .await?;
            ready
        } else {
            true
        };
        tx.execute(
            Stmt::new("UPDATE tasks SET served_seq = $1, runnable = $2 WHERE id = $3")
                .bind(served_seq)
                .bind(still_runnable)
                .bind(task_id),
        )
        .await?;
        if got == 0 {
            share_out.got(0);
            continue;
        }
        // Already locked by the candidate query.
        let task = load_by_id_locked::<D>(&mut tx, Id(task_id))
            .await?
            .ok_or_else(|| corrupt(format!("task {} vanished under its lock", Id(task_id))))?;
        // The rows already moved; the counters read here are from before.
        let mut progress = task.progress;
        progress.move_n(SubTaskState::Waiting, SubTaskState::Processing, got);
        settle(&mut tx, &task, progress, false, now).await?;

        claimed_sub_tasks(&task, rows, lease_until, &mut claimed)?;
        share_out.got(got);
    }
    tx.commit().await?;
    Ok(claimed)
}
