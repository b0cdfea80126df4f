// Throwaway timing probe (not kept).
use std::time::Instant;
use taskd_core::*;
use taskd_store::*;
use taskd_store_sqlite::SqliteStore;

fn nt(s: &TaskScope, name: &str) -> NewTask {
    NewTask {
        scope: s.clone(),
        app_id: None,
        name: name.into(),
        kind: "firmwareUpgrade".into(),
        mode: None,
        need_confirm: false,
        ext_info_json: None,
        targets_json: None,
        targets_filter_json: None,
        document_json: Some(r#"{"v":"1"}"#.into()),
        document_source: None,
        schedule_at: None,
        retry: None,
    }
}

#[tokio::main]
async fn main() {
    let n_tasks: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let s = TaskScope::new("p1", "");
    let mut big = None;
    for r in 0..5 {
        let subs: Vec<NewSubTask> = (0..30_000)
            .map(|i| NewSubTask {
                target: format!("device-{r}-{i:06}"),
                input_json: Some(format!("{{\"row\":{i}}}")),
            })
            .collect();
        let t0 = Instant::now();
        let t = store
            .task_insert(TaskInsertParams {
                task: nt(&s, "big"),
                sub_tasks: subs,
                now: Timestamp(1_700_000_000_000),
            })
            .await
            .unwrap();
        println!("insert 30,000 sub-tasks: {:?}", t0.elapsed());
        big = Some(t);
    }
    let big = big.unwrap();
    let t0 = Instant::now();
    let mut marker = Id::MAX;
    let mut n = 0;
    loop {
        let p = store
            .sub_task_list(&SubTaskListParams {
                scope: s.clone(),
                task_id: big.id,
                state: None,
                target: None,
                page: PageRequest {
                    marker,
                    offset: 0,
                    limit: 50,
                },
            })
            .await
            .unwrap()
            .unwrap();
        if p.items.is_empty() {
            break;
        }
        n += p.items.len();
        marker = p.items.last().unwrap().id;
    }
    println!("paged all {n} sub-tasks by 50: {:?}", t0.elapsed());
    let t0 = Instant::now();
    let out = store
        .task_control(TaskControlParams {
            scope: s.clone(),
            task_id: big.id,
            op: ControlOp::Stop,
            targets: None,
            now: Timestamp(1_700_000_000_001),
        })
        .await
        .unwrap();
    println!(
        "whole-task stop of 30,000: {:?} ({})",
        t0.elapsed(),
        matches!(out, TaskControlOutcome::Applied { .. })
    );
    let t0 = Instant::now();
    store.task_delete(&s, big.id).await.unwrap();
    println!("delete 30,000: {:?}", t0.elapsed());

    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(n_tasks);
    for i in 0..n_tasks {
        let mut t = nt(&s, &format!("t{i}"));
        t.kind = if i % 3 == 0 { "a".into() } else { "b".into() };
        let t = store
            .task_insert(TaskInsertParams {
                task: t,
                sub_tasks: vec![NewSubTask {
                    target: "d".into(),
                    input_json: None,
                }],
                now: Timestamp(1_700_000_000_000 + i as i64),
            })
            .await
            .unwrap();
        ids.push(t.id);
    }
    println!("inserted {n_tasks} tasks: {:?}", t0.elapsed());
    let deep = ids[ids.len() - 20_000 * 10 / 10 - 1 - 19_999 * 0]; // marker = id of the task 20,000 from the top
    let filters = [
        ("none", TaskFilter::default()),
        (
            "kind",
            TaskFilter {
                kind: Some("a".into()),
                ..Default::default()
            },
        ),
        (
            "state",
            TaskFilter {
                state: Some(TaskState::Waiting),
                ..Default::default()
            },
        ),
    ];
    for (name, f) in filters {
        for (label, marker) in [("first", Id::MAX), ("deep", deep)] {
            let req = TaskListParams {
                scope: s.clone(),
                filter: f.clone(),
                page: PageRequest {
                    marker,
                    offset: 0,
                    limit: 10,
                },
            };
            for _ in 0..20 {
                store.task_list(&req).await.unwrap();
            }
            let mut times: Vec<_> = (0..200)
                .map(|_| 0)
                .collect::<Vec<u8>>()
                .iter()
                .map(|_| std::time::Duration::ZERO)
                .collect();
            for t in times.iter_mut() {
                let t0 = Instant::now();
                let p = store.task_list(&req).await.unwrap();
                *t = t0.elapsed();
                assert_eq!(p.items.len(), 10);
            }
            times.sort();
            println!(
                "task_list {name:5} {label:5}: median {:?} p90 {:?}",
                times[100], times[180]
            );
        }
    }
    store.close().await;
}
