//! The worker protocol's handlers: claim, heartbeat, results. Shapes, limits and rules
//! are `taskd_worker_protocol`'s (`docs/worker-protocol.md`), shared with `taskd worker`;
//! here requests are checked against them before the engine is called, and the engine's
//! answers are mapped into the protocol's responses.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::de::DeserializeOwned;
use serde_json::Value;
use taskd_core::Id;
use taskd_engine::ClaimRequest;
use taskd_store::{ClaimedSubTask, ReportOutcome, RunOutcome, RunResult};
use taskd_worker_protocol as protocol;
use taskd_worker_protocol::{
    ClaimResponse, ClaimedTask, HeartbeatRequest, HeartbeatResponse, Invalid, Outcome, ResultAck,
    ResultEntry, ResultsBatch, ResultsResponse,
};

use super::{NativeError, NativeProject, Path};
use crate::AppState;
use crate::wire_time::format_iso_millis;

pub(crate) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, NativeError> {
    serde_json::from_slice(body).map_err(|e| NativeError::MalformedBody(e.to_string()))
}

impl From<Invalid> for NativeError {
    fn from(why: Invalid) -> Self {
        NativeError::InvalidInput(why.0)
    }
}

/// The JSON value a stored document is, or its text when it isn't JSON (never the case
/// for documents taskd stored itself).
fn json_value(text: Option<&str>) -> Option<Value> {
    text.map(|t| serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.to_owned())))
}

/// A claim entry. The task's document is not in it: it is in the claim's `tasks`, once
/// per task however many of its sub-tasks the claim leases.
fn claimed_entry(c: &ClaimedSubTask) -> protocol::ClaimedSubTask {
    protocol::ClaimedSubTask {
        sub_task_id: c.id.to_string(),
        attempt: c.attempt,
        task_id: c.task.id.to_string(),
        task_type: c.task.kind.clone(),
        task_name: c.task.name.clone(),
        project_id: c.task.scope.project_id.clone(),
        // An operation's instance, not its scope's key; and its service.
        instance_id: c
            .task
            .op_instance_id
            .clone()
            .unwrap_or_else(|| c.task.scope.instance_id.clone()),
        app_id: c.task.app_id.clone(),
        service: c.task.service.map(|s| s.as_str().to_owned()),
        target: c.target.clone(),
        document: None,
        input: json_value(c.input_json.as_deref()),
        lease_expires_at: format_iso_millis(c.lease_until),
    }
}

/// A claim body checked (`protocol::ClaimRequest::check`) and made the engine's request:
/// what the handler runs before the engine, a function of its own for the fuzz targets.
pub(crate) fn claim_request(
    b: protocol::ClaimRequest,
    project_id: String,
) -> Result<ClaimRequest, NativeError> {
    b.check()?;
    Ok(ClaimRequest {
        worker_id: b.worker_id,
        project_id: Some(project_id),
        kinds: b.task_types,
        max: b.max,
        lease: Duration::from_secs(b.lease_seconds),
        wait: Duration::from_secs(b.wait_seconds),
    })
}

pub async fn claim(
    State(state): State<AppState>,
    NativeProject(project_id): NativeProject,
    body: Bytes,
) -> Result<Json<ClaimResponse>, NativeError> {
    let claimed = state
        .engine
        .claim(claim_request(parse(&body)?, project_id)?)
        .await?;
    let mut tasks = BTreeMap::new();
    for c in &claimed {
        tasks
            .entry(c.task.id.to_string())
            .or_insert_with(|| ClaimedTask {
                document: json_value(c.task.document_json.as_deref()),
            });
    }
    Ok(Json(ClaimResponse {
        tasks,
        sub_tasks: claimed.iter().map(claimed_entry).collect(),
    }))
}

/// A sub-task id as a worker quotes it: malformed unless 24 lowercase hex digits. A
/// well-formed id taskd never issued (above its id range) is `None`: no lease the worker
/// holds, answered like any lost lease.
fn sub_task_id(s: &str) -> Result<Option<Id>, Invalid> {
    protocol::check_sub_task_id(s)?;
    Ok(Id::parse_exact(s))
}

/// A heartbeat body checked, and the lease it asks for.
pub(crate) fn heartbeat_lease(b: &HeartbeatRequest) -> Result<Duration, NativeError> {
    b.check()?;
    Ok(Duration::from_secs(b.lease_seconds))
}

pub async fn heartbeat(
    State(state): State<AppState>,
    NativeProject(project_id): NativeProject,
    Path((_, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<HeartbeatResponse>, NativeError> {
    let id_value = sub_task_id(&id)?;
    let b: HeartbeatRequest = parse(&body)?;
    let lease = heartbeat_lease(&b)?;
    let Some(id_value) = id_value else {
        return Err(NativeError::LeaseLost(id));
    };
    match state
        .engine
        .heartbeat(Some(project_id), id_value, b.attempt, lease, b.progress)
        .await?
    {
        Some(until) => Ok(Json(HeartbeatResponse {
            lease_expires_at: format_iso_millis(until),
        })),
        None => Err(NativeError::LeaseLost(id)),
    }
}

/// `Ok(None)` for a well-formed id taskd never issued (that result is lease-lost); `Err`
/// says why the entry is not a result taskd can record.
fn run_result(entry: Value) -> Result<Option<RunResult>, Invalid> {
    let item: ResultEntry = serde_json::from_value(entry).map_err(|e| Invalid(e.to_string()))?;
    // Worded as the heartbeat's refusal of the same id.
    let sub_task_id = sub_task_id(&item.sub_task_id)
        .map_err(|why| Invalid(NativeError::from(why).to_string()))?;
    let result = item.check()?;
    let outcome = match result.outcome {
        Outcome::Succeeded { output } => {
            no_nul("output", output.as_deref())?;
            RunOutcome::Succeeded { output }
        }
        Outcome::Failed {
            error_code,
            error_msg,
        } => {
            no_nul("error_code", Some(&error_code))?;
            no_nul("error_msg", error_msg.as_deref())?;
            RunOutcome::Failed {
                error_code,
                error_msg: error_msg.unwrap_or_default(),
                output: None,
            }
        }
    };
    Ok(sub_task_id.map(|sub_task_id| RunResult {
        sub_task_id,
        attempt: result.attempt,
        outcome,
        // Workers report outcomes only; registry effects are taskd's own executor's.
        effect: None,
    }))
}

/// No store keeps NUL (`taskd_store::text`); `taskd worker` replaces it in what a
/// command printed.
fn no_nul(field: &str, value: Option<&str>) -> Result<(), Invalid> {
    if value.is_some_and(taskd_store::text::has_nul) {
        return Err(Invalid(format!(
            "{field} must not contain a NUL character (U+0000)."
        )));
    }
    Ok(())
}

/// Each entry of a batch, by the id it quotes: the result to record (`None`: an id taskd
/// never issued, lease-lost), or why it can't be recorded.
pub(crate) type CheckedResults = Vec<(String, Result<Option<RunResult>, Invalid>)>;

/// A results batch checked: the batch's own limits, then each entry on its own (one taskd
/// cannot record is refused in its own answer and never costs the others theirs).
pub(crate) fn checked_results(b: ResultsBatch) -> Result<CheckedResults, NativeError> {
    b.check()?;
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
) -> Result<Json<ResultsResponse>, NativeError> {
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
    let results = checked
        .into_iter()
        .map(|(id, checked)| match checked {
            Err(why) => ResultAck::invalid(id, why),
            Ok(None) => ResultAck::lease_lost(id),
            Ok(Some(_)) => match outcomes.next() {
                Some(ReportOutcome::Accepted(_)) => ResultAck::accepted(id),
                Some(ReportOutcome::LeaseLost) | None => ResultAck::lease_lost(id),
            },
        })
        .collect();
    Ok(Json(ResultsResponse { results }))
}
