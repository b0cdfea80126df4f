//! DMS RabbitMQ background tasks on the wire: the one place mapping the task model to
//! `ListBackgroundTasksRespTasks` (every field a string).
//!
//! | engine task state | `status` |
//! |---|---|
//! | initializing, waiting | `CREATED` |
//! | processing, stopping | `EXECUTING` |
//! | succeeded | `SUCCESS` |
//! | failed, partially_succeeded | `FAILED` |
//! | stopped | `CANCELLED` |
//!
//! `DELETED` is never shown: a deleted task is gone.

use serde_json::{Value, json};
use taskd_core::TaskState;
use taskd_store::OpRecord;

use crate::wire_time::format_iso_millis;

pub fn status(state: TaskState) -> &'static str {
    match state {
        TaskState::Initializing | TaskState::Waiting => "CREATED",
        TaskState::Processing | TaskState::Stopping => "EXECUTING",
        TaskState::Succeeded => "SUCCESS",
        TaskState::Failed | TaskState::PartiallySucceeded => "FAILED",
        TaskState::Stopped => "CANCELLED",
    }
}

/// One background task. `params` is the operation's JSON document serialised into a
/// string (`"{}"` when it has none); `name` is the operation's type.
pub fn background_task(rec: &OpRecord) -> Value {
    let task = &rec.task;
    let op = task.operation.as_ref();
    let params = task
        .document_json
        .as_deref()
        .and_then(|d| serde_json::from_str::<Value>(d).ok())
        .map(|v| v.to_string())
        .unwrap_or_else(|| "{}".to_owned());
    json!({
        "id": task.id.to_string(),
        "name": task.kind,
        "user_name": op.and_then(|o| o.user_name.clone()).unwrap_or_default(),
        "user_id": op.and_then(|o| o.user_id.clone()).unwrap_or_default(),
        "params": params,
        "status": status(task.state),
        "created_at": format_iso_millis(task.created_at),
        "updated_at": format_iso_millis(task.updated_at),
    })
}

/// The list envelope (also the answer of show): `task_count` is a string.
pub fn envelope(count: i64, items: &[OpRecord]) -> Value {
    json!({
        "task_count": count.to_string(),
        "tasks": items.iter().map(background_task).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_status() {
        use TaskState::*;
        for (state, word) in [
            (Initializing, "CREATED"),
            (Waiting, "CREATED"),
            (Processing, "EXECUTING"),
            (Stopping, "EXECUTING"),
            (Succeeded, "SUCCESS"),
            (Failed, "FAILED"),
            (PartiallySucceeded, "FAILED"),
            (Stopped, "CANCELLED"),
        ] {
            assert_eq!(status(state), word, "{state:?}");
        }
    }
}
