//! Stop, retry and confirm, whole-task and per target.

use std::sync::Arc;

use taskd_core::{ControlOp, Id, SubTaskState, TaskState};

use super::{
    T0, applied, at, check, claim_all, control, first_page, insert_held, insert_with_targets,
    scope, sub_list,
};
use crate::{Store, TargetOutcome, TaskControlOutcome};

use SubTaskState as S;
use TargetOutcome::{Applied, NotInTask, StateRefused};

/// The state of each target of a task, in target order.
async fn states(store: &dyn Store, s: &taskd_core::TaskScope, task_id: Id) -> Vec<(String, S)> {
    let mut subs = sub_list(store, s, task_id, None, None, first_page(1_000))
        .await
        .expect("task exists")
        .items;
    subs.reverse();
    subs.into_iter().map(|x| (x.target, x.state)).collect()
}

fn expect_states(pairs: &[(&str, S)]) -> Vec<(String, S)> {
    pairs.iter().map(|(t, s)| ((*t).to_owned(), *s)).collect()
}

fn outcomes(pairs: &[(&str, TargetOutcome)]) -> Vec<(String, TargetOutcome)> {
    pairs.iter().map(|(t, o)| ((*t).to_owned(), *o)).collect()
}

pub async fn control_stop_whole_task(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let t = insert_with_targets(store, &s, "t", &["a", "b", "c"], T0).await;
    let (task, targets) = applied(control(store, &s, t.id, ControlOp::Stop, None, at(10)).await);
    assert!(targets.is_empty(), "a whole-task op reports no targets");
    assert_eq!(task.state, TaskState::Stopped);
    assert_eq!(task.progress.stopped, 3);
    assert_eq!(task.updated_at, at(10));
    assert_eq!(task.created_at, T0);
    assert_eq!(
        check(store, &s, t.id).await,
        task,
        "the returned task is the stored one"
    );
    assert_eq!(
        states(store, &s, t.id).await,
        expect_states(&[("a", S::Stopped), ("b", S::Stopped), ("c", S::Stopped)])
    );
    let one = sub_list(store, &s, t.id, None, Some("a"), first_page(1))
        .await
        .unwrap();
    assert_eq!(one.items[0].updated_at, at(10));

    // A stopped task is final.
    for op in ControlOp::ALL {
        for targets in [None, Some(&["a"][..])] {
            assert_eq!(
                control(store, &s, t.id, op, targets, at(11)).await,
                TaskControlOutcome::TaskStateRefused(TaskState::Stopped),
                "{op:?} {targets:?}"
            );
        }
    }
    assert_eq!(
        check(store, &s, t.id).await,
        task,
        "a refused op writes nothing"
    );
}

pub async fn control_stop_initializing_task(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let t = insert_with_targets(store, &s, "t", &[], T0).await;
    assert_eq!(t.state, TaskState::Initializing);
    // Per target: nothing to find, the task stays as it is.
    let (task, targets) =
        applied(control(store, &s, t.id, ControlOp::Stop, Some(&["x"]), at(1)).await);
    assert_eq!(targets, outcomes(&[("x", NotInTask)]));
    assert_eq!(task.state, TaskState::Initializing);
    check(store, &s, t.id).await;
    // Whole task: stopped.
    let (task, _) = applied(control(store, &s, t.id, ControlOp::Stop, None, at(2)).await);
    assert_eq!(task.state, TaskState::Stopped);
    assert_eq!(task.updated_at, at(2));
    assert_eq!(check(store, &s, t.id).await, task);
}

pub async fn control_confirm_whole_task(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let t = insert_held(store, &s, "t", &["a", "b"], T0).await;
    assert!(
        claim_all(store, "p1", at(1)).await.is_empty(),
        "nothing runs before the confirm"
    );
    let (task, targets) = applied(control(store, &s, t.id, ControlOp::Confirm, None, at(1)).await);
    assert!(targets.is_empty());
    // Released, not yet running: the sub-tasks wait for an executor.
    assert_eq!(task.state, TaskState::Waiting);
    assert_eq!(task.progress.waiting, 2);
    assert_eq!(check(store, &s, t.id).await, task);
    assert_eq!(claim_all(store, "p1", at(2)).await.len(), 2);
    let task = check(store, &s, t.id).await;
    assert_eq!(task.state, TaskState::Processing);
    assert_eq!(
        states(store, &s, t.id).await,
        expect_states(&[("a", S::Processing), ("b", S::Processing)])
    );

    // Again: allowed, nothing left to confirm.
    let (again, _) = applied(control(store, &s, t.id, ControlOp::Confirm, None, at(2)).await);
    assert_eq!(
        (again.state, again.progress),
        (TaskState::Processing, task.progress)
    );
    check(store, &s, t.id).await;

    // Retrying a processing task whose sub-tasks all run: allowed, nothing to retry.
    let (again, _) = applied(control(store, &s, t.id, ControlOp::Retry, None, at(3)).await);
    assert_eq!(
        (again.state, again.progress),
        (TaskState::Processing, task.progress)
    );
    check(store, &s, t.id).await;

    let (stopped, _) = applied(control(store, &s, t.id, ControlOp::Stop, None, at(4)).await);
    assert_eq!(stopped.state, TaskState::Stopped);
    assert_eq!(stopped.progress.stopped, 2);
    check(store, &s, t.id).await;
}

pub async fn control_per_target(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let t = insert_held(store, &s, "t", &["a", "b", "c", "d"], T0).await;
    let (sr, task_id) = (&s, t.id);
    let run = |op, targets: &'static [&'static str], now| async move {
        {
            let out = applied(control(store, sr, task_id, op, Some(targets), now).await);
            let checked = check(store, sr, task_id).await;
            assert_eq!(checked, out.0, "the returned task is the stored one");
            out
        }
    };

    // Duplicates are applied once and reported each time; unknown targets are reported.
    let (task, targets) = run(ControlOp::Confirm, &["a", "a", "zz"], at(1)).await;
    assert_eq!(
        targets,
        outcomes(&[("a", Applied), ("a", Applied), ("zz", NotInTask)])
    );
    assert_eq!(task.state, TaskState::Waiting);
    assert_eq!(task.updated_at, at(1));
    let claimed = claim_all(store, "p1", at(1)).await;
    assert_eq!(
        claimed
            .iter()
            .map(|c| c.target.as_str())
            .collect::<Vec<_>>(),
        ["a"],
        "only the confirmed target runs"
    );
    let task = check(store, &s, t.id).await;
    assert_eq!(
        task.state,
        TaskState::Processing,
        "a running target makes the task processing"
    );
    assert_eq!((task.progress.processing, task.progress.waiting), (1, 3));

    let (_, targets) = run(ControlOp::Confirm, &["a", "b"], at(2)).await;
    assert_eq!(
        targets,
        outcomes(&[("a", StateRefused(S::Processing)), ("b", Applied)])
    );
    assert_eq!(claim_all(store, "p1", at(2)).await.len(), 1);
    let task = check(store, &s, t.id).await;
    assert_eq!(task.progress.processing, 2);

    let (_, targets) = run(ControlOp::Stop, &["b", "c"], at(3)).await;
    assert_eq!(targets, outcomes(&[("b", Applied), ("c", Applied)]));
    assert_eq!(
        states(store, &s, t.id).await,
        expect_states(&[
            ("a", S::Processing),
            ("b", S::Stopped),
            ("c", S::Stopped),
            ("d", S::Waiting)
        ])
    );

    let (task, targets) = run(ControlOp::Retry, &["b", "d", "a", "nope"], at(4)).await;
    assert_eq!(
        targets,
        outcomes(&[
            ("b", Applied),
            ("d", StateRefused(S::Waiting)),
            ("a", StateRefused(S::Processing)),
            ("nope", NotInTask),
        ])
    );
    assert_eq!(task.state, TaskState::Processing);
    assert_eq!(
        states(store, &s, t.id).await,
        expect_states(&[
            ("a", S::Processing),
            ("b", S::Waiting),
            ("c", S::Stopped),
            ("d", S::Waiting)
        ])
    );

    // A refused target changes nothing, not even the task's updated_at.
    let (task, targets) = run(ControlOp::Stop, &["nope"], at(5)).await;
    assert_eq!(targets, outcomes(&[("nope", NotInTask)]));
    assert_eq!(task.updated_at, at(4));

    // Whole-task retry of a processing task: the stopped target waits again.
    let (task, _) = applied(control(store, &s, t.id, ControlOp::Retry, None, at(6)).await);
    assert_eq!(task.state, TaskState::Processing);
    assert_eq!(task.progress.stopped, 0);
    assert_eq!(check(store, &s, t.id).await, task);

    // Stopping every target one call at a time ends the task, stopped.
    let (task, _) = run(ControlOp::Stop, &["a", "b"], at(7)).await;
    assert_eq!(task.state, TaskState::Processing);
    let (task, targets) = run(ControlOp::Stop, &["c", "d"], at(8)).await;
    assert_eq!(targets, outcomes(&[("c", Applied), ("d", Applied)]));
    assert_eq!(task.state, TaskState::Stopped);
    assert_eq!(task.progress.stopped, 4);
}

pub async fn control_stop_every_target_of_a_waiting_task(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let t = insert_with_targets(store, &s, "t", &["a", "b", "c"], T0).await;
    let (task, _) = applied(control(store, &s, t.id, ControlOp::Stop, Some(&["a"]), at(1)).await);
    assert_eq!(
        task.state,
        TaskState::Waiting,
        "one stopped target keeps the task waiting"
    );
    check(store, &s, t.id).await;
    let (task, _) =
        applied(control(store, &s, t.id, ControlOp::Stop, Some(&["c", "b"]), at(2)).await);
    assert_eq!(task.state, TaskState::Stopped);
    assert_eq!(check(store, &s, t.id).await, task);
}

pub async fn control_refused_by_task_state(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let waiting = insert_with_targets(store, &s, "w", &["a", "b"], T0).await;
    let init = insert_with_targets(store, &s, "i", &[], T0).await;
    for (task, state) in [
        (&waiting, TaskState::Waiting),
        (&init, TaskState::Initializing),
    ] {
        for targets in [None, Some(&["a"][..])] {
            assert_eq!(
                control(store, &s, task.id, ControlOp::Retry, targets, at(1)).await,
                TaskControlOutcome::TaskStateRefused(state)
            );
        }
        assert_eq!(check(store, &s, task.id).await, *task, "nothing written");
    }
    // Stopping drains into Stopped at once here, so Stopping itself isn't observable;
    // a stopped task refuses everything (see control_stop_whole_task).
}

pub async fn control_not_found(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let t = insert_with_targets(store, &s, "t", &["a"], T0).await;
    for (sc, id) in [
        (scope("p2", "i1"), t.id),
        (scope("p1", ""), t.id),
        (s.clone(), Id(t.id.0 + 1)),
        (s.clone(), Id(99)),
    ] {
        for op in ControlOp::ALL {
            assert_eq!(
                control(store, &sc, id, op, None, at(1)).await,
                TaskControlOutcome::NotFound
            );
            assert_eq!(
                control(store, &sc, id, op, Some(&["a"]), at(1)).await,
                TaskControlOutcome::NotFound
            );
        }
    }
    assert_eq!(check(store, &s, t.id).await, t);
}

/// Many control calls on one task at once (from tokio tasks) serialise cleanly: every
/// call sees the previous one's result, and the counters stay exact.
pub async fn control_concurrent_calls_keep_counters(store: Arc<dyn Store>) {
    const N: usize = 16;
    let s = scope("p1", "");
    let targets: Vec<String> = (0..N).map(|i| format!("t{i:02}")).collect();
    let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    let t = insert_with_targets(&*store, &s, "t", &refs, T0).await;

    let mut calls = tokio::task::JoinSet::new();
    for (i, target) in targets.iter().enumerate() {
        for op in [ControlOp::Confirm, ControlOp::Stop] {
            let (store, s, target) = (store.clone(), s.clone(), target.clone());
            calls.spawn(async move {
                let out = control(
                    &*store,
                    &s,
                    t.id,
                    op,
                    Some(&[target.as_str()]),
                    at(i as i64),
                )
                .await;
                (op, out)
            });
        }
    }
    let mut stops_applied = 0;
    while let Some(joined) = calls.join_next().await {
        let (op, out) = joined.expect("control call panicked");
        match (op, out) {
            (ControlOp::Stop, TaskControlOutcome::Applied { targets, .. }) => {
                // Stop applies to waiting and processing targets alike.
                assert_eq!(targets[0].1, Applied);
                stops_applied += 1;
            }
            (ControlOp::Confirm, TaskControlOutcome::Applied { targets, .. }) => {
                // Before its stop: applied; after: refused as stopped.
                assert!(
                    matches!(targets[0].1, Applied | StateRefused(S::Stopped)),
                    "{targets:?}"
                );
            }
            // Once every target is stopped the task is, and confirm is refused whole.
            (ControlOp::Confirm, TaskControlOutcome::TaskStateRefused(TaskState::Stopped)) => {}
            (op, other) => panic!("{op:?}: unexpected {other:?}"),
        }
    }
    assert_eq!(stops_applied, N);
    let task = check(&*store, &s, t.id).await;
    assert_eq!(task.state, TaskState::Stopped);
    assert_eq!(task.progress.stopped, N as i64);

    // Whole-task ops racing each other on a fresh task: exactly one stop wins.
    let t = insert_with_targets(&*store, &s, "u", &refs, at(100)).await;
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (store, s) = (store.clone(), s.clone());
        let op = if i % 2 == 0 {
            ControlOp::Stop
        } else {
            ControlOp::Confirm
        };
        calls.spawn(async move { control(&*store, &s, t.id, op, None, at(100 + i)).await });
    }
    let mut stops = 0;
    while let Some(joined) = calls.join_next().await {
        match joined.expect("control call panicked") {
            TaskControlOutcome::Applied { task, .. } if task.state == TaskState::Stopped => {
                stops += 1;
            }
            TaskControlOutcome::Applied { task, .. } => {
                // A confirm releases; nothing runs until an executor claims.
                assert_eq!(task.state, TaskState::Waiting);
            }
            TaskControlOutcome::TaskStateRefused(TaskState::Stopped) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        stops, 1,
        "only the first stop applies; later ones find the task stopped"
    );
    let task = check(&*store, &s, t.id).await;
    assert_eq!(
        (task.state, task.progress.stopped),
        (TaskState::Stopped, N as i64)
    );
}
