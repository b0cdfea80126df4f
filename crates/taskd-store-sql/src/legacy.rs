//! The legacy northbound API's tables: apps, tokens, the flow-control window, device
//! attributes and legacy operations as they are read back.

use taskd_core::{Id, SubTaskState, Task, TaskScope, Timestamp};
use taskd_store::{
    DeviceAttributes, LegacyApp, LegacyOperation, LegacyTask, LegacyTaskListParams, LegacyTokens,
    Page, StoreError, StoreResult, TIMEOUT_ERROR_CODE,
};

use crate::corrupt;
use crate::driver::{Arg, Conn, DialectSql, Driver, Stmt, Tx};
use crate::tasks::load;

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

pub async fn app_put<D: Driver>(driver: &D, app: &LegacyApp) -> StoreResult<()> {
    let mut tx = driver.begin_write().await?;
    tx.execute(
        Stmt::new(
            "INSERT INTO projects (project_id, created_at) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&app.project_id)
        .bind(app.created_at.0),
    )
    .await?;
    let owner: Option<(String,)> = tx
        .fetch_optional(
            Stmt::assembled(format!(
                "SELECT project_id FROM legacy_apps WHERE app_id = $1{}",
                D::FOR_UPDATE
            ))
            .bind(&app.app_id),
        )
        .await?;
    if let Some((owner,)) = owner
        && owner != app.project_id
    {
        tx.rollback().await?;
        return Err(StoreError::Conflict(
            "app id belongs to another project".to_owned(),
        ));
    }
    tx.execute(
        Stmt::new(
            "INSERT INTO legacy_apps (app_id, project_id, secret_hash, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (app_id) DO UPDATE \
             SET secret_hash = excluded.secret_hash, revoked_at = excluded.revoked_at",
        )
        .bind(&app.app_id)
        .bind(&app.project_id)
        .bind(&app.secret_hash)
        .bind(app.created_at.0)
        .bind(app.revoked_at.map(|t| t.0)),
    )
    .await?;
    // A new secret ends the tokens issued under the old one.
    tx.execute(Stmt::new("DELETE FROM legacy_tokens WHERE app_id = $1").bind(&app.app_id))
        .await?;
    tx.commit().await
}

pub async fn app_get<D: Driver>(driver: &D, app_id: &str) -> StoreResult<Option<LegacyApp>> {
    let row: Option<AppRow> = driver
        .read()
        .await?
        .fetch_optional(
            Stmt::new(
                "SELECT app_id, project_id, secret_hash, created_at, revoked_at \
                 FROM legacy_apps WHERE app_id = $1",
            )
            .bind(app_id),
        )
        .await?;
    Ok(row.map(app_from))
}

pub async fn app_list<D: Driver>(driver: &D) -> StoreResult<Vec<LegacyApp>> {
    let rows: Vec<AppRow> = driver
        .read()
        .await?
        .fetch_all(Stmt::new(
            "SELECT app_id, project_id, secret_hash, created_at, revoked_at FROM legacy_apps \
             ORDER BY created_at, app_id",
        ))
        .await?;
    Ok(rows.into_iter().map(app_from).collect())
}

pub async fn app_revoke<D: Driver>(driver: &D, app_id: &str, now: Timestamp) -> StoreResult<bool> {
    let mut tx = driver.begin_write().await?;
    let n = tx
        .execute(
            Stmt::new(
                "UPDATE legacy_apps SET revoked_at = $1 \
                 WHERE app_id = $2 AND revoked_at IS NULL",
            )
            .bind(now.0)
            .bind(app_id),
        )
        .await?;
    tx.execute(Stmt::new("DELETE FROM legacy_tokens WHERE app_id = $1").bind(app_id))
        .await?;
    tx.commit().await?;
    Ok(n == 1)
}

pub async fn tokens_put<D: Driver>(driver: &D, t: &LegacyTokens) -> StoreResult<bool> {
    let n = driver
        .write_one(
            Stmt::new(
                "INSERT INTO legacy_tokens (app_id, access_hash, access_expires_at, \
                 refresh_hash, refresh_expires_at, issued_at) \
                 SELECT $1, $2, $3, $4, $5, $6 FROM legacy_apps \
                 WHERE app_id = $1 AND revoked_at IS NULL \
                 ON CONFLICT (app_id) DO UPDATE SET access_hash = excluded.access_hash, \
                 access_expires_at = excluded.access_expires_at, \
                 refresh_hash = excluded.refresh_hash, \
                 refresh_expires_at = excluded.refresh_expires_at, \
                 issued_at = excluded.issued_at",
            )
            .bind(&t.app_id)
            .bind(&t.access_hash)
            .bind(t.access_expires_at.0)
            .bind(&t.refresh_hash)
            .bind(t.refresh_expires_at.0)
            .bind(t.issued_at.0),
        )
        .await?;
    Ok(n == 1)
}

pub async fn tokens_get<D: Driver>(driver: &D, app_id: &str) -> StoreResult<Option<LegacyTokens>> {
    let row: Option<(String, String, i64, String, i64, i64)> = driver
        .read()
        .await?
        .fetch_optional(
            Stmt::new(
                "SELECT app_id, access_hash, access_expires_at, refresh_hash, \
                 refresh_expires_at, issued_at FROM legacy_tokens WHERE app_id = $1",
            )
            .bind(app_id),
        )
        .await?;
    Ok(row.map(|r| LegacyTokens {
        app_id: r.0,
        access_hash: r.1,
        access_expires_at: Timestamp(r.2),
        refresh_hash: r.3,
        refresh_expires_at: Timestamp(r.4),
        issued_at: Timestamp(r.5),
    }))
}

pub async fn rate_hit<D: Driver>(
    driver: &D,
    app_id: &str,
    window_start: Timestamp,
) -> StoreResult<i64> {
    let mut tx = driver.begin_write().await?;
    tx.execute(
        Stmt::new("DELETE FROM legacy_rate WHERE app_id = $1 AND window_start < $2")
            .bind(app_id)
            .bind(window_start.0),
    )
    .await?;
    let calls = tx
        .fetch_int(
            Stmt::new(
                "INSERT INTO legacy_rate (app_id, window_start, calls) VALUES ($1, $2, 1) \
                 ON CONFLICT (app_id, window_start) DO UPDATE \
                 SET calls = legacy_rate.calls + 1 RETURNING calls",
            )
            .bind(app_id)
            .bind(window_start.0),
        )
        .await?;
    tx.commit().await?;
    Ok(calls)
}

pub async fn attributes_put<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_id: &str,
    a: &DeviceAttributes,
) -> StoreResult<bool> {
    let n = driver
        .write_one(
            Stmt::new(
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
            .bind(&a.manufacturer_name),
        )
        .await?;
    Ok(n == 1)
}

pub async fn attributes_get<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    device_ids: &[String],
) -> StoreResult<Vec<(String, DeviceAttributes)>> {
    if device_ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = device_ids.iter().map(String::as_str).collect();
    let rows: Vec<AttrRow> = driver
        .read()
        .await?
        .fetch_all(
            Stmt::new(D::sql(DialectSql::AttributesOfDevices))
                .bind(&scope.project_id)
                .bind(&scope.instance_id)
                .bind(&ids),
        )
        .await?;
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

pub async fn task_get<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    id: Id,
) -> StoreResult<Option<LegacyTask>> {
    let mut tx = driver.begin_read().await?;
    let Some(task) = load(&mut tx, scope, id).await? else {
        return tx.give_up(None).await;
    };
    let row: Option<OpRow> = tx
        .fetch_optional(
            Stmt::assembled(format!(
                "SELECT {OP_COLUMNS} FROM legacy_operations o \
                 LEFT JOIN task_deadlines d ON d.task_id = o.task_id WHERE o.task_id = $1"
            ))
            .bind(id.0),
        )
        .await?;
    tx.commit().await?;
    Ok(row.map(|r| legacy_task(task, r)))
}

pub async fn task_list<D: Driver>(
    driver: &D,
    p: &LegacyTaskListParams,
) -> StoreResult<Page<LegacyTask>> {
    // The conditions and their arguments, built together so their numbers agree.
    let mut conds = String::new();
    let mut args: Vec<Arg<'_>> = vec![
        Arg::Text(&p.scope.project_id),
        Arg::Text(&p.scope.instance_id),
    ];
    let states: Vec<&str> = p.states.iter().map(|s| s.as_str()).collect();
    if let Some(v) = &p.operate_type {
        args.push(Arg::Text(v));
        conds.push_str(&format!(" AND o.operate_type = ${}", args.len()));
    }
    if !states.is_empty() {
        args.push(Arg::Texts(&states));
        conds.push_str(&format!(" AND t.state {}", D::in_list(args.len())));
    }
    for (col, v) in [
        ("device_type", &p.device_type),
        ("model", &p.model),
        ("manufacturer_name", &p.manufacturer_name),
    ] {
        if let Some(v) = v {
            args.push(Arg::Text(v));
            conds.push_str(&format!(" AND o.{col} = ${}", args.len()));
        }
    }
    if let Some(v) = &p.device_id {
        args.push(Arg::Text(v));
        conds.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM sub_tasks s WHERE s.task_id = o.task_id AND s.target = ${})",
            args.len()
        ));
    }
    let from = format!(
        "FROM legacy_operations o JOIN tasks t ON t.id = o.task_id \
         LEFT JOIN task_deadlines d ON d.task_id = o.task_id \
         WHERE o.project_id = $1 AND o.instance_id = $2{conds}"
    );
    let with_args = |sql: String, extra: &[Arg<'static>]| {
        args.iter()
            .chain(extra)
            .fold(Stmt::assembled(sql), |stmt, arg| stmt.bind(*arg))
    };
    let page_sql = format!(
        "SELECT {OP_COLUMNS} {from} ORDER BY o.task_id DESC LIMIT ${} OFFSET ${}",
        args.len() + 1,
        args.len() + 2
    );

    let mut tx = driver.begin_read().await?;
    let count = tx
        .fetch_int(with_args(format!("SELECT COUNT(*) {from}"), &[]))
        .await?;
    let rows: Vec<OpRow> = tx
        .fetch_all(with_args(
            page_sql,
            &[Arg::Int(i64::from(p.limit)), Arg::Int(i64::from(p.offset))],
        ))
        .await?;
    let mut items = Vec::with_capacity(rows.len());
    for r in rows {
        let task = load(&mut tx, &p.scope, Id(r.0))
            .await?
            .ok_or_else(|| corrupt(format!("legacy operation of a missing task {}", Id(r.0))))?;
        items.push(legacy_task(task, r));
    }
    tx.commit().await?;
    Ok(Page { items, count })
}

/// Records a legacy operation (and its deadline) with its task, inside the insert.
pub async fn insert_operation<C: Conn>(
    conn: &mut C,
    task_id: Id,
    scope: &TaskScope,
    op: &LegacyOperation,
) -> StoreResult<()> {
    conn.execute(
        Stmt::new(
            "INSERT INTO legacy_operations (task_id, project_id, instance_id, operate_type, \
             device_type, model, manufacturer_name) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(task_id.0)
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(&op.operate_type)
        .bind(&op.device_type)
        .bind(&op.model)
        .bind(&op.manufacturer_name),
    )
    .await?;
    if let Some(deadline) = op.deadline_at {
        conn.execute(
            Stmt::new(
                "INSERT INTO task_deadlines (task_id, deadline_at, pending, n_timed_out) \
                 VALUES ($1, $2, TRUE, 0)",
            )
            .bind(task_id.0)
            .bind(deadline.0),
        )
        .await?;
    }
    Ok(())
}

/// The sub-task states a deadline ends.
pub const UNFINISHED: [SubTaskState; 3] = [
    SubTaskState::Waiting,
    SubTaskState::RetryWaiting,
    SubTaskState::Processing,
];

/// Ends, as failed with `TIMEOUT`, the unfinished sub-tasks of `task_id` (whose row the
/// caller has locked); returns how many (from each state of [`UNFINISHED`]). Marks the
/// deadline done.
pub async fn expire_task<C: Conn>(
    conn: &mut C,
    task_id: Id,
    now: Timestamp,
) -> StoreResult<[i64; 3]> {
    let mut moved = [0i64; 3];
    for (i, from) in UNFINISHED.into_iter().enumerate() {
        debug_assert!(
            from.can_transition(SubTaskState::Failed),
            "{from:?} -> Failed"
        );
        moved[i] = conn
            .execute(
                Stmt::new(
                    "UPDATE sub_tasks SET state = 'failed', error_code = $1, \
                     error_msg = 'The task window ended before the device finished.', \
                     ready_at = NULL, lease_owner = NULL, lease_until = NULL, updated_at = $2 \
                     WHERE task_id = $3 AND state = $4",
                )
                .bind(TIMEOUT_ERROR_CODE)
                .bind(now.0)
                .bind(task_id.0)
                .bind(from.as_str()),
            )
            .await? as i64;
    }
    let total: i64 = moved.iter().sum();
    conn.execute(
        Stmt::new(
            "UPDATE task_deadlines SET pending = FALSE, n_timed_out = n_timed_out + $1 \
             WHERE task_id = $2",
        )
        .bind(total)
        .bind(task_id.0),
    )
    .await?;
    Ok(moved)
}
