//! The SQLite side of the shared store logic's seam (`taskd_store_sql::driver`): how a
//! statement is bound and run here, the write transaction, and the text of the
//! statements SQLite says differently.

use std::ops::DerefMut;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::{AssertSqlSafe, Sqlite, SqliteConnection};
use taskd_core::{Id, NewSubTask, Timestamp};
use taskd_store::StoreResult;
use taskd_store_sql::driver::{Arg, Conn, DialectSql, Driver, KeyLock, SqlRow, Stmt, Tx};

use crate::{SqliteDriver, db};
use taskd_store_sql::corrupt;
use taskd_store_sql::run::ResultWrite;

/// Binds `args` in order. A list goes in as JSON text, read by `json_each`.
fn bound<'q>(sql: &'q str, args: Vec<Arg<'q>>) -> Query<'q, Sqlite, SqliteArguments> {
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(v),
            Arg::OptInt(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::OptText(v) => query.bind(v),
            Arg::Bool(v) => query.bind(v),
            Arg::OptBool(v) => query.bind(v),
            // A slice of integers or strings always serialises.
            Arg::Ints(v) => query.bind(serde_json::to_string(v).unwrap_or_default()),
            Arg::Texts(v) => query.bind(serde_json::to_string(v).unwrap_or_default()),
        };
    }
    query
}

async fn execute(conn: &mut SqliteConnection, stmt: Stmt<'_>) -> StoreResult<u64> {
    let (sql, args) = stmt.into_parts();
    let done = bound(&sql, args).execute(conn).await.map_err(db)?;
    Ok(done.rows_affected())
}

async fn fetch_all<R: SqlRow>(conn: &mut SqliteConnection, stmt: Stmt<'_>) -> StoreResult<Vec<R>> {
    let (sql, args) = stmt.into_parts();
    let rows = bound(&sql, args).fetch_all(&mut *conn).await.map_err(db)?;
    rows.iter()
        .map(|row| R::from_row(row).map_err(db))
        .collect()
}

async fn fetch_optional<R: SqlRow>(
    conn: &mut SqliteConnection,
    stmt: Stmt<'_>,
) -> StoreResult<Option<R>> {
    let (sql, args) = stmt.into_parts();
    let row = bound(&sql, args)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
    row.map(|row| R::from_row(&row).map_err(db)).transpose()
}

/// A connection this backend runs the shared logic's statements on: a transaction
/// ([`SqliteTx`]), a pooled connection ([`SqliteRead`]), or one borrowed by backend code that still
/// runs its own sqlx statements (`SqliteConn(&mut *tx)`), so it can call the shared helpers.
pub struct SqliteConn<C>(pub(crate) C);

/// A write transaction.
pub type SqliteTx = SqliteConn<sqlx::Transaction<'static, Sqlite>>;

/// A pooled connection for one-statement reads.
pub type SqliteRead = SqliteConn<PoolConnection<Sqlite>>;

#[async_trait]
impl<C: DerefMut<Target = SqliteConnection> + Send> Conn for SqliteConn<C> {
    async fn execute(&mut self, stmt: Stmt<'_>) -> StoreResult<u64> {
        execute(&mut self.0, stmt).await
    }

    async fn fetch_all<R: SqlRow>(&mut self, stmt: Stmt<'_>) -> StoreResult<Vec<R>> {
        fetch_all(&mut self.0, stmt).await
    }

    async fn fetch_optional<R: SqlRow>(&mut self, stmt: Stmt<'_>) -> StoreResult<Option<R>> {
        fetch_optional(&mut self.0, stmt).await
    }
}

#[async_trait]
impl Tx for SqliteTx {
    async fn commit(self) -> StoreResult<()> {
        self.0.commit().await.map_err(db)
    }

    async fn rollback(self) -> StoreResult<()> {
        self.0.rollback().await.map_err(db)
    }
}

#[async_trait]
impl Driver for SqliteDriver {
    type Tx = SqliteTx;
    type Read = SqliteRead;

    async fn begin_write(&self) -> StoreResult<SqliteTx> {
        crate::begin_write(self).await.map(SqliteConn)
    }

    async fn begin_read(&self) -> StoreResult<SqliteTx> {
        crate::begin_read(self).await.map(SqliteConn)
    }

    async fn write_one(&self, stmt: Stmt<'_>) -> StoreResult<u64> {
        let mut conn = self.writer.acquire().await.map_err(db)?;
        execute(&mut conn, stmt).await
    }

    async fn read(&self) -> StoreResult<SqliteRead> {
        self.reader.acquire().await.map(SqliteConn).map_err(db)
    }

    async fn lock_key(_tx: &mut SqliteTx, _lock: KeyLock, _key: &[&str]) -> StoreResult<()> {
        // Every write transaction holds the database's one write lock already.
        Ok(())
    }

    async fn insert_sub_tasks(
        tx: &mut SqliteTx,
        task_id: Id,
        now: Timestamp,
        ready_at: Option<i64>,
        sub_tasks: &[NewSubTask],
    ) -> StoreResult<u64> {
        // One JSON array of [target, input] pairs; its index gives each its id.
        let rows: Vec<(&str, Option<&str>)> = sub_tasks
            .iter()
            .map(|s| (s.target.as_str(), s.input_json.as_deref()))
            .collect();
        let json = serde_json::to_string(&rows).map_err(|e| corrupt(e.to_string()))?;
        tx.execute(
            Stmt::new(
                "INSERT INTO sub_tasks \
                 (id, task_id, target, state, input_json, attempts, updated_at, ready_at) \
                 SELECT $1 + key + 1, $1, value ->> 0, 'waiting', value ->> 1, 0, $2, $4 \
                 FROM json_each($3)",
            )
            .bind(task_id.0)
            .bind(now.0)
            .bind(&*json)
            .bind(ready_at),
        )
        .await
    }

    async fn write_results(
        tx: &mut SqliteTx,
        now: Timestamp,
        results: &[ResultWrite],
    ) -> StoreResult<u64> {
        // One writer, rows in the page cache: a statement per row is cheap here.
        let mut changed = 0;
        for r in results {
            changed += tx
                .execute(
                    Stmt::new(
                        "UPDATE sub_tasks SET state = $1, \
                         output = CASE WHEN $1 = 'succeeded' THEN $2 ELSE COALESCE($2, output) END, \
                         error_code = $3, error_msg = $4, ready_at = $5, retries = $6, \
                         progress = CASE WHEN $1 = 'succeeded' THEN 100 ELSE progress END, \
                         lease_owner = NULL, lease_until = NULL, updated_at = $7 \
                         WHERE id = $8 AND state = 'processing' AND attempts = $9",
                    )
                    .bind(r.state.as_str())
                    .bind(&r.output)
                    .bind(&r.error_code)
                    .bind(&r.error_msg)
                    .bind(r.ready_at)
                    .bind(r.retries)
                    .bind(now.0)
                    .bind(r.id)
                    .bind(r.attempt),
                )
                .await?;
        }
        Ok(changed)
    }

    async fn notify_ready(_tx: &mut SqliteTx) -> StoreResult<()> {
        // One process: the engine wakes its own runner after the call returns.
        Ok(())
    }

    async fn notify_mail(_tx: &mut SqliteTx, _node_id: &str) -> StoreResult<()> {
        // One process, one node: nothing mails it but itself, and it polls.
        Ok(())
    }

    async fn check_writable(&self, now: Timestamp) -> StoreResult<()> {
        crate::health::check_writable(self, now).await
    }

    async fn close(&self) {
        SqliteDriver::close(self).await;
    }

    const FOR_SHARE: &'static str = "";

    const FOR_UPDATE: &'static str = "";

    fn in_list(param: usize) -> String {
        format!("IN (SELECT value FROM json_each(${param}))")
    }

    fn sql(which: DialectSql) -> &'static str {
        match which {
            DialectSql::CredentialList => {
                "SELECT access_key, secret_key, project_id, created_at, revoked_at \
                 FROM credentials ORDER BY created_at, rowid"
            }
            DialectSql::AttributesOfDevices => {
                "SELECT d.device_id, a.device_type, a.model, a.manufacturer_name \
                 FROM json_each($3) j \
                 JOIN devices d ON d.project_id = $1 AND d.instance_id = $2 \
                   AND d.device_id = j.value \
                 LEFT JOIN legacy_device_attributes a ON a.project_id = d.project_id \
                   AND a.instance_id = d.instance_id AND a.device_id = d.device_id \
                 ORDER BY j.key"
            }
            DialectSql::PurgePick => concat!(
                "SELECT ",
                taskd_store_sql::task_columns!(),
                " FROM tasks INDEXED BY tasks_finished \
                 WHERE state IN ('succeeded', 'failed', 'partially_succeeded', 'stopped') \
                 AND updated_at < $1 ORDER BY updated_at LIMIT $2"
            ),
            DialectSql::DeadlinesDue => {
                "SELECT task_id FROM task_deadlines \
                 INDEXED BY task_deadlines_due WHERE pending = 1 AND deadline_at <= $1 \
                 ORDER BY deadline_at LIMIT $2"
            }
            DialectSql::NextDue => {
                "SELECT MIN(t) FROM ( \
                 SELECT MIN(schedule_at) AS t FROM tasks WHERE runnable = 1 AND schedule_at > $1 \
                 UNION ALL SELECT MIN(ready_at) FROM sub_tasks WHERE state = 'retry_waiting' \
                 UNION ALL SELECT MIN(lease_until) FROM sub_tasks WHERE state = 'processing' \
                 UNION ALL SELECT MIN(deadline_at) FROM task_deadlines WHERE pending = 1)"
            }
            DialectSql::ClaimRunning => {
                "SELECT project_id, SUM(n_processing) FROM tasks \
                 WHERE n_processing > 0 GROUP BY project_id"
            }
            DialectSql::ClaimCandidates => {
                "SELECT id, project_id FROM tasks \
                 WHERE runnable = 1 AND (schedule_at IS NULL OR schedule_at <= $1) \
                 AND kind IN (SELECT value FROM json_each($2)) \
                 AND ($3 IS NULL OR project_id = $3) \
                 AND NOT EXISTS (SELECT 1 FROM task_deadlines d \
                                 WHERE d.task_id = tasks.id AND d.deadline_at <= $1) \
                 AND (window_start IS NULL \
                      OR (($5 - window_start + 1440) % 1440) \
                         < ((window_end - window_start + 1440) % 1440)) \
                 ORDER BY served_seq, id LIMIT $4"
            }
            DialectSql::NextServedSeq => {
                "SELECT COALESCE(MAX(served_seq), 0) + 1 FROM tasks WHERE runnable = 1"
            }
            DialectSql::ClaimRows => {
                "UPDATE sub_tasks SET state = 'processing', lease_owner = $1, lease_until = $2, \
                 attempts = attempts + 1, progress = NULL, started_at = $3, updated_at = $3 \
                 WHERE id IN (SELECT id FROM sub_tasks INDEXED BY sub_tasks_ready \
                              WHERE task_id = $4 AND state = 'waiting' \
                              AND ready_at IS NOT NULL AND ready_at <= $3 ORDER BY id LIMIT $5) \
                 AND state = 'waiting' \
                 RETURNING id, target, input_json, attempts"
            }
            DialectSql::HasReady => {
                "SELECT EXISTS (SELECT 1 FROM sub_tasks INDEXED BY sub_tasks_ready \
                 WHERE task_id = $1 AND state = 'waiting' AND ready_at IS NOT NULL)"
            }
        }
    }
}
