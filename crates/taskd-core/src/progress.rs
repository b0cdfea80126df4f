//! Per-task progress counters: how many sub-tasks are in each state.
//!
//! Stores keep these on the task row and change them in the same transaction as the
//! sub-task transitions they count, so reading progress never counts rows and the
//! counters always equal the sub-task states (the conformance suite checks it).

use crate::state::SubTaskState;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub total: i64,
    pub waiting: i64,
    pub processing: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub retry_waiting: i64,
    pub stopped: i64,
    pub removed: i64,
}

impl Progress {
    /// A fresh task whose `total` sub-tasks all wait.
    pub const fn waiting(total: i64) -> Self {
        Progress {
            total,
            waiting: total,
            processing: 0,
            succeeded: 0,
            failed: 0,
            retry_waiting: 0,
            stopped: 0,
            removed: 0,
        }
    }

    pub const fn get(&self, state: SubTaskState) -> i64 {
        match state {
            SubTaskState::Waiting => self.waiting,
            SubTaskState::Processing => self.processing,
            SubTaskState::Succeeded => self.succeeded,
            SubTaskState::Failed => self.failed,
            SubTaskState::RetryWaiting => self.retry_waiting,
            SubTaskState::Stopped => self.stopped,
            SubTaskState::Removed => self.removed,
        }
    }

    fn slot(&mut self, state: SubTaskState) -> &mut i64 {
        match state {
            SubTaskState::Waiting => &mut self.waiting,
            SubTaskState::Processing => &mut self.processing,
            SubTaskState::Succeeded => &mut self.succeeded,
            SubTaskState::Failed => &mut self.failed,
            SubTaskState::RetryWaiting => &mut self.retry_waiting,
            SubTaskState::Stopped => &mut self.stopped,
            SubTaskState::Removed => &mut self.removed,
        }
    }

    /// Adds `n` new sub-tasks in `state`.
    pub fn add(&mut self, state: SubTaskState, n: i64) {
        *self.slot(state) += n;
        self.total += n;
    }

    /// Records that `n` sub-tasks moved from `from` to `to`.
    pub fn move_n(&mut self, from: SubTaskState, to: SubTaskState, n: i64) {
        *self.slot(from) -= n;
        *self.slot(to) += n;
    }

    /// Records that every sub-task in `from` moved to `to`; returns how many did.
    pub fn move_all(&mut self, from: SubTaskState, to: SubTaskState) -> i64 {
        let n = self.get(from);
        self.move_n(from, to, n);
        n
    }

    pub fn sum_of_states(&self) -> i64 {
        SubTaskState::ALL.into_iter().map(|s| self.get(s)).sum()
    }

    /// No counter is negative and they add up to the total: what every store checks
    /// before it writes counters.
    pub fn is_consistent(&self) -> bool {
        self.sum_of_states() == self.total
            && SubTaskState::ALL.into_iter().all(|s| self.get(s) >= 0)
    }
}
