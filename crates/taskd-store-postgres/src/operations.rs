//! Instance operations (tasks with `service` set) as their dialects read them, and the
//! retention purge of finished tasks. Same semantics as the SQLite backend's module.

use std::collections::HashMap;

use taskd_core::{Id, OpService, SubTask, Task, TaskScope, TaskState, Timestamp};
use taskd_store::{OpListParams, OpRecord, Page, StoreResult};

use crate::rows::{SubTaskRow, TaskRow, corrupt, sub_task_columns, task_columns};
use crate::tasks::{count_remove, load};
use crate::{PgStore, begin_read, begin_write, db, give_up};

const OP_PAGE_SQL: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE project_id = $1 AND instance_id = $2 AND id < $3 \
     AND ($4::TEXT IS NULL OR state = $4) AND ($5::BIGINT IS NULL OR created_at >= $5) \
     AND ($6::BIGINT IS NULL OR created_at <= $6) ORDER BY id DESC LIMIT $7 OFFSET $8"
);

const OP_COUNT_SQL: &str = "SELECT COUNT(*) FROM tasks WHERE project_id = $1 AND instance_id = $2 \
     AND ($3::TEXT IS NULL OR state = $3) AND ($4::BIGINT IS NULL OR created_at >= $4) \
     AND ($5::BIGINT IS NULL OR created_at <= $5)";

const OP_SUB_TASKS_SQL: &str = concat!(
    "SELECT ",
    sub_task_columns!(),
    " FROM sub_tasks WHERE task_id = ANY($1) ORDER BY id"
);

/// The sub-tasks of `tasks`, first one of each task.
async fn with_sub_tasks(
    conn: &mut sqlx::PgConnection,
    tasks: Vec<Task>,
) -> StoreResult<Vec<OpRecord>> {
    let ids: Vec<i64> = tasks.iter().map(|t| t.id.0).collect();
    let rows = sqlx::query_as::<_, SubTaskRow>(OP_SUB_TASKS_SQL)
        .bind(ids)
        .fetch_all(conn)
        .await
        .map_err(db)?;
    let mut by_task: HashMap<Id, SubTask> = HashMap::new();
    for row in rows {
        let sub = row.into_sub_task()?;
        by_task.entry(sub.task_id).or_insert(sub);
    }
    Ok(tasks
        .into_iter()
        .map(|task| OpRecord {
            sub_task: by_task.remove(&task.id),
            task,
        })
        .collect())
}

pub(crate) async fn list(store: &PgStore, params: &OpListParams) -> StoreResult<Page<OpRecord>> {
    let state = params.state.map(TaskState::as_str);
    let from = params.created_from.map(|t| t.0);
    let to = params.created_to.map(|t| t.0);
    let mut tx = begin_read(store).await?;
    let rows = sqlx::query_as::<_, TaskRow>(OP_PAGE_SQL)
        .bind(&params.scope.project_id)
        .bind(&params.scope.instance_id)
        .bind(params.page.marker.0)
        .bind(state)
        .bind(from)
        .bind(to)
        .bind(i64::from(params.page.limit))
        .bind(i64::from(params.page.offset))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    let count: i64 = sqlx::query_scalar(OP_COUNT_SQL)
        .bind(&params.scope.project_id)
        .bind(&params.scope.instance_id)
        .bind(state)
        .bind(from)
        .bind(to)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
    let tasks = rows
        .into_iter()
        .map(TaskRow::into_task)
        .collect::<StoreResult<Vec<_>>>()?;
    let items = with_sub_tasks(&mut tx, tasks).await?;
    tx.commit().await.map_err(db)?;
    Ok(Page { items, count })
}

pub(crate) async fn get(
    store: &PgStore,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<Option<OpRecord>> {
    let mut tx = begin_read(store).await?;
    let Some(task) = load(&mut tx, scope, id).await? else {
        return Ok(None);
    };
    let record = with_sub_tasks(&mut tx, vec![task]).await?.pop();
    tx.commit().await.map_err(db)?;
    Ok(record)
}

pub(crate) async fn instance_owner(
    store: &PgStore,
    service: OpService,
    instance_id: &str,
) -> StoreResult<Option<String>> {
    sqlx::query_scalar(
        "SELECT project_id FROM tasks WHERE service = $1 AND op_instance_id = $2 \
         ORDER BY id LIMIT 1",
    )
    .bind(service.as_str())
    .bind(instance_id)
    .fetch_optional(&store.pool)
    .await
    .map_err(db)
}

/// Locks the picked rows; another node's purge skips them rather than waiting.
const PURGE_PICK_SQL: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE state IN ('succeeded', 'failed', 'partially_succeeded', 'stopped') \
     AND updated_at < $1 ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED"
);

pub(crate) async fn purge_finished(
    store: &PgStore,
    before: Timestamp,
    max_rows: u32,
) -> StoreResult<u64> {
    if max_rows == 0 {
        return Ok(0);
    }
    let mut tx = begin_write(store).await?;
    let mut tasks = sqlx::query_as::<_, TaskRow>(PURGE_PICK_SQL)
        .bind(before.0)
        .bind(i64::from(max_rows))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .into_iter()
        .map(TaskRow::into_task)
        .collect::<StoreResult<Vec<_>>>()?;
    if tasks.is_empty() {
        return give_up(tx, 0).await;
    }
    let ids: Vec<i64> = tasks.iter().map(|t| t.id.0).collect();
    sqlx::query("DELETE FROM sub_tasks WHERE task_id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let deleted = sqlx::query("DELETE FROM tasks WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
    if deleted != tasks.len() as u64 {
        return Err(corrupt("purged tasks changed under their row locks"));
    }
    // The counts rows in one fixed order, so two purges never wait on each other in a
    // circle.
    tasks.sort_by(|a, b| {
        let key = |t: &Task| {
            (
                t.scope.project_id.clone(),
                t.scope.instance_id.clone(),
                t.app_id.clone().unwrap_or_default(),
                t.kind.clone(),
                t.state.as_str(),
            )
        };
        key(a).cmp(&key(b))
    });
    for task in &tasks {
        count_remove(&mut tx, task, task.state).await?;
    }
    tx.commit().await.map_err(db)?;
    Ok(tasks.len() as u64)
}
