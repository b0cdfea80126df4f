//! `taskd serve`: the server on the embedded store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use taskd_api::{ApiConfig, AppState};
use taskd_core::{Clock, SystemClock};
use taskd_engine::device_channel::{DeviceChannel, NoDeviceChannel};
use taskd_engine::executors::{Devices, Registry};
use taskd_engine::runner::Runner;
use taskd_engine::{Engine, EngineConfig};
use taskd_store::{RunLimits, Store};

use crate::DataArgs;
use crate::backend::Backend;
use crate::credentials;
use crate::device_listener::{DeviceListenerArgs, DeviceListeners};
use crate::http_server;
use crate::logging::{self, LogFormat};

/// The node name device sessions are recorded under on the embedded store.
const EMBEDDED_SESSION_NODE: &str = "embedded";

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TASKD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    devices: DeviceListenerArgs,
    #[arg(long, env = "TASKD_LOG_FORMAT", value_enum, default_value_t)]
    log_format: LogFormat,
    /// Most sub-tasks running (leased to executors) at once, all projects together.
    #[arg(long, env = "TASKD_MAX_RUNNING", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_running: u32,
    /// Most sub-tasks running at once in one project.
    #[arg(long, env = "TASKD_MAX_RUNNING_PER_PROJECT", default_value_t = 2_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_running_per_project: u32,
    /// Legacy northbound flow control: calls per app per 60 s (over it: 403 1010009).
    #[arg(long, env = "TASKD_LEGACY_RATE_LIMIT", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    legacy_rate_limit: u32,
    /// Finished tasks and operations are purged this many days after their last change
    /// (0 keeps them forever).
    #[arg(long, env = "TASKD_RETENTION_DAYS", default_value_t = 180,
          value_parser = clap::value_parser!(u32).range(0..=36_500))]
    retention_days: u32,
    /// Seconds a client may take to send a request's headers, counted from connecting
    /// (first request) or from the request's first byte (later ones); then the
    /// connection is closed.
    #[arg(long, env = "TASKD_HEADER_READ_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    header_read_timeout_secs: u64,
    /// Seconds an idle keep-alive connection (or one whose client stopped reading the
    /// answer) stays open.
    #[arg(long, env = "TASKD_IDLE_TIMEOUT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    idle_timeout_secs: u64,
    /// Most client connections open at once; at the limit the one that has waited
    /// longest for a request is closed to make room. Default: the descriptor limit
    /// (RLIMIT_NOFILE, raised to its hard limit at start) less 64, at most 10000.
    #[arg(long, env = "TASKD_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
    /// With the next two: make sure this exact credential exists at start.
    #[arg(long, env = "TASKD_BOOTSTRAP_PROJECT_ID", hide = true)]
    bootstrap_project_id: Option<String>,
    #[arg(long, env = "TASKD_BOOTSTRAP_AK", hide = true)]
    bootstrap_ak: Option<String>,
    #[arg(long, env = "TASKD_BOOTSTRAP_SK", hide = true, hide_env_values = true)]
    bootstrap_sk: Option<String>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    logging::init(args.log_format);
    // Before the database opens its files: every descriptor counts.
    let fd_limit = http_server::raise_fd_limit();
    let limits = http_server::Limits {
        header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        max_connections: args.max_connections.map_or_else(
            || http_server::default_max_connections(fd_limit),
            |n| n as usize,
        ),
    };
    if limits.max_connections as u64 + http_server::RESERVED_FDS > fd_limit {
        tracing::warn!(
            fd_limit,
            max_connections = limits.max_connections,
            "--max-connections exceeds what the descriptor limit allows; when descriptors run out, idle connections are closed to make room"
        );
    }
    tracing::info!(
        fd_limit,
        max_connections = limits.max_connections,
        header_read_timeout_secs = args.header_read_timeout_secs,
        idle_timeout_secs = args.idle_timeout_secs,
        "connection limits"
    );
    let backend = Backend::open(&args.data).await?;
    let store = backend.store();
    bootstrap(&args, store.as_ref()).await?;

    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let device_listeners = DeviceListeners::bind(&args.devices).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Engine::with_config(
        store.clone(),
        clock.clone(),
        EngineConfig {
            limits: RunLimits {
                max_running: args.max_running,
                max_running_per_project: args.max_running_per_project,
            },
            retention: (args.retention_days > 0)
                .then(|| Duration::from_secs(u64::from(args.retention_days) * 24 * 3600)),
            ..EngineConfig::default()
        },
    );
    tracing::info!(node = %engine.config().node_id, "engine started");
    // The device channel: this node's connected devices. A node starting first ends the
    // sessions its previous run left behind (those devices are OFFLINE until they
    // reconnect).
    let devices_stop = tokio_util::sync::CancellationToken::new();
    // The node its sessions are recorded under. The embedded store has one process at a
    // time, so one fixed name lets every start (with a device listener or without) end
    // the sessions a crashed run left ONLINE. On PostgreSQL each process is its own node.
    let node_id = match &backend {
        Backend::Sqlite(_) => EMBEDDED_SESSION_NODE.to_owned(),
        Backend::Postgres(_) => engine.config().node_id.clone(),
    };
    let left = store
        .device_sessions_close_node(&node_id, clock.now())
        .await
        .context("ending this node's earlier device sessions")?;
    if left > 0 {
        tracing::info!(
            sessions = left,
            "ended device sessions of this node's previous run"
        );
    }
    // With a device listener, or on PostgreSQL where other nodes may hold devices, the
    // channel is a router: this node's hub for its own connections, mail through the
    // store for the others' (taskd_mqtt::relay).
    let clustered = matches!(backend, Backend::Postgres(_));
    let has_listener = device_listeners.any();
    let mut device_tasks = Vec::new();
    let channel: Arc<dyn DeviceChannel> = if has_listener || clustered {
        let hub = taskd_mqtt::Hub::new(store.clone(), clock.clone(), node_id);
        let router = taskd_mqtt::Router::new(Arc::clone(&hub));
        if clustered {
            // Before any device connects: the others reap sessions of unknown nodes.
            router.join().await.context("joining the cluster")?;
            let node_timeout = Duration::from_secs(u64::from(args.devices.node_timeout_secs));
            device_tasks.push(tokio::spawn(
                Arc::clone(&router).run(node_timeout, devices_stop.clone()),
            ));
        }
        if has_listener {
            let server = taskd_mqtt::MqttServer::new(
                hub,
                args.devices.mqtt_max_connections as usize,
                args.devices.mqtt_enforce_secure_access,
            );
            device_tasks.extend(device_listeners.spawn(server, devices_stop.clone()));
        }
        router
    } else {
        Arc::new(NoDeviceChannel)
    };
    // Device task types run here only where devices connect; else they wait for workers.
    let device_executor =
        has_listener.then(|| Devices::new(store.clone(), clock.clone(), Arc::clone(&channel)));
    let runner = Runner::start(
        engine.clone(),
        Registry::with_channel(Arc::clone(&channel)),
        device_executor,
    );
    let app = taskd_api::router(
        AppState::with_engine(
            engine,
            store.clone(),
            clock,
            ApiConfig {
                legacy_rate_limit: args.legacy_rate_limit,
                ..ApiConfig::default()
            },
        )
        .with_device_channel(channel),
    );
    tracing::info!(listen = %args.listen, data_dir = %args.data.data_dir.display(), "taskd ready");
    println!("taskd listening on http://{}", args.listen);

    http_server::serve(listener, app, limits, shutdown).await;
    // Every in-flight request has finished; stop the background loops, then close the
    // pools (SQLite checkpoints its WAL).
    runner.shutdown().await;
    // Devices see their connections close and reconnect elsewhere (or to this node when
    // it is back); their sessions end OFFLINE before the store closes.
    devices_stop.cancel();
    for task in device_tasks {
        let _ = task.await;
    }
    store.close().await;
    tracing::info!("taskd stopped");
    Ok(())
}

/// Makes the bootstrap credential exist, or on a first start with no credential at all,
/// creates a project and a key and prints them once.
async fn bootstrap(args: &ServeArgs, store: &dyn Store) -> anyhow::Result<()> {
    match (
        &args.bootstrap_project_id,
        &args.bootstrap_ak,
        &args.bootstrap_sk,
    ) {
        (Some(project), Some(ak), Some(sk)) => {
            let credential = credentials::generate(project, Some(ak.clone()), Some(sk.clone()))?;
            store
                .credential_put(&credential)
                .await
                .context("storing the bootstrap credential")?;
            tracing::info!(access_key = %credential.access_key, project_id = %credential.project_id, "bootstrap credential in place");
        }
        (None, None, None) => {
            if store.credential_list().await?.is_empty() {
                let credential =
                    credentials::generate(&credentials::generate_project_id(), None, None)?;
                store.credential_put(&credential).await?;
                println!(
                    "taskd: first start, created a project and an access key (shown only this once):"
                );
                println!("  project_id: {}", credential.project_id);
                println!("  access_key: {}", credential.access_key);
                println!("  secret_key: {}", credential.secret_key);
                tracing::info!(access_key = %credential.access_key, project_id = %credential.project_id, "created the first credential");
            }
        }
        _ => bail!(
            "TASKD_BOOTSTRAP_PROJECT_ID, TASKD_BOOTSTRAP_AK and TASKD_BOOTSTRAP_SK must be given together"
        ),
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The handlers are registered when this is called, not
/// when the future is first polled: a signal that arrives right after the server said it
/// is ready must still mean "shut down gracefully", not the default "die".
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!("shutdown requested; finishing in-flight requests");
    })
}
