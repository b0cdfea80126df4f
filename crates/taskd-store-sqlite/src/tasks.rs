//! Tasks and sub-tasks: insert, read, list, delete, and the `task_counts` bookkeeping.

use sqlx::{Sqlite, SqliteConnection};
use taskd_core::{Id, Progress, SubTask, Task, TaskScope, TaskState};
use taskd_store::{
    LegacyOperation, Page, PageRequest, StoreResult, SubTaskListParams, TaskDeleteOutcome,
    TaskInsertParams, TaskListParams,
};

use crate::rows::{SubTaskRow, TaskRow, corrupt, sub_task_columns, task_columns};
use crate::{SqliteDriver, begin_read, begin_write, db};

/// Inserts a task; with a legacy operation, records it (and its deadline) in the same
/// transaction.
pub(crate) async fn insert_with(
    store: &SqliteDriver,
    params: TaskInsertParams,
    legacy: Option<&LegacyOperation>,
) -> StoreResult<Task> {
    let TaskInsertParams {
        task: new,
        sub_tasks,
        now,
    } = params;
    // The default resource space is NULL, never '' (task_counts uses '' for it).
    let app_id = new.app_id.filter(|a| !a.is_empty());
    let n = i64::try_from(sub_tasks.len()).map_err(|_| corrupt("too many sub-tasks"))?;
    let state = if sub_tasks.is_empty() {
        TaskState::Initializing
    } else {
        TaskState::Waiting
    };
    let progress = Progress::waiting(n);
    // Built before the write lock is taken: the transaction only runs SQL.
    let sub_tasks_json = if sub_tasks.is_empty() {
        None
    } else {
        let rows: Vec<(&str, Option<&str>)> = sub_tasks
            .iter()
            .map(|s| (s.target.as_str(), s.input_json.as_deref()))
            .collect();
        Some(serde_json::to_string(&rows).map_err(|e| corrupt(e.to_string()))?)
    };

    // Released at once unless a confirm must release them; the claim also waits for the
    // task's schedule time.
    let ready_at = (!new.need_confirm).then(|| new.schedule_at.unwrap_or(now).0);
    let runnable = ready_at.is_some() && n > 0;
    let op = new.operation.as_ref();

    let mut tx = begin_write(store).await?;
    // One statement: the task gets max(last + 1, floor(now)), its sub-tasks the next n.
    // Never below the clock's floor, never below what was handed out: a newer task always
    // has a larger id, even when the clock steps back.
    let last: i64 = sqlx::query_scalar(
        "UPDATE id_allocator SET last_id = MAX(last_id + 1, ?) + ? WHERE singleton = 0 \
         RETURNING last_id",
    )
    .bind(Id::floor_at(now.0).0)
    .bind(n)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    let first = last - n;

    sqlx::query(
        "INSERT INTO tasks (id, project_id, instance_id, app_id, name, kind, mode, need_confirm, \
         ext_info_json, targets_json, targets_filter_json, document_json, document_source, \
         schedule_at, retry_count, retry_interval_minutes, state, state_detail, \
         n_total, n_waiting, n_processing, n_succeeded, n_failed, n_retry_waiting, \
         n_stopped, n_removed, created_at, updated_at, runnable, service, op_instance_id, \
         user_name, user_id, target_config_json, window_start, window_end) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, \
         ?, ?, 0, 0, 0, 0, 0, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(first)
    .bind(&new.scope.project_id)
    .bind(&new.scope.instance_id)
    .bind(&app_id)
    .bind(&new.name)
    .bind(&new.kind)
    .bind(&new.mode)
    .bind(new.need_confirm)
    .bind(&new.ext_info_json)
    .bind(&new.targets_json)
    .bind(&new.targets_filter_json)
    .bind(&new.document_json)
    .bind(&new.document_source)
    .bind(new.schedule_at.map(|t| t.0))
    .bind(new.retry.map(|r| i64::from(r.count)))
    .bind(new.retry.map(|r| i64::from(r.interval_minutes)))
    .bind(state.as_str())
    .bind(progress.total)
    .bind(progress.waiting)
    .bind(now.0)
    .bind(now.0)
    .bind(runnable)
    .bind(op.map(|o| o.service.as_str()))
    .bind(op.map(|o| o.instance_id.as_str()))
    .bind(op.and_then(|o| o.user_name.as_deref()))
    .bind(op.and_then(|o| o.user_id.as_deref()))
    .bind(op.and_then(|o| o.target_config_json.as_deref()))
    .bind(
        op.and_then(|o| o.window)
            .map(|w| i64::from(w.start_minute())),
    )
    .bind(op.and_then(|o| o.window).map(|w| i64::from(w.end_minute())))
    .execute(&mut *tx)
    .await
    .map_err(db)?;

    if let Some(json) = sub_tasks_json {
        // One statement for all sub-tasks: the array index gives each its id, in target
        // order. (30,000 single-row INSERTs through the driver would take seconds.)
        let inserted = sqlx::query(
            "INSERT INTO sub_tasks \
             (id, task_id, target, state, input_json, attempts, updated_at, ready_at) \
             SELECT ?1 + key + 1, ?1, value ->> 0, 'waiting', value ->> 1, 0, ?2, ?4 \
             FROM json_each(?3)",
        )
        .bind(first)
        .bind(now.0)
        .bind(json)
        .bind(ready_at)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        if inserted != n as u64 {
            return Err(corrupt(format!(
                "inserted {inserted} of {n} sub-tasks of task {}",
                Id(first)
            )));
        }
    }

    let scope = &new.scope;
    count_add(&mut tx, scope, app_id.as_deref(), &new.kind, state).await?;
    if let Some(op) = legacy {
        crate::legacy::insert_operation(&mut tx, Id(first), scope, op).await?;
    }
    tx.commit().await.map_err(db)?;

    Ok(Task {
        id: Id(first),
        scope: new.scope,
        app_id,
        name: new.name,
        kind: new.kind,
        mode: new.mode,
        need_confirm: new.need_confirm,
        ext_info_json: new.ext_info_json,
        targets_json: new.targets_json,
        targets_filter_json: new.targets_filter_json,
        document_json: new.document_json,
        document_source: new.document_source,
        schedule_at: new.schedule_at,
        retry: new.retry,
        operation: new.operation,
        state,
        state_detail: None,
        progress,
        created_at: now,
        updated_at: now,
    })
}

const TASK_GET_SQL: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE id = ? AND project_id = ? AND instance_id = ?"
);

/// Loads a task in `scope` on the given connection (inside a transaction or not).
pub(crate) async fn load(
    conn: &mut SqliteConnection,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<Option<Task>> {
    sqlx::query_as::<_, TaskRow>(TASK_GET_SQL)
        .bind(id.0)
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .map(TaskRow::into_task)
        .transpose()
}

const TASK_BY_ID_SQL: &str = concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = ?");

/// Loads a task by id alone (the runner's paths, which start from a sub-task).
pub(crate) async fn load_by_id(conn: &mut SqliteConnection, id: Id) -> StoreResult<Option<Task>> {
    sqlx::query_as::<_, TaskRow>(TASK_BY_ID_SQL)
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .map(TaskRow::into_task)
        .transpose()
}

pub(crate) async fn get(
    store: &SqliteDriver,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<Option<Task>> {
    let mut conn = store.reader.acquire().await.map_err(db)?;
    load(&mut conn, scope, id).await
}

/// The page query for each combination of filters (app, kind, state), as static strings
/// so the statement cache holds at most eight. `app_id IS ?` so that binding NULL selects
/// the default space; SQLite uses the index for `IS` as for `=`.
pub(crate) fn list_sql(app: bool, kind: bool, state: bool) -> &'static str {
    macro_rules! q {
        ($($cond:literal),*) => {
            concat!(
                "SELECT ", task_columns!(),
                " FROM tasks WHERE project_id = ? AND instance_id = ? AND id < ?",
                $(" AND ", $cond,)*
                " ORDER BY id DESC LIMIT ? OFFSET ?"
            )
        };
    }
    match (app, kind, state) {
        (false, false, false) => q!(),
        (true, false, false) => q!("app_id IS ?"),
        (false, true, false) => q!("kind = ?"),
        (false, false, true) => q!("state = ?"),
        (true, true, false) => q!("app_id IS ?", "kind = ?"),
        (true, false, true) => q!("app_id IS ?", "state = ?"),
        (false, true, true) => q!("kind = ?", "state = ?"),
        (true, true, true) => q!("app_id IS ?", "kind = ?", "state = ?"),
    }
}

/// The total for each combination of filters: a sum over `task_counts` (a few rows per
/// scope), never a count over tasks.
pub(crate) fn count_sql(app: bool, kind: bool, state: bool) -> &'static str {
    macro_rules! q {
        ($($cond:literal),*) => {
            concat!(
                "SELECT COALESCE(SUM(n), 0) FROM task_counts \
                 WHERE project_id = ? AND instance_id = ?",
                $(" AND ", $cond,)*
            )
        };
    }
    match (app, kind, state) {
        (false, false, false) => q!(),
        (true, false, false) => q!("app_id = ?"),
        (false, true, false) => q!("kind = ?"),
        (false, false, true) => q!("state = ?"),
        (true, true, false) => q!("app_id = ?", "kind = ?"),
        (true, false, true) => q!("app_id = ?", "state = ?"),
        (false, true, true) => q!("kind = ?", "state = ?"),
        (true, true, true) => q!("app_id = ?", "kind = ?", "state = ?"),
    }
}

pub(crate) async fn list(store: &SqliteDriver, params: &TaskListParams) -> StoreResult<Page<Task>> {
    let TaskListParams {
        scope,
        filter,
        page,
    } = params;
    // Some("") asks for the default space, stored as NULL in tasks and '' in task_counts.
    let app = filter.app_id.as_deref();
    let (has_app, has_kind, has_state) =
        (app.is_some(), filter.kind.is_some(), filter.state.is_some());
    let state = filter.state.map(TaskState::as_str);

    let mut tx = begin_read(store).await?;
    let mut q = sqlx::query_as::<_, TaskRow>(list_sql(has_app, has_kind, has_state))
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(page.marker.0);
    if let Some(app) = app {
        q = q.bind((!app.is_empty()).then_some(app));
    }
    if let Some(kind) = &filter.kind {
        q = q.bind(kind);
    }
    if let Some(state) = state {
        q = q.bind(state);
    }
    let rows = q
        .bind(i64::from(page.limit))
        .bind(i64::from(page.offset))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;

    let mut c = sqlx::query_scalar::<_, i64>(count_sql(has_app, has_kind, has_state))
        .bind(&scope.project_id)
        .bind(&scope.instance_id);
    if let Some(app) = app {
        c = c.bind(app);
    }
    if let Some(kind) = &filter.kind {
        c = c.bind(kind);
    }
    if let Some(state) = state {
        c = c.bind(state);
    }
    let count = c.fetch_one(&mut *tx).await.map_err(db)?;
    tx.commit().await.map_err(db)?;

    let items = rows
        .into_iter()
        .map(TaskRow::into_task)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page { items, count })
}

pub(crate) const SUB_TASK_PAGE_SQL: &str = concat!(
    "SELECT ",
    sub_task_columns!(),
    " FROM sub_tasks WHERE task_id = ? AND id < ? ORDER BY id DESC LIMIT ? OFFSET ?"
);
pub(crate) const SUB_TASK_PAGE_BY_STATE_SQL: &str = concat!(
    "SELECT ",
    sub_task_columns!(),
    " FROM sub_tasks WHERE task_id = ? AND state = ? AND id < ? ORDER BY id DESC LIMIT ? OFFSET ?"
);
pub(crate) const SUB_TASK_BY_TARGET_SQL: &str = concat!(
    "SELECT ",
    sub_task_columns!(),
    " FROM sub_tasks WHERE task_id = ? AND target = ?"
);

pub(crate) async fn sub_task_list(
    store: &SqliteDriver,
    params: &SubTaskListParams,
) -> StoreResult<Option<Page<SubTask>>> {
    let SubTaskListParams {
        scope,
        task_id,
        state,
        target,
        page,
    } = params;
    let mut tx = begin_read(store).await?;
    // The task row answers both "is it in this scope" and the counts.
    let Some(task) = load(&mut tx, scope, *task_id).await? else {
        return Ok(None);
    };

    let page = if let Some(target) = target {
        // A target names at most one sub-task: one indexed lookup, then the filters.
        let found = sqlx::query_as::<_, SubTaskRow>(SUB_TASK_BY_TARGET_SQL)
            .bind(task_id.0)
            .bind(target)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .map(SubTaskRow::into_sub_task)
            .transpose()?
            .filter(|s| state.is_none_or(|st| s.state == st));
        let count = i64::from(found.is_some());
        let items = found
            .filter(|s| on_page(s.id, page, 0))
            .into_iter()
            .collect();
        Page { items, count }
    } else {
        let rows = match state {
            Some(st) => sqlx::query_as::<_, SubTaskRow>(SUB_TASK_PAGE_BY_STATE_SQL)
                .bind(task_id.0)
                .bind(st.as_str()),
            None => sqlx::query_as::<_, SubTaskRow>(SUB_TASK_PAGE_SQL).bind(task_id.0),
        }
        .bind(page.marker.0)
        .bind(i64::from(page.limit))
        .bind(i64::from(page.offset))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let items = rows
            .into_iter()
            .map(SubTaskRow::into_sub_task)
            .collect::<StoreResult<Vec<_>>>()?;
        let count = match state {
            Some(st) => task.progress.get(*st),
            None => task.progress.total,
        };
        Page { items, count }
    };
    tx.commit().await.map_err(db)?;
    Ok(Some(page))
}

/// Whether the record at `index` (0-based, among those below the marker) of a filtered
/// listing lands on `page`.
fn on_page(id: Id, page: &PageRequest, index: u32) -> bool {
    id < page.marker && index >= page.offset && index - page.offset < page.limit
}

pub(crate) async fn delete(
    store: &SqliteDriver,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<TaskDeleteOutcome> {
    let mut tx = begin_write(store).await?;
    let Some(task) = load(&mut tx, scope, id).await? else {
        return Ok(TaskDeleteOutcome::NotFound);
    };
    if !task.state.is_finished() {
        return Ok(TaskDeleteOutcome::NotFinished(task.state));
    }
    // Explicit rather than by cascade: the delete doesn't depend on `foreign_keys = ON`.
    let removed = sqlx::query("DELETE FROM sub_tasks WHERE task_id = ?")
        .bind(id.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
    if removed != task.progress.total as u64 {
        return Err(corrupt(format!(
            "task {id}: deleted {removed} sub-tasks, its counters say {}",
            task.progress.total
        )));
    }
    let deleted = sqlx::query("DELETE FROM tasks WHERE id = ? AND state = ?")
        .bind(id.0)
        .bind(task.state.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
    if deleted != 1 {
        return Err(corrupt(format!("task {id} changed under the write lock")));
    }
    count_remove(&mut tx, &task, task.state).await?;
    tx.commit().await.map_err(db)?;
    Ok(TaskDeleteOutcome::Deleted)
}

// ---- task_counts ------------------------------------------------------------------------

/// One more task in (scope, app, kind, state).
pub(crate) async fn count_add(
    conn: &mut SqliteConnection,
    scope: &TaskScope,
    app_id: Option<&str>,
    kind: &str,
    state: TaskState,
) -> StoreResult<()> {
    sqlx::query::<Sqlite>(
        "INSERT INTO task_counts (project_id, instance_id, app_id, kind, state, n) \
         VALUES (?, ?, ?, ?, ?, 1) \
         ON CONFLICT (project_id, instance_id, app_id, kind, state) DO UPDATE SET n = n + 1",
    )
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .bind(app_id.unwrap_or(""))
    .bind(kind)
    .bind(state.as_str())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// One task fewer in `task`'s (scope, app, kind) and `state`; empty rows are dropped.
pub(crate) async fn count_remove(
    conn: &mut SqliteConnection,
    task: &Task,
    state: TaskState,
) -> StoreResult<()> {
    let app_id = task.app_id.as_deref().unwrap_or("");
    let changed = sqlx::query::<Sqlite>(
        "UPDATE task_counts SET n = n - 1 \
         WHERE project_id = ? AND instance_id = ? AND app_id = ? AND kind = ? AND state = ?",
    )
    .bind(&task.scope.project_id)
    .bind(&task.scope.instance_id)
    .bind(app_id)
    .bind(&task.kind)
    .bind(state.as_str())
    .execute(&mut *conn)
    .await
    .map_err(db)?
    .rows_affected();
    if changed != 1 {
        return Err(corrupt(format!(
            "task {}: no task_counts row for state {}",
            task.id,
            state.as_str()
        )));
    }
    sqlx::query::<Sqlite>(
        "DELETE FROM task_counts WHERE project_id = ? AND instance_id = ? AND app_id = ? \
         AND kind = ? AND state = ? AND n = 0",
    )
    .bind(&task.scope.project_id)
    .bind(&task.scope.instance_id)
    .bind(app_id)
    .bind(&task.kind)
    .bind(state.as_str())
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// Moves `task` from `from` to `to` in `task_counts`.
pub(crate) async fn count_move(
    conn: &mut SqliteConnection,
    task: &Task,
    from: TaskState,
    to: TaskState,
) -> StoreResult<()> {
    if from != to {
        count_remove(conn, task, from).await?;
        count_add(conn, &task.scope, task.app_id.as_deref(), &task.kind, to).await?;
    }
    Ok(())
}
