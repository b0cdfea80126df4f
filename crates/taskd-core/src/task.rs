//! Tasks, sub-tasks, task files and credentials as the engine and the stores see them.
//!
//! Documents the user supplied (`document`, `task_ext_info`, `targets_filter`, ...) are kept
//! as the JSON text they arrived as: the engine hands them to executors untouched and
//! the dialects echo them back, so nothing here needs to understand them.

use crate::clock::Timestamp;
use crate::id::Id;
use crate::operation::Operation;
use crate::progress::Progress;
use crate::state::{SubTaskState, TaskState};

/// Where a task lives: its project and, optionally, an instance inside it (the IoTDA
/// `Instance-Id` header; the empty string when the request had none). Every read and
/// write of a task is keyed by its scope, so one scope can never see another's tasks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskScope {
    pub project_id: String,
    pub instance_id: String,
}

impl TaskScope {
    pub fn new(project_id: impl Into<String>, instance_id: impl Into<String>) -> Self {
        TaskScope {
            project_id: project_id.into(),
            instance_id: instance_id.into(),
        }
    }
}

/// Automatic retry of failed sub-tasks: up to `count` more runs, `interval_minutes` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub count: u32,
    pub interval_minutes: u32,
}

/// The largest document a task may carry (its JSON text, in bytes): what a worker is
/// handed with its sub-tasks, and what listings and claims return, must stay small
/// whatever a client sends. Huawei names no limit for IoTDA's `document` (only 10 KB
/// for a shadow); 64 KiB is taskd's, the same for an instance operation's `params`.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

/// A task as a user asked for it, validated by the dialect that received it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub scope: TaskScope,
    /// Resource space (IoTDA `app_id`); `None` is the default space.
    pub app_id: Option<String>,
    pub name: String,
    /// The task type (`firmwareUpgrade`, `createDevices`, ...): decides who executes it.
    pub kind: String,
    pub mode: Option<String>,
    pub need_confirm: bool,
    pub ext_info_json: Option<String>,
    /// The explicit target list exactly as given (a JSON array), echoed back to readers.
    pub targets_json: Option<String>,
    pub targets_filter_json: Option<String>,
    /// At most [`MAX_DOCUMENT_BYTES`].
    pub document_json: Option<String>,
    pub document_source: Option<String>,
    pub schedule_at: Option<Timestamp>,
    pub retry: Option<RetryPolicy>,
    /// Set for instance operations (`None` for batch tasks).
    pub operation: Option<Operation>,
}

/// One sub-task to create with a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubTask {
    pub target: String,
    /// Per-target input (e.g. the task-file row that describes the device), JSON text.
    pub input_json: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: Id,
    pub scope: TaskScope,
    pub app_id: Option<String>,
    pub name: String,
    pub kind: String,
    pub mode: Option<String>,
    pub need_confirm: bool,
    pub ext_info_json: Option<String>,
    pub targets_json: Option<String>,
    pub targets_filter_json: Option<String>,
    pub document_json: Option<String>,
    pub document_source: Option<String>,
    pub schedule_at: Option<Timestamp>,
    pub retry: Option<RetryPolicy>,
    /// Set for instance operations (`None` for batch tasks).
    pub operation: Option<Operation>,
    pub state: TaskState,
    /// Why the task is in its state, for humans (IoTDA `status_desc`).
    pub state_detail: Option<String>,
    pub progress: Progress,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubTask {
    pub id: Id,
    pub task_id: Id,
    pub target: String,
    pub state: SubTaskState,
    pub input_json: Option<String>,
    pub output: Option<String>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
    /// Runs started so far. Also the fencing token of a lease: a result must quote the
    /// attempt it ran as, so a late result of an expired lease changes nothing.
    pub attempts: u32,
    /// What the executor last reported (0-100) for the run in progress or last run.
    pub progress: Option<u8>,
    /// When the current or last run was claimed (`None` before the first run).
    pub started_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// An uploaded task file (IoTDA `batchtask-files`): a spreadsheet already read into rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTaskFile {
    pub scope: TaskScope,
    pub file_id: String,
    pub file_name: String,
    /// Column names from the header row.
    pub columns: Vec<String>,
    /// Data rows, one cell per column (empty string for an empty cell).
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFile {
    pub scope: TaskScope,
    pub file_id: String,
    pub file_name: String,
    pub row_count: i64,
    pub uploaded_at: Timestamp,
}

/// An access key and the project it belongs to. The secret key is needed in clear to
/// verify HMAC signatures; it is never logged (see `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key: String,
    pub secret_key: String,
    pub project_id: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("project_id", &self.project_id)
            .field("created_at", &self.created_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_debug_hides_the_secret() {
        let c = Credential {
            access_key: "AK".into(),
            secret_key: "very-secret".into(),
            project_id: "p".into(),
            created_at: Timestamp(0),
            revoked_at: None,
        };
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
