//! The worker protocol: claim, heartbeat, results. Shapes and limits are those of
//! `docs/worker-protocol.md`; everything is validated before the engine is called.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use taskd_core::Id;
use taskd_engine::ClaimRequest;
use taskd_store::{ClaimedSubTask, ReportOutcome, RunOutcome, RunResult};

use super::{NativeError, NativeProject, Path};
use crate::AppState;
use crate::wire_time::format_iso_millis;

/// The protocol version a claim must name: version 2 hands a task's document out once
/// per claim (`tasks`), not once per sub-task as version 1 did.
const PROTOCOL: u32 = 2;
const MAX_CLAIM: u32 = 500;
const MAX_TASK_TYPES: usize = 20;
const MAX_RESULTS: usize = 500;
const LEASE_SECONDS: std::ops::RangeInclusive<u64> = 5..=3600;
const MAX_WAIT_SECONDS: u64 = 60;
const MAX_OUTPUT: usize = 4096;
const MAX_ERROR_CODE: usize = 64;
const MAX_ERROR_MSG: usize = 1024;

pub(crate) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, NativeError> {
    serde_json::from_slice(body).map_err(|e| NativeError::MalformedBody(e.to_string()))
}

fn is_worker_id(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:/@-".contains(&b))
}

fn is_task_type(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn lease(seconds: Option<u64>) -> Result<Duration, NativeError> {
    let s = seconds.unwrap_or(60);
    if !LEASE_SECONDS.contains(&s) {
        return Err(NativeError::InvalidInput(
            "lease_seconds must be between 5 and 3600.".into(),
        ));
    }
    Ok(Duration::from_secs(s))
}

/// The JSON value a stored document is, or its text when it isn't JSON (never the case
/// for documents taskd stored itself).
fn json_value(text: Option<&str>) -> Value {
    match text {
        None => Value::Null,
        Some(t) => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_owned())),
    }
}

/// A claim entry. The task's document is not in it: it is in the claim's `tasks`, once
/// per task however many of its sub-tasks the claim leases.
fn claimed_json(c: &ClaimedSubTask) -> Value {
    json!({
        "sub_task_id": c.id.to_string(),
        "attempt": c.attempt,
        "task_id": c.task.id.to_string(),
        "task_type": c.task.kind,
        "task_name": c.task.name,
        "project_id": c.task.scope.project_id,
        // An operation's instance, not its scope's key; and its service.
        "instance_id": c.task.op_instance_id.as_deref().unwrap_or(&c.task.scope.instance_id),
        "service": c.task.service.map(|s| s.as_str()),
        "app_id": c.task.app_id,
        "target": c.target,
        "input": json_value(c.input_json.as_deref()),
        "lease_expires_at": format_iso_millis(c.lease_until),
    })
}

#[derive(Deserialize)]
pub(crate) struct ClaimBody {
    protocol: Option<u32>,
    worker_id: String,
    task_types: Vec<String>,
    max: Option<u32>,
    lease_seconds: Option<u64>,
    wait_seconds: Option<u64>,
}

/// What a claim body asks for, checked; nothing is claimed unless this succeeds.
pub(crate) fn claim_request(b: ClaimBody, project_id: String) -> Result<ClaimRequest, NativeError> {
    if b.protocol != Some(PROTOCOL) {
        // A version-1 worker would read every document as null: refuse it loudly.
        return Err(NativeError::InvalidInput(format!(
            "this server speaks worker protocol {PROTOCOL} (a claim names \"protocol\": {PROTOCOL}; \
             documents come once per task in \"tasks\"): upgrade the worker."
        )));
    }
    if !is_worker_id(&b.worker_id) {
        return Err(NativeError::InvalidInput(
            "worker_id must be 1-128 letters, digits or _.:/@-".into(),
        ));
    }
    if b.task_types.is_empty() || b.task_types.len() > MAX_TASK_TYPES {
        return Err(NativeError::InvalidInput(format!(
            "task_types must name 1-{MAX_TASK_TYPES} task types."
        )));
    }
    if let Some(bad) = b.task_types.iter().find(|t| !is_task_type(t)) {
        return Err(NativeError::InvalidInput(format!(
            "task type {bad:?} must be 1-64 letters, digits or '_'."
        )));
    }
    let max = b.max.unwrap_or(1);
    if !(1..=MAX_CLAIM).contains(&max) {
        return Err(NativeError::InvalidInput(format!(
            "max must be between 1 and {MAX_CLAIM}."
        )));
    }
    let lease = lease(b.lease_seconds)?;
    let wait = b.wait_seconds.unwrap_or(0);
    if wait > MAX_WAIT_SECONDS {
        return Err(NativeError::InvalidInput(format!(
            "wait_seconds must be between 0 and {MAX_WAIT_SECONDS}."
        )));
    }
    Ok(ClaimRequest {
        worker_id: b.worker_id,
        project_id: Some(project_id),
        kinds: b.task_types,
        max,
        lease,
        wait: Duration::from_secs(wait),
    })
}

pub async fn claim(
    State(state): State<AppState>,
    NativeProject(project_id): NativeProject,
    body: Bytes,
) -> Result<Json<Value>, NativeError> {
    let request = claim_request(parse(&body)?, project_id)?;
    let claimed = state.engine.claim(request).await?;
    let mut tasks = serde_json::Map::new();
    for c in &claimed {
        tasks
            .entry(c.task.id.to_string())
            .or_insert_with(|| json!({ "document": json_value(c.task.document_json.as_deref()) }));
    }
    let items: Vec<Value> = claimed.iter().map(claimed_json).collect();
    Ok(Json(json!({ "tasks": tasks, "sub_tasks": items })))
}

#[derive(Deserialize)]
pub(crate) struct HeartbeatBody {
    attempt: u32,
    lease_seconds: Option<u64>,
    progress: Option<u8>,
}

/// A sub-task id as a worker quotes it: malformed unless 24 lowercase hex digits. A
/// well-formed id taskd never issued (above its id range) is `None`: no lease the worker
/// holds, answered like any lost lease.
fn sub_task_id(s: &str) -> Result<Option<Id>, NativeError> {
    if s.len() != 24 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(NativeError::InvalidInput(
            "sub_task_id must be 24 lowercase hexadecimal digits.".into(),
        ));
    }
    Ok(Id::parse_exact(s))
}

/// The lease a heartbeat body asks for, its progress checked.
pub(crate) fn heartbeat_lease(b: &HeartbeatBody) -> Result<Duration, NativeError> {
    if b.progress.is_some_and(|p| p > 100) {
        return Err(NativeError::InvalidInput(
            "progress must be between 0 and 100.".into(),
        ));
    }
    lease(b.lease_seconds)
}

pub async fn heartbeat(
    State(state): State<AppState>,
    NativeProject(project_id): NativeProject,
    Path((_, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, NativeError> {
    let id_value = sub_task_id(&id)?;
    let b: HeartbeatBody = parse(&body)?;
    let lease = heartbeat_lease(&b)?;
    let Some(id_value) = id_value else {
        return Err(NativeError::LeaseLost(id));
    };
    match state
        .engine
        .heartbeat(Some(project_id), id_value, b.attempt, lease, b.progress)
        .await?
    {
        Some(until) => Ok(Json(
            json!({ "lease_expires_at": format_iso_millis(until) }),
        )),
        None => Err(NativeError::LeaseLost(id)),
    }
}

/// Entries are read one by one: an entry that is not a valid result is refused on its
/// own, the others are applied.
#[derive(Deserialize)]
pub(crate) struct ResultsBody {
    results: Vec<Value>,
}

#[derive(Deserialize)]
struct ResultItem {
    sub_task_id: String,
    attempt: u32,
    status: String,
    output: Option<String>,
    error_code: Option<String>,
    error_msg: Option<String>,
}

/// `Ok(None)` for a well-formed id taskd never issued (that result is lease-lost); `Err`
/// says why the entry is not a result taskd can record.
pub(crate) fn run_result(entry: Value) -> Result<Option<RunResult>, String> {
    let item: ResultItem = serde_json::from_value(entry).map_err(|e| e.to_string())?;
    let sub_task_id = sub_task_id(&item.sub_task_id).map_err(|e| e.to_string())?;
    let outcome = match item.status.as_str() {
        "succeeded" => {
            if item
                .output
                .as_ref()
                .is_some_and(|o| o.chars().count() > MAX_OUTPUT)
            {
                return Err(format!("output is longer than {MAX_OUTPUT} characters."));
            }
            no_nul("output", item.output.as_deref())?;
            RunOutcome::Succeeded {
                output: item.output,
            }
        }
        "failed" => {
            let code = item.error_code.unwrap_or_default();
            if code.is_empty() || code.chars().count() > MAX_ERROR_CODE {
                return Err(format!(
                    "a failed result needs an error_code of 1-{MAX_ERROR_CODE} characters."
                ));
            }
            let msg = item.error_msg.unwrap_or_default();
            if msg.chars().count() > MAX_ERROR_MSG {
                return Err(format!(
                    "error_msg is longer than {MAX_ERROR_MSG} characters."
                ));
            }
            no_nul("error_code", Some(&code))?;
            no_nul("error_msg", Some(&msg))?;
            RunOutcome::Failed {
                error_code: code,
                error_msg: msg,
            }
        }
        other => {
            return Err(format!(
                "status must be succeeded or failed, not {other:?}."
            ));
        }
    };
    Ok(sub_task_id.map(|sub_task_id| RunResult {
        sub_task_id,
        attempt: item.attempt,
        outcome,
        // Workers report outcomes only; registry effects are taskd's own executor's.
        effect: None,
    }))
}

/// No store keeps NUL (`taskd_store::text`); `taskd worker` replaces it in what a
/// command printed.
fn no_nul(field: &str, value: Option<&str>) -> Result<(), String> {
    if value.is_some_and(taskd_store::text::has_nul) {
        return Err(format!(
            "{field} must not contain a NUL character (U+0000)."
        ));
    }
    Ok(())
}

/// A results body's entries, each with the sub-task id it quotes and its check: a result
/// to record, `None` for an id taskd never issued, or why it is refused.
pub(crate) type CheckedResults = Vec<(String, Result<Option<RunResult>, String>)>;

/// Checks a results body: 1-500 entries, each on its own, since one that taskd cannot
/// record is refused in its own answer and never costs the others theirs.
pub(crate) fn checked_results(b: ResultsBody) -> Result<CheckedResults, NativeError> {
    if b.results.is_empty() || b.results.len() > MAX_RESULTS {
        return Err(NativeError::InvalidInput(format!(
            "results must hold 1-{MAX_RESULTS} entries."
        )));
    }
    Ok(b.results
        .into_iter()
        .map(|entry| {
            let id = entry["sub_task_id"].as_str().unwrap_or_default().to_owned();
            (id, run_result(entry))
        })
        .collect())
}

pub async fn results(
    State(state): State<AppState>,
    NativeProject(project_id): NativeProject,
    body: Bytes,
) -> Result<Json<Value>, NativeError> {
    let checked = checked_results(parse(&body)?)?;
    let valid: Vec<RunResult> = checked
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().cloned().flatten())
        .collect();
    let mut outcomes = if valid.is_empty() {
        Vec::new()
    } else {
        state.engine.report(Some(project_id), valid).await?
    }
    .into_iter();
    let lease_lost =
        |id: String| json!({ "sub_task_id": id, "accepted": false, "reason": "lease_lost" });
    let items: Vec<Value> = checked
        .into_iter()
        .map(|(id, checked)| match checked {
            Err(why) => json!({
                "sub_task_id": id, "accepted": false, "reason": "invalid", "error_msg": why
            }),
            Ok(None) => lease_lost(id),
            Ok(Some(_)) => match outcomes.next() {
                Some(ReportOutcome::Accepted(_)) => json!({ "sub_task_id": id, "accepted": true }),
                Some(ReportOutcome::LeaseLost) | None => lease_lost(id),
            },
        })
        .collect();
    Ok(Json(json!({ "results": items })))
}
