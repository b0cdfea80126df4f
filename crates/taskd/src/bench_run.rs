//! `taskd bench throughput`: how many sub-tasks per second the engine runs end to end
//! (claim with a lease, report the result, counters and task state kept in the same
//! transactions) with 1 or more nodes on one database.
//!
//! Each node is an [`Engine`] with its own store and connection pool, as a separate
//! `taskd serve` process would have; they run in this process so one command measures
//! them together. Every node runs `--executors` executors, each claiming batches of
//! `--batch` and reporting them all succeeded at once: the engine's own overhead per
//! sub-task, with executors that do no work. The tasks are created before the clock
//! starts (`--tasks` tasks of `--sub-tasks` / `--tasks` targets each).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use taskd_core::{Clock, NewTask, SystemClock, TaskScope, TaskState};
use taskd_engine::{ClaimRequest, Engine, EngineConfig, TargetSource};
use taskd_store::{RunLimits, RunOutcome, RunResult};

use crate::DataArgs;
use crate::backend::Backend;

#[derive(clap::Args, Debug)]
pub struct ThroughputArgs {
    /// Where the bench database lives (a temporary directory by default).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
    /// Measure on PostgreSQL (the nodes share it); an empty database or schema is best.
    #[arg(long)]
    database_url: Option<String>,
    /// Nodes (engines with their own connection pools) sharing the database.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Executors per node, each claiming and reporting in a loop.
    #[arg(long, default_value_t = 4)]
    executors: usize,
    /// Sub-tasks per claim (and per report).
    #[arg(long, default_value_t = 500)]
    batch: u32,
    /// Sub-tasks to run in all.
    #[arg(long, default_value_t = 200_000)]
    sub_tasks: usize,
    /// Tasks they are spread over (fair sharing runs them side by side).
    #[arg(long, default_value_t = 20)]
    tasks: usize,
}

const KIND: &str = "createCommands";

pub async fn run(args: ThroughputArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.executors == 0 || args.tasks == 0 || args.sub_tasks < args.tasks {
        bail!("--nodes, --executors and --tasks must be positive, --sub-tasks at least --tasks");
    }
    if args.sub_tasks / args.tasks > taskd_engine::MAX_TARGETS_PER_TASK {
        bail!(
            "at most {} sub-tasks per task: raise --tasks",
            taskd_engine::MAX_TARGETS_PER_TASK
        );
    }
    if args.nodes > 1 && args.database_url.is_none() {
        bail!("several nodes share a PostgreSQL database: give --database-url");
    }
    let temp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let data = DataArgs {
        data_dir,
        database_url: args.database_url.clone(),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = || EngineConfig {
        // No limit in the way: this measures the engine, not the caps.
        limits: RunLimits {
            max_running: 1_000_000,
            max_running_per_project: 1_000_000,
        },
        ..EngineConfig::default()
    };
    let mut nodes = Vec::new();
    for _ in 0..args.nodes {
        let backend = Backend::open(&data)
            .await
            .context("opening the bench database")?;
        nodes.push(Engine::with_config(
            backend.store(),
            clock.clone(),
            config(),
        ));
    }
    eprintln!(
        "bench: {} node(s) on {}",
        args.nodes,
        if args.database_url.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );

    // A project of its own per run, so earlier runs' leftovers are never claimed.
    let project = format!("bench{:027x}", rand::random::<u64>() as u128);
    let scope = TaskScope::new(project.clone(), "");
    let per_task = args.sub_tasks / args.tasks;
    let created = Instant::now();
    let mut task_ids = Vec::new();
    for t in 0..args.tasks {
        let targets = (0..per_task).map(|i| format!("dev_{t}_{i}")).collect();
        let task = nodes[0]
            .create_task(new_task(&scope, t), TargetSource::Explicit(targets))
            .await?;
        task_ids.push(task.id);
    }
    let total = (per_task * args.tasks) as u64;
    eprintln!(
        "bench: created {} tasks, {total} sub-tasks in {:.1} s",
        args.tasks,
        created.elapsed().as_secs_f64()
    );

    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut executors = tokio::task::JoinSet::new();
    for (n, node) in nodes.iter().enumerate() {
        for e in 0..args.executors {
            let node = node.clone();
            let done = done.clone();
            let project = project.clone();
            let batch = args.batch;
            executors.spawn(async move {
                let worker_id = format!("bench-{n}-{e}");
                while done.load(Ordering::Relaxed) < total {
                    let claimed = node
                        .claim(ClaimRequest {
                            worker_id: worker_id.clone(),
                            project_id: Some(project.clone()),
                            kinds: vec![KIND.to_owned()],
                            max: batch,
                            lease: Duration::from_secs(300),
                            wait: Duration::from_millis(200),
                        })
                        .await?;
                    if claimed.is_empty() {
                        continue;
                    }
                    let results = claimed
                        .iter()
                        .map(|c| RunResult {
                            sub_task_id: c.id,
                            attempt: c.attempt,
                            outcome: RunOutcome::Succeeded { output: None },
                            effect: None,
                        })
                        .collect::<Vec<_>>();
                    let n = results.len() as u64;
                    node.report(Some(project.clone()), results).await?;
                    done.fetch_add(n, Ordering::Relaxed);
                }
                anyhow::Ok(())
            });
        }
    }
    while let Some(joined) = executors.join_next().await {
        joined.context("executor panicked")??;
    }
    let elapsed = started.elapsed();

    // Every task finished, and every counter says so.
    for id in &task_ids {
        let task = nodes[0]
            .store()
            .task_get(&scope, *id)
            .await?
            .context("bench task vanished")?;
        if task.state != TaskState::Succeeded || task.progress.succeeded != per_task as i64 {
            bail!("task {id} ended {:?} with {:?}", task.state, task.progress);
        }
    }
    println!(
        "| sub-task throughput, {} node(s) × {} executors, batches of {} | {total} sub-tasks in {:.2} s | {:.0} sub-tasks/s |",
        args.nodes,
        args.executors,
        args.batch,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    for node in &nodes {
        node.store().close().await;
    }
    Ok(())
}

fn new_task(scope: &TaskScope, i: usize) -> NewTask {
    NewTask {
        scope: scope.clone(),
        app_id: None,
        name: format!("throughput-{i}"),
        kind: KIND.to_owned(),
        mode: None,
        need_confirm: false,
        ext_info_json: None,
        targets_json: None,
        targets_filter_json: None,
        document_json: Some(r#"{"service_id":"s","command_name":"c","paras":{}}"#.to_owned()),
        document_source: None,
        schedule_at: None,
        retry: None,
        operation: None,
    }
}
