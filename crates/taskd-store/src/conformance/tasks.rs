//! Task insert, read, list and delete.

use std::sync::Arc;

use taskd_core::{
    ControlOp, Id, NewSubTask, NewTask, Progress, RetryPolicy, SubTaskState, TaskState,
};

use super::{
    T0, applied, assert_list_consistent, assert_task_consistent, at, check, claim, claim_all,
    control, first_page, ids, insert, insert_held, insert_with_targets, list, new_task,
    numbered_sub_tasks, page, scope, sub_ids, sub_list, sub_tasks_for, target_name,
};
use crate::{Store, TaskDeleteOutcome, TaskFilter, TaskInsertParams};

fn full_task(s: &taskd_core::TaskScope) -> NewTask {
    NewTask {
        scope: s.clone(),
        app_id: Some("app-1".into()),
        name: "upgrade all the things".into(),
        kind: "firmwareUpgrade".into(),
        mode: Some("NORMAL".into()),
        need_confirm: true,
        ext_info_json: Some(r#"{"k":"v","n":[1,2]}"#.into()),
        targets_json: Some(r#"["d1","d2","d3"]"#.into()),
        targets_filter_json: Some(r#"{"group_ids":["g1"]}"#.into()),
        document_json: Some(r#"{"version":"1.2.3","url":"https://x/y?z=1&w=\"q\""}"#.into()),
        document_source: Some("obs".into()),
        schedule_at: Some(at(60_000)),
        retry: Some(RetryPolicy {
            count: 3,
            interval_minutes: 10,
        }),
        operation: None,
    }
}

pub async fn task_insert_round_trip(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let new = full_task(&s);
    let subs = vec![
        NewSubTask {
            target: "d1".into(),
            input_json: Some(r#"{"row":["d1","a"]}"#.into()),
        },
        NewSubTask {
            target: "d2".into(),
            input_json: None,
        },
        NewSubTask {
            target: "d3 with spaces, \"quotes\" and ünïcode".into(),
            input_json: Some("[1, 2, \"3\"]".into()),
        },
    ];
    let now = at(7);
    let task = insert(store, new.clone(), subs.clone(), now).await;

    assert_eq!(task.scope, new.scope);
    assert_eq!(task.app_id, new.app_id);
    assert_eq!(task.name, new.name);
    assert_eq!(task.kind, new.kind);
    assert_eq!(task.mode, new.mode);
    assert_eq!(task.need_confirm, new.need_confirm);
    assert_eq!(task.ext_info_json, new.ext_info_json);
    assert_eq!(task.targets_json, new.targets_json);
    assert_eq!(task.targets_filter_json, new.targets_filter_json);
    assert_eq!(task.document_json, new.document_json);
    assert_eq!(task.document_source, new.document_source);
    assert_eq!(task.schedule_at, new.schedule_at);
    assert_eq!(task.retry, new.retry);
    assert_eq!(task.state, TaskState::Waiting);
    assert_eq!(task.state_detail, None);
    assert_eq!(task.progress, Progress::waiting(3));
    assert_eq!((task.created_at, task.updated_at), (now, now));
    assert_eq!(
        store.task_get(&s, task.id).await.unwrap(),
        Some(task.clone())
    );

    // Sub-tasks: newest (last target) first.
    let page = sub_list(store, &s, task.id, None, None, first_page(10))
        .await
        .expect("task exists");
    assert_eq!(page.count, 3);
    let mut got = page.items;
    got.reverse();
    assert_eq!(got.len(), 3);
    for (sub, new_sub) in got.iter().zip(&subs) {
        assert_eq!(sub.task_id, task.id);
        assert_eq!(sub.target, new_sub.target);
        assert_eq!(sub.input_json, new_sub.input_json);
        assert_eq!(sub.state, SubTaskState::Waiting);
        assert_eq!(
            (&sub.output, &sub.error_code, &sub.error_msg),
            (&None, &None, &None)
        );
        assert_eq!(sub.attempts, 0);
        assert_eq!(sub.updated_at, now);
    }

    // A task with nothing optional set reads back the same.
    let bare = new_task(&s, "bare");
    let t2 = insert(store, bare.clone(), sub_tasks_for(&["x"]), at(8)).await;
    let read = store.task_get(&s, t2.id).await.unwrap().expect("stored");
    assert_eq!(read, t2);
    assert_eq!(
        (
            read.app_id,
            read.mode,
            read.need_confirm,
            read.ext_info_json,
            read.targets_json,
            read.schedule_at,
            read.retry
        ),
        (None, None, false, None, None, None, None)
    );
    check(store, &s, task.id).await;
    check(store, &s, t2.id).await;
}

pub async fn task_insert_initial_state(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let init = insert(store, new_task(&s, "filter"), vec![], T0).await;
    assert_eq!(init.state, TaskState::Initializing);
    assert_eq!(init.progress, Progress::default());
    let waiting = insert(store, new_task(&s, "list"), sub_tasks_for(&["a", "b"]), T0).await;
    assert_eq!(waiting.state, TaskState::Waiting);
    assert_eq!(waiting.progress, Progress::waiting(2));
    let empty = sub_list(store, &s, init.id, None, None, first_page(10))
        .await
        .expect("task exists");
    assert_eq!((empty.items.len(), empty.count), (0, 0));
    check(store, &s, init.id).await;
    check(store, &s, waiting.id).await;
}

pub async fn task_ids_are_monotonic(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let a = insert(
        store,
        new_task(&s, "a"),
        sub_tasks_for(&["a1", "a2", "a3"]),
        at(1_000),
    )
    .await;
    assert!(
        a.id >= Id::floor_at(at(1_000).0),
        "ids start at the clock's floor"
    );

    // Sub-task ids: above the task's, increasing in target order.
    let mut subs = sub_list(store, &s, a.id, None, None, first_page(10))
        .await
        .unwrap()
        .items;
    subs.reverse();
    let targets: Vec<&str> = subs.iter().map(|x| x.target.as_str()).collect();
    assert_eq!(targets, ["a1", "a2", "a3"]);
    assert!(subs[0].id > a.id);
    assert!(subs.windows(2).all(|w| w[0].id < w[1].id));

    // The clock steps back: ids still grow, past every id handed out so far.
    let b = insert(
        store,
        new_task(&s, "b"),
        sub_tasks_for(&["b1"]),
        at(-50_000),
    )
    .await;
    assert!(b.id > subs[2].id, "{} <= {}", b.id, subs[2].id);
    let c = insert(store, new_task(&s, "c"), vec![], at(-60_000)).await;
    assert!(c.id > b.id);
    // The clock moves far ahead: ids jump to its floor.
    let d = insert(store, new_task(&s, "d"), vec![], at(3_600_000)).await;
    assert!(d.id >= Id::floor_at(at(3_600_000).0));
    let e = insert(store, new_task(&s, "e"), vec![], at(3_600_000)).await;
    assert!(e.id > d.id, "same millisecond, still increasing");

    // Newest first is creation order, whatever the clock said.
    let listed = list(store, &s, TaskFilter::default(), first_page(10)).await;
    assert_eq!(ids(&listed.items), vec![e.id, d.id, c.id, b.id, a.id]);

    // Another scope shares the sequence.
    let other = scope("p2", "");
    let f = insert(store, new_task(&other, "f"), vec![], at(0)).await;
    assert!(f.id > e.id);
    assert_list_consistent(store, &s).await;
}

pub async fn task_insert_failure_writes_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    // The same target twice can't be stored: the call fails as a whole.
    let res = store
        .task_insert(TaskInsertParams {
            task: new_task(&s, "dup"),
            sub_tasks: sub_tasks_for(&["a", "b", "a"]),
            now: T0,
        })
        .await;
    assert!(
        res.is_err(),
        "duplicate targets must be refused, got {res:?}"
    );
    let page = list(store, &s, TaskFilter::default(), first_page(10)).await;
    assert_eq!(
        (page.items.len(), page.count),
        (0, 0),
        "nothing half-written"
    );
    // And the store still works.
    let t = insert_with_targets(store, &s, "ok", &["a", "b"], at(1)).await;
    assert_eq!(t.progress.total, 2);
}

pub async fn task_get_is_scoped(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let t = insert(store, new_task(&s, "t"), sub_tasks_for(&["a"]), T0).await;
    assert!(store.task_get(&s, t.id).await.unwrap().is_some());
    for other in [scope("p2", "i1"), scope("p1", ""), scope("p1", "i2")] {
        assert_eq!(
            store.task_get(&other, t.id).await.unwrap(),
            None,
            "{other:?}"
        );
    }
    assert_eq!(
        store.task_get(&s, Id(t.id.0 + 1)).await.unwrap(),
        None,
        "a sub-task id"
    );
    assert_eq!(store.task_get(&s, Id(12345)).await.unwrap(), None);
}

pub async fn task_list_pagination(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let mut created = Vec::new();
    for i in 0..10 {
        let t = insert(
            store,
            new_task(&s, &format!("t{i}")),
            sub_tasks_for(&["x"]),
            at(i),
        )
        .await;
        created.push(t.id);
    }
    let newest_first: Vec<Id> = created.iter().rev().copied().collect();
    let all = TaskFilter::default;

    let p = list(store, &s, all(), first_page(4)).await;
    assert_eq!((ids(&p.items), p.count), (newest_first[0..4].to_vec(), 10));
    let p2 = list(store, &s, all(), page(p.items[3].id, 0, 4)).await;
    assert_eq!(
        (ids(&p2.items), p2.count),
        (newest_first[4..8].to_vec(), 10)
    );
    let p3 = list(store, &s, all(), page(p2.items[3].id, 0, 4)).await;
    assert_eq!(
        (ids(&p3.items), p3.count),
        (newest_first[8..10].to_vec(), 10)
    );

    // Offset skips records below the marker.
    let p = list(store, &s, all(), page(Id::MAX, 2, 3)).await;
    assert_eq!(ids(&p.items), newest_first[2..5].to_vec());
    let p = list(store, &s, all(), page(newest_first[1], 2, 3)).await;
    assert_eq!(ids(&p.items), newest_first[4..7].to_vec());
    // A marker need not be an existing id.
    let p = list(store, &s, all(), page(Id(newest_first[3].0 + 1), 0, 2)).await;
    assert_eq!(ids(&p.items), newest_first[3..5].to_vec());

    // Edges: nothing on the page, but the count is still the total.
    for req in [
        page(Id::MAX, 0, 0),
        page(Id::MAX, 10, 5),
        page(Id::MAX, 1_000, 5),
        page(created[0], 0, 5),
        page(Id(0), 0, 5),
    ] {
        let p = list(store, &s, all(), req).await;
        assert_eq!((p.items.len(), p.count), (0, 10), "{req:?}");
    }
    let p = list(store, &s, all(), first_page(100)).await;
    assert_eq!(ids(&p.items), newest_first);
    assert_list_consistent(store, &s).await;
}

pub async fn task_list_filters_and_counts(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let apps = [None, Some("a1"), Some("a2")];
    let kinds = ["k1", "k2"];
    let mut n = 0;
    for app in apps {
        for kind in kinds {
            for with_targets in [false, true] {
                let mut t = new_task(&s, &format!("t{n}"));
                t.app_id = app.map(str::to_owned);
                t.kind = kind.to_owned();
                let subs = if with_targets {
                    sub_tasks_for(&["x", "y"])
                } else {
                    vec![]
                };
                // Some wait for a confirm: they stay Waiting below.
                t.need_confirm = with_targets && n % 3 == 2;
                let task = insert(store, t, subs, at(n)).await;
                // Every third task with targets is stopped, for a third state.
                if with_targets && n % 3 == 0 {
                    let (done, _) =
                        applied(control(store, &s, task.id, ControlOp::Stop, None, at(n)).await);
                    assert_eq!(done.state, TaskState::Stopped);
                }
                // And some run: a fourth.
                if with_targets && n % 3 == 1 {
                    let running = claim(store, "p1", kind, 500, at(n)).await;
                    assert_eq!(running.len(), 2, "only this task's sub-tasks are claimable");
                }
                n += 1;
            }
        }
    }
    let all = assert_list_consistent(store, &s).await;
    assert_eq!(all.len(), 12);
    // Every combination of filters, against a brute-force reference, and on a page
    // smaller than the result so count and items differ.
    let app_filters = [None, Some("a1"), Some("a2"), Some("none-such")];
    let kind_filters = [None, Some("k1"), Some("k2"), Some("none-such")];
    let mut state_filters = vec![None];
    state_filters.extend(TaskState::ALL.map(Some));
    for app in app_filters {
        for kind in kind_filters {
            for state in &state_filters {
                let filter = TaskFilter {
                    app_id: app.map(str::to_owned),
                    kind: kind.map(str::to_owned),
                    state: *state,
                };
                let expected: Vec<Id> = all
                    .iter()
                    .filter(|t| super::matches(t, &filter))
                    .map(|t| t.id)
                    .collect();
                let p = list(store, &s, filter.clone(), first_page(2)).await;
                assert_eq!(p.count, expected.len() as i64, "count with {filter:?}");
                let head: Vec<Id> = expected.iter().take(2).copied().collect();
                assert_eq!(ids(&p.items), head, "page with {filter:?}");
                if expected.len() > 2 {
                    let p = list(store, &s, filter.clone(), page(expected[0], 1, 1)).await;
                    assert_eq!(
                        ids(&p.items),
                        vec![expected[2]],
                        "marker+offset with {filter:?}"
                    );
                }
            }
        }
    }
}

pub async fn task_list_scope_isolation(store: Arc<dyn Store>) {
    let store = &*store;
    let scopes = [
        scope("p1", ""),
        scope("p1", "i1"),
        scope("p2", ""),
        scope("p2", "i1"),
    ];
    for (i, s) in scopes.iter().enumerate() {
        // Same kinds and apps everywhere, different numbers of tasks per scope.
        for j in 0..=i {
            let mut t = new_task(s, &format!("t{i}{j}"));
            t.app_id = Some("shared-app".into());
            insert(store, t, sub_tasks_for(&["x"]), at(j as i64)).await;
        }
    }
    for (i, s) in scopes.iter().enumerate() {
        let all = assert_list_consistent(store, s).await;
        assert_eq!(all.len(), i + 1, "{s:?}");
        let by_kind = TaskFilter {
            kind: Some("firmwareUpgrade".into()),
            ..TaskFilter::default()
        };
        assert_eq!(
            list(store, s, by_kind, first_page(1)).await.count,
            i as i64 + 1
        );
        let by_app = TaskFilter {
            app_id: Some("shared-app".into()),
            state: Some(TaskState::Waiting),
            ..TaskFilter::default()
        };
        assert_eq!(
            list(store, s, by_app, first_page(1)).await.count,
            i as i64 + 1
        );
    }
    let empty = list(
        store,
        &scope("p3", ""),
        TaskFilter::default(),
        first_page(10),
    )
    .await;
    assert_eq!((empty.items.len(), empty.count), (0, 0));
}

pub async fn task_delete_finished_only(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let keep = insert_held(store, &s, "keep", &["a", "b"], at(0)).await;
    let t = insert_with_targets(store, &s, "t", &["a", "b", "c"], at(1)).await;
    let init = insert_with_targets(store, &s, "init", &[], at(2)).await;

    assert_eq!(
        store.task_delete(&s, t.id).await.unwrap(),
        TaskDeleteOutcome::NotFinished(TaskState::Waiting)
    );
    assert_eq!(
        store.task_delete(&s, init.id).await.unwrap(),
        TaskDeleteOutcome::NotFinished(TaskState::Initializing)
    );
    assert_eq!(claim_all(store, "p1", at(3)).await.len(), 3);
    assert_eq!(
        store.task_delete(&s, t.id).await.unwrap(),
        TaskDeleteOutcome::NotFinished(TaskState::Processing)
    );
    check(store, &s, t.id).await;

    let (stopped, _) = applied(control(store, &s, t.id, ControlOp::Stop, None, at(4)).await);
    assert_eq!(stopped.state, TaskState::Stopped);
    for other in [scope("p2", ""), scope("p1", "i1")] {
        assert_eq!(
            store.task_delete(&other, t.id).await.unwrap(),
            TaskDeleteOutcome::NotFound
        );
    }
    assert_eq!(
        store.task_delete(&s, t.id).await.unwrap(),
        TaskDeleteOutcome::Deleted
    );
    assert_eq!(store.task_get(&s, t.id).await.unwrap(), None);
    assert_eq!(
        sub_list(store, &s, t.id, None, None, first_page(10)).await,
        None
    );
    assert_eq!(
        store.task_delete(&s, t.id).await.unwrap(),
        TaskDeleteOutcome::NotFound
    );

    let all = assert_list_consistent(store, &s).await;
    assert_eq!(ids(&all), vec![init.id, keep.id]);
    let stopped_filter = TaskFilter {
        state: Some(TaskState::Stopped),
        ..TaskFilter::default()
    };
    assert_eq!(
        list(store, &s, stopped_filter, first_page(10)).await.count,
        0
    );
    // The other task's sub-tasks are untouched.
    assert_eq!(assert_task_consistent(store, &s, keep.id).await, keep);

    // Stopping the initializing task makes it deletable too.
    applied(control(store, &s, init.id, ControlOp::Stop, None, at(5)).await);
    assert_eq!(
        store.task_delete(&s, init.id).await.unwrap(),
        TaskDeleteOutcome::Deleted
    );
    assert_eq!(ids(&assert_list_consistent(store, &s).await), vec![keep.id]);
}

/// A task with 30,000 targets round-trips, and whole-task ops and delete handle it.
pub async fn large_task_round_trip(store: Arc<dyn Store>) {
    const N: usize = 30_000;
    let store = &*store;
    let s = scope("p1", "");
    let t = insert(store, new_task(&s, "big"), numbered_sub_tasks(N), T0).await;
    assert_eq!(t.progress, Progress::waiting(N as i64));

    let head = sub_list(store, &s, t.id, None, None, first_page(10))
        .await
        .unwrap();
    assert_eq!(head.count, N as i64);
    assert_eq!(
        head.items[0].target,
        target_name(N - 1),
        "newest (last) target first"
    );
    assert_eq!(head.items[9].target, target_name(N - 10));
    let tail = sub_list(store, &s, t.id, None, None, page(Id::MAX, N as u32 - 1, 10))
        .await
        .unwrap();
    assert_eq!(tail.items.len(), 1);
    assert_eq!(tail.items[0].target, target_name(0));
    assert_eq!(
        tail.items[0].id,
        Id(t.id.0 + 1),
        "the first target's id follows the task's"
    );
    let last = head.items[0].id;
    assert!(last > tail.items[0].id);
    for (i, id) in [(0, tail.items[0].id), (N - 1, last)] {
        let one = sub_list(store, &s, t.id, None, Some(&target_name(i)), first_page(10))
            .await
            .unwrap();
        assert_eq!((sub_ids(&one.items), one.count), (vec![id], 1));
    }
    // Ids are allocated past the big task.
    let next = insert(store, new_task(&s, "next"), vec![], T0).await;
    assert!(next.id > last);

    assert_task_consistent(store, &s, t.id).await;
    let (stopped, _) = applied(control(store, &s, t.id, ControlOp::Stop, None, at(1)).await);
    assert_eq!(stopped.progress.stopped, N as i64);
    assert_eq!(stopped.state, TaskState::Stopped);
    let by_state = sub_list(
        store,
        &s,
        t.id,
        Some(SubTaskState::Stopped),
        None,
        first_page(5),
    )
    .await
    .unwrap();
    assert_eq!((by_state.items.len(), by_state.count), (5, N as i64));
    assert_task_consistent(store, &s, t.id).await;
    assert_eq!(
        store.task_delete(&s, t.id).await.unwrap(),
        TaskDeleteOutcome::Deleted
    );
    assert_eq!(ids(&assert_list_consistent(store, &s).await), vec![next.id]);
}
