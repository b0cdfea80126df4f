//! The JSON shapes of the worker protocol (`docs/worker-protocol.md`), shared by both
//! sides: `taskd worker` sends the requests and reads the responses; the server can
//! deserialize the same types. Only shapes, defaults and limits live here: no HTTP, no
//! validation beyond what serde does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version a claim names. Version 2 hands a task's document out once per
/// claim (`ClaimResponse::tasks`) instead of in every claim entry (version 1).
pub const PROTOCOL: u32 = 2;

/// `worker_id`: at most this many characters of [`is_worker_id_char`].
pub const MAX_WORKER_ID_CHARS: usize = 128;
/// `task_types`: at most this many per claim.
pub const MAX_TASK_TYPES: usize = 20;
/// A task type: 1 to this many characters of `[A-Za-z0-9_]`.
pub const MAX_TASK_TYPE_CHARS: usize = 64;
/// `max` of a claim and the size of a results batch.
pub const MAX_BATCH: usize = 500;
/// `lease_seconds` bounds (claim and heartbeat).
pub const LEASE_SECONDS_MIN: u32 = 5;
pub const LEASE_SECONDS_MAX: u32 = 3600;
pub const DEFAULT_LEASE_SECONDS: u32 = 60;
/// `wait_seconds` upper bound (a claim long-polls at most this long).
pub const MAX_WAIT_SECONDS: u32 = 60;
/// Limits of a result, in characters (not bytes).
pub const MAX_OUTPUT_CHARS: usize = 4096;
pub const MAX_ERROR_CODE_CHARS: usize = 64;
pub const MAX_ERROR_MSG_CHARS: usize = 1024;

/// `[A-Za-z0-9_.:/@-]`
pub fn is_worker_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '@' | '-')
}

/// `^[A-Za-z0-9_]{1,64}$`
pub fn is_valid_task_type(t: &str) -> bool {
    (1..=MAX_TASK_TYPE_CHARS).contains(&t.len())
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `POST /taskd/v1/{project_id}/claims`
/// `/taskd/v1/{project_id}/{rest}`.
pub fn project_path(project_id: &str, rest: &str) -> String {
    format!("/taskd/v1/{}/{rest}", encode_segment(project_id))
}

pub fn claims_path(project_id: &str) -> String {
    format!("/taskd/v1/{}/claims", encode_segment(project_id))
}

/// `POST /taskd/v1/{project_id}/sub-tasks/{sub_task_id}/heartbeat`
pub fn heartbeat_path(project_id: &str, sub_task_id: &str) -> String {
    format!(
        "/taskd/v1/{}/sub-tasks/{}/heartbeat",
        encode_segment(project_id),
        encode_segment(sub_task_id)
    )
}

/// `POST /taskd/v1/{project_id}/results`
pub fn results_path(project_id: &str) -> String {
    format!("/taskd/v1/{}/results", encode_segment(project_id))
}

/// A path parameter encoded as the SDKs do (`quote(v, safe="")`): everything but
/// unreserved characters.
fn encode_segment(segment: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRequest {
    /// [`PROTOCOL`]; a server refuses a claim that does not name the version it speaks
    /// (a claim naming none is version 1).
    #[serde(default = "version_1")]
    pub protocol: u32,
    pub worker_id: String,
    pub task_types: Vec<String>,
    #[serde(default = "default_max")]
    pub max: u32,
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u32,
    #[serde(default)]
    pub wait_seconds: u32,
}

fn version_1() -> u32 {
    1
}

fn default_max() -> u32 {
    1
}

fn default_lease_seconds() -> u32 {
    DEFAULT_LEASE_SECONDS
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimResponse {
    /// The tasks of the claimed sub-tasks, by task id: what they share is sent once.
    #[serde(default)]
    pub tasks: BTreeMap<String, ClaimedTask>,
    /// Version 2 entries carry no `document`: it is their task's, in `tasks`.
    pub sub_tasks: Vec<ClaimedSubTask>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimedTask {
    /// The task's document as the user gave it.
    #[serde(default)]
    pub document: Option<Value>,
}

/// One sub-task leased to the worker, with its task's `document` put back in (a
/// version-1 entry). The worker hands it to its command as JSON on stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimedSubTask {
    pub sub_task_id: String,
    /// 1 on the first run; heartbeats and results quote it.
    pub attempt: u32,
    pub task_id: String,
    pub task_type: String,
    pub task_name: String,
    pub project_id: String,
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub app_id: Option<String>,
    /// An instance operation's service (`iotda-instance`, `rabbitmq`, `swr`).
    #[serde(default)]
    pub service: Option<String>,
    pub target: String,
    /// The task's document as the user gave it.
    #[serde(default)]
    pub document: Option<Value>,
    /// The sub-task's own input (a task-file row as column → cell).
    #[serde(default)]
    pub input: Option<Value>,
    pub lease_expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub attempt: u32,
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u32,
    /// 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub lease_expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultsRequest {
    pub results: Vec<SubTaskResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubTaskResult {
    pub sub_task_id: String,
    pub attempt: u32,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// `status` and the fields that go with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Succeeded {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    },
    Failed {
        error_code: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error_msg: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultsResponse {
    pub results: Vec<ResultAck>,
}

/// The answer to one result, in the order of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultAck {
    pub sub_task_id: String,
    pub accepted: bool,
    /// Why a result was refused: `lease_lost`, or `invalid` (taskd cannot record it,
    /// `error_msg` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_msg: Option<String>,
}

/// The error envelope of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error_code: String,
    pub error_msg: String,
}

/// `TASKD.010409`: the lease is lost (heartbeat answers 409 with it).
pub const LEASE_LOST_CODE: &str = "TASKD.010409";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_serialize_flat_with_a_status_tag() {
        let batch = ResultsRequest {
            results: vec![
                SubTaskResult {
                    sub_task_id: "a".into(),
                    attempt: 1,
                    outcome: Outcome::Succeeded {
                        output: Some("upgraded to 2.1".into()),
                    },
                },
                SubTaskResult {
                    sub_task_id: "b".into(),
                    attempt: 2,
                    outcome: Outcome::Failed {
                        error_code: "DEVICE_OFFLINE".into(),
                        error_msg: Some("device did not answer".into()),
                    },
                },
            ],
        };
        let value = serde_json::to_value(&batch).unwrap();
        assert_eq!(
            value,
            json!({"results": [
                {"sub_task_id": "a", "attempt": 1, "status": "succeeded", "output": "upgraded to 2.1"},
                {"sub_task_id": "b", "attempt": 2, "status": "failed",
                 "error_code": "DEVICE_OFFLINE", "error_msg": "device did not answer"},
            ]})
        );
        let back: ResultsRequest = serde_json::from_value(value).unwrap();
        assert_eq!(back, batch);
        // A failed result needs its code.
        assert!(
            serde_json::from_value::<SubTaskResult>(
                json!({"sub_task_id": "c", "attempt": 1, "status": "failed"})
            )
            .is_err()
        );
    }

    #[test]
    fn the_documented_claim_entry_parses_and_defaults_apply() {
        let sub: ClaimedSubTask = serde_json::from_value(json!({
            "sub_task_id": "0194f3c2a1b2000000000002",
            "attempt": 1,
            "task_id": "0194f3c2a1b2000000000001",
            "task_type": "firmwareUpgrade",
            "task_name": "fw_2_1",
            "project_id": "a1b2c3",
            "instance_id": "",
            "app_id": null,
            "target": "dev-001",
            "document": {"package_ids": ["..."]},
            "input": null,
            "lease_expires_at": "2026-11-23T10:00:00.000Z"
        }))
        .unwrap();
        assert_eq!(sub.attempt, 1);
        assert_eq!(sub.input, None);
        let claim: ClaimRequest =
            serde_json::from_value(json!({"worker_id": "w", "task_types": ["t"]})).unwrap();
        assert_eq!(
            (
                claim.protocol,
                claim.max,
                claim.lease_seconds,
                claim.wait_seconds
            ),
            (1, 1, 60, 0)
        );
        // Version 2: the document once per task, not in the entries.
        let answer: ClaimResponse = serde_json::from_value(json!({
            "tasks": {"0194f3c2a1b2000000000001": {"document": {"package_ids": ["p"]}}},
            "sub_tasks": [{
                "sub_task_id": "0194f3c2a1b2000000000002", "attempt": 1,
                "task_id": "0194f3c2a1b2000000000001", "task_type": "firmwareUpgrade",
                "task_name": "fw", "project_id": "a1b2c3", "target": "dev-001",
                "lease_expires_at": "2026-11-23T10:00:00.000Z"
            }]
        }))
        .unwrap();
        assert_eq!(
            answer.tasks["0194f3c2a1b2000000000001"].document,
            Some(json!({"package_ids": ["p"]}))
        );
        assert_eq!(answer.sub_tasks[0].document, None);
        let hb: HeartbeatRequest = serde_json::from_value(json!({"attempt": 3})).unwrap();
        assert_eq!((hb.lease_seconds, hb.progress), (60, None));
        assert_eq!(
            serde_json::to_value(&hb).unwrap(),
            json!({"attempt": 3, "lease_seconds": 60})
        );
    }

    #[test]
    fn paths_encode_their_parameters() {
        assert_eq!(claims_path("a1b2"), "/taskd/v1/a1b2/claims");
        assert_eq!(
            heartbeat_path("p", "x/y z"),
            "/taskd/v1/p/sub-tasks/x%2Fy%20z/heartbeat"
        );
        assert_eq!(results_path("p"), "/taskd/v1/p/results");
    }

    #[test]
    fn task_types_and_worker_ids() {
        assert!(is_valid_task_type("firmwareUpgrade"));
        assert!(is_valid_task_type("a_1"));
        assert!(!is_valid_task_type(""));
        assert!(!is_valid_task_type("a-b"));
        assert!(!is_valid_task_type(&"a".repeat(65)));
        assert!("host-1/pid-4242".chars().all(is_worker_id_char));
        assert!(!is_worker_id_char(' '));
    }
}
