//! The one place the legacy dialect maps taskd's model to its words and fields: task
//! status (`wait|processing|failed|success|stop`), sub-task status
//! (`wait|processing|fail|success|stop` — `fail`, not `failed`, as the docs spell it),
//! operation types, `OperationInfo` and `SubOperationInfo`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use taskd_core::{SubTask, SubTaskState, TaskState};
use taskd_store::{LegacyTask, TIMEOUT_ERROR_CODE};

use crate::wire_time::format_compact;

/// The legacy operation types and the task kinds (executor types) they run as.
pub const OPERATION_TYPES: [(&str, &str); 2] = [
    ("firmware_upgrade", "firmwareUpgrade"),
    ("software_upgrade", "softwareUpgrade"),
];

pub fn task_status(state: TaskState) -> &'static str {
    match state {
        TaskState::Initializing | TaskState::Waiting => "wait",
        TaskState::Processing | TaskState::Stopping => "processing",
        TaskState::Succeeded => "success",
        TaskState::Failed | TaskState::PartiallySucceeded => "failed",
        TaskState::Stopped => "stop",
    }
}

/// The task states a legacy `operationStatus` word stands for; `None`: not a word.
pub fn task_states(word: &str) -> Option<Vec<TaskState>> {
    let states: Vec<TaskState> = TaskState::ALL
        .into_iter()
        .filter(|s| task_status(*s) == word)
        .collect();
    (!states.is_empty()).then_some(states)
}

pub fn sub_task_status(state: SubTaskState) -> &'static str {
    match state {
        SubTaskState::Waiting | SubTaskState::RetryWaiting => "wait",
        SubTaskState::Processing => "processing",
        SubTaskState::Succeeded => "success",
        SubTaskState::Failed => "fail",
        SubTaskState::Stopped | SubTaskState::Removed => "stop",
    }
}

/// The sub-task states a `subOperationStatus` word stands for; `None`: not a word.
pub fn sub_task_states(word: &str) -> Option<Vec<SubTaskState>> {
    let states: Vec<SubTaskState> = SubTaskState::ALL
        .into_iter()
        .filter(|s| sub_task_status(*s) == word)
        .collect();
    (!states.is_empty()).then_some(states)
}

/// `OperateDevices`, as given at creation and echoed back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperateDevices {
    pub device_groups: Option<Vec<String>>,
    pub device_type: Option<String>,
    pub model: Option<String>,
    pub manufacturer_name: Option<String>,
    pub devices: Option<Vec<String>>,
}

/// `OperatePolicy`, as given at creation (defaults filled in) and echoed back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatePolicy {
    pub execute_type: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub retry_type: Option<bool>,
    pub retry_times: Option<i64>,
}

/// What the legacy dialect keeps in a task's `ext_info_json`: the request's targets,
/// policy and file id, so reads map back without a copy of task data.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyDocument {
    pub file_id: String,
    pub targets: OperateDevices,
    pub policy: OperatePolicy,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StaResult {
    total: i64,
    wait: i64,
    processing: i64,
    success: i64,
    fail: i64,
    stop: i64,
    timeout: i64,
}

/// `OperationInfo` (`QueryUpgradeTaskOutDTO`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationInfo {
    operation_id: String,
    create_time: String,
    start_time: Option<String>,
    stop_time: Option<String>,
    operate_type: String,
    targets: OperateDevices,
    policy: OperatePolicy,
    status: &'static str,
    sta_result: StaResult,
    extend_para: Value,
}

fn is_final(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::Succeeded
            | TaskState::Failed
            | TaskState::PartiallySucceeded
            | TaskState::Stopped
    )
}

pub fn document(t: &LegacyTask) -> LegacyDocument {
    t.task
        .ext_info_json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok())
        .unwrap_or_else(|| LegacyDocument {
            file_id: String::new(),
            targets: OperateDevices::default(),
            policy: OperatePolicy::default(),
        })
}

pub fn operation_info(t: &LegacyTask) -> OperationInfo {
    let task = &t.task;
    let doc = document(t);
    let p = task.progress;
    let start_time = match task.schedule_at {
        Some(at) => format_compact(at),
        None => format_compact(task.created_at),
    };
    OperationInfo {
        operation_id: task.id.to_string(),
        create_time: format_compact(task.created_at),
        start_time: Some(start_time),
        stop_time: is_final(task.state).then(|| format_compact(task.updated_at)),
        operate_type: t.operation.operate_type.clone(),
        targets: doc.targets,
        policy: doc.policy,
        status: task_status(task.state),
        sta_result: StaResult {
            total: p.total - p.removed,
            wait: p.waiting + p.retry_waiting,
            processing: p.processing,
            success: p.succeeded,
            fail: p.failed - t.timed_out,
            stop: p.stopped,
            timeout: t.timed_out,
        },
        extend_para: serde_json::json!({ "fileId": doc.file_id }),
    }
}

/// `SubOperationInfo`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubOperationInfo {
    sub_operation_id: String,
    create_time: String,
    start_time: Option<String>,
    stop_time: Option<String>,
    operate_type: String,
    device_id: String,
    status: &'static str,
    detail_info: String,
    extend_info: Value,
}

pub fn sub_operation_info(t: &LegacyTask, s: &SubTask) -> SubOperationInfo {
    let finished = matches!(
        s.state,
        SubTaskState::Succeeded
            | SubTaskState::Failed
            | SubTaskState::Stopped
            | SubTaskState::Removed
    );
    let timed_out = s.error_code.as_deref() == Some(TIMEOUT_ERROR_CODE);
    let detail_info = match s.state {
        SubTaskState::Failed if timed_out => "timeout".to_owned(),
        SubTaskState::Failed => s.error_msg.clone().unwrap_or_else(|| "fail".to_owned()),
        SubTaskState::Succeeded => s.output.clone().unwrap_or_else(|| "success".to_owned()),
        other => sub_task_status(other).to_owned(),
    };
    SubOperationInfo {
        sub_operation_id: s.id.to_string(),
        create_time: format_compact(t.task.created_at),
        start_time: (s.attempts > 0).then(|| format_compact(s.updated_at)),
        stop_time: finished.then(|| format_compact(s.updated_at)),
        operate_type: t.operation.operate_type.clone(),
        device_id: s.target.clone(),
        status: sub_task_status(s.state),
        detail_info,
        extend_info: serde_json::json!({
            // As stored: the legacy API has no codes of its own for a sub-task's failure, so
            // it shows taskd's (a worker's, `TIMEOUT`, `LEASE_EXPIRED`, and an engine
            // `SubTaskErrorKind` name, though no legacy task type has a built-in executor).
            "errorCode": s.error_code,
            "attempts": s.attempts,
            "progress": s.progress,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_word_and_back() {
        for s in TaskState::ALL {
            assert!(task_states(task_status(s)).unwrap().contains(&s));
        }
        for s in SubTaskState::ALL {
            assert!(sub_task_states(sub_task_status(s)).unwrap().contains(&s));
        }
        assert_eq!(task_status(TaskState::Failed), "failed");
        assert_eq!(sub_task_status(SubTaskState::Failed), "fail");
        assert!(task_states("fail").is_none());
        assert!(sub_task_states("failed").is_none());
    }
}
