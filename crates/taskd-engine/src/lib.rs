//! The taskd engine: the one place where tasks are created and changed.
//!
//! Dialects validate what a user sent and call the [`Engine`]; the engine resolves a
//! task's targets into sub-tasks and applies control operations through the store, with
//! "now" from the injected [`Clock`]. It knows no wire format and no SQL.
//!
//! Today the engine creates tasks and applies stop / retry / confirm. Running sub-tasks
//! (scheduler, dispatcher, completer, maintenance) is the next layer to grow here.

use std::sync::Arc;

use taskd_core::{Clock, ControlOp, Id, NewSubTask, NewTask, Task, TaskScope, Timestamp};
use taskd_store::{Store, StoreError, TaskControlOutcome, TaskControlParams, TaskInsertParams};

/// Where a new task's targets come from (IoTDA precedence: explicit list, then group
/// filter, then an uploaded task file).
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSource {
    /// Device ids, already validated and free of duplicates.
    Explicit(Vec<String>),
    /// A filter resolved later (device groups); the task starts `Initializing`.
    Filter,
    /// An uploaded task file: one sub-task per data row.
    File(String),
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("task file {0} does not exist")]
    FileNotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type EngineResult<T> = Result<T, EngineError>;

/// Columns of a task-file row that name its device, most specific first.
const TARGET_COLUMNS: [&str; 2] = ["device_id", "node_id"];

#[derive(Clone)]
pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Engine { store, clock }
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
            TargetSource::Filter => Vec::new(),
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
        Ok(task)
    }

    /// Stop, retry or confirm a task, whole or for some targets.
    pub async fn control(
        &self,
        scope: &TaskScope,
        task_id: Id,
        op: ControlOp,
        targets: Option<Vec<String>>,
    ) -> EngineResult<TaskControlOutcome> {
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
        }
        Ok(outcome)
    }
}

/// One sub-task per task-file row. The target is the row's `device_id`, else its
/// `node_id`; a row naming neither, or naming a device an earlier row already named,
/// still gets a sub-task (target `row-N`, N counting data rows from 1) so that its
/// failure is reported against the row instead of silently dropping it.
fn sub_tasks_from_rows(columns: &[String], rows: &[Vec<String>]) -> Vec<NewSubTask> {
    let target_cols: Vec<usize> = TARGET_COLUMNS
        .iter()
        .filter_map(|name| columns.iter().position(|c| c == name))
        .collect();
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let named = target_cols
                .iter()
                .filter_map(|&c| row.get(c))
                .find(|v| !v.is_empty())
                .filter(|v| seen.insert(v.as_str()));
            let target = match named {
                Some(v) => v.clone(),
                None => format!("row-{}", i + 1),
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
}
