//! Bulk seeding for `taskd bench`: a million tasks in seconds instead of the minutes one
//! `task_insert` per task takes. The rows are exactly what `task_insert` would write for a
//! one-target firmware upgrade (ids from the allocator, one waiting sub-task, counters,
//! `task_counts`), so the benchmark measures reads over realistic data.

use taskd_core::{Id, TaskScope, TaskState, Timestamp};
use taskd_store::StoreResult;

use taskd_store_sql::tasks::{ALLOCATE_SQL, count_add};

use crate::driver::PgConn;
use crate::{PgDriver, begin_write, db};

const CHUNK: i64 = 100_000;

impl PgDriver {
    /// Adds `n` one-target `firmwareUpgrade` tasks to `scope`, in transactions of 100,000.
    pub async fn seed_benchmark_tasks(
        &self,
        scope: &TaskScope,
        n: i64,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut done = 0;
        while done < n {
            let chunk = CHUNK.min(n - done);
            let mut tx = begin_write(self).await?;
            // Two ids per task: the task, then its sub-task.
            let last: i64 = sqlx::query_scalar(ALLOCATE_SQL)
                .bind(Id::floor_at(now.0).0)
                .bind(2 * chunk - 1)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
            let first = last - (2 * chunk - 1);
            sqlx::query(
                "INSERT INTO tasks (id, project_id, instance_id, app_id, name, kind, mode, \
                 need_confirm, ext_info_json, targets_json, targets_filter_json, document_json, \
                 document_source, schedule_at, retry_count, retry_interval_minutes, state, \
                 state_detail, n_total, n_waiting, n_processing, n_succeeded, n_failed, \
                 n_retry_waiting, n_stopped, n_removed, created_at, updated_at) \
                 SELECT $1 + 2 * i, $2, $3, NULL, 'bench_' || ($4 + i), 'firmwareUpgrade', NULL, \
                 FALSE, NULL, '[\"device-1\"]', NULL, \
                 '{\"package_ids\":[\"32822e5744a45ede319d2c50\"]}', NULL, NULL, NULL, NULL, \
                 'waiting', NULL, 1, 1, 0, 0, 0, 0, 0, 0, $5, $5 \
                 FROM generate_series(0::BIGINT, $6 - 1) AS g(i)",
            )
            .bind(first)
            .bind(&scope.project_id)
            .bind(&scope.instance_id)
            .bind(done)
            .bind(now.0)
            .bind(chunk)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            sqlx::query(
                "INSERT INTO sub_tasks (id, task_id, target, state, attempts, updated_at) \
                 SELECT $1 + 2 * i + 1, $1 + 2 * i, 'device-1', 'waiting', 0, $2 \
                 FROM generate_series(0::BIGINT, $3 - 1) AS g(i)",
            )
            .bind(first)
            .bind(now.0)
            .bind(chunk)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            count_add(
                &mut PgConn(&mut *tx),
                scope,
                None,
                "firmwareUpgrade",
                TaskState::Waiting,
                chunk,
            )
            .await?;
            tx.commit().await.map_err(db)?;
            done += chunk;
        }
        Ok(())
    }
}
