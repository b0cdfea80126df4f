//! The shared storage backend of taskd: [`PgStore`], a [`taskd_store::Store`] on a
//! PostgreSQL database through sqlx ([`connect`]). Several taskd nodes may serve from one
//! database.
//!
//! The use cases (what to read, refuse, lock and write) are written once, in
//! `taskd-store-sql`, over its `Driver` seam; this crate is the PostgreSQL driver:
//! * `lib.rs`: connecting, the pool, error mapping;
//! * `driver`: the `Driver` impl: binding and running a statement (lists as arrays for
//!   `= ANY($n)`), row locks (`FOR UPDATE`/`FOR SHARE`), advisory locks (`KeyLock`), the
//!   statements PostgreSQL says its own way (`DialectSql`), the `unnest` bulk sub-task
//!   insert and result batch, NOTIFY;
//! * `wakeups`: `NOTIFY taskd_ready` and the `LISTEN` task behind `Store::wakeups`;
//! * `bench_seed`: bulk rows for `taskd bench`.
//!
//! How it uses PostgreSQL:
//! * One pool ([`PgStoreOptions::max_connections`], 16 by default). Acquiring a connection
//!   gives up after [`PgStoreOptions::acquire_timeout`] (5 s), so a dead database is a
//!   [`StoreError::Backend`] saying it is unreachable, never a hang.
//! * Every write is one `READ COMMITTED` transaction. What would race between nodes is
//!   serialised by row locks, always taken in the same order, so writers never deadlock:
//!   1. the `id_allocator` row (task inserts only), held until commit: ids are handed out
//!      in commit order across every node, so "a newer task has a larger id" holds for
//!      the cluster and a marker page never misses a task committed later;
//!   2. the task row (`SELECT ... FOR UPDATE`: control ops and delete), before its state
//!      and counters are read;
//!   3. `task_counts` rows, last, two of them in state-name order.
//! * Reads that issue several statements (a page and its count) run in one
//!   `REPEATABLE READ READ ONLY` transaction, i.e. on one snapshot, whose statements are
//!   always planned for their actual parameters (`plan_cache_mode = force_custom_plan`):
//!   listings stay range scans of the right index whatever the sizes of the other scopes
//!   (`tests.rs` checks the plans).
//! * Sessions end a transaction left idle for 30 s, so a frozen node can't hold the id
//!   allocator (and every other node's inserts) for longer.
//! * The schema lives in `migrations/`, applied by `sqlx::migrate!` on connect (sqlx takes
//!   an advisory lock, so nodes starting together migrate once). Nothing names a schema:
//!   the store works in its connection's `search_path` ([`PgStoreOptions::schema`]).
//!
//! Architecture invariants (see also the rules in `taskd_store`):
//! * a state write is guarded by the state it expects (`WHERE ... AND state = $n`), its
//!   row count is checked (a mismatch is [`StoreError::Corrupt`], never a silent double
//!   transition) and the new state comes from the tables in `taskd_core::state`;
//! * whoever changes a task's sub-tasks holds the task row's lock;
//! * sub-tasks are written in their task's transaction and deleted explicitly with it:
//!   `sub_tasks` has no foreign key (see the migration for why);
//! * progress counters (on the task row) and `task_counts` change in the same
//!   transaction as the rows they count; nothing ever counts rows to answer a request.

mod bench_seed;
mod driver;
mod wakeups;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use taskd_store::{StoreError, StoreResult};
use taskd_store_sql::SqlStore;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How [`PgDriver::connect_with`] sets up the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgStoreOptions {
    /// Upper bound of the pool.
    pub max_connections: u32,
    /// How long a call waits for a connection (opening one included) before it fails
    /// with "database unreachable".
    pub acquire_timeout: Duration,
    /// Work in this schema (`search_path`), creating it if needed; `None` keeps the
    /// server's default (normally `public`). Lowercase letters, digits and `_` only.
    pub schema: Option<String>,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        PgStoreOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            schema: None,
        }
    }
}

/// The [`taskd_store::Store`] on a PostgreSQL database: the shared SQL store logic over
/// [`PgDriver`]. Cheap to clone (the pool is shared).
pub type PgStore = SqlStore<PgDriver>;

/// Connects to `url` (`postgres://user:password@host:port/database`) with the default
/// [`PgStoreOptions`] and brings the schema up to date.
pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
    PgDriver::connect_with(url, &PgStoreOptions::default())
        .await
        .map(SqlStore::new)
}

/// Connects working in `schema` (created if missing), e.g. one schema per test or per
/// deployment sharing a database.
pub async fn connect_with_schema(url: &str, schema: &str) -> Result<PgStore, StoreError> {
    let options = PgStoreOptions {
        schema: Some(schema.to_owned()),
        ..PgStoreOptions::default()
    };
    PgDriver::connect_with(url, &options)
        .await
        .map(SqlStore::new)
}

/// Connects with explicit options, opening one connection right away (so a wrong
/// address or password fails here, within `acquire_timeout`), then migrates.
pub async fn connect_with(url: &str, options: &PgStoreOptions) -> Result<PgStore, StoreError> {
    PgDriver::connect_with(url, options)
        .await
        .map(SqlStore::new)
}

/// How the store reaches PostgreSQL: one pool, and a LISTEN task for wakeups.
#[derive(Debug, Clone)]
pub struct PgDriver {
    pool: PgPool,
    /// Woken by `NOTIFY taskd_ready` from any node (see `wakeups`).
    ready: Arc<Notify>,
    /// Woken by `NOTIFY taskd_mail` (mail for some node, see `wakeups`).
    mail: Arc<Notify>,
    /// The LISTEN task, ended by `close`.
    listener: Arc<AbortHandle>,
}

impl PgDriver {
    /// Connects with explicit options, opening one connection right away (so a wrong
    /// address or password fails here, within `acquire_timeout`), then migrates.
    async fn connect_with(url: &str, options: &PgStoreOptions) -> Result<PgDriver, StoreError> {
        let mut connect: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
            // The parse error never echoes the URL (it may hold a password).
            StoreError::Backend(format!("invalid PostgreSQL URL: {e}").into())
        })?;
        // A node that freezes inside a transaction (stopped process, lost network) must
        // not hold the id allocator, and with it every insert of the cluster, for long:
        // our transactions never sit idle, so the server may end one that does.
        connect = connect
            .application_name("taskd")
            .options([("idle_in_transaction_session_timeout", "30s")]);
        if let Some(schema) = &options.schema {
            check_schema_name(schema)?;
            connect = connect.options([("search_path", schema.as_str())]);
        }
        let server = server_name(&connect);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| unreachable_or_db(e, &server))?;
        let ready = Arc::new(Notify::new());
        let mail = Arc::new(Notify::new());
        let listener =
            tokio::spawn(wakeups::listen(pool.clone(), ready.clone(), mail.clone())).abort_handle();
        let store = PgDriver {
            pool,
            ready,
            mail,
            listener: Arc::new(listener),
        };
        if let Some(schema) = &options.schema {
            // Checked above: a plain identifier, so quoting it is all it needs.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .execute(&store.pool)
            .await
            .or_else(|e| match &e {
                // Another node created it at the same moment.
                sqlx::Error::Database(d)
                    if d.code().is_some_and(|c| c == "42P06" || c == "23505") =>
                {
                    Ok(Default::default())
                }
                _ => Err(db(e)),
            })?;
        }
        store.migrate().await?;
        tracing::debug!(%server, schema = ?options.schema, "connected postgres store");
        Ok(store)
    }

    /// Applies the migrations not applied yet (idempotent; `connect` already does it).
    pub async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => db(e),
            e => StoreError::Backend(Box::new(e)),
        })
    }

    /// Graceful shutdown: waits for the connections in use and closes the pool. Calls
    /// after this fail with a backend error.
    pub async fn close(&self) {
        self.listener.abort();
        self.pool.close().await;
    }
}

/// Schema names go into SQL text (`CREATE SCHEMA`) and the `search_path` option, so only
/// plain lowercase identifiers are accepted: they read the same quoted or not (the
/// server folds an unquoted `search_path` entry to lowercase).
fn check_schema_name(schema: &str) -> StoreResult<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && !schema.starts_with(|c: char| c.is_ascii_digit())
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Backend(
            format!("invalid schema name {schema:?}: use lowercase letters, digits and '_' only")
                .into(),
        ))
    }
}

/// `host:port/database`, for messages (never the user or password).
fn server_name(options: &PgConnectOptions) -> String {
    format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

/// The database could not be reached: it is down, the address is wrong, the network
/// failed, or every pooled connection stayed busy for the whole acquire timeout.
#[derive(Debug)]
pub struct Unreachable {
    /// `host:port/database`, when known (never the user or password).
    server: Option<String>,
    cause: sqlx::Error,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.server {
            Some(server) => write!(f, "PostgreSQL database {server} is unreachable: ")?,
            None => write!(f, "PostgreSQL database is unreachable: ")?,
        }
        match &self.cause {
            sqlx::Error::PoolTimedOut => write!(
                f,
                "no connection within the acquire timeout (server down or unreachable, or \
                 every connection busy)"
            ),
            // The cause is part of the message, not a `source()`: said once.
            cause => write!(f, "{cause}"),
        }
    }
}

impl std::error::Error for Unreachable {}

fn is_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exception; 57P01..57P03: the server is shutting down or
        // starting up.
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

fn unreachable_or_db(e: sqlx::Error, server: &str) -> StoreError {
    if is_unreachable(&e) {
        StoreError::Backend(Box::new(Unreachable {
            server: Some(server.to_owned()),
            cause: e,
        }))
    } else {
        db(e)
    }
}

/// Maps a sqlx error: unique-key violations are conflicts, a lost or missing connection
/// is [`Unreachable`], everything else is the backend's.
pub(crate) fn db(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        return StoreError::Conflict(d.message().to_owned());
    }
    if is_unreachable(&e) {
        return StoreError::Backend(Box::new(Unreachable {
            server: None,
            cause: e,
        }));
    }
    StoreError::Backend(Box::new(e))
}

/// A read-committed write transaction; the row locks taken in it serialise writers.
pub(crate) async fn begin_write(
    store: &PgDriver,
) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
    store.pool.begin().await.map_err(db)
}

/// A read-only transaction on one snapshot: several statements see the same data.
///
/// Its statements are planned for their actual parameters. A generic (cached) plan of a
/// listing can't tell a big scope from a small one and may walk the whole primary key
/// backwards, filtering: a small scope's page then reads every newer task of the others
/// (measured: 270 ms at 1,000,000 tasks, against 0.05 ms when planned for the scope).
/// Only here, not for the whole connection: writes keep cached plans, notably the
/// foreign-key checks, which would otherwise be planned again for every inserted row
/// (a 30,000-target insert took 1 s instead of 0.3 s).
pub(crate) async fn begin_read(
    store: &PgDriver,
) -> StoreResult<sqlx::Transaction<'static, sqlx::Postgres>> {
    // Sent as one simple query: one round trip.
    store
        .pool
        .begin_with(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; \
             SET LOCAL plan_cache_mode = force_custom_plan",
        )
        .await
        .map_err(db)
}

#[cfg(test)]
mod tests;
