//! Instance operations (maintenance windows in the claim, the operation listing, the
//! instance's project) and the retention purge.

use std::sync::Arc;

use taskd_core::{
    Id, NewTask, OpService, OperateWindow, Operation, TaskScope, TaskState, Timestamp,
};

use super::{T0, at, check, claim, first_page, insert, new_task, sub_tasks_for};
use crate::{OpListParams, ReportParams, RunOutcome, RunResult, Store, TaskFilter};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// `T0`'s day at `h:m` UTC.
fn day_at(h: i64, m: i64) -> Timestamp {
    Timestamp(T0.0 - T0.0.rem_euclid(DAY_MS) + (h * 60 + m) * 60_000)
}

fn op_task(service: OpService, project: &str, instance: &str, kind: &str) -> NewTask {
    let scope = service.scope(project, instance);
    let mut t = new_task(&scope, kind);
    t.kind = kind.to_owned();
    t.document_json = Some(r#"{"public_ip_id":"ip-1"}"#.to_owned());
    t.operation = Some(Operation {
        service,
        instance_id: instance.to_owned(),
        user_name: Some("dms_test".into()),
        user_id: Some("u-1".into()),
        target_config_json: Some(r#"{"flavor":{"type":"s2","size":2}}"#.into()),
        window: None,
    });
    t
}

async fn finish(store: &dyn Store, project: &str, kind: &str, succeed: bool, now: Timestamp) {
    let claimed = claim(store, project, kind, 100, now).await;
    assert!(!claimed.is_empty(), "nothing to finish");
    let results = claimed
        .iter()
        .map(|c| RunResult {
            sub_task_id: c.id,
            attempt: c.attempt,
            outcome: if succeed {
                RunOutcome::Succeeded { output: None }
            } else {
                RunOutcome::Failed {
                    error_code: "E1".into(),
                    error_msg: "flavour sold out".into(),
                    output: None,
                }
            },
            effect: None,
        })
        .collect();
    store
        .sub_task_report(ReportParams {
            project_id: Some(project.to_owned()),
            results,
            now,
        })
        .await
        .expect("report");
}

pub async fn ops_window_gates_claims(store: Arc<dyn Store>) {
    let store = &*store;
    // 18:00-22:00, and one wrapping midnight 23:00-01:00.
    let mut evening = op_task(OpService::IotdaInstance, "p1", "i-1", "MODIFY");
    evening.operation.as_mut().unwrap().window = OperateWindow::parse("18:00", "22:00");
    let evening = insert(store, evening, sub_tasks_for(&["i-1"]), day_at(9, 0)).await;
    let mut night = op_task(OpService::IotdaInstance, "p1", "i-2", "FREEZE");
    night.operation.as_mut().unwrap().window = OperateWindow::parse("23:00", "01:00");
    let night = insert(store, night, sub_tasks_for(&["i-2"]), day_at(9, 0)).await;
    assert_eq!(
        evening.operation.as_ref().unwrap().window,
        OperateWindow::parse("18:00", "22:00")
    );

    // Closed windows: nothing starts.
    for t in [day_at(9, 0), day_at(17, 59), day_at(22, 0), day_at(22, 59)] {
        assert!(
            claim(store, "p1", "MODIFY", 10, t).await.is_empty(),
            "{t:?}"
        );
        assert!(
            claim(store, "p1", "FREEZE", 10, t).await.is_empty(),
            "{t:?}"
        );
    }
    // Inside the window: each starts.
    let got = claim(store, "p1", "MODIFY", 10, day_at(18, 0)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task.id, evening.id);
    let got = claim(store, "p1", "FREEZE", 10, day_at(24, 30)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task.id, night.id);

    // The operation's sub-task says when it started.
    let rec = store
        .op_get(&evening.scope, evening.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.task.state, TaskState::Processing);
    assert_eq!(rec.sub_task.unwrap().started_at, Some(day_at(18, 0)));
}

pub async fn ops_list_filters_and_instance_owner(store: Arc<dyn Store>) {
    let store = &*store;
    let rabbit = |i: &str| OpService::Rabbitmq.scope("p1", i);
    let mut ids = Vec::new();
    for n in 0..5 {
        let t = insert(
            store,
            op_task(OpService::Rabbitmq, "p1", "r-1", "bindInstancePublicIp"),
            sub_tasks_for(&["r-1"]),
            at(n * 60_000),
        )
        .await;
        ids.push(t.id);
    }
    // Another instance, another project, and a batch task: none of them is listed.
    insert(
        store,
        op_task(OpService::Rabbitmq, "p1", "r-2", "bindInstancePublicIp"),
        sub_tasks_for(&["r-2"]),
        at(0),
    )
    .await;
    insert(
        store,
        op_task(OpService::Rabbitmq, "p2", "r-3", "bindInstancePublicIp"),
        sub_tasks_for(&["r-3"]),
        at(0),
    )
    .await;
    insert(
        store,
        new_task(&TaskScope::new("p1", "r-1"), "batch"),
        sub_tasks_for(&["d"]),
        at(0),
    )
    .await;

    let list = |state, from, to, offset, limit| OpListParams {
        scope: rabbit("r-1"),
        state,
        created_from: from,
        created_to: to,
        page: crate::PageRequest {
            marker: Id::MAX,
            offset,
            limit,
        },
    };
    let page = store.op_list(&list(None, None, None, 0, 10)).await.unwrap();
    assert_eq!(page.count, 5);
    let got: Vec<Id> = page.items.iter().map(|r| r.task.id).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(got, newest_first);
    let first = &page.items[0];
    assert_eq!(first.sub_task.as_ref().unwrap().target, "r-1");
    assert_eq!(first.sub_task.as_ref().unwrap().started_at, None);
    let op = first.task.operation.as_ref().unwrap();
    assert_eq!(op.service, OpService::Rabbitmq);
    assert_eq!(op.instance_id, "r-1");
    assert_eq!(op.user_name.as_deref(), Some("dms_test"));
    assert_eq!(
        first.task.document_json.as_deref(),
        Some(r#"{"public_ip_id":"ip-1"}"#)
    );

    // Paging.
    let page = store.op_list(&list(None, None, None, 3, 10)).await.unwrap();
    assert_eq!((page.count, page.items.len()), (5, 2));
    // Time range, inclusive at both ends.
    let page = store
        .op_list(&list(None, Some(at(60_000)), Some(at(180_000)), 0, 10))
        .await
        .unwrap();
    assert_eq!(page.count, 3);
    assert_eq!(
        page.items.iter().map(|r| r.task.id).collect::<Vec<_>>(),
        vec![ids[3], ids[2], ids[1]]
    );
    // State filter.
    finish(store, "p1", "bindInstancePublicIp", true, at(600_000)).await;
    let page = store
        .op_list(&list(Some(TaskState::Succeeded), None, None, 0, 10))
        .await
        .unwrap();
    assert_eq!(page.count, 5);
    let page = store
        .op_list(&list(Some(TaskState::Waiting), None, None, 0, 10))
        .await
        .unwrap();
    assert_eq!((page.count, page.items.len()), (0, 0));

    // Owners.
    assert_eq!(
        store
            .op_instance_owner(OpService::Rabbitmq, "r-3")
            .await
            .unwrap(),
        Some("p2".to_owned())
    );
    assert_eq!(
        store
            .op_instance_owner(OpService::Rabbitmq, "r-1")
            .await
            .unwrap(),
        Some("p1".to_owned())
    );
    assert_eq!(
        store
            .op_instance_owner(OpService::Swr, "r-1")
            .await
            .unwrap(),
        None
    );
    // Scoped reads.
    assert!(
        store
            .op_get(&rabbit("r-2"), ids[0])
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .op_get(&rabbit("r-1"), ids[0])
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn purge_finished_keeps_counts(store: Arc<dyn Store>) {
    let store = &*store;
    let s = TaskScope::new("p1", "");
    let mut finished = Vec::new();
    for n in 0..5 {
        let t = insert(
            store,
            new_task(&s, &format!("t{n}")),
            sub_tasks_for(&["a", "b"]),
            at(0),
        )
        .await;
        finished.push(t.id);
    }
    finish(store, "p1", "firmwareUpgrade", false, at(1_000)).await;
    // Newer: finished later, and one still waiting.
    let mut later = new_task(&s, "later");
    later.kind = "softwareUpgrade".into();
    let later = insert(store, later, sub_tasks_for(&["a"]), at(2_000)).await;
    finish(store, "p1", "softwareUpgrade", true, at(50_000)).await;
    let waiting = insert(store, new_task(&s, "waiting"), sub_tasks_for(&["a"]), at(0)).await;
    for id in &finished {
        assert_eq!(check(store, &s, *id).await.state, TaskState::Failed);
    }

    // Bounded: at most max_rows per call.
    assert_eq!(store.purge_finished(at(10_000), 3).await.unwrap(), 3);
    super::assert_list_consistent(store, &s).await;
    assert_eq!(store.purge_finished(at(10_000), 3).await.unwrap(), 2);
    assert_eq!(store.purge_finished(at(10_000), 3).await.unwrap(), 0);
    for id in &finished {
        assert!(store.task_get(&s, *id).await.unwrap().is_none());
    }
    // Newer finished and unfinished tasks stay; the counts say so.
    assert!(store.task_get(&s, later.id).await.unwrap().is_some());
    check(store, &s, waiting.id).await;
    let all = super::list(store, &s, TaskFilter::default(), first_page(100)).await;
    assert_eq!((all.count, all.items.len()), (2, 2));
    let failed = super::list(
        store,
        &s,
        TaskFilter {
            state: Some(TaskState::Failed),
            ..TaskFilter::default()
        },
        first_page(100),
    )
    .await;
    assert_eq!(failed.count, 0);
    // An unfinished task is never purged, however old.
    assert_eq!(store.purge_finished(at(100_000), 100).await.unwrap(), 1);
    assert_eq!(store.purge_finished(at(10_000_000), 100).await.unwrap(), 0);
    check(store, &s, waiting.id).await;
}
