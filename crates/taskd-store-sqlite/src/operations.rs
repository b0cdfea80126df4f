//! Instance operations (tasks with `service` set) as their dialects read them, and the
//! retention purge of finished tasks.

use std::collections::HashMap;

use taskd_core::{Id, OpService, SubTask, Task, TaskScope, TaskState, Timestamp};
use taskd_store::{OpListParams, OpRecord, Page, StoreResult};

use crate::rows::{SubTaskRow, TaskRow, corrupt, sub_task_columns, task_columns};
use crate::tasks::{count_remove, load};
use crate::{SqliteStore, begin_read, begin_write, db};

const OP_PAGE_SQL: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE project_id = ?1 AND instance_id = ?2 AND id < ?3 \
     AND (?4 IS NULL OR state = ?4) AND (?5 IS NULL OR created_at >= ?5) \
     AND (?6 IS NULL OR created_at <= ?6) ORDER BY id DESC LIMIT ?7 OFFSET ?8"
);

const OP_COUNT_SQL: &str = "SELECT COUNT(*) FROM tasks WHERE project_id = ?1 AND instance_id = ?2 \
     AND (?3 IS NULL OR state = ?3) AND (?4 IS NULL OR created_at >= ?4) \
     AND (?5 IS NULL OR created_at <= ?5)";

const OP_SUB_TASKS_SQL: &str = concat!(
    "SELECT ",
    sub_task_columns!(),
    " FROM sub_tasks WHERE task_id IN (SELECT value FROM json_each(?1)) ORDER BY id"
);

/// The sub-tasks of `tasks`, first one of each task.
async fn with_sub_tasks(
    conn: &mut sqlx::SqliteConnection,
    tasks: Vec<Task>,
) -> StoreResult<Vec<OpRecord>> {
    let ids: Vec<i64> = tasks.iter().map(|t| t.id.0).collect();
    let json = serde_json::to_string(&ids).map_err(|e| corrupt(e.to_string()))?;
    let rows = sqlx::query_as::<_, SubTaskRow>(OP_SUB_TASKS_SQL)
        .bind(json)
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

pub(crate) async fn list(
    store: &SqliteStore,
    params: &OpListParams,
) -> StoreResult<Page<OpRecord>> {
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
    store: &SqliteStore,
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
    store: &SqliteStore,
    service: OpService,
    instance_id: &str,
) -> StoreResult<Option<String>> {
    let mut conn = store.reader.acquire().await.map_err(db)?;
    sqlx::query_scalar(
        "SELECT project_id FROM tasks WHERE service = ? AND op_instance_id = ? \
         ORDER BY id LIMIT 1",
    )
    .bind(service.as_str())
    .bind(instance_id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)
}

const PURGE_PICK_SQL: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks INDEXED BY tasks_finished \
     WHERE state IN ('succeeded', 'failed', 'partially_succeeded', 'stopped') \
     AND updated_at < ? ORDER BY updated_at LIMIT ?"
);

pub(crate) async fn purge_finished(
    store: &SqliteStore,
    before: Timestamp,
    max_rows: u32,
) -> StoreResult<u64> {
    if max_rows == 0 {
        return Ok(0);
    }
    let mut tx = begin_write(store).await?;
    let tasks = sqlx::query_as::<_, TaskRow>(PURGE_PICK_SQL)
        .bind(before.0)
        .bind(i64::from(max_rows))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?
        .into_iter()
        .map(TaskRow::into_task)
        .collect::<StoreResult<Vec<_>>>()?;
    for task in &tasks {
        sqlx::query("DELETE FROM sub_tasks WHERE task_id = ?")
            .bind(task.id.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let deleted = sqlx::query("DELETE FROM tasks WHERE id = ? AND state = ?")
            .bind(task.id.0)
            .bind(task.state.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        if deleted != 1 {
            return Err(corrupt(format!(
                "task {} changed under the write lock",
                task.id
            )));
        }
        count_remove(&mut tx, task, task.state).await?;
    }
    tx.commit().await.map_err(db)?;
    Ok(tasks.len() as u64)
}
