//! The decisions of running sub-tasks, shared by the SQL backends (they keep only the
//! lookups and the guarded writes): how a claim shares its budget out between tasks
//! ([`ShareOut`]), and where a reported run takes its sub-task ([`decide`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use taskd_core::{Id, SubTaskState, Task, Timestamp};
use taskd_store::{ClaimedSubTask, ClaimedTask, RunLimits, RunOutcome, StoreResult};

use crate::corrupt;

/// A sub-task row a claim leased: id, target, input, attempts (after the claim).
pub type LeasedRow = (i64, String, Option<String>, i64);

/// What a claim hands the executor for the rows it leased of `task`.
pub fn claimed_sub_tasks(
    task: &Task,
    rows: Vec<LeasedRow>,
    lease_until: Timestamp,
    out: &mut Vec<ClaimedSubTask>,
) -> StoreResult<()> {
    let claimed_task = Arc::new(ClaimedTask {
        id: task.id,
        scope: task.scope.clone(),
        app_id: task.app_id.clone(),
        kind: task.kind.clone(),
        name: task.name.clone(),
        document_json: task.document_json.clone(),
        service: task.operation.as_ref().map(|o| o.service),
        op_instance_id: task.operation.as_ref().map(|o| o.instance_id.clone()),
        created_at: task.created_at,
    });
    for (id, target, input_json, attempts) in rows {
        out.push(ClaimedSubTask {
            id: Id(id),
            attempt: u32::try_from(attempts)
                .map_err(|_| corrupt(format!("sub-task {}: attempts {attempts}", Id(id))))?,
            target,
            input_json,
            lease_until,
            task: claimed_task.clone(),
        });
    }
    Ok(())
}

/// At most this many tasks are looked at per claim (each gets an equal share).
pub const MAX_CANDIDATE_TASKS: u32 = 64;
/// Rounds of sharing out what tasks with too few ready rows left over.
const MAX_PASSES: usize = 3;

/// How one claim shares its budget (the asked batch, within the global and per-project
/// running limits) between its candidate tasks, least recently served first: each task
/// gets an equal share of what is left, capped by its project's room; what a task could
/// not use (it had fewer ready rows) goes to the tasks after it, and to the tasks that
/// filled their share in up to two more passes. So a 10-target task created after a
/// 30,000-target one gets its whole share on the next claim.
///
/// The backend drives it: [`ShareOut::next_claim`] names the candidate to lease rows of and
/// how many to ask for, [`ShareOut::got`] says how many it leased.
#[derive(Debug)]
pub struct ShareOut {
    budget: i64,
    per_project: i64,
    project_left: HashMap<String, i64>,
    /// The candidates' projects, by index.
    projects: Vec<String>,
    /// Candidates still to serve in this pass, in order, and those that filled their share.
    live: VecDeque<usize>,
    filled: Vec<usize>,
    pass: usize,
    /// The candidate `next_claim` named and what it asked for, until `got`.
    asked: Option<(usize, i64)>,
}

impl ShareOut {
    /// `running`: sub-tasks leased now, per project. `None` when the limits leave no room
    /// (before the candidates are even looked up).
    pub fn new(limits: RunLimits, max: u32, running: &[(String, i64)]) -> Option<ShareOut> {
        let per_project = i64::from(limits.max_running_per_project);
        let project_left = running
            .iter()
            .map(|(p, n)| (p.clone(), per_project - n))
            .collect();
        let global_running: i64 = running.iter().map(|(_, n)| n).sum();
        let budget = (i64::from(limits.max_running) - global_running).min(i64::from(max));
        (budget > 0).then(|| ShareOut {
            budget,
            per_project,
            project_left,
            projects: Vec::new(),
            live: VecDeque::new(),
            filled: Vec::new(),
            pass: 1,
            asked: None,
        })
    }

    /// The candidate tasks, by their projects, in the order they are served.
    pub fn candidates(&mut self, projects: Vec<String>) {
        self.live = (0..projects.len()).collect();
        self.projects = projects;
    }

    /// The next candidate (its index) to lease rows of, and how many to ask for; `None`
    /// when the budget is spent or the passes are over.
    pub fn next_claim(&mut self) -> Option<(usize, i64)> {
        debug_assert!(self.asked.is_none(), "next_claim() twice without got()");
        loop {
            if self.budget <= 0 {
                return None;
            }
            let Some(i) = self.live.pop_front() else {
                if self.pass == MAX_PASSES || self.filled.is_empty() {
                    return None;
                }
                self.pass += 1;
                self.live = std::mem::take(&mut self.filled).into();
                continue;
            };
            // An equal share of what is left for each task still to serve in this pass.
            let tasks_left = self.live.len() as i64 + 1;
            let share = (self.budget + tasks_left - 1) / tasks_left;
            let left = *self
                .project_left
                .entry(self.projects[i].clone())
                .or_insert(self.per_project);
            let want = share.min(left);
            if want > 0 {
                self.asked = Some((i, want));
                return Some((i, want));
            }
        }
    }

    /// How many rows the candidate `next_claim` named leased.
    pub fn got(&mut self, got: i64) {
        let (i, want) = self.asked.take().expect("got() without next_claim()");
        self.budget -= got;
        if let Some(left) = self.project_left.get_mut(&self.projects[i]) {
            *left -= got;
        }
        if got == want {
            self.filled.push(i);
        }
    }
}

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
        (RunOutcome::Deferred { until, .. }, _) => Decision {
            state: SubTaskState::RetryWaiting,
            ready_at: Some((*until).max(now)),
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

    fn limits(max_running: u32, max_running_per_project: u32) -> RunLimits {
        RunLimits {
            max_running,
            max_running_per_project,
        }
    }

    fn projects(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    impl ShareOut {
        fn over(mut self, projects: Vec<String>) -> ShareOut {
            self.candidates(projects);
            self
        }
    }

    /// What each candidate got, leasing from the rows it has ready.
    fn share(mut share: ShareOut, ready: &[i64]) -> Vec<i64> {
        let mut left = ready.to_vec();
        let mut got = vec![0; ready.len()];
        while let Some((i, want)) = share.next_claim() {
            let n = want.min(left[i]);
            left[i] -= n;
            got[i] += n;
            share.got(n);
        }
        got
    }

    #[test]
    fn equal_shares_in_turn_and_what_a_task_cannot_use_goes_on() {
        let s = ShareOut::new(limits(1000, 1000), 30, &[])
            .map(|s| s.over(projects(&["p", "p", "p"])))
            .unwrap();
        // A third each in turn; what the small task can't use goes to the task after it.
        assert_eq!(share(s, &[100, 2, 100]), [10, 2, 18]);
    }

    #[test]
    fn tasks_that_filled_their_share_take_the_rest_in_another_pass() {
        let s = ShareOut::new(limits(1000, 1000), 30, &[])
            .map(|s| s.over(projects(&["p", "p", "p"])))
            .unwrap();
        // 10, 10, then the third could take 10 but has 3: the 7 left go to the first two.
        assert_eq!(share(s, &[100, 100, 3]), [14, 13, 3]);
    }

    #[test]
    fn running_limits_bound_the_budget() {
        assert!(
            ShareOut::new(limits(10, 10), 5, &[("p".into(), 10)])
                .map(|s| s.over(projects(&["p"])))
                .is_none()
        );
        let s = ShareOut::new(limits(100, 4), 50, &[("p".into(), 1)])
            .unwrap()
            .over(projects(&["p", "q"]));
        assert_eq!(
            share(s, &[100, 100]),
            [3, 4],
            "4 per project, and p runs one already"
        );
        let s = ShareOut::new(limits(5, 100), 50, &[])
            .map(|s| s.over(projects(&["p", "q"])))
            .unwrap();
        assert_eq!(share(s, &[100, 100]), [3, 2], "5 running at most");
    }

    #[test]
    fn the_last_allowed_expiry_abandons() {
        let limit = i64::from(taskd_store::LEASE_EXPIRIES_BEFORE_FAILURE);
        assert!(!abandons(0));
        assert!(!abandons(limit - 2));
        assert!(abandons(limit - 1));
    }
}
