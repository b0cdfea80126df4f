//! The PostgreSQL side of the shared store logic's seam (`taskd_store_sql::driver`): how
//! a statement is bound and run here, the write transaction, the advisory locks, and the
//! text of the statements PostgreSQL says differently.

use std::ops::DerefMut;
use std::sync::Arc;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, PgConnection, Postgres};
use taskd_core::{Id, NewSubTask, Timestamp};
use taskd_store::{StoreError, StoreResult};
use taskd_store_sql::driver::{Arg, Conn, DialectSql, Driver, KeyLock, SqlRow, Stmt, Tx};
use tokio::sync::Notify;

use crate::{PgDriver, db};
use taskd_store_sql::run::ResultWrite;

/// Binds `args` in order. A list goes in as an array, for `= ANY($n)`.
fn bound<'q>(sql: &'q str, args: Vec<Arg<'q>>) -> Query<'q, Postgres, PgArguments> {
    let mut query = sqlx::query(AssertSqlSafe(sql));
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(v),
            Arg::OptInt(v) => query.bind(v),
            Arg::Text(v) => query.bind(v),
            Arg::OptText(v) => query.bind(v),
            Arg::Bool(v) => query.bind(v),
            Arg::OptBool(v) => query.bind(v),
            Arg::Ints(v) => query.bind(v),
            Arg::Texts(v) => query.bind(v),
        };
    }
    query
}

async fn execute(conn: &mut PgConnection, stmt: Stmt<'_>) -> StoreResult<u64> {
    let (sql, args) = stmt.into_parts();
    let done = bound(&sql, args).execute(conn).await.map_err(db)?;
    Ok(done.rows_affected())
}

async fn fetch_all<R: SqlRow>(conn: &mut PgConnection, stmt: Stmt<'_>) -> StoreResult<Vec<R>> {
    let (sql, args) = stmt.into_parts();
    let rows = bound(&sql, args).fetch_all(&mut *conn).await.map_err(db)?;
    rows.iter()
        .map(|row| R::from_row(row).map_err(db))
        .collect()
}

async fn fetch_optional<R: SqlRow>(
    conn: &mut PgConnection,
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
/// ([`PgTx`]), a pooled connection ([`PgRead`]), or one borrowed by backend code that still
/// runs its own sqlx statements (`PgConn(&mut *tx)`), so it can call the shared helpers.
pub struct PgConn<C>(pub(crate) C);

/// A write transaction.
pub type PgTx = PgConn<sqlx::Transaction<'static, Postgres>>;

/// A pooled connection for one-statement reads.
pub type PgRead = PgConn<PoolConnection<Postgres>>;

#[async_trait]
impl<C: DerefMut<Target = PgConnection> + Send> Conn for PgConn<C> {
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
impl Tx for PgTx {
    async fn commit(self) -> StoreResult<()> {
        self.0.commit().await.map_err(db)
    }

    async fn rollback(self) -> StoreResult<()> {
        self.0.rollback().await.map_err(db)
    }
}

/// The first key of each class of advisory lock (the second is a hash of the key).
const fn lock_class(lock: KeyLock) -> i32 {
    match lock {
        // Spells "tskf".
        KeyLock::Files => 0x7473_6b66,
        // Spells "dgrp".
        KeyLock::Groups => 0x6467_7270,
        // Spells "otap".
        KeyLock::Packages => 0x6f74_6170,
        // Spells "tskc".
        KeyLock::Claims => 0x7473_6b63,
    }
}

#[async_trait]
impl Driver for PgDriver {
    type Tx = PgTx;
    type Read = PgRead;

    async fn begin_write(&self) -> StoreResult<PgTx> {
        crate::begin_write(self).await.map(PgConn)
    }

    async fn begin_read(&self) -> StoreResult<PgTx> {
        crate::begin_read(self).await.map(PgConn)
    }

    async fn write_one(&self, stmt: Stmt<'_>) -> StoreResult<u64> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        execute(&mut conn, stmt).await
    }

    async fn read(&self) -> StoreResult<PgRead> {
        self.pool.acquire().await.map(PgConn).map_err(db)
    }

    async fn lock_key(tx: &mut PgTx, lock: KeyLock, key: &[&str]) -> StoreResult<()> {
        // Held until the transaction ends, on every node. A hash collision only makes two
        // keys take turns. The parts are joined with a separator no key holds.
        let key = key.join("\u{1f}");
        tx.execute(
            Stmt::new("SELECT pg_advisory_xact_lock(CAST($1 AS INTEGER), hashtext($2))")
                .bind(i64::from(lock_class(lock)))
                .bind(&*key),
        )
        .await?;
        Ok(())
    }

    async fn insert_sub_tasks(
        tx: &mut PgTx,
        task_id: Id,
        now: Timestamp,
        ready_at: Option<i64>,
        sub_tasks: &[NewSubTask],
    ) -> StoreResult<u64> {
        // Two arrays; the ordinality gives each its id, in target order.
        let targets: Vec<&str> = sub_tasks.iter().map(|s| s.target.as_str()).collect();
        let inputs: Vec<Option<&str>> = sub_tasks.iter().map(|s| s.input_json.as_deref()).collect();
        let done = sqlx::query(
            "INSERT INTO sub_tasks \
             (id, task_id, target, state, input_json, attempts, updated_at, ready_at) \
             SELECT $1 + ord, $1, t, 'waiting', i, 0, $2, $5 \
             FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS u(t, i, ord)",
        )
        .bind(task_id.0)
        .bind(now.0)
        .bind(targets)
        .bind(inputs)
        .bind(ready_at)
        .execute(&mut *tx.0)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn write_results(
        tx: &mut PgTx,
        now: Timestamp,
        results: &[ResultWrite],
    ) -> StoreResult<u64> {
        // One statement for the batch, column by column (a statement per row was most of
        // a report's time).
        let ids: Vec<i64> = results.iter().map(|r| r.id).collect();
        let states: Vec<&str> = results.iter().map(|r| r.state.as_str()).collect();
        let outputs: Vec<Option<&str>> = results.iter().map(|r| r.output.as_deref()).collect();
        let codes: Vec<Option<&str>> = results.iter().map(|r| r.error_code.as_deref()).collect();
        let msgs: Vec<Option<&str>> = results.iter().map(|r| r.error_msg.as_deref()).collect();
        let ready: Vec<Option<i64>> = results.iter().map(|r| r.ready_at).collect();
        let retries: Vec<i64> = results.iter().map(|r| r.retries).collect();
        let attempts: Vec<i64> = results.iter().map(|r| r.attempt).collect();
        let done = sqlx::query(
            "UPDATE sub_tasks s SET state = u.state, \
             output = CASE WHEN u.state = 'succeeded' THEN u.output \
                      ELSE COALESCE(u.output, s.output) END, \
             error_code = u.error_code, error_msg = u.error_msg, ready_at = u.ready_at, \
             retries = u.retries, \
             progress = CASE WHEN u.state = 'succeeded' THEN 100 ELSE s.progress END, \
             lease_owner = NULL, lease_until = NULL, updated_at = $1 \
             FROM unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], \
                         $7::BIGINT[], $8::BIGINT[], $9::BIGINT[]) \
                  AS u(id, state, output, error_code, error_msg, ready_at, retries, attempts) \
             WHERE s.id = u.id AND s.state = 'processing' AND s.attempts = u.attempts",
        )
        .bind(now.0)
        .bind(ids)
        .bind(states)
        .bind(outputs)
        .bind(codes)
        .bind(msgs)
        .bind(ready)
        .bind(retries)
        .bind(attempts)
        .execute(&mut *tx.0)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn notify_ready(tx: &mut PgTx) -> StoreResult<()> {
        crate::wakeups::notify_ready(&mut tx.0).await
    }

    async fn check_writable(&self, now: Timestamp) -> StoreResult<()> {
        // One statement, one transaction of its own, on a connection of the pool every
        // write uses; the database's disk is not ours to measure.
        let done = self
            .write_one(Stmt::new("UPDATE health SET checked_at = $1 WHERE id = 1").bind(now.0))
            .await?;
        if done != 1 {
            return Err(StoreError::Corrupt("the health row is missing".into()));
        }
        Ok(())
    }

    fn wakeups(&self) -> Option<Arc<Notify>> {
        Some(self.ready.clone())
    }

    async fn notify_mail(tx: &mut PgTx, node_id: &str) -> StoreResult<()> {
        crate::wakeups::notify_mail(&mut tx.0, node_id).await
    }

    fn mail_wakeups(&self) -> Option<Arc<Notify>> {
        Some(self.mail.clone())
    }

    async fn close(&self) {
        PgDriver::close(self).await;
    }

    const FOR_SHARE: &'static str = " FOR SHARE";

    const FOR_UPDATE: &'static str = " FOR UPDATE";

    fn in_list(param: usize) -> String {
        format!("= ANY(${param})")
    }

    fn sql(which: DialectSql) -> &'static str {
        match which {
            DialectSql::CredentialList => {
                "SELECT access_key, secret_key, project_id, created_at, revoked_at \
                 FROM credentials ORDER BY created_at, seq"
            }
            DialectSql::AttributesOfDevices => {
                "SELECT d.device_id, a.device_type, a.model, a.manufacturer_name \
                 FROM unnest($3::TEXT[]) WITH ORDINALITY AS j (device_id, ord) \
                 JOIN devices d ON d.project_id = $1 AND d.instance_id = $2 \
                   AND d.device_id = j.device_id COLLATE \"C\" \
                 LEFT JOIN legacy_device_attributes a ON a.project_id = d.project_id \
                   AND a.instance_id = d.instance_id AND a.device_id = d.device_id \
                 ORDER BY j.ord"
            }
            DialectSql::PurgePick => concat!(
                "SELECT ",
                taskd_store_sql::task_columns!(),
                " FROM tasks \
                 WHERE state IN ('succeeded', 'failed', 'partially_succeeded', 'stopped') \
                 AND updated_at < $1 ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED"
            ),
            DialectSql::DeadlinesDue => {
                "SELECT task_id FROM task_deadlines \
                 WHERE pending AND deadline_at <= $1 ORDER BY task_id LIMIT $2"
            }
            DialectSql::NextDue => {
                "SELECT LEAST( \
                 (SELECT MIN(schedule_at) FROM tasks WHERE runnable AND schedule_at > $1), \
                 (SELECT MIN(ready_at) FROM sub_tasks WHERE state = 'retry_waiting'), \
                 (SELECT MIN(lease_until) FROM sub_tasks WHERE state = 'processing'), \
                 (SELECT MIN(deadline_at) FROM task_deadlines WHERE pending))"
            }
            DialectSql::ClaimRunning => {
                "SELECT project_id, SUM(n_processing)::BIGINT FROM tasks \
                 WHERE n_processing > 0 GROUP BY project_id"
            }
            DialectSql::ClaimCandidates => {
                "SELECT id, project_id FROM tasks \
                 WHERE runnable AND (schedule_at IS NULL OR schedule_at <= $1) \
                 AND kind = ANY($2) AND ($3::TEXT IS NULL OR project_id = $3) \
                 AND NOT EXISTS (SELECT 1 FROM task_deadlines d \
                                 WHERE d.task_id = tasks.id AND d.deadline_at <= $1) \
                 AND (window_start IS NULL \
                      OR (($5::BIGINT - window_start + 1440) % 1440) \
                         < ((window_end - window_start + 1440) % 1440)) \
                 ORDER BY served_seq, id LIMIT $4 FOR UPDATE SKIP LOCKED"
            }
            DialectSql::NextServedSeq => {
                "SELECT COALESCE(MAX(served_seq), 0) + 1 FROM tasks WHERE runnable"
            }
            DialectSql::ClaimRows => {
                "WITH picked AS MATERIALIZED ( \
                     SELECT id FROM sub_tasks WHERE task_id = $4 AND state = 'waiting' \
                     AND ready_at IS NOT NULL AND ready_at <= $3 ORDER BY id LIMIT $5 \
                     FOR UPDATE SKIP LOCKED) \
                 UPDATE sub_tasks s SET state = 'processing', lease_owner = $1, \
                     lease_until = $2, attempts = s.attempts + 1, progress = NULL, \
                     started_at = $3, updated_at = $3 \
                 FROM picked WHERE s.id = picked.id AND s.state = 'waiting' \
                 RETURNING s.id, s.target, s.input_json, s.attempts"
            }
            DialectSql::HasReady => {
                "SELECT EXISTS (SELECT 1 FROM sub_tasks \
                 WHERE task_id = $1 AND state = 'waiting' AND ready_at IS NOT NULL)"
            }
        }
    }
}
