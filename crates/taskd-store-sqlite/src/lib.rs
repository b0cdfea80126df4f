//! The embedded storage backend of taskd: [`SqliteStore`], a [`taskd_store::Store`] on
//! one SQLite file (`<data_dir>/taskd.sqlite3`) through sqlx ([`open`]).
//!
//! The use cases (what to read, refuse, lock and write) are written once, in
//! `taskd-store-sql`, over its `Driver` seam; this crate is the SQLite driver:
//! * `lib.rs`: opening, closing, the two connection pools, error mapping;
//! * `driver`: the `Driver` impl: binding and running a statement (lists as JSON for
//!   `json_each`), `BEGIN IMMEDIATE`, the statements SQLite says its own way
//!   (`DialectSql`), the bulk sub-task insert, result rows a statement each;
//! * `health`: readiness (`Store::check_writable` measures the room left);
//! * `fault` (feature `fault-injection`): `limit_pages`, a full disk for tests;
//! * `bench_seed`: bulk rows for `taskd bench`.
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
//! * a state write is guarded by the state it expects (`WHERE ... AND state = $n`) and
//!   the new state comes from the tables in `taskd_core::state`;
//! * progress counters (on the task row) and `task_counts` change in the same
//!   transaction as the rows they count; nothing ever counts rows to answer a request.

mod bench_seed;
mod driver;
#[cfg(feature = "fault-injection")]
mod fault;
mod health;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use taskd_store::{StoreError, StoreResult};
use taskd_store_sql::SqlStore;

/// The database file inside the data directory.
pub const DB_FILE_NAME: &str = "taskd.sqlite3";

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const READER_CONNECTIONS: u32 = 4;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The [`taskd_store::Store`] on one SQLite file: the shared SQL store logic over
/// [`SqliteDriver`]. Cheap to clone (the pools are shared).
pub type SqliteStore = SqlStore<SqliteDriver>;

/// Opens (creating if needed) `<data_dir>/taskd.sqlite3` and brings its schema up to
/// date. Several stores (processes) may open the same directory at once.
pub async fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
    SqliteDriver::open(data_dir).await.map(SqlStore::new)
}

/// A private in-memory database, for tests of other layers (see
/// [`SqliteDriver::open_in_memory`]).
pub async fn open_in_memory() -> Result<SqliteStore, StoreError> {
    SqliteDriver::open_in_memory().await.map(SqlStore::new)
}

/// How the store reaches SQLite: one writer, a reader pool, one file.
#[derive(Debug, Clone)]
pub struct SqliteDriver {
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

impl SqliteDriver {
    /// Opens (creating if needed) `<data_dir>/taskd.sqlite3` and brings its schema up to
    /// date. Several stores (processes) may open the same directory at once.
    pub async fn open(data_dir: &Path) -> Result<SqliteDriver, StoreError> {
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
        Ok(SqliteDriver {
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
    pub async fn open_in_memory() -> Result<SqliteDriver, StoreError> {
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
        Ok(SqliteDriver {
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
    store: &SqliteDriver,
) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
    store.writer.begin_with("BEGIN IMMEDIATE").await.map_err(db)
}

/// A deferred transaction on a reader: several statements on one snapshot.
pub(crate) async fn begin_read(
    store: &SqliteDriver,
) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
    store.reader.begin().await.map_err(db)
}

#[cfg(test)]
mod tests;
