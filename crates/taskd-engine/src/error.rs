//! The engine's errors: [`EngineError`] for its callers, and [`SubTaskErrorKind`], the
//! reasons the engine itself records when a built-in executor fails a sub-task.

use taskd_store::StoreError;

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

/// Why the engine failed a sub-task it ran itself. The sub-task stores [`code`]: a
/// name of taskd's own, no dialect's, which each dialect maps to its code where it
/// renders a sub-task (`from_code`), so a new dialect needs no data migration.
///
/// [`code`]: SubTaskErrorKind::code
/// [`from_code`]: SubTaskErrorKind::from_code
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubTaskErrorKind {
    /// The sub-task's input (a task-file row, its target) can't describe what its task
    /// type does.
    InvalidInput,
    /// No built-in executor runs the sub-task's task type (a claim returned a type it
    /// was not asked for): failed rather than claimed again forever.
    NoExecutor,
    /// The target is not a registered device of the task's scope.
    DeviceNotFound,
    /// The device has no connection, and the task type does not wait for one.
    DeviceOffline,
    /// The device did not answer within the request's timeout.
    DeviceTimeout,
    /// The device answered with a non-zero `result_code`.
    DeviceRejected,
    /// The device has not subscribed the message's custom topic.
    NotSubscribed,
}

impl SubTaskErrorKind {
    pub const ALL: [SubTaskErrorKind; 7] = [
        SubTaskErrorKind::InvalidInput,
        SubTaskErrorKind::NoExecutor,
        SubTaskErrorKind::DeviceNotFound,
        SubTaskErrorKind::DeviceOffline,
        SubTaskErrorKind::DeviceTimeout,
        SubTaskErrorKind::DeviceRejected,
        SubTaskErrorKind::NotSubscribed,
    ];

    /// The stored error code. Stable: sub-tasks keep it for as long as they are retained.
    pub const fn code(self) -> &'static str {
        match self {
            SubTaskErrorKind::InvalidInput => "INVALID_INPUT",
            SubTaskErrorKind::NoExecutor => "NO_EXECUTOR",
            SubTaskErrorKind::DeviceNotFound => "DEVICE_NOT_FOUND",
            SubTaskErrorKind::DeviceOffline => "DEVICE_OFFLINE",
            SubTaskErrorKind::DeviceTimeout => "DEVICE_TIMEOUT",
            SubTaskErrorKind::DeviceRejected => "DEVICE_REJECTED",
            SubTaskErrorKind::NotSubscribed => "NOT_SUBSCRIBED",
        }
    }

    /// The kind a stored error code names; `None` for codes the engine does not write
    /// (a worker's own codes, the store's `LEASE_EXPIRED` and `TIMEOUT`).
    pub fn from_code(code: &str) -> Option<SubTaskErrorKind> {
        SubTaskErrorKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_no_dialects() {
        for kind in SubTaskErrorKind::ALL {
            assert_eq!(SubTaskErrorKind::from_code(kind.code()), Some(kind));
            assert!(
                !kind.code().contains('.'),
                "{}: no dialect prefix",
                kind.code()
            );
        }
        assert_eq!(SubTaskErrorKind::from_code("IOTDA.000006"), None);
        assert_eq!(SubTaskErrorKind::from_code("LEASE_EXPIRED"), None);
    }
}
