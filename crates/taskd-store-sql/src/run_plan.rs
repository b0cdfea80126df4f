//! The decision half of recording a run's result, shared by the SQL backends: where a
//! reported run takes its sub-task (they keep only the guarded write).

use taskd_core::{SubTaskState, Task, Timestamp};
use taskd_store::RunOutcome;

/// Where a reported run takes its sub-task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub state: SubTaskState,
    /// For `RetryWaiting`: when the retry is due.
    pub ready_at: Option<Timestamp>,
    /// Automatic retries used since the last user retry, after this run.
    pub retries: i64,
}

/// A success succeeds; a failure waits for a retry while the task's policy has one left
/// (`retries` used so far), else fails.
pub fn decide(task: &Task, retries: i64, outcome: &RunOutcome, now: Timestamp) -> Decision {
    match (outcome, task.retry) {
        (RunOutcome::Succeeded { .. }, _) => Decision {
            state: SubTaskState::Succeeded,
            ready_at: None,
            retries,
        },
        (RunOutcome::Failed { .. }, Some(policy)) if retries < i64::from(policy.count) => {
            Decision {
                state: SubTaskState::RetryWaiting,
                ready_at: Some(now.plus_minutes(i64::from(policy.interval_minutes))),
                retries: retries + 1,
            }
        }
        (RunOutcome::Failed { .. }, _) => Decision {
            state: SubTaskState::Failed,
            ready_at: None,
            retries,
        },
    }
}

/// `error_code` of a sub-task failed because its executors kept losing it (see
/// [`taskd_store::LEASE_EXPIRIES_BEFORE_FAILURE`]).
pub const LEASE_EXPIRED_CODE: &str = "LEASE_EXPIRED";

/// Whether a lease expiring now, after `expiries_so_far` earlier ones, fails its sub-task
/// instead of queueing it again: an executor that dies on a sub-task every time (a poison
/// pill) would otherwise have it handed out forever.
pub fn abandons(expiries_so_far: i64) -> bool {
    expiries_so_far + 1 >= i64::from(taskd_store::LEASE_EXPIRIES_BEFORE_FAILURE)
}

/// `error_msg` of such a sub-task.
pub fn lease_expired_message() -> String {
    format!(
        "The executor's lease expired {} times without a result (it stopped heartbeating or \
         crashed); the sub-task is failed so it is not handed out forever. Retry it to run it again.",
        taskd_store::LEASE_EXPIRIES_BEFORE_FAILURE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_allowed_expiry_abandons() {
        let limit = i64::from(taskd_store::LEASE_EXPIRIES_BEFORE_FAILURE);
        assert!(!abandons(0));
        assert!(!abandons(limit - 2));
        assert!(abandons(limit - 1));
    }
}
