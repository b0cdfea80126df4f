//! The embedded storage backend of taskd: [`SqliteStore`], a [`taskd_store::Store`] on
//! one SQLite file (`<data_dir>/taskd.sqlite3`) through sqlx.
//!
//! Layout of the crate:
//! * `lib.rs`: opening, closing, the two connection pools and the `Store` impl, which
//!   applies the rule on text (`taskd_store::text`) and dispatches;
//! * `health`: readiness (`Store::check_writable`);
//! * `rows` (the `taskd-store-sql` crate, shared with the other SQL backend): the row
//!   types and their mapping back into `taskd_core` types;
//! * `tasks`: task insert, read, list and delete, sub-task listing, the task counts;
//! * `control`: stop / retry / confirm;
//! * `run`: claims, heartbeats, results and maintenance (the engine's runner);
//! * `credentials`, `files`: the small tables;
//! * `devices`: the device registry (devices, groups, members) and the registry effects.
//!
//! How it uses SQLite:
//! * WAL journal, `synchronous = NORMAL`, foreign keys on, a 5 s busy timeout. Readers
//!   never block the writer and vice versa, so the CLI can open the same file while the
//!   server runs.
//! * One **writer** pool with a single connection: SQLite serialises writers anyway, and
//!   queueing them in the pool instead of in SQLite avoids `SQLITE_BUSY`. Every write is a
//!   `BEGIN IMMEDIATE` transaction, which takes the write lock up front, so a transaction
//!   never fails half-way because another process (the CLI) started writing.
//! * A **reader** pool of a few connections. Reads that issue several statements (a page
//!   and its count) run in one deferred transaction, i.e. on one snapshot.
//! * The schema lives in `migrations/`, applied by `sqlx::migrate!` on open.
//!
//! Architecture invariants (see also the rules in `taskd_store`):
//! * a state write is guarded by the state it expects (`WHERE ... AND state = ?`) and
//!   the new state comes from the tables in `taskd_core::state`;
//! * progress counters (on the task row) and `task_counts` change in the same
//!   transaction as the rows they count; nothing ever counts rows to answer a request.

mod bench_seed;
mod control;
mod devices;
mod driver;
#[cfg(feature = "fault-injection")]
mod fault;
mod health;
mod legacy;
mod run;
/// Row types shared with the other SQL backend.
use taskd_store_sql as rows;
mod tasks;
use taskd_store_sql::{credentials, files, operations};

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use taskd_core::{
    Credential, Device, DeviceGroup, DeviceUpdate, Id, NewDevice, NewDeviceGroup, NewTaskFile,
    TaskScope, Timestamp,
};
use taskd_store::text::{self, StoredText};
use taskd_store::{
    ClaimParams, ClaimedSubTask, DeviceAttributes, DeviceListParams, FileInsertOutcome,
    GroupListParams, HeartbeatParams, LegacyApp, LegacyOperation, LegacyTask, LegacyTaskListParams,
    LegacyTokens, MaintenanceReport, Page, RegistryRefusal, ReportOutcome, ReportParams, Store,
    StoreError, StoreResult, SubTaskListParams, TaskControlOutcome, TaskControlParams,
    TaskDeleteOutcome, TaskFileContent, TaskInsertParams, TaskListParams,
};

/// The database file inside the data directory.
pub const DB_FILE_NAME: &str = "taskd.sqlite3";

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const READER_CONNECTIONS: u32 = 4;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A [`Store`] on one SQLite file. Cheap to clone (the pools are shared).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: every write transaction queues here.
    writer: SqlitePool,
    /// Read-only use; in memory this is the writer pool itself (one database).
    reader: SqlitePool,
    /// Where the file lives (`None` in memory), for the free space readiness wants.
    data_dir: Option<std::sync::Arc<Path>>,
    /// The writer's `max_page_count` (0: SQLite's own), set again on every writer
    /// connection the pool opens, as a full disk stays full across reconnects.
    #[cfg(feature = "fault-injection")]
    page_limit: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

impl SqliteStore {
    /// Opens (creating if needed) `<data_dir>/taskd.sqlite3` and brings its schema up to
    /// date. Several stores (processes) may open the same directory at once.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Backend(Box::new(e)))?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join(DB_FILE_NAME))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);

        #[cfg(feature = "fault-injection")]
        let page_limit = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let writer = pool_options(1).after_release(|conn, _| Box::pin(leave_clean(conn)));
        #[cfg(feature = "fault-injection")]
        let writer = fault::apply_page_limit(writer, page_limit.clone());
        let writer = writer.connect_with(options.clone()).await.map_err(db)?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        let reader = pool_options(READER_CONNECTIONS)
            .after_release(|conn, _| Box::pin(leave_clean(conn)))
            .connect_with(options)
            .await
            .map_err(db)?;
        tracing::debug!(dir = %data_dir.display(), "opened sqlite store");
        Ok(SqliteStore {
            writer,
            reader,
            data_dir: Some(data_dir.into()),
            #[cfg(feature = "fault-injection")]
            page_limit,
        })
    }

    /// A private in-memory database, for tests of other layers. It lives as long as the
    /// store (one connection, shared by reads and writes), so unlike a file store it
    /// cannot replace a connection a failed transaction left unusable (`leave_clean`).
    pub async fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(db)?
            .foreign_keys(true);
        // The database dies with its connection, so the pool must never drop it.
        let pool = pool_options(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(SqliteStore {
            writer: pool.clone(),
            reader: pool,
            data_dir: None,
            #[cfg(feature = "fault-injection")]
            page_limit: Default::default(),
        })
    }

    /// Graceful shutdown: waits for the connections in use, folds the WAL back into the
    /// database file and closes both pools. Calls after this fail with a backend error.
    pub async fn close(&self) {
        self.reader.close().await;
        // In memory the reader is the writer, already closed; there is no WAL either.
        if !self.writer.is_closed()
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.writer)
                .await
        {
            tracing::warn!(error = %e, "WAL checkpoint on close failed");
        }
        self.writer.close().await;
    }
}

fn pool_options(max_connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        // A local file can't drop a connection; skip the ping before every use.
        .test_before_acquire(false)
}

/// Whether a connection coming back to its pool may be used again: not when it is still
/// inside a transaction. When a statement or the `COMMIT` fails with `SQLITE_FULL` (or an
/// I/O error), SQLite may already have rolled the transaction back; the `ROLLBACK` sqlx
/// then queues fails, and its count of open transactions stays at one, so every later
/// `BEGIN IMMEDIATE` on the connection would be refused ("begin_with at non-zero
/// transaction depth") until a restart. Such a connection is closed instead, and the pool
/// opens a fresh one for the next write.
async fn leave_clean(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // A dropped transaction queued its ROLLBACK; this round trip waits for it to run.
    conn.ping().await?;
    if conn.is_in_transaction() {
        tracing::warn!("a failed transaction could not be rolled back; reopening the connection");
        return Ok(false);
    }
    Ok(true)
}

/// Maps a sqlx error: unique-key violations are conflicts, everything else is the backend's.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        return StoreError::Conflict(d.message().to_owned());
    }
    StoreError::Backend(Box::new(e))
}

/// `BEGIN IMMEDIATE` on the writer: the write lock is taken before anything is read.
pub(crate) async fn begin_write(
    store: &SqliteStore,
) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
    store.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db)
}

/// A deferred transaction on a reader: several statements on one snapshot.
pub(crate) async fn begin_read(
    store: &SqliteStore,
) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
    store.reader.begin().await.map_err(db)
}

impl SqliteStore {
    /// A group membership change whose group or device cannot exist (a NUL in its id):
    /// the refusal the backend would give, group first.
    async fn member_finds_nothing(
        &self,
        scope: &TaskScope,
        group_id: &str,
        device_id: &str,
    ) -> StoreResult<Option<RegistryRefusal>> {
        if !text::scope_finds_nothing(scope, [group_id, device_id]) {
            return Ok(None);
        }
        if text::scope_finds_nothing(scope, [group_id])
            || self.group_get(scope, group_id).await?.is_none()
        {
            return Ok(Some(RegistryRefusal::GroupNotFound));
        }
        Ok(Some(RegistryRefusal::DeviceNotFound))
    }
}

// Every call first applies the one rule on text (`taskd_store::text`): text with a NUL
// is never written, and a lookup by it finds nothing.
#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn check_writable(&self, now: Timestamp) -> StoreResult<()> {
        health::check_writable(self, now).await
    }

    async fn project_ensure(&self, project_id: &str, now: Timestamp) -> StoreResult<()> {
        text::check("project_id", project_id)?;
        credentials::project_ensure(self, project_id, now).await
    }

    async fn credential_put(&self, credential: &Credential) -> StoreResult<()> {
        credential.check_text()?;
        credentials::put(self, credential).await
    }

    async fn credential_get(&self, access_key: &str) -> StoreResult<Option<Credential>> {
        if text::finds_nothing([access_key]) {
            return Ok(None);
        }
        credentials::get(self, access_key).await
    }

    async fn credential_list(&self) -> StoreResult<Vec<Credential>> {
        credentials::list(self).await
    }

    async fn credential_revoke(&self, access_key: &str, now: Timestamp) -> StoreResult<bool> {
        if text::finds_nothing([access_key]) {
            return Ok(false);
        }
        credentials::revoke(self, access_key, now).await
    }

    async fn task_insert(&self, params: TaskInsertParams) -> StoreResult<taskd_core::Task> {
        params.check_text()?;
        tasks::insert(self, params).await
    }

    async fn task_get(&self, scope: &TaskScope, id: Id) -> StoreResult<Option<taskd_core::Task>> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(None);
        }
        tasks::get(self, scope, id).await
    }

    async fn task_list(&self, params: &TaskListParams) -> StoreResult<Page<taskd_core::Task>> {
        let f = &params.filter;
        if text::scope_finds_nothing(
            &params.scope,
            [&f.app_id, &f.kind]
                .into_iter()
                .flatten()
                .map(String::as_str),
        ) {
            return Ok(Page::empty());
        }
        tasks::list(self, params).await
    }

    async fn sub_task_list(
        &self,
        params: &SubTaskListParams,
    ) -> StoreResult<Option<Page<taskd_core::SubTask>>> {
        if params.target.as_deref().is_some_and(text::has_nul) {
            // No sub-task has that target: an empty page, if the task is there.
            let task = self.task_get(&params.scope, params.task_id).await?;
            return Ok(task.map(|_| Page::empty()));
        }
        if text::scope_finds_nothing(&params.scope, []) {
            return Ok(None);
        }
        tasks::sub_task_list(self, params).await
    }

    async fn task_delete(&self, scope: &TaskScope, id: Id) -> StoreResult<TaskDeleteOutcome> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(TaskDeleteOutcome::NotFound);
        }
        tasks::delete(self, scope, id).await
    }

    async fn purge_finished(&self, before: Timestamp, max_rows: u32) -> StoreResult<u64> {
        operations::purge_finished(self, before, max_rows).await
    }

    async fn op_list(
        &self,
        params: &taskd_store::OpListParams,
    ) -> StoreResult<Page<taskd_store::OpRecord>> {
        if text::scope_finds_nothing(&params.scope, []) {
            return Ok(Page::empty());
        }
        operations::list(self, params).await
    }

    async fn op_get(
        &self,
        scope: &TaskScope,
        id: Id,
    ) -> StoreResult<Option<taskd_store::OpRecord>> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(None);
        }
        operations::get(self, scope, id).await
    }

    async fn op_instance_owner(
        &self,
        service: taskd_core::OpService,
        instance_id: &str,
    ) -> StoreResult<Option<String>> {
        if text::finds_nothing([instance_id]) {
            return Ok(None);
        }
        operations::instance_owner(self, service, instance_id).await
    }

    async fn task_control(&self, params: TaskControlParams) -> StoreResult<TaskControlOutcome> {
        if text::scope_finds_nothing(&params.scope, []) {
            return Ok(TaskControlOutcome::NotFound);
        }
        control::task_control(self, params).await
    }

    async fn sub_task_claim(&self, params: ClaimParams) -> StoreResult<Vec<ClaimedSubTask>> {
        params.check_text()?;
        let mut params = params;
        params.kinds.retain(|k| !text::has_nul(k));
        if params.kinds.is_empty() || text::finds_nothing(params.project_id.as_deref()) {
            return Ok(Vec::new());
        }
        run::claim(self, params).await
    }

    async fn sub_task_heartbeat(&self, params: HeartbeatParams) -> StoreResult<Option<Timestamp>> {
        if text::finds_nothing(params.project_id.as_deref()) {
            return Ok(None);
        }
        run::heartbeat(self, params).await
    }

    async fn sub_task_report(&self, params: ReportParams) -> StoreResult<Vec<ReportOutcome>> {
        params.check_text()?;
        if text::finds_nothing(params.project_id.as_deref()) {
            return Ok(vec![ReportOutcome::LeaseLost; params.results.len()]);
        }
        run::report(self, params).await
    }

    async fn maintain(&self, now: Timestamp, max_rows: u32) -> StoreResult<MaintenanceReport> {
        run::maintain(self, now, max_rows).await
    }

    async fn leader_acquire(&self, params: &taskd_store::LeaderParams) -> StoreResult<bool> {
        params.check_text()?;
        run::leader_acquire(self, params).await
    }

    async fn leader_release(&self, name: &str, holder: &str) -> StoreResult<()> {
        if text::finds_nothing([name, holder]) {
            return Ok(());
        }
        run::leader_release(self, name, holder).await
    }

    async fn next_due(&self, now: Timestamp) -> StoreResult<Option<Timestamp>> {
        run::next_due(self, now).await
    }

    async fn file_insert(
        &self,
        file: NewTaskFile,
        max_files: u32,
        now: Timestamp,
    ) -> StoreResult<FileInsertOutcome> {
        file.check_text()?;
        files::insert(self, file, max_files, now).await
    }

    async fn file_list(&self, scope: &TaskScope) -> StoreResult<Vec<taskd_core::TaskFile>> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(Vec::new());
        }
        files::list(self, scope).await
    }

    async fn file_get(
        &self,
        scope: &TaskScope,
        file_id: &str,
    ) -> StoreResult<Option<TaskFileContent>> {
        if text::scope_finds_nothing(scope, [file_id]) {
            return Ok(None);
        }
        files::get(self, scope, file_id).await
    }

    async fn file_delete(&self, scope: &TaskScope, file_id: &str) -> StoreResult<bool> {
        if text::scope_finds_nothing(scope, [file_id]) {
            return Ok(false);
        }
        files::delete(self, scope, file_id).await
    }

    async fn device_insert(
        &self,
        device: NewDevice,
        now: Timestamp,
    ) -> StoreResult<Result<Device, RegistryRefusal>> {
        device.check_text()?;
        devices::insert(self, device, now).await
    }

    async fn device_get(&self, scope: &TaskScope, device_id: &str) -> StoreResult<Option<Device>> {
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(None);
        }
        devices::get(self, scope, device_id).await
    }

    async fn device_list(&self, params: &DeviceListParams) -> StoreResult<Page<Device>> {
        let f = &params.filter;
        let keys = [&f.product_id, &f.node_id, &f.device_name, &f.app_id]
            .into_iter()
            .flatten()
            .chain(f.gateway.as_ref().map(|g| &g.gateway_id))
            .map(String::as_str);
        if text::scope_finds_nothing(&params.scope, keys) {
            return Ok(Page::empty());
        }
        devices::list(self, params).await
    }

    async fn device_update(
        &self,
        scope: &TaskScope,
        device_id: &str,
        update: DeviceUpdate,
        now: Timestamp,
    ) -> StoreResult<Result<Device, RegistryRefusal>> {
        update.check_text()?;
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(Err(RegistryRefusal::DeviceNotFound));
        }
        devices::update(self, scope, device_id, update, now).await
    }

    async fn device_delete(
        &self,
        scope: &TaskScope,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>> {
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(Err(RegistryRefusal::DeviceNotFound));
        }
        devices::delete(self, scope, device_id, now).await
    }

    async fn device_freeze(
        &self,
        scope: &TaskScope,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>> {
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(Err(RegistryRefusal::DeviceNotFound));
        }
        devices::set_frozen(self, scope, device_id, true, now).await
    }

    async fn device_unfreeze(
        &self,
        scope: &TaskScope,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>> {
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(Err(RegistryRefusal::DeviceNotFound));
        }
        devices::set_frozen(self, scope, device_id, false, now).await
    }

    async fn group_insert(
        &self,
        group: NewDeviceGroup,
        now: Timestamp,
    ) -> StoreResult<Result<DeviceGroup, RegistryRefusal>> {
        group.check_text()?;
        devices::group_insert(self, group, now).await
    }

    async fn group_get(
        &self,
        scope: &TaskScope,
        group_id: &str,
    ) -> StoreResult<Option<DeviceGroup>> {
        if text::scope_finds_nothing(scope, [group_id]) {
            return Ok(None);
        }
        devices::group_get(self, scope, group_id).await
    }

    async fn group_list(&self, params: &GroupListParams) -> StoreResult<Page<DeviceGroup>> {
        let f = &params.filter;
        if text::scope_finds_nothing(
            &params.scope,
            [&f.app_id, &f.name]
                .into_iter()
                .flatten()
                .map(String::as_str),
        ) {
            return Ok(Page::empty());
        }
        devices::group_list(self, params).await
    }

    async fn group_delete(
        &self,
        scope: &TaskScope,
        group_id: &str,
    ) -> StoreResult<Result<(), RegistryRefusal>> {
        if text::scope_finds_nothing(scope, [group_id]) {
            return Ok(Err(RegistryRefusal::GroupNotFound));
        }
        devices::group_delete(self, scope, group_id).await
    }

    async fn group_add_device(
        &self,
        scope: &TaskScope,
        group_id: &str,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>> {
        if let Some(refusal) = self
            .member_finds_nothing(scope, group_id, device_id)
            .await?
        {
            return Ok(Err(refusal));
        }
        devices::group_set_member(self, scope, group_id, device_id, true, now).await
    }

    async fn group_remove_device(
        &self,
        scope: &TaskScope,
        group_id: &str,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>> {
        if let Some(refusal) = self
            .member_finds_nothing(scope, group_id, device_id)
            .await?
        {
            return Ok(Err(refusal));
        }
        devices::group_set_member(self, scope, group_id, device_id, false, now).await
    }

    async fn device_group_members(
        &self,
        scope: &TaskScope,
        group_ids: &[String],
    ) -> StoreResult<Result<Vec<String>, String>> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(group_ids.first().cloned().map_or(Ok(Vec::new()), Err));
        }
        // The groups before the first that cannot exist decide; else that one is missing.
        if let Some(at) = group_ids.iter().position(|g| text::has_nul(g)) {
            return match devices::group_members(self, scope, &group_ids[..at]).await? {
                Err(missing) => Ok(Err(missing)),
                Ok(_) => Ok(Err(group_ids[at].clone())),
            };
        }
        devices::group_members(self, scope, group_ids).await
    }

    async fn legacy_app_put(&self, app: &LegacyApp) -> StoreResult<()> {
        app.check_text()?;
        taskd_store_sql::legacy::app_put(self, app).await
    }

    async fn legacy_app_get(&self, app_id: &str) -> StoreResult<Option<LegacyApp>> {
        if text::finds_nothing([app_id]) {
            return Ok(None);
        }
        taskd_store_sql::legacy::app_get(self, app_id).await
    }

    async fn legacy_app_list(&self) -> StoreResult<Vec<LegacyApp>> {
        taskd_store_sql::legacy::app_list(self).await
    }

    async fn legacy_app_revoke(&self, app_id: &str, now: Timestamp) -> StoreResult<bool> {
        if text::finds_nothing([app_id]) {
            return Ok(false);
        }
        taskd_store_sql::legacy::app_revoke(self, app_id, now).await
    }

    async fn legacy_tokens_put(&self, tokens: &LegacyTokens) -> StoreResult<bool> {
        tokens.check_text()?;
        taskd_store_sql::legacy::tokens_put(self, tokens).await
    }

    async fn legacy_tokens_get(&self, app_id: &str) -> StoreResult<Option<LegacyTokens>> {
        if text::finds_nothing([app_id]) {
            return Ok(None);
        }
        taskd_store_sql::legacy::tokens_get(self, app_id).await
    }

    async fn legacy_rate_hit(&self, app_id: &str, window_start: Timestamp) -> StoreResult<i64> {
        text::check("appId", app_id)?;
        taskd_store_sql::legacy::rate_hit(self, app_id, window_start).await
    }

    async fn device_attributes_put(
        &self,
        scope: &TaskScope,
        device_id: &str,
        attributes: &DeviceAttributes,
    ) -> StoreResult<bool> {
        attributes.check_text()?;
        if text::scope_finds_nothing(scope, [device_id]) {
            return Ok(false);
        }
        taskd_store_sql::legacy::attributes_put(self, scope, device_id, attributes).await
    }

    async fn device_attributes_get(
        &self,
        scope: &TaskScope,
        device_ids: &[String],
    ) -> StoreResult<Vec<(String, DeviceAttributes)>> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(Vec::new());
        }
        if device_ids.iter().any(|d| text::has_nul(d)) {
            let ids: Vec<String> = device_ids
                .iter()
                .filter(|d| !text::has_nul(d))
                .cloned()
                .collect();
            return taskd_store_sql::legacy::attributes_get(self, scope, &ids).await;
        }
        taskd_store_sql::legacy::attributes_get(self, scope, device_ids).await
    }

    async fn legacy_task_insert(
        &self,
        params: TaskInsertParams,
        operation: LegacyOperation,
    ) -> StoreResult<taskd_core::Task> {
        params.check_text()?;
        operation.check_text()?;
        tasks::insert_with(self, params, Some(&operation)).await
    }

    async fn legacy_task_get(&self, scope: &TaskScope, id: Id) -> StoreResult<Option<LegacyTask>> {
        if text::scope_finds_nothing(scope, []) {
            return Ok(None);
        }
        taskd_store_sql::legacy::task_get(self, scope, id).await
    }

    async fn legacy_task_list(
        &self,
        params: &LegacyTaskListParams,
    ) -> StoreResult<Page<LegacyTask>> {
        let keys = [
            &params.operate_type,
            &params.device_type,
            &params.model,
            &params.manufacturer_name,
            &params.device_id,
        ];
        if text::scope_finds_nothing(
            &params.scope,
            keys.into_iter().flatten().map(String::as_str),
        ) {
            return Ok(Page::empty());
        }
        taskd_store_sql::legacy::task_list(self, params).await
    }

    async fn close(&self) {
        SqliteStore::close(self).await;
    }
}

#[cfg(test)]
mod tests;
