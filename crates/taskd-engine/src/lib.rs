//! The taskd engine: the one place where tasks are created and changed.
//!
//! Dialects validate what a user sent and call the [`Engine`]; the engine resolves a
//! task's targets into sub-tasks and applies control operations through the store, with
//! "now" from the injected [`Clock`]. It knows no wire format and no SQL.
//!
//! Running them is split the same way: the store holds the queue (claimable rows, leases,
//! retries due), and the engine drives it:
//! * [`Engine::claim`] hands ready sub-tasks to an executor (a worker over the worker
//!   protocol, or taskd's own registry executor), long-polling when none is ready; the
//!   schedule time, confirm, fairness and running limits are the store's claim rules;
//! * [`Engine::heartbeat`] and [`Engine::report`] extend leases and record results (in
//!   batches, one transaction per batch);
//! * [`Engine::maintain`] is one maintenance pass (retries due, leases expired, and the
//!   retention purge of old finished tasks), which [`runner`] runs on a timer in the
//!   server; tests call it on virtual time.
//!
//! Instance operations ([`Engine::create_operation`]) are tasks with one sub-task: the
//! engine places them in their service's scope, keeps each instance in one project, and
//! turns a maintenance window into the schedule time of the window's next opening (the
//! stores' claim also refuses a closed window, so a retry never starts in one).

pub mod registry;
pub mod runner;

use std::sync::Arc;
use std::time::Duration;

use taskd_core::{
    Clock, ControlOp, Id, NewSubTask, NewTask, OpService, OperateWindow, Operation, Task,
    TaskScope, Timestamp,
};
use taskd_store::{
    ClaimParams, ClaimedSubTask, HeartbeatParams, LeaderParams, LegacyOperation, MaintenanceReport,
    ReportOutcome, ReportParams, RunLimits, RunOutcome, RunResult, Store, StoreError,
    TaskControlOutcome, TaskControlParams, TaskInsertParams,
};
use tokio::sync::Notify;

/// A registry batch is one database transaction, well under a second. The lease only
/// matters when a node dies holding one: its sub-tasks wait this long for another node.
/// (Too short is safe too: the late result of an expired lease is refused, and with it
/// the device writes, which share its transaction.)
const REGISTRY_LEASE: Duration = Duration::from_secs(15);

/// Where a new task's targets come from (IoTDA precedence: explicit list, then group
/// filter, then an uploaded task file).
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSource {
    /// Device ids, already validated and free of duplicates.
    Explicit(Vec<String>),
    /// Device groups (IoTDA `targets_filter.group_ids`), resolved to their members when
    /// the task is created: one sub-task per distinct device, later membership changes
    /// do not reach the task.
    Groups(Vec<String>),
    /// An uploaded task file: one sub-task per data row.
    File(String),
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("task file {0} does not exist")]
    FileNotFound(String),
    #[error("device group {0} does not exist")]
    GroupNotFound(String),
    #[error("the device groups have no devices")]
    GroupsEmpty,
    #[error("the device groups have {count} devices; a task takes at most {max}")]
    TooManyTargets { count: usize, max: usize },
    /// The instance's operations are recorded in another project.
    #[error("instance {0} belongs to another project")]
    InstanceOfAnotherProject(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type EngineResult<T> = Result<T, EngineError>;

/// Sub-tasks one task may have (IoTDA's limit on targets and task-file rows).
pub const MAX_TARGETS_PER_TASK: usize = 30_000;

/// Columns of a task-file row that name its device, most specific first.
const TARGET_COLUMNS: [&str; 2] = ["device_id", "node_id"];

/// How the engine runs sub-tasks.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub limits: RunLimits,
    /// Rows per maintenance transaction (a pass repeats until done).
    pub maintenance_batch: u32,
    /// How often a long-polling claim looks again without a wake-up (other nodes' work,
    /// schedule times), and how often the runner's maintenance runs.
    pub poll_interval: Duration,
    /// This node's name in leases and leader elections: unique per process.
    pub node_id: String,
    /// How long a maintenance leadership lasts unless renewed (every `poll_interval`):
    /// the longest a dead leader's jobs wait for another node to take them over.
    pub leader_term: Duration,
    /// Finished tasks (and operations) whose last change is older than this are purged by
    /// maintenance; `None` keeps them forever.
    pub retention: Option<Duration>,
}

/// A name no other running taskd process has: host, process id and a random suffix
/// (a restarted process gets a new one, so it never renews a dead predecessor's term).
pub fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "taskd".to_owned());
    format!(
        "{host}/{}/{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// Default retention of finished tasks: 180 days (what IoTDA instance tasks promise).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(180 * 24 * 3600);

/// An instance operation as the control plane records it (validated by the native API).
#[derive(Debug, Clone, PartialEq)]
pub struct NewOperation {
    pub project_id: String,
    pub service: OpService,
    pub instance_id: String,
    /// The operation's type (IoTDA `type`, RabbitMQ `name`, SWR `type`): the task type
    /// workers claim.
    pub kind: String,
    /// A display name (SWR `resource_name`); the type when not given.
    pub name: String,
    /// What the operation acts on (SWR `resource_id`); usually the instance.
    pub target: String,
    /// Parameters as JSON text (RabbitMQ `params`); what a worker gets as `document`.
    pub params_json: Option<String>,
    pub user_name: Option<String>,
    pub user_id: Option<String>,
    pub target_config_json: Option<String>,
    pub window: Option<OperateWindow>,
    pub schedule_at: Option<Timestamp>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            limits: RunLimits {
                max_running: 10_000,
                max_running_per_project: 2_000,
            },
            maintenance_batch: 1_000,
            poll_interval: Duration::from_secs(1),
            node_id: default_node_id(),
            leader_term: Duration::from_secs(5),
            retention: Some(DEFAULT_RETENTION),
        }
    }
}

/// What an executor asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    pub worker_id: String,
    /// `None`: every project (taskd's own executors).
    pub project_id: Option<String>,
    pub kinds: Vec<String>,
    pub max: u32,
    pub lease: Duration,
    /// Long-poll: wait up to this long for something to become ready.
    pub wait: Duration,
}

#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: Arc<EngineConfig>,
    /// Wakes long-polling claims: something may have become ready on this node.
    ready: Arc<Notify>,
    /// The store's wake-ups from every node (`Store::wakeups`), where it has them.
    pushed: Option<Arc<Notify>>,
}

/// The leader election name of maintenance.
const MAINTENANCE_LEADER: &str = "maintenance";

impl Engine {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Engine::with_config(store, clock, EngineConfig::default())
    }

    pub fn with_config(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: EngineConfig) -> Self {
        let pushed = store.wakeups();
        Engine {
            store,
            clock,
            config: Arc::new(config),
            ready: Arc::new(Notify::new()),
            pushed,
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Tells long-polling claims to look again.
    pub fn wake(&self) {
        self.ready.notify_waiters();
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Creates a task and all its sub-tasks in one store transaction.
    pub async fn create_task(&self, task: NewTask, source: TargetSource) -> EngineResult<Task> {
        let sub_tasks = match &source {
            TargetSource::Explicit(targets) => targets
                .iter()
                .map(|t| NewSubTask {
                    target: t.clone(),
                    input_json: None,
                })
                .collect(),
            TargetSource::Groups(group_ids) => {
                let members = self
                    .store
                    .device_group_members(&task.scope, group_ids)
                    .await?
                    .map_err(EngineError::GroupNotFound)?;
                if members.is_empty() {
                    return Err(EngineError::GroupsEmpty);
                }
                if members.len() > MAX_TARGETS_PER_TASK {
                    return Err(EngineError::TooManyTargets {
                        count: members.len(),
                        max: MAX_TARGETS_PER_TASK,
                    });
                }
                members
                    .into_iter()
                    .map(|target| NewSubTask {
                        target,
                        input_json: None,
                    })
                    .collect()
            }
            TargetSource::File(file_id) => {
                let content = self
                    .store
                    .file_get(&task.scope, file_id)
                    .await?
                    .ok_or_else(|| EngineError::FileNotFound(file_id.clone()))?;
                sub_tasks_from_rows(&content.columns, &content.rows)
            }
        };
        let task = self
            .store
            .task_insert(TaskInsertParams {
                task,
                sub_tasks,
                now: self.now(),
            })
            .await?;
        tracing::info!(task_id = %task.id, kind = %task.kind, total = task.progress.total, "task created");
        self.wake();
        Ok(task)
    }

    /// Creates a task of the legacy northbound API: explicit targets, recorded with its
    /// legacy operation (and deadline) in the same store transaction.
    pub async fn create_legacy_task(
        &self,
        task: NewTask,
        targets: Vec<String>,
        operation: LegacyOperation,
    ) -> EngineResult<Task> {
        let sub_tasks = targets
            .into_iter()
            .map(|target| NewSubTask {
                target,
                input_json: None,
            })
            .collect();
        let task = self
            .store
            .legacy_task_insert(
                TaskInsertParams {
                    task,
                    sub_tasks,
                    now: self.now(),
                },
                operation,
            )
            .await?;
        tracing::info!(task_id = %task.id, kind = %task.kind, total = task.progress.total, "legacy task created");
        self.wake();
        Ok(task)
    }

    /// Records an instance operation: a task with one sub-task in the service's scope. Its
    /// schedule time is the later of the asked time and the maintenance window's next
    /// opening. Refused when the instance's operations live in another project.
    pub async fn create_operation(&self, op: NewOperation) -> EngineResult<Task> {
        if let Some(owner) = self
            .store
            .op_instance_owner(op.service, &op.instance_id)
            .await?
            && owner != op.project_id
        {
            return Err(EngineError::InstanceOfAnotherProject(op.instance_id));
        }
        let now = self.now();
        let schedule_at = match (op.schedule_at, op.window) {
            (at, Some(w)) => Some(w.next_open(at.unwrap_or(now).max(now))),
            (at, None) => at,
        };
        let task = NewTask {
            scope: op.service.scope(&op.project_id, &op.instance_id),
            app_id: None,
            name: op.name,
            kind: op.kind,
            mode: None,
            need_confirm: false,
            ext_info_json: None,
            targets_json: None,
            targets_filter_json: None,
            document_json: op.params_json,
            document_source: None,
            schedule_at,
            retry: None,
            operation: Some(Operation {
                service: op.service,
                instance_id: op.instance_id,
                user_name: op.user_name,
                user_id: op.user_id,
                target_config_json: op.target_config_json,
                window: op.window,
            }),
        };
        self.create_task(task, TargetSource::Explicit(vec![op.target]))
            .await
    }

    /// Stop, retry or confirm a task, whole or for some targets.
    pub async fn control(
        &self,
        scope: &TaskScope,
        task_id: Id,
        op: ControlOp,
        targets: Option<Vec<String>>,
    ) -> EngineResult<TaskControlOutcome> {
        // A task past its deadline runs nothing more: a retry would queue sub-tasks no
        // claim hands out. (The deadline never changes, so this check can't go stale.)
        if op == ControlOp::Retry
            && let Some(legacy) = self.store.legacy_task_get(scope, task_id).await?
            && legacy
                .operation
                .deadline_at
                .is_some_and(|d| d <= self.now())
        {
            return Ok(TaskControlOutcome::TaskStateRefused(legacy.task.state));
        }
        let outcome = self
            .store
            .task_control(TaskControlParams {
                scope: scope.clone(),
                task_id,
                op,
                targets,
                now: self.now(),
            })
            .await?;
        if let TaskControlOutcome::Applied { task, .. } = &outcome {
            tracing::info!(task_id = %task.id, ?op, state = task.state.as_str(), "task control applied");
            if op != ControlOp::Stop {
                self.wake();
            }
        }
        Ok(outcome)
    }

    /// Leases ready sub-tasks to an executor. With a `wait`, polls until something is
    /// ready or the wait is over: woken at once by work created or released on this
    /// node, and every `poll_interval` for the rest (other nodes, schedule times).
    pub async fn claim(&self, request: ClaimRequest) -> EngineResult<Vec<ClaimedSubTask>> {
        let deadline = tokio::time::Instant::now() + request.wait;
        let lease_ms = i64::try_from(request.lease.as_millis()).unwrap_or(i64::MAX);
        loop {
            // Registered before looking, so a wake-up between the look and the wait
            // is not lost.
            let woken = self.wakeup();
            let now = self.now();
            let claimed = self
                .store
                .sub_task_claim(ClaimParams {
                    worker_id: request.worker_id.clone(),
                    project_id: request.project_id.clone(),
                    kinds: request.kinds.clone(),
                    max: request.max,
                    lease_until: now.plus_millis(lease_ms),
                    limits: self.config.limits,
                    now,
                })
                .await?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !claimed.is_empty() || left.is_zero() {
                if !claimed.is_empty() {
                    tracing::debug!(worker = %request.worker_id, n = claimed.len(), "sub-tasks claimed");
                }
                return Ok(claimed);
            }
            let _ = tokio::time::timeout(left.min(self.config.poll_interval), woken).await;
        }
    }

    /// Extends a lease; `None` when it is lost (stopped, expired, claimed again).
    pub async fn heartbeat(
        &self,
        project_id: Option<String>,
        sub_task_id: Id,
        attempt: u32,
        lease: Duration,
        progress: Option<u8>,
    ) -> EngineResult<Option<Timestamp>> {
        let now = self.now();
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .store
            .sub_task_heartbeat(HeartbeatParams {
                project_id,
                sub_task_id,
                attempt,
                lease_until: now.plus_millis(lease_ms),
                progress,
                now,
            })
            .await?)
    }

    /// Records run results, one transaction for the batch.
    pub async fn report(
        &self,
        project_id: Option<String>,
        results: Vec<RunResult>,
    ) -> EngineResult<Vec<ReportOutcome>> {
        let outcomes = self
            .store
            .sub_task_report(ReportParams {
                project_id,
                results,
                now: self.now(),
            })
            .await?;
        // A freed running slot may let a waiting claim through.
        self.wake();
        Ok(outcomes)
    }

    /// taskd's own executor for the registry task types (createDevices, deleteDevices,
    /// freezeDevices, unfreezeDevices, updateDevices): claims a batch across all
    /// projects, turns each sub-task into its registry effect and reports the batch in one
    /// transaction, each effect applied with its sub-task's success. Returns how many
    /// sub-tasks it ran.
    pub async fn run_registry_batch(&self, worker_id: &str, max: u32) -> EngineResult<usize> {
        let claimed = self
            .claim(ClaimRequest {
                worker_id: worker_id.to_owned(),
                project_id: None,
                kinds: registry::REGISTRY_TASK_TYPES.map(String::from).to_vec(),
                max,
                lease: REGISTRY_LEASE,
                wait: Duration::ZERO,
            })
            .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let results: Vec<RunResult> = claimed
            .iter()
            .map(|c| {
                let effect = registry::device_effect(
                    &c.task.kind,
                    &c.task.scope,
                    &c.target,
                    c.input_json.as_deref(),
                );
                let (outcome, effect) = match effect {
                    Some(Ok(effect)) => (RunOutcome::Succeeded { output: None }, Some(effect)),
                    Some(Err(refused)) => (
                        RunOutcome::Failed {
                            error_code: refused.error_code,
                            error_msg: refused.error_msg,
                        },
                        None,
                    ),
                    // Claimed by kind, so this can't happen; fail loudly rather than loop.
                    None => (
                        RunOutcome::Failed {
                            error_code: "TASKD.000001".into(),
                            error_msg: format!("task type {} has no executor", c.task.kind),
                        },
                        None,
                    ),
                };
                RunResult {
                    sub_task_id: c.id,
                    attempt: c.attempt,
                    outcome,
                    effect,
                }
            })
            .collect();
        self.report(None, results).await?;
        Ok(claimed.len())
    }

    /// Waits until woken (work created or released on this node) or `timeout`.
    pub async fn wait_for_work(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.wakeup()).await;
    }

    /// Resolves on the next wake-up: from this node (`wake`) or, where the store pushes
    /// them, from any node. Registered at once, before it is awaited, so a wake-up that
    /// comes while the caller looks for work is not lost.
    fn wakeup(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut local = Box::pin(self.ready.clone().notified_owned());
        local.as_mut().enable();
        let mut pushed = self.pushed.clone().map(|n| Box::pin(n.notified_owned()));
        if let Some(p) = pushed.as_mut() {
            p.as_mut().enable();
        }
        async move {
            match pushed {
                Some(pushed) => tokio::select! { _ = local => {}, _ = pushed => {} },
                None => local.await,
            }
        }
    }

    /// Takes or renews this node's leadership of the cluster-wide maintenance (one
    /// leader at a time across the nodes sharing the store); false while another node
    /// leads. The runner calls it before every pass.
    pub async fn lead_maintenance(&self) -> EngineResult<bool> {
        let now = self.now();
        let term = i64::try_from(self.config.leader_term.as_millis()).unwrap_or(i64::MAX);
        Ok(self
            .store
            .leader_acquire(&LeaderParams {
                name: MAINTENANCE_LEADER.to_owned(),
                holder: self.config.node_id.clone(),
                now,
                until: now.plus_millis(term),
            })
            .await?)
    }

    /// Gives the maintenance leadership up (shutdown), so another node takes over at
    /// once rather than when the term lapses.
    pub async fn resign_maintenance(&self) -> EngineResult<()> {
        Ok(self
            .store
            .leader_release(MAINTENANCE_LEADER, &self.config.node_id)
            .await?)
    }

    /// One full maintenance pass at the clock's now: due retries and expired leases go
    /// back to the queue, in bounded transactions until nothing is left.
    pub async fn maintain(&self) -> EngineResult<MaintenanceReport> {
        let now = self.now();
        let mut total = MaintenanceReport::default();
        loop {
            let pass = self
                .store
                .maintain(now, self.config.maintenance_batch)
                .await?;
            total.retries_released += pass.retries_released;
            total.leases_expired += pass.leases_expired;
            total.leases_abandoned += pass.leases_abandoned;
            total.timed_out += pass.timed_out;
            if !pass.more {
                break;
            }
        }
        self.purge_expired(now).await?;
        if total.retries_released + total.leases_expired + total.timed_out > 0 {
            tracing::info!(
                retries_released = total.retries_released,
                leases_expired = total.leases_expired,
                timed_out = total.timed_out,
                "maintenance requeued sub-tasks"
            );
            self.wake();
        }
        if total.leases_abandoned > 0 {
            tracing::warn!(
                leases_abandoned = total.leases_abandoned,
                "sub-tasks failed: their leases expired too many times (LEASE_EXPIRED)"
            );
        }
        Ok(total)
    }
}

impl Engine {
    /// Retention: deletes finished tasks whose last change is older than the configured
    /// retention, in transactions of `maintenance_batch` tasks, yielding between them so
    /// a large backlog never holds the store for long. Returns how many went.
    pub async fn purge_expired(&self, now: Timestamp) -> EngineResult<u64> {
        let Some(retention) = self.config.retention else {
            return Ok(0);
        };
        let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let before = Timestamp(now.0.saturating_sub(keep_ms));
        let batch = self.config.maintenance_batch.max(1);
        let mut total = 0;
        loop {
            let n = self.store.purge_finished(before, batch).await?;
            total += n;
            if n < u64::from(batch) {
                break;
            }
            tokio::task::yield_now().await;
        }
        if total > 0 {
            tracing::info!(purged = total, "retention purged finished tasks");
        }
        Ok(total)
    }
}

/// For the fuzz targets in `fuzz/` (docs/fuzzing.md), which check what the engine makes
/// of every task file the reader accepts. Not an API: nothing in taskd calls it.
#[doc(hidden)]
pub mod fuzzing {
    /// The targets of the sub-tasks a task file's rows become, in row order.
    pub fn file_row_targets(columns: &[String], rows: &[Vec<String>]) -> Vec<String> {
        super::sub_tasks_from_rows(columns, rows)
            .into_iter()
            .map(|s| s.target)
            .collect()
    }
}

/// One sub-task per task-file row. The target is the row's `device_id`, else its
/// `node_id`; a row naming neither, or naming a device an earlier row already named,
/// still gets a sub-task (target `row-N`, N counting data rows from 1, or `row-N-2`,
/// `row-N-3`, ... when a row names a device `row-N`) so that its failure is reported
/// against the row instead of silently dropping it.
fn sub_tasks_from_rows(columns: &[String], rows: &[Vec<String>]) -> Vec<NewSubTask> {
    let target_cols: Vec<usize> = TARGET_COLUMNS
        .iter()
        .filter_map(|name| columns.iter().position(|c| c == name))
        .collect();
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let named: Vec<Option<&str>> = rows
        .iter()
        .map(|row| {
            target_cols
                .iter()
                .filter_map(|&c| row.get(c))
                .find(|v| !v.is_empty())
                .map(String::as_str)
                .filter(|v| seen.insert(*v))
        })
        .collect();
    // A row may itself name a device `row-N`: a generated name never takes one that a
    // row named or an earlier generated one took (targets are unique within a task).
    let mut taken: std::collections::HashSet<String> =
        seen.into_iter().map(str::to_owned).collect();
    let mut generated = Vec::new();
    for (i, name) in named.iter().enumerate() {
        if name.is_none() {
            let base = format!("row-{}", i + 1);
            let mut target = base.clone();
            let mut n = 1;
            while taken.contains(&target) {
                n += 1;
                target = format!("{base}-{n}");
            }
            taken.insert(target.clone());
            generated.push(target);
        }
    }
    let mut generated = generated.into_iter();
    rows.iter()
        .zip(named)
        .map(|(row, name)| {
            let target = match name {
                Some(v) => v.to_owned(),
                None => generated
                    .next()
                    .expect("one generated name per unnamed row"),
            };
            let input: serde_json::Map<String, serde_json::Value> = columns
                .iter()
                .zip(row)
                .filter(|(_, v)| !v.is_empty())
                .map(|(c, v)| (c.clone(), serde_json::Value::String(v.clone())))
                .collect();
            NewSubTask {
                target,
                input_json: Some(serde_json::Value::Object(input).to_string()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn file_rows_name_their_device_or_their_row() {
        let columns = cols(&["node_id", "product_id", "device_id"]);
        let rows = vec![
            cols(&["n1", "p", ""]),
            cols(&["n2", "p", "dev-2"]),
            cols(&["", "p", ""]),
            cols(&["n1", "p", ""]),
        ];
        let subs = sub_tasks_from_rows(&columns, &rows);
        let targets: Vec<_> = subs.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(targets, ["n1", "dev-2", "row-3", "row-4"]);
        assert_eq!(
            subs[1].input_json.as_deref(),
            Some(r#"{"device_id":"dev-2","node_id":"n2","product_id":"p"}"#)
        );
    }
    /// Found writing the task-file fuzz target: a row may name a device `row-N` itself, and
    /// the generated name of a later row then duplicated it, which the stores' unique
    /// (task, target) refuses: the whole task failed to be created.
    #[test]
    fn a_generated_row_target_never_repeats_a_named_one() {
        let columns = cols(&["node_id", "product_id"]);
        let rows = vec![
            cols(&["row-2", "p"]),
            cols(&["row-2", "p"]),
            cols(&["", "p"]),
            cols(&["row-3-2", "p"]),
            cols(&["row-3", "p"]),
        ];
        let subs = sub_tasks_from_rows(&columns, &rows);
        let targets: Vec<_> = subs.iter().map(|s| s.target.as_str()).collect();
        let distinct: std::collections::HashSet<_> = targets.iter().collect();
        assert_eq!(distinct.len(), targets.len(), "{targets:?}");
        // Named rows keep their names; only generated ones move aside.
        assert_eq!(targets[0], "row-2");
        assert_eq!(targets[3], "row-3-2");
        assert_eq!(targets[4], "row-3");
    }
}
