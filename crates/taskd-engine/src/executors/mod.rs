//! Built-in executors: the task types taskd runs itself instead of handing them to
//! workers (the device registry's today; device commands, messages, shadows and OTA
//! next). One module per executor.
//!
//! An executor is an [`Executor`]: the enum of the task types it runs ([`TaskTypes`],
//! whose names are the stored task `kind`s), its batch size and lease, and what one
//! sub-task comes to ([`Executed`]). [`Engine::run_batch`] claims a batch of its task
//! types across all projects, runs each sub-task and reports the batch in one store
//! transaction (each registry effect applied with its sub-task's success). The server's
//! [`Runner`](crate::runner::Runner) runs one loop per executor on every node and stops
//! them at shutdown; tests call [`Engine::run_batch`] directly.

pub mod device;
pub mod registry;

use std::time::Duration;

use taskd_core::Timestamp;
use taskd_store::{ClaimedSubTask, DeviceEffect, ReportOutcome, RunOutcome, RunResult};

pub use device::{DeviceTaskType, Devices};
pub use registry::{Registry, RegistryTaskType};

use crate::{ClaimRequest, Engine, EngineResult, SubTaskErrorKind};

/// The task types one executor runs: a closed set, each with the name tasks store as
/// their `kind`.
pub trait TaskTypes: Copy + Send + Sync + 'static {
    const ALL: &'static [Self];

    fn name(self) -> &'static str;

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.name() == name)
    }
}

/// What running one sub-task came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Executed {
    /// Succeeded; the effect (a registry write) is applied in the transaction that
    /// records the success, or the sub-task fails with the store's refusal.
    Succeeded {
        output: Option<String>,
        /// Boxed: a new device is large, and most results have no effect.
        effect: Option<Box<DeviceEffect>>,
    },
    Failed {
        kind: SubTaskErrorKind,
        message: String,
        /// What the executor got that said no (a device's refusing answer), shown as the
        /// sub-task's output.
        output: Option<String>,
    },
    /// Not finished and not failed: run it again at `until` (a message waiting for its
    /// device), without using up a retry; `kind` and `message` say why it waits.
    Deferred {
        until: Timestamp,
        kind: SubTaskErrorKind,
        message: String,
    },
}

/// A built-in executor.
pub trait Executor: Send + Sync + 'static {
    /// The task types it runs; no two executors share one.
    type TaskType: TaskTypes;
    /// Names it in claims (`{NAME}/{node_id}`) and logs.
    const NAME: &'static str;
    /// Sub-tasks per claim, reported in one transaction.
    const BATCH: u32;
    /// The lease of a claimed batch: how long a dead node's sub-tasks wait for another
    /// node. (Too short is safe too: the late result of an expired lease is refused, and
    /// with it its effect, which shares its transaction.)
    const LEASE: Duration;
    /// Runs a batch's sub-tasks at once rather than one after the other (they wait on
    /// devices, not on the database).
    const CONCURRENT: bool = false;

    /// Runs one claimed sub-task of `task_type`.
    fn execute(
        &self,
        task_type: Self::TaskType,
        sub_task: &ClaimedSubTask,
    ) -> impl Future<Output = Executed> + Send;

    /// After the batch's results are recorded: what must follow a recorded result
    /// outside the store (a frozen device's connection closed). Nothing by default.
    fn recorded(
        &self,
        _task_type: Self::TaskType,
        _sub_task: &ClaimedSubTask,
        _outcome: &ReportOutcome,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Every task type a built-in executor runs.
pub fn built_in_task_types() -> Vec<&'static str> {
    // One entry per executor of `executors/`.
    [
        names::<registry::RegistryTaskType>(),
        names::<device::DeviceTaskType>(),
    ]
    .concat()
}

fn names<T: TaskTypes>() -> Vec<&'static str> {
    T::ALL.iter().map(|t| t.name()).collect()
}

impl Engine {
    /// One batch of `executor`: claims up to `max` ready sub-tasks of its task types in
    /// every project, runs them, and reports them in one transaction. Returns how many
    /// sub-tasks it ran (0: nothing was ready).
    pub async fn run_batch<E: Executor>(
        &self,
        executor: &E,
        worker_id: &str,
        max: u32,
    ) -> EngineResult<usize> {
        let claimed = self
            .claim(ClaimRequest {
                worker_id: worker_id.to_owned(),
                project_id: None,
                kinds: names::<E::TaskType>()
                    .into_iter()
                    .map(String::from)
                    .collect(),
                max,
                lease: E::LEASE,
                wait: Duration::ZERO,
            })
            .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let executed: Vec<Executed> = if E::CONCURRENT {
            futures_util::future::join_all(claimed.iter().map(|s| run_one(executor, s))).await
        } else {
            let mut executed = Vec::with_capacity(claimed.len());
            for sub_task in &claimed {
                executed.push(run_one(executor, sub_task).await);
            }
            executed
        };
        let mut results = Vec::with_capacity(claimed.len());
        for (sub_task, executed) in claimed.iter().zip(executed) {
            let (outcome, effect) = match executed {
                Executed::Succeeded { output, effect } => {
                    (RunOutcome::Succeeded { output }, effect.map(|e| *e))
                }
                Executed::Failed {
                    kind,
                    message,
                    output,
                } => (
                    RunOutcome::Failed {
                        error_code: kind.code().to_owned(),
                        error_msg: message,
                        output,
                    },
                    None,
                ),
                Executed::Deferred {
                    until,
                    kind,
                    message,
                } => (
                    RunOutcome::Deferred {
                        until,
                        error_code: kind.code().to_owned(),
                        error_msg: message,
                    },
                    None,
                ),
            };
            results.push(RunResult {
                sub_task_id: sub_task.id,
                attempt: sub_task.attempt,
                outcome,
                effect,
            });
        }
        let outcomes = self.report(None, results).await?;
        for (sub_task, outcome) in claimed.iter().zip(&outcomes) {
            if let Some(task_type) = E::TaskType::from_name(&sub_task.task.kind) {
                executor.recorded(task_type, sub_task, outcome).await;
            }
        }
        Ok(claimed.len())
    }
}

/// Runs one claimed sub-task with its executor.
async fn run_one<E: Executor>(executor: &E, sub_task: &ClaimedSubTask) -> Executed {
    match E::TaskType::from_name(&sub_task.task.kind) {
        Some(task_type) => executor.execute(task_type, sub_task).await,
        // Claimed by kind, so this can't happen; fail loudly rather than loop.
        None => Executed::Failed {
            kind: SubTaskErrorKind::NoExecutor,
            message: format!("task type {} has no executor", sub_task.task.kind),
            output: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use taskd_core::{ManualClock, SubTask, SubTaskState, Task, TaskScope, TaskState, Timestamp};
    use taskd_store::conformance::{first_page, new_task};
    use taskd_store::{Store, SubTaskListParams};

    use super::*;
    use crate::TargetSource;
    use crate::runner::Runner;

    async fn engine() -> Engine {
        let store: Arc<dyn Store> = Arc::new(taskd_store_sqlite::open_in_memory().await.unwrap());
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_767_225_600)));
        Engine::new(store, clock)
    }

    /// A `createDevices` task with explicit targets: its rows are missing, so each
    /// sub-task is invalid input for the registry executor.
    async fn create_devices_without_rows(engine: &Engine, scope: &TaskScope) -> Task {
        let mut task = new_task(scope, "reg");
        task.kind = RegistryTaskType::CreateDevices.name().to_owned();
        engine
            .create_task(task, TargetSource::Explicit(vec!["d1".into(), "d2".into()]))
            .await
            .unwrap()
    }

    async fn sub_tasks(engine: &Engine, scope: &TaskScope, task: &Task) -> Vec<SubTask> {
        let params = SubTaskListParams {
            scope: scope.clone(),
            task_id: task.id,
            state: None,
            target: None,
            page: first_page(100),
        };
        engine
            .store()
            .sub_task_list(&params)
            .await
            .unwrap()
            .unwrap()
            .items
    }

    /// What the engine stores is its own kind, no dialect's code.
    #[tokio::test]
    async fn a_failed_sub_task_records_the_engines_kind() {
        let engine = engine().await;
        let scope = TaskScope::new("p1", "");
        let task = create_devices_without_rows(&engine, &scope).await;
        assert_eq!(
            engine
                .run_batch(&Registry::default(), "test", 10)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            engine
                .run_batch(&Registry::default(), "test", 10)
                .await
                .unwrap(),
            0
        );
        for sub in sub_tasks(&engine, &scope, &task).await {
            assert_eq!(sub.state, SubTaskState::Failed, "{sub:?}");
            assert_eq!(sub.error_code.as_deref(), Some("INVALID_INPUT"), "{sub:?}");
            assert!(
                sub.error_msg
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Invalid input data.")),
                "{sub:?}"
            );
        }
    }

    /// The runner runs every built-in executor without being asked, and stops them.
    #[tokio::test]
    async fn the_runner_runs_the_executors_and_stops_them() {
        let engine = engine().await;
        let scope = TaskScope::new("p1", "");
        let runner = Runner::start(engine.clone(), Registry::default(), None);
        let task = create_devices_without_rows(&engine, &scope).await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let state = engine
                .store()
                .task_get(&scope, task.id)
                .await
                .unwrap()
                .unwrap()
                .state;
            if state == TaskState::Failed {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "still {state:?}");
            engine
                .wait_for_work(std::time::Duration::from_millis(50))
                .await;
        }
        tokio::time::timeout(std::time::Duration::from_secs(30), runner.shutdown())
            .await
            .expect("the runner stops");
    }

    #[test]
    fn no_two_built_in_task_types_share_a_name() {
        let all = built_in_task_types();
        let distinct: HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len(), "{all:?}");
        assert!(all.contains(&"createDevices"), "{all:?}");
    }
}
