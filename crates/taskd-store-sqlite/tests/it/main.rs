//! `SqliteStore` integration tests: the shared conformance suite on a fresh database per
//! test (a file in a temp dir, and in memory), plus what only SQLite has (`sqlite`).

mod disk_full;
mod sqlite;

use taskd_store_sqlite::SqliteStore;
use tempfile::TempDir;

/// A fresh store on its own file; the dir lives as long as the test.
async fn fresh() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = taskd_store_sqlite::open(dir.path()).await.expect("open");
    (store, dir)
}

async fn fresh_in_memory() -> (SqliteStore, ()) {
    (
        taskd_store_sqlite::open_in_memory().await.expect("open"),
        (),
    )
}

mod conformance {
    use super::fresh;
    taskd_store::store_conformance_tests!(fresh());
}

mod conformance_in_memory {
    use super::fresh_in_memory;
    taskd_store::store_conformance_tests!(fresh_in_memory());
}
