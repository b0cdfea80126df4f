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

use taskd_core::{Id, SubTaskState, minute_of_day};
use taskd_store::{ClaimParams, ClaimedSubTask, StoreResult};
use taskd_store_sql::corrupt;
use taskd_store_sql::run_plan::{LeasedRow, MAX_CANDIDATE_TASKS, ShareOut, claimed_sub_tasks};

use taskd_store_sql::run::settle;
use taskd_store_sql::tasks::load_by_id_locked;

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
        let task = load_by_id_locked::<PgDriver>(&mut PgConn(&mut *tx), Id(c.id))
            .await?
            .ok_or_else(|| corrupt(format!("task {} vanished under its row lock", Id(c.id))))?;
        // The rows already moved; the counters read here are from before.
        let mut progress = task.progress;
        progress.move_n(SubTaskState::Waiting, SubTaskState::Processing, got);
        settle(&mut PgConn(&mut *tx), &task, progress, false, now).await?;

        claimed_sub_tasks(&task, rows, lease_until, &mut claimed)?;
        share_out.got(got);
    }
    tx.commit().await.map_err(db)?;
    Ok(claimed)
}
