//! The legacy northbound API's tables: apps, tokens, the flow-control window, device
//! attributes, legacy operations and task deadlines.

use sqlx::PgConnection;
use taskd_core::{Id, SubTaskState, Task, TaskScope, Timestamp};
use taskd_store::{
    DeviceAttributes, LegacyApp, LegacyOperation, LegacyTask, LegacyTaskListParams, LegacyTokens,
    Page, StoreError, StoreResult, TIMEOUT_ERROR_CODE,
};

use crate::rows::corrupt;
use crate::tasks::load;
use crate::{PgStore, begin_read, begin_write, db};

type AppRow = (String, String, String, i64, Option<i64>);
/// device_id, device_type, model, manufacturer_name.
type AttrRow = (String, Option<String>, Option<String>, Option<String>);

fn app_from(r: AppRow) -> LegacyApp {
    LegacyApp {
        app_id: r.0,
        project_id: r.1,
        secret_hash: r.2,
        created_at: Timestamp(r.3),
        revoked_at: r.4.map(Timestamp),
    }
}

pub(crate) async fn app_put(store: &PgStore, app: &LegacyApp) -> StoreResult<()> {
    let mut tx = begin_write(store).await?;
    sqlx::query(
        "INSERT INTO projects (project_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(&app.project_id)
    .bind(app.created_at.0)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let owner: Option<String> =
        sqlx::query_scalar("SELECT project_id FROM legacy_apps WHERE app_id = $1 FOR UPDATE")
            .bind(&app.app_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
    if let Some(owner) = owner
        && owner != app.project_id
    {
        tx.rollback().await.map_err(db)?;
        return Err(StoreError::Conflict(
            "app id belongs to another project".to_owned(),
        ));
    }
    sqlx::query(
        "INSERT INTO legacy_apps (app_id, project_id, secret_hash, created_at, revoked_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (app_id) DO UPDATE \
         SET secret_hash = excluded.secret_hash, revoked_at = excluded.revoked_at",
    )
    .bind(&app.app_id)
    .bind(&app.project_id)
    .bind(&app.secret_hash)
    .bind(app.created_at.0)
    .bind(app.revoked_at.map(|t| t.0))
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    // A new secret ends the tokens issued under the old one.
    sqlx::query("DELETE FROM legacy_tokens WHERE app_id = $1")
        .bind(&app.app_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(())
}

pub(crate) async fn app_get(store: &PgStore, app_id: &str) -> StoreResult<Option<LegacyApp>> {
    let row: Option<AppRow> = sqlx::query_as(
        "SELECT app_id, project_id, secret_hash, created_at, revoked_at FROM legacy_apps \
         WHERE app_id = $1",
    )
    .bind(app_id)
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?;
    Ok(row.map(app_from))
}

pub(crate) async fn app_list(store: &PgStore) -> StoreResult<Vec<LegacyApp>> {
    let rows: Vec<AppRow> = sqlx::query_as(
        "SELECT app_id, project_id, secret_hash, created_at, revoked_at FROM legacy_apps \
         ORDER BY created_at, app_id",
    )
    .fetch_all(&store.pool)
    .await
    .map_err(db)?;
    Ok(rows.into_iter().map(app_from).collect())
}

pub(crate) async fn app_revoke(store: &PgStore, app_id: &str, now: Timestamp) -> StoreResult<bool> {
    let mut tx = begin_write(store).await?;
    let n = sqlx::query(
        "UPDATE legacy_apps SET revoked_at = $1 WHERE app_id = $2 AND revoked_at IS NULL",
    )
    .bind(now.0)
    .bind(app_id)
    .execute(&mut *tx)
    .await
    .map_err(db)?
    .rows_affected();
    sqlx::query("DELETE FROM legacy_tokens WHERE app_id = $1")
        .bind(app_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(n == 1)
}

pub(crate) async fn tokens_put(store: &PgStore, t: &LegacyTokens) -> StoreResult<bool> {
    let n = sqlx::query(
        "INSERT INTO legacy_tokens (app_id, access_hash, access_expires_at, refresh_hash, \
         refresh_expires_at, issued_at) \
         SELECT $1, $2, $3, $4, $5, $6 FROM legacy_apps WHERE app_id = $1 AND revoked_at IS NULL \
         ON CONFLICT (app_id) DO UPDATE SET access_hash = excluded.access_hash, \
         access_expires_at = excluded.access_expires_at, refresh_hash = excluded.refresh_hash, \
         refresh_expires_at = excluded.refresh_expires_at, issued_at = excluded.issued_at",
    )
    .bind(&t.app_id)
    .bind(&t.access_hash)
    .bind(t.access_expires_at.0)
    .bind(&t.refresh_hash)
    .bind(t.refresh_expires_at.0)
    .bind(t.issued_at.0)
    .execute(&store.pool)
    .await
    .map_err(db)?
    .rows_affected();
    Ok(n == 1)
}

pub(crate) async fn tokens_get(store: &PgStore, app_id: &str) -> StoreResult<Option<LegacyTokens>> {
    let row: Option<(String, String, i64, String, i64, i64)> = sqlx::query_as(
        "SELECT app_id, access_hash, access_expires_at, refresh_hash, refresh_expires_at, \
         issued_at FROM legacy_tokens WHERE app_id = $1",
    )
    .bind(app_id)
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?;
    Ok(row.map(|r| LegacyTokens {
        app_id: r.0,
        access_hash: r.1,
        access_expires_at: Timestamp(r.2),
        refresh_hash: r.3,
        refresh_expires_at: Timestamp(r.4),
        issued_at: Timestamp(r.5),
    }))
}

pub(crate) async fn rate_hit(
    store: &PgStore,
    app_id: &str,
    window_start: Timestamp,
) -> StoreResult<i64> {
    let mut tx = begin_write(store).await?;
    sqlx::query("DELETE FROM legacy_rate WHERE app_id = $1 AND window_start < $2")
        .bind(app_id)
        .bind(window_start.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let calls: i64 = sqlx::query_scalar(
        "INSERT INTO legacy_rate (app_id, window_start, calls) VALUES ($1, $2, 1) \
         ON CONFLICT (app_id, window_start) DO UPDATE SET calls = legacy_rate.calls + 1 \
         RETURNING calls",
    )
    .bind(app_id)
    .bind(window_start.0)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(calls)
}

pub(crate) async fn attributes_put(
    store: &PgStore,
    scope: &TaskScope,
    device_id: &str,
    a: &DeviceAttributes,
) -> StoreResult<bool> {
    let n = sqlx::query(
        "INSERT INTO legacy_device_attributes \
         (project_id, instance_id, device_id, device_type, model, manufacturer_name) \
         SELECT project_id, instance_id, device_id, $4, $5, $6 FROM devices \
         WHERE project_id = $1 AND instance_id = $2 AND device_id = $3 \
         ON CONFLICT (project_id, instance_id, device_id) DO UPDATE SET \
         device_type = excluded.device_type, model = excluded.model, \
         manufacturer_name = excluded.manufacturer_name",
    )
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .bind(device_id)
    .bind(&a.device_type)
    .bind(&a.model)
    .bind(&a.manufacturer_name)
    .execute(&store.pool)
    .await
    .map_err(db)?
    .rows_affected();
    Ok(n == 1)
}

pub(crate) async fn attributes_get(
    store: &PgStore,
    scope: &TaskScope,
    device_ids: &[String],
) -> StoreResult<Vec<(String, DeviceAttributes)>> {
    if device_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<AttrRow> = sqlx::query_as(
        "SELECT d.device_id, a.device_type, a.model, a.manufacturer_name \
         FROM unnest($3::TEXT[]) WITH ORDINALITY AS j (device_id, ord) \
         JOIN devices d ON d.project_id = $1 AND d.instance_id = $2 \
           AND d.device_id = j.device_id COLLATE \"C\" \
         LEFT JOIN legacy_device_attributes a ON a.project_id = d.project_id \
           AND a.instance_id = d.instance_id AND a.device_id = d.device_id \
         ORDER BY j.ord",
    )
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .bind(device_ids)
    .fetch_all(&store.pool)
    .await
    .map_err(db)?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.0,
                DeviceAttributes {
                    device_type: r.1,
                    model: r.2,
                    manufacturer_name: r.3,
                },
            )
        })
        .collect())
}

/// Records a legacy operation (and its deadline) with its task, inside the insert.
pub(crate) async fn insert_operation(
    conn: &mut PgConnection,
    task_id: Id,
    scope: &TaskScope,
    op: &LegacyOperation,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO legacy_operations (task_id, project_id, instance_id, operate_type, \
         device_type, model, manufacturer_name) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(task_id.0)
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .bind(&op.operate_type)
    .bind(&op.device_type)
    .bind(&op.model)
    .bind(&op.manufacturer_name)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    if let Some(deadline) = op.deadline_at {
        sqlx::query(
            "INSERT INTO task_deadlines (task_id, deadline_at, pending, n_timed_out) \
             VALUES ($1, $2, TRUE, 0)",
        )
        .bind(task_id.0)
        .bind(deadline.0)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

type OpRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

const OP_COLUMNS: &str = "o.task_id, o.operate_type, o.device_type, o.model, \
     o.manufacturer_name, d.deadline_at, d.n_timed_out";

fn legacy_task(task: Task, r: OpRow) -> LegacyTask {
    LegacyTask {
        task,
        operation: LegacyOperation {
            operate_type: r.1,
            device_type: r.2,
            model: r.3,
            manufacturer_name: r.4,
            deadline_at: r.5.map(Timestamp),
        },
        timed_out: r.6.unwrap_or(0),
    }
}

pub(crate) async fn task_get(
    store: &PgStore,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<Option<LegacyTask>> {
    let mut tx = begin_read(store).await?;
    let Some(task) = load(&mut tx, scope, id).await? else {
        return Ok(None);
    };
    let row: Option<OpRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {OP_COLUMNS} FROM legacy_operations o \
         LEFT JOIN task_deadlines d ON d.task_id = o.task_id WHERE o.task_id = $1"
    )))
    .bind(id.0)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(row.map(|r| legacy_task(task, r)))
}

pub(crate) async fn task_list(
    store: &PgStore,
    p: &LegacyTaskListParams,
) -> StoreResult<Page<LegacyTask>> {
    let mut conds = String::new();
    let mut n = 2;
    let mut next = || {
        n += 1;
        n
    };
    if p.operate_type.is_some() {
        conds.push_str(&format!(" AND o.operate_type = ${}", next()));
    }
    if !p.states.is_empty() {
        conds.push_str(&format!(" AND t.state = ANY(${}::TEXT[])", next()));
    }
    for (col, v) in [
        ("device_type", &p.device_type),
        ("model", &p.model),
        ("manufacturer_name", &p.manufacturer_name),
    ] {
        if v.is_some() {
            conds.push_str(&format!(" AND o.{col} = ${}", next()));
        }
    }
    if p.device_id.is_some() {
        conds.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM sub_tasks s WHERE s.task_id = o.task_id AND s.target = ${})",
            next()
        ));
    }
    let limit_at = next();
    let offset_at = next();
    let from = format!(
        "FROM legacy_operations o JOIN tasks t ON t.id = o.task_id \
         LEFT JOIN task_deadlines d ON d.task_id = o.task_id \
         WHERE o.project_id = $1 AND o.instance_id = $2{conds}"
    );
    let states: Vec<&str> = p.states.iter().map(|s| s.as_str()).collect();
    macro_rules! bind_all {
        ($q:expr) => {{
            let mut q = $q.bind(&p.scope.project_id).bind(&p.scope.instance_id);
            if let Some(v) = &p.operate_type {
                q = q.bind(v);
            }
            if !states.is_empty() {
                q = q.bind(&states);
            }
            for v in [&p.device_type, &p.model, &p.manufacturer_name]
                .into_iter()
                .flatten()
            {
                q = q.bind(v);
            }
            if let Some(v) = &p.device_id {
                q = q.bind(v);
            }
            q
        }};
    }
    let mut tx = begin_read(store).await?;
    let count: i64 = bind_all!(sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) {from}"
    ))))
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    let rows: Vec<OpRow> = bind_all!(sqlx::query_as::<_, OpRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {OP_COLUMNS} {from} ORDER BY o.task_id DESC LIMIT ${limit_at} OFFSET ${offset_at}"
    ))))
    .bind(i64::from(p.limit))
    .bind(i64::from(p.offset))
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        let task = load(&mut tx, &p.scope, Id(r.0))
            .await?
            .ok_or_else(|| corrupt(format!("legacy operation of a missing task {}", Id(r.0))))?;
        items.push(legacy_task(task, r));
    }
    tx.commit().await.map_err(db)?;
    Ok(Page { items, count })
}

pub(crate) const DEADLINES_DUE_SQL: &str = "SELECT task_id FROM task_deadlines \
     WHERE pending AND deadline_at <= $1 ORDER BY task_id LIMIT $2";

/// The sub-task states a deadline ends.
pub(crate) const UNFINISHED: [SubTaskState; 3] = [
    SubTaskState::Waiting,
    SubTaskState::RetryWaiting,
    SubTaskState::Processing,
];

/// Ends, as failed with `TIMEOUT`, the unfinished sub-tasks of `task_id` (whose row the
/// caller has locked); returns how many (from each state of [`UNFINISHED`]). Marks the
/// deadline done.
pub(crate) async fn expire_task(
    conn: &mut PgConnection,
    task_id: Id,
    now: Timestamp,
) -> StoreResult<[i64; 3]> {
    let mut moved = [0i64; 3];
    for (i, from) in UNFINISHED.into_iter().enumerate() {
        debug_assert!(
            from.can_transition(SubTaskState::Failed),
            "{from:?} -> Failed"
        );
        moved[i] = sqlx::query(
            "UPDATE sub_tasks SET state = 'failed', error_code = $1, \
             error_msg = 'The task window ended before the device finished.', \
             ready_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = $2 \
             WHERE task_id = $3 AND state = $4",
        )
        .bind(TIMEOUT_ERROR_CODE)
        .bind(now.0)
        .bind(task_id.0)
        .bind(from.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db)?
        .rows_affected() as i64;
    }
    let total: i64 = moved.iter().sum();
    sqlx::query(
        "UPDATE task_deadlines SET pending = FALSE, n_timed_out = n_timed_out + $1 \
         WHERE task_id = $2",
    )
    .bind(total)
    .bind(task_id.0)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(moved)
}
