//! The legacy northbound API's storage: apps, tokens, flow control, device attributes,
//! legacy operations and task deadlines.

use std::sync::Arc;

use taskd_core::{RetryPolicy, SubTaskState, TaskScope, TaskState, Timestamp};

use super::devices::new_device;
use super::{T0, assert_task_consistent, at, check, claim_all, new_task, scope, sub_tasks_for};
use crate::{
    DeviceAttributes, LegacyApp, LegacyOperation, LegacyTaskListParams, LegacyTokens,
    ReportOutcome, ReportParams, RunOutcome, RunResult, Store, StoreError, TIMEOUT_ERROR_CODE,
    TaskInsertParams,
};

fn app(id: &str, project: &str, hash: &str) -> LegacyApp {
    LegacyApp {
        app_id: id.to_owned(),
        project_id: project.to_owned(),
        secret_hash: hash.to_owned(),
        created_at: T0,
        revoked_at: None,
    }
}

fn tokens(app_id: &str, access: &str, now: Timestamp) -> LegacyTokens {
    LegacyTokens {
        app_id: app_id.to_owned(),
        access_hash: access.to_owned(),
        access_expires_at: now.plus_millis(3_600_000),
        refresh_hash: format!("r-{access}"),
        refresh_expires_at: now.plus_millis(86_400_000),
        issued_at: now,
    }
}

pub async fn legacy_apps_and_tokens(store: Arc<dyn Store>) {
    let store = &*store;
    store.legacy_app_put(&app("a1", "p1", "h1")).await.unwrap();
    store.legacy_app_put(&app("a2", "p2", "h2")).await.unwrap();
    let got = store.legacy_app_get("a1").await.unwrap().expect("a1");
    assert_eq!(got, app("a1", "p1", "h1"));
    assert!(store.legacy_app_get("nope").await.unwrap().is_none());
    assert!(matches!(
        store.legacy_app_put(&app("a1", "p2", "x")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .legacy_app_get("a1")
            .await
            .unwrap()
            .unwrap()
            .secret_hash,
        "h1"
    );
    let ids: Vec<String> = store
        .legacy_app_list()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.app_id)
        .collect();
    assert_eq!(ids, ["a1", "a2"]);

    // Only the last tokens are kept.
    assert!(
        store
            .legacy_tokens_put(&tokens("a1", "t1", at(1)))
            .await
            .unwrap()
    );
    assert!(
        store
            .legacy_tokens_put(&tokens("a1", "t2", at(2)))
            .await
            .unwrap()
    );
    let t = store
        .legacy_tokens_get("a1")
        .await
        .unwrap()
        .expect("tokens");
    assert_eq!(t, tokens("a1", "t2", at(2)));
    assert!(
        !store
            .legacy_tokens_put(&tokens("ghost", "t", at(2)))
            .await
            .unwrap()
    );
    assert!(store.legacy_tokens_get("ghost").await.unwrap().is_none());

    // A new secret (same project) ends the tokens.
    store.legacy_app_put(&app("a1", "p1", "h1b")).await.unwrap();
    assert!(store.legacy_tokens_get("a1").await.unwrap().is_none());
    assert!(
        store
            .legacy_tokens_put(&tokens("a1", "t3", at(3)))
            .await
            .unwrap()
    );

    // Revoking drops the tokens and refuses new ones.
    assert!(store.legacy_app_revoke("a1", at(4)).await.unwrap());
    assert!(!store.legacy_app_revoke("a1", at(5)).await.unwrap());
    assert_eq!(
        store
            .legacy_app_get("a1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(at(4))
    );
    assert!(store.legacy_tokens_get("a1").await.unwrap().is_none());
    assert!(
        !store
            .legacy_tokens_put(&tokens("a1", "t4", at(6)))
            .await
            .unwrap()
    );
    // Putting it again un-revokes it.
    store.legacy_app_put(&app("a1", "p1", "h1c")).await.unwrap();
    assert_eq!(
        store
            .legacy_app_get("a1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        None
    );
}

pub async fn legacy_rate_windows(arc: Arc<dyn Store>) {
    let store = &*arc;
    store.legacy_app_put(&app("a1", "p1", "h")).await.unwrap();
    let w1 = Timestamp(60_000 * 100);
    let w2 = Timestamp(60_000 * 101);
    for expected in 1..=5 {
        assert_eq!(store.legacy_rate_hit("a1", w1).await.unwrap(), expected);
    }
    assert_eq!(store.legacy_rate_hit("other", w1).await.unwrap(), 1);
    assert_eq!(store.legacy_rate_hit("a1", w2).await.unwrap(), 1);
    assert_eq!(store.legacy_rate_hit("a1", w2).await.unwrap(), 2);
    // Concurrent hits all count: each sees its own number.
    let w3 = Timestamp(60_000 * 102);
    let mut joins = Vec::new();
    for _ in 0..20 {
        let store = arc.clone();
        joins.push(tokio::spawn(async move {
            store.legacy_rate_hit("a1", w3).await.unwrap()
        }));
    }
    let mut seen = Vec::new();
    for j in joins {
        seen.push(j.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=20).collect::<Vec<i64>>());
}

pub async fn legacy_device_attributes(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    for node in ["n1", "n2", "n3"] {
        store
            .device_insert(new_device(&s, "prod", node), T0)
            .await
            .unwrap()
            .unwrap();
    }
    let attrs = DeviceAttributes {
        device_type: Some("WaterMeter".into()),
        model: Some("M1".into()),
        manufacturer_name: Some("Acme".into()),
    };
    assert!(
        store
            .device_attributes_put(&s, "prod_n1", &attrs)
            .await
            .unwrap()
    );
    assert!(
        !store
            .device_attributes_put(&s, "ghost", &attrs)
            .await
            .unwrap()
    );
    assert!(
        !store
            .device_attributes_put(&scope("p2", ""), "prod_n1", &attrs)
            .await
            .unwrap()
    );
    let ids: Vec<String> = ["prod_n3", "ghost", "prod_n1"].map(String::from).to_vec();
    let got = store.device_attributes_get(&s, &ids).await.unwrap();
    assert_eq!(
        got,
        [
            ("prod_n3".to_owned(), DeviceAttributes::default()),
            ("prod_n1".to_owned(), attrs.clone()),
        ]
    );
    assert!(
        store
            .device_attributes_get(&scope("p2", ""), &ids)
            .await
            .unwrap()
            .is_empty()
    );
    // Changing them replaces them; deleting the device drops them.
    let changed = DeviceAttributes {
        model: Some("M2".into()),
        ..attrs.clone()
    };
    assert!(
        store
            .device_attributes_put(&s, "prod_n1", &changed)
            .await
            .unwrap()
    );
    assert_eq!(
        store.device_attributes_get(&s, &ids[2..]).await.unwrap()[0].1,
        changed
    );
    store
        .device_delete(&s, "prod_n1", at(1))
        .await
        .unwrap()
        .unwrap();
    store
        .device_insert(new_device(&s, "prod", "n1"), at(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.device_attributes_get(&s, &ids[2..]).await.unwrap()[0].1,
        DeviceAttributes::default()
    );
}

fn op(kind: &str, device_type: Option<&str>, deadline: Option<Timestamp>) -> LegacyOperation {
    LegacyOperation {
        operate_type: kind.to_owned(),
        device_type: device_type.map(str::to_owned),
        model: device_type.map(|_| "M1".to_owned()),
        manufacturer_name: device_type.map(|_| "Acme".to_owned()),
        deadline_at: deadline,
    }
}

async fn insert_legacy(
    store: &dyn Store,
    s: &TaskScope,
    name: &str,
    targets: &[&str],
    operation: LegacyOperation,
    now: Timestamp,
) -> taskd_core::Task {
    let t = store
        .legacy_task_insert(
            TaskInsertParams {
                task: new_task(s, name),
                sub_tasks: sub_tasks_for(targets),
                now,
            },
            operation,
        )
        .await
        .expect("legacy_task_insert");
    check(store, s, t.id).await;
    t
}

fn list_params(s: &TaskScope) -> LegacyTaskListParams {
    LegacyTaskListParams {
        scope: s.clone(),
        operate_type: None,
        states: Vec::new(),
        device_type: None,
        model: None,
        manufacturer_name: None,
        device_id: None,
        offset: 0,
        limit: 100,
    }
}

pub async fn legacy_tasks_round_trip_and_list(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    // A task not created through the legacy API is not listed.
    super::insert_with_targets(store, &s, "plain", &["d1"], T0).await;
    let a = insert_legacy(
        store,
        &s,
        "a",
        &["d1", "d2"],
        op("firmware_upgrade", Some("WM"), None),
        at(1),
    )
    .await;
    let b = insert_legacy(
        store,
        &s,
        "b",
        &["d3"],
        op("software_upgrade", None, Some(at(100_000))),
        at(2),
    )
    .await;
    let c = insert_legacy(
        store,
        &s,
        "c",
        &["d2"],
        op("firmware_upgrade", None, None),
        at(3),
    )
    .await;
    let other = insert_legacy(
        store,
        &scope("p2", ""),
        "x",
        &["d1"],
        op("firmware_upgrade", Some("WM"), None),
        at(4),
    )
    .await;

    let got = store.legacy_task_get(&s, a.id).await.unwrap().expect("a");
    assert_eq!(got.task, a);
    assert_eq!(got.operation, op("firmware_upgrade", Some("WM"), None));
    assert_eq!(got.timed_out, 0);
    let got_b = store.legacy_task_get(&s, b.id).await.unwrap().expect("b");
    assert_eq!(got_b.operation.deadline_at, Some(at(100_000)));
    // Scoped; not a legacy task.
    assert!(store.legacy_task_get(&s, other.id).await.unwrap().is_none());
    assert!(
        store
            .legacy_task_get(&scope("p1", "i"), a.id)
            .await
            .unwrap()
            .is_none()
    );
    let plain = store
        .task_list(&crate::TaskListParams {
            scope: s.clone(),
            filter: Default::default(),
            page: super::first_page(10),
        })
        .await
        .unwrap();
    assert_eq!(plain.count, 4, "legacy tasks are tasks of the scope");
    let plain_id = plain.items.last().unwrap().id;
    assert!(store.legacy_task_get(&s, plain_id).await.unwrap().is_none());

    let ids = |p: crate::Page<crate::LegacyTask>| {
        (
            p.count,
            p.items.into_iter().map(|t| t.task.name).collect::<Vec<_>>(),
        )
    };
    let all = store.legacy_task_list(&list_params(&s)).await.unwrap();
    assert_eq!(ids(all), (3, vec!["c".to_owned(), "b".into(), "a".into()]));
    let mut p = list_params(&s);
    p.operate_type = Some("firmware_upgrade".into());
    assert_eq!(
        ids(store.legacy_task_list(&p).await.unwrap()),
        (2, vec!["c".into(), "a".into()])
    );
    let mut p = list_params(&s);
    p.device_type = Some("WM".into());
    p.model = Some("M1".into());
    p.manufacturer_name = Some("Acme".into());
    assert_eq!(
        ids(store.legacy_task_list(&p).await.unwrap()),
        (1, vec!["a".into()])
    );
    p.model = Some("M9".into());
    assert_eq!(ids(store.legacy_task_list(&p).await.unwrap()), (0, vec![]));
    let mut p = list_params(&s);
    p.device_id = Some("d2".into());
    assert_eq!(
        ids(store.legacy_task_list(&p).await.unwrap()),
        (2, vec!["c".into(), "a".into()])
    );
    let mut p = list_params(&s);
    p.states = vec![TaskState::Waiting];
    assert_eq!(ids(store.legacy_task_list(&p).await.unwrap()).0, 3);
    p.states = vec![TaskState::Failed, TaskState::Stopped];
    assert_eq!(ids(store.legacy_task_list(&p).await.unwrap()), (0, vec![]));
    // Paging.
    let mut p = list_params(&s);
    p.offset = 1;
    p.limit = 1;
    assert_eq!(
        ids(store.legacy_task_list(&p).await.unwrap()),
        (3, vec!["b".into()])
    );
    p.offset = 3;
    assert_eq!(ids(store.legacy_task_list(&p).await.unwrap()), (3, vec![]));
    // Deleting the task drops its legacy operation.
    super::control(store, &s, c.id, taskd_core::ControlOp::Stop, None, at(5)).await;
    assert_eq!(
        store.task_delete(&s, c.id).await.unwrap(),
        crate::TaskDeleteOutcome::Deleted
    );
    assert_eq!(
        ids(store.legacy_task_list(&list_params(&s)).await.unwrap()).0,
        2
    );
}

fn result(c: &crate::ClaimedSubTask, ok: bool) -> RunResult {
    RunResult {
        sub_task_id: c.id,
        attempt: c.attempt,
        outcome: if ok {
            RunOutcome::Succeeded { output: None }
        } else {
            RunOutcome::Failed {
                error_code: "E".into(),
                error_msg: "failed".into(),
                output: None,
            }
        },
        effect: None,
    }
}

pub async fn legacy_deadline_times_out_unfinished(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let deadline = at(100_000);
    let mut new = new_task(&s, "window");
    new.schedule_at = Some(at(60_000));
    new.retry = Some(RetryPolicy {
        count: 2,
        interval_minutes: 0,
    });
    let t = store
        .legacy_task_insert(
            TaskInsertParams {
                task: new,
                sub_tasks: sub_tasks_for(&["a", "b", "c", "d", "e"]),
                now: T0,
            },
            op("firmware_upgrade", None, Some(deadline)),
        )
        .await
        .unwrap();
    // Not before the window starts.
    assert!(claim_all(store, "p1", at(1)).await.is_empty());
    assert_eq!(store.next_due(at(1)).await.unwrap(), Some(at(60_000)));
    let claimed = super::claim(store, "p1", "firmwareUpgrade", 4, at(60_000)).await;
    assert_eq!(claimed.len(), 4);
    let outcomes = store
        .sub_task_report(ReportParams {
            project_id: Some("p1".into()),
            results: vec![result(&claimed[0], true), result(&claimed[1], false)],
            now: at(61_000),
        })
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        [
            ReportOutcome::Accepted(SubTaskState::Succeeded),
            ReportOutcome::Accepted(SubTaskState::RetryWaiting)
        ]
    );
    // Now: a succeeded, b retry-waiting, c and d processing, e waiting.
    let report = store.maintain(at(62_000), 100).await.unwrap();
    assert_eq!((report.retries_released, report.timed_out), (1, 0));
    // The deadline is the next thing due (the leases run to at(120_000)).
    assert_eq!(store.next_due(at(62_000)).await.unwrap(), Some(deadline));
    // At the deadline nothing more is handed out, even before maintenance ran.
    assert!(claim_all(store, "p1", deadline).await.is_empty());
    let report = store.maintain(deadline, 100).await.unwrap();
    assert_eq!(report.timed_out, 4, "{report:?}");
    let task = assert_task_consistent(store, &s, t.id).await;
    assert_eq!(task.progress.succeeded, 1);
    assert_eq!(task.progress.failed, 4);
    assert_eq!(task.state, TaskState::PartiallySucceeded);
    let legacy = store.legacy_task_get(&s, t.id).await.unwrap().unwrap();
    assert_eq!(legacy.timed_out, 4);
    let page = super::sub_list(
        store,
        &s,
        t.id,
        Some(SubTaskState::Failed),
        None,
        super::first_page(10),
    )
    .await
    .unwrap();
    assert!(
        page.items
            .iter()
            .all(|st| st.error_code.as_deref() == Some(TIMEOUT_ERROR_CODE))
    );
    // A late result of a timed-out run changes nothing; a second pass does nothing.
    let late = store
        .sub_task_report(ReportParams {
            project_id: Some("p1".into()),
            results: vec![result(&claimed[2], true)],
            now: deadline.plus_millis(1),
        })
        .await
        .unwrap();
    assert_eq!(late, [ReportOutcome::LeaseLost]);
    assert_eq!(
        store
            .maintain(deadline.plus_millis(2), 100)
            .await
            .unwrap()
            .timed_out,
        0
    );
    assert_eq!(store.next_due(deadline.plus_millis(2)).await.unwrap(), None);
    // A retry after the deadline would queue sub-tasks nothing claims: the engine refuses
    // it; the store itself keeps nothing claimable past the deadline either.
    assert_eq!(
        store
            .legacy_task_get(&s, t.id)
            .await
            .unwrap()
            .unwrap()
            .timed_out,
        4
    );
}
