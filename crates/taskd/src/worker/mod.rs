//! `taskd worker`: a ready-made worker that runs a command per claimed sub-task
//! (`docs/worker-protocol.md`).
//!
//! Three kinds of tasks cooperate:
//!
//! * the claim loop ([`Worker::run`]) long-polls for as many sub-tasks as there are free
//!   slots and starts one [`execute`] per sub-task;
//! * each [`execute`] runs the command, heartbeats while it runs, kills it when the lease
//!   is lost, and hands its result to the reporter;
//! * the reporter ([`report_results`]) batches what finished together and delivers it,
//!   retrying until taskd answers.
//!
//! The first SIGTERM/SIGINT stops the claim loop; running commands finish and are
//! reported, then the worker exits 0. A second one kills the running commands (their
//! leases expire and the sub-tasks are claimed again) and the worker exits non-zero.

pub mod client;
mod command;
/// The protocol's shapes and limits, shared with the server's handlers.
pub use taskd_worker_protocol as protocol;

use std::ffi::OsString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::logging::{self, LogFormat};
use client::{Backoff, CallError, Claimed, Client};
use protocol::{
    ClaimRequest, HeartbeatRequest, LEASE_SECONDS_MAX, LEASE_SECONDS_MIN, MAX_BATCH,
    MAX_TASK_TYPES, MAX_WORKER_ID_CHARS, ResultsRequest, SubTaskResult,
};

/// How long one claim long-polls when nothing is ready.
const CLAIM_WAIT_SECONDS: u64 = 20;
/// Retrying after a network error or a 5xx: from this ...
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// ... doubling up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// At least this long between two claims that found nothing, should a server answer a
/// long poll at once.
const MIN_EMPTY_CLAIM_INTERVAL: Duration = Duration::from_secs(1);

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// taskd's base URL (plain HTTP), e.g. http://taskd:8080.
    #[arg(long, env = "TASKD_ENDPOINT")]
    endpoint: String,
    /// Access key of the project's credential.
    #[arg(long, env = "TASKD_AK")]
    ak: String,
    /// Secret key (prefer the environment: arguments show in `ps`). Commands do not
    /// inherit TASKD_SK.
    #[arg(long, env = "TASKD_SK", hide_env_values = true)]
    sk: String,
    /// The project whose sub-tasks this worker runs.
    #[arg(long, env = "TASKD_PROJECT_ID")]
    project_id: String,
    /// A task type to run; repeat for several (at most 20).
    #[arg(long = "task-type", value_name = "TASK_TYPE", required = true, value_parser = parse_task_type)]
    task_types: Vec<String>,
    /// How many commands run at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH as i64))]
    concurrency: u32,
    /// Lease per sub-task; the worker heartbeats every third of it while the command runs.
    #[arg(long, default_value_t = protocol::DEFAULT_LEASE_SECONDS,
          value_parser = clap::value_parser!(u32).range(i64::from(LEASE_SECONDS_MIN)..=i64::from(LEASE_SECONDS_MAX)))]
    lease_seconds: u32,
    /// Names this worker in taskd's logs [default: HOSTNAME/pid-PID].
    #[arg(long, value_parser = parse_worker_id)]
    worker_id: Option<String>,
    #[arg(long, env = "TASKD_LOG_FORMAT", value_enum, default_value_t)]
    log_format: LogFormat,
    /// Heartbeat period in milliseconds instead of lease_seconds / 3 (for tests).
    #[arg(long, hide = true)]
    heartbeat_interval_ms: Option<u64>,
    /// The command to run per sub-task, after `--`. It gets the sub-task in TASKD_*
    /// variables and as JSON on stdin; exit 0 with the output on stdout is success.
    #[arg(last = true, required = true, num_args = 1.., value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn parse_task_type(value: &str) -> Result<String, String> {
    if protocol::is_valid_task_type(value) {
        Ok(value.to_string())
    } else {
        Err("a task type is 1-64 characters of A-Z, a-z, 0-9 and _".into())
    }
}

fn parse_worker_id(value: &str) -> Result<String, String> {
    if protocol::is_valid_worker_id(value) {
        Ok(value.to_string())
    } else {
        Err("a worker id is 1-128 characters of A-Z, a-z, 0-9 and _.:/@-".into())
    }
}

/// `HOSTNAME/pid-PID`, the hostname reduced to the characters a worker id may hold.
fn default_worker_id() -> String {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    worker_id_from(&host, std::process::id())
}

fn worker_id_from(host: &str, pid: u32) -> String {
    let suffix = format!("/pid-{pid}");
    let host: String = host
        .chars()
        .map(|c| {
            if protocol::is_worker_id_char(c) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_WORKER_ID_CHARS - suffix.len())
        .collect();
    let host = if host.is_empty() {
        "worker".into()
    } else {
        host
    };
    format!("{host}{suffix}")
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<()> {
    logging::init(args.log_format);
    if args.task_types.len() > MAX_TASK_TYPES {
        bail!("at most {MAX_TASK_TYPES} --task-type values");
    }
    let program = &args.command[0];
    if command::find_program(program).is_none() {
        bail!("the command {program:?} was not found or is not executable");
    }
    let client = Client::new(&args.endpoint, &args.ak, &args.sk, &args.project_id)?;
    let heartbeat_every = match args.heartbeat_interval_ms {
        Some(ms) => Duration::from_millis(ms.max(1)),
        None => Duration::from_secs(args.lease_seconds.into()) / 3,
    };
    let worker = Worker {
        ctx: Arc::new(Ctx {
            client,
            command: args.command,
            lease_seconds: u64::from(args.lease_seconds),
            heartbeat_every,
        }),
        worker_id: args.worker_id.unwrap_or_else(default_worker_id),
        task_types: args.task_types,
        concurrency: args.concurrency as usize,
    };
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    watch_signals(stop.clone(), abort.clone())?;
    tracing::info!(
        worker_id = %worker.worker_id,
        endpoint = %args.endpoint,
        access_key = %args.ak,
        project_id = %args.project_id,
        task_types = ?worker.task_types,
        concurrency = worker.concurrency,
        lease_seconds = args.lease_seconds,
        "worker started"
    );
    worker.run(stop, abort).await
}

/// First SIGINT/SIGTERM: `stop` (no new claims). Second: `abort` (kill the commands).
/// The handlers are installed before the first claim.
fn watch_signals(stop: CancellationToken, abort: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::info!(
            "stopping: no new claims; waiting for the running commands (signal again to kill them)"
        );
        stop.cancel();
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::warn!("stopping now: killing the running commands");
        abort.cancel();
    });
    Ok(())
}

/// What every sub-task execution shares.
struct Ctx {
    client: Client,
    command: Vec<OsString>,
    lease_seconds: u64,
    heartbeat_every: Duration,
}

struct Worker {
    ctx: Arc<Ctx>,
    worker_id: String,
    task_types: Vec<String>,
    concurrency: usize,
}

impl Worker {
    async fn run(self, stop: CancellationToken, abort: CancellationToken) -> anyhow::Result<()> {
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let reporter = tokio::spawn(report_results(self.ctx.clone(), results_rx, abort.clone()));
        let mut running: JoinSet<()> = JoinSet::new();
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        let mut fatal = None;

        while !stop.is_cancelled() {
            while let Some(done) = running.try_join_next() {
                log_join(done);
            }
            let free = self.concurrency - running.len();
            if free == 0 {
                tokio::select! {
                    Some(done) = running.join_next() => log_join(done),
                    _ = stop.cancelled() => {}
                }
                continue;
            }
            let request = ClaimRequest {
                protocol: protocol::PROTOCOL,
                worker_id: self.worker_id.clone(),
                task_types: self.task_types.clone(),
                max: free as u32,
                lease_seconds: self.ctx.lease_seconds,
                wait_seconds: CLAIM_WAIT_SECONDS,
            };
            let started = Instant::now();
            // A claim cut short by a stop may have leased sub-tasks nobody will see; their
            // leases expire and they are claimed again (attempt + 1).
            let answer = tokio::select! {
                answer = self.ctx.client.claim(&request) => answer,
                _ = stop.cancelled() => break,
            };
            match answer {
                Ok(claimed) => {
                    backoff.reset();
                    if claimed.is_empty() {
                        let pause = MIN_EMPTY_CLAIM_INTERVAL.saturating_sub(started.elapsed());
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {},
                            _ = stop.cancelled() => {},
                        }
                        continue;
                    }
                    if claimed.len() > free {
                        tracing::warn!(
                            asked = free,
                            got = claimed.len(),
                            "taskd leased more sub-tasks than asked for; the extra leases will expire"
                        );
                    }
                    for item in claimed.into_iter().take(free) {
                        let span = tracing::info_span!(
                            "sub_task",
                            sub_task_id = %item.sub_task.sub_task_id,
                            attempt = item.sub_task.attempt,
                            task_type = %item.sub_task.task_type,
                            target = %item.sub_task.target,
                        );
                        running.spawn(
                            execute(self.ctx.clone(), item, results_tx.clone(), abort.clone())
                                .instrument(span),
                        );
                    }
                }
                Err(CallError::Refused {
                    status,
                    code,
                    message,
                }) if status != 409 => {
                    let hint = match status {
                        401 | 403 => "; check the access key, the secret key and the project id",
                        400 => "; check --task-type, --lease-seconds and --worker-id",
                        404 => "; is --endpoint a taskd with the worker protocol?",
                        _ => "",
                    };
                    fatal = Some(format!(
                        "taskd refused the claim: HTTP {status} {code}: {message}{hint}"
                    ));
                    tracing::error!(status, %code, %message, "claim refused; stopping");
                    break;
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "claim failed");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {},
                        _ = stop.cancelled() => {},
                    }
                }
            }
        }

        if !running.is_empty() {
            tracing::info!(
                running = running.len(),
                "waiting for the running commands to finish"
            );
        }
        while let Some(done) = running.join_next().await {
            log_join(done);
        }
        drop(results_tx);
        if let Err(e) = reporter.await {
            tracing::error!(error = %e, "the result reporter failed");
        }
        if let Some(message) = fatal {
            bail!(message);
        }
        if abort.is_cancelled() {
            bail!("stopped before the running commands finished; their sub-tasks run again");
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "a sub-task execution failed");
    }
}

/// Runs the command for one claimed sub-task and sends its result to the reporter. A
/// lost lease (or an abort) kills the command and sends nothing.
async fn execute(
    ctx: Arc<Ctx>,
    claimed: Claimed,
    results: mpsc::UnboundedSender<SubTaskResult>,
    abort: CancellationToken,
) {
    let sub = &claimed.sub_task;
    let result = |outcome| SubTaskResult {
        sub_task_id: sub.sub_task_id.clone(),
        attempt: sub.attempt,
        outcome,
    };
    let mut running = match command::spawn(&ctx.command, &claimed) {
        Ok(running) => running,
        Err(e) => {
            tracing::error!(error = %e, "could not start the command");
            let _ = results.send(result(command::spawn_failure(&e)));
            return;
        }
    };
    tracing::info!("command started");
    let _progress = command::RemoveOnDrop(command::progress_file(sub));
    let status = tokio::select! {
        status = running.wait() => status,
        reason = keep_lease(&ctx, sub) => {
            tracing::warn!(%reason, "lease lost; killing the command, its result is dropped");
            running.kill().await;
            return;
        }
        _ = abort.cancelled() => {
            tracing::warn!("killing the command");
            running.kill().await;
            return;
        }
    };
    let outcome = match status {
        Ok(status) => command::outcome(&running.finish(status).await),
        Err(e) => {
            // Waiting on our own child failed: nothing is known about how it ended.
            tracing::error!(error = %e, "lost track of the command");
            running.kill().await;
            return;
        }
    };
    match &outcome {
        protocol::Outcome::Succeeded { .. } => tracing::info!("command succeeded"),
        protocol::Outcome::Failed { error_code, .. } => {
            tracing::info!(%error_code, "command failed")
        }
    }
    let _ = results.send(result(outcome));
}

/// Heartbeats every `heartbeat_every` and returns only when the lease is lost (409, or
/// 404 for a sub-task taskd no longer knows). Other failures are logged and the next
/// beat tries again: the lease outlives two missed beats.
async fn keep_lease(ctx: &Ctx, sub: &protocol::ClaimedSubTask) -> String {
    let period = ctx.heartbeat_every;
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let progress_file = command::progress_file(sub);
    loop {
        beat.tick().await;
        let request = HeartbeatRequest {
            attempt: sub.attempt,
            lease_seconds: ctx.lease_seconds,
            progress: command::read_progress(&progress_file),
        };
        let timeout = period.max(Duration::from_secs(1));
        match ctx
            .client
            .heartbeat(&sub.sub_task_id, &request, timeout)
            .await
        {
            Ok(answer) => {
                tracing::debug!(lease_expires_at = %answer.lease_expires_at, "lease extended")
            }
            Err(CallError::Refused {
                status: status @ (404 | 409),
                code,
                message,
            }) => return format!("HTTP {status} {code}: {message}"),
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
        }
    }
}

/// Delivers results in batches of what is waiting (at most [`MAX_BATCH`]), retrying a
/// batch after network errors and 5xx until taskd answers. Returns when every sender is
/// gone and everything is delivered, or on abort.
async fn report_results(
    ctx: Arc<Ctx>,
    mut incoming: mpsc::UnboundedReceiver<SubTaskResult>,
    abort: CancellationToken,
) {
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut batch: Vec<SubTaskResult> = Vec::new();
    loop {
        if batch.is_empty() {
            match incoming.recv().await {
                Some(result) => batch.push(result),
                None => return,
            }
        }
        while batch.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(result) => batch.push(result),
                Err(_) => break,
            }
        }
        let request = ResultsRequest {
            results: std::mem::take(&mut batch),
        };
        match ctx.client.report(&request).await {
            Ok(answer) => {
                backoff.reset();
                log_acks(&request.results, &answer.results);
            }
            Err(CallError::Refused {
                status,
                code,
                message,
            }) => {
                let ids: Vec<&str> = request
                    .results
                    .iter()
                    .map(|r| r.sub_task_id.as_str())
                    .collect();
                tracing::error!(status, %code, %message, sub_task_ids = ?ids, "results refused; dropped");
            }
            Err(e) => {
                batch = request.results;
                let delay = backoff.next_delay();
                tracing::warn!(
                    error = %e,
                    pending = batch.len(),
                    retry_in_ms = delay.as_millis() as u64,
                    "delivering results failed"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {},
                    _ = abort.cancelled() => {
                        let ids: Vec<&str> = batch.iter().map(|r| r.sub_task_id.as_str()).collect();
                        tracing::error!(sub_task_ids = ?ids, "stopping with results undelivered");
                        return;
                    }
                }
            }
        }
    }
}

fn log_acks(sent: &[SubTaskResult], acks: &[protocol::ResultAck]) {
    if acks.len() != sent.len() {
        tracing::warn!(
            sent = sent.len(),
            answered = acks.len(),
            "taskd answered a different number of results"
        );
    }
    for ack in acks {
        if ack.accepted {
            tracing::debug!(sub_task_id = %ack.sub_task_id, "result accepted");
        } else if ack.reason.as_deref() == Some("invalid") {
            tracing::error!(
                sub_task_id = %ack.sub_task_id,
                error = ack.error_msg.as_deref().unwrap_or(""),
                "result refused as invalid; dropped (the sub-task runs again once its lease expires)"
            );
        } else {
            tracing::warn!(
                sub_task_id = %ack.sub_task_id,
                reason = ack.reason.as_deref().unwrap_or(""),
                "result refused (no longer this attempt's); dropped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_worker_ids_are_valid() {
        assert_eq!(worker_id_from("host-1", 4242), "host-1/pid-4242");
        assert_eq!(worker_id_from("my host#1", 7), "my-host-1/pid-7");
        assert_eq!(worker_id_from("", 7), "worker/pid-7");
        let long = worker_id_from(&"h".repeat(300), 123);
        assert_eq!(long.len(), MAX_WORKER_ID_CHARS);
        assert!(parse_worker_id(&long).is_ok());
        assert!(parse_worker_id(&default_worker_id()).is_ok());
        assert!(parse_worker_id("a b").is_err());
    }
}
