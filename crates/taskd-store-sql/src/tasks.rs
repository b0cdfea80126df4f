//! Tasks and sub-tasks: insert, read, list, delete, and the `task_counts` bookkeeping.

use taskd_core::{Id, Progress, SubTask, Task, TaskScope, TaskState};
use taskd_store::{
    LegacyOperation, Page, PageRequest, StoreResult, SubTaskListParams, TaskDeleteOutcome,
    TaskInsertParams, TaskListParams,
};

use crate::driver::{Conn, Driver, Stmt, Tx};
use crate::{SubTaskRow, TaskRow, corrupt, sub_task_columns, task_columns};

/// Hands out `n + 1` ids (a task and its `n` sub-tasks) and returns the last: the task
/// gets max(last + 1, floor(now)), its sub-tasks the next n. Never below the clock's
/// floor, never below what was handed out: a newer task always has a larger id, even
/// when the clock steps back or another node's clock is behind. On PostgreSQL the row
/// lock this takes is held until commit: it orders every task insert on every node.
pub const ALLOCATE_SQL: &str = "UPDATE id_allocator \
     SET last_id = (CASE WHEN last_id + 1 > $1 THEN last_id + 1 ELSE $1 END) + $2 \
     WHERE singleton = 0 RETURNING last_id";

/// Inserts a task and its sub-tasks; with a legacy operation, records it (and its
/// deadline) in the same transaction.
pub async fn insert<D: Driver>(
    driver: &D,
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
    // Released at once unless a confirm must release them; the claim also waits for the
    // task's schedule time.
    let ready_at = (!new.need_confirm).then(|| new.schedule_at.unwrap_or(now).0);
    let runnable = ready_at.is_some() && n > 0;
    let op = new.operation.as_ref();
    let window = op.and_then(|o| o.window);

    let mut tx = driver.begin_write().await?;
    let last = tx
        .fetch_int(Stmt::new(ALLOCATE_SQL).bind(Id::floor_at(now.0).0).bind(n))
        .await?;
    let first = last - n;

    tx.execute(
        Stmt::new(
            "INSERT INTO tasks (id, project_id, instance_id, app_id, name, kind, mode, \
             need_confirm, ext_info_json, targets_json, targets_filter_json, document_json, \
             document_source, schedule_at, retry_count, retry_interval_minutes, state, \
             state_detail, n_total, n_waiting, n_processing, n_succeeded, n_failed, \
             n_retry_waiting, n_stopped, n_removed, created_at, updated_at, runnable, service, \
             op_instance_id, user_name, user_id, target_config_json, window_start, window_end) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, NULL, $18, $19, 0, 0, 0, 0, 0, 0, $20, $20, $21, $22, $23, $24, $25, $26, \
             $27, $28)",
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
        .bind(window.map(|w| i64::from(w.start_minute())))
        .bind(window.map(|w| i64::from(w.end_minute()))),
    )
    .await?;

    if n > 0 {
        let inserted = D::insert_sub_tasks(&mut tx, Id(first), now, ready_at, &sub_tasks).await?;
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
        D::notify_ready(&mut tx).await?;
    }
    tx.commit().await?;

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

/// Loads a task in `scope` on the given connection (inside a transaction or not).
pub async fn load<C: Conn>(conn: &mut C, scope: &TaskScope, id: Id) -> StoreResult<Option<Task>> {
    fetch_task(conn, Stmt::new(TASK_GET_SQL), scope, id).await
}

/// Loads a task in `scope` and locks its row until the transaction ends (PostgreSQL;
/// SQLite's write transaction holds the whole database): whoever changes the task or
/// its sub-tasks holds this lock, so what is read here stays true.
pub async fn load_locked<D: Driver>(
    tx: &mut impl Conn,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<Option<Task>> {
    let sql = Stmt::assembled(format!("{TASK_GET_SQL}{}", D::FOR_UPDATE));
    fetch_task(tx, sql, scope, id).await
}

/// Runs [`TASK_GET_SQL`] (with or without its lock) for `id` in `scope`.
async fn fetch_task(
    conn: &mut impl Conn,
    sql: Stmt<'static>,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<Option<Task>> {
    conn.fetch_optional::<TaskRow>(
        sql.bind(id.0)
            .bind(&scope.project_id)
            .bind(&scope.instance_id),
    )
    .await?
    .map(TaskRow::into_task)
    .transpose()
}

/// Loads a task by id alone and locks its row (the runner's paths, which start from a
/// sub-task).
pub async fn load_by_id_locked<D: Driver>(tx: &mut impl Conn, id: Id) -> StoreResult<Option<Task>> {
    tx.fetch_optional::<TaskRow>(
        Stmt::assembled(format!(
            concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = $1{}"),
            D::FOR_UPDATE
        ))
        .bind(id.0),
    )
    .await?
    .map(TaskRow::into_task)
    .transpose()
}

pub async fn get<D: Driver>(driver: &D, scope: &TaskScope, id: Id) -> StoreResult<Option<Task>> {
    load(&mut driver.read().await?, scope, id).await
}

/// How a listing filters on the resource space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppFilter {
    Any,
    /// The default space: `app_id IS NULL`.
    Default,
    /// `app_id = $n`.
    Named,
}

impl AppFilter {
    /// `Some("")` asks for the default space, stored as NULL in tasks (and `''` in
    /// task_counts).
    pub fn of(app: Option<&str>) -> AppFilter {
        match app {
            None => AppFilter::Any,
            Some("") => AppFilter::Default,
            Some(_) => AppFilter::Named,
        }
    }
}

/// The page query for a combination of filters. Parameters: `$1` project, `$2` instance,
/// `$3` marker, `$4` limit, `$5` offset, then the app (when named), kind and state
/// filters present, in that order. At most twelve distinct strings, so the
/// per-connection statement cache holds them all. The default space is `app_id IS NULL`
/// (PostgreSQL can't use an index for `IS NOT DISTINCT FROM`).
pub fn list_sql(app: AppFilter, kind: bool, state: bool) -> String {
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
pub fn count_sql(app: bool, kind: bool, state: bool) -> String {
    let mut sql = "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM task_counts \
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

pub async fn list<D: Driver>(driver: &D, params: &TaskListParams) -> StoreResult<Page<Task>> {
    let TaskListParams {
        scope,
        filter,
        page,
    } = params;
    // Some("") asks for the default space, stored as NULL in tasks and '' in task_counts.
    let app = filter.app_id.as_deref();
    let kind = filter.kind.as_deref();
    let state = filter.state.map(TaskState::as_str);

    let mut page_stmt = Stmt::assembled(list_sql(
        AppFilter::of(app),
        kind.is_some(),
        state.is_some(),
    ))
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .bind(page.marker.0)
    .bind(i64::from(page.limit))
    .bind(i64::from(page.offset));
    let mut count_stmt = Stmt::assembled(count_sql(app.is_some(), kind.is_some(), state.is_some()))
        .bind(&scope.project_id)
        .bind(&scope.instance_id);
    if let Some(app) = app {
        if !app.is_empty() {
            page_stmt = page_stmt.bind(app);
        }
        count_stmt = count_stmt.bind(app);
    }
    for value in [kind, state].into_iter().flatten() {
        page_stmt = page_stmt.bind(value);
        count_stmt = count_stmt.bind(value);
    }

    let mut tx = driver.begin_read().await?;
    let rows: Vec<TaskRow> = tx.fetch_all(page_stmt).await?;
    let count = tx.fetch_int(count_stmt).await?;
    tx.commit().await?;
    let items = rows
        .into_iter()
        .map(TaskRow::into_task)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Page { items, count })
}

pub const SUB_TASK_PAGE_SQL: &str = concat!(
    "SELECT ",
    sub_task_columns!(),
    " FROM sub_tasks WHERE task_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3 OFFSET $4"
);
pub const SUB_TASK_PAGE_BY_STATE_SQL: &str = concat!(
    "SELECT ",
    sub_task_columns!(),
    " FROM sub_tasks WHERE task_id = $1 AND id < $2 AND state = $5 \
     ORDER BY id DESC LIMIT $3 OFFSET $4"
);
pub const SUB_TASK_BY_TARGET_SQL: &str = concat!(
    "SELECT ",
    sub_task_columns!(),
    " FROM sub_tasks WHERE task_id = $1 AND target = $2"
);

pub async fn sub_task_list<D: Driver>(
    driver: &D,
    params: &SubTaskListParams,
) -> StoreResult<Option<Page<SubTask>>> {
    let SubTaskListParams {
        scope,
        task_id,
        state,
        target,
        page,
    } = params;
    let mut tx = driver.begin_read().await?;
    // The task row answers both "is it in this scope" and the counts.
    let Some(task) = load(&mut tx, scope, *task_id).await? else {
        return tx.give_up(None).await;
    };

    let page = if let Some(target) = target {
        // A target names at most one sub-task: one indexed lookup, then the filters.
        let found = tx
            .fetch_optional::<SubTaskRow>(
                Stmt::new(SUB_TASK_BY_TARGET_SQL)
                    .bind(task_id.0)
                    .bind(target),
            )
            .await?
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
        let sql = match state {
            Some(_) => SUB_TASK_PAGE_BY_STATE_SQL,
            None => SUB_TASK_PAGE_SQL,
        };
        let mut stmt = Stmt::new(sql)
            .bind(task_id.0)
            .bind(page.marker.0)
            .bind(i64::from(page.limit))
            .bind(i64::from(page.offset));
        if let Some(st) = state {
            stmt = stmt.bind(st.as_str());
        }
        let rows: Vec<SubTaskRow> = tx.fetch_all(stmt).await?;
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
    tx.commit().await?;
    Ok(Some(page))
}

/// Whether the record at `index` (0-based, among those below the marker) of a filtered
/// listing lands on `page`.
fn on_page(id: Id, page: &PageRequest, index: u32) -> bool {
    id < page.marker && index >= page.offset && index - page.offset < page.limit
}

pub async fn delete<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<TaskDeleteOutcome> {
    let mut tx = driver.begin_write().await?;
    let Some(task) = load_locked::<D>(&mut tx, scope, id).await? else {
        return tx.give_up(TaskDeleteOutcome::NotFound).await;
    };
    if !task.state.is_finished() {
        return tx.give_up(TaskDeleteOutcome::NotFinished(task.state)).await;
    }
    // Explicitly, not by cascade (PostgreSQL's sub_tasks has no foreign key, see its
    // migration), and their number must be what the counters say.
    let removed = tx
        .execute(Stmt::new("DELETE FROM sub_tasks WHERE task_id = $1").bind(id.0))
        .await?;
    if removed != task.progress.total as u64 {
        return Err(corrupt(format!(
            "task {id}: deleted {removed} sub-tasks, its counters say {}",
            task.progress.total
        )));
    }
    let deleted = tx
        .execute(
            Stmt::new("DELETE FROM tasks WHERE id = $1 AND state = $2")
                .bind(id.0)
                .bind(task.state.as_str()),
        )
        .await?;
    if deleted != 1 {
        return Err(corrupt(format!("task {id} changed under its lock")));
    }
    count_remove(&mut tx, &task, task.state).await?;
    tx.commit().await?;
    Ok(TaskDeleteOutcome::Deleted)
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
