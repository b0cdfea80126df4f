//! The worker protocol (`docs/worker-protocol.md`), defined once for both sides: the
//! server's handlers (`taskd-api`, `native/worker.rs`) read the requests and build the
//! responses with these types, and `taskd worker` sends and reads the same ones. Here are
//! the shapes, the paths, the defaults, the limits and the rules a request must keep
//! (`check`, with the message the server answers 400 `TASKD.000006` with). Nothing here
//! knows HTTP handling, the engine or the store: the server maps what passed to the
//! engine, and refuses text no store keeps (NUL) itself.
//!
//! A crate of its own, not a module of `taskd-core` (which knows no wire format) nor of
//! `taskd-api` (which would make the worker depend on the server's HTTP stack).

use std::collections::BTreeMap;
use std::fmt;

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
/// A heartbeat's `progress` upper bound (percent).
pub const MAX_PROGRESS: u8 = 100;
/// Limits of a result, in characters (not bytes).
pub const MAX_OUTPUT_CHARS: usize = 4096;
pub const MAX_ERROR_CODE_CHARS: usize = 64;
pub const MAX_ERROR_MSG_CHARS: usize = 1024;
/// Characters of a sub-task id: lowercase hexadecimal digits.
pub const SUB_TASK_ID_CHARS: usize = 24;

/// `TASKD.010409`: the lease is lost (heartbeat answers 409 with it).
pub const LEASE_LOST_CODE: &str = "TASKD.010409";
/// `ResultAck::reason` of a result whose lease is lost.
pub const REASON_LEASE_LOST: &str = "lease_lost";
/// `ResultAck::reason` of an entry that breaks a rule (its `error_msg` says which).
pub const REASON_INVALID: &str = "invalid";

/// A request that breaks a rule of the protocol; the text says which (the server's
/// 400 `TASKD.000006` message, and a refused result's `error_msg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub String);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Invalid {}

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

/// `[A-Za-z0-9_.:/@-]`
pub fn is_worker_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '@' | '-')
}

/// 1-128 characters of [`is_worker_id_char`].
pub fn is_valid_worker_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_WORKER_ID_CHARS && id.chars().all(is_worker_id_char)
}

/// `^[A-Za-z0-9_]{1,64}$`
pub fn is_valid_task_type(t: &str) -> bool {
    (1..=MAX_TASK_TYPE_CHARS).contains(&t.len())
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// 24 lowercase hexadecimal digits: the form of every sub-task id taskd issues.
pub fn is_valid_sub_task_id(id: &str) -> bool {
    id.len() == SUB_TASK_ID_CHARS && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The rule of a sub-task id a worker quotes, as the server words it.
pub fn check_sub_task_id(id: &str) -> Result<(), Invalid> {
    if is_valid_sub_task_id(id) {
        Ok(())
    } else {
        Err(invalid(
            "sub_task_id must be 24 lowercase hexadecimal digits.",
        ))
    }
}

/// `lease_seconds` of a claim or a heartbeat.
pub fn check_lease_seconds(seconds: u64) -> Result<(), Invalid> {
    if (u64::from(LEASE_SECONDS_MIN)..=u64::from(LEASE_SECONDS_MAX)).contains(&seconds) {
        Ok(())
    } else {
        Err(invalid(format!(
            "lease_seconds must be between {LEASE_SECONDS_MIN} and {LEASE_SECONDS_MAX}."
        )))
    }
}

/// `/taskd/v1/{project_id}/{rest}`.
pub fn project_path(project_id: &str, rest: &str) -> String {
    format!("/taskd/v1/{}/{rest}", encode_segment(project_id))
}

/// `POST /taskd/v1/{project_id}/claims`
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
    #[serde(default = "version_1", deserialize_with = "null_is_version_1")]
    pub protocol: u32,
    pub worker_id: String,
    pub task_types: Vec<String>,
    #[serde(default = "default_max", deserialize_with = "null_is_default_max")]
    pub max: u32,
    #[serde(
        default = "default_lease_seconds",
        deserialize_with = "null_is_default_lease_seconds"
    )]
    pub lease_seconds: u64,
    #[serde(default, deserialize_with = "null_is_zero")]
    pub wait_seconds: u64,
}

impl ClaimRequest {
    /// The claim's rules, in the order the server checks them.
    pub fn check(&self) -> Result<(), Invalid> {
        if self.protocol != PROTOCOL {
            // A version-1 worker would read every document as null: refuse it loudly.
            return Err(invalid(format!(
                "this server speaks worker protocol {PROTOCOL} (a claim names \"protocol\": {PROTOCOL}; \
                 documents come once per task in \"tasks\"): upgrade the worker."
            )));
        }
        if !is_valid_worker_id(&self.worker_id) {
            return Err(invalid(format!(
                "worker_id must be 1-{MAX_WORKER_ID_CHARS} letters, digits or _.:/@-"
            )));
        }
        if self.task_types.is_empty() || self.task_types.len() > MAX_TASK_TYPES {
            return Err(invalid(format!(
                "task_types must name 1-{MAX_TASK_TYPES} task types."
            )));
        }
        if let Some(bad) = self.task_types.iter().find(|t| !is_valid_task_type(t)) {
            return Err(invalid(format!(
                "task type {bad:?} must be 1-{MAX_TASK_TYPE_CHARS} letters, digits or '_'."
            )));
        }
        if !(1..=MAX_BATCH).contains(&(self.max as usize)) {
            return Err(invalid(format!("max must be between 1 and {MAX_BATCH}.")));
        }
        check_lease_seconds(self.lease_seconds)?;
        if self.wait_seconds > u64::from(MAX_WAIT_SECONDS) {
            return Err(invalid(format!(
                "wait_seconds must be between 0 and {MAX_WAIT_SECONDS}."
            )));
        }
        Ok(())
    }
}

fn version_1() -> u32 {
    1
}

fn default_max() -> u32 {
    1
}

fn default_lease_seconds() -> u64 {
    u64::from(DEFAULT_LEASE_SECONDS)
}

// An explicit `null` means the default, as an absent field does.

fn null_is_version_1<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_else(version_1))
}

fn null_is_default_max<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_else(default_max))
}

fn null_is_default_lease_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_else(default_lease_seconds))
}

fn null_is_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::deserialize(d)?.unwrap_or_default())
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
    /// Not in a version-2 entry (the server leaves it out: it is in the claim's `tasks`);
    /// `taskd worker` puts it back for its command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<Value>,
    /// The sub-task's own input (a task-file row as column → cell).
    #[serde(default)]
    pub input: Option<Value>,
    pub lease_expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub attempt: u32,
    #[serde(
        default = "default_lease_seconds",
        deserialize_with = "null_is_default_lease_seconds"
    )]
    pub lease_seconds: u64,
    /// 0-100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u8>,
}

impl HeartbeatRequest {
    /// The heartbeat's rules, in the order the server checks them.
    pub fn check(&self) -> Result<(), Invalid> {
        if self.progress.is_some_and(|p| p > MAX_PROGRESS) {
            return Err(invalid(format!(
                "progress must be between 0 and {MAX_PROGRESS}."
            )));
        }
        check_lease_seconds(self.lease_seconds)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    pub lease_expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultsRequest {
    pub results: Vec<SubTaskResult>,
}

/// A results batch as the server reads it: each entry on its own ([`ResultEntry`]), so
/// one that is no valid result is refused alone and costs the others nothing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResultsBatch {
    pub results: Vec<Value>,
}

impl ResultsBatch {
    /// The batch's own rule (only this refuses a batch whole).
    pub fn check(&self) -> Result<(), Invalid> {
        if self.results.is_empty() || self.results.len() > MAX_BATCH {
            return Err(invalid(format!("results must hold 1-{MAX_BATCH} entries.")));
        }
        Ok(())
    }
}

/// One entry of a results batch, read leniently so that [`ResultEntry::check`] can say
/// what is wrong with it in the protocol's words rather than serde's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ResultEntry {
    pub sub_task_id: String,
    pub attempt: u32,
    pub status: String,
    pub output: Option<String>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
}

impl ResultEntry {
    /// The result the entry is, by the rules of a result (status, lengths; the sub-task
    /// id's form is checked apart, [`check_sub_task_id`]).
    pub fn check(self) -> Result<SubTaskResult, Invalid> {
        let outcome = match self.status.as_str() {
            "succeeded" => {
                if self
                    .output
                    .as_ref()
                    .is_some_and(|o| o.chars().count() > MAX_OUTPUT_CHARS)
                {
                    return Err(invalid(format!(
                        "output is longer than {MAX_OUTPUT_CHARS} characters."
                    )));
                }
                Outcome::Succeeded {
                    output: self.output,
                }
            }
            "failed" => {
                let code = self.error_code.unwrap_or_default();
                if code.is_empty() || code.chars().count() > MAX_ERROR_CODE_CHARS {
                    return Err(invalid(format!(
                        "a failed result needs an error_code of 1-{MAX_ERROR_CODE_CHARS} characters."
                    )));
                }
                if self
                    .error_msg
                    .as_ref()
                    .is_some_and(|m| m.chars().count() > MAX_ERROR_MSG_CHARS)
                {
                    return Err(invalid(format!(
                        "error_msg is longer than {MAX_ERROR_MSG_CHARS} characters."
                    )));
                }
                Outcome::Failed {
                    error_code: code,
                    error_msg: self.error_msg,
                }
            }
            other => {
                return Err(invalid(format!(
                    "status must be succeeded or failed, not {other:?}."
                )));
            }
        };
        Ok(SubTaskResult {
            sub_task_id: self.sub_task_id,
            attempt: self.attempt,
            outcome,
        })
    }
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

impl ResultAck {
    pub fn accepted(sub_task_id: String) -> ResultAck {
        ResultAck {
            sub_task_id,
            accepted: true,
            reason: None,
            error_msg: None,
        }
    }

    pub fn lease_lost(sub_task_id: String) -> ResultAck {
        ResultAck {
            sub_task_id,
            accepted: false,
            reason: Some(REASON_LEASE_LOST.to_owned()),
            error_msg: None,
        }
    }

    pub fn invalid(sub_task_id: String, why: Invalid) -> ResultAck {
        ResultAck {
            sub_task_id,
            accepted: false,
            reason: Some(REASON_INVALID.to_owned()),
            error_msg: Some(why.0),
        }
    }
}

/// The error envelope of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error_code: String,
    pub error_msg: String,
}

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
        let nulls: ClaimRequest =
            serde_json::from_value(json!({"protocol": null, "worker_id": "w",
            "task_types": ["t"], "max": null, "lease_seconds": null, "wait_seconds": null}))
            .unwrap();
        assert_eq!(nulls, claim);
        let hb: HeartbeatRequest = serde_json::from_value(json!({"attempt": 3})).unwrap();
        assert_eq!((hb.lease_seconds, hb.progress), (60, None));
        assert_eq!(
            serde_json::to_value(&hb).unwrap(),
            json!({"attempt": 3, "lease_seconds": 60})
        );
    }

    fn claim(body: Value) -> ClaimRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn claims_keep_the_documented_rules() {
        let ok = json!({"protocol": 2, "worker_id": "w", "task_types": ["t"]});
        assert_eq!(claim(ok.clone()).check(), Ok(()));
        let with = |field: &str, value: Value| {
            let mut body = ok.clone();
            body[field] = value;
            claim(body)
        };
        for (bad, says) in [
            (
                claim(json!({"worker_id": "w", "task_types": ["t"]})),
                "protocol 2",
            ),
            (with("protocol", json!(1)), "protocol 2"),
            (with("worker_id", json!("")), "worker_id"),
            (with("worker_id", json!("a b")), "worker_id"),
            (with("worker_id", json!("w".repeat(129))), "worker_id"),
            (with("task_types", json!([])), "task_types"),
            (with("task_types", json!(vec!["t"; 21])), "task_types"),
            (with("task_types", json!(["a-b"])), "\"a-b\""),
            (with("max", json!(0)), "max"),
            (with("max", json!(501)), "max"),
            (with("lease_seconds", json!(4)), "lease_seconds"),
            (with("lease_seconds", json!(3601)), "lease_seconds"),
            (with("wait_seconds", json!(61)), "wait_seconds"),
        ] {
            let why = bad.check().expect_err(says);
            assert!(why.0.contains(says), "{bad:?}: {why}");
        }
        for good in [
            with("worker_id", json!("w".repeat(128))),
            with("task_types", json!(vec!["t"; 20])),
            with("max", json!(500)),
            with("lease_seconds", json!(5)),
            with("lease_seconds", json!(3600)),
            with("wait_seconds", json!(60)),
        ] {
            assert_eq!(good.check(), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn heartbeats_and_results_keep_the_documented_rules() {
        let hb = |v: Value| {
            serde_json::from_value::<HeartbeatRequest>(v)
                .unwrap()
                .check()
        };
        assert_eq!(hb(json!({"attempt": 1, "progress": 100})), Ok(()));
        assert!(hb(json!({"attempt": 1, "progress": 101})).is_err());
        assert!(hb(json!({"attempt": 1, "lease_seconds": 4})).is_err());

        let entry = |v: Value| serde_json::from_value::<ResultEntry>(v).unwrap().check();
        let id = "0194f3c2a1b2000000000002";
        assert_eq!(
            entry(
                json!({"sub_task_id": id, "attempt": 1, "status": "succeeded", "output": "x".repeat(4096)})
            ),
            Ok(SubTaskResult {
                sub_task_id: id.into(),
                attempt: 1,
                outcome: Outcome::Succeeded {
                    output: Some("x".repeat(4096))
                }
            })
        );
        for (bad, says) in [
            (
                json!({"status": "succeeded", "output": "x".repeat(4097)}),
                "output",
            ),
            (json!({"status": "failed"}), "error_code"),
            (
                json!({"status": "failed", "error_code": "c".repeat(65)}),
                "error_code",
            ),
            (
                json!({"status": "failed", "error_code": "E", "error_msg": "m".repeat(1025)}),
                "error_msg",
            ),
            (json!({"status": "done"}), "status"),
        ] {
            let mut body = bad.clone();
            body["sub_task_id"] = json!(id);
            body["attempt"] = json!(1);
            let why = entry(body).expect_err(says);
            assert!(why.0.contains(says), "{bad}: {why}");
        }
        assert_eq!(check_sub_task_id(id), Ok(()));
        for bad in ["0194F3C2A1B2000000000002", "0194f3c2a1b200000000000", "x"] {
            assert!(check_sub_task_id(bad).is_err(), "{bad}");
        }
        let batch = |n: usize| {
            ResultsBatch {
                results: vec![json!({}); n],
            }
            .check()
        };
        assert!(batch(0).is_err() && batch(501).is_err());
        assert_eq!(batch(500), Ok(()));
    }

    #[test]
    fn acks_serialize_as_documented() {
        assert_eq!(
            serde_json::to_value(ResultsResponse {
                results: vec![
                    ResultAck::accepted("a".into()),
                    ResultAck::lease_lost("b".into()),
                    ResultAck::invalid("c".into(), Invalid("why".into())),
                ]
            })
            .unwrap(),
            json!({"results": [
                {"sub_task_id": "a", "accepted": true},
                {"sub_task_id": "b", "accepted": false, "reason": "lease_lost"},
                {"sub_task_id": "c", "accepted": false, "reason": "invalid", "error_msg": "why"},
            ]})
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
