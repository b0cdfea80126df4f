//! Control: stop, retry or confirm a task, whole or for some targets.

use taskd_core::{ControlOp, Id, TaskScope};
use taskd_store::{TaskControlOutcome, TaskControlParams};

use crate::{Engine, EngineResult};

impl Engine {
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
}
