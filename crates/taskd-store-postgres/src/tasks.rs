//! Tasks and sub-tasks: insert, read, list, delete, and the `task_counts` bookkeeping.

use sqlx::{AssertSqlSafe, PgConnection};
use taskd_core::{Id, Progress, SubTask, Task, TaskScope, TaskState};
use taskd_store::{
    Page, PageRequest, StoreResult, SubTaskListParams, TaskDeleteOutcome, TaskInsertParams,
    TaskListParams,
};

use crate::rows::{SubTaskRow, TaskRow, corrupt, sub_task_columns, task_columns};
use crate::{PgDriver, begin_read, begin_write, db, give_up};

/// Hands out `n + 1` ids (a task and its `n` sub-tasks) and returns the last. The row
/// lock this takes is held until commit: it orders every task insert on every node.
pub(crate) const ALLOCATE_SQL: &str = "UPDATE id_allocator \
     SET last_id = GREATEST(last_id + 1, $1) + $2 WHERE singleton = 0 RETURNING last_id";

/// Inserts a task; with a legacy operation, records it (and its deadline) in the same
/// transaction.
pub(crate) async fn insert_with(
    store: &PgDriver,
    params: TaskInsertParams,
    legacy: Option<&taskd_store::LegacyOperation>,
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
    // Built before any lock is taken: the transaction only runs SQL.
    let targets: Vec<&str> = sub_tasks.iter().map(|s| s.target.as_str()).collect();
    let inputs: Vec<Option<&str>> = sub_tasks.iter().map(|s| s.input_json.as_deref()).collect();

    // Released at once unless a confirm must release them; the claim also waits for the
    // task's schedule time.
    let ready_at = (!new.need_confirm).then(|| new.schedule_at.unwrap_or(now).0);
    let runnable = ready_at.is_some() && n > 0;
    let op = new.operation.as_ref();

    let mut tx = begin_write(store).await?;
    // The task gets max(last + 1, floor(now)), its sub-tasks the next n. Never below the
    // clock's floor, never below what was handed out: a newer task always has a larger
    // id, even when the clock steps back or another node's clock is behind.
    let last: i64 = sqlx::query_scalar(ALLOCATE_SQL)
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
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
         NULL, $18, $19, 0, 0, 0, 0, 0, 0, $20, $20, $21, $22, $23, $24, $25, $26, $27, $28)",
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

    if n > 0 {
        // One statement for all sub-tasks: the ordinality gives each its id, in target
        // order. (30,000 single-row INSERTs would take seconds.)
        let inserted = sqlx::query(
            "INSERT INTO sub_tasks \
             (id, task_id, target, state, input_json, attempts, updated_at, ready_at) \
             SELECT $1 + ord, $1, t, 'waiting', i, 0, $2, $5 \
             FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS u(t, i, ord)",
        )
        .bind(first)
        .bind(now.0)
        .bind(targets)
        .bind(inputs)
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

    count_add(&mut tx, &new.scope, app_id.as_deref(), &new.kind, state, 1).await?;
    if let Some(op) = legacy {
        crate::legacy::insert_operation(&mut tx, Id(first), &new.scope, op).await?;
    }
    if runnable {
        crate::wakeups::notify_ready(&mut tx).await?;
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
    " FROM tasks WHERE id = $1 AND project_id = $2 AND instance_id = $3"
);

const TASK_LOCK_SQL: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE id = $1 AND project_id = $2 AND instance_id = $3 FOR UPDATE"
);

const TASK_LOCK_BY_ID_SQL: &str = concat!(
    "SELECT ",
    task_columns!(),
    " FROM tasks WHERE id = $1 FOR UPDATE"
);

/// Loads a task by id alone and locks its row (the runner's paths, which start from a
/// sub-task).
pub(crate) async fn load_by_id_for_update(
    conn: &mut PgConnection,
    id: Id,
) -> StoreResult<Option<Task>> {
    sqlx::query_as::<_, TaskRow>(TASK_LOCK_BY_ID_SQL)
        .bind(id.0)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .map(TaskRow::into_task)
        .transpose()
}

/// Loads a task in `scope` on the given connection (inside a transaction or not).
pub(crate) async fn load(
    conn: &mut PgConnection,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<Option<Task>> {
    load_with(conn, TASK_GET_SQL, scope, id).await
}

/// Loads a task in `scope` and locks its row until the transaction ends: whoever
/// changes the task or its sub-tasks holds this lock, so what is read here stays true.
pub(crate) async fn load_for_update(
    conn: &mut PgConnection,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<Option<Task>> {
    load_with(conn, TASK_LOCK_SQL, scope, id).await
}

async fn load_with(
    conn: &mut PgConnection,
    sql: &'static str,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<Option<Task>> {
    sqlx::query_as::<_, TaskRow>(sql)
        .bind(id.0)
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .map(TaskRow::into_task)
        .transpose()
}

pub(crate) async fn get(store: &PgDriver, scope: &TaskScope, id: Id) -> StoreResult<Option<Task>> {
    let mut conn = store.pool.acquire().await.map_err(db)?;
    load(&mut conn, scope, id).await
}

/// How a listing filters on the resource space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppFilter {
    Any,
    /// The default space: `app_id IS NULL` (PostgreSQL can't use an index for
    /// `IS NOT DISTINCT FROM`, so NULL gets its own condition).
    Default,
    /// `app_id = $n`.
    Named,
}

impl AppFilter {
    fn of(app: Option<&str>) -> AppFilter {
        match app {
            None => AppFilter::Any,
            Some("") => AppFilter::Default,
            Some(_) => AppFilter::Named,
        }
    }
}

/// The page query for a combination of filters. Parameters: `$1` project, `$2` instance,
/// `$3` marker, `$4` limit, `$5` offset, then the app (when named), kind and state
/// filters present, in that order. At most twelve distinct strings, so the per-connection
/// statement cache holds them all.
pub(crate) fn list_sql(app: AppFilter, kind: bool, state: bool) -> String {
    let mut sql = format!(
        "SELECT {} FROM tasks WHERE project_id = $1 AND instance_id = $2 AND id < $3",
        task_columns!()
    );
    let mut next = 6;
    let mut cond = |sql: &mut String, column: &str| {
        sql.push_str(&format!(" AND {column} = ${next}"));
        next += 1;
    };
    match app {
        AppFilter::Any => {}
        AppFilter::Default => sql.push_str(" AND app_id IS NULL"),
        AppFilter::Named => cond(&mut sql, "app_id"),
    }
    if kind {
        cond(&mut sql, "kind");
    }
    if state {
        cond(&mut sql, "state");
    }
    sql.push_str(" ORDER BY id DESC LIMIT $4 OFFSET $5");
    sql
}

/// The total for a combination of filters: a sum over `task_counts` (a few rows per
/// scope), never a count over tasks. Parameters: `$1` project, `$2` instance, then the
/// app (`''` for the default space), kind and state filters present, in that order.
pub(crate) fn count_sql(app: bool, kind: bool, state: bool) -> String {
    let mut sql = "SELECT COALESCE(SUM(n), 0)::BIGINT FROM task_counts \
                   WHERE project_id = $1 AND instance_id = $2"
        .to_owned();
    let mut next = 3;
    for (present, column) in [(app, "app_id"), (kind, "kind"), (state, "state")] {
        if present {
            sql.push_str(&format!(" AND {column} = ${next}"));
            next += 1;
        }
    }
    sql
}

pub(crate) async fn list(store: &PgDriver, params: &TaskListParams) -> StoreResult<Page<Task>> {
    let TaskListParams {
        scope,
        filter,
        page,
    } = params;
    // Some("") asks for the default space, stored as NULL in tasks and '' in task_counts.
    let app = filter.app_id.as_deref();
    let app_filter = AppFilter::of(app);
    let state = filter.state.map(TaskState::as_str);
    let page_sql = list_sql(app_filter, filter.kind.is_some(), state.is_some());
    let count_sql = count_sql(app.is_some(), filter.kind.is_some(), state.is_some());

    let mut tx = begin_read(store).await?;
    let mut q = sqlx::query_as::<_, TaskRow>(AssertSqlSafe(page_sql))
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(page.marker.0)
        .bind(i64::from(page.limit))
        .bind(i64::from(page.offset));
    if app_filter == AppFilter::Named {
        q = q.bind(app);
    }
    if let Some(kind) = &filter.kind {
        q = q.bind(kind);
    }
    if let Some(state) = state {
        q = q.bind(state);
    }
    let rows = q.fetch_all(&mut *tx).await.map_err(db)?;

    let mut c = sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_sql))
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
    " FROM sub_tasks WHERE task_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3 OFFSET $4"
);
pub(crate) const SUB_TASK_PAGE_BY_STATE_SQL: &str = concat!(
    "SELECT ",
    sub_task_columns!(),
    " FROM sub_tasks WHERE task_id = $1 AND id < $2 AND state = $5 \
     ORDER BY id DESC LIMIT $3 OFFSET $4"
);
pub(crate) const SUB_TASK_BY_TARGET_SQL: &str = concat!(
    "SELECT ",
    sub_task_columns!(),
    " FROM sub_tasks WHERE task_id = $1 AND target = $2"
);

pub(crate) async fn sub_task_list(
    store: &PgDriver,
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
        let q = match state {
            Some(_) => sqlx::query_as::<_, SubTaskRow>(SUB_TASK_PAGE_BY_STATE_SQL),
            None => sqlx::query_as::<_, SubTaskRow>(SUB_TASK_PAGE_SQL),
        }
        .bind(task_id.0)
        .bind(page.marker.0)
        .bind(i64::from(page.limit))
        .bind(i64::from(page.offset));
        let q = match state {
            Some(st) => q.bind(st.as_str()),
            None => q,
        };
        let rows = q.fetch_all(&mut *tx).await.map_err(db)?;
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
    store: &PgDriver,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<TaskDeleteOutcome> {
    let mut tx = begin_write(store).await?;
    let Some(task) = load_for_update(&mut tx, scope, id).await? else {
        return give_up(tx, TaskDeleteOutcome::NotFound).await;
    };
    if !task.state.is_finished() {
        return give_up(tx, TaskDeleteOutcome::NotFinished(task.state)).await;
    }
    // There is no foreign key (see the migration): the sub-tasks go explicitly, and their
    // number must be what the counters say.
    let removed = sqlx::query("DELETE FROM sub_tasks WHERE task_id = $1")
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
    let deleted = sqlx::query("DELETE FROM tasks WHERE id = $1 AND state = $2")
        .bind(id.0)
        .bind(task.state.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
    if deleted != 1 {
        return Err(corrupt(format!("task {id} changed under its row lock")));
    }
    count_remove(&mut tx, &task, task.state).await?;
    tx.commit().await.map_err(db)?;
    Ok(TaskDeleteOutcome::Deleted)
}

// ---- task_counts ------------------------------------------------------------------------

/// `n` more tasks in (scope, app, kind, state).
pub(crate) async fn count_add(
    conn: &mut PgConnection,
    scope: &TaskScope,
    app_id: Option<&str>,
    kind: &str,
    state: TaskState,
    n: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO task_counts (project_id, instance_id, app_id, kind, state, n) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (project_id, instance_id, app_id, kind, state) \
         DO UPDATE SET n = task_counts.n + EXCLUDED.n",
    )
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .bind(app_id.unwrap_or(""))
    .bind(kind)
    .bind(state.as_str())
    .bind(n)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(())
}

/// One task fewer in `task`'s (scope, app, kind) and `state`; an emptied row is dropped.
pub(crate) async fn count_remove(
    conn: &mut PgConnection,
    task: &Task,
    state: TaskState,
) -> StoreResult<()> {
    let left: Option<i64> = sqlx::query_scalar(
        "UPDATE task_counts SET n = n - 1 WHERE project_id = $1 AND instance_id = $2 \
         AND app_id = $3 AND kind = $4 AND state = $5 RETURNING n",
    )
    .bind(&task.scope.project_id)
    .bind(&task.scope.instance_id)
    .bind(task.app_id.as_deref().unwrap_or(""))
    .bind(&task.kind)
    .bind(state.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    match left {
        None => Err(corrupt(format!(
            "task {}: no task_counts row for state {}",
            task.id,
            state.as_str()
        ))),
        Some(0) => {
            // We hold the row's lock: nobody can have added to it since.
            sqlx::query(
                "DELETE FROM task_counts WHERE project_id = $1 AND instance_id = $2 \
                 AND app_id = $3 AND kind = $4 AND state = $5 AND n = 0",
            )
            .bind(&task.scope.project_id)
            .bind(&task.scope.instance_id)
            .bind(task.app_id.as_deref().unwrap_or(""))
            .bind(&task.kind)
            .bind(state.as_str())
            .execute(conn)
            .await
            .map_err(db)?;
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

/// Moves `task` from `from` to `to` in `task_counts`. The two rows are locked in
/// state-name order, whichever way the task moves, so concurrent moves can't deadlock.
pub(crate) async fn count_move(
    conn: &mut PgConnection,
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
