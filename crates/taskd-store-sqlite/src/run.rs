//! Running sub-tasks: claims, heartbeats, results and maintenance. Each call is one
//! `BEGIN IMMEDIATE` transaction; every sub-task write is guarded by the state (and for
//! leases the attempt) it expects, and the task's counters, state and `task_counts` move
//! in the same transaction.

use std::collections::HashMap;

use sqlx::SqliteConnection;
use taskd_core::{Id, Progress, SubTaskState, Task, TaskState, Timestamp, minute_of_day};
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

use crate::driver::SqliteConn;
use crate::{SqliteDriver, begin_read, begin_write, db};

#[derive(sqlx::FromRow, Clone)]
struct Candidate {
    id: i64,
    project_id: String,
}

/// The candidate tasks of a claim: runnable, schedule time reached, deadline (if any)
/// not reached, maintenance window (if any) open at now's UTC minute of the day, of the
/// asked kinds, least recently served first. A minute m is inside [start, end) of a
/// window that may wrap midnight exactly when (m - start) mod 1440 < (end - start) mod 1440.
fn candidates_sql(kinds: usize, by_project: bool) -> String {
    let marks = vec!["?"; kinds].join(", ");
    format!(
        "SELECT id, project_id FROM tasks \
         WHERE runnable = 1 AND (schedule_at IS NULL OR schedule_at <= ?) \
         AND NOT EXISTS (SELECT 1 FROM task_deadlines d \
                         WHERE d.task_id = tasks.id AND d.deadline_at <= ?) \
         AND (window_start IS NULL \
              OR ((? - window_start + 1440) % 1440) < ((window_end - window_start + 1440) % 1440)) \
         AND kind IN ({marks}){} \
         ORDER BY served_seq, id LIMIT ?",
        if by_project {
            " AND project_id = ?"
        } else {
            ""
        }
    )
}

pub(crate) const RUNNING_SQL: &str = "SELECT project_id, SUM(n_processing) FROM tasks \
     WHERE n_processing > 0 GROUP BY project_id";

/// Leases the first `?5` claimable sub-tasks of task `?4`.
pub(crate) const CLAIM_ROWS_SQL: &str = "UPDATE sub_tasks SET state = 'processing', \
     lease_owner = ?1, lease_until = ?2, attempts = attempts + 1, progress = NULL, started_at = ?3, updated_at = ?3 \
     WHERE id IN (SELECT id FROM sub_tasks INDEXED BY sub_tasks_ready \
                  WHERE task_id = ?4 AND state = 'waiting' \
                  AND ready_at IS NOT NULL AND ready_at <= ?3 ORDER BY id LIMIT ?5) \
     AND state = 'waiting' \
     RETURNING id, target, input_json, attempts";

pub(crate) const HAS_READY_SQL: &str = "SELECT EXISTS (SELECT 1 FROM sub_tasks \
     INDEXED BY sub_tasks_ready WHERE task_id = ? AND state = 'waiting' AND ready_at IS NOT NULL)";

pub(crate) async fn claim(
    store: &SqliteDriver,
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

    let running: Vec<(String, i64)> = sqlx::query_as(RUNNING_SQL)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    let Some(mut share_out) = ShareOut::new(limits, max, &running) else {
        return Ok(Vec::new());
    };

    let sql = candidates_sql(kinds.len(), project_id.is_some());
    let mut query = sqlx::query_as::<_, Candidate>(sqlx::AssertSqlSafe(sql))
        .bind(now.0)
        .bind(now.0)
        .bind(minute_of_day(now));
    for kind in &kinds {
        query = query.bind(kind);
    }
    if let Some(p) = &project_id {
        query = query.bind(p);
    }
    let candidates = query
        .bind(i64::from(MAX_CANDIDATE_TASKS))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let served_seq: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(served_seq), 0) + 1 FROM tasks WHERE runnable = 1")
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
        sqlx::query("UPDATE tasks SET served_seq = ?, runnable = ? WHERE id = ?")
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
        let task = load_by_id_locked::<SqliteDriver>(&mut SqliteConn(&mut tx), Id(c.id))
            .await?
            .ok_or_else(|| corrupt(format!("task {} vanished under the write lock", Id(c.id))))?;
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
    conn: &mut SqliteConnection,
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
    write_task(
        &mut SqliteConn(conn),
        task.id,
        before,
        after,
        &progress,
        runnable,
        now,
    )
    .await?;
    count_move(&mut SqliteConn(conn), task, before, after).await?;
    Ok(after)
}

pub(crate) const HEARTBEAT_SQL: &str = "UPDATE sub_tasks SET lease_until = ?1, \
     progress = COALESCE(?2, progress), updated_at = ?3 \
     WHERE id = ?4 AND state = 'processing' AND attempts = ?5 \
     AND (?6 IS NULL OR EXISTS (SELECT 1 FROM tasks t \
                                WHERE t.id = sub_tasks.task_id AND t.project_id = ?6))";

pub(crate) async fn heartbeat(
    store: &SqliteDriver,
    p: HeartbeatParams,
) -> StoreResult<Option<Timestamp>> {
    let mut tx = begin_write(store).await?;
    let changed = sqlx::query(HEARTBEAT_SQL)
        .bind(p.lease_until.0)
        .bind(p.progress.map(i64::from))
        .bind(p.now.0)
        .bind(p.sub_task_id.0)
        .bind(i64::from(p.attempt))
        .bind(&p.project_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
    tx.commit().await.map_err(db)?;
    Ok((changed == 1).then_some(p.lease_until))
}

const RESULT_SQL: &str = "UPDATE sub_tasks SET state = ?1, \
     output = CASE WHEN ?1 = 'succeeded' THEN ?2 ELSE output END, \
     error_code = ?3, error_msg = ?4, ready_at = ?5, retries = ?6, \
     progress = CASE WHEN ?1 = 'succeeded' THEN 100 ELSE progress END, \
     lease_owner = NULL, lease_until = NULL, updated_at = ?7 \
     WHERE id = ?8 AND state = 'processing' AND attempts = ?9";

pub(crate) async fn report(
    store: &SqliteDriver,
    params: ReportParams,
) -> StoreResult<Vec<ReportOutcome>> {
    let ReportParams {
        project_id,
        results,
        now,
    } = params;
    let mut tx = begin_write(store).await?;
    // Each touched task once: (task as read, counters as they become).
    let mut touched: HashMap<Id, (Task, Progress)> = HashMap::new();
    let mut outcomes = Vec::with_capacity(results.len());
    for result in results {
        let row: Option<(i64, String, i64, i64)> =
            sqlx::query_as("SELECT task_id, state, attempts, retries FROM sub_tasks WHERE id = ?")
                .bind(result.sub_task_id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let Some((task_id, state, attempts, retries)) = row else {
            outcomes.push(ReportOutcome::LeaseLost);
            continue;
        };
        if parse_sub_task_state(&state)? != SubTaskState::Processing
            || attempts != i64::from(result.attempt)
        {
            outcomes.push(ReportOutcome::LeaseLost);
            continue;
        }
        let task_id = Id(task_id);
        let (task, progress) = match touched.entry(task_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let task = load_by_id_locked::<SqliteDriver>(&mut SqliteConn(&mut tx), task_id)
                    .await?
                    .ok_or_else(|| corrupt(format!("sub-task of a missing task {task_id}")))?;
                let progress = task.progress;
                e.insert((task, progress))
            }
        };
        if project_id
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
        let decision = decide(task, retries, &outcome, now);
        let (output, error_code, error_msg) = match &outcome {
            RunOutcome::Succeeded { output } => (output.as_deref(), None, None),
            RunOutcome::Failed {
                error_code,
                error_msg,
            } => (None, Some(error_code.as_str()), Some(error_msg.as_str())),
        };
        let changed = sqlx::query(RESULT_SQL)
            .bind(decision.state.as_str())
            .bind(output)
            .bind(error_code)
            .bind(error_msg)
            .bind(decision.ready_at.map(|t| t.0))
            .bind(decision.retries)
            .bind(now.0)
            .bind(result.sub_task_id.0)
            .bind(i64::from(result.attempt))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if changed != 1 {
            return Err(corrupt(format!(
                "sub-task {} changed under the write lock",
                result.sub_task_id
            )));
        }
        progress.move_n(SubTaskState::Processing, decision.state, 1);
        outcomes.push(ReportOutcome::Accepted(decision.state));
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
     WHERE state = 'retry_waiting' AND ready_at <= ? ORDER BY ready_at LIMIT ?";
pub(crate) const LEASES_EXPIRED_SQL: &str = "SELECT id, task_id, lease_expiries FROM sub_tasks \
     WHERE state = 'processing' AND lease_until < ? ORDER BY lease_until LIMIT ?";

pub(crate) async fn maintain(
    store: &SqliteDriver,
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
/// failed (`TIMEOUT`), with the counters. Returns (tasks, sub-tasks) ended.
async fn expire_deadlines(
    store: &SqliteDriver,
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
        return Ok((0, 0));
    }
    let mut ended = 0u64;
    for task_id in &due {
        let task = load_by_id_locked::<SqliteDriver>(&mut SqliteConn(&mut tx), Id(*task_id))
            .await?
            .ok_or_else(|| corrupt(format!("deadline of a missing task {}", Id(*task_id))))?;
        let moved =
            taskd_store_sql::legacy::expire_task(&mut SqliteConn(&mut tx), task.id, now).await?;
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

const REQUEUE_SQL: &str = "UPDATE sub_tasks SET state = 'waiting', \
     ready_at = MIN(COALESCE(ready_at, ?1), ?1), lease_expiries = lease_expiries + ?2, \
     lease_owner = NULL, lease_until = NULL, updated_at = ?1 WHERE id = ?3 AND state = ?4";
const ABANDON_SQL: &str = "UPDATE sub_tasks SET state = 'failed', \
     lease_expiries = lease_expiries + 1, error_code = ?2, error_msg = ?3, \
     lease_owner = NULL, lease_until = NULL, updated_at = ?1 WHERE id = ?4 AND state = 'processing'";

/// Puts the sub-tasks the select finds back in the queue, claimable now (a due retry
/// keeps its due time, which is not later than now). An expired lease counts against
/// the sub-task; at `LEASE_EXPIRIES_BEFORE_FAILURE` it fails instead.
async fn requeue(
    store: &SqliteDriver,
    what: Requeue,
    now: Timestamp,
    max_rows: u32,
) -> StoreResult<Requeued> {
    let (select_sql, from) = match what {
        Requeue::RetriesDue => (RETRIES_DUE_SQL, SubTaskState::RetryWaiting),
        Requeue::LeasesExpired => (LEASES_EXPIRED_SQL, SubTaskState::Processing),
    };
    let mut tx = begin_write(store).await?;
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(select_sql)
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
        return Ok(done);
    }
    // Per task: (requeued, abandoned).
    let mut by_task: HashMap<i64, (i64, i64)> = HashMap::new();
    for (id, task_id, expiries) in &rows {
        let expired = matches!(what, Requeue::LeasesExpired);
        let abandon = expired && abandons(*expiries);
        let query = if abandon {
            sqlx::query(ABANDON_SQL)
                .bind(now.0)
                .bind(LEASE_EXPIRED_CODE)
                .bind(lease_expired_message())
                .bind(id)
        } else {
            sqlx::query(REQUEUE_SQL)
                .bind(now.0)
                .bind(i64::from(expired))
                .bind(id)
                .bind(from.as_str())
        };
        let changed = query.execute(&mut *tx).await.map_err(db)?.rows_affected();
        if changed != 1 {
            return Err(corrupt(format!(
                "sub-task {} changed under the write lock",
                Id(*id)
            )));
        }
        let counts = by_task.entry(*task_id).or_default();
        if abandon {
            counts.1 += 1;
        } else {
            counts.0 += 1;
        }
    }
    for (task_id, (requeued, abandoned)) in by_task {
        let task = load_by_id_locked::<SqliteDriver>(&mut SqliteConn(&mut tx), Id(task_id))
            .await?
            .ok_or_else(|| corrupt(format!("sub-task of a missing task {}", Id(task_id))))?;
        let mut progress = task.progress;
        progress.move_n(from, SubTaskState::Waiting, requeued);
        progress.move_n(from, SubTaskState::Failed, abandoned);
        settle(&mut tx, &task, progress, requeued > 0, now).await?;
        done.requeued += requeued as u64;
        done.abandoned += abandoned as u64;
    }
    tx.commit().await.map_err(db)?;
    Ok(done)
}

pub(crate) const NEXT_DUE_SQL: &str = "SELECT MIN(t) FROM ( \
     SELECT MIN(schedule_at) AS t FROM tasks WHERE runnable = 1 AND schedule_at > ?1 \
     UNION ALL SELECT MIN(ready_at) FROM sub_tasks WHERE state = 'retry_waiting' \
     UNION ALL SELECT MIN(lease_until) FROM sub_tasks WHERE state = 'processing' \
     UNION ALL SELECT MIN(deadline_at) FROM task_deadlines WHERE pending = 1)";

pub(crate) async fn next_due(
    store: &SqliteDriver,
    now: Timestamp,
) -> StoreResult<Option<Timestamp>> {
    let mut tx = begin_read(store).await?;
    let due: Option<i64> = sqlx::query_scalar(NEXT_DUE_SQL)
        .bind(now.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(due.map(Timestamp))
}

const LEADER_ACQUIRE_SQL: &str = "INSERT INTO leaders (name, holder, until) VALUES (?1, ?2, ?3) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
     WHERE leaders.holder = excluded.holder OR leaders.until < ?4";

pub(crate) async fn leader_acquire(
    store: &SqliteDriver,
    p: &taskd_store::LeaderParams,
) -> StoreResult<bool> {
    let mut tx = begin_write(store).await?;
    let won = sqlx::query(LEADER_ACQUIRE_SQL)
        .bind(&p.name)
        .bind(&p.holder)
        .bind(p.until.0)
        .bind(p.now.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
    tx.commit().await.map_err(db)?;
    Ok(won == 1)
}

pub(crate) async fn leader_release(
    store: &SqliteDriver,
    name: &str,
    holder: &str,
) -> StoreResult<()> {
    let mut tx = begin_write(store).await?;
    sqlx::query("DELETE FROM leaders WHERE name = ? AND holder = ?")
        .bind(name)
        .bind(holder)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(())
}
