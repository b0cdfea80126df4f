//! `PgStore` integration tests: the shared conformance suite, each test in a fresh schema
//! of the database `TEST_DATABASE_URL` names (see `support`), plus what only PostgreSQL
//! has (`postgres`): several nodes on one database, migrations, an unreachable server.
//!
//! Without `TEST_DATABASE_URL` every test fails and says how to set it, unless
//! `TASKD_SKIP_POSTGRES=1` is set, in which case each prints that it was skipped.

mod postgres;
mod support;

mod conformance {
    // The suite evaluates this once per test: a fresh store and the guard of its schema.
    // Skipping returns from the test function before the suite runs.
    taskd_store::store_conformance_tests!({
        match crate::support::fresh().await {
            Some(store_and_schema) => std::future::ready(store_and_schema),
            None => return,
        }
    });
}
