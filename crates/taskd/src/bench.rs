//! `taskd bench`: the figures in BENCHMARKS.md, measured on the real code paths.
//!
//! * CreateBatchTask with N targets, end to end: a signed HTTP request over loopback TCP
//!   to a server in this process, until the 201 is read.
//! * ListBatchTasks and ShowBatchTask, first page versus a page 20,000 records deep by
//!   marker, with `--tasks` stored tasks: server-side, i.e. the whole router (signature
//!   check, credential lookup, query, JSON) without the network.
//!
//! The database is kept in `--data-dir` (a temporary directory by default); pointing it
//! at an existing bench directory skips seeding the tasks again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use taskd_api::{ApiConfig, AppState};
use taskd_core::{Clock, Credential, Id, SystemClock, TaskScope};
use taskd_signature::{SigningKey, SigningRequest, format_sdk_date, sign};
use taskd_store::{PageRequest, Store, SubTaskListParams, TaskFilter, TaskListParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use crate::DataArgs;
use crate::backend::Backend;

const PROJECT: &str = "b0000000000000000000000000000001";
const AK: &str = "BENCHAK0000000000001";
const SK: &str = "bench-secret-key-0123456789abcdefghijkl";
const DEPTH: usize = 20_000;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    mode: Option<BenchMode>,
    /// Tasks stored before measuring list latency.
    #[arg(long, default_value_t = 1_000_000)]
    tasks: usize,
    /// Targets of the big task (create end to end, show paging).
    #[arg(long, default_value_t = 30_000)]
    targets: usize,
    /// Where the bench database lives (kept between runs when given).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Measure on PostgreSQL instead (an empty database or schema is best; the bench
    /// project's tasks are kept between runs).
    #[arg(long)]
    database_url: Option<String>,
    /// Requests per latency figure.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Big creates measured end to end.
    #[arg(long, default_value_t = 5)]
    creates: usize,
}

/// Without a mode: the API latency figures.
#[derive(clap::Subcommand, Debug)]
enum BenchMode {
    /// Sub-tasks run per second (claim, report) with one or more nodes on one database.
    Throughput(crate::bench_run::ThroughputArgs),
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(BenchMode::Throughput(throughput)) = args.mode {
        return crate::bench_run::run(throughput).await;
    }
    if args.tasks < DEPTH + 100 || args.targets < DEPTH + 100 {
        bail!(
            "--tasks and --targets must exceed {} to measure a page {DEPTH} deep",
            DEPTH + 100
        );
    }
    let temp;
    let dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let data = DataArgs {
        data_dir: dir,
        database_url: args.database_url.clone(),
    };
    let backend = Backend::open(&data)
        .await
        .context("opening the bench database")?;
    eprintln!("bench: store {}", backend.describe(&data));
    let store = backend.store();
    store
        .credential_put(&Credential {
            access_key: AK.into(),
            secret_key: SK.into(),
            project_id: PROJECT.into(),
            created_at: SystemClock.now(),
            revoked_at: None,
        })
        .await?;
    let small_scope = TaskScope::new(PROJECT, "");
    let big_scope = TaskScope::new(PROJECT, "big");
    seed(&backend, &small_scope, args.tasks).await?;
    let app = taskd_api::router(AppState::new(
        store.clone(),
        Arc::new(SystemClock),
        ApiConfig::default(),
    ));

    println!("| measurement | median | p99 | min |");
    println!("|---|---|---|---|");

    // CreateBatchTask end to end over loopback TCP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(axum::serve(listener, app.clone()).into_future());
    let mut creates = Vec::new();
    let mut big_task = None;
    for i in 0..args.creates {
        let (elapsed, task_id) = create_over_tcp(addr, args.targets, i).await?;
        creates.push(elapsed);
        big_task = Some(task_id);
    }
    server.abort();
    report(
        &format!(
            "CreateBatchTask, {} targets, end to end (HTTP over loopback)",
            args.targets
        ),
        &mut creates,
    );

    // List: first page and 20,000 deep.
    let deep_task_marker = marker_at_depth_tasks(store.as_ref(), &small_scope).await?;
    let list_path = format!("/v5/iot/{PROJECT}/batchtasks");
    let mut first = time_requests(&app, &list_path, &[("limit", "50")], None, args.samples).await?;
    let mut deep = time_requests(
        &app,
        &list_path,
        &[("limit", "50"), ("marker", &deep_task_marker)],
        None,
        args.samples,
    )
    .await?;
    report(
        &format!(
            "ListBatchTasks, {} tasks, first page (limit 50)",
            args.tasks
        ),
        &mut first,
    );
    report(
        &format!(
            "ListBatchTasks, {} tasks, page {DEPTH} deep by marker (limit 50)",
            args.tasks
        ),
        &mut deep,
    );
    println!(
        "| ratio deep / first (median) | {:.2} | | |",
        ratio(&deep, &first)
    );

    // Show: the big task's sub-tasks, first page and 20,000 deep.
    let big_id = Id::parse_exact(&big_task.context("no task created")?).context("task id")?;
    let deep_sub_marker = marker_at_depth_sub_tasks(store.as_ref(), &big_scope, big_id).await?;
    let show_path = format!("/v5/iot/{PROJECT}/batchtasks/{big_id}");
    let mut first = time_requests(
        &app,
        &show_path,
        &[("limit", "50")],
        Some("big"),
        args.samples,
    )
    .await?;
    let mut deep = time_requests(
        &app,
        &show_path,
        &[("limit", "50"), ("marker", &deep_sub_marker)],
        Some("big"),
        args.samples,
    )
    .await?;
    report(
        &format!(
            "ShowBatchTask, {} sub-tasks, first page (limit 50)",
            args.targets
        ),
        &mut first,
    );
    report(
        &format!(
            "ShowBatchTask, {} sub-tasks, page {DEPTH} deep by marker (limit 50)",
            args.targets
        ),
        &mut deep,
    );
    println!(
        "| ratio deep / first (median) | {:.2} | | |",
        ratio(&deep, &first)
    );

    store.close().await;
    Ok(())
}

/// Stores `n` one-target tasks in `scope` (skipped when the directory already holds them).
async fn seed(backend: &Backend, scope: &TaskScope, n: usize) -> anyhow::Result<()> {
    let have = backend
        .store()
        .task_list(&TaskListParams {
            scope: scope.clone(),
            filter: TaskFilter::default(),
            page: PageRequest {
                marker: Id::MAX,
                offset: 0,
                limit: 1,
            },
        })
        .await?
        .count as usize;
    if have >= n {
        eprintln!("bench: {have} tasks already stored");
        return Ok(());
    }
    let started = Instant::now();
    backend
        .seed_benchmark_tasks(scope, (n - have) as i64, SystemClock.now())
        .await?;
    eprintln!(
        "bench: seeded {} tasks in {:.1} s",
        n - have,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn signed_headers(
    path: &str,
    query: &[(&str, &str)],
    body: &[u8],
    host: &str,
    instance: Option<&str>,
    method: &str,
) -> (String, Vec<(String, String)>) {
    let date = format_sdk_date(SystemClock.now().unix_secs());
    let mut headers: Vec<(&str, &str)> = vec![
        ("Content-Type", "application/json"),
        ("Host", host),
        ("User-Agent", "taskd-bench"),
        ("X-Project-Id", PROJECT),
        ("X-Sdk-Date", &date),
    ];
    if let Some(i) = instance {
        headers.push(("Instance-Id", i));
    }
    let signed = sign(
        &SigningRequest {
            method,
            path,
            query,
            headers: &headers,
            body,
        },
        &SigningKey::Derived {
            access_key: AK,
            secret_key: SK,
            region: "cn-north-4",
            service: "iotdm",
        },
    );
    let mut out: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    out.push(("Authorization".into(), signed.authorization));
    let uri = if signed.query_string.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", signed.query_string)
    };
    (uri, out)
}

async fn create_over_tcp(
    addr: std::net::SocketAddr,
    targets: usize,
    round: usize,
) -> anyhow::Result<(Duration, String)> {
    let targets: Vec<String> = (0..targets)
        .map(|i| format!("device-{round}-{i:06}"))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({
        "task_name": format!("bench_big_{round}"),
        "task_type": "firmwareUpgrade",
        "targets": targets,
        "document": {"package_ids": ["32822e5744a45ede319d2c50"]},
    }))?;
    let path = format!("/v5/iot/{PROJECT}/batchtasks");
    let host = addr.to_string();
    let started = Instant::now();
    let (uri, headers) = signed_headers(&path, &[], &body, &host, Some("big"), "POST");
    let mut request = format!("POST {uri} HTTP/1.1\r\n");
    for (k, v) in &headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(&body).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&response);
    if !text.starts_with("HTTP/1.1 201") {
        bail!("create failed: {}", text.lines().next().unwrap_or(""));
    }
    let json_start = text.find("\r\n\r\n").context("no body")? + 4;
    let value: serde_json::Value = serde_json::from_str(&text[json_start..])?;
    Ok((
        elapsed,
        value["task_id"].as_str().context("task_id")?.to_string(),
    ))
}

async fn time_requests(
    app: &axum::Router,
    path: &str,
    query: &[(&str, &str)],
    instance: Option<&str>,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(samples);
    for i in 0..samples + 20 {
        let (uri, headers) = signed_headers(path, query, b"", "127.0.0.1:8080", instance, "GET");
        let mut req = Request::get(uri);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let req = req.body(Body::empty())?;
        let started = Instant::now();
        let resp = app.clone().oneshot(req).await?;
        let status = resp.status();
        let _ = resp.into_body().collect().await?;
        let elapsed = started.elapsed();
        if !status.is_success() {
            bail!("GET {path} answered {status}");
        }
        if i >= 20 {
            times.push(elapsed); // the first 20 warm caches and pools
        }
    }
    Ok(times)
}

async fn marker_at_depth_tasks(store: &dyn Store, scope: &TaskScope) -> anyhow::Result<String> {
    let mut marker = Id::MAX;
    for _ in 0..DEPTH / 50 {
        let page = store
            .task_list(&TaskListParams {
                scope: scope.clone(),
                filter: TaskFilter::default(),
                page: PageRequest {
                    marker,
                    offset: 0,
                    limit: 50,
                },
            })
            .await?;
        marker = page.items.last().context("fewer tasks than the depth")?.id;
    }
    Ok(marker.to_string())
}

async fn marker_at_depth_sub_tasks(
    store: &dyn Store,
    scope: &TaskScope,
    task_id: Id,
) -> anyhow::Result<String> {
    let mut marker = Id::MAX;
    for _ in 0..DEPTH / 50 {
        let page = store
            .sub_task_list(&SubTaskListParams {
                scope: scope.clone(),
                task_id,
                state: None,
                target: None,
                page: PageRequest {
                    marker,
                    offset: 0,
                    limit: 50,
                },
            })
            .await?
            .context("big task vanished")?;
        marker = page
            .items
            .last()
            .context("fewer sub-tasks than the depth")?
            .id;
    }
    Ok(marker.to_string())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ratio(a: &[Duration], b: &[Duration]) -> f64 {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    median(&mut a).as_secs_f64() / median(&mut b).as_secs_f64()
}

fn report(what: &str, v: &mut [Duration]) {
    v.sort();
    let p99 = v[((v.len() as f64 * 0.99).ceil() as usize)
        .saturating_sub(1)
        .min(v.len() - 1)];
    let fmt = |d: Duration| {
        if d >= Duration::from_millis(10) {
            format!("{:.1} ms", d.as_secs_f64() * 1e3)
        } else {
            format!("{:.0} µs", d.as_secs_f64() * 1e6)
        }
    };
    println!(
        "| {what} | {} | {} | {} |",
        fmt(v[v.len() / 2]),
        fmt(p99),
        fmt(v[0])
    );
}
