//! The store logic of every SQL backend, written once: [`SqlStore`] is the
//! [`taskd_store::Store`] of any backend that implements [`driver::Driver`] (SQLite and
//! PostgreSQL today). The use-case modules ([`tasks`], [`control`], [`run`], [`registry`],
//! [`channel`], [`nodes`], [`operations`], [`ota`], [`legacy`], [`files`], [`credentials`]) say what to read,
//! what to refuse, in which order to lock and write; a driver says how its database is
//! reached and the few statements its dialect says differently ([`driver::DialectSql`]).
//!
//! This file holds the row types of the tables every backend has and their mapping back
//! into `taskd_core` types (the `FromRow` derives decode from SQLite and PostgreSQL rows
//! alike). A value the model can't hold (an unknown state name, a negative attempt count)
//! is [`StoreError::Corrupt`]. [`control_plan`] and [`run_plan`] are the decisions made
//! before any write.

pub use store::SqlStore;

pub mod channel;
pub mod control;
pub mod control_plan;
pub mod credentials;
pub mod devices;
pub mod driver;
pub mod files;
pub mod legacy;
pub mod nodes;
pub mod operations;
pub mod ota;
pub mod registry;
pub mod run;
pub mod run_plan;
pub mod store;
pub mod tasks;

use taskd_core::{
    Credential, Id, OpService, OperateWindow, Operation, Progress, RetryPolicy, SubTask,
    SubTaskState, Task, TaskFile, TaskScope, TaskState, Timestamp,
};
use taskd_store::{StoreError, StoreResult};

/// The columns of [`TaskRow`], for `SELECT`s (a macro so `concat!` can use it).
#[macro_export]
macro_rules! task_columns {
    () => {
        "id, project_id, instance_id, app_id, name, kind, mode, need_confirm, \
         ext_info_json, targets_json, targets_filter_json, document_json, document_source, \
         schedule_at, retry_count, retry_interval_minutes, state, state_detail, \
         n_total, n_waiting, n_processing, n_succeeded, n_failed, n_retry_waiting, \
         n_stopped, n_removed, created_at, updated_at, service, op_instance_id, user_name, \
         user_id, target_config_json, window_start, window_end"
    };
}

/// The columns of [`SubTaskRow`].
#[macro_export]
macro_rules! sub_task_columns {
    () => {
        "id, task_id, target, state, input_json, output, error_code, error_msg, attempts, \
         progress, started_at, updated_at"
    };
}

#[derive(Debug, sqlx::FromRow)]
pub struct TaskRow {
    id: i64,
    project_id: String,
    instance_id: String,
    app_id: Option<String>,
    name: String,
    kind: String,
    mode: Option<String>,
    need_confirm: bool,
    ext_info_json: Option<String>,
    targets_json: Option<String>,
    targets_filter_json: Option<String>,
    document_json: Option<String>,
    document_source: Option<String>,
    schedule_at: Option<i64>,
    retry_count: Option<i64>,
    retry_interval_minutes: Option<i64>,
    state: String,
    state_detail: Option<String>,
    n_total: i64,
    n_waiting: i64,
    n_processing: i64,
    n_succeeded: i64,
    n_failed: i64,
    n_retry_waiting: i64,
    n_stopped: i64,
    n_removed: i64,
    created_at: i64,
    updated_at: i64,
    service: Option<String>,
    op_instance_id: Option<String>,
    user_name: Option<String>,
    user_id: Option<String>,
    target_config_json: Option<String>,
    window_start: Option<i64>,
    window_end: Option<i64>,
}

impl TaskRow {
    pub fn into_task(self) -> StoreResult<Task> {
        let id = Id(self.id);
        let retry = match (self.retry_count, self.retry_interval_minutes) {
            (None, None) => None,
            (Some(count), Some(interval)) => Some(RetryPolicy {
                count: to_u32(count, "retry_count", id)?,
                interval_minutes: to_u32(interval, "retry_interval_minutes", id)?,
            }),
            _ => return Err(corrupt(format!("task {id}: half a retry policy"))),
        };
        let operation = match self.service {
            None => None,
            Some(service) => {
                let service = OpService::parse(&service)
                    .ok_or_else(|| corrupt(format!("task {id}: unknown service {service:?}")))?;
                let window = match (self.window_start, self.window_end) {
                    (None, None) => None,
                    (Some(s), Some(e)) => Some(
                        u16::try_from(s)
                            .ok()
                            .zip(u16::try_from(e).ok())
                            .and_then(|(s, e)| OperateWindow::new(s, e))
                            .ok_or_else(|| corrupt(format!("task {id}: window {s}-{e}")))?,
                    ),
                    _ => return Err(corrupt(format!("task {id}: half a window"))),
                };
                Some(Operation {
                    service,
                    instance_id: self.op_instance_id.unwrap_or_default(),
                    user_name: self.user_name,
                    user_id: self.user_id,
                    target_config_json: self.target_config_json,
                    window,
                })
            }
        };
        Ok(Task {
            id,
            scope: TaskScope::new(self.project_id, self.instance_id),
            app_id: self.app_id,
            name: self.name,
            kind: self.kind,
            mode: self.mode,
            need_confirm: self.need_confirm,
            ext_info_json: self.ext_info_json,
            targets_json: self.targets_json,
            targets_filter_json: self.targets_filter_json,
            document_json: self.document_json,
            document_source: self.document_source,
            schedule_at: self.schedule_at.map(Timestamp),
            retry,
            operation,
            state: parse_task_state(&self.state)?,
            state_detail: self.state_detail,
            progress: Progress {
                total: self.n_total,
                waiting: self.n_waiting,
                processing: self.n_processing,
                succeeded: self.n_succeeded,
                failed: self.n_failed,
                retry_waiting: self.n_retry_waiting,
                stopped: self.n_stopped,
                removed: self.n_removed,
            },
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct SubTaskRow {
    id: i64,
    task_id: i64,
    target: String,
    state: String,
    input_json: Option<String>,
    output: Option<String>,
    error_code: Option<String>,
    error_msg: Option<String>,
    attempts: i64,
    progress: Option<i64>,
    started_at: Option<i64>,
    updated_at: i64,
}

impl SubTaskRow {
    pub fn into_sub_task(self) -> StoreResult<SubTask> {
        let id = Id(self.id);
        Ok(SubTask {
            id,
            task_id: Id(self.task_id),
            target: self.target,
            state: parse_sub_task_state(&self.state)?,
            input_json: self.input_json,
            output: self.output,
            error_code: self.error_code,
            error_msg: self.error_msg,
            attempts: to_u32(self.attempts, "attempts", id)?,
            progress: self
                .progress
                .map(|p| {
                    u8::try_from(p)
                        .ok()
                        .filter(|p| *p <= 100)
                        .ok_or_else(|| corrupt(format!("sub-task {id}: progress {p}")))
                })
                .transpose()?,
            started_at: self.started_at.map(Timestamp),
            updated_at: Timestamp(self.updated_at),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct CredentialRow {
    access_key: String,
    secret_key: String,
    project_id: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<CredentialRow> for Credential {
    fn from(r: CredentialRow) -> Credential {
        Credential {
            access_key: r.access_key,
            secret_key: r.secret_key,
            project_id: r.project_id,
            created_at: Timestamp(r.created_at),
            revoked_at: r.revoked_at.map(Timestamp),
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct FileRow {
    file_id: String,
    project_id: String,
    instance_id: String,
    file_name: String,
    row_count: i64,
    uploaded_at: i64,
}

impl From<FileRow> for TaskFile {
    fn from(r: FileRow) -> TaskFile {
        TaskFile {
            scope: TaskScope::new(r.project_id, r.instance_id),
            file_id: r.file_id,
            file_name: r.file_name,
            row_count: r.row_count,
            uploaded_at: Timestamp(r.uploaded_at),
        }
    }
}

pub fn parse_task_state(s: &str) -> StoreResult<TaskState> {
    TaskState::parse(s).ok_or_else(|| corrupt(format!("unknown task state {s:?}")))
}

pub fn parse_sub_task_state(s: &str) -> StoreResult<SubTaskState> {
    SubTaskState::parse(s).ok_or_else(|| corrupt(format!("unknown sub-task state {s:?}")))
}

fn to_u32(v: i64, what: &str, id: Id) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| corrupt(format!("record {id}: {what} = {v} is out of range")))
}

pub fn corrupt(msg: impl Into<String>) -> StoreError {
    StoreError::Corrupt(msg.into())
}
