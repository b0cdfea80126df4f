//! Creating tasks: explicit targets, device groups or task-file rows resolved into
//! sub-tasks; legacy tasks with their operation; instance operations in their service's
//! scope.

use taskd_core::{NewSubTask, NewTask, OpService, OperateWindow, Operation, Task, Timestamp};
use taskd_store::{LegacyOperation, TaskInsertParams};

use crate::{Engine, EngineError, EngineResult};

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

/// Sub-tasks one task may have (IoTDA's limit on targets and task-file rows).
pub const MAX_TARGETS_PER_TASK: usize = 30_000;

/// Columns of a task-file row that name its device, most specific first.
const TARGET_COLUMNS: [&str; 2] = ["device_id", "node_id"];

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

impl Engine {
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
}

/// One sub-task per task-file row. The target is the row's `device_id`, else its
/// `node_id`; a row naming neither, or naming a device an earlier row already named,
/// still gets a sub-task (target `row-N`, N counting data rows from 1, or `row-N-2`,
/// `row-N-3`, ... when a row names a device `row-N`) so that its failure is reported
/// against the row instead of silently dropping it.
pub(crate) fn sub_tasks_from_rows(columns: &[String], rows: &[Vec<String>]) -> Vec<NewSubTask> {
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
