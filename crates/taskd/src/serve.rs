//! `taskd serve`: the server on the embedded store.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use taskd_api::{ApiConfig, AppState};
use taskd_core::SystemClock;
use taskd_store::Store;
use taskd_store_sqlite::SqliteStore;

use crate::DataArgs;
use crate::credentials;
use crate::logging::{self, LogFormat};

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TASKD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, env = "TASKD_LOG_FORMAT", value_enum, default_value_t)]
    log_format: LogFormat,
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
    let store = Arc::new(
        SqliteStore::open(&args.data.data_dir)
            .await
            .with_context(|| format!("opening the database in {}", args.data.data_dir.display()))?,
    );
    bootstrap(&args, store.as_ref()).await?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let app = taskd_api::router(AppState::new(
        store.clone(),
        Arc::new(SystemClock),
        ApiConfig::default(),
    ));
    tracing::info!(listen = %args.listen, data_dir = %args.data.data_dir.display(), "taskd ready");
    println!("taskd listening on http://{}", args.listen);

    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    // Every in-flight request has finished; close the pools so SQLite checkpoints.
    store.close().await;
    tracing::info!("taskd stopped");
    Ok(())
}

/// Makes the bootstrap credential exist, or on a first start with no credential at all,
/// creates a project and a key and prints them once.
async fn bootstrap(args: &ServeArgs, store: &SqliteStore) -> anyhow::Result<()> {
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
