//! Running sub-tasks: claims, heartbeats, results and maintenance. Each call is one
//! `BEGIN IMMEDIATE` transaction; every sub-task write is guarded by the state (and for
//! leases the attempt) it expects, and the task's counters, state and `task_counts` move
//! in the same transaction.

use taskd_core::{Id, SubTaskState, minute_of_day};
use taskd_store::{ClaimParams, ClaimedSubTask, StoreResult};
use taskd_store_sql::corrupt;
use taskd_store_sql::run_plan::{LeasedRow, MAX_CANDIDATE_TASKS, ShareOut, claimed_sub_tasks};

use taskd_store_sql::run::settle;
use taskd_store_sql::tasks::load_by_id_locked;

use crate::driver::SqliteConn;
use crate::{SqliteDriver, begin_write, db};

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
        let task = load_by_id_locked::<SqliteDriver>(&mut SqliteConn(&mut *tx), Id(c.id))
            .await?
            .ok_or_else(|| corrupt(format!("task {} vanished under the write lock", Id(c.id))))?;
        // The rows already moved; the counters read here are from before.
        let mut progress = task.progress;
        progress.move_n(SubTaskState::Waiting, SubTaskState::Processing, got);
        settle(&mut SqliteConn(&mut *tx), &task, progress, false, now).await?;

        claimed_sub_tasks(&task, rows, lease_until, &mut claimed)?;
        share_out.got(got);
    }
    tx.commit().await.map_err(db)?;
    Ok(claimed)
}
