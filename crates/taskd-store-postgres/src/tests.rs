//! Query-plan checks: on a database holding one big scope and one small, old one, every
//! listing and control statement is a range scan of its own index, in id order (no
//! sort), for the small scope too. A plan that walked the primary key backwards would
//! read every newer task of the big scope to fill the small scope's page.
//!
//! Needs `TEST_DATABASE_URL` like the integration tests (`tests/it/support.rs`), and
//! works in a schema of its own.

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::AssertSqlSafe;
use taskd_core::{ControlOp, Id, NewSubTask, NewTask, TaskScope, Timestamp};
use taskd_store::{ClaimParams, RunLimits, Store, TaskControlParams, TaskInsertParams};

use crate::{PgDriver, PgStoreOptions};
use taskd_store_sql::control::{MOVE_ALL_SQL, find_sql, move_ids_sql};
use taskd_store_sql::tasks::{
    AppFilter, SUB_TASK_BY_TARGET_SQL, SUB_TASK_PAGE_BY_STATE_SQL, SUB_TASK_PAGE_SQL, list_sql,
};

const NOW: Timestamp = Timestamp(1_767_225_600_000);

fn database_url() -> Option<String> {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL")
        && !url.is_empty()
    {
        return Some(url);
    }
    if std::env::var("TASKD_SKIP_POSTGRES").as_deref() == Ok("1") {
        eprintln!("skipped: TASKD_SKIP_POSTGRES=1 and TEST_DATABASE_URL is not set");
        return None;
    }
    panic!(
        "TEST_DATABASE_URL is not set, so the PostgreSQL store can't be tested. Set it, e.g. \
         TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres (scripts/test does), \
         or set TASKD_SKIP_POSTGRES=1 to skip these tests explicitly."
    );
}

fn new_task(scope: &TaskScope, app: Option<&str>, kind: &str) -> NewTask {
    NewTask {
        scope: scope.clone(),
        app_id: app.map(str::to_owned),
        name: "t".into(),
        kind: kind.into(),
        mode: None,
        need_confirm: false,
        ext_info_json: None,
        targets_json: None,
        targets_filter_json: None,
        document_json: None,
        document_source: None,
        schedule_at: None,
        retry: None,
        operation: None,
    }
}

fn targets(n: usize) -> Vec<NewSubTask> {
    (0..n)
        .map(|i| NewSubTask {
            target: format!("dev-{i:05}"),
            input_json: None,
        })
        .collect()
}

/// The plan of `sql` with its parameters bound, one line per node.
async fn plan(store: &PgDriver, sql: &str, binds: Vec<Bind<'_>>) -> String {
    let explain = format!("EXPLAIN {sql}");
    let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(explain));
    for b in binds {
        q = match b {
            Bind::Int(v) => q.bind(v),
            Bind::Text(v) => q.bind(v),
            Bind::Ints(v) => q.bind(v),
            Bind::Texts(v) => q.bind(v),
        };
    }
    // In a read transaction, as the listings run (with their planner settings).
    let mut tx = crate::begin_read(store).await.unwrap();
    let plan = q
        .fetch_all(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("explain {sql}: {e}"))
        .join("\n");
    tx.rollback().await.unwrap();
    plan
}

enum Bind<'a> {
    Int(i64),
    Text(&'a str),
    Ints(Vec<i64>),
    Texts(Vec<&'a str>),
}
use Bind::{Int, Ints, Text, Texts};

/// The plan scans `index` (a name or a prefix of names), with no sort and no full scan.
fn assert_scans(plan: &str, index: &str, sql: &str) {
    assert!(
        plan.contains(&format!(" using {index}")),
        "expected {index} in\n{sql}\n{plan}"
    );
    for bad in ["Seq Scan", "Sort", "Bitmap"] {
        assert!(!plan.contains(bad), "{bad} in\n{sql}\n{plan}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_scan_their_indexes_for_small_and_big_scopes() {
    let Some(url) = database_url() else {
        return;
    };
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The integration tests' naming, so their clean-up also finds a schema left here.
    let schema = format!("taskd_test_{secs}_{}_plans", std::process::id());
    let options = PgStoreOptions {
        schema: Some(schema.clone()),
        ..PgStoreOptions::default()
    };
    let _drop = DropSchema {
        url: url.clone(),
        schema: schema.clone(),
    };
    let store = crate::connect_with(&url, &options).await.expect("connect");
    let setting = "SELECT current_setting('plan_cache_mode') || ' ' || current_setting('search_path') \
         || ' ' || current_setting('idle_in_transaction_session_timeout')";
    let outside: String = sqlx::query_scalar(setting)
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(outside, format!("auto {schema} 30s"));
    let mut tx = crate::begin_read(&store).await.unwrap();
    let inside: String = sqlx::query_scalar(setting)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(inside, format!("force_custom_plan {schema} 30s"));

    // The small scope first (its tasks are the oldest), with a task of 3,000 targets...
    let small = TaskScope::new("small", "i1");
    let mut big_task = Id(0);
    for i in 0..30 {
        let app = (i % 2 == 0).then_some("a1");
        let kind = if i % 3 == 0 { "k1" } else { "k2" };
        let n = if i == 0 { 3_000 } else { 2 };
        let t = store
            .task_insert(TaskInsertParams {
                task: new_task(&small, app, kind),
                sub_tasks: targets(n),
                now: NOW,
            })
            .await
            .unwrap();
        if i == 0 {
            big_task = t.id;
            // A few processing sub-tasks among many waiting: the state index pays off.
            let claimed = store
                .sub_task_claim(ClaimParams {
                    worker_id: "w".into(),
                    project_id: Some("small".into()),
                    kinds: vec!["k1".into()],
                    max: 2,
                    lease_until: NOW,
                    limits: RunLimits {
                        max_running: 100,
                        max_running_per_project: 100,
                    },
                    now: NOW,
                })
                .await
                .unwrap();
            assert_eq!(claimed.len(), 2);
        }
        if i % 4 == 1 {
            store
                .task_control(TaskControlParams {
                    scope: small.clone(),
                    task_id: t.id,
                    op: ControlOp::Stop,
                    targets: None,
                    now: NOW,
                })
                .await
                .unwrap();
        }
    }
    // ...then a big scope of newer tasks, one sub-task each.
    let big = TaskScope::new("big", "");
    store.seed_benchmark_tasks(&big, 20_000, NOW).await.unwrap();
    sqlx::query("ANALYZE").execute(&store.pool).await.unwrap();

    // The small scope's first page must come from a scope index: the primary key from
    // the top would pass every task of the big scope first. (Which one is the planner's
    // call: for 30 tasks the plain scope index and a filter is as good as any.) Below a
    // marker deep in the small scope, or in the big scope, where almost every row passes,
    // a range of the primary key is as good. Never a sort or a full scan.
    let deep_small = Id(big_task.0 + 3_001 + 10 * 3);
    for (scope, marker, scope_index_only) in [
        (&small, Id::MAX, true),
        (&small, deep_small, false),
        (&big, Id::MAX, false),
        (&big, Id(big_task.0 + 3_001 + 60 + 20_000), false),
    ] {
        for app in [AppFilter::Any, AppFilter::Named, AppFilter::Default] {
            for kind in [false, true] {
                for state in [false, true] {
                    let sql = list_sql(app, kind, state);
                    let (p, i) = (&scope.project_id, &scope.instance_id);
                    let mut binds = vec![Text(p), Text(i), Int(marker.0), Int(50), Int(0)];
                    if app == AppFilter::Named {
                        binds.push(Text("a1"));
                    }
                    if kind {
                        binds.push(Text("k1"));
                    }
                    if state {
                        binds.push(Text("waiting"));
                    }
                    let plan = plan(&store, &sql, binds).await;
                    let index = if !scope_index_only && plan.contains(" using tasks_pkey on ") {
                        "tasks_pkey"
                    } else {
                        "tasks_scope"
                    };
                    assert_scans(&plan, index, &sql);
                }
            }
        }
    }

    // The first page of the oldest task: walking the primary key from the top would pass
    // every newer sub-task first.
    let marker = Int(Id::MAX.0);
    let find = find_sql::<PgDriver>();
    let move_ids = move_ids_sql::<PgDriver>();
    let sub_cases = [
        (
            SUB_TASK_PAGE_SQL,
            vec![Int(big_task.0), marker, Int(50), Int(0)],
            "sub_tasks_task",
        ),
        (
            SUB_TASK_PAGE_BY_STATE_SQL,
            vec![
                Int(big_task.0),
                Int(Id::MAX.0),
                Int(50),
                Int(0),
                Text("processing"),
            ],
            "sub_tasks_task_state",
        ),
        (
            SUB_TASK_BY_TARGET_SQL,
            vec![Int(big_task.0), Text("dev-00007")],
            "sub_tasks_task_target",
        ),
        (
            find.as_str(),
            vec![Int(big_task.0), Texts(vec!["dev-00007", "dev-00008"])],
            "sub_tasks_task_target",
        ),
        (
            MOVE_ALL_SQL,
            vec![
                Text("stop"),
                Int(1),
                Text("stopped"),
                Int(1),
                Int(big_task.0),
                Text("processing"),
            ],
            "sub_tasks_task_state",
        ),
        (
            move_ids.as_str(),
            vec![
                Text("confirm"),
                Int(1),
                Text("waiting"),
                Int(1),
                Ints(vec![big_task.0 + 1, big_task.0 + 2]),
                Text("waiting"),
            ],
            "sub_tasks_pkey",
        ),
    ];
    for (sql, binds, index) in sub_cases {
        let plan = plan(&store, sql, binds).await;
        assert_scans(&plan, index, sql);
    }

    // The runner: claimable rows, due retries and expired leases come from their partial
    // indexes, never from a walk over a task's finished sub-tasks. (Here the planner may
    // sort the few rows it expects; what matters is which rows it reads.)
    let runner_cases: [(&str, Vec<Bind<'_>>, &str); 3] = [
        (
            "SELECT id FROM sub_tasks WHERE task_id = $1 AND state = 'waiting' \
             AND ready_at IS NOT NULL AND ready_at <= $2 ORDER BY id LIMIT $3",
            vec![Int(big_task.0), Int(NOW.0), Int(100)],
            "sub_tasks_ready",
        ),
        (
            taskd_store_sql::run::LEASES_EXPIRED_SQL,
            vec![Int(NOW.0 + 1), Int(100)],
            "sub_tasks_leases",
        ),
        (
            taskd_store_sql::run::RETRIES_DUE_SQL,
            vec![Int(NOW.0 + 1), Int(100)],
            "sub_tasks_retry_due",
        ),
    ];
    for (sql, binds, index) in runner_cases {
        let plan = plan(&store, sql, binds).await;
        assert!(plan.contains(index), "expected {index} in\n{sql}\n{plan}");
        assert!(!plan.contains("Seq Scan"), "full scan in\n{sql}\n{plan}");
    }

    store.close().await;
}

/// Drops the test's schema when the test ends, passed or not (`Drop` can't await: a
/// thread with a runtime of its own does it).
struct DropSchema {
    url: String,
    schema: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(sqlx::Error::Io)?;
            rt.block_on(async {
                let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await?;
                sqlx::query("SET lock_timeout = '10s'")
                    .execute(&mut conn)
                    .await?;
                sqlx::query(AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                )))
                .execute(&mut conn)
                .await
                .map(drop)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test schema {}", self.schema);
        }
    }
}

/// A store in a schema of its own, dropped with the guard.
async fn fresh_store(suffix: &str) -> Option<(crate::PgStore, DropSchema)> {
    let url = database_url()?;
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let schema = format!("taskd_test_{secs}_{}_{suffix}", std::process::id());
    let guard = DropSchema {
        url: url.clone(),
        schema: schema.clone(),
    };
    let options = PgStoreOptions {
        schema: Some(schema),
        ..PgStoreOptions::default()
    };
    let store = crate::connect_with(&url, &options).await.expect("connect");
    Some((store, guard))
}

/// Every registry statement has an index path: with sequential scans, bitmaps and sorts
/// priced out, none of them appears (tables this small would otherwise be read whole).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_statements_have_index_paths() {
    use taskd_store_sql::registry::{
        DEVICE_GET_SQL, DeviceShape, GROUP_COUNT_SQL, GROUP_GET_SQL, GROUP_HAS_CHILDREN_SQL,
        GROUP_NAME_TAKEN_SQL, GROUPS_OF_DEVICE_SQL, GroupShape, HAS_SUB_DEVICES_SQL, IS_MEMBER_SQL,
        MEMBER_IDS_SQL, MEMBERS_OF_GROUP_SQL, device_count_sql, device_list_sql, group_count_sql,
        group_list_sql,
    };

    let Some((store, _drop)) = fresh_store("registry_plans").await else {
        return;
    };
    async fn plan_of(store: &PgDriver, sql: &str, params: usize) -> String {
        let mut tx = crate::begin_read(store).await.unwrap();
        for setting in [
            "SET LOCAL enable_seqscan = off",
            "SET LOCAL enable_bitmapscan = off",
            "SET LOCAL enable_sort = off",
        ] {
            sqlx::query(setting).execute(&mut *tx).await.unwrap();
        }
        // Generic plans: every parameter unknown, text (the planner infers the rest).
        let types = vec!["unknown"; params].join(", ");
        let prepare = format!("PREPARE registry_plan ({types}) AS {sql}");
        sqlx::raw_sql(AssertSqlSafe(prepare))
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("prepare {sql}: {e}"));
        let args = (0..params).map(|_| "NULL").collect::<Vec<_>>().join(", ");
        let explain = if params == 0 {
            "EXPLAIN EXECUTE registry_plan".to_string()
        } else {
            format!("EXPLAIN EXECUTE registry_plan ({args})")
        };
        sqlx::query("SET LOCAL plan_cache_mode = force_generic_plan")
            .execute(&mut *tx)
            .await
            .unwrap();
        let plan = sqlx::query_scalar::<_, String>(AssertSqlSafe(explain))
            .fetch_all(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("explain {sql}: {e}"))
            .join("\n");
        // A prepared statement outlives the transaction.
        sqlx::query("DEALLOCATE registry_plan")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        plan
    }
    fn assert_indexed(plan: &str, sql: &str) {
        for bad in ["Seq Scan", "Sort", "Bitmap"] {
            assert!(!plan.contains(bad), "{bad} in\n{sql}\n{plan}");
        }
        assert!(plan.contains("Index"), "no index in\n{sql}\n{plan}");
    }

    let shapes = [
        DeviceShape::default(),
        DeviceShape {
            product: true,
            ..DeviceShape::default()
        },
        DeviceShape {
            node: true,
            from: true,
            ..DeviceShape::default()
        },
        DeviceShape {
            name: true,
            ..DeviceShape::default()
        },
        DeviceShape {
            app: true,
            to: true,
            ..DeviceShape::default()
        },
        DeviceShape {
            gateway_by_root: Some(false),
            ..DeviceShape::default()
        },
        DeviceShape {
            gateway_by_root: Some(true),
            product: true,
            ..DeviceShape::default()
        },
    ];
    let filters = |s: DeviceShape| {
        [
            s.product,
            s.node,
            s.name,
            s.app,
            s.gateway_by_root.is_some(),
            s.from,
            s.to,
        ]
        .into_iter()
        .filter(|b| *b)
        .count()
    };
    for s in shapes {
        let sql = device_list_sql(s);
        assert_indexed(&plan_of(&store, &sql, 5 + filters(s)).await, &sql);
        let sql = device_count_sql(s);
        assert_indexed(&plan_of(&store, &sql, 2 + filters(s)).await, &sql);
    }
    for (s, n) in [
        (GroupShape::default(), 0),
        (
            GroupShape {
                app: true,
                name: true,
                modified: true,
            },
            3,
        ),
    ] {
        let sql = group_list_sql(s);
        assert_indexed(&plan_of(&store, &sql, 5 + n).await, &sql);
        let sql = group_count_sql(s);
        assert_indexed(&plan_of(&store, &sql, 2 + n).await, &sql);
    }
    for (sql, n) in [
        (DEVICE_GET_SQL, 3),
        (HAS_SUB_DEVICES_SQL, 3),
        (GROUP_GET_SQL, 3),
        (GROUP_COUNT_SQL, 2),
        (GROUP_NAME_TAKEN_SQL, 4),
        (GROUP_HAS_CHILDREN_SQL, 3),
        (GROUPS_OF_DEVICE_SQL, 3),
        (MEMBERS_OF_GROUP_SQL, 3),
        (IS_MEMBER_SQL, 4),
        (MEMBER_IDS_SQL, 3),
    ] {
        assert_indexed(&plan_of(&store, sql, n).await, sql);
    }
    store.close().await;
}

/// The executor's entry point: applied in the caller's transaction, which decides; a
/// refusal leaves nothing behind even when the caller commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_effects_apply_in_the_callers_transaction() {
    use taskd_core::AuthType;
    use taskd_store::{DeviceEffect, DeviceEffectRefused};

    use taskd_store_sql::registry::apply_device_effect;

    use crate::PgDriver as Driver;
    use crate::driver::PgConn;

    let Some((store, _drop)) = fresh_store("registry_effects").await else {
        return;
    };
    let scope = TaskScope::new("p", "");
    let create = DeviceEffect::Create(taskd_core::NewDevice {
        scope: scope.clone(),
        device_id: "prod_n1".into(),
        node_id: "n1".into(),
        product_id: "prod".into(),
        device_name: None,
        description: None,
        gateway_id: None,
        app_id: None,
        auth_type: AuthType::Secret,
        secret: None,
        fingerprint: None,
        secure_access: false,
        timeout: 0,
        extension_info_json: None,
    });

    let mut tx = crate::begin_write(&store).await.unwrap();
    assert_eq!(
        apply_device_effect::<Driver>(&mut PgConn(&mut *tx), &scope, &create, NOW)
            .await
            .unwrap(),
        Ok(())
    );
    tx.rollback().await.unwrap();
    assert_eq!(store.device_get(&scope, "prod_n1").await.unwrap(), None);

    let mut tx = crate::begin_write(&store).await.unwrap();
    apply_device_effect::<Driver>(&mut PgConn(&mut *tx), &scope, &create, NOW)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    let before = store.device_get(&scope, "prod_n1").await.unwrap().unwrap();
    let mut tx = crate::begin_write(&store).await.unwrap();
    assert_eq!(
        apply_device_effect::<Driver>(&mut PgConn(&mut *tx), &scope, &create, NOW.plus_millis(1))
            .await
            .unwrap(),
        Err(DeviceEffectRefused {
            error_code: "IOTDA.014031".into(),
            error_msg: "Invalid input. The device already exists.".into(),
        })
    );
    let missing = DeviceEffect::Unfreeze {
        device_id: "nope".into(),
    };
    assert_eq!(
        apply_device_effect::<Driver>(&mut PgConn(&mut *tx), &scope, &missing, NOW)
            .await
            .unwrap()
            .unwrap_err()
            .error_code,
        "IOTDA.014000"
    );
    tx.commit().await.unwrap();
    assert_eq!(
        store.device_get(&scope, "prod_n1").await.unwrap(),
        Some(before)
    );
    store.close().await;
}

/// Two nodes inserting the same device at once: one wins, the other is refused (never a
/// unique-key error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_device_inserts_refuse_the_loser() {
    use taskd_core::AuthType;

    let Some((store, _drop)) = fresh_store("registry_race").await else {
        return;
    };
    let scope = TaskScope::new("p", "i");
    let new = taskd_core::NewDevice {
        scope: scope.clone(),
        device_id: "prod_n1".into(),
        node_id: "n1".into(),
        product_id: "prod".into(),
        device_name: None,
        description: None,
        gateway_id: None,
        app_id: None,
        auth_type: AuthType::Secret,
        secret: None,
        fingerprint: None,
        secure_access: false,
        timeout: 0,
        extension_info_json: None,
    };
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, new) = (store.clone(), new.clone());
            tokio::spawn(async move { store.device_insert(new, NOW).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap().expect("no store error") {
            Ok(_) => won += 1,
            Err(r) => assert_eq!(r, taskd_store::RegistryRefusal::DeviceExists),
        }
    }
    assert_eq!(won, 1);
    store.close().await;
}
