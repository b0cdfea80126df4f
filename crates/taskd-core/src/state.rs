//! The task and sub-task state machines.
//!
//! These are taskd's own states. Each dialect maps them to its status words in one place
//! (IoTDA says `Waitting` and `PartialSuccess`, the legacy API says `wait` and `failed`).
//! The diagram, with who moves what, is in `docs/state_machine.md`; the tables below are
//! its executable form and the stores consult them for every write, which they guard
//! with the expected current state.

use crate::progress::Progress;

/// A task's state. The task state is derived from its sub-tasks' counters by
/// [`TaskState::derive`] after every sub-task transition, so it never disagrees with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskState {
    /// Created, its targets not yet resolved into sub-tasks (e.g. a group filter).
    Initializing,
    /// Sub-tasks exist; none is running yet (before `schedule_time`, or awaiting confirm).
    Waiting,
    /// At least one sub-task has been released to run.
    Processing,
    /// A stop was requested; running sub-tasks are being stopped.
    Stopping,
    /// Every sub-task (not removed) succeeded. Final.
    Succeeded,
    /// No sub-task succeeded and at least one failed. Final until retried.
    Failed,
    /// Some succeeded, some failed or stopped. Final until retried.
    PartiallySucceeded,
    /// Stopped by a user. Final.
    Stopped,
}

/// A sub-task's state: one target of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubTaskState {
    /// Queued: before its task's schedule time, awaiting confirm, or released and
    /// waiting for an executor to claim it.
    Waiting,
    /// Leased to an executor (a worker or taskd's own registry executor) that runs it.
    Processing,
    Succeeded,
    /// Failed with no automatic retry left.
    Failed,
    /// Failed; will run again after the task's retry interval.
    RetryWaiting,
    Stopped,
    /// Taken out of the task (its device went away). Final.
    Removed,
}

impl TaskState {
    pub const ALL: [TaskState; 8] = [
        TaskState::Initializing,
        TaskState::Waiting,
        TaskState::Processing,
        TaskState::Stopping,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::PartiallySucceeded,
        TaskState::Stopped,
    ];

    /// The name stored in the database (both backends, with a CHECK constraint).
    pub const fn as_str(self) -> &'static str {
        match self {
            TaskState::Initializing => "initializing",
            TaskState::Waiting => "waiting",
            TaskState::Processing => "processing",
            TaskState::Stopping => "stopping",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::PartiallySucceeded => "partially_succeeded",
            TaskState::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Finished: no sub-task will move unless a user retries.
    pub const fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded
                | TaskState::Failed
                | TaskState::PartiallySucceeded
                | TaskState::Stopped
        )
    }

    /// The allowed task transitions. Anything else is a bug in the engine or a store.
    pub const fn can_transition(self, to: TaskState) -> bool {
        use TaskState::*;
        // Staying put is always allowed: stores re-derive the state after every write.
        self as u8 == to as u8
            || matches!(
                (self, to),
                (
                    Initializing,
                    Waiting | Processing | Stopping | Stopped | Failed
                )
                    // A waiting task can finish without being seen processing: its
                    // sub-tasks may all end in one batch (or be stopped one by one).
                    | (
                        Waiting,
                        Processing | Stopping | Stopped | Succeeded | Failed | PartiallySucceeded
                    )
                    | (
                        Processing,
                        Succeeded | Failed | PartiallySucceeded | Stopping | Stopped
                    )
                    | (Stopping, Stopped)
                    | (Failed | PartiallySucceeded, Processing)
            )
    }

    /// The task state implied by its sub-task counters, given the state it is in now.
    ///
    /// * While some sub-task is waiting, running or due for retry the task is active:
    ///   it stays `Initializing`/`Waiting` until something has been released to run,
    ///   stays `Stopping` while a stop drains, and is `Processing` otherwise (a retry
    ///   of a finished task brings it back there).
    /// * Once every sub-task is final: `Stopping` ends in `Stopped`, a finished task
    ///   stays as it is; otherwise all stopped →
    ///   `Stopped`, all succeeded → `Succeeded`, none succeeded → `Failed`, else
    ///   `PartiallySucceeded`. Removed sub-tasks don't count.
    pub fn derive(self, p: &Progress) -> TaskState {
        use TaskState::*;
        let active = p.waiting + p.processing + p.retry_waiting;
        if active > 0 {
            return match self {
                Initializing | Waiting if p.processing == 0 && p.retry_waiting == 0 => self,
                Stopping => Stopping,
                // Never revived: retry is refused for these, so counters can't go active.
                Succeeded | Stopped => self,
                _ => Processing,
            };
        }
        if self == Stopping {
            return Stopped;
        }
        if self.is_finished() || self == Initializing {
            // Initializing: its sub-tasks are still being created, nothing ran yet.
            // Only a retry (which makes sub-tasks active again) moves a finished task.
            return self;
        }
        let considered = p.total - p.removed;
        if considered <= 0 {
            // Nothing to run (targets not resolved yet, or all removed): stay put.
            return self;
        }
        if p.stopped == considered {
            Stopped
        } else if p.succeeded == considered {
            Succeeded
        } else if p.succeeded == 0 {
            Failed
        } else {
            PartiallySucceeded
        }
    }
}

impl SubTaskState {
    pub const ALL: [SubTaskState; 7] = [
        SubTaskState::Waiting,
        SubTaskState::Processing,
        SubTaskState::Succeeded,
        SubTaskState::Failed,
        SubTaskState::RetryWaiting,
        SubTaskState::Stopped,
        SubTaskState::Removed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            SubTaskState::Waiting => "waiting",
            SubTaskState::Processing => "processing",
            SubTaskState::Succeeded => "succeeded",
            SubTaskState::Failed => "failed",
            SubTaskState::RetryWaiting => "retry_waiting",
            SubTaskState::Stopped => "stopped",
            SubTaskState::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<SubTaskState> {
        SubTaskState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub const fn is_final(self) -> bool {
        matches!(
            self,
            SubTaskState::Succeeded
                | SubTaskState::Failed
                | SubTaskState::Stopped
                | SubTaskState::Removed
        )
    }

    /// The allowed sub-task transitions.
    pub const fn can_transition(self, to: SubTaskState) -> bool {
        use SubTaskState::*;
        matches!(
            (self, to),
            // Waiting -> Waiting is a release: a confirm lets a queued sub-task be claimed.
            (Waiting, Waiting | Processing | Stopped | Removed)
                // A run ends, or its lease expires and it goes back to the queue.
                | (Processing, Succeeded | Failed | RetryWaiting | Stopped | Waiting | Removed)
                | (RetryWaiting, Waiting | Processing | Stopped | Removed)
                // A task's deadline (a legacy custom window's end) ends what is unfinished.
                | (Waiting | RetryWaiting, Failed)
                // Only a user's retry revives a final sub-task.
                | (Failed | Stopped, Waiting | Removed)
        )
    }
}

/// What a user can do to a running task, as a whole or for some of its targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlOp {
    Stop,
    Retry,
    Confirm,
}

impl ControlOp {
    pub const ALL: [ControlOp; 3] = [ControlOp::Stop, ControlOp::Retry, ControlOp::Confirm];

    /// Whether the op may be applied to a task in `state` at all.
    pub const fn allowed_for_task(self, state: TaskState) -> bool {
        use TaskState::*;
        match self {
            ControlOp::Stop | ControlOp::Confirm => {
                matches!(state, Initializing | Waiting | Processing)
            }
            ControlOp::Retry => matches!(state, Processing | Failed | PartiallySucceeded),
        }
    }

    /// Where the op moves a sub-task in `from`, or `None` when it doesn't apply to it.
    pub const fn sub_task_target(self, from: SubTaskState) -> Option<SubTaskState> {
        use SubTaskState::*;
        match (self, from) {
            (ControlOp::Stop, Waiting | Processing | RetryWaiting) => Some(Stopped),
            (ControlOp::Retry, Failed | RetryWaiting | Stopped) => Some(Waiting),
            // Confirm releases a queued sub-task to the dispatcher; it stays Waiting until
            // an executor claims it (Processing means "leased to an executor").
            (ControlOp::Confirm, Waiting) => Some(Waiting),
            _ => None,
        }
    }

    /// The sub-task states the op acts on (the "no targets given" set).
    pub fn source_states(self) -> impl Iterator<Item = SubTaskState> {
        SubTaskState::ALL
            .into_iter()
            .filter(move |s| self.sub_task_target(*s).is_some())
    }

    /// The state the task passes through when the op applies to the whole task; the
    /// final state then follows from [`TaskState::derive`].
    pub const fn whole_task_state(self, current: TaskState) -> TaskState {
        match self {
            ControlOp::Stop => TaskState::Stopping,
            _ => current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn progress_strategy() -> impl Strategy<Value = Progress> {
        prop::array::uniform7(0i64..5).prop_map(|c| {
            let mut p = Progress::default();
            for (state, n) in SubTaskState::ALL.into_iter().zip(c) {
                p.add(state, n);
            }
            p
        })
    }

    fn task_state_strategy() -> impl Strategy<Value = TaskState> {
        prop::sample::select(TaskState::ALL.to_vec())
    }

    #[test]
    fn names_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
        }
        for s in SubTaskState::ALL {
            assert_eq!(SubTaskState::parse(s.as_str()), Some(s));
        }
        assert_eq!(TaskState::parse("Waitting"), None);
    }

    #[test]
    fn op_moves_are_allowed_transitions() {
        for op in ControlOp::ALL {
            for from in SubTaskState::ALL {
                if let Some(to) = op.sub_task_target(from) {
                    assert!(from.can_transition(to), "{op:?}: {from:?} -> {to:?}");
                }
            }
        }
    }

    #[test]
    fn succeeded_and_removed_are_dead_ends() {
        for to in SubTaskState::ALL {
            assert!(!SubTaskState::Succeeded.can_transition(to));
            assert!(!SubTaskState::Removed.can_transition(to));
        }
    }

    #[test]
    fn a_deadline_fails_only_unfinished_sub_tasks() {
        use SubTaskState::*;
        for from in [Waiting, RetryWaiting, Processing] {
            assert!(from.can_transition(Failed), "{from:?}");
        }
        for from in [Succeeded, Stopped, Removed, Failed] {
            assert!(!from.can_transition(Failed), "{from:?}");
        }
        // A task whose sub-tasks all timed out (some having succeeded) ends like any
        // other mix of results.
        let mut p = Progress::waiting(3);
        p.move_n(Waiting, Succeeded, 1);
        p.move_n(Waiting, Failed, 2);
        assert_eq!(TaskState::Waiting.derive(&p), TaskState::PartiallySucceeded);
        p.move_n(Succeeded, Failed, 1);
        assert_eq!(TaskState::Processing.derive(&p), TaskState::Failed);
    }

    #[test]
    fn spec_table_of_task_level_preconditions() {
        use TaskState::*;
        let retry_ok: Vec<_> = TaskState::ALL
            .into_iter()
            .filter(|s| ControlOp::Retry.allowed_for_task(*s))
            .collect();
        assert_eq!(retry_ok, vec![Processing, Failed, PartiallySucceeded]);
        for forbidden in [Succeeded, Failed, PartiallySucceeded, Stopped, Stopping] {
            assert!(!ControlOp::Stop.allowed_for_task(forbidden));
            assert!(!ControlOp::Confirm.allowed_for_task(forbidden));
        }
    }

    #[test]
    fn stopping_a_waiting_task_ends_stopped() {
        let mut p = Progress::waiting(3);
        p.move_all(SubTaskState::Waiting, SubTaskState::Stopped);
        let through = ControlOp::Stop.whole_task_state(TaskState::Waiting);
        assert_eq!(through, TaskState::Stopping);
        assert_eq!(through.derive(&p), TaskState::Stopped);
    }

    #[test]
    fn one_stopped_target_keeps_a_waiting_task_waiting() {
        let mut p = Progress::waiting(3);
        p.move_n(SubTaskState::Waiting, SubTaskState::Stopped, 1);
        assert_eq!(TaskState::Waiting.derive(&p), TaskState::Waiting);
        p.move_n(SubTaskState::Waiting, SubTaskState::Processing, 2);
        assert_eq!(TaskState::Waiting.derive(&p), TaskState::Processing);
    }

    #[test]
    fn final_outcomes() {
        use SubTaskState as S;
        let outcome = |moves: &[(S, i64)]| {
            let mut p = Progress::waiting(moves.iter().map(|m| m.1).sum());
            for (to, n) in moves {
                p.move_n(S::Waiting, *to, *n);
            }
            TaskState::Processing.derive(&p)
        };
        assert_eq!(outcome(&[(S::Succeeded, 2)]), TaskState::Succeeded);
        assert_eq!(outcome(&[(S::Failed, 2)]), TaskState::Failed);
        assert_eq!(
            outcome(&[(S::Succeeded, 1), (S::Failed, 1)]),
            TaskState::PartiallySucceeded
        );
        assert_eq!(
            outcome(&[(S::Succeeded, 1), (S::Removed, 1)]),
            TaskState::Succeeded
        );
        assert_eq!(outcome(&[(S::Stopped, 2)]), TaskState::Stopped);
        assert_eq!(
            outcome(&[(S::Processing, 1), (S::Failed, 1)]),
            TaskState::Processing
        );
    }

    proptest! {
        /// Whatever the counters say, deriving never leaves the transition table, and
        /// deriving twice changes nothing (the stores derive after every write).
        #[test]
        fn derive_is_an_allowed_and_stable_transition(from in task_state_strategy(), p in progress_strategy()) {
            let to = from.derive(&p);
            prop_assert!(from.can_transition(to), "{:?} -> {:?} for {:?}", from, to, p);
            prop_assert_eq!(to.derive(&p), to);
        }

        /// A task with nothing left to run is finished (unless its targets are unresolved).
        #[test]
        fn nothing_active_means_finished(from in task_state_strategy(), p in progress_strategy()) {
            let active = p.waiting + p.processing + p.retry_waiting;
            let to = from.derive(&p);
            if active == 0 && p.total - p.removed > 0 && from != TaskState::Initializing {
                prop_assert!(to.is_finished(), "{:?} -> {:?}", from, to);
            }
            // Succeeded and Stopped tasks are never revived (retry is refused for them).
            if active > 0 && !matches!(from, TaskState::Succeeded | TaskState::Stopped) {
                prop_assert!(!to.is_finished());
            }
        }

        /// Applying an op to a whole task keeps the counters consistent and lands on an
        /// allowed task state.
        #[test]
        fn whole_task_ops_keep_counters_consistent(pick in 0usize..8, p in progress_strategy(), op_i in 0usize..3) {
            let op = ControlOp::ALL[op_i];
            let allowed: Vec<TaskState> = TaskState::ALL.into_iter().filter(|s| op.allowed_for_task(*s)).collect();
            let from = allowed[pick % allowed.len()];
            let mut after = p;
            for s in op.source_states().collect::<Vec<_>>() {
                after.move_all(s, op.sub_task_target(s).unwrap());
            }
            prop_assert_eq!(after.total, p.total);
            prop_assert_eq!(after.sum_of_states(), after.total);
            let through = op.whole_task_state(from);
            prop_assert!(from.can_transition(through));
            let to = through.derive(&after);
            prop_assert!(through.can_transition(to), "{:?} -> {:?} -> {:?}", from, through, to);
        }
    }
}
