//! The conformance suite: the behaviour every [`Store`] backend must show, written once.
//!
//! Each behaviour is a `pub async fn(Arc<dyn Store>)` that gets a fresh, empty store and
//! panics on the first difference. A backend instantiates the whole suite with one line
//! in its integration tests:
//!
//! ```ignore
//! // tests/it/main.rs of a backend crate (needs tokio with `macros` and `rt-multi-thread`)
//! async fn fresh() -> (MyStore, impl Sized) { /* a new empty store + what keeps it alive */ }
//! taskd_store::store_conformance_tests!(fresh());
//! ```
//!
//! New store behaviour lands here first, so every backend is held to it.
//!
//! Besides the per-call expectations, the checks after every mutation
//! ([`assert_task_consistent`], [`assert_list_consistent`]) hold the two invariants the
//! counters promise: a task's progress counters equal the states of the sub-tasks one can
//! page through, and a listing's `count` equals the number of tasks one can page through
//! (with and without each filter).
//!
//! The suite drives state only through the trait: control ops, and claims, heartbeats and
//! results as an executor would (`run`), so it reaches every state.

mod channel;
mod control;
mod credentials;
mod devices;
mod files;
mod legacy;
mod nodes;
mod operations;
mod ota;
mod run;
mod sub_tasks;
mod tasks;
mod text;

use std::collections::BTreeSet;

use taskd_core::{
    ControlOp, Id, NewSubTask, NewTask, Progress, SubTask, SubTaskState, Task, TaskScope,
    TaskState, Timestamp,
};

use crate::{
    ClaimParams, ClaimedSubTask, Page, PageRequest, RunLimits, Store, SubTaskListParams,
    TaskControlOutcome, TaskControlParams, TaskFilter, TaskInsertParams, TaskListParams,
};

pub use channel::*;
pub use control::*;
pub use credentials::*;
pub use devices::*;
pub use files::*;
pub use legacy::*;
pub use nodes::*;
pub use operations::*;
pub use ota::*;
pub use run::*;
pub use sub_tasks::*;
pub use tasks::*;
pub use text::*;

/// Instantiates every conformance test as a `#[tokio::test]` in the calling module.
///
/// `$make` is an expression evaluating to a future of `(store, guard)`: a fresh, empty
/// store and a value that must outlive it (a temp dir, a test database handle). It is
/// evaluated once per test. The calling crate needs `tokio` (macros, rt-multi-thread).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            credential_round_trip,
            credential_other_project_conflicts,
            project_ensure_is_idempotent,
            check_writable_round_trip,
            task_insert_round_trip,
            task_insert_initial_state,
            task_ids_are_monotonic,
            task_insert_failure_writes_nothing,
            task_get_is_scoped,
            task_list_pagination,
            task_list_filters_and_counts,
            task_list_scope_isolation,
            sub_task_list_paging_and_filters,
            sub_task_list_scoping,
            control_stop_whole_task,
            control_stop_initializing_task,
            control_confirm_whole_task,
            control_per_target,
            control_stop_every_target_of_a_waiting_task,
            control_refused_by_task_state,
            control_not_found,
            control_concurrent_calls_keep_counters,
            task_delete_finished_only,
            files_round_trip_and_limit,
            files_are_scoped,
            large_task_round_trip,
            run_claim_and_report_round_trip,
            run_claim_waits_for_schedule_confirm_kind_and_project,
            run_confirm_before_schedule_waits_for_it,
            run_claims_are_fair_between_tasks,
            run_claims_respect_running_limits,
            run_failures_retry_by_policy,
            run_deferred_results_wait_without_using_retries,
            run_leases_expire_and_fence_late_results,
            run_a_batch_judges_each_result_on_its_own,
            run_stop_takes_the_lease_away,
            run_results_are_fenced_by_project,
            run_concurrent_claims_never_double_lease,
            run_maintenance_is_bounded,
            run_repeatedly_expiring_leases_fail_the_sub_task,
            run_one_leader_at_a_time,
            device_round_trip_and_update,
            device_gateways,
            device_freeze_rules,
            device_list_filters_and_paging,
            devices_are_scoped,
            groups_crud_and_limits,
            group_members_and_resolution,
            legacy_apps_and_tokens,
            legacy_rate_windows,
            legacy_device_attributes,
            legacy_tasks_round_trip_and_list,
            legacy_deadline_times_out_unfinished,
            ops_window_gates_claims,
            ops_list_filters_and_instance_owner,
            purge_finished_keeps_counts,
            text_with_nul_is_refused_and_writes_nothing,
            text_lookups_by_nul_find_nothing,
            text_control_characters_round_trip,
            channel_logins_span_scopes,
            channel_secret_resets_reach_logins,
            channel_sessions_open_replace_and_close,
            channel_frozen_devices_and_sessions,
            channel_sessions_close_node,
            channel_sessions_open_in_one_batch,
            channel_versions,
            channel_shadow_desired_and_reported,
            channel_shadow_refusals_write_nothing,
            channel_messages_round_trip,
            channel_messages_expire_by_maintenance,
            channel_messages_pending_cap,
            channel_device_delete_takes_its_channel_rows,
            nodes_heartbeats_and_reaping_end_dead_nodes_sessions,
            nodes_mail_round_trip_order_expiry_and_limits,
            nodes_mailbox_is_bounded,
            ota_packages_round_trip_list_and_delete,
            ota_packages_limit_per_scope,
            ota_packages_refuse_nul_text,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let (store, guard) = $make.await;
                let store: ::std::sync::Arc<dyn $crate::Store> = ::std::sync::Arc::new(store);
                $crate::conformance::$name(store).await;
                drop(guard);
            }
        )*

        /// A suite function missing from the list above would never run: this fails
        /// naming it (and any listed name that is no suite function).
        #[test]
        fn conformance_list_names_every_suite_function() {
            $crate::conformance::assert_lists_every_suite_function(&[$(stringify!($name)),*]);
        }
    };
}

/// The suite functions of the conformance sources (`src/conformance.rs` and
/// `src/conformance/*.rs` of this crate), read from the source tree the tests run on.
/// A suite function is a `pub async fn` whose one parameter is an `Arc<dyn Store>`;
/// helpers take other parameters.
pub fn suite_functions_on_disk() -> Vec<String> {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("conformance.rs")];
    let dir = src.join("conformance");
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    let mut names = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        names.extend(suite_functions(&text));
    }
    names.sort();
    names
}

/// The suite functions declared in one source text (see [`suite_functions_on_disk`]):
/// each line that starts with `pub async fn`, its parameters read up to the `)`.
pub fn suite_functions(source: &str) -> Vec<String> {
    const DECL: &str = "pub async fn ";
    let mut names = Vec::new();
    let mut at = 0;
    for line in source.split_inclusive('\n') {
        let start = at;
        at += line.len();
        let Some(decl) = line.trim_start().strip_prefix(DECL) else {
            continue;
        };
        // The declaration may go on over the next lines: read on in `source`.
        let rest = &source[start + line.len() - decl.len()..];
        let (Some(open), Some(close)) = (rest.find('('), rest.find(')')) else {
            continue;
        };
        if close < open {
            continue;
        }
        let name = rest[..open].trim();
        let params: String = rest[open + 1..close]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let params = params.trim_end_matches(',');
        let is_suite = !params.contains(',')
            && params.split_once(':').is_some_and(|(_, ty)| {
                ty.trim_start_matches("::")
                    .trim_start_matches("std::sync::")
                    == "Arc<dynStore>"
            });
        if is_suite {
            names.push(name.to_owned());
        }
    }
    names
}

/// Panics naming every suite function missing from `listed` (the names
/// [`store_conformance_tests!`] instantiates) and every listed name that is none.
pub fn assert_lists_every_suite_function(listed: &[&str]) {
    let defined: BTreeSet<String> = suite_functions_on_disk().into_iter().collect();
    let listed: BTreeSet<String> = listed.iter().map(|n| (*n).to_owned()).collect();
    let unlisted: Vec<&String> = defined.difference(&listed).collect();
    let undefined: Vec<&String> = listed.difference(&defined).collect();
    assert!(
        unlisted.is_empty() && undefined.is_empty(),
        "store_conformance_tests! (crates/taskd-store/src/conformance.rs) must list every \
         suite function: missing {unlisted:?}; listed but no suite function {undefined:?}"
    );
}

// ---- fixtures --------------------------------------------------------------------------

/// The suite's "now": any fixed instant; tests add to it.
pub const T0: Timestamp = Timestamp(1_700_000_000_000);

pub fn at(ms: i64) -> Timestamp {
    T0.plus_millis(ms)
}

pub fn scope(project: &str, instance: &str) -> TaskScope {
    TaskScope::new(project, instance)
}

/// A task with only the required fields set.
pub fn new_task(scope: &TaskScope, name: &str) -> NewTask {
    NewTask {
        scope: scope.clone(),
        app_id: None,
        name: name.to_owned(),
        kind: "firmwareUpgrade".to_owned(),
        mode: None,
        need_confirm: false,
        ext_info_json: None,
        targets_json: None,
        targets_filter_json: None,
        document_json: None,
        document_source: None,
        schedule_at: None,
        retry: None,
        operation: None,
    }
}

/// Sub-tasks for `targets`, without input.
pub fn sub_tasks_for(targets: &[&str]) -> Vec<NewSubTask> {
    targets
        .iter()
        .map(|t| NewSubTask {
            target: (*t).to_owned(),
            input_json: None,
        })
        .collect()
}

/// Like [`insert_with_targets`], but the task waits for a confirm (`need_confirm`): its
/// sub-tasks are held until a confirm releases them, so tests choose which ones run.
pub async fn insert_held(
    store: &dyn Store,
    scope: &TaskScope,
    name: &str,
    targets: &[&str],
    now: Timestamp,
) -> Task {
    let mut task = new_task(scope, name);
    task.need_confirm = true;
    let task = insert(store, task, sub_tasks_for(targets), now).await;
    check(store, scope, task.id).await;
    task
}

/// Limits no test reaches.
pub const NO_LIMITS: RunLimits = RunLimits {
    max_running: 1_000_000,
    max_running_per_project: 1_000_000,
};

/// Claims up to `max` claimable sub-tasks of `kind` in `project` as executor `worker`,
/// leased for 60 s.
pub async fn claim(
    store: &dyn Store,
    project: &str,
    kind: &str,
    max: u32,
    now: Timestamp,
) -> Vec<ClaimedSubTask> {
    store
        .sub_task_claim(ClaimParams {
            worker_id: "worker-1".to_owned(),
            project_id: Some(project.to_owned()),
            kinds: vec![kind.to_owned()],
            max,
            lease_until: now.plus_millis(60_000),
            limits: NO_LIMITS,
            now,
        })
        .await
        .expect("sub_task_claim")
}

/// Claims every claimable `firmwareUpgrade` sub-task of `project` (the kind of
/// [`new_task`]).
pub async fn claim_all(store: &dyn Store, project: &str, now: Timestamp) -> Vec<ClaimedSubTask> {
    let mut all = Vec::new();
    loop {
        let got = claim(store, project, "firmwareUpgrade", 500, now).await;
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

/// `n` sub-tasks with targets `dev-00000`, `dev-00001`, ...
pub fn numbered_sub_tasks(n: usize) -> Vec<NewSubTask> {
    (0..n)
        .map(|i| NewSubTask {
            target: target_name(i),
            input_json: None,
        })
        .collect()
}

pub fn target_name(i: usize) -> String {
    format!("dev-{i:05}")
}

pub async fn insert(
    store: &dyn Store,
    task: NewTask,
    sub_tasks: Vec<NewSubTask>,
    now: Timestamp,
) -> Task {
    store
        .task_insert(TaskInsertParams {
            task,
            sub_tasks,
            now,
        })
        .await
        .expect("task_insert")
}

/// Inserts a task named `name` in `scope` with `targets`, then checks the invariants.
pub async fn insert_with_targets(
    store: &dyn Store,
    scope: &TaskScope,
    name: &str,
    targets: &[&str],
    now: Timestamp,
) -> Task {
    let task = insert(store, new_task(scope, name), sub_tasks_for(targets), now).await;
    check(store, scope, task.id).await;
    task
}

pub const fn first_page(limit: u32) -> PageRequest {
    PageRequest {
        marker: Id::MAX,
        offset: 0,
        limit,
    }
}

pub const fn page(marker: Id, offset: u32, limit: u32) -> PageRequest {
    PageRequest {
        marker,
        offset,
        limit,
    }
}

pub async fn list(
    store: &dyn Store,
    scope: &TaskScope,
    filter: TaskFilter,
    page: PageRequest,
) -> Page<Task> {
    store
        .task_list(&TaskListParams {
            scope: scope.clone(),
            filter,
            page,
        })
        .await
        .expect("task_list")
}

pub async fn sub_list(
    store: &dyn Store,
    scope: &TaskScope,
    task_id: Id,
    state: Option<SubTaskState>,
    target: Option<&str>,
    page: PageRequest,
) -> Option<Page<SubTask>> {
    store
        .sub_task_list(&SubTaskListParams {
            scope: scope.clone(),
            task_id,
            state,
            target: target.map(str::to_owned),
            page,
        })
        .await
        .expect("sub_task_list")
}

pub async fn control(
    store: &dyn Store,
    scope: &TaskScope,
    task_id: Id,
    op: ControlOp,
    targets: Option<&[&str]>,
    now: Timestamp,
) -> TaskControlOutcome {
    store
        .task_control(TaskControlParams {
            scope: scope.clone(),
            task_id,
            op,
            targets: targets.map(|ts| ts.iter().map(|t| (*t).to_owned()).collect()),
            now,
        })
        .await
        .expect("task_control")
}

/// The task and target outcomes of an applied op; panics on any other outcome.
pub fn applied(outcome: TaskControlOutcome) -> (Task, Vec<(String, crate::TargetOutcome)>) {
    match outcome {
        TaskControlOutcome::Applied { task, targets } => (task, targets),
        other => panic!("expected Applied, got {other:?}"),
    }
}

// ---- invariants --------------------------------------------------------------------------

/// Both invariants for one task and its scope, after a mutation.
pub async fn check(store: &dyn Store, scope: &TaskScope, task_id: Id) -> Task {
    let task = assert_task_consistent(store, scope, task_id).await;
    assert_list_consistent(store, scope).await;
    task
}

/// Pages through all sub-tasks of a task (by marker, `page_size` at a time) and checks
/// every page's `count` against `expected_count`, id order and ownership.
pub async fn all_sub_tasks(
    store: &dyn Store,
    scope: &TaskScope,
    task_id: Id,
    state: Option<SubTaskState>,
    page_size: u32,
    expected_count: i64,
) -> Vec<SubTask> {
    let mut out: Vec<SubTask> = Vec::new();
    let mut marker = Id::MAX;
    loop {
        let p = sub_list(
            store,
            scope,
            task_id,
            state,
            None,
            page(marker, 0, page_size),
        )
        .await
        .expect("the task exists");
        assert_eq!(
            p.count, expected_count,
            "sub-task count of task {task_id} (state filter {state:?})"
        );
        for s in &p.items {
            assert_eq!(
                s.task_id, task_id,
                "sub-task {} listed under another task",
                s.id
            );
            assert!(
                s.id < marker,
                "sub-task ids must decrease through the pages"
            );
            if let Some(st) = state {
                assert_eq!(s.state, st, "state filter returned {:?}", s.state);
            }
            marker = s.id;
        }
        let done = p.items.len() < page_size as usize;
        out.extend(p.items);
        if done {
            return out;
        }
    }
}

/// "The task's progress counters equal the actual sub-task states": reads every sub-task
/// through `sub_task_list` (and, for small tasks, through each state filter) and counts.
pub async fn assert_task_consistent(store: &dyn Store, scope: &TaskScope, task_id: Id) -> Task {
    let task = store
        .task_get(scope, task_id)
        .await
        .expect("task_get")
        .unwrap_or_else(|| panic!("task {task_id} not found in {scope:?}"));
    let p = task.progress;
    let small = p.total <= 1_000;
    let page_size = if small { 7 } else { 1_000 };
    let subs = all_sub_tasks(store, scope, task_id, None, page_size, p.total).await;

    let mut actual = Progress::default();
    for s in &subs {
        actual.add(s.state, 1);
        assert!(
            s.id > task_id,
            "sub-task {} not above its task {task_id}",
            s.id
        );
    }
    assert_eq!(
        actual, p,
        "progress counters of task {task_id} vs its sub-tasks"
    );
    let targets: BTreeSet<&str> = subs.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(
        targets.len(),
        subs.len(),
        "duplicate targets in task {task_id}"
    );

    if small {
        for st in SubTaskState::ALL {
            let n = all_sub_tasks(store, scope, task_id, Some(st), 3, p.get(st)).await;
            assert_eq!(n.len() as i64, p.get(st), "sub-tasks listed in {st:?}");
        }
    }
    // A finished task's state is where its counters lead (derive is stable there).
    assert_eq!(
        task.state.derive(&p),
        task.state,
        "task {task_id} is {:?} but its counters derive otherwise: {p:?}",
        task.state
    );
    task
}

/// "A listing's count equals the number of tasks one can page through", unfiltered and
/// for every state, kind and app filter present in the scope. Returns the tasks, newest
/// first.
pub async fn assert_list_consistent(store: &dyn Store, scope: &TaskScope) -> Vec<Task> {
    let all = all_tasks(store, scope, TaskFilter::default()).await;
    for t in &all {
        assert_eq!(&t.scope, scope, "task {} listed in another scope", t.id);
    }
    let mut filters: Vec<TaskFilter> = TaskState::ALL
        .into_iter()
        .map(|s| TaskFilter {
            state: Some(s),
            ..TaskFilter::default()
        })
        .collect();
    let kinds: BTreeSet<&String> = all.iter().map(|t| &t.kind).collect();
    for kind in kinds {
        filters.push(TaskFilter {
            kind: Some(kind.clone()),
            ..TaskFilter::default()
        });
    }
    let apps: BTreeSet<&String> = all.iter().filter_map(|t| t.app_id.as_ref()).collect();
    for app in apps {
        filters.push(TaskFilter {
            app_id: Some(app.clone()),
            ..TaskFilter::default()
        });
    }
    for filter in filters {
        let expected: Vec<Id> = all
            .iter()
            .filter(|t| matches(t, &filter))
            .map(|t| t.id)
            .collect();
        let got: Vec<Id> = all_tasks(store, scope, filter.clone())
            .await
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(got, expected, "tasks listed with {filter:?}");
    }
    all
}

/// Whether `task` passes `filter` (the reference the listings are compared with).
pub fn matches(task: &Task, filter: &TaskFilter) -> bool {
    filter
        .app_id
        .as_ref()
        .is_none_or(|a| task.app_id.as_ref() == Some(a))
        && filter.kind.as_ref().is_none_or(|k| &task.kind == k)
        && filter.state.is_none_or(|s| task.state == s)
}

/// Pages through a listing by marker, 3 at a time, checking each page's count against the
/// number of tasks paged through in the end.
pub async fn all_tasks(store: &dyn Store, scope: &TaskScope, filter: TaskFilter) -> Vec<Task> {
    let mut out: Vec<Task> = Vec::new();
    let mut counts = BTreeSet::new();
    let mut marker = Id::MAX;
    loop {
        let p = list(store, scope, filter.clone(), page(marker, 0, 3)).await;
        counts.insert(p.count);
        for t in &p.items {
            assert!(t.id < marker, "task ids must decrease through the pages");
            assert!(matches(t, &filter), "task {} doesn't pass {filter:?}", t.id);
            marker = t.id;
        }
        let done = p.items.len() < 3;
        out.extend(p.items);
        if done {
            break;
        }
    }
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        vec![out.len() as i64],
        "page.count vs the tasks paged through with {filter:?}"
    );
    out
}

/// Shared by the submodules.
fn ids(tasks: &[Task]) -> Vec<Id> {
    tasks.iter().map(|t| t.id).collect()
}

fn sub_ids(subs: &[SubTask]) -> Vec<Id> {
    subs.iter().map(|s| s.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_functions_are_the_store_only_async_fns() {
        // Spelled with a stand-in, or the scan of this very file would find them.
        let source = "
            PUB_ASYNC_FN a_suite_fn(store: Arc<dyn Store>) {}
            PUB_ASYNC_FN spread_out(
                store: std::sync::Arc<dyn Store>,
            ) {}
            PUB_ASYNC_FN helper(store: &dyn Store, now: Timestamp) -> Task {}
            PUB_ASYNC_FN two(store: Arc<dyn Store>, n: u32) {}
            async fn private(store: Arc<dyn Store>) {}
            pub fn sync_helper(store: Arc<dyn Store>) {}
            /// A doc line naming PUB_ASYNC_FN in_a_comment(store: Arc<dyn Store>)
        "
        .replace("PUB_ASYNC_FN", "pub async fn");
        assert_eq!(suite_functions(&source), ["a_suite_fn", "spread_out"]);
    }

    #[test]
    fn the_sources_hold_the_suite() {
        let all = suite_functions_on_disk();
        assert!(all.contains(&"credential_round_trip".to_owned()), "{all:?}");
        assert!(
            !all.contains(&"claim".to_owned()),
            "a helper is no suite function"
        );
    }
}
