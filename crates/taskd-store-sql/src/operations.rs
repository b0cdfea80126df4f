//! Instance operations (tasks with `service` set) as their dialects read them, and the
//! retention purge of finished tasks.

use std::collections::HashMap;

use taskd_core::{Id, OpService, SubTask, Task, TaskScope, TaskState, Timestamp};
use taskd_store::{OpListParams, OpRecord, Page, StoreResult};

use crate::driver::{Conn, DialectSql, Driver, Stmt, Tx};
use crate::tasks::{count_remove, load};
use crate::{SubTaskRow, TaskRow, corrupt, sub_task_columns, task_columns};

/// `CAST(... AS ...)` rather than `::`: both dialects read it, and PostgreSQL needs the
/// type of a parameter that may be NULL.
const OP_PAGE_SQL: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE project_id = $1 AND instance_id = $2 AND id < $3 \
     AND (CAST($4 AS TEXT) IS NULL OR state = $4) \
     AND (CAST($5 AS BIGINT) IS NULL OR created_at >= $5) \
     AND (CAST($6 AS BIGINT) IS NULL OR created_at <= $6) ORDER BY id DESC LIMIT $7 OFFSET $8"
);

const OP_COUNT_SQL: &str = "SELECT COUNT(*) FROM tasks WHERE project_id = $1 AND instance_id = $2 \
     AND (CAST($3 AS TEXT) IS NULL OR state = $3) \
     AND (CAST($4 AS BIGINT) IS NULL OR created_at >= $4) \
     AND (CAST($5 AS BIGINT) IS NULL OR created_at <= $5)";

/// The sub-tasks of `tasks`, first one of each task.
async fn with_sub_tasks<D: Driver>(tx: &mut D::Tx, tasks: Vec<Task>) -> StoreResult<Vec<OpRecord>> {
    let ids: Vec<i64> = tasks.iter().map(|t| t.id.0).collect();
    let rows: Vec<SubTaskRow> = tx
        .fetch_all(
            Stmt::assembled(format!(
                concat!(
                    "SELECT ",
                    sub_task_columns!(),
                    " FROM sub_tasks WHERE task_id {} ORDER BY id"
                ),
                D::in_list(1)
            ))
            .bind(&ids),
        )
        .await?;
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

pub async fn list<D: Driver>(driver: &D, params: &OpListParams) -> StoreResult<Page<OpRecord>> {
    let state = params.state.map(TaskState::as_str);
    let from = params.created_from.map(|t| t.0);
    let to = params.created_to.map(|t| t.0);
    let mut tx = driver.begin_read().await?;
    let rows: Vec<TaskRow> = tx
        .fetch_all(
            Stmt::new(OP_PAGE_SQL)
                .bind(&params.scope.project_id)
                .bind(&params.scope.instance_id)
                .bind(params.page.marker.0)
                .bind(state)
                .bind(from)
                .bind(to)
                .bind(i64::from(params.page.limit))
                .bind(i64::from(params.page.offset)),
        )
        .await?;
    let count = tx
        .fetch_int(
            Stmt::new(OP_COUNT_SQL)
                .bind(&params.scope.project_id)
                .bind(&params.scope.instance_id)
                .bind(state)
                .bind(from)
                .bind(to),
        )
        .await?;
    let tasks = rows
        .into_iter()
        .map(TaskRow::into_task)
        .collect::<StoreResult<Vec<_>>>()?;
    let items = with_sub_tasks::<D>(&mut tx, tasks).await?;
    tx.commit().await?;
    Ok(Page { items, count })
}

pub async fn get<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<Option<OpRecord>> {
    let mut tx = driver.begin_read().await?;
    let Some(task) = load(&mut tx, scope, id).await? else {
        return tx.give_up(None).await;
    };
    let record = with_sub_tasks::<D>(&mut tx, vec![task]).await?.pop();
    tx.commit().await?;
    Ok(record)
}

pub async fn instance_owner<D: Driver>(
    driver: &D,
    service: OpService,
    instance_id: &str,
) -> StoreResult<Option<String>> {
    let row: Option<(String,)> = driver
        .read()
        .await?
        .fetch_optional(
            Stmt::new(
                "SELECT project_id FROM tasks WHERE service = $1 AND op_instance_id = $2 \
                 ORDER BY id LIMIT 1",
            )
            .bind(service.as_str())
            .bind(instance_id),
        )
        .await?;
    Ok(row.map(|(project,)| project))
}

pub async fn purge_finished<D: Driver>(
    driver: &D,
    before: Timestamp,
    max_rows: u32,
) -> StoreResult<u64> {
    if max_rows == 0 {
        return Ok(0);
    }
    let mut tx = driver.begin_write().await?;
    let mut tasks = tx
        .fetch_all::<TaskRow>(
            Stmt::new(D::sql(DialectSql::PurgePick))
                .bind(before.0)
                .bind(i64::from(max_rows)),
        )
        .await?
        .into_iter()
        .map(TaskRow::into_task)
        .collect::<StoreResult<Vec<_>>>()?;
    if tasks.is_empty() {
        return tx.give_up(0).await;
    }
    let ids: Vec<i64> = tasks.iter().map(|t| t.id.0).collect();
    tx.execute(
        Stmt::assembled(format!(
            "DELETE FROM sub_tasks WHERE task_id {}",
            D::in_list(1)
        ))
        .bind(&ids),
    )
    .await?;
    let deleted = tx
        .execute(
            Stmt::assembled(format!("DELETE FROM tasks WHERE id {}", D::in_list(1))).bind(&ids),
        )
        .await?;
    if deleted != tasks.len() as u64 {
        return Err(corrupt("purged tasks changed under their locks"));
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
    tx.commit().await?;
    Ok(tasks.len() as u64)
}
