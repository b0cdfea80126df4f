//! IoTDA instance tasks on the wire: the one place mapping the task model to
//! `InstanceTask` (field names, status words, times).
//!
//! | engine task state | `status` |
//! |---|---|
//! | initializing, waiting | `PENDING` |
//! | processing, stopping | `RUNNING`; `PENDING` while nothing runs (a retried task waiting for a worker or its window) |
//! | succeeded | `SUCCESS` |
//! | failed, partially_succeeded, stopped | `FAILED` |

use serde_json::{Value, json};
use taskd_core::{SubTaskState, Task, TaskState};
use taskd_store::OpRecord;

use crate::wire_time::format_iso_millis;

/// `status_detail` is at most this long (OpenAPI).
const MAX_STATUS_DETAIL: usize = 1028;

pub fn status(state: TaskState) -> &'static str {
    match state {
        TaskState::Initializing | TaskState::Waiting => "PENDING",
        TaskState::Processing | TaskState::Stopping => "RUNNING",
        TaskState::Succeeded => "SUCCESS",
        TaskState::Failed | TaskState::PartiallySucceeded | TaskState::Stopped => "FAILED",
    }
}

/// The status of a task, from its state and its counters: an active task none of whose
/// sub-tasks runs is still pending.
pub fn task_status(task: &Task) -> &'static str {
    match task.state {
        TaskState::Processing | TaskState::Stopping if task.progress.processing == 0 => "PENDING",
        state => status(state),
    }
}

/// 0-100: what the worker last reported for the current (or failed) run, 0 while
/// waiting to run, 100 once succeeded.
pub fn progress(rec: &OpRecord) -> u8 {
    if rec.task.state == TaskState::Succeeded {
        return 100;
    }
    match rec.sub_task.as_ref() {
        Some(s) if matches!(s.state, SubTaskState::Processing | SubTaskState::Failed) => {
            s.progress.unwrap_or(0)
        }
        _ => 0,
    }
}

fn status_detail(rec: &OpRecord) -> Option<String> {
    let sub = rec.sub_task.as_ref();
    let text = match sub {
        Some(s) if s.state == SubTaskState::Failed || rec.task.state == TaskState::Failed => s
            .error_msg
            .clone()
            .or_else(|| rec.task.state_detail.clone()),
        _ => rec.task.state_detail.clone(),
    }?;
    Some(text.chars().take(MAX_STATUS_DETAIL).collect())
}

/// `InstanceTask` (list) or the `ShowInstanceTask` body (`with_progress`).
pub fn instance_task(rec: &OpRecord, with_progress: bool) -> Value {
    let task = &rec.task;
    let op = task.operation.as_ref();
    let started = rec.sub_task.as_ref().and_then(|s| s.started_at);
    let ended = task.state.is_finished().then_some(task.updated_at);
    let target_config = op
        .and_then(|o| o.target_config_json.as_deref())
        .and_then(|t| serde_json::from_str::<Value>(t).ok())
        .unwrap_or(Value::Null);
    let operate_window = match op.and_then(|o| o.window) {
        Some(w) => {
            let (start, end) = w.format();
            json!({ "start_time": start, "end_time": end })
        }
        None => Value::Null,
    };
    let mut v = json!({
        "task_id": task.id.to_string(),
        "type": task.kind,
        "status": task_status(task),
        "status_detail": status_detail(rec),
        "create_time": format_iso_millis(task.created_at),
        "start_time": started.map(format_iso_millis),
        "end_time": ended.map(format_iso_millis),
        "target_config": target_config,
        "operate_window": operate_window,
    });
    if with_progress {
        v["progress"] = json!(progress(rec));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_status() {
        use TaskState::*;
        for (state, word) in [
            (Initializing, "PENDING"),
            (Waiting, "PENDING"),
            (Processing, "RUNNING"),
            (Stopping, "RUNNING"),
            (Succeeded, "SUCCESS"),
            (Failed, "FAILED"),
            (PartiallySucceeded, "FAILED"),
            (Stopped, "FAILED"),
        ] {
            assert_eq!(status(state), word, "{state:?}");
        }
    }
}
