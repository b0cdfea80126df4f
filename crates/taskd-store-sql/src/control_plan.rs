//! The decision half of a per-target control op (stop / retry / confirm with `targets`),
//! shared by the SQL backends so that they differ only in how they look sub-tasks up
//! and write them.

use std::collections::{BTreeMap, HashMap};

use taskd_core::{ControlOp, Progress, SubTaskState};
use taskd_store::TargetOutcome;

/// What a per-target op will do, decided from one read of the named sub-tasks.
#[derive(Debug, PartialEq, Eq)]
pub struct TargetPlan {
    /// One entry per requested target, in request order.
    pub outcomes: Vec<(String, TargetOutcome)>,
    /// Sub-task ids to move, grouped by the state they were read in: `(from, to, ids)`.
    /// Each write must be guarded by `from`.
    pub moves: Vec<(SubTaskState, SubTaskState, Vec<i64>)>,
}

impl TargetPlan {
    /// How many sub-tasks the plan moves.
    pub fn moved(&self) -> usize {
        self.moves.iter().map(|(_, _, ids)| ids.len()).sum()
    }
}

/// Decides the op for each of `targets`, given what the task holds for them (`found`:
/// target → sub-task id and state), and moves `progress` accordingly. A target named
/// twice is applied once and reported twice, alike.
pub fn plan_targets(
    op: ControlOp,
    targets: Vec<String>,
    found: &HashMap<String, (i64, SubTaskState)>,
    progress: &mut Progress,
) -> TargetPlan {
    let mut outcomes = Vec::with_capacity(targets.len());
    let mut seen: HashMap<String, TargetOutcome> = HashMap::new();
    let mut moves: BTreeMap<SubTaskState, Vec<i64>> = BTreeMap::new();
    for target in targets {
        if let Some(outcome) = seen.get(&target) {
            outcomes.push((target, *outcome));
            continue;
        }
        let outcome = match found.get(&target) {
            None => TargetOutcome::NotInTask,
            Some(&(id, from)) => match op.sub_task_target(from) {
                None => TargetOutcome::StateRefused(from),
                Some(to) => {
                    moves.entry(from).or_default().push(id);
                    progress.move_n(from, to, 1);
                    TargetOutcome::Applied
                }
            },
        };
        seen.insert(target.clone(), outcome);
        outcomes.push((target, outcome));
    }
    let moves = moves
        .into_iter()
        .filter_map(|(from, ids)| op.sub_task_target(from).map(|to| (from, to, ids)))
        .collect();
    TargetPlan { outcomes, moves }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_apply_once_and_report_twice() {
        let found: HashMap<String, (i64, SubTaskState)> = [
            ("a".to_string(), (1, SubTaskState::Waiting)),
            ("b".to_string(), (2, SubTaskState::Succeeded)),
        ]
        .into();
        let mut progress = Progress::waiting(1);
        progress.add(SubTaskState::Succeeded, 1);
        let targets = ["a", "ghost", "b", "a"].map(String::from).to_vec();
        let plan = plan_targets(ControlOp::Stop, targets, &found, &mut progress);
        assert_eq!(
            plan.outcomes,
            vec![
                ("a".into(), TargetOutcome::Applied),
                ("ghost".into(), TargetOutcome::NotInTask),
                (
                    "b".into(),
                    TargetOutcome::StateRefused(SubTaskState::Succeeded)
                ),
                ("a".into(), TargetOutcome::Applied),
            ]
        );
        assert_eq!(
            plan.moves,
            vec![(SubTaskState::Waiting, SubTaskState::Stopped, vec![1])]
        );
        assert_eq!(plan.moved(), 1);
        assert_eq!(
            (progress.waiting, progress.stopped, progress.succeeded),
            (0, 1, 1)
        );
    }
}
