//! `taskd`: the self-hosted task center.
//!
//! This binary only parses the command line and wires the layers together: the store
//! (`taskd-store-sqlite`), the engine and the HTTP API. Each subcommand lives in its own
//! module.

mod apps;
mod backend;
mod bench;
mod bench_run;
mod credentials;
mod device_listener;
mod http_server;
mod logging;
mod ops;
mod serve;
mod simulate;
mod worker;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "taskd",
    version,
    about = "Self-hosted task center speaking Huawei Cloud's task APIs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the data lives. Every command that touches data takes it the same way.
#[derive(clap::Args, Clone, Debug)]
pub struct DataArgs {
    /// Directory holding the embedded SQLite database (created if missing).
    #[arg(long, env = "TASKD_DATA_DIR", default_value = "./taskd-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL instead of the embedded database (`postgres://user:pass@host/db`);
    /// several taskd nodes may share one.
    #[arg(long, env = "TASKD_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Manage access keys (works while the server runs).
    #[command(subcommand)]
    Credentials(credentials::CredentialsCommand),
    /// Manage apps of the legacy northbound API (works while the server runs).
    #[command(subcommand)]
    Apps(apps::AppsCommand),
    /// Create or update the database schema, then exit (serve also does it at start).
    Migrate(DataArgs),
    /// Measure the figures in BENCHMARKS.md (build with --release).
    Bench(bench::BenchArgs),
    /// Claim sub-tasks from a taskd and run a command for each (docs/worker-protocol.md).
    Worker(worker::WorkerArgs),
    /// Record and list instance operations (docs/instance-operations.md).
    #[command(subcommand)]
    Ops(Box<ops::OpsCommand>),
    /// Device tools: a simulated fleet over MQTT (docs/device-channel.md).
    #[command(subcommand)]
    Devices(simulate::DevicesCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("taskd: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Credentials(cmd) => credentials::run(cmd).await,
            Command::Apps(cmd) => apps::run(cmd).await,
            Command::Migrate(data) => migrate(data).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Worker(args) => worker::run(args).await,
            Command::Ops(cmd) => ops::run(*cmd).await,
            Command::Devices(cmd) => simulate::run(cmd).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("taskd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn migrate(data: DataArgs) -> anyhow::Result<()> {
    let backend = backend::Backend::open(&data).await?;
    backend.store().close().await;
    println!("schema up to date: {}", backend.describe(&data));
    Ok(())
}
