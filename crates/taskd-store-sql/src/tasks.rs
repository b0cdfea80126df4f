//! Tasks and sub-tasks: reads shared by every use case.

use taskd_core::{Id, Task, TaskScope, TaskState};
use taskd_store::StoreResult;

use crate::driver::{Conn, Stmt};
use crate::{TaskRow, corrupt, task_columns};

const TASK_GET_SQL: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE id = $1 AND project_id = $2 AND instance_id = $3"
);

/// Loads a task in `scope` on the given connection (inside a transaction or not).
pub async fn load<C: Conn>(conn: &mut C, scope: &TaskScope, id: Id) -> StoreResult<Option<Task>> {
    conn.fetch_optional::<TaskRow>(
        Stmt::new(TASK_GET_SQL)
            .bind(id.0)
            .bind(&scope.project_id)
            .bind(&scope.instance_id),
    )
    .await?
    .map(TaskRow::into_task)
    .transpose()
}

/// `n` more tasks in (scope, app, kind) and `state`.
pub async fn count_add<C: Conn>(
    conn: &mut C,
    scope: &TaskScope,
    app_id: Option<&str>,
    kind: &str,
    state: TaskState,
    n: i64,
) -> StoreResult<()> {
    conn.execute(
        Stmt::new(
            "INSERT INTO task_counts (project_id, instance_id, app_id, kind, state, n) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (project_id, instance_id, app_id, kind, state) \
             DO UPDATE SET n = task_counts.n + excluded.n",
        )
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(app_id.unwrap_or(""))
        .bind(kind)
        .bind(state.as_str())
        .bind(n),
    )
    .await?;
    Ok(())
}

/// One task fewer in `task`'s (scope, app, kind) and `state`; an emptied row is dropped.
pub async fn count_remove<C: Conn>(conn: &mut C, task: &Task, state: TaskState) -> StoreResult<()> {
    let app_id = task.app_id.as_deref().unwrap_or("");
    let left: Option<(i64,)> = conn
        .fetch_optional(
            Stmt::new(
                "UPDATE task_counts SET n = n - 1 WHERE project_id = $1 AND instance_id = $2 \
                 AND app_id = $3 AND kind = $4 AND state = $5 RETURNING n",
            )
            .bind(&task.scope.project_id)
            .bind(&task.scope.instance_id)
            .bind(app_id)
            .bind(&task.kind)
            .bind(state.as_str()),
        )
        .await?;
    match left {
        None => Err(corrupt(format!(
            "task {}: no task_counts row for state {}",
            task.id,
            state.as_str()
        ))),
        Some((0,)) => {
            // The UPDATE holds the row's lock: nobody can have added to it since.
            conn.execute(
                Stmt::new(
                    "DELETE FROM task_counts WHERE project_id = $1 AND instance_id = $2 \
                     AND app_id = $3 AND kind = $4 AND state = $5 AND n = 0",
                )
                .bind(&task.scope.project_id)
                .bind(&task.scope.instance_id)
                .bind(app_id)
                .bind(&task.kind)
                .bind(state.as_str()),
            )
            .await?;
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

/// Moves `task` from `from` to `to` in `task_counts`. The two rows are locked in
/// state-name order, whichever way the task moves, so concurrent moves can't deadlock.
pub async fn count_move<C: Conn>(
    conn: &mut C,
    task: &Task,
    from: TaskState,
    to: TaskState,
) -> StoreResult<()> {
    if from == to {
        return Ok(());
    }
    let (scope, app_id, kind) = (&task.scope, task.app_id.as_deref(), task.kind.as_str());
    if from.as_str() < to.as_str() {
        count_remove(conn, task, from).await?;
        count_add(conn, scope, app_id, kind, to, 1).await
    } else {
        count_add(conn, scope, app_id, kind, to, 1).await?;
        count_remove(conn, task, from).await
    }
}
