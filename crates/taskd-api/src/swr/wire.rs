//! SWR instance jobs on the wire: the one place mapping the task model to `JobDetail`
//! (every field a string, times with microseconds).
//!
//! | engine task state | `status` | the `status` filter selects |
//! |---|---|---|
//! | initializing | `Initializing` | initializing |
//! | waiting | `Creating` | waiting |
//! | processing, stopping | `Running` | processing |
//! | succeeded | `Success` | succeeded |
//! | failed, partially_succeeded, stopped | `Failed` | failed |
//!
//! (An operation has one sub-task and no stop in any dialect, so stopping, stopped and
//! partially_succeeded don't occur for SWR jobs.)

use serde_json::{Value, json};
use taskd_core::TaskState;
use taskd_store::OpRecord;

use crate::wire_time::format_iso_micros;

pub fn status(state: TaskState) -> &'static str {
    match state {
        TaskState::Initializing => "Initializing",
        TaskState::Waiting => "Creating",
        TaskState::Processing | TaskState::Stopping => "Running",
        TaskState::Succeeded => "Success",
        TaskState::Failed | TaskState::PartiallySucceeded | TaskState::Stopped => "Failed",
    }
}

/// The `status` query word → the state it selects; `None` for an unknown word.
pub fn parse_status(word: &str) -> Option<TaskState> {
    Some(match word {
        "Creating" => TaskState::Waiting,
        "Initializing" => TaskState::Initializing,
        "Running" => TaskState::Processing,
        "Failed" => TaskState::Failed,
        "Success" => TaskState::Succeeded,
        _ => return None,
    })
}

/// One `JobDetail`: `resource_id` is the operation's target, `resource_name` its name,
/// `reason` the failure the worker reported.
pub fn job(rec: &OpRecord) -> Value {
    let task = &rec.task;
    let sub = rec.sub_task.as_ref();
    let reason = if task.state.is_finished() && task.state != TaskState::Succeeded {
        sub.and_then(|s| s.error_msg.clone())
            .or_else(|| task.state_detail.clone())
            .unwrap_or_default()
    } else {
        String::new()
    };
    json!({
        "id": task.id.to_string(),
        "instance_id": task.operation.as_ref().map(|o| o.instance_id.clone()).unwrap_or_default(),
        "resource_id": sub.map(|s| s.target.clone()).unwrap_or_default(),
        "resource_name": task.name,
        "type": task.kind,
        "status": status(task.state),
        "reason": reason,
        "created_at": format_iso_micros(task.created_at),
        "updated_at": format_iso_micros(task.updated_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_select_what_they_show() {
        for word in ["Creating", "Initializing", "Running", "Failed", "Success"] {
            let state = parse_status(word).unwrap();
            assert_eq!(status(state), word);
        }
        assert_eq!(parse_status("running"), None);
        assert_eq!(parse_status("Deleted"), None);
    }
}
