//! What only the SQLite backend has: the file, its journal mode, reopening, several
//! processes on one file, and detection of tampered rows.

use sqlx::{Connection, SqliteConnection};
use taskd_core::{ControlOp, Credential, Id, TaskScope, Timestamp};
use taskd_store::conformance::{T0, at, control, insert_with_targets, new_task, scope};
use taskd_store::{Store, StoreError, TaskControlOutcome, TaskInsertParams};
use taskd_store_sqlite::DB_FILE_NAME;

use crate::fresh;

async fn raw(dir: &std::path::Path) -> SqliteConnection {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join(DB_FILE_NAME));
    SqliteConnection::connect_with(&options)
        .await
        .expect("raw connection")
}

fn credential(access_key: &str, project: &str, created_at: Timestamp) -> Credential {
    Credential {
        access_key: access_key.to_owned(),
        secret_key: format!("secret-of-{access_key}"),
        project_id: project.to_owned(),
        created_at,
        revoked_at: None,
    }
}

#[tokio::test]
async fn the_file_is_in_wal_mode() {
    let (store, dir) = fresh().await;
    assert!(dir.path().join(DB_FILE_NAME).is_file());
    let mut conn = raw(dir.path()).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    conn.close().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn open_creates_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/data");
    let store = taskd_store_sqlite::open(&nested).await.expect("open");
    store.ping().await.unwrap();
    assert!(nested.join(DB_FILE_NAME).is_file());
    store.close().await;
}

#[tokio::test]
async fn reopening_keeps_data_and_the_id_sequence() {
    let (store, dir) = fresh().await;
    let s = scope("p1", "");
    let t = insert_with_targets(&store, &s, "t", &["a", "b"], at(1_000)).await;
    store
        .credential_put(&credential("AK", "p1", T0))
        .await
        .unwrap();
    store.close().await;
    assert!(store.ping().await.is_err(), "a closed store refuses work");

    let store = taskd_store_sqlite::open(dir.path()).await.expect("reopen");
    assert_eq!(store.task_get(&s, t.id).await.unwrap(), Some(t.clone()));
    assert!(store.credential_get("AK").await.unwrap().is_some());
    // The clock went back across the restart: ids still grow.
    let u = store
        .task_insert(TaskInsertParams {
            task: new_task(&s, "u"),
            sub_tasks: vec![],
            now: at(0),
        })
        .await
        .unwrap();
    assert!(u.id > Id(t.id.0 + 2));
    store.close().await;
}

/// The CLI opens the data dir while the server runs: both can write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_store_on_the_same_dir_can_write() {
    let (server, dir) = fresh().await;
    let cli = taskd_store_sqlite::open(dir.path())
        .await
        .expect("second open");
    let s = scope("p1", "");

    // Both write at once, many times.
    let writer = {
        let server = server.clone();
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                insert_with_targets(&server, &s, &format!("t{i}"), &["a", "b"], at(i)).await;
            }
        })
    };
    for i in 0..50 {
        cli.credential_put(&credential(&format!("AK{i:02}"), "p1", at(i)))
            .await
            .expect("CLI write while the server writes");
    }
    writer.await.unwrap();

    // Each sees the other's writes.
    assert_eq!(server.credential_list().await.unwrap().len(), 50);
    assert!(server.credential_get("AK07").await.unwrap().is_some());
    assert!(cli.credential_revoke("AK07", at(100)).await.unwrap());
    assert_eq!(server.credential_get("AK07").await.unwrap(), None);
    let seen = taskd_store::conformance::assert_list_consistent(&cli, &s).await;
    assert_eq!(seen.len(), 50);
    cli.close().await;
    server
        .ping()
        .await
        .expect("the server is unaffected by the CLI closing");
    server.close().await;
}

/// A sub-task changed behind the counters' back: a whole-task op notices and writes nothing.
#[tokio::test]
async fn counters_out_of_step_are_reported_as_corrupt() {
    let (store, dir) = fresh().await;
    let s = scope("p1", "");
    let t = insert_with_targets(&store, &s, "t", &["a", "b"], T0).await;
    let mut conn = raw(dir.path()).await;
    sqlx::query("UPDATE sub_tasks SET state = 'processing' WHERE task_id = ? AND target = 'a'")
        .bind(t.id.0)
        .execute(&mut conn)
        .await
        .unwrap();
    let res = store
        .task_control(taskd_store::TaskControlParams {
            scope: s.clone(),
            task_id: t.id,
            op: ControlOp::Stop,
            targets: None,
            now: at(1),
        })
        .await;
    assert!(matches!(res, Err(StoreError::Corrupt(_))), "{res:?}");
    assert_eq!(
        store.task_get(&s, t.id).await.unwrap(),
        Some(t.clone()),
        "rolled back"
    );
    let b: String =
        sqlx::query_scalar("SELECT state FROM sub_tasks WHERE task_id = ? AND target = 'b'")
            .bind(t.id.0)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(b, "waiting", "rolled back");

    // Per target, the guarded update moves it from the state it really is in.
    let outcome = control(&store, &s, t.id, ControlOp::Confirm, Some(&["b"]), at(2)).await;
    assert!(matches!(outcome, TaskControlOutcome::Applied { .. }));
    conn.close().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn unknown_state_names_are_corrupt() {
    let (store, dir) = fresh().await;
    let s = TaskScope::new("p1", "");
    let t = insert_with_targets(&store, &s, "t", &["a"], T0).await;
    let mut conn = raw(dir.path()).await;
    sqlx::query("PRAGMA ignore_check_constraints = ON")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE tasks SET state = 'Waitting' WHERE id = ?")
        .bind(t.id.0)
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        store.task_get(&s, t.id).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store
            .task_control(taskd_store::TaskControlParams {
                scope: s.clone(),
                task_id: t.id,
                op: ControlOp::Stop,
                targets: None,
                now: at(1),
            })
            .await,
        Err(StoreError::Corrupt(_))
    ));
    conn.close().await.unwrap();
    store.close().await;
}

/// The default resource space: `app_id: Some("")` is stored as `None`, and a filter of
/// `Some("")` selects the default space (list and count agree).
#[tokio::test]
async fn an_empty_app_id_is_the_default_space() {
    let (store, _dir) = fresh().await;
    let s = scope("p1", "");
    let mut t = new_task(&s, "empty-app");
    t.app_id = Some(String::new());
    let empty = store
        .task_insert(TaskInsertParams {
            task: t,
            sub_tasks: vec![],
            now: T0,
        })
        .await
        .unwrap();
    assert_eq!(empty.app_id, None);
    let none = insert_with_targets(&store, &s, "no-app", &["a"], at(1)).await;
    let mut t = new_task(&s, "app");
    t.app_id = Some("a1".into());
    store
        .task_insert(TaskInsertParams {
            task: t,
            sub_tasks: vec![],
            now: at(2),
        })
        .await
        .unwrap();
    let page = store
        .task_list(&taskd_store::TaskListParams {
            scope: s.clone(),
            filter: taskd_store::TaskFilter {
                app_id: Some(String::new()),
                ..Default::default()
            },
            page: taskd_store::conformance::first_page(10),
        })
        .await
        .unwrap();
    let ids: Vec<Id> = page.items.iter().map(|t| t.id).collect();
    assert_eq!((ids, page.count), (vec![none.id, empty.id], 2));
    store.close().await;
}

#[tokio::test]
async fn an_in_memory_store_closes_cleanly() {
    let store = taskd_store_sqlite::open_in_memory().await.unwrap();
    store.ping().await.unwrap();
    store.close().await;
    assert!(store.ping().await.is_err());
}

#[tokio::test]
async fn benchmark_seeding_writes_what_task_insert_would() {
    use taskd_core::{Id, TaskScope, TaskState, Timestamp};
    use taskd_store::{PageRequest, Store, SubTaskListParams, TaskFilter, TaskListParams};
    let dir = tempfile::tempdir().unwrap();
    let store = taskd_store_sqlite::open(dir.path()).await.unwrap();
    let scope = TaskScope::new("0123456789abcdef0123456789abcdef", "");
    store
        .seed_benchmark_tasks(&scope, 250_001, Timestamp(1_767_225_600_000))
        .await
        .unwrap();
    let page = store
        .task_list(&TaskListParams {
            scope: scope.clone(),
            filter: TaskFilter {
                state: Some(TaskState::Waiting),
                ..Default::default()
            },
            page: PageRequest {
                marker: Id::MAX,
                offset: 0,
                limit: 2,
            },
        })
        .await
        .unwrap();
    assert_eq!(page.count, 250_001);
    let newest = &page.items[0];
    assert!(newest.id > page.items[1].id);
    assert_eq!(newest.progress.total, 1);
    let subs = store
        .sub_task_list(&SubTaskListParams {
            scope: scope.clone(),
            task_id: newest.id,
            state: None,
            target: None,
            page: PageRequest {
                marker: Id::MAX,
                offset: 0,
                limit: 10,
            },
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(subs.count, 1);
    assert_eq!(subs.items[0].id.0, newest.id.0 + 1);
}
