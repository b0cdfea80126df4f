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
//! * ids come from one monotonic allocator whose floor is `Id::floor_at(now)`;
//! * text holding a NUL is never written, and finds nothing when looked up by ([`text`]).

use async_trait::async_trait;
use taskd_core::{
    ControlOp, Credential, Device, DeviceGroup, DeviceUpdate, Id, NewDevice, NewDeviceGroup,
    NewOtaPackage, NewSubTask, NewTask, NewTaskFile, OpService, OtaPackage, SubTask, SubTaskState,
    Task, TaskFile, TaskScope, TaskState, Timestamp,
};

#[cfg(feature = "conformance")]
pub mod conformance;

mod channel;
mod legacy;
mod ota;
mod registry;
pub mod text;

pub use legacy::{
    DeviceAttributes, LegacyApp, LegacyOperation, LegacyTask, LegacyTaskListParams, LegacyTokens,
    TIMEOUT_ERROR_CODE,
};

pub use channel::{
    DesiredUpdate, DeviceLogin, DeviceMessage, DeviceSession, DeviceVersions,
    MAX_MESSAGES_PER_DEVICE, MAX_NODE_MAIL_BYTES, MAX_NODE_MAIL_PER_NODE, MAX_NODE_MAIL_TTL_MS,
    MAX_PENDING_MESSAGES_PER_DEVICE, MAX_SERVICE_ID_CHARS, MAX_SHADOW_SECTION_BYTES,
    MAX_SHADOW_SERVICES, MAX_VERSION_CHARS, MessageRefusal, MessageStatus, NewDeviceMessage,
    NodeMailRefusal, NodesReaped, ReportedProperties, SessionRefusal, ShadowRefusal, ShadowService,
};

pub use ota::{OtaPackageFilter, OtaPackageInsertOutcome, OtaPackageListParams};

pub use registry::{
    DeviceEffect, DeviceEffectRefused, DeviceFilter, DeviceListParams, GatewayFilter, GroupFilter,
    GroupListParams, RegistryRefusal, SecretReset,
};

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
    /// Text to store holds a NUL character, which no backend keeps ([`text`]); nothing
    /// was written. Callers validate input first: this names the field that slipped by.
    #[error("{0} contains a NUL character (U+0000), which cannot be stored")]
    InvalidText(&'static str),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One page of a marker-paginated listing, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// How many records match the filter in all (not just this page).
    pub count: i64,
}

impl<T> Page<T> {
    /// No records at all.
    pub fn empty() -> Self {
        Page {
            items: Vec::new(),
            count: 0,
        }
    }
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

#[expect(
    clippy::large_enum_variant,
    reason = "one per control request, moved once: boxing the task would buy nothing"
)]
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

// ---- running sub-tasks -------------------------------------------------------------------

// ---- instance operations -----------------------------------------------------------------

/// An instance operation as the dialects read it: the task and its one sub-task.
#[derive(Debug, Clone, PartialEq)]
pub struct OpRecord {
    pub task: Task,
    /// `None` only for a task inserted without sub-tasks (never for an operation).
    pub sub_task: Option<SubTask>,
}

/// Listing the operations of one scope (`OpService::scope`), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpListParams {
    pub scope: TaskScope,
    pub state: Option<TaskState>,
    /// Only operations created at or after this time.
    pub created_from: Option<Timestamp>,
    /// Only operations created at or before this time.
    pub created_to: Option<Timestamp>,
    pub page: PageRequest,
}

// ---- running sub-tasks -------------------------------------------------------------------

/// How many sub-tasks may run (be leased) at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Across every project this database serves.
    pub max_running: u32,
    /// Per project, so one tenant's 30,000-device upgrade can't take every slot.
    pub max_running_per_project: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimParams {
    /// Who holds the leases (shown in logs, kept on the row).
    pub worker_id: String,
    /// Only this project's tasks (a worker's credential); `None`: every project (taskd's
    /// own executors).
    pub project_id: Option<String>,
    /// Only tasks of these types.
    pub kinds: Vec<String>,
    pub max: u32,
    /// The leases end at this time unless extended.
    pub lease_until: Timestamp,
    pub limits: RunLimits,
    pub now: Timestamp,
}

/// What an executor needs of a task to run one of its sub-tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedTask {
    pub id: Id,
    pub scope: TaskScope,
    pub app_id: Option<String>,
    pub kind: String,
    pub name: String,
    pub document_json: Option<String>,
    /// For an instance operation: its service ...
    pub service: Option<OpService>,
    /// ... and the instance it acts on (the scope's instance is the service's key).
    pub op_instance_id: Option<String>,
    /// When the task was created (the start of a `createAsyncCommands` expiry).
    pub created_at: Timestamp,
}

/// A sub-task leased to an executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedSubTask {
    pub id: Id,
    /// The run this lease is for; results and heartbeats must quote it.
    pub attempt: u32,
    pub target: String,
    pub input_json: Option<String>,
    pub lease_until: Timestamp,
    pub task: std::sync::Arc<ClaimedTask>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatParams {
    /// The reporting credential's project; a sub-task of another project is "lost".
    pub project_id: Option<String>,
    pub sub_task_id: Id,
    pub attempt: u32,
    pub lease_until: Timestamp,
    /// 0-100, when the executor reports it.
    pub progress: Option<u8>,
    pub now: Timestamp,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded {
        output: Option<String>,
    },
    Failed {
        error_code: String,
        error_msg: String,
        /// What the executor got that said no (a device's answer with a non-zero
        /// `result_code`); `None` keeps the sub-task's last output.
        output: Option<String>,
    },
    /// Not finished, and not a failure: the sub-task waits (`RetryWaiting`) until `until`
    /// and runs again, without using up a retry of its task's policy (a message waiting
    /// for its device to come online). The error fields say why it waits.
    Deferred {
        until: Timestamp,
        error_code: String,
        error_msg: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    pub sub_task_id: Id,
    pub attempt: u32,
    pub outcome: RunOutcome,
    /// A registry effect to apply with a success, in the same transaction: both happen
    /// or neither, so a registry sub-task acts exactly once across crashes. Refused, the
    /// sub-task fails with the refusal's code and message instead.
    pub effect: Option<DeviceEffect>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportParams {
    /// The reporting credential's project; results for other projects are refused.
    pub project_id: Option<String>,
    pub results: Vec<RunResult>,
    pub now: Timestamp,
}

/// What became of one reported result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Recorded; the sub-task is now in this state (`Succeeded`, `Failed` or
    /// `RetryWaiting`).
    Accepted(SubTaskState),
    /// The sub-task is not leased for this attempt any more (stopped, lease expired and
    /// claimed again, already reported, or unknown in the project); nothing changed.
    LeaseLost,
}

/// Expired leases a sub-task may have before maintenance fails it instead of queueing it
/// again. An executor that dies on one sub-task every time (a poison pill: it crashes the
/// worker, or never finishes) would otherwise have it handed out forever, taking a
/// worker down each time. A user retry starts the count over.
pub const LEASE_EXPIRIES_BEFORE_FAILURE: u32 = 5;

/// A node's claim on leading a cluster-wide job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderParams {
    /// The job (`"maintenance"`).
    pub name: String,
    /// The node asking (unique per process).
    pub holder: String,
    pub now: Timestamp,
    /// How long the leadership lasts unless renewed.
    pub until: Timestamp,
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Sub-tasks whose retry interval elapsed, queued again.
    pub retries_released: u64,
    /// Sub-tasks whose lease expired, queued again for another attempt.
    pub leases_expired: u64,
    /// Sub-tasks whose lease expired for the [`LEASE_EXPIRIES_BEFORE_FAILURE`]th time,
    /// failed instead (error code `LEASE_EXPIRED`).
    pub leases_abandoned: u64,
    /// Unfinished sub-tasks of tasks past their deadline, ended as failed (`TIMEOUT`).
    pub timed_out: u64,
    /// Pending device messages whose `expires_at` came, ended as `Timeout`.
    pub messages_expired: u64,
    /// The pass stopped at its row bound; call again.
    pub more: bool,
}

/// Room a store that manages its own files ([`Store::check_writable`] of the embedded
/// store) wants left on its file system, and below its page limit, to call itself
/// writable: enough for the usual writes, small enough to be the last MiB of a disk.
pub const MIN_WRITE_ROOM_BYTES: u64 = 1024 * 1024;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks the database answers (a read: it may still refuse every write).
    async fn ping(&self) -> StoreResult<()>;

    /// Readiness: whether the store can take a write now, found out by making one (a
    /// one-row update of its own `health` table, stamped `now`). An error says why not: a
    /// full disk, a read-only or unreachable database, a writer that is stuck. The
    /// embedded store also refuses when it has less than [`MIN_WRITE_ROOM_BYTES`] of room
    /// left to grow, as most writes need new space and a full disk may still take one
    /// small update.
    async fn check_writable(&self, now: Timestamp) -> StoreResult<()>;

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

    /// Deletes up to `max_rows` finished tasks (of any kind, operations included) whose
    /// last change is before `before`, with their sub-tasks and their `task_counts`, in
    /// one transaction; returns how many. Called repeatedly by the engine's retention
    /// until it returns less than `max_rows`.
    async fn purge_finished(&self, before: Timestamp, max_rows: u32) -> StoreResult<u64>;

    // ---- instance operations --------------------------------------------------------

    /// Operations of a scope with their sub-task, newest first; `count` is how many match
    /// the state and time filters (counted over the scope's index range: an instance's
    /// operations are few).
    async fn op_list(&self, params: &OpListParams) -> StoreResult<Page<OpRecord>>;

    /// One operation (any task) of a scope with its sub-task.
    async fn op_get(&self, scope: &TaskScope, id: Id) -> StoreResult<Option<OpRecord>>;

    /// The project whose operations name `instance_id` of `service`, if any (an instance
    /// belongs to one project: the first that recorded an operation for it).
    async fn op_instance_owner(
        &self,
        service: OpService,
        instance_id: &str,
    ) -> StoreResult<Option<String>>;

    /// Applies stop, retry or confirm in one transaction: sub-task transitions per
    /// `ControlOp::sub_task_target`, counters, and the task state re-derived from them.
    async fn task_control(&self, params: TaskControlParams) -> StoreResult<TaskControlOutcome>;

    // ---- running sub-tasks ----------------------------------------------------------

    /// Leases up to `max` ready sub-tasks (queued, released, their task's schedule time
    /// reached, its maintenance window — if any — open at `now`'s UTC minute of the day,
    /// see `taskd_core::OperateWindow::contains`) to an executor, within the running limits, spread fairly over tasks:
    /// tasks served least recently first, each getting an equal share. Each claimed
    /// sub-task moves `Waiting` → `Processing` with its attempt counted, in one
    /// transaction with the counters.
    async fn sub_task_claim(&self, params: ClaimParams) -> StoreResult<Vec<ClaimedSubTask>>;

    /// Extends a lease (and records progress). `None`: the lease is lost.
    async fn sub_task_heartbeat(&self, params: HeartbeatParams) -> StoreResult<Option<Timestamp>>;

    /// Records run results in one transaction: `Succeeded`, or on failure `RetryWaiting`
    /// (due after the task's retry interval) while automatic retries remain, else
    /// `Failed`. One outcome per result, in order.
    async fn sub_task_report(&self, params: ReportParams) -> StoreResult<Vec<ReportOutcome>>;

    /// One bounded maintenance pass: retries that are due go back to the queue, expired
    /// leases return their sub-tasks for another attempt, and the unfinished sub-tasks of
    /// tasks past their deadline end as failed with [`TIMEOUT_ERROR_CODE`] (counted in
    /// the task's `LegacyTask::timed_out`). At most `max_rows` rows (deadline: tasks) of
    /// each. No claim hands out a sub-task of a task past its deadline.
    async fn maintain(&self, now: Timestamp, max_rows: u32) -> StoreResult<MaintenanceReport>;

    /// Takes or renews the leadership of a job: true when `holder` leads it until
    /// `until` (it led already, or the last leader's term lapsed before `now`), false
    /// when another node leads it. One atomic statement, so two nodes never both win.
    async fn leader_acquire(&self, params: &LeaderParams) -> StoreResult<bool>;

    /// Gives up a leadership `holder` has (at shutdown), so another node takes over at
    /// once instead of when the term lapses. Does nothing if `holder` does not lead.
    async fn leader_release(&self, name: &str, holder: &str) -> StoreResult<()>;

    /// A push channel for "sub-tasks may have become claimable", fed by every node that
    /// shares this store (PostgreSQL: `LISTEN`/`NOTIFY`). `None` when the backend has
    /// none; the engine then relies on its own wake-ups and polling, which is also the
    /// fallback when a notification is lost (a reconnect, say).
    fn wakeups(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// The earliest future moment something becomes due (a schedule time, a retry, a
    /// lease expiry, a task deadline, a pending device message's expiry), so the runner
    /// can sleep until then.
    async fn next_due(&self, now: Timestamp) -> StoreResult<Option<Timestamp>>;

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

    // ---- device registry ----------------------------------------------------------------
    //
    // Devices and static device groups, keyed by scope like tasks. The device writes are
    // the same code as the registry task types' effects (`DeviceEffect`), which each
    // backend also applies inside a caller's transaction. A refusal (`Ok(Err(_))`) wrote
    // nothing.

    /// Registers a device (its scope is `device.scope`), `Inactive`.
    async fn device_insert(
        &self,
        device: NewDevice,
        now: Timestamp,
    ) -> StoreResult<Result<Device, RegistryRefusal>>;

    async fn device_get(&self, scope: &TaskScope, device_id: &str) -> StoreResult<Option<Device>>;

    /// Devices of a scope, newest first, with IoTDA's marker/offset paging.
    async fn device_list(&self, params: &DeviceListParams) -> StoreResult<Page<Device>>;

    /// Changes the given fields and returns the device after the change.
    async fn device_update(
        &self,
        scope: &TaskScope,
        device_id: &str,
        update: DeviceUpdate,
        now: Timestamp,
    ) -> StoreResult<Result<Device, RegistryRefusal>>;

    /// Deletes a device and its group memberships (refused while it has sub-devices).
    async fn device_delete(
        &self,
        scope: &TaskScope,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>>;

    /// `Frozen`, remembering the status to return to (directly connected devices only).
    async fn device_freeze(
        &self,
        scope: &TaskScope,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>>;

    /// Sets a device's primary or secondary secret (IoTDA ResetDeviceSecret); refused
    /// for a device that authenticates with certificates. Its connection stays: closing
    /// it is the caller's choice (`force_disconnect`).
    async fn device_reset_secret(
        &self,
        reset: &SecretReset,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>>;

    /// Back to the status the device had when it was frozen.
    async fn device_unfreeze(
        &self,
        scope: &TaskScope,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>>;

    /// Creates a static group (at most `MAX_GROUPS_PER_SCOPE` per scope, names unique per
    /// resource space, nested at most `MAX_GROUP_DEPTH` levels).
    async fn group_insert(
        &self,
        group: NewDeviceGroup,
        now: Timestamp,
    ) -> StoreResult<Result<DeviceGroup, RegistryRefusal>>;

    async fn group_get(
        &self,
        scope: &TaskScope,
        group_id: &str,
    ) -> StoreResult<Option<DeviceGroup>>;

    /// Groups of a scope, newest first.
    async fn group_list(&self, params: &GroupListParams) -> StoreResult<Page<DeviceGroup>>;

    /// Deletes a group and its memberships; its devices stay (refused while it has
    /// child groups).
    async fn group_delete(
        &self,
        scope: &TaskScope,
        group_id: &str,
    ) -> StoreResult<Result<(), RegistryRefusal>>;

    /// Adds a device to a group (adding a member again changes nothing).
    async fn group_add_device(
        &self,
        scope: &TaskScope,
        group_id: &str,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>>;

    /// Removes a device from a group (removing a non-member changes nothing).
    async fn group_remove_device(
        &self,
        scope: &TaskScope,
        group_id: &str,
        device_id: &str,
        now: Timestamp,
    ) -> StoreResult<Result<(), RegistryRefusal>>;

    /// The distinct device ids of the members of `group_ids`, in device-id order (byte
    /// order); `Err(group_id)` names the first group (in the given order) that does not
    /// exist in `scope`. What `targets_filter.group_ids` resolves to at task creation.
    async fn device_group_members(
        &self,
        scope: &TaskScope,
        group_ids: &[String],
    ) -> StoreResult<Result<Vec<String>, String>>;

    // ---- OTA packages ----------------------------------------------------------------------
    //
    // Package records (IoTDA CreateOtaPackage): keyed by scope, their ids from the task id
    // allocator. Nothing here reads or deletes the package's object.

    /// Records a package, unless its scope already holds `max_packages`.
    async fn ota_package_insert(
        &self,
        package: NewOtaPackage,
        max_packages: u32,
        now: Timestamp,
    ) -> StoreResult<OtaPackageInsertOutcome>;

    async fn ota_package_get(&self, scope: &TaskScope, id: Id) -> StoreResult<Option<OtaPackage>>;

    /// Packages of a scope, newest first, with IoTDA's marker/offset paging.
    async fn ota_package_list(
        &self,
        params: &OtaPackageListParams,
    ) -> StoreResult<Page<OtaPackage>>;

    /// Deletes a package record (batch tasks naming it keep their documents); `false`
    /// when the scope has no such package.
    async fn ota_package_delete(&self, scope: &TaskScope, id: Id) -> StoreResult<bool>;

    // ---- the device channel (MQTT) -------------------------------------------------------
    //
    // Who may connect, which node holds each connection, and what devices report; shadows
    // and the messages waiting for their device. See `channel`.

    /// Every registered device with this id, in any scope: the MQTT listener serves all
    /// projects, and a CONNECT names only the device.
    async fn device_logins(&self, device_id: &str) -> StoreResult<Vec<DeviceLogin>>;

    /// Records a device's new connection, held by `session.node_id`: ONLINE (the status
    /// a frozen device returns to stays untouched: frozen devices are refused), its
    /// `active_time` at the first connection, `connection_status_update_time`, and the
    /// session, replacing an older session of the device, which is returned (its node
    /// closes that connection).
    async fn device_session_open(
        &self,
        session: &DeviceSession,
    ) -> StoreResult<Result<Option<DeviceSession>, SessionRefusal>>;

    /// [`Store::device_session_open`] for several connections in one transaction (a
    /// connect storm): one result per session, in the given order; a refused one writes
    /// nothing, the others are recorded. Two sessions of one device open in the given
    /// order (the second replaces the first).
    async fn device_sessions_open(
        &self,
        sessions: &[DeviceSession],
    ) -> StoreResult<Vec<Result<Option<DeviceSession>, SessionRefusal>>>;

    /// Ends a session: OFFLINE, unless the device has a newer session (then nothing
    /// changes and this returns false).
    async fn device_session_close(
        &self,
        scope: &TaskScope,
        device_id: &str,
        session_id: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;

    /// The device's current session, if it is connected.
    async fn device_session_get(
        &self,
        scope: &TaskScope,
        device_id: &str,
    ) -> StoreResult<Option<DeviceSession>>;

    /// Ends every session `node_id` held (a node starting again; a dead node's sessions):
    /// its devices OFFLINE. Returns how many.
    async fn device_sessions_close_node(&self, node_id: &str, now: Timestamp) -> StoreResult<u64>;

    /// Stores the versions a device reported, each cut to [`MAX_VERSION_CHARS`] characters
    /// (a device's report has no answer that could carry a refusal); false if the device
    /// does not exist.
    async fn device_versions_put(
        &self,
        scope: &TaskScope,
        device_id: &str,
        versions: &DeviceVersions,
        now: Timestamp,
    ) -> StoreResult<bool>;

    /// The device's shadow, one entry per service, by service id; `None` if the device
    /// does not exist.
    async fn shadow_get(
        &self,
        scope: &TaskScope,
        device_id: &str,
    ) -> StoreResult<Option<Vec<ShadowService>>>;

    /// Applies desired-section updates (all or none) and returns the whole shadow after.
    async fn shadow_update_desired(
        &self,
        scope: &TaskScope,
        device_id: &str,
        updates: Vec<DesiredUpdate>,
        now: Timestamp,
    ) -> StoreResult<Result<Vec<ShadowService>, ShadowRefusal>>;

    /// Merges a property report into the reported sections and returns the whole shadow
    /// after.
    async fn shadow_report(
        &self,
        scope: &TaskScope,
        device_id: &str,
        reported: Vec<ReportedProperties>,
        now: Timestamp,
    ) -> StoreResult<Result<Vec<ShadowService>, ShadowRefusal>>;

    /// Stores a message `Pending`. The device's oldest final messages beyond
    /// [`MAX_MESSAGES_PER_DEVICE`] are deleted in the same transaction. The caller bounds
    /// the message's fields (the store checks only the rule on text).
    async fn message_insert(
        &self,
        message: NewDeviceMessage,
        now: Timestamp,
    ) -> StoreResult<Result<DeviceMessage, MessageRefusal>>;

    async fn message_get(
        &self,
        scope: &TaskScope,
        device_id: &str,
        message_id: &str,
    ) -> StoreResult<Option<DeviceMessage>>;

    /// A device's messages, newest first, at most `limit`.
    async fn message_list(
        &self,
        scope: &TaskScope,
        device_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<DeviceMessage>>;

    /// Ends a `Pending` message (`Delivered`, `Failed` with its error, `Timeout`); false if
    /// it was not pending.
    async fn message_finish(
        &self,
        scope: &TaskScope,
        device_id: &str,
        message_id: &str,
        status: MessageStatus,
        error: Option<(String, String)>,
        now: Timestamp,
    ) -> StoreResult<bool>;

    /// A device's unexpired `Pending` messages, oldest first, at most `limit`.
    async fn messages_pending(
        &self,
        scope: &TaskScope,
        device_id: &str,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<DeviceMessage>>;

    // ---- nodes: several taskd processes sharing this store ---------------------------------
    //
    // Each node says it is alive; any node ends the device sessions of nodes that stopped
    // saying so. Nodes reach each other through mailboxes in the store (a device request
    // for the node holding the device's connection, and its answer), woken by
    // `node_mail_wakeups` where the backend can push.

    /// Records that `node_id` is alive at `now`. False when the store did not know it: its
    /// first beat, or it was found dead and its sessions were ended (then the node must
    /// close its connections, whose sessions the store no longer has).
    async fn node_heartbeat(&self, node_id: &str, now: Timestamp) -> StoreResult<bool>;

    /// Ends the nodes not seen since `seen_before`: their device sessions (devices
    /// OFFLINE), their mail, and their record; also sessions of nodes the store does not
    /// know, and mail that expired by `now`. Safe to run on several nodes at once.
    async fn nodes_reap(&self, seen_before: Timestamp, now: Timestamp) -> StoreResult<NodesReaped>;

    /// Queues `body` for `node_id` until `expires_at` (cut to
    /// [`MAX_NODE_MAIL_TTL_MS`] after `now`) and wakes it.
    async fn node_mail_send(
        &self,
        node_id: &str,
        body: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> StoreResult<Result<(), NodeMailRefusal>>;

    /// Takes (deletes and returns) up to `max` of `node_id`'s unexpired mail, oldest first.
    /// Only the node itself reads its mailbox.
    async fn node_mail_take(
        &self,
        node_id: &str,
        now: Timestamp,
        max: u32,
    ) -> StoreResult<Vec<String>>;

    /// A push channel for "some node has new mail" (PostgreSQL: `LISTEN`/`NOTIFY`);
    /// `None` when the backend has none (readers poll).
    fn node_mail_wakeups(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    // ---- the legacy northbound API ---------------------------------------------------------

    /// Stores an app (creating its project). Storing the same app id again for the same
    /// project replaces its secret and un-revokes it; for another project it is a
    /// [`StoreError::Conflict`].
    async fn legacy_app_put(&self, app: &LegacyApp) -> StoreResult<()>;

    /// An app by id, revoked ones included.
    async fn legacy_app_get(&self, app_id: &str) -> StoreResult<Option<LegacyApp>>;

    /// All apps, revoked ones included, oldest first.
    async fn legacy_app_list(&self) -> StoreResult<Vec<LegacyApp>>;

    /// Revokes an app and drops its tokens; `false` when there is no active one.
    async fn legacy_app_revoke(&self, app_id: &str, now: Timestamp) -> StoreResult<bool>;

    /// Replaces the app's tokens (only the last issued are valid); `false` when the app
    /// does not exist or is revoked.
    async fn legacy_tokens_put(&self, tokens: &LegacyTokens) -> StoreResult<bool>;

    async fn legacy_tokens_get(&self, app_id: &str) -> StoreResult<Option<LegacyTokens>>;

    /// Counts one call of `app_id` in the fixed window starting at `window_start` and
    /// returns the window's calls including this one, in one statement (shared by every
    /// node). Older windows of the app are dropped.
    async fn legacy_rate_hit(&self, app_id: &str, window_start: Timestamp) -> StoreResult<i64>;

    /// Sets a device's legacy attributes; `false` when the device does not exist.
    async fn device_attributes_put(
        &self,
        scope: &TaskScope,
        device_id: &str,
        attributes: &DeviceAttributes,
    ) -> StoreResult<bool>;

    /// The devices of `device_ids` that exist in `scope`, with their legacy attributes
    /// (all `None` when never set), in the order given.
    async fn device_attributes_get(
        &self,
        scope: &TaskScope,
        device_ids: &[String],
    ) -> StoreResult<Vec<(String, DeviceAttributes)>>;

    /// [`Store::task_insert`] recording the legacy operation (and its deadline) in the
    /// same transaction.
    async fn legacy_task_insert(
        &self,
        params: TaskInsertParams,
        operation: LegacyOperation,
    ) -> StoreResult<Task>;

    /// A task created through the legacy API in `scope`.
    async fn legacy_task_get(&self, scope: &TaskScope, id: Id) -> StoreResult<Option<LegacyTask>>;

    /// Tasks created through the legacy API, newest first. The free-form filters
    /// (device type, model, manufacturer, device id) are counted over the listing's own
    /// index range, like device listings.
    async fn legacy_task_list(
        &self,
        params: &LegacyTaskListParams,
    ) -> StoreResult<Page<LegacyTask>>;

    // ---- lifecycle ----------------------------------------------------------------------

    /// Graceful shutdown, called once after the server stopped serving: waits for the
    /// connections in use and closes them. Calls after this fail with a backend error.
    async fn close(&self);
}
