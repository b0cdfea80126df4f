//! What only the PostgreSQL backend has: several nodes (stores with pools of their own)
//! writing one database at once, migrations, an unreachable or vanishing server, and
//! detection of tampered rows.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use taskd_core::{ControlOp, Credential, Id, NewTaskFile, TaskScope, TaskState, Timestamp};
use taskd_store::conformance::{
    T0, assert_list_consistent, at, check, control, first_page, insert, insert_with_targets, list,
    new_task, scope, sub_tasks_for,
};
use taskd_store::{
    FileInsertOutcome, Store, StoreError, TargetOutcome, TaskControlOutcome, TaskControlParams,
    TaskFilter, TaskInsertParams,
};
use taskd_store_postgres::{PgStore, PgStoreOptions};
use tokio::task::JoinSet;

use crate::support::TestSchema;

/// A fresh schema, or return from the test when the PostgreSQL tests are skipped.
macro_rules! schema_or_skip {
    () => {
        match TestSchema::new().await {
            Some(schema) => schema,
            None => return,
        }
    };
}

async fn nodes(schema: &TestSchema, n: usize) -> Vec<Arc<PgStore>> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(Arc::new(schema.small_store(4).await));
    }
    nodes
}

async fn close_all(nodes: &[Arc<PgStore>]) {
    for node in nodes {
        node.close().await;
    }
}

/// `task_counts` holds exactly what counting the tasks gives, and every task's progress
/// counters exactly what counting its sub-tasks gives.
async fn assert_counts_exact(schema: &TestSchema) {
    let mut conn = schema.raw().await;
    type CountRow = (String, String, String, String, String, i64);
    let stored: Vec<CountRow> = sqlx::query_as(
        "SELECT project_id, instance_id, app_id, kind, state, n FROM task_counts \
         ORDER BY 1, 2, 3, 4, 5",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let counted: Vec<CountRow> = sqlx::query_as(
        "SELECT project_id, instance_id, COALESCE(app_id, ''), kind, state, COUNT(*) \
         FROM tasks GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(stored, counted, "task_counts vs the tasks");
    let off: Vec<i64> = sqlx::query_scalar(
        "SELECT t.id FROM tasks t LEFT JOIN ( \
           SELECT task_id, COUNT(*) AS total, \
             COUNT(*) FILTER (WHERE state = 'waiting') AS waiting, \
             COUNT(*) FILTER (WHERE state = 'processing') AS processing, \
             COUNT(*) FILTER (WHERE state = 'succeeded') AS succeeded, \
             COUNT(*) FILTER (WHERE state = 'failed') AS failed, \
             COUNT(*) FILTER (WHERE state = 'retry_waiting') AS retry_waiting, \
             COUNT(*) FILTER (WHERE state = 'stopped') AS stopped, \
             COUNT(*) FILTER (WHERE state = 'removed') AS removed \
           FROM sub_tasks GROUP BY task_id) s ON s.task_id = t.id \
         WHERE (t.n_total, t.n_waiting, t.n_processing, t.n_succeeded, t.n_failed, \
                t.n_retry_waiting, t.n_stopped, t.n_removed) \
           IS DISTINCT FROM (COALESCE(s.total, 0), COALESCE(s.waiting, 0), \
                COALESCE(s.processing, 0), COALESCE(s.succeeded, 0), COALESCE(s.failed, 0), \
                COALESCE(s.retry_waiting, 0), COALESCE(s.stopped, 0), COALESCE(s.removed, 0))",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(off, Vec::<i64>::new(), "tasks whose counters are off");
    conn.close().await.unwrap();
}

fn is_unreachable(e: &StoreError) -> bool {
    matches!(e, StoreError::Backend(_)) && e.to_string().contains("unreachable")
}

/// Many control calls on one task at once, from four nodes and many connections: they
/// take turns on the task's row lock, nothing fails, and every counter stays exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn control_from_many_nodes_keeps_counters() {
    const N: usize = 24;
    let schema = schema_or_skip!();
    let nodes = nodes(&schema, 4).await;
    let s = scope("p1", "");
    let targets: Vec<String> = (0..N).map(|i| format!("t{i:02}")).collect();
    let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    let t = insert_with_targets(&*nodes[0], &s, "t", &refs, T0).await;

    let mut calls = JoinSet::new();
    for round in 0..3 {
        for (i, target) in targets.iter().enumerate() {
            for op in [ControlOp::Confirm, ControlOp::Stop, ControlOp::Retry] {
                let node = nodes[(i + round) % nodes.len()].clone();
                let (s, target) = (s.clone(), target.clone());
                let now = at((round * 100 + i) as i64);
                calls.spawn(async move {
                    let out = control(&*node, &s, t.id, op, Some(&[target.as_str()]), now).await;
                    (op, true, out)
                });
            }
        }
        for op in [ControlOp::Confirm, ControlOp::Retry] {
            let node = nodes[round % nodes.len()].clone();
            let s = s.clone();
            calls.spawn(async move {
                let out = control(&*node, &s, t.id, op, None, at(round as i64 * 100)).await;
                (op, false, out)
            });
        }
    }
    let mut applied = 0;
    while let Some(joined) = calls.join_next().await {
        let (op, per_target, out) = joined.expect("control call panicked");
        match out {
            TaskControlOutcome::Applied { task, targets } => {
                assert_eq!(task.progress.sum_of_states(), task.progress.total);
                assert_eq!(targets.len(), usize::from(per_target));
                if let Some((_, outcome)) = targets.first() {
                    assert!(
                        matches!(
                            outcome,
                            TargetOutcome::Applied | TargetOutcome::StateRefused(_)
                        ),
                        "{op:?}: {outcome:?}"
                    );
                    applied += usize::from(*outcome == TargetOutcome::Applied);
                }
            }
            // Retry before anything was confirmed; anything once every target stopped.
            TaskControlOutcome::TaskStateRefused(TaskState::Waiting | TaskState::Stopped) => {}
            other => panic!("{op:?}: unexpected {other:?}"),
        }
    }
    assert!(
        applied >= N,
        "every target was stopped or confirmed at least once"
    );
    let task = check(&*nodes[1], &s, t.id).await;
    assert_eq!(task.progress.total, N as i64);
    assert_counts_exact(&schema).await;
    close_all(&nodes).await;
}

/// Four nodes insert at once, their clocks hours apart: each node's ids increase, no
/// two records share an id, and ids are handed out in commit order, so a reader paging
/// by marker never sees a task appear below one it has already seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inserts_from_several_nodes_get_ids_in_commit_order() {
    const PER_NODE: usize = 25;
    let schema = schema_or_skip!();
    let nodes = nodes(&schema, 4).await;
    let s = scope("p1", "");
    let done = Arc::new(AtomicBool::new(false));

    let watcher = {
        let (node, s, done) = (nodes[0].clone(), s.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen: BTreeSet<Id> = BTreeSet::new();
            let mut looks = 0;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let page = list(&*node, &s, TaskFilter::default(), first_page(1_000)).await;
                assert_eq!(
                    page.count,
                    page.items.len() as i64,
                    "page and count come from one snapshot"
                );
                let ids: BTreeSet<Id> = page.items.iter().map(|t| t.id).collect();
                assert!(seen.is_subset(&ids), "a committed task disappeared");
                if let Some(&newest_seen) = seen.last() {
                    for id in ids.difference(&seen) {
                        assert!(
                            *id > newest_seen,
                            "task {id} became visible after {newest_seen}: ids out of commit order"
                        );
                    }
                }
                seen = ids;
                looks += 1;
                if finished {
                    return (seen, looks);
                }
            }
        })
    };

    let mut inserters = JoinSet::new();
    for (k, node) in nodes.iter().enumerate() {
        let (node, s) = (node.clone(), s.clone());
        // Node 0 runs an hour ahead, node 3 two hours behind.
        let skew = 3_600_000 * (1 - k as i64);
        inserters.spawn(async move {
            let mut ids = Vec::with_capacity(PER_NODE);
            for i in 0..PER_NODE {
                let t = insert(
                    &*node,
                    new_task(&s, &format!("n{k}-{i}")),
                    sub_tasks_for(&["a", "b", "c"]),
                    at(skew + i as i64),
                )
                .await;
                ids.push(t.id);
            }
            (k, ids)
        });
    }
    let mut all: Vec<Id> = Vec::new();
    let mut fast_node_first = Id(0);
    while let Some(joined) = inserters.join_next().await {
        let (k, ids) = joined.expect("inserter panicked");
        if k == 0 {
            fast_node_first = ids[0];
        }
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "one node's ids increase: {ids:?}"
        );
        all.extend(ids);
    }
    done.store(true, Ordering::SeqCst);
    let (seen, looks) = watcher.await.expect("watcher panicked");
    assert!(looks > 1);

    all.sort();
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), all);
    // Each task owns its id and the next three (its sub-tasks): no overlaps.
    assert!(
        all.windows(2).all(|w| w[1].0 >= w[0].0 + 4),
        "id ranges overlap"
    );
    assert!(
        fast_node_first >= Id::floor_at(at(3_600_000).0),
        "the fast node's ids start at its clock's floor"
    );
    assert_eq!(
        assert_list_consistent(&*nodes[1], &s).await.len(),
        4 * PER_NODE
    );
    assert_counts_exact(&schema).await;
    close_all(&nodes).await;
}

/// Inserts, control ops and deletes from four nodes on one scope at once: no deadlock
/// (the allocator row, then task rows, then `task_counts` rows in state order), and the
/// counts stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_writers_on_one_scope_keep_the_counts() {
    let schema = schema_or_skip!();
    let nodes = nodes(&schema, 4).await;
    let s = scope("p1", "i1");
    let mut writers = JoinSet::new();
    for (k, node) in nodes.iter().enumerate() {
        let (node, s) = (node.clone(), s.clone());
        writers.spawn(async move {
            let store = &*node;
            for i in 0..12 {
                let mut new = new_task(&s, &format!("n{k}-{i}"));
                new.app_id = (i % 2 == 0).then(|| "app".to_owned());
                new.kind = if i % 3 == 0 { "k1" } else { "k2" }.to_owned();
                let now = at(i);
                let t = insert(store, new, sub_tasks_for(&["a", "b"]), now).await;
                let confirm = control(store, &s, t.id, ControlOp::Confirm, Some(&["a"]), now);
                assert!(matches!(confirm.await, TaskControlOutcome::Applied { .. }));
                if i % 4 != 3 {
                    let stop = control(store, &s, t.id, ControlOp::Stop, None, now).await;
                    assert!(matches!(stop, TaskControlOutcome::Applied { .. }));
                }
                if i % 4 == 0 {
                    let deleted = store.task_delete(&s, t.id).await.expect("delete");
                    assert_eq!(deleted, taskd_store::TaskDeleteOutcome::Deleted);
                }
            }
        });
    }
    while let Some(joined) = writers.join_next().await {
        joined.expect("writer panicked");
    }
    let all = assert_list_consistent(&*nodes[0], &s).await;
    assert_eq!(all.len(), 4 * 9);
    assert_counts_exact(&schema).await;
    close_all(&nodes).await;
}

/// Uploads to one scope from several nodes at once can't exceed the limit together.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_respect_the_file_limit() {
    let schema = schema_or_skip!();
    let nodes = nodes(&schema, 4).await;
    let s = scope("p1", "");
    let mut uploads = JoinSet::new();
    for i in 0..12 {
        let (node, s) = (nodes[i % nodes.len()].clone(), s.clone());
        uploads.spawn(async move {
            let file = NewTaskFile {
                scope: s,
                file_id: format!("f{i:02}"),
                file_name: "f.xlsx".into(),
                columns: vec!["node_id".into()],
                rows: vec![vec!["n1".into()]],
            };
            node.file_insert(file, 3, at(i as i64))
                .await
                .expect("upload")
        });
    }
    let mut inserted = 0;
    while let Some(joined) = uploads.join_next().await {
        if let FileInsertOutcome::Inserted(_) = joined.expect("upload panicked") {
            inserted += 1;
        }
    }
    assert_eq!(inserted, 3);
    assert_eq!(nodes[0].file_list(&s).await.unwrap().len(), 3);
    close_all(&nodes).await;
}

/// One access key registered for several projects at once, from several nodes: exactly
/// one project gets it, the others are told it conflicts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_credential_puts_for_one_key_conflict() {
    let schema = schema_or_skip!();
    let nodes = nodes(&schema, 4).await;
    let mut puts = JoinSet::new();
    for i in 0..8 {
        let node = nodes[i % nodes.len()].clone();
        puts.spawn(async move {
            let c = Credential {
                access_key: "AK".into(),
                secret_key: format!("secret-{i}"),
                project_id: format!("p{i}"),
                created_at: at(i as i64),
                revoked_at: None,
            };
            (node.credential_put(&c).await, c)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = puts.join_next().await {
        match joined.expect("put panicked") {
            (Ok(()), c) => winners.push(c),
            (Err(StoreError::Conflict(_)), _) => {}
            (Err(e), _) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    assert_eq!(
        nodes[0].credential_get("AK").await.unwrap(),
        Some(winners[0].clone())
    );
    close_all(&nodes).await;
}

/// Connecting again (a restart, a second node) finds the schema migrated and leaves it
/// as it is; nodes starting at once on an empty schema migrate it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent() {
    let schema = schema_or_skip!();
    let first = schema.store().await;
    let s = scope("p1", "");
    let t = insert_with_targets(&first, &s, "t", &["a"], T0).await;
    let second = schema.store().await;
    second.migrate().await.expect("migrate again");
    first.migrate().await.expect("and again");
    assert_eq!(second.task_get(&s, t.id).await.unwrap(), Some(t.clone()));
    let u = insert(&second, new_task(&s, "u"), vec![], T0).await;
    assert!(u.id > Id(t.id.0 + 1), "the id sequence survives");
    let mut raw = schema.raw().await;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut raw)
        .await
        .unwrap();
    // Every migration once.
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .is_ok_and(|f| f.file_name().to_string_lossy().ends_with(".sql"))
        })
        .count();
    assert_eq!(applied, files as i64);
    raw.close().await.unwrap();
    first.close().await;
    second.close().await;

    // Four nodes start together on a schema that doesn't exist yet.
    let empty = schema_or_skip!();
    let mut starts = JoinSet::new();
    for _ in 0..4 {
        let (url, name) = (empty.url.clone(), empty.name.clone());
        starts.spawn(async move {
            let options = PgStoreOptions {
                max_connections: 2,
                schema: Some(name),
                ..PgStoreOptions::default()
            };
            taskd_store_postgres::connect_with(&url, &options).await
        });
    }
    let mut stores = Vec::new();
    while let Some(joined) = starts.join_next().await {
        stores.push(joined.unwrap().expect("concurrent start"));
    }
    let t = insert_with_targets(&stores[0], &s, "t", &["a"], T0).await;
    for store in &stores {
        assert_eq!(store.task_get(&s, t.id).await.unwrap(), Some(t.clone()));
        store.close().await;
    }
}

/// A server that refuses connections, and one that accepts them but never answers: both
/// fail with "unreachable" within the acquire timeout instead of hanging. (Needs no
/// database, so it runs even when the PostgreSQL tests are skipped.)
#[tokio::test]
async fn an_unreachable_database_fails_within_the_acquire_timeout() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let options = PgStoreOptions {
        acquire_timeout: Duration::from_secs(1),
        ..PgStoreOptions::default()
    };
    let url = format!("postgres://postgres:secret@127.0.0.1:{closed_port}/postgres");
    let started = Instant::now();
    let err = taskd_store_postgres::connect_with(&url, &options)
        .await
        .expect_err("nothing listens there");
    let took = started.elapsed();
    assert!(is_unreachable(&err), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("127.0.0.1:{closed_port}")), "{msg}");
    assert!(!msg.contains("secret"), "the password stays out: {msg}");
    assert!(took < Duration::from_secs(3), "took {took:?}");

    // Accepted by the kernel (backlog), never answered: the default 5 s timeout applies.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = black_hole.local_addr().unwrap().port();
    let started = Instant::now();
    let err =
        taskd_store_postgres::connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres"))
            .await
            .expect_err("nobody answers");
    let took = started.elapsed();
    assert!(is_unreachable(&err), "{err}");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(8),
        "took {took:?}"
    );
    drop(black_hole);

    for bad_url in [
        "not a url",
        "postgres://u:secret@host:notaport/db",
        "postgres://u:secret@host/db?sslmode=sometimes",
    ] {
        match taskd_store_postgres::connect(bad_url).await {
            Err(e @ StoreError::Backend(_)) => {
                let msg = e.to_string();
                assert!(msg.contains("invalid PostgreSQL URL"), "{msg}");
                assert!(!msg.contains("secret"), "the password stays out: {msg}");
            }
            other => panic!("{bad_url}: {other:?}"),
        }
    }
    for bad in ["bad; name", "Upper", "1st", ""] {
        assert!(
            matches!(
                taskd_store_postgres::connect_with_schema("postgres://127.0.0.1:1/x", bad).await,
                Err(StoreError::Backend(e)) if e.to_string().contains("invalid schema name")
            ),
            "{bad:?}"
        );
    }
}

/// A connected store whose server goes away (here: a proxy in front of it dies) fails
/// every call with "unreachable" within the acquire timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_database_fails_calls_within_the_acquire_timeout() {
    let schema = schema_or_skip!();
    schema.store().await.close().await; // creates and migrates the schema
    let upstream: sqlx::postgres::PgConnectOptions = schema.url.parse().unwrap();
    let upstream_addr = format!("{}:{}", upstream.get_host(), upstream.get_port());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let proxy = tokio::spawn(async move {
        let mut links = JoinSet::new();
        loop {
            let (mut inbound, _) = listener.accept().await.unwrap();
            let upstream_addr = upstream_addr.clone();
            links.spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(upstream_addr).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    let url = proxied_url(&schema.url, port);
    let options = PgStoreOptions {
        acquire_timeout: Duration::from_secs(1),
        schema: Some(schema.name.clone()),
        ..PgStoreOptions::default()
    };
    let store = taskd_store_postgres::connect_with(&url, &options)
        .await
        .expect("through the proxy");
    let s = scope("p1", "");
    let t = insert_with_targets(&store, &s, "t", &["a"], T0).await;

    // The proxy, its listener and every link through it go away at once.
    proxy.abort();
    let _ = proxy.await;
    let started = Instant::now();
    let err = store
        .task_get(&s, t.id)
        .await
        .expect_err("the database is gone");
    assert!(is_unreachable(&err), "{err}");
    let err = store.ping().await.expect_err("still gone");
    assert!(is_unreachable(&err), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    store.close().await;
}

/// `TEST_DATABASE_URL` with its host and port replaced by the proxy's.
fn proxied_url(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (userinfo, host_and_path) = match rest.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let path = host_and_path
        .find(['/', '?'])
        .map_or("", |i| &host_and_path[i..]);
    match userinfo {
        Some(u) => format!("{scheme}://{u}@127.0.0.1:{port}{path}"),
        None => format!("{scheme}://127.0.0.1:{port}{path}"),
    }
}

/// A sub-task changed behind the counters' back: a whole-task op notices and writes
/// nothing; per target, the guarded update moves it from the state it really is in.
#[tokio::test]
async fn counters_out_of_step_are_reported_as_corrupt() {
    let schema = schema_or_skip!();
    let store = schema.store().await;
    let s = scope("p1", "");
    let t = insert_with_targets(&store, &s, "t", &["a", "b"], T0).await;
    let mut conn = schema.raw().await;
    sqlx::query("UPDATE sub_tasks SET state = 'processing' WHERE task_id = $1 AND target = 'a'")
        .bind(t.id.0)
        .execute(&mut conn)
        .await
        .unwrap();
    let res = store
        .task_control(TaskControlParams {
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
        sqlx::query_scalar("SELECT state FROM sub_tasks WHERE task_id = $1 AND target = 'b'")
            .bind(t.id.0)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(b, "waiting", "rolled back");

    let outcome = control(&store, &s, t.id, ControlOp::Confirm, Some(&["b"]), at(2)).await;
    assert!(matches!(outcome, TaskControlOutcome::Applied { .. }));
    conn.close().await.unwrap();
    store.close().await;
}

#[tokio::test]
async fn unknown_state_names_are_corrupt() {
    let schema = schema_or_skip!();
    let store = schema.store().await;
    let s = TaskScope::new("p1", "");
    let t = insert_with_targets(&store, &s, "t", &["a"], T0).await;
    let mut conn = schema.raw().await;
    // The CHECK constraint would refuse the bad name: take it away in this schema.
    sqlx::query("ALTER TABLE tasks DROP CONSTRAINT tasks_state_check")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE tasks SET state = 'Waitting' WHERE id = $1")
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
            .task_control(TaskControlParams {
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
/// `Some("")` selects the default space (list and count agree). PostgreSQL gets its own
/// `app_id IS NULL` statement for it.
#[tokio::test]
async fn an_empty_app_id_is_the_default_space() {
    let schema = schema_or_skip!();
    let store = schema.store().await;
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
    insert(&store, t, vec![], at(2)).await;
    for state in [None, Some(TaskState::Initializing)] {
        let filter = TaskFilter {
            app_id: Some(String::new()),
            state,
            ..TaskFilter::default()
        };
        let page = list(&store, &s, filter, first_page(10)).await;
        let ids: Vec<Id> = page.items.iter().map(|t| t.id).collect();
        let expected = if state.is_some() {
            vec![empty.id]
        } else {
            vec![none.id, empty.id]
        };
        assert_eq!(page.count, expected.len() as i64);
        assert_eq!(ids, expected);
    }
    store.close().await;
}

#[tokio::test]
async fn a_closed_store_refuses_work() {
    let schema = schema_or_skip!();
    let store = schema.store().await;
    store.ping().await.unwrap();
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    dyn_store.close().await;
    assert!(matches!(store.ping().await, Err(StoreError::Backend(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn benchmark_seeding_writes_what_task_insert_would() {
    let schema = schema_or_skip!();
    let store = schema.store().await;
    let scope = TaskScope::new("0123456789abcdef0123456789abcdef", "");
    // Two transactions' worth (100,000 each).
    store
        .seed_benchmark_tasks(&scope, 100_001, Timestamp(1_767_225_600_000))
        .await
        .unwrap();
    let filter = TaskFilter {
        state: Some(TaskState::Waiting),
        ..TaskFilter::default()
    };
    let page = list(&store, &scope, filter, first_page(2)).await;
    assert_eq!(page.count, 100_001);
    let newest = &page.items[0];
    assert!(newest.id > page.items[1].id);
    assert_eq!(newest.progress.total, 1);
    let subs =
        taskd_store::conformance::sub_list(&store, &scope, newest.id, None, None, first_page(10))
            .await
            .unwrap();
    assert_eq!(subs.count, 1);
    assert_eq!(subs.items[0].id.0, newest.id.0 + 1);
    // A task inserted after the seed lands above it.
    let t = insert(&store, new_task(&scope, "after"), vec![], Timestamp(0)).await;
    assert!(t.id > Id(newest.id.0 + 1));
    taskd_store::conformance::assert_task_consistent(&store, &scope, newest.id).await;
    assert_counts_exact(&schema).await;
    store.close().await;
}
