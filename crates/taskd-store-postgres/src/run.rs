//! Running sub-tasks on a database several nodes share: claims, heartbeats, results and
//! maintenance.
//!
//! * Claims take a transaction-scoped advisory lock first, so the running limits hold
//!   cluster-wide (two nodes never both see the last free slot). Candidate tasks are
//!   locked `FOR UPDATE SKIP LOCKED`: a task another transaction is settling is skipped,
//!   not waited for. The rows come from the `sub_tasks_ready` partial index, which holds
//!   claimable rows only.
//! * Results and maintenance lock the tasks they touch in id order (the lock order of
//!   this crate: allocator, tasks by id, counts), so two reporters never deadlock.
//! * Every sub-task write is guarded by the state (and for leases the attempt) it
//!   expects; counters, task state and `task_counts` move in the same transaction.

use std::collections::{BTreeMap, HashMap};

use sqlx::PgConnection;
use taskd_core::{Id, Progress, SubTaskState, Task, Timestamp, minute_of_day};
use taskd_store::{
    ClaimParams, ClaimedSubTask, HeartbeatParams, MaintenanceReport, ReportOutcome, ReportParams,
    RunOutcome, StoreResult,
};
use taskd_store_sql::run_plan::{
    LEASE_EXPIRED_CODE, LeasedRow, MAX_CANDIDATE_TASKS, ShareOut, abandons, claimed_sub_tasks,
    decide, lease_expired_message,
};
use taskd_store_sql::{corrupt, parse_sub_task_state};

use taskd_store_sql::control::write_task;
use taskd_store_sql::tasks::{count_move, load_by_id_locked};

use crate::driver::PgConn;
use crate::{PgDriver, begin_write, db, give_up};

/// The advisory lock key that serialises claims across nodes ("taskd.claim").
const CLAIM_LOCK_KEY: i64 = 0x7461_736b_642e_636c;

#[derive(sqlx::FromRow, Clone)]
struct Candidate {
    id: i64,
    project_id: String,
}

pub(crate) const RUNNING_SQL: &str = "SELECT project_id, SUM(n_processing)::BIGINT FROM tasks \
     WHERE n_processing > 0 GROUP BY project_id";

pub(crate) const CANDIDATES_SQL: &str = "SELECT id, project_id FROM tasks \
     WHERE runnable AND (schedule_at IS NULL OR schedule_at <= $1) AND kind = ANY($2) \
     AND ($3::TEXT IS NULL OR project_id = $3) \
     AND NOT EXISTS (SELECT 1 FROM task_deadlines d \
                     WHERE d.task_id = tasks.id AND d.deadline_at <= $1) \
     AND (window_start IS NULL \
          OR (($5::BIGINT - window_start + 1440) % 1440) < ((window_end - window_start + 1440) % 1440)) \
     ORDER BY served_seq, id LIMIT $4 FOR UPDATE SKIP LOCKED";

/// Leases the first `$5` claimable sub-tasks of task `$4`. The pick is a materialised
/// CTE: as an `IN (subquery)` the planner may run a `LIMIT ... FOR UPDATE` subquery more
/// than once and lease more rows than asked.
pub(crate) const CLAIM_ROWS_SQL: &str = "WITH picked AS MATERIALIZED ( \
         SELECT id FROM sub_tasks WHERE task_id = $4 AND state = 'waiting' \
         AND ready_at IS NOT NULL AND ready_at <= $3 ORDER BY id LIMIT $5 \
         FOR UPDATE SKIP LOCKED) \
     UPDATE sub_tasks s SET state = 'processing', lease_owner = $1, lease_until = $2, \
         attempts = s.attempts + 1, progress = NULL, started_at = $3, updated_at = $3 \
     FROM picked WHERE s.id = picked.id AND s.state = 'waiting' \
     RETURNING s.id, s.target, s.input_json, s.attempts";

pub(crate) const HAS_READY_SQL: &str = "SELECT EXISTS (SELECT 1 FROM sub_tasks \
     WHERE task_id = $1 AND state = 'waiting' AND ready_at IS NOT NULL)";

pub(crate) async fn claim(
    store: &PgDriver,
    params: ClaimParams,
) -> StoreResult<Vec<ClaimedSubTask>> {
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
    let mut tx = begin_write(store).await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CLAIM_LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(db)?;

    let running: Vec<(String, i64)> = sqlx::query_as(RUNNING_SQL)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    let Some(mut share_out) = ShareOut::new(limits, max, &running) else {
        return give_up(tx, Vec::new()).await;
    };

    let candidates: Vec<Candidate> = sqlx::query_as(CANDIDATES_SQL)
        .bind(now.0)
        .bind(&kinds)
        .bind(&project_id)
        .bind(i64::from(MAX_CANDIDATE_TASKS))
        .bind(minute_of_day(now))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    if candidates.is_empty() {
        return give_up(tx, Vec::new()).await;
    }
    let served_seq: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(served_seq), 0) + 1 FROM tasks WHERE runnable")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;

    let mut claimed = Vec::new();
    share_out.candidates(candidates.iter().map(|c| c.project_id.clone()).collect());
    while let Some((i, want)) = share_out.next_claim() {
        let c = &candidates[i];
        let mut rows: Vec<LeasedRow> = sqlx::query_as(CLAIM_ROWS_SQL)
            .bind(&worker_id)
            .bind(lease_until.0)
            .bind(now.0)
            .bind(c.id)
            .bind(want)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        rows.sort_unstable_by_key(|r| r.0);
        let got = rows.len() as i64;
        let still_runnable = if got < want {
            sqlx::query_scalar::<_, bool>(HAS_READY_SQL)
                .bind(c.id)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?
        } else {
            true
        };
        sqlx::query("UPDATE tasks SET served_seq = $1, runnable = $2 WHERE id = $3")
            .bind(served_seq)
            .bind(still_runnable)
            .bind(c.id)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if got == 0 {
            share_out.got(0);
            continue;
        }
        // Already locked by the candidate query.
        let task = load_by_id_locked::<PgDriver>(&mut PgConn(&mut tx), Id(c.id))
            .await?
            .ok_or_else(|| corrupt(format!("task {} vanished under its row lock", Id(c.id))))?;
        // The rows already moved; the counters read here are from before.
        let mut progress = task.progress;
        progress.move_n(SubTaskState::Waiting, SubTaskState::Processing, got);
        settle(&mut tx, &task, progress, false, now).await?;

        claimed_sub_tasks(&task, rows, lease_until, &mut claimed)?;
        share_out.got(got);
    }
    tx.commit().await.map_err(db)?;
    Ok(claimed)
}

/// Writes a task's new counters and the state they imply, and moves its `task_counts`.
async fn settle(
    conn: &mut PgConnection,
    task: &Task,
    progress: Progress,
    runnable: bool,
    now: Timestamp,
) -> StoreResult<()> {
    if !progress.is_consistent() {
        return Err(corrupt(format!(
            "task {}: counters would become {progress:?}",
            task.id
        )));
    }
    let before = task.state;
    let after = before.derive(&progress);
    debug_assert!(before.can_transition(after), "{before:?} -> {after:?}");
    write_task(
        &mut PgConn(conn),
        task.id,
        before,
        after,
        &progress,
        runnable,
        now,
    )
    .await?;
    count_move(&mut PgConn(conn), task, before, after).await?;
    Ok(())
}

pub(crate) const HEARTBEAT_SQL: &str = "UPDATE sub_tasks s SET lease_until = $1, \
     progress = COALESCE($2, s.progress), updated_at = $3 \
     WHERE s.id = $4 AND s.state = 'processing' AND s.attempts = $5 \
     AND ($6::TEXT IS NULL OR EXISTS (SELECT 1 FROM tasks t \
                                      WHERE t.id = s.task_id AND t.project_id = $6))";

pub(crate) async fn heartbeat(
    store: &PgDriver,
    p: HeartbeatParams,
) -> StoreResult<Option<Timestamp>> {
    let mut conn = store.pool.acquire().await.map_err(db)?;
    let changed = sqlx::query(HEARTBEAT_SQL)
        .bind(p.lease_until.0)
        .bind(p.progress.map(i64::from))
        .bind(p.now.0)
        .bind(p.sub_task_id.0)
        .bind(i64::from(p.attempt))
        .bind(&p.project_id)
        .execute(&mut *conn)
        .await
        .map_err(db)?
        .rows_affected();
    Ok((changed == 1).then_some(p.lease_until))
}

/// Records a batch's results in one statement: a row per result, guarded by the state and
/// the attempt its lease had (read under the task's lock, so every row matches).
const RESULTS_SQL: &str = "UPDATE sub_tasks s SET state = u.state, \
     output = CASE WHEN u.state = 'succeeded' THEN u.output ELSE s.output END, \
     error_code = u.error_code, error_msg = u.error_msg, ready_at = u.ready_at, \
     retries = u.retries, \
     progress = CASE WHEN u.state = 'succeeded' THEN 100 ELSE s.progress END, \
     lease_owner = NULL, lease_until = NULL, updated_at = $1 \
     FROM unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], \
                 $7::BIGINT[], $8::INT[], $9::BIGINT[]) \
          AS u(id, state, output, error_code, error_msg, ready_at, retries, attempts) \
     WHERE s.id = u.id AND s.state = 'processing' AND s.attempts = u.attempts";

/// The rows of one `RESULTS_SQL`, column by column.
#[derive(Default)]
struct ResultRows {
    ids: Vec<i64>,
    states: Vec<&'static str>,
    outputs: Vec<Option<String>>,
    error_codes: Vec<Option<String>>,
    error_msgs: Vec<Option<String>>,
    ready_ats: Vec<Option<i64>>,
    retries: Vec<i32>,
    attempts: Vec<i64>,
}

pub(crate) async fn report(
    store: &PgDriver,
    params: ReportParams,
) -> StoreResult<Vec<ReportOutcome>> {
    let ReportParams {
        project_id,
        results,
        now,
    } = params;
    let ids: Vec<i64> = results.iter().map(|r| r.sub_task_id.0).collect();
    let mut tx = begin_write(store).await?;
    // The tasks first, locked in id order; then the rows are read under their tasks' locks.
    let task_ids: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT task_id FROM sub_tasks WHERE id = ANY($1) ORDER BY task_id",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let mut touched: BTreeMap<i64, (Task, Progress)> = BTreeMap::new();
    for task_id in task_ids {
        if let Some(task) = load_by_id_locked::<PgDriver>(&mut PgConn(&mut tx), Id(task_id)).await?
        {
            let progress = task.progress;
            touched.insert(task_id, (task, progress));
        }
    }
    // One read for the batch (a statement per row was most of a report's time).
    let rows: Vec<(i64, i64, String, i64, i32)> = sqlx::query_as(
        "SELECT id, task_id, state, attempts, retries FROM sub_tasks WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let mut current: HashMap<i64, (i64, String, i64, i32)> = rows
        .into_iter()
        .map(|(id, task_id, state, attempts, retries)| (id, (task_id, state, attempts, retries)))
        .collect();

    let mut outcomes = Vec::with_capacity(results.len());
    let mut writes = ResultRows::default();
    for result in results {
        // `remove`: a sub-task named twice in one batch takes its first result only.
        let Some((task_id, state, attempts, retries)) = current.remove(&result.sub_task_id.0)
        else {
            outcomes.push(ReportOutcome::LeaseLost);
            continue;
        };
        let Some((task, progress)) = touched.get_mut(&task_id) else {
            // Its task was deleted between the two reads.
            outcomes.push(ReportOutcome::LeaseLost);
            continue;
        };
        if parse_sub_task_state(&state)? != SubTaskState::Processing
            || attempts != i64::from(result.attempt)
            || project_id
                .as_deref()
                .is_some_and(|p| p != task.scope.project_id)
        {
            outcomes.push(ReportOutcome::LeaseLost);
            continue;
        }
        // A registry effect happens with the success, in this transaction, or not at all.
        let mut outcome = result.outcome;
        if let (RunOutcome::Succeeded { .. }, Some(effect)) = (&outcome, &result.effect)
            && let Err(refused) =
                crate::devices::apply_device_effect(&mut tx, &task.scope, effect, now).await?
        {
            outcome = RunOutcome::Failed {
                error_code: refused.error_code,
                error_msg: refused.error_msg,
            };
        }
        let decision = decide(task, i64::from(retries), &outcome, now);
        let (output, error_code, error_msg) = match outcome {
            RunOutcome::Succeeded { output } => (output, None, None),
            RunOutcome::Failed {
                error_code,
                error_msg,
            } => (None, Some(error_code), Some(error_msg)),
        };
        writes.ids.push(result.sub_task_id.0);
        writes.states.push(decision.state.as_str());
        writes.outputs.push(output);
        writes.error_codes.push(error_code);
        writes.error_msgs.push(error_msg);
        writes.ready_ats.push(decision.ready_at.map(|t| t.0));
        writes.retries.push(decision.retries as i32);
        writes.attempts.push(attempts);
        progress.move_n(SubTaskState::Processing, decision.state, 1);
        outcomes.push(ReportOutcome::Accepted(decision.state));
    }
    if !writes.ids.is_empty() {
        let changed = sqlx::query(RESULTS_SQL)
            .bind(now.0)
            .bind(&writes.ids)
            .bind(&writes.states)
            .bind(&writes.outputs)
            .bind(&writes.error_codes)
            .bind(&writes.error_msgs)
            .bind(&writes.ready_ats)
            .bind(&writes.retries)
            .bind(&writes.attempts)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if changed != writes.ids.len() as u64 {
            return Err(corrupt(format!(
                "{} of {} reported sub-tasks changed under their tasks' row locks",
                writes.ids.len() as u64 - changed,
                writes.ids.len()
            )));
        }
    }
    for (task, progress) in touched.values() {
        if *progress != task.progress {
            settle(&mut tx, task, *progress, false, now).await?;
        }
    }
    tx.commit().await.map_err(db)?;
    Ok(outcomes)
}

pub(crate) const RETRIES_DUE_SQL: &str = "SELECT id, task_id, lease_expiries FROM sub_tasks \
     WHERE state = 'retry_waiting' AND ready_at <= $1 ORDER BY ready_at LIMIT $2";
pub(crate) const LEASES_EXPIRED_SQL: &str = "SELECT id, task_id, lease_expiries FROM sub_tasks \
     WHERE state = 'processing' AND lease_until < $1 ORDER BY lease_until LIMIT $2";

pub(crate) async fn maintain(
    store: &PgDriver,
    now: Timestamp,
    max_rows: u32,
) -> StoreResult<MaintenanceReport> {
    let retries = requeue(store, Requeue::RetriesDue, now, max_rows).await?;
    let leases = requeue(store, Requeue::LeasesExpired, now, max_rows).await?;
    let (deadline_tasks, timed_out) = expire_deadlines(store, now, max_rows).await?;
    Ok(MaintenanceReport {
        retries_released: retries.requeued,
        leases_expired: leases.requeued,
        leases_abandoned: leases.abandoned,
        timed_out,
        more: retries.rows == u64::from(max_rows)
            || leases.rows == u64::from(max_rows)
            || deadline_tasks == u64::from(max_rows),
    })
}

/// Ends the unfinished sub-tasks of up to `max_tasks` tasks whose deadline passed, as
/// failed (`TIMEOUT`), with the counters; each task locked in id order first. Returns
/// (tasks, sub-tasks) ended.
async fn expire_deadlines(
    store: &PgDriver,
    now: Timestamp,
    max_tasks: u32,
) -> StoreResult<(u64, u64)> {
    let mut tx = begin_write(store).await?;
    let due: Vec<i64> = sqlx::query_scalar(crate::legacy::DEADLINES_DUE_SQL)
        .bind(now.0)
        .bind(i64::from(max_tasks))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    if due.is_empty() {
        return give_up(tx, (0, 0)).await;
    }
    let mut ended = 0u64;
    for task_id in &due {
        let Some(task) = load_by_id_locked::<PgDriver>(&mut PgConn(&mut tx), Id(*task_id)).await?
        else {
            continue;
        };
        let moved =
            taskd_store_sql::legacy::expire_task(&mut PgConn(&mut tx), task.id, now).await?;
        let mut progress = task.progress;
        for (from, n) in taskd_store_sql::legacy::UNFINISHED.into_iter().zip(moved) {
            progress.move_n(from, SubTaskState::Failed, n);
            ended += n as u64;
        }
        if progress != task.progress {
            settle(&mut tx, &task, progress, false, now).await?;
        }
    }
    tx.commit().await.map_err(db)?;
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

// Guarded by the state read before the task's lock; what changed since stays put (a
// processing row only while its lease is still the expired one).
const REQUEUE_SQL: &str = "UPDATE sub_tasks SET state = 'waiting', \
     ready_at = LEAST(COALESCE(ready_at, $1), $1), lease_expiries = lease_expiries + $2, \
     lease_owner = NULL, lease_until = NULL, updated_at = $1 \
     WHERE id = ANY($3) AND state = $4 AND (state <> 'processing' OR lease_until < $1)";
const ABANDON_SQL: &str = "UPDATE sub_tasks SET state = 'failed', \
     lease_expiries = lease_expiries + 1, error_code = $2, error_msg = $3, \
     lease_owner = NULL, lease_until = NULL, updated_at = $1 \
     WHERE id = ANY($4) AND state = 'processing' AND lease_until < $1";

/// Puts the sub-tasks the select finds back in the queue, claimable now (a due retry
/// keeps its due time, which is not later than now). An expired lease counts against
/// the sub-task; at `LEASE_EXPIRIES_BEFORE_FAILURE` it fails instead.
async fn requeue(
    store: &PgDriver,
    what: Requeue,
    now: Timestamp,
    max_rows: u32,
) -> StoreResult<Requeued> {
    let (select_sql, from) = match what {
        Requeue::RetriesDue => (RETRIES_DUE_SQL, SubTaskState::RetryWaiting),
        Requeue::LeasesExpired => (LEASES_EXPIRED_SQL, SubTaskState::Processing),
    };
    let expired = matches!(what, Requeue::LeasesExpired);
    let mut tx = begin_write(store).await?;
    let rows: Vec<(i64, i64, i32)> = sqlx::query_as(select_sql)
        .bind(now.0)
        .bind(i64::from(max_rows))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    let mut done = Requeued {
        rows: rows.len() as u64,
        ..Requeued::default()
    };
    if rows.is_empty() {
        return give_up(tx, done).await;
    }
    // Per task, in id order (the lock order): (to requeue, to abandon).
    let mut by_task: BTreeMap<i64, (Vec<i64>, Vec<i64>)> = BTreeMap::new();
    for (id, task_id, expiries) in &rows {
        let ids = by_task.entry(*task_id).or_default();
        if expired && abandons(i64::from(*expiries)) {
            ids.1.push(*id);
        } else {
            ids.0.push(*id);
        }
    }
    let message = lease_expired_message();
    for (task_id, (requeue_ids, abandon_ids)) in by_task {
        let Some(task) = load_by_id_locked::<PgDriver>(&mut PgConn(&mut tx), Id(task_id)).await?
        else {
            continue;
        };
        let requeued = if requeue_ids.is_empty() {
            0
        } else {
            sqlx::query(REQUEUE_SQL)
                .bind(now.0)
                .bind(i32::from(expired))
                .bind(&requeue_ids)
                .bind(from.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected()
        };
        let abandoned = if abandon_ids.is_empty() {
            0
        } else {
            sqlx::query(ABANDON_SQL)
                .bind(now.0)
                .bind(LEASE_EXPIRED_CODE)
                .bind(&message)
                .bind(&abandon_ids)
                .execute(&mut *tx)
                .await
                .map_err(db)?
                .rows_affected()
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
        crate::wakeups::notify_ready(&mut tx).await?;
    }
    tx.commit().await.map_err(db)?;
    Ok(done)
}

pub(crate) const NEXT_DUE_SQL: &str = "SELECT LEAST( \
     (SELECT MIN(schedule_at) FROM tasks WHERE runnable AND schedule_at > $1), \
     (SELECT MIN(ready_at) FROM sub_tasks WHERE state = 'retry_waiting'), \
     (SELECT MIN(lease_until) FROM sub_tasks WHERE state = 'processing'), \
     (SELECT MIN(deadline_at) FROM task_deadlines WHERE pending))";

pub(crate) async fn next_due(store: &PgDriver, now: Timestamp) -> StoreResult<Option<Timestamp>> {
    let mut conn = store.pool.acquire().await.map_err(db)?;
    let due: Option<i64> = sqlx::query_scalar(NEXT_DUE_SQL)
        .bind(now.0)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?;
    Ok(due.map(Timestamp))
}

const LEADER_ACQUIRE_SQL: &str = "INSERT INTO leaders (name, holder, until) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
     WHERE leaders.holder = excluded.holder OR leaders.until < $4";

/// One statement: `INSERT ... ON CONFLICT DO UPDATE ... WHERE` takes the row lock, so of
/// two nodes racing for a lapsed term exactly one updates the row.
pub(crate) async fn leader_acquire(
    store: &PgDriver,
    p: &taskd_store::LeaderParams,
) -> StoreResult<bool> {
    let won = sqlx::query(LEADER_ACQUIRE_SQL)
        .bind(&p.name)
        .bind(&p.holder)
        .bind(p.until.0)
        .bind(p.now.0)
        .execute(&store.pool)
        .await
        .map_err(db)?
        .rows_affected();
    Ok(won == 1)
}

pub(crate) async fn leader_release(store: &PgDriver, name: &str, holder: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM leaders WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(&store.pool)
        .await
        .map_err(db)?;
    Ok(())
}
