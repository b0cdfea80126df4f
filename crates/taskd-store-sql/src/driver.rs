//! The seam between the store logic, written once in this crate, and a SQL backend.
//!
//! A backend is a [`Driver`]: it opens connections and transactions the way its
//! database wants them, runs a [`Stmt`] on them ([`Conn`]), and answers the few
//! statements whose SQL (or whose number of statements) really differs between dialects.
//! Everything else (what to read, what to refuse, in which order to lock and write, how a
//! row becomes a model value) is plain generic Rust in the modules of this crate, over
//! these traits.
//!
//! Why statements carry their arguments as [`Arg`] values instead of being generic over
//! `sqlx::Database`: generic sqlx code needs a higher-ranked `Encode`/`Decode`/`Executor`
//! bound for every type and every function, which Rust cannot imply from one trait. An
//! argument enum with five cases costs one `match` per bound value and keeps the shared
//! code free of sqlx bounds. Rows still decode through `sqlx::FromRow` ([`SqlRow`]).
//!
//! Statement text uses `$1`, `$2`, … in both dialects (sqlx's SQLite driver binds them by
//! number); the text is written once whenever the two dialects agree on it.

use std::borrow::Cow;

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::FromRow;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use taskd_core::{Id, NewSubTask, Timestamp};
use taskd_store::{RegistryRefusal, StoreError, StoreResult};
use tokio::sync::Notify;

/// A value bound to one statement parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg<'a> {
    Int(i64),
    OptInt(Option<i64>),
    Text(&'a str),
    OptText(Option<&'a str>),
    Bool(bool),
    OptBool(Option<bool>),
    /// A list, for `= ANY($n)` (PostgreSQL, an array) or `IN (SELECT value FROM
    /// json_each($n))` (SQLite, a JSON array): see [`DialectSql`].
    Ints(&'a [i64]),
    Texts(&'a [&'a str]),
}

impl<'a> From<&'a [i64]> for Arg<'a> {
    fn from(v: &'a [i64]) -> Self {
        Arg::Ints(v)
    }
}

impl<'a> From<&'a Vec<i64>> for Arg<'a> {
    fn from(v: &'a Vec<i64>) -> Self {
        Arg::Ints(v)
    }
}

impl<'a> From<&'a [&'a str]> for Arg<'a> {
    fn from(v: &'a [&'a str]) -> Self {
        Arg::Texts(v)
    }
}

impl<'a> From<&'a Vec<&'a str>> for Arg<'a> {
    fn from(v: &'a Vec<&'a str>) -> Self {
        Arg::Texts(v)
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Bool(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Arg::OptText(v)
    }
}

impl<'a> From<&'a Option<String>> for Arg<'a> {
    fn from(v: &'a Option<String>) -> Self {
        Arg::OptText(v.as_deref())
    }
}

/// One SQL statement and its arguments, in parameter order.
#[derive(Debug, Clone)]
pub struct Stmt<'a> {
    sql: Cow<'static, str>,
    args: Vec<Arg<'a>>,
}

impl<'a> Stmt<'a> {
    /// A statement with fixed text (the common case: the driver's statement cache keys on
    /// the text, so fixed text is prepared once per connection).
    pub fn new(sql: &'static str) -> Self {
        Stmt {
            sql: Cow::Borrowed(sql),
            args: Vec::new(),
        }
    }

    /// A statement whose text is assembled at run time from fixed pieces (never from
    /// input: every value goes through [`Stmt::bind`]).
    pub fn assembled(sql: String) -> Self {
        Stmt {
            sql: Cow::Owned(sql),
            args: Vec::new(),
        }
    }

    /// Binds the next parameter.
    pub fn bind(mut self, value: impl Into<Arg<'a>>) -> Self {
        self.args.push(value.into());
        self
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }

    pub fn args(&self) -> &[Arg<'a>] {
        &self.args
    }

    /// The text and the arguments, for a driver to run.
    pub fn into_parts(self) -> (Cow<'static, str>, Vec<Arg<'a>>) {
        (self.sql, self.args)
    }
}

/// A row type both SQL backends can decode (every `#[derive(sqlx::FromRow)]` struct of
/// this crate, and tuples of plain columns).
pub trait SqlRow:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

impl<T> SqlRow for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static
{
}

/// A connection (or transaction) that runs statements.
#[async_trait]
pub trait Conn: Send {
    /// Runs a statement; the number of rows it changed.
    async fn execute(&mut self, stmt: Stmt<'_>) -> StoreResult<u64>;

    async fn fetch_all<R: SqlRow>(&mut self, stmt: Stmt<'_>) -> StoreResult<Vec<R>>;

    async fn fetch_optional<R: SqlRow>(&mut self, stmt: Stmt<'_>) -> StoreResult<Option<R>>;

    /// Exactly one row; none is [`StoreError::Corrupt`] (the statements that use this
    /// always return a row: an aggregate, or an `UPDATE ... RETURNING` of a row that
    /// always exists).
    async fn fetch_one<R: SqlRow>(&mut self, stmt: Stmt<'_>) -> StoreResult<R> {
        let sql = stmt.sql().to_owned();
        self.fetch_optional(stmt)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("no row from {sql:?}")))
    }

    /// One `BIGINT` column of exactly one row.
    async fn fetch_int(&mut self, stmt: Stmt<'_>) -> StoreResult<i64> {
        let (v,): (i64,) = self.fetch_one(stmt).await?;
        Ok(v)
    }
}

/// A transaction: dropped without [`Tx::commit`] it rolls back.
#[async_trait]
pub trait Tx: Conn + Sized {
    async fn commit(self) -> StoreResult<()>;

    /// Ends the transaction now, releasing its locks at once (a dropped transaction only
    /// queues its `ROLLBACK`).
    async fn rollback(self) -> StoreResult<()>;

    /// Rolls back a transaction that decided to write nothing, and returns `value`.
    async fn give_up<T: Send>(self, value: T) -> StoreResult<T> {
        self.rollback().await?;
        Ok(value)
    }
}

/// What serialises a class of writers on one key, when the database would otherwise let
/// two transactions both see the same free slot. On SQLite every write transaction
/// already holds the database's one write lock, so the driver does nothing; PostgreSQL
/// takes a transaction-scoped advisory lock on (class, hash of the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLock {
    /// Uploads to one scope: the per-scope file limit.
    Files,
    /// Group inserts in one scope: the per-scope group limit and unique names.
    Groups,
    /// OTA package inserts in one scope: the per-scope package limit.
    Packages,
    /// Claims (no key): the running limits hold across every node.
    Claims,
}

/// The statements whose text differs between the dialects (their arguments don't: the
/// shared code binds them). Each driver's [`Driver::sql`] gives its text; a statement
/// both dialects can say alike is written where it is used, not here.
/// Not `non_exhaustive`: a new statement must be given by every driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectSql {
    /// Every credential, oldest first, ties in insertion order (SQLite `rowid`,
    /// PostgreSQL `seq`).
    CredentialList,
    /// The legacy attributes of the devices `$3` (a list) of scope (`$1`, `$2`), in the
    /// list's order, unknown devices left out.
    AttributesOfDevices,
    /// Up to `$2` finished tasks last updated before `$1`, oldest first, locked for
    /// deletion (PostgreSQL: rows another node's purge holds are skipped).
    PurgePick,
    /// Up to `$2` tasks whose legacy deadline passed by `$1` and is still pending.
    DeadlinesDue,
    /// The earliest of: a schedule time after `$1` of a runnable task, a due retry, a
    /// lease end, a pending deadline (NULL when there is none).
    NextDue,
    /// Running sub-tasks per project: `(project_id, BIGINT count)`.
    ClaimRunning,
    /// A claim's candidate tasks `(id, project_id)`: runnable, schedule time `$1` reached,
    /// of the kinds `$2` (a list), of project `$3` when not NULL, no deadline passed,
    /// maintenance window (if any) open at minute of day `$5`, least recently served
    /// first, at most `$4`, locked (PostgreSQL skips tasks other claims hold). A minute m
    /// is inside [start, end) of a window that may wrap midnight exactly when
    /// (m - start) mod 1440 < (end - start) mod 1440.
    ClaimCandidates,
    /// One more than the largest `served_seq` of a runnable task.
    NextServedSeq,
    /// Leases the first `$5` claimable sub-tasks of task `$4` to worker `$1` until `$2`
    /// at `$3`, returning `(id, target, input_json, attempts)`.
    ClaimRows,
    /// Whether task `$1` has a released waiting sub-task left.
    HasReady,
}

/// A SQL backend.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// A write transaction.
    type Tx: Tx + 'static;
    /// A pooled connection for reads of one statement.
    type Read: Conn + 'static;

    /// Begins a write transaction (SQLite: `BEGIN IMMEDIATE` on the one writer;
    /// PostgreSQL: `READ COMMITTED`, serialised by row locks).
    async fn begin_write(&self) -> StoreResult<Self::Tx>;

    /// Begins a read-only transaction on one snapshot, for reads of several statements
    /// (a page and its count).
    async fn begin_read(&self) -> StoreResult<Self::Tx>;

    /// Runs one writing statement in a transaction of its own (autocommit): one round
    /// trip, where `begin_write` + `commit` would take three.
    async fn write_one(&self, stmt: Stmt<'_>) -> StoreResult<u64>;

    /// Appended to a `SELECT` that must lock the rows it reads until the transaction
    /// ends (PostgreSQL ` FOR UPDATE`; empty on SQLite, whose write transaction holds the
    /// database's one write lock).
    const FOR_UPDATE: &'static str;

    /// Like [`Driver::FOR_UPDATE`], but other readers that share may lock the row too
    /// (PostgreSQL ` FOR SHARE`): it only keeps the row from being changed or deleted.
    const FOR_SHARE: &'static str;

    /// `column` + this: membership in the list bound as parameter `$param`.
    fn in_list(param: usize) -> String;

    /// The text of a statement that differs between dialects.
    fn sql(which: DialectSql) -> &'static str;

    /// A connection for single-statement reads.
    async fn read(&self) -> StoreResult<Self::Read>;

    /// Takes `lock` for `key` until the end of `tx` (see [`KeyLock`]).
    async fn lock_key(tx: &mut Self::Tx, lock: KeyLock, key: &[&str]) -> StoreResult<()>;

    /// Inserts the sub-tasks of the task `task_id` in one statement (30,000 single-row
    /// INSERTs would take seconds): the `i`-th gets id `task_id + 1 + i`, state `waiting`,
    /// and `ready_at`. Returns how many rows it wrote.
    async fn insert_sub_tasks(
        tx: &mut Self::Tx,
        task_id: Id,
        now: Timestamp,
        ready_at: Option<i64>,
        sub_tasks: &[NewSubTask],
    ) -> StoreResult<u64>;

    /// Writes a batch of accepted results (each row guarded by `processing` and its
    /// attempt) and returns how many rows changed (PostgreSQL: one `unnest` UPDATE).
    async fn write_results(
        tx: &mut Self::Tx,
        now: Timestamp,
        results: &[crate::run::ResultWrite],
    ) -> StoreResult<u64>;

    /// Tells every node that work was released, when `tx` commits (PostgreSQL `NOTIFY`;
    /// nothing on SQLite, whose one process wakes its runner itself).
    async fn notify_ready(tx: &mut Self::Tx) -> StoreResult<()>;

    /// Tells `node_id` it has mail, when `tx` commits (PostgreSQL `NOTIFY`; nothing on
    /// SQLite, where the one node polls its mailbox).
    async fn notify_mail(tx: &mut Self::Tx, node_id: &str) -> StoreResult<()>;

    /// Readiness: whether a write can commit now (`Store::check_writable`).
    async fn check_writable(&self, now: Timestamp) -> StoreResult<()>;

    /// Woken when another node releases work (`Store::wakeups`); `None` when the backend
    /// has no way to hear of it.
    fn wakeups(&self) -> Option<Arc<Notify>> {
        None
    }

    /// Woken when some node has new mail (`Store::node_mail_wakeups`); `None` when the
    /// backend has no way to hear of it.
    fn mail_wakeups(&self) -> Option<Arc<Notify>> {
        None
    }

    /// Graceful shutdown (`Store::close`).
    async fn close(&self);
}

/// What a registry write refused, or the registry value.
pub type Refusable<T> = StoreResult<Result<T, RegistryRefusal>>;
