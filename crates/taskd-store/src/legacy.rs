//! What the store keeps for the legacy IoT northbound API (v1.5.0): applications, their
//! tokens, the flow-control window, legacy device attributes, and the legacy operation
//! recorded with a task (what the legacy task list filters on, and the task's deadline).

use taskd_core::{Task, TaskScope, TaskState, Timestamp};

/// A network application (NA) of the legacy API. `secret_hash` is a salted hash the
/// dialect can verify a secret against; the secret itself is never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct LegacyApp {
    pub app_id: String,
    pub project_id: String,
    pub secret_hash: String,
    pub created_at: Timestamp,
    /// Revoked (frozen): it can't log in and its tokens stop working.
    pub revoked_at: Option<Timestamp>,
}

impl std::fmt::Debug for LegacyApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyApp")
            .field("app_id", &self.app_id)
            .field("project_id", &self.project_id)
            .field("secret_hash", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

/// The last tokens issued to an app, as hashes. Only these are valid: a login or refresh
/// replaces them.
#[derive(Clone, PartialEq, Eq)]
pub struct LegacyTokens {
    pub app_id: String,
    pub access_hash: String,
    pub access_expires_at: Timestamp,
    pub refresh_hash: String,
    pub refresh_expires_at: Timestamp,
    pub issued_at: Timestamp,
}

impl std::fmt::Debug for LegacyTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LegacyTokens")
            .field("app_id", &self.app_id)
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("issued_at", &self.issued_at)
            .finish_non_exhaustive()
    }
}

/// The legacy attributes of a registry device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceAttributes {
    pub device_type: Option<String>,
    pub model: Option<String>,
    pub manufacturer_name: Option<String>,
}

/// What the legacy API recorded with a task it created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyOperation {
    /// `firmware_upgrade` or `software_upgrade` (the legacy word, filtered on).
    pub operate_type: String,
    pub device_type: Option<String>,
    pub model: Option<String>,
    pub manufacturer_name: Option<String>,
    /// No sub-task is claimed at or after this time; maintenance ends the unfinished ones
    /// as failed with error code [`TIMEOUT_ERROR_CODE`].
    pub deadline_at: Option<Timestamp>,
}

/// The error code of a sub-task ended by its task's deadline.
pub const TIMEOUT_ERROR_CODE: &str = "TIMEOUT";

/// A task created through the legacy API, with its operation.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyTask {
    pub task: Task,
    pub operation: LegacyOperation,
    /// Of the failed sub-tasks, how many the deadline ended (kept with the rows).
    pub timed_out: i64,
}

/// The legacy task list: tasks created through the legacy API in `scope`, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyTaskListParams {
    pub scope: TaskScope,
    pub operate_type: Option<String>,
    /// Any of these states (empty: any state).
    pub states: Vec<TaskState>,
    pub device_type: Option<String>,
    pub model: Option<String>,
    pub manufacturer_name: Option<String>,
    /// Only tasks with a sub-task for this device.
    pub device_id: Option<String>,
    pub offset: u32,
    pub limit: u32,
}
