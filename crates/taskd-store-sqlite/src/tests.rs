//! Query-plan checks: every listing and control statement is an index search, and the
//! pages come out of the index in id order (no sort). These are what keep a page deep in a
//! million tasks as cheap as the first one.

use crate::SqliteStore;
use crate::control::{FIND_SQL, MOVE_ALL_SQL};
use crate::tasks::{
    SUB_TASK_BY_TARGET_SQL, SUB_TASK_PAGE_BY_STATE_SQL, SUB_TASK_PAGE_SQL, count_sql, list_sql,
};

async fn plan(store: &SqliteStore, sql: &str) -> String {
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(explain))
        .fetch_all(&store.writer)
        .await
        .expect("explain");
    rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("\n")
}

/// Every step searches an index (no full scan, no temporary sort), using `index`.
async fn assert_searches(store: &SqliteStore, sql: &str, index: &str) {
    let plan = plan(store, sql).await;
    assert!(!plan.contains("SCAN "), "full scan in\n{sql}\n{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "sort in\n{sql}\n{plan}");
    assert!(plan.contains(index), "expected {index} in\n{sql}\n{plan}");
}

#[tokio::test]
async fn listing_and_control_statements_use_their_indexes() {
    let store = SqliteStore::open_in_memory().await.unwrap();
    assert_searches(&store, list_sql(false, false, false), "INDEX tasks_scope ").await;
    assert_searches(
        &store,
        list_sql(false, false, true),
        "INDEX tasks_scope_state",
    )
    .await;
    assert_searches(
        &store,
        list_sql(false, true, false),
        "INDEX tasks_scope_kind",
    )
    .await;
    assert_searches(
        &store,
        list_sql(true, false, false),
        "INDEX tasks_scope_app",
    )
    .await;
    for combo in [
        (true, true, false),
        (true, false, true),
        (false, true, true),
        (true, true, true),
    ] {
        assert_searches(
            &store,
            list_sql(combo.0, combo.1, combo.2),
            "INDEX tasks_scope_",
        )
        .await;
    }
    for app in [false, true] {
        for kind in [false, true] {
            for state in [false, true] {
                assert_searches(&store, count_sql(app, kind, state), "PRIMARY KEY").await;
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
    assert_searches(&store, FIND_SQL, "INDEX sqlite_autoindex_sub_tasks_1").await; // (task_id, target)
    assert_searches(&store, MOVE_ALL_SQL, "INDEX sub_tasks_task_state").await;
}
