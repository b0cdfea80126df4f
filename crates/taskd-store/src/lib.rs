//! The storage seam of taskd: the [`Store`] trait every backend implements, one parameter
//! struct per operation, and [`StoreError`].
//!
//! Backends live in their own crates (`taskd-store-sqlite`, `taskd-store-postgres`)
//! and own their SQL and migrations; nothing outside them writes SQL. Every backend runs
//! the same [`conformance`] suite (feature `conformance`), so the semantics written here
//! hold on all of them.
//!
//! This trait is internal to the workspace and may change freely.
//!
//! Rules every implementation keeps:
//! * a write that changes a task or sub-task state is guarded by the state it expects
//!   (`... WHERE state = $expected`) and decided by the tables in `taskd_core::state`;
//! * progress counters and per-scope task counts change in the same transaction as the
//!   rows they count;
//! * a failed call leaves nothing half-written;
//! * ids come from one monotonic allocator whose floor is `Id::floor_at(now)`.

use async_trait::async_trait;
use taskd_core::{
    ControlOp, Credential, Id, NewSubTask, NewTask, NewTaskFile, SubTask, SubTaskState, Task,
    TaskFile, TaskScope, TaskState, Timestamp,
};

#[cfg(feature = "conformance")]
pub mod conformance;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key already exists (e.g. an access key registered to another project).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or answered with an error. The cause is part of
    /// the message rather than a `source`, so a printed error chain says it once.
    #[error("storage backend error: {0}")]
    Backend(BoxError),
    /// A stored value could not be read back (a bug or a hand-edited database).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One page of a marker-paginated listing, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many records match the filter in all (not just this page).
    pub count: i64,
}

/// Marker pagination as the Huawei APIs define it: records with id < `marker`, id
/// descending, skipping `offset` of them, at most `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub marker: Id,
    pub offset: u32,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskInsertParams {
    pub task: NewTask,
    /// The task's sub-tasks, in target order (they get increasing ids). Empty when the
    /// targets are resolved later: the task then starts `Initializing`, else `Waiting`.
    pub sub_tasks: Vec<NewSubTask>,
    pub now: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskFilter {
    pub app_id: Option<String>,
    pub kind: Option<String>,
    pub state: Option<TaskState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskListParams {
    pub scope: TaskScope,
    pub filter: TaskFilter,
    pub page: PageRequest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubTaskListParams {
    pub scope: TaskScope,
    pub task_id: Id,
    /// Only sub-tasks in this state.
    pub state: Option<SubTaskState>,
    pub target: Option<String>,
    pub page: PageRequest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskDeleteOutcome {
    Deleted,
    NotFound,
    /// The task is not finished; nothing was deleted.
    NotFinished(TaskState),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskControlParams {
    pub scope: TaskScope,
    pub task_id: Id,
    pub op: ControlOp,
    /// `None`: every sub-task the op applies to. `Some`: only these targets, each
    /// reported on its own (at most 100, checked by the caller).
    pub targets: Option<Vec<String>>,
    pub now: Timestamp,
}

/// How one named target fared under a control op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetOutcome {
    Applied,
    NotInTask,
    /// The sub-task's state doesn't allow the op (e.g. retrying a succeeded target).
    StateRefused(SubTaskState),
}

// One per control request, moved once: boxing the task would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum TaskControlOutcome {
    NotFound,
    /// The task's state doesn't allow the op; nothing changed.
    TaskStateRefused(TaskState),
    Applied {
        /// The task after the op.
        task: Task,
        /// One entry per requested target, in request order (empty for a whole-task op).
        targets: Vec<(String, TargetOutcome)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileInsertOutcome {
    Inserted(TaskFile),
    /// The scope already holds `max_files` files; nothing was stored.
    LimitReached,
}

/// The rows of a stored task file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFileContent {
    pub file: TaskFile,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks the database answers (readiness probe).
    async fn ping(&self) -> StoreResult<()>;

    // ---- projects and credentials -------------------------------------------------

    /// Creates the project if it doesn't exist.
    async fn project_ensure(&self, project_id: &str, now: Timestamp) -> StoreResult<()>;

    /// Stores a credential (creating its project). Storing the same access key again
    /// for the same project replaces its secret and un-revokes it; for another project
    /// it is a [`StoreError::Conflict`].
    async fn credential_put(&self, credential: &Credential) -> StoreResult<()>;

    /// An active (not revoked) credential by access key.
    async fn credential_get(&self, access_key: &str) -> StoreResult<Option<Credential>>;

    /// All credentials, revoked ones included, oldest first.
    async fn credential_list(&self) -> StoreResult<Vec<Credential>>;

    /// Revokes an access key; `false` when there is no active one.
    async fn credential_revoke(&self, access_key: &str, now: Timestamp) -> StoreResult<bool>;

    // ---- tasks ----------------------------------------------------------------------

    /// Stores a task with all its sub-tasks in one transaction and returns it.
    async fn task_insert(&self, params: TaskInsertParams) -> StoreResult<Task>;

    async fn task_get(&self, scope: &TaskScope, id: Id) -> StoreResult<Option<Task>>;

    async fn task_list(&self, params: &TaskListParams) -> StoreResult<Page<Task>>;

    /// Sub-tasks of a task in `scope`; `None` when the task doesn't exist there.
    async fn sub_task_list(&self, params: &SubTaskListParams)
    -> StoreResult<Option<Page<SubTask>>>;

    /// Deletes a finished task and its sub-tasks.
    async fn task_delete(&self, scope: &TaskScope, id: Id) -> StoreResult<TaskDeleteOutcome>;

    /// Applies stop, retry or confirm in one transaction: sub-task transitions per
    /// `ControlOp::sub_task_target`, counters, and the task state re-derived from them.
    async fn task_control(&self, params: TaskControlParams) -> StoreResult<TaskControlOutcome>;

    // ---- task files -------------------------------------------------------------------

    async fn file_insert(
        &self,
        file: NewTaskFile,
        max_files: u32,
        now: Timestamp,
    ) -> StoreResult<FileInsertOutcome>;

    /// Files of a scope, newest first.
    async fn file_list(&self, scope: &TaskScope) -> StoreResult<Vec<TaskFile>>;

    async fn file_get(
        &self,
        scope: &TaskScope,
        file_id: &str,
    ) -> StoreResult<Option<TaskFileContent>>;

    async fn file_delete(&self, scope: &TaskScope, file_id: &str) -> StoreResult<bool>;

    // ---- lifecycle ----------------------------------------------------------------------

    /// Graceful shutdown, called once after the server stopped serving: waits for the
    /// connections in use and closes them. Calls after this fail with a backend error.
    async fn close(&self);
}
