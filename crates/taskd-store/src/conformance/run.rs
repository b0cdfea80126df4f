//! Running sub-tasks: claims (schedule, confirm, kinds, projects, limits, fairness),
//! leases and heartbeats, results and automatic retries, maintenance, fencing.

use std::collections::BTreeSet;
use std::sync::Arc;

use taskd_core::{ControlOp, Id, RetryPolicy, SubTaskState, TaskScope, TaskState, Timestamp};

use super::{
    NO_LIMITS, T0, applied, at, check, claim, claim_all, control, first_page, insert, insert_held,
    insert_with_targets, new_task, numbered_sub_tasks, scope, sub_list, sub_tasks_for,
};
use crate::{
    ClaimParams, ClaimedSubTask, HeartbeatParams, ReportOutcome, ReportParams, RunLimits,
    RunOutcome, RunResult, Store,
};

const MINUTE: i64 = 60_000;

fn ok(c: &ClaimedSubTask, output: &str) -> RunResult {
    RunResult {
        sub_task_id: c.id,
        attempt: c.attempt,
        outcome: RunOutcome::Succeeded {
            output: Some(output.to_owned()),
        },
        effect: None,
    }
}

fn failed(c: &ClaimedSubTask, code: &str) -> RunResult {
    RunResult {
        sub_task_id: c.id,
        attempt: c.attempt,
        outcome: RunOutcome::Failed {
            error_code: code.to_owned(),
            error_msg: format!("{code} happened"),
            output: None,
        },
        effect: None,
    }
}

async fn report(
    store: &dyn Store,
    project: Option<&str>,
    results: Vec<RunResult>,
    now: Timestamp,
) -> Vec<ReportOutcome> {
    store
        .sub_task_report(ReportParams {
            project_id: project.map(str::to_owned),
            results,
            now,
        })
        .await
        .expect("sub_task_report")
}

async fn heartbeat(
    store: &dyn Store,
    c: &ClaimedSubTask,
    attempt: u32,
    until: Timestamp,
    progress: Option<u8>,
    now: Timestamp,
) -> Option<Timestamp> {
    store
        .sub_task_heartbeat(HeartbeatParams {
            project_id: Some(c.task.scope.project_id.clone()),
            sub_task_id: c.id,
            attempt,
            lease_until: until,
            progress,
            now,
        })
        .await
        .expect("sub_task_heartbeat")
}

async fn sub_task(
    store: &dyn Store,
    s: &TaskScope,
    task_id: Id,
    target: &str,
) -> taskd_core::SubTask {
    sub_list(store, s, task_id, None, Some(target), first_page(1))
        .await
        .expect("task exists")
        .items
        .pop()
        .expect("target exists")
}

fn targets(claimed: &[ClaimedSubTask]) -> Vec<&str> {
    claimed.iter().map(|c| c.target.as_str()).collect()
}

pub async fn run_claim_and_report_round_trip(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let mut new = new_task(&s, "t");
    new.document_json = Some(r#"{"package_ids":["abc"]}"#.to_owned());
    new.app_id = Some("app1".to_owned());
    let t = insert(store, new, sub_tasks_for(&["a", "b", "c"]), T0).await;

    let claimed = claim(store, "p1", "firmwareUpgrade", 2, at(1)).await;
    assert_eq!(targets(&claimed), ["a", "b"], "oldest sub-tasks first");
    for c in &claimed {
        assert_eq!(c.attempt, 1);
        assert_eq!(c.lease_until, at(1).plus_millis(60_000));
        assert_eq!(c.task.id, t.id);
        assert_eq!(c.task.scope, s);
        assert_eq!(c.task.kind, "firmwareUpgrade");
        assert_eq!(c.task.name, "t");
        assert_eq!(c.task.app_id.as_deref(), Some("app1"));
        assert_eq!(
            c.task.document_json.as_deref(),
            Some(r#"{"package_ids":["abc"]}"#)
        );
    }
    let task = check(store, &s, t.id).await;
    assert_eq!(task.state, TaskState::Processing);
    assert_eq!((task.progress.processing, task.progress.waiting), (2, 1));

    let outcomes = report(
        store,
        Some("p1"),
        vec![ok(&claimed[0], "v2.1"), failed(&claimed[1], "E_OFFLINE")],
        at(2),
    )
    .await;
    assert_eq!(
        outcomes,
        [
            ReportOutcome::Accepted(SubTaskState::Succeeded),
            ReportOutcome::Accepted(SubTaskState::Failed)
        ]
    );
    let a = sub_task(store, &s, t.id, "a").await;
    assert_eq!(
        (a.state, a.output.as_deref(), a.error_code.as_deref()),
        (SubTaskState::Succeeded, Some("v2.1"), None)
    );
    assert_eq!(
        (a.attempts, a.progress, a.updated_at),
        (1, Some(100), at(2))
    );
    let b = sub_task(store, &s, t.id, "b").await;
    assert_eq!(
        (b.state, b.error_code.as_deref(), b.error_msg.as_deref()),
        (
            SubTaskState::Failed,
            Some("E_OFFLINE"),
            Some("E_OFFLINE happened")
        )
    );

    // A result is taken once.
    assert_eq!(
        report(store, Some("p1"), vec![ok(&claimed[0], "again")], at(3)).await,
        [ReportOutcome::LeaseLost]
    );
    assert_eq!(
        sub_task(store, &s, t.id, "a").await.output.as_deref(),
        Some("v2.1")
    );

    let rest = claim_all(store, "p1", at(4)).await;
    assert_eq!(targets(&rest), ["c"]);
    report(store, Some("p1"), vec![ok(&rest[0], "")], at(5)).await;
    let task = check(store, &s, t.id).await;
    assert_eq!(task.state, TaskState::PartiallySucceeded);
    assert!(claim_all(store, "p1", at(6)).await.is_empty());
}

pub async fn run_claim_waits_for_schedule_confirm_kind_and_project(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let mut later = new_task(&s, "later");
    later.schedule_at = Some(at(10 * MINUTE));
    let later = insert(store, later, sub_tasks_for(&["a"]), T0).await;
    let held = insert_held(store, &s, "held", &["b"], T0).await;
    let mut other_kind = new_task(&s, "cmd");
    other_kind.kind = "createCommands".to_owned();
    insert(store, other_kind, sub_tasks_for(&["c"]), T0).await;
    insert_with_targets(store, &scope("p2", ""), "other project", &["d"], T0).await;

    assert!(claim_all(store, "p1", at(1)).await.is_empty());
    assert_eq!(
        store.next_due(at(1)).await.unwrap(),
        Some(at(10 * MINUTE)),
        "the schedule time is the next thing due"
    );
    let got = claim_all(store, "p1", at(10 * MINUTE)).await;
    assert_eq!(targets(&got), ["a"]);
    assert_eq!(
        check(store, &s, later.id).await.state,
        TaskState::Processing
    );

    applied(
        control(
            store,
            &s,
            held.id,
            ControlOp::Confirm,
            None,
            at(11 * MINUTE),
        )
        .await,
    );
    assert_eq!(
        targets(&claim_all(store, "p1", at(11 * MINUTE)).await),
        ["b"]
    );

    let cmds = claim(store, "p1", "createCommands", 10, at(12 * MINUTE)).await;
    assert_eq!(targets(&cmds), ["c"]);

    // A claim without a project (taskd's own executors) sees every project.
    let any = store
        .sub_task_claim(ClaimParams {
            worker_id: "taskd".to_owned(),
            project_id: None,
            kinds: vec!["firmwareUpgrade".to_owned(), "nothing".to_owned()],
            max: 10,
            lease_until: at(20 * MINUTE),
            limits: NO_LIMITS,
            now: at(12 * MINUTE),
        })
        .await
        .unwrap();
    assert_eq!(targets(&any), ["d"]);
    assert_eq!(any[0].task.scope, scope("p2", ""));
}

/// A confirm before the schedule time releases the sub-tasks from the schedule time on.
pub async fn run_confirm_before_schedule_waits_for_it(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let mut t = new_task(&s, "t");
    t.need_confirm = true;
    t.schedule_at = Some(at(5 * MINUTE));
    let t = insert(store, t, sub_tasks_for(&["a"]), T0).await;
    applied(control(store, &s, t.id, ControlOp::Confirm, None, at(1)).await);
    assert!(claim_all(store, "p1", at(2)).await.is_empty());
    assert_eq!(
        targets(&claim_all(store, "p1", at(5 * MINUTE)).await),
        ["a"]
    );
}

/// A big task created first does not hold back a small one created after it.
pub async fn run_claims_are_fair_between_tasks(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let big = insert(store, new_task(&s, "big"), numbered_sub_tasks(100), T0).await;
    let first = claim(store, "p1", "firmwareUpgrade", 10, at(1)).await;
    assert_eq!(first.len(), 10);
    assert!(first.iter().all(|c| c.task.id == big.id));

    insert_with_targets(store, &s, "small", &["x", "y", "z"], at(2)).await;
    // Each task gets an equal share of the claim, the task served least recently (the
    // new one, never served) first: all 3 of the small task's, 3 more of the big one's.
    let next = claim(store, "p1", "firmwareUpgrade", 6, at(3)).await;
    assert_eq!(
        targets(&next)[..3],
        ["x", "y", "z"],
        "the small task goes first: {:?}",
        targets(&next)
    );
    assert_eq!(next.len(), 6);

    // Three tasks with ready rows left (the small one has none): an even split.
    let other = insert(store, new_task(&s, "other"), numbered_sub_tasks(50), at(4)).await;
    let split = claim(store, "p1", "firmwareUpgrade", 10, at(5)).await;
    let n_other = split.iter().filter(|c| c.task.id == other.id).count();
    let n_big = split.iter().filter(|c| c.task.id == big.id).count();
    assert_eq!(
        n_other + n_big,
        10,
        "the small task's unused share goes to the others"
    );
    assert!(
        n_other >= 4 && n_big >= 4,
        "an even split: {n_other} and {n_big}"
    );
    check(store, &s, big.id).await;
    check(store, &s, other.id).await;
}

pub async fn run_claims_respect_running_limits(store: Arc<dyn Store>) {
    let store = &*store;
    for p in ["p1", "p2"] {
        insert(
            store,
            new_task(&scope(p, ""), "t"),
            numbered_sub_tasks(10),
            T0,
        )
        .await;
    }
    let claim_with = |max_running, per_project, now| async move {
        store
            .sub_task_claim(ClaimParams {
                worker_id: "w".to_owned(),
                project_id: None,
                kinds: vec!["firmwareUpgrade".to_owned()],
                max: 100,
                lease_until: Timestamp(now + 60_000),
                limits: RunLimits {
                    max_running,
                    max_running_per_project: per_project,
                },
                now: Timestamp(now),
            })
            .await
            .unwrap()
    };
    let got = claim_with(100, 3, T0.0 + 1).await;
    let per_project = |got: &[ClaimedSubTask], p: &str| {
        got.iter().filter(|c| c.task.scope.project_id == p).count()
    };
    assert_eq!((per_project(&got, "p1"), per_project(&got, "p2")), (3, 3));
    assert!(
        claim_with(100, 3, T0.0 + 2).await.is_empty(),
        "both projects full"
    );
    // The global limit counts what already runs: 6 of 8.
    let more = claim_with(8, 10, T0.0 + 3).await;
    assert_eq!(more.len(), 2);
    assert!(claim_with(8, 10, T0.0 + 4).await.is_empty());
    // A finished run frees its slot.
    report(store, None, vec![ok(&got[0], "")], at(5)).await;
    assert_eq!(claim_with(8, 10, T0.0 + 6).await.len(), 1);
}

pub async fn run_failures_retry_by_policy(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let mut t = new_task(&s, "t");
    t.retry = Some(RetryPolicy {
        count: 2,
        interval_minutes: 5,
    });
    let t = insert(store, t, sub_tasks_for(&["a"]), T0).await;

    let mut now = at(0);
    for attempt in 1..=3 {
        let c = claim_all(store, "p1", now).await;
        assert_eq!(c.len(), 1, "attempt {attempt} is claimable");
        assert_eq!(c[0].attempt, attempt);
        let expected = if attempt < 3 {
            SubTaskState::RetryWaiting
        } else {
            SubTaskState::Failed
        };
        assert_eq!(
            report(store, Some("p1"), vec![failed(&c[0], "E")], now).await,
            [ReportOutcome::Accepted(expected)]
        );
        let task = check(store, &s, t.id).await;
        if attempt == 3 {
            assert_eq!(task.state, TaskState::Failed);
            break;
        }
        assert_eq!(task.state, TaskState::Processing);
        assert_eq!(task.progress.retry_waiting, 1);
        let due = now.plus_millis(5 * MINUTE);
        assert_eq!(store.next_due(now).await.unwrap(), Some(due));
        // Not yet due: nothing happens.
        let early = store.maintain(due.plus_millis(-1), 100).await.unwrap();
        assert_eq!(early.retries_released, 0);
        assert!(claim_all(store, "p1", due.plus_millis(-1)).await.is_empty());
        let report = store.maintain(due, 100).await.unwrap();
        assert_eq!((report.retries_released, report.more), (1, false));
        check(store, &s, t.id).await;
        now = due;
    }

    // A user's retry gives the automatic retries back.
    applied(control(store, &s, t.id, ControlOp::Retry, None, now).await);
    let c = claim_all(store, "p1", now).await;
    assert_eq!(c[0].attempt, 4);
    assert_eq!(
        report(store, Some("p1"), vec![failed(&c[0], "E")], now).await,
        [ReportOutcome::Accepted(SubTaskState::RetryWaiting)]
    );
    check(store, &s, t.id).await;
}

pub async fn run_deferred_results_wait_without_using_retries(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let mut t = new_task(&s, "t");
    t.retry = Some(RetryPolicy {
        count: 0,
        interval_minutes: 5,
    });
    let t = insert(store, t, sub_tasks_for(&["a", "b"]), T0).await;
    let c = claim_all(store, "p1", at(0)).await;
    assert_eq!(c.len(), 2);
    let deferred = |c: &ClaimedSubTask, until: Timestamp| RunResult {
        sub_task_id: c.id,
        attempt: c.attempt,
        outcome: RunOutcome::Deferred {
            until,
            error_code: "OFFLINE".into(),
            error_msg: "waiting for the device".into(),
        },
        effect: None,
    };
    // "b" fails, with what the executor got as its output; no retries: Failed.
    let mut refused = failed(&c[1], "E");
    if let RunOutcome::Failed { output, .. } = &mut refused.outcome {
        *output = Some(r#"{"result_code":1}"#.into());
    }
    assert_eq!(
        report(
            store,
            Some("p1"),
            vec![deferred(&c[0], at(MINUTE)), refused],
            at(1)
        )
        .await,
        [
            ReportOutcome::Accepted(SubTaskState::RetryWaiting),
            ReportOutcome::Accepted(SubTaskState::Failed)
        ]
    );
    let b = sub_task(store, &s, t.id, "b").await;
    assert_eq!(b.output.as_deref(), Some(r#"{"result_code":1}"#));
    let a = sub_task(store, &s, t.id, "a").await;
    assert_eq!(a.state, SubTaskState::RetryWaiting);
    assert_eq!(a.error_code.as_deref(), Some("OFFLINE"));
    assert_eq!(store.next_due(at(1)).await.unwrap(), Some(at(MINUTE)));
    assert!(claim_all(store, "p1", at(MINUTE - 1)).await.is_empty());
    // Deferred again and again: a policy of no retries is not used up by waiting.
    let mut now = at(MINUTE);
    for round in 2..=4 {
        store.maintain(now, 100).await.unwrap();
        let c = claim_all(store, "p1", now).await;
        assert_eq!(c.len(), 1, "round {round}");
        assert_eq!(c[0].attempt, round);
        let outcome = report(
            store,
            Some("p1"),
            vec![deferred(&c[0], now.plus_millis(MINUTE))],
            now,
        )
        .await;
        assert_eq!(
            outcome,
            [ReportOutcome::Accepted(SubTaskState::RetryWaiting)]
        );
        now = now.plus_millis(MINUTE);
    }
    store.maintain(now, 100).await.unwrap();
    let c = claim_all(store, "p1", now).await;
    assert_eq!(
        report(store, Some("p1"), vec![ok(&c[0], "done")], now).await,
        [ReportOutcome::Accepted(SubTaskState::Succeeded)]
    );
    let task = check(store, &s, t.id).await;
    assert_eq!(task.state, TaskState::PartiallySucceeded);
}

pub async fn run_leases_expire_and_fence_late_results(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let t = insert_with_targets(store, &s, "t", &["a"], T0).await;
    let first = claim_all(store, "p1", at(0)).await.remove(0);
    assert_eq!(first.lease_until, at(60_000));

    // A heartbeat extends the lease and records progress.
    assert_eq!(
        heartbeat(store, &first, 1, at(90_000), Some(40), at(30_000)).await,
        Some(at(90_000))
    );
    let a = sub_task(store, &s, t.id, "a").await;
    assert_eq!((a.state, a.progress), (SubTaskState::Processing, Some(40)));
    assert_eq!(
        heartbeat(store, &first, 2, at(90_000), None, at(30_000)).await,
        None
    );
    assert_eq!(store.next_due(at(30_000)).await.unwrap(), Some(at(90_000)));
    let m = store.maintain(at(60_001), 100).await.unwrap();
    assert_eq!(m.leases_expired, 0, "the extended lease holds");

    let m = store.maintain(at(90_001), 100).await.unwrap();
    assert_eq!(m.leases_expired, 1);
    let task = check(store, &s, t.id).await;
    assert_eq!(
        (task.state, task.progress.waiting),
        (TaskState::Processing, 1)
    );
    assert_eq!(
        heartbeat(store, &first, 1, at(200_000), None, at(90_002)).await,
        None,
        "an expired lease is lost"
    );

    let second = claim_all(store, "p1", at(90_003)).await.remove(0);
    assert_eq!((second.id, second.attempt), (first.id, 2));
    // The first run's late result changes nothing; the second's counts.
    assert_eq!(
        report(store, Some("p1"), vec![ok(&first, "late")], at(90_004)).await,
        [ReportOutcome::LeaseLost]
    );
    assert_eq!(
        report(store, Some("p1"), vec![ok(&second, "done")], at(90_005)).await,
        [ReportOutcome::Accepted(SubTaskState::Succeeded)]
    );
    let a = sub_task(store, &s, t.id, "a").await;
    assert_eq!((a.output.as_deref(), a.attempts), (Some("done"), 2));
    assert_eq!(check(store, &s, t.id).await.state, TaskState::Succeeded);
    assert_eq!(store.next_due(at(90_006)).await.unwrap(), None);
}

pub async fn run_stop_takes_the_lease_away(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let t = insert_with_targets(store, &s, "t", &["a", "b"], T0).await;
    let claimed = claim(store, "p1", "firmwareUpgrade", 1, at(1)).await;
    let (task, _) = applied(control(store, &s, t.id, ControlOp::Stop, None, at(2)).await);
    assert_eq!(task.state, TaskState::Stopped);
    assert_eq!(
        heartbeat(store, &claimed[0], 1, at(100_000), None, at(3)).await,
        None
    );
    assert_eq!(
        report(store, Some("p1"), vec![ok(&claimed[0], "x")], at(4)).await,
        [ReportOutcome::LeaseLost]
    );
    assert!(claim_all(store, "p1", at(5)).await.is_empty());
    assert_eq!(
        store
            .maintain(at(10 * MINUTE), 100)
            .await
            .unwrap()
            .leases_expired,
        0,
        "a stopped sub-task holds no lease"
    );
    assert_eq!(check(store, &s, t.id).await, task);
}

pub async fn run_results_are_fenced_by_project(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let t = insert_with_targets(store, &s, "t", &["a"], T0).await;
    let c = claim_all(store, "p1", at(1)).await.remove(0);
    let mut foreign = c.clone();
    foreign.task = Arc::new(claimed_task_in("p2", &c));
    assert_eq!(
        heartbeat(store, &foreign, 1, at(100_000), None, at(2)).await,
        None
    );
    assert_eq!(
        report(store, Some("p2"), vec![ok(&c, "x")], at(3)).await,
        [ReportOutcome::LeaseLost]
    );
    let unknown = RunResult {
        sub_task_id: Id(t.id.0 + 1_000),
        ..ok(&c, "x")
    };
    assert_eq!(
        report(store, Some("p1"), vec![unknown, ok(&c, "y")], at(4)).await,
        [
            ReportOutcome::LeaseLost,
            ReportOutcome::Accepted(SubTaskState::Succeeded)
        ]
    );
    check(store, &s, t.id).await;
}

fn claimed_task_in(project: &str, c: &ClaimedSubTask) -> crate::ClaimedTask {
    crate::ClaimedTask {
        scope: scope(project, ""),
        ..(*c.task).clone()
    }
}

/// Claimers racing on one task never lease a sub-task twice.
pub async fn run_concurrent_claims_never_double_lease(store: Arc<dyn Store>) {
    let s = scope("p1", "");
    let t = insert(&*store, new_task(&s, "t"), numbered_sub_tasks(200), T0).await;
    let mut claimers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let store = store.clone();
        claimers.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = claim(&*store, "p1", "firmwareUpgrade", 7, at(w)).await;
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|c| c.id));
            }
        });
    }
    let mut all = Vec::new();
    while let Some(mine) = claimers.join_next().await {
        all.extend(mine.expect("claimer panicked"));
    }
    let distinct: BTreeSet<Id> = all.iter().copied().collect();
    assert_eq!((all.len(), distinct.len()), (200, 200));
    let task = check(&*store, &s, t.id).await;
    assert_eq!(task.progress.processing, 200);
}

/// Maintenance works in bounded passes.
pub async fn run_maintenance_is_bounded(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let t = insert(store, new_task(&s, "t"), numbered_sub_tasks(25), T0).await;
    assert_eq!(claim_all(store, "p1", at(0)).await.len(), 25);
    let m = store.maintain(at(61_000), 10).await.unwrap();
    assert_eq!((m.leases_expired, m.more), (10, true));
    check(store, &s, t.id).await;
    let m = store.maintain(at(61_000), 10).await.unwrap();
    assert_eq!(m.leases_expired, 10);
    let m = store.maintain(at(61_000), 10).await.unwrap();
    assert_eq!((m.leases_expired, m.more), (5, false));
    let task = check(store, &s, t.id).await;
    assert_eq!(task.progress.waiting, 25);
    assert_eq!(claim_all(store, "p1", at(61_001)).await.len(), 25);
}

pub async fn run_repeatedly_expiring_leases_fail_the_sub_task(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let t = insert_with_targets(store, &s, "t", &["poison", "fine"], T0).await;
    let limit = i64::from(crate::LEASE_EXPIRIES_BEFORE_FAILURE);
    let mut now = 0;
    // Every claim of "poison" dies (its lease expires); "fine" succeeds on its first run.
    for round in 1..=limit {
        let claimed = claim_all(store, "p1", at(now)).await;
        let poison = claimed
            .iter()
            .find(|c| c.target == "poison")
            .expect("poison is handed out again until the limit");
        assert_eq!(poison.attempt as i64, round);
        if let Some(fine) = claimed.iter().find(|c| c.target == "fine") {
            report(store, Some("p1"), vec![ok(fine, "done")], at(now + 1)).await;
        }
        now = poison.lease_until.0 + 1;
        let m = store.maintain(at(now), 100).await.unwrap();
        if round < limit {
            assert_eq!(
                (m.leases_expired, m.leases_abandoned),
                (1, 0),
                "round {round}"
            );
        } else {
            assert_eq!(
                (m.leases_expired, m.leases_abandoned),
                (0, 1),
                "round {round}"
            );
        }
    }
    let poison = sub_task(store, &s, t.id, "poison").await;
    assert_eq!(poison.state, SubTaskState::Failed);
    assert_eq!(poison.error_code.as_deref(), Some("LEASE_EXPIRED"));
    assert!(poison.error_msg.unwrap().contains("expired"));
    let task = check(store, &s, t.id).await;
    assert_eq!(task.state, TaskState::PartiallySucceeded);
    assert!(claim_all(store, "p1", at(now + 1)).await.is_empty());

    // A user retry starts the count over: the next expiry queues it again.
    applied(
        control(
            store,
            &s,
            t.id,
            ControlOp::Retry,
            Some(&["poison"]),
            at(now + 2),
        )
        .await,
    );
    let again = claim_all(store, "p1", at(now + 3)).await.remove(0);
    let m = store
        .maintain(at(again.lease_until.0 + 1), 100)
        .await
        .unwrap();
    assert_eq!((m.leases_expired, m.leases_abandoned), (1, 0));
    check(store, &s, t.id).await;
}

pub async fn run_one_leader_at_a_time(store_arc: Arc<dyn Store>) {
    let store = &*store_arc;
    let ask = |holder: &str, now: i64| crate::LeaderParams {
        name: "maintenance".to_owned(),
        holder: holder.to_owned(),
        now: at(now),
        until: at(now + 10_000),
    };
    assert!(
        store.leader_acquire(&ask("a", 0)).await.unwrap(),
        "a free term"
    );
    assert!(
        !store.leader_acquire(&ask("b", 1_000)).await.unwrap(),
        "a leads"
    );
    assert!(
        store.leader_acquire(&ask("a", 5_000)).await.unwrap(),
        "a renews"
    );
    assert!(
        !store.leader_acquire(&ask("b", 14_000)).await.unwrap(),
        "renewed until 15 s"
    );
    assert!(
        store.leader_acquire(&ask("b", 15_001)).await.unwrap(),
        "a's term lapsed"
    );
    assert!(
        !store.leader_acquire(&ask("a", 15_002)).await.unwrap(),
        "b leads now"
    );
    // Other jobs are elected apart.
    let other = crate::LeaderParams {
        name: "retention".to_owned(),
        ..ask("a", 15_003)
    };
    assert!(store.leader_acquire(&other).await.unwrap());

    // Releasing: only the holder can, and the next asker wins at once.
    store.leader_release("maintenance", "a").await.unwrap();
    assert!(
        !store.leader_acquire(&ask("c", 15_004)).await.unwrap(),
        "a could not release b's term"
    );
    store.leader_release("maintenance", "b").await.unwrap();
    assert!(store.leader_acquire(&ask("c", 15_005)).await.unwrap());

    // Racing for a lapsed term: exactly one wins.
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let store = store_arc.clone();
        let p = ask(&format!("r{i}"), 100_000);
        racers.spawn(async move { store.leader_acquire(&p).await.unwrap() });
    }
    let won = racers.join_all().await;
    assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
}

/// One batch naming a sub-task twice: a stale attempt first costs the current one
/// nothing, and of two current results only the first is taken.
pub async fn run_a_batch_judges_each_result_on_its_own(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "");
    let t = insert_with_targets(store, &s, "t", &["a"], T0).await;
    let first = claim_all(store, "p1", at(0)).await.remove(0);
    let m = store.maintain(at(60_001), 100).await.unwrap();
    assert_eq!(m.leases_expired, 1);
    let second = claim_all(store, "p1", at(60_002)).await.remove(0);
    assert_eq!((second.id, second.attempt), (first.id, 2));
    assert_eq!(
        report(
            store,
            Some("p1"),
            vec![
                ok(&first, "late"),
                ok(&second, "on time"),
                ok(&second, "again")
            ],
            at(60_003)
        )
        .await,
        [
            ReportOutcome::LeaseLost,
            ReportOutcome::Accepted(SubTaskState::Succeeded),
            ReportOutcome::LeaseLost,
        ]
    );
    let a = sub_task(store, &s, t.id, "a").await;
    assert_eq!((a.output.as_deref(), a.attempts), (Some("on time"), 2));
    assert_eq!(check(store, &s, t.id).await.state, TaskState::Succeeded);
}
