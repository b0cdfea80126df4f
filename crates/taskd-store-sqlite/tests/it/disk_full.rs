//! A full disk, and the space coming back: SQLite answers `SQLITE_FULL` to the write
//! that needs the room, and the store must write again as soon as there is room, without
//! a restart. `SqliteDriver::limit_pages` is the full disk (SQLite's own page limit, same
//! error); `on_a_real_full_file_system` fills a small tmpfs (as root only).

use std::path::Path;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use taskd_core::Credential;
use taskd_store::conformance::{at, insert_with_targets, scope};
use taskd_store::{Store, StoreError};
use taskd_store_sqlite::{DB_FILE_NAME, SqliteStore};

use crate::fresh;

fn credential(i: i64) -> Credential {
    Credential {
        access_key: format!("AK{i:06}"),
        // Big enough that a few rows fill a page.
        secret_key: "s".repeat(500),
        project_id: "p1".to_owned(),
        created_at: at(i),
        revoked_at: None,
    }
}

fn is_full(e: &StoreError) -> bool {
    e.to_string().contains("database or disk is full")
}

/// Small writes until one fails; returns how many succeeded and the error.
async fn write_until_full(store: &SqliteStore, from: i64) -> (i64, StoreError) {
    for i in from..from + 10_000 {
        if let Err(e) = store.credential_put(&credential(i)).await {
            return (i - from, e);
        }
    }
    panic!("10,000 writes and still room");
}

async fn integrity_ok(dir: &Path) {
    let options = SqliteConnectOptions::new().filename(dir.join(DB_FILE_NAME));
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(verdict, "ok");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn writes_resume_once_space_returns() {
    let (store, dir) = fresh().await;
    let s = scope("p1", "");
    insert_with_targets(&store, &s, "before", &["a", "b"], at(0)).await;
    store.limit_pages(Some(0)).await.unwrap();

    let (_, first) = write_until_full(&store, 0).await;
    assert!(is_full(&first), "{first}");
    // Still full: each write says so (not that the connection is stuck).
    for i in 0..5 {
        let e = store
            .credential_put(&credential(100_000 + i))
            .await
            .expect_err("still full");
        assert!(is_full(&e), "write {i} after the first failure: {e}");
    }

    store.limit_pages(None).await.unwrap();
    store
        .credential_put(&credential(200_000))
        .await
        .expect("room again");
    insert_with_targets(&store, &s, "after", &["a", "b"], at(10)).await;
    store.maintain(at(20), 100).await.expect("maintenance");
    integrity_ok(dir.path()).await;
    store.close().await;
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with the reason) where mounting is not allowed: not root, or no
    /// `mount` in a container.
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `path` with one file; returns its path.
fn fill(dir: &Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path
}

/// The same on a real file system that runs out of space: here a big write usually
/// fails at `COMMIT` (its pages wait in SQLite's cache until then), when SQLite writes
/// them to the WAL and finds no room. Needs root (mounts a 4 MiB tmpfs); elsewhere it
/// says why and passes.
#[tokio::test]
async fn on_a_real_full_file_system() {
    let fs = match Tmpfs::mount("4m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED on_a_real_full_file_system: cannot mount a tmpfs ({why})");
            return;
        }
    };
    let data = fs.path().join("data");
    let store = taskd_store_sqlite::open(&data).await.unwrap();
    let s = scope("p1", "");
    let targets: Vec<String> = (0..300).map(|i| format!("device-{i:05}")).collect();
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    insert_with_targets(&store, &s, "before", &targets, at(0)).await;

    let filler = fill(fs.path());
    let mut failures = 0;
    for i in 0..20 {
        let params = taskd_store::TaskInsertParams {
            task: taskd_store::conformance::new_task(&s, &format!("while-full-{i}")),
            sub_tasks: taskd_store::conformance::sub_tasks_for(&targets),
            now: at(i + 1),
        };
        if let Err(e) = store.task_insert(params).await {
            assert!(is_full(&e), "write {i} on a full file system: {e}");
            failures += 1;
        }
    }
    assert!(failures >= 10, "only {failures} of 20 writes failed");

    std::fs::remove_file(filler).unwrap();
    insert_with_targets(&store, &s, "after", &targets, at(100)).await;
    store.maintain(at(200), 100).await.expect("maintenance");
    store.close().await;
    integrity_ok(&data).await;
}
