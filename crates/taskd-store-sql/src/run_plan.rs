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
