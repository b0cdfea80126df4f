//! Test databases: every test works in a schema of its own, created for it in the
//! database `TEST_DATABASE_URL` names and dropped when the test ends.
//!
//! A schema (not a database) per test: creating one and migrating it takes a few
//! milliseconds, where `CREATE DATABASE` copies a template and takes a lock that
//! serialises every test. Schemas left behind by a killed run are dropped by the next run
//! once they are an hour old (their names carry their creation time).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{AssertSqlSafe, Connection, PgConnection};
use taskd_store_postgres::{PgStore, PgStoreOptions};

pub const URL_VAR: &str = "TEST_DATABASE_URL";
pub const SKIP_VAR: &str = "TASKD_SKIP_POSTGRES";
const PREFIX: &str = "taskd_test_";
const STALE_AFTER_SECS: u64 = 3_600;

/// The database to test against; `None` when the PostgreSQL tests are to be skipped
/// (`TASKD_SKIP_POSTGRES=1`). Without either variable the test fails: a backend that
/// nobody tested must not look green.
pub fn database_url() -> Option<String> {
    if let Ok(url) = std::env::var(URL_VAR)
        && !url.is_empty()
    {
        return Some(url);
    }
    if std::env::var(SKIP_VAR).as_deref() == Ok("1") {
        eprintln!("skipped: {SKIP_VAR}=1 and {URL_VAR} is not set");
        return None;
    }
    panic!(
        "{URL_VAR} is not set, so the PostgreSQL store can't be tested.\n\
         Point it at a database the tests may create schemas in, e.g.\n  \
         {URL_VAR}=postgres://postgres@127.0.0.1:5432/postgres cargo test -p taskd-store-postgres\n\
         (scripts/test sets it and starts the local cluster), or set {SKIP_VAR}=1 to skip \
         these tests explicitly."
    );
}

/// A schema that lives as long as this value.
#[derive(Debug)]
pub struct TestSchema {
    pub url: String,
    pub name: String,
}

impl TestSchema {
    /// A new, not yet created schema name (the first store connected to it creates it);
    /// `None` when skipped.
    pub async fn new() -> Option<TestSchema> {
        let url = database_url()?;
        static CLEANED: AtomicBool = AtomicBool::new(false);
        if !CLEANED.swap(true, Ordering::SeqCst) {
            drop_stale_schemas(&url).await;
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{PREFIX}{}_{}_{}",
            now_secs(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        Some(TestSchema { url, name })
    }

    /// A store (a "node") working in this schema.
    pub async fn store(&self) -> PgStore {
        taskd_store_postgres::connect_with_schema(&self.url, &self.name)
            .await
            .unwrap_or_else(|e| panic!("connecting to {URL_VAR} (schema {}): {e}", self.name))
    }

    /// A store with a small pool: tests that start several nodes stay well below the
    /// server's connection limit, with other test binaries running alongside.
    pub async fn small_store(&self, max_connections: u32) -> PgStore {
        let options = PgStoreOptions {
            max_connections,
            schema: Some(self.name.clone()),
            ..PgStoreOptions::default()
        };
        taskd_store_postgres::connect_with(&self.url, &options)
            .await
            .unwrap_or_else(|e| panic!("connecting to {URL_VAR} (schema {}): {e}", self.name))
    }

    /// A plain connection working in this schema, to look at or tamper with the rows.
    pub async fn raw(&self) -> PgConnection {
        let mut conn = PgConnection::connect(&self.url)
            .await
            .expect("raw connection");
        sqlx::query(AssertSqlSafe(format!(
            "SET search_path TO \"{}\"",
            self.name
        )))
        .execute(&mut conn)
        .await
        .expect("set search_path");
        conn
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        // Drop can't await, and the test's runtime may be unwinding: a thread with a
        // runtime of its own does it, and a failure is only reported.
        let (url, name) = (self.url.clone(), self.name.clone());
        let res = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(sqlx::Error::Io)?;
            rt.block_on(drop_schema(&url, &name))
        })
        .join();
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test schema {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test schema {} panicked", self.name),
        }
    }
}

async fn drop_schema(url: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    // A lingering session of the test (its pool is being dropped) must not hang us.
    sqlx::query("SET lock_timeout = '10s'")
        .execute(&mut conn)
        .await?;
    sqlx::query(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
    )))
    .execute(&mut conn)
    .await?;
    conn.close().await
}

/// Drops test schemas older than an hour (left by killed runs).
async fn drop_stale_schemas(url: &str) {
    let Ok(mut conn) = PgConnection::connect(url).await else {
        return; // The test itself will report the connection error.
    };
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::TEXT FROM pg_namespace WHERE starts_with(nspname, 'taskd_test_')",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    let now = now_secs();
    for name in names {
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|c| c + STALE_AFTER_SECS < now) {
            let _ = drop_schema(url, &name).await;
        }
    }
    let _ = conn.close().await;
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A fresh, empty store in its own schema, and the schema's guard; `None` when skipped.
pub async fn fresh() -> Option<(PgStore, TestSchema)> {
    let schema = TestSchema::new().await?;
    let store = schema.store().await;
    Some((store, schema))
}
