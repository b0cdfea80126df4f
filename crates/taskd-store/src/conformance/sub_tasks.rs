//! Listing a task's sub-tasks.

use std::sync::Arc;

use taskd_core::{ControlOp, Id, SubTaskState};

use super::{
    T0, applied, at, check, claim_all, control, first_page, insert_held, insert_with_targets, page,
    scope, sub_ids, sub_list,
};
use crate::Store;

pub async fn sub_task_list_paging_and_filters(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let targets: Vec<String> = (0..10).map(|i| format!("t{i:02}")).collect();
    let target_refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    let t = insert_held(store, &s, "t", &target_refs, T0).await;
    applied(
        control(
            store,
            &s,
            t.id,
            ControlOp::Confirm,
            Some(&["t01", "t03"]),
            at(1),
        )
        .await,
    );
    assert_eq!(claim_all(store, "p1", at(1)).await.len(), 2);
    applied(control(store, &s, t.id, ControlOp::Stop, Some(&["t05"]), at(2)).await);
    let t = check(store, &s, t.id).await;

    // Unfiltered: newest first, i.e. the last target first.
    let all = sub_list(store, &s, t.id, None, None, first_page(100))
        .await
        .unwrap();
    assert_eq!(all.count, 10);
    let names: Vec<&str> = all.items.iter().map(|x| x.target.as_str()).collect();
    let mut expected = target_refs.clone();
    expected.reverse();
    assert_eq!(names, expected);
    let id_of = |target: &str| all.items.iter().find(|x| x.target == target).unwrap().id;

    let p = sub_list(store, &s, t.id, None, None, first_page(4))
        .await
        .unwrap();
    assert_eq!(
        (sub_ids(&p.items), p.count),
        (sub_ids(&all.items[0..4]), 10)
    );
    let p = sub_list(store, &s, t.id, None, None, page(id_of("t06"), 0, 3))
        .await
        .unwrap();
    assert_eq!(
        sub_ids(&p.items),
        vec![id_of("t05"), id_of("t04"), id_of("t03")]
    );
    let p = sub_list(store, &s, t.id, None, None, page(id_of("t06"), 2, 3))
        .await
        .unwrap();
    assert_eq!(
        sub_ids(&p.items),
        vec![id_of("t03"), id_of("t02"), id_of("t01")]
    );
    let p = sub_list(store, &s, t.id, None, None, page(Id::MAX, 9, 3))
        .await
        .unwrap();
    assert_eq!((sub_ids(&p.items), p.count), (vec![id_of("t00")], 10));
    let p = sub_list(store, &s, t.id, None, None, page(Id::MAX, 10, 3))
        .await
        .unwrap();
    assert_eq!((p.items.len(), p.count), (0, 10));
    let p = sub_list(store, &s, t.id, None, None, first_page(0))
        .await
        .unwrap();
    assert_eq!((p.items.len(), p.count), (0, 10));

    // By state: items in that state, count from the counters.
    let p = sub_list(
        store,
        &s,
        t.id,
        Some(SubTaskState::Processing),
        None,
        first_page(10),
    )
    .await
    .unwrap();
    assert_eq!(
        (sub_ids(&p.items), p.count),
        (vec![id_of("t03"), id_of("t01")], 2)
    );
    let p = sub_list(
        store,
        &s,
        t.id,
        Some(SubTaskState::Processing),
        None,
        page(id_of("t03"), 0, 10),
    )
    .await
    .unwrap();
    assert_eq!((sub_ids(&p.items), p.count), (vec![id_of("t01")], 2));
    let p = sub_list(
        store,
        &s,
        t.id,
        Some(SubTaskState::Stopped),
        None,
        first_page(10),
    )
    .await
    .unwrap();
    assert_eq!((sub_ids(&p.items), p.count), (vec![id_of("t05")], 1));
    let p = sub_list(
        store,
        &s,
        t.id,
        Some(SubTaskState::Waiting),
        None,
        page(Id::MAX, 1, 2),
    )
    .await
    .unwrap();
    assert_eq!(
        (sub_ids(&p.items), p.count),
        (vec![id_of("t08"), id_of("t07")], 7)
    );
    let p = sub_list(
        store,
        &s,
        t.id,
        Some(SubTaskState::Failed),
        None,
        first_page(10),
    )
    .await
    .unwrap();
    assert_eq!((p.items.len(), p.count), (0, 0));

    // By target: at most one record; the count ignores marker and offset.
    let (sr, task_id) = (&s, t.id);
    let by_target = |state: Option<SubTaskState>, target: &'static str, req| async move {
        let p = sub_list(store, sr, task_id, state, Some(target), req)
            .await
            .unwrap();
        (sub_ids(&p.items), p.count)
    };
    let t03 = id_of("t03");
    assert_eq!(by_target(None, "t03", first_page(10)).await, (vec![t03], 1));
    let one = sub_list(store, &s, t.id, None, Some("t03"), first_page(10))
        .await
        .unwrap();
    assert_eq!(one.items[0].state, SubTaskState::Processing);
    assert_eq!(one.items[0].updated_at, at(1));
    assert_eq!(
        by_target(Some(SubTaskState::Processing), "t03", first_page(10)).await,
        (vec![t03], 1)
    );
    assert_eq!(
        by_target(Some(SubTaskState::Waiting), "t03", first_page(10)).await,
        (vec![], 0)
    );
    assert_eq!(by_target(None, "nope", first_page(10)).await, (vec![], 0));
    assert_eq!(by_target(None, "t03", page(t03, 0, 10)).await, (vec![], 1));
    assert_eq!(
        by_target(None, "t03", page(Id(t03.0 + 1), 0, 10)).await,
        (vec![t03], 1)
    );
    assert_eq!(
        by_target(None, "t03", page(Id::MAX, 1, 10)).await,
        (vec![], 1)
    );
    assert_eq!(by_target(None, "t03", first_page(0)).await, (vec![], 1));
    assert_eq!(
        by_target(None, "T03", first_page(10)).await,
        (vec![], 0),
        "exact match"
    );
}

pub async fn sub_task_list_scoping(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let t = insert_with_targets(store, &s, "t", &["a", "b"], T0).await;
    let other_task = insert_with_targets(store, &s, "u", &["c"], T0).await;
    for other in [scope("p2", "i1"), scope("p1", ""), scope("p1", "i2")] {
        assert_eq!(
            sub_list(store, &other, t.id, None, None, first_page(10)).await,
            None
        );
        assert_eq!(
            sub_list(store, &other, t.id, None, Some("a"), first_page(10)).await,
            None
        );
    }
    assert_eq!(
        sub_list(store, &s, Id(424242), None, None, first_page(10)).await,
        None
    );
    // A sub-task id is not a task id.
    assert_eq!(
        sub_list(store, &s, Id(t.id.0 + 1), None, None, first_page(10)).await,
        None
    );
    // Another task's target is not in this one.
    let p = sub_list(store, &s, t.id, None, Some("c"), first_page(10))
        .await
        .unwrap();
    assert_eq!((p.items.len(), p.count), (0, 0));
    let p = sub_list(store, &s, other_task.id, None, None, first_page(10))
        .await
        .unwrap();
    assert_eq!(
        p.items
            .iter()
            .map(|x| x.target.as_str())
            .collect::<Vec<_>>(),
        ["c"]
    );
}
