//! Query-plan checks: every listing and control statement is an index search, and the
//! pages come out of the index in id order (no sort). These are what keep a page deep in a
//! million tasks as cheap as the first one.

use crate::SqliteDriver;
use taskd_store_sql::control::{MOVE_ALL_SQL, find_sql, move_ids_sql};
use taskd_store_sql::driver::{DialectSql, Driver};
use taskd_store_sql::tasks::{
    AppFilter, SUB_TASK_BY_TARGET_SQL, SUB_TASK_PAGE_BY_STATE_SQL, SUB_TASK_PAGE_SQL, count_sql,
    list_sql,
};

async fn plan(store: &SqliteDriver, sql: &str) -> String {
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(explain))
        .fetch_all(&store.writer)
        .await
        .expect("explain");
    rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
}

/// Every step searches an index (no full scan, no temporary sort), using `index`.
async fn assert_searches(store: &SqliteDriver, sql: &str, index: &str) {
    let plan = plan(store, sql).await;
    // `SELECT EXISTS (...)` reads its one constant row; that is no table scan.
    // A list parameter is read through `json_each`, one row per element: that scan is
    // of the parameter, not of a table.
    let scans = plan
        .lines()
        .filter(|step| !step.contains("CONSTANT ROW") && !step.contains("json_each"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!scans.contains("SCAN "), "full scan in\n{sql}\n{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "sort in\n{sql}\n{plan}");
    assert!(plan.contains(index), "expected {index} in\n{sql}\n{plan}");
}

#[tokio::test]
async fn listing_and_control_statements_use_their_indexes() {
    let store = crate::open_in_memory().await.unwrap();
    assert_searches(
        &store,
        &list_sql(AppFilter::Any, false, false),
        "INDEX tasks_scope ",
    )
    .await;
    assert_searches(
        &store,
        &list_sql(AppFilter::Any, false, true),
        "INDEX tasks_scope_state",
    )
    .await;
    assert_searches(
        &store,
        &list_sql(AppFilter::Any, true, false),
        "INDEX tasks_scope_kind",
    )
    .await;
    assert_searches(
        &store,
        &list_sql(AppFilter::Named, false, false),
        "INDEX tasks_scope_app",
    )
    .await;
    assert_searches(
        &store,
        &list_sql(AppFilter::Default, false, false),
        "INDEX tasks_scope_app",
    )
    .await;
    for combo in [
        (AppFilter::Named, true, false),
        (AppFilter::Named, false, true),
        (AppFilter::Any, true, true),
        (AppFilter::Named, true, true),
        (AppFilter::Default, true, true),
    ] {
        assert_searches(
            &store,
            &list_sql(combo.0, combo.1, combo.2),
            "INDEX tasks_scope_",
        )
        .await;
    }
    for app in [false, true] {
        for kind in [false, true] {
            for state in [false, true] {
                assert_searches(&store, &count_sql(app, kind, state), "PRIMARY KEY").await;
            }
        }
    }
    assert_searches(&store, SUB_TASK_PAGE_SQL, "INDEX sub_tasks_task ").await;
    assert_searches(
        &store,
        SUB_TASK_PAGE_BY_STATE_SQL,
        "INDEX sub_tasks_task_state",
    )
    .await;
    assert_searches(
        &store,
        SUB_TASK_BY_TARGET_SQL,
        "INDEX sqlite_autoindex_sub_tasks_1",
    )
    .await;
    let find = find_sql::<SqliteDriver>();
    assert_searches(&store, &find, "INDEX sqlite_autoindex_sub_tasks_1").await; // (task_id, target)
    assert_searches(&store, &move_ids_sql::<SqliteDriver>(), "PRIMARY KEY").await;
    assert_searches(&store, MOVE_ALL_SQL, "INDEX sub_tasks_task_state").await;

    // The runner: claimable rows, due retries and expired leases come from their partial
    // indexes, never from a walk over a task's finished sub-tasks.
    assert_searches(
        &store,
        <SqliteDriver as Driver>::sql(DialectSql::ClaimRows),
        "INDEX sub_tasks_ready",
    )
    .await;
    assert_searches(
        &store,
        taskd_store_sql::run::RETRIES_DUE_SQL,
        "INDEX sub_tasks_retry_due",
    )
    .await;
    assert_searches(
        &store,
        taskd_store_sql::run::LEASES_EXPIRED_SQL,
        "INDEX sub_tasks_leases",
    )
    .await;
    assert_searches(&store, taskd_store_sql::run::HEARTBEAT_SQL, "PRIMARY KEY").await;
    // Reads only the tasks with something running (the partial index), never all tasks.
    let running = plan(
        &store,
        <SqliteDriver as Driver>::sql(DialectSql::ClaimRunning),
    )
    .await;
    assert_eq!(running, "SCAN tasks USING INDEX tasks_running", "{running}");
}

#[tokio::test]
async fn registry_statements_use_their_indexes() {
    use taskd_store_sql::registry::{
        DEVICE_GET_SQL, DeviceShape, GROUP_COUNT_SQL, GROUP_GET_SQL, GROUP_HAS_CHILDREN_SQL,
        GROUP_NAME_TAKEN_SQL, GROUPS_OF_DEVICE_SQL, GroupShape, HAS_SUB_DEVICES_SQL, IS_MEMBER_SQL,
        MEMBER_IDS_SQL, MEMBERS_OF_GROUP_SQL, device_count_sql, device_list_sql, group_count_sql,
        group_list_sql,
    };

    let store = crate::open_in_memory().await.unwrap();
    let shape = |f: fn(&mut DeviceShape)| {
        let mut s = DeviceShape::default();
        f(&mut s);
        s
    };
    // Each filter alone uses its own index; with several, one of them.
    for (s, index) in [
        (DeviceShape::default(), "INDEX devices_scope "),
        (shape(|s| s.product = true), "INDEX devices_scope_product"),
        (shape(|s| s.node = true), "INDEX devices_scope_node"),
        (shape(|s| s.name = true), "INDEX devices_scope_name"),
        (shape(|s| s.app = true), "INDEX devices_scope_app"),
        (
            shape(|s| s.gateway_by_root = Some(false)),
            "INDEX devices_scope_gateway",
        ),
        (
            shape(|s| s.gateway_by_root = Some(true)),
            "INDEX devices_scope_root",
        ),
        (shape(|s| s.from = true), "INDEX devices_scope"),
        (
            shape(|s| {
                s.product = true;
                s.app = true;
                s.to = true;
            }),
            "INDEX devices_scope_",
        ),
        (
            shape(|s| {
                s.node = true;
                s.name = true;
                s.gateway_by_root = Some(false);
            }),
            "INDEX devices_scope_",
        ),
    ] {
        assert_searches(&store, &device_list_sql(s), index).await;
        // A count may as well range over the primary key's scope prefix.
        assert_searches(&store, &device_count_sql(s), "SEARCH devices USING").await;
    }
    let group_shapes = [
        GroupShape::default(),
        GroupShape {
            app: true,
            ..GroupShape::default()
        },
        GroupShape {
            name: true,
            modified: true,
            ..GroupShape::default()
        },
    ];
    for s in group_shapes {
        assert_searches(&store, &group_list_sql(s), "INDEX device_groups_").await;
        assert_searches(&store, &group_count_sql(s), "SEARCH device_groups USING").await;
    }
    for (sql, index) in [
        (DEVICE_GET_SQL, "PRIMARY KEY"),
        (HAS_SUB_DEVICES_SQL, "INDEX devices_scope_gateway"),
        (GROUP_GET_SQL, "PRIMARY KEY"),
        (GROUP_COUNT_SQL, "SEARCH device_groups USING"),
        (GROUP_NAME_TAKEN_SQL, "INDEX device_groups_name"),
        (GROUP_HAS_CHILDREN_SQL, "INDEX device_groups_parent"),
        (GROUPS_OF_DEVICE_SQL, "INDEX device_group_members_device"),
        (MEMBERS_OF_GROUP_SQL, "PRIMARY KEY"),
        (IS_MEMBER_SQL, "PRIMARY KEY"),
        (MEMBER_IDS_SQL, "PRIMARY KEY"),
    ] {
        assert_searches(&store, sql, index).await;
    }
}

/// The executor's entry point: applied in the caller's transaction, which decides; a
/// refusal leaves nothing behind even when the caller commits.
#[tokio::test]
async fn device_effects_apply_in_the_callers_transaction() {
    use taskd_core::{AuthType, NewDevice, TaskScope, Timestamp};
    use taskd_store::{DeviceEffect, DeviceEffectRefused, Store};

    use taskd_store_sql::registry::apply_device_effect;

    use crate::SqliteDriver as Driver;
    use crate::driver::SqliteConn;

    let store = crate::open_in_memory().await.unwrap();
    let scope = TaskScope::new("p", "");
    let now = Timestamp(1_767_225_600_000);
    let create = DeviceEffect::Create(NewDevice {
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

    // Rolled back by the caller: nothing stays.
    let mut tx = crate::begin_write(&store).await.unwrap();
    assert_eq!(
        apply_device_effect::<Driver>(&mut SqliteConn(&mut *tx), &scope, &create, now)
            .await
            .unwrap(),
        Ok(())
    );
    tx.rollback().await.unwrap();
    assert_eq!(store.device_get(&scope, "prod_n1").await.unwrap(), None);

    // Committed by the caller: it stays; applying it again is refused and, committed,
    // changes nothing.
    let mut tx = crate::begin_write(&store).await.unwrap();
    apply_device_effect::<Driver>(&mut SqliteConn(&mut *tx), &scope, &create, now)
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    let before = store.device_get(&scope, "prod_n1").await.unwrap().unwrap();
    let mut tx = crate::begin_write(&store).await.unwrap();
    assert_eq!(
        apply_device_effect::<Driver>(
            &mut SqliteConn(&mut *tx),
            &scope,
            &create,
            now.plus_millis(1)
        )
        .await
        .unwrap(),
        Err(DeviceEffectRefused {
            error_code: "IOTDA.014031".into(),
            error_msg: "Invalid input. The device already exists.".into(),
        })
    );
    let missing = DeviceEffect::Freeze {
        device_id: "nope".into(),
    };
    assert_eq!(
        apply_device_effect::<Driver>(&mut SqliteConn(&mut *tx), &scope, &missing, now)
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
}

#[tokio::test]
async fn device_channel_statements_use_their_indexes() {
    use taskd_store_sql::channel::{
        EXPIRE_SQL, LOGINS_SQL, MESSAGE_COUNT_SQL, MESSAGE_GET_SQL, MESSAGE_LIST_SQL,
        MESSAGES_PENDING_SQL, NEXT_EXPIRY_SQL, PENDING_COUNT_SQL, SESSION_GET_SQL,
        SESSIONS_OF_NODE_SQL,
    };

    let store = crate::open_in_memory().await.unwrap();
    for (sql, index) in [
        (LOGINS_SQL, "INDEX devices_device_id"),
        (SESSION_GET_SQL, "PRIMARY KEY"),
        (SESSIONS_OF_NODE_SQL, "INDEX device_sessions_node"),
        (MESSAGE_GET_SQL, "PRIMARY KEY"),
        (MESSAGE_LIST_SQL, "INDEX device_messages_device"),
        (MESSAGES_PENDING_SQL, "INDEX device_messages_device_status"),
        (PENDING_COUNT_SQL, "INDEX device_messages_device_status"),
        (MESSAGE_COUNT_SQL, "device_messages"),
        (NEXT_EXPIRY_SQL, "INDEX device_messages_expiry"),
    ] {
        // A login lookup across scopes sorts its few rows by scope: no index range gives
        // that order, and a device id has one row per scope at most.
        if sql == LOGINS_SQL {
            let plan = plan(&store, sql).await;
            assert!(plan.contains(index) && !plan.contains("SCAN "), "{plan}");
            continue;
        }
        assert_searches(&store, sql, index).await;
    }
    let plan = plan(&store, EXPIRE_SQL).await;
    assert!(plan.contains("INDEX device_messages_expiry"), "{plan}");
    assert!(!plan.contains("SCAN device_messages"), "{plan}");
}

/// A device's history stays at `MAX_MESSAGES_PER_DEVICE`: an insert past it deletes the
/// oldest final messages, never a pending one. (Seeded in one statement: 10,000 inserts
/// through the store would take the suite too long, so this runs on SQLite only.)
#[tokio::test]
async fn message_history_is_bounded_by_purging_the_oldest_final_ones() {
    use taskd_core::{AuthType, NewDevice, TaskScope, Timestamp};
    use taskd_store::{MAX_MESSAGES_PER_DEVICE, NewDeviceMessage, Store};

    let store = crate::open_in_memory().await.unwrap();
    let scope = TaskScope::new("p1", "");
    let now = Timestamp(1_700_000_000_000);
    store
        .device_insert(
            NewDevice {
                scope: scope.clone(),
                device_id: "d1".into(),
                node_id: "n1".into(),
                product_id: "p".into(),
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
            },
            now,
        )
        .await
        .unwrap()
        .unwrap();
    // Ids 1..=MAX: the first pending, the rest delivered.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
         INSERT INTO device_messages (project_id, instance_id, device_id, message_id, id, \
         message_json, encoding, payload_format, status, created_at, finished_at) \
         SELECT 'p1', '', 'd1', 'seed-' || i, i, '{}', 'none', 'standard', \
         CASE WHEN i = 1 THEN 'PENDING' ELSE 'DELIVERED' END, 0, \
         CASE WHEN i = 1 THEN NULL ELSE 1 END FROM n",
    )
    .bind(MAX_MESSAGES_PER_DEVICE)
    .execute(&store.writer)
    .await
    .unwrap();
    let message = NewDeviceMessage {
        scope: scope.clone(),
        device_id: "d1".into(),
        message_id: "new".into(),
        name: None,
        message_json: "{}".into(),
        encoding: "none".into(),
        payload_format: "standard".into(),
        topic: None,
        topic_full_name: None,
        properties_json: None,
        expires_at: None,
    };
    store.message_insert(message, now).await.unwrap().unwrap();
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM device_messages")
        .fetch_one(&store.writer)
        .await
        .unwrap();
    assert_eq!(n, MAX_MESSAGES_PER_DEVICE);
    for (id, kept) in [
        ("seed-1", true),
        ("seed-2", false),
        ("seed-3", true),
        ("new", true),
    ] {
        let found = store.message_get(&scope, "d1", id).await.unwrap();
        assert_eq!(found.is_some(), kept, "{id}");
    }
}
