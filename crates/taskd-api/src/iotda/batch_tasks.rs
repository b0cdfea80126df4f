//! Batch tasks: `/v5/iot/{project_id}/batchtasks[/{task_id}[/retry|/stop|/confirm]]`.

use std::collections::HashSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use taskd_core::{ControlOp, Id, MAX_DOCUMENT_BYTES, NewTask, RetryPolicy, Timestamp};
use taskd_engine::TargetSource;
use taskd_store::{
    PageRequest, SubTaskListParams, TargetOutcome, TaskControlOutcome, TaskDeleteOutcome,
    TaskFilter, TaskListParams,
};

use super::error::IotdaError;
use super::validate::{self as v};
use super::wire::{
    self, BatchTargetResultView, ListBatchTasksView, PageView, ShowBatchTaskView,
    SubTaskStatusFilter, TaskDetailView, TaskView,
};
use super::{IotdaScope, Path};
use crate::AppState;
use crate::query::Query;
use crate::wire_time::parse_compact;

#[derive(Deserialize)]
pub(crate) struct CreateBatchTaskBody {
    app_id: Option<String>,
    task_name: Option<String>,
    task_type: Option<String>,
    task_mode: Option<String>,
    need_confirm: Option<bool>,
    task_ext_info: Option<serde_json::Value>,
    targets: Option<Vec<String>>,
    targets_filter: Option<serde_json::Value>,
    document: Option<serde_json::Value>,
    task_policy: Option<TaskPolicyBody>,
    document_source: Option<String>,
}

#[derive(Deserialize)]
struct TaskPolicyBody {
    schedule_time: Option<String>,
    retry_count: Option<i64>,
    retry_interval: Option<i64>,
}

#[derive(Deserialize, Default)]
struct BatchTargetsBody {
    targets: Option<Vec<String>>,
}

/// JSON syntax errors are "invalid request format" (000008); JSON of the wrong shape
/// (a number where a string belongs) is "invalid input" (000006).
pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, IotdaError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => IotdaError::InvalidInput(e.to_string()),
        _ => IotdaError::MalformedBody(e.to_string()),
    })
}

pub(super) fn invalid(msg: impl Into<String>) -> IotdaError {
    IotdaError::InvalidInput(msg.into())
}

/// Validates a CreateBatchTask body against every IoTDA rule and turns it into the
/// engine's terms. Nothing is written unless this succeeds.
pub(crate) fn new_task(
    scope: taskd_core::TaskScope,
    body: CreateBatchTaskBody,
    now: Timestamp,
) -> Result<(NewTask, TargetSource), IotdaError> {
    let name = body
        .task_name
        .ok_or_else(|| invalid("task_name is required."))?;
    if !v::is_task_name(&name) {
        return Err(invalid(
            "task_name must be 1-128 Chinese characters, letters, digits or underscores.",
        ));
    }
    let kind = body
        .task_type
        .ok_or_else(|| invalid("task_type is required."))?;
    if !v::is_task_type(&kind) {
        return Err(invalid(format!(
            "task_type {kind} is not supported; use one of {}.",
            v::TASK_TYPES.join(", ")
        )));
    }
    if let Some(app_id) = &body.app_id
        && !v::is_app_id(app_id)
    {
        return Err(invalid("app_id must be 1-36 letters, digits, '_' or '-'."));
    }
    if let Some(mode) = &body.task_mode {
        if mode != "GATEWAY" {
            return Err(invalid("task_mode must be GATEWAY."));
        }
        if !v::takes_mode_and_ext_info(&kind) {
            return Err(invalid(format!(
                "task_mode is not supported for task_type {kind}."
            )));
        }
    }
    let ext_info_json = match &body.task_ext_info {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => {
            if !v::takes_mode_and_ext_info(&kind) {
                return Err(invalid(format!(
                    "task_ext_info is not supported for task_type {kind}."
                )));
            }
            let text = value.to_string();
            if text.chars().count() > v::MAX_TASK_EXT_INFO_CHARS {
                return Err(invalid(format!(
                    "task_ext_info must be at most {} characters.",
                    v::MAX_TASK_EXT_INFO_CHARS
                )));
            }
            Some(text)
        }
    };
    let need_confirm = body.need_confirm.unwrap_or(false);
    if need_confirm && !v::is_upgrade(&kind) {
        return Err(invalid(format!(
            "need_confirm is not supported for task_type {kind}."
        )));
    }
    let document_json = match &body.document {
        None | Some(serde_json::Value::Null) => None,
        Some(doc @ serde_json::Value::Object(_)) => {
            let text = doc.to_string();
            if text.len() > MAX_DOCUMENT_BYTES {
                return Err(invalid(format!(
                    "document must be at most {MAX_DOCUMENT_BYTES} bytes of JSON."
                )));
            }
            Some(text)
        }
        Some(_) => return Err(invalid("document must be a JSON object.")),
    };
    if v::is_upgrade(&kind) {
        let doc = body.document.as_ref();
        let ids_ok = doc
            .and_then(|d| d.get("package_ids"))
            .and_then(|p| p.as_array())
            .is_some_and(|a| {
                !a.is_empty()
                    && a.iter()
                        .all(|id| id.as_str().is_some_and(|s| !s.is_empty()))
            });
        let id_ok = doc
            .and_then(|d| d.get("package_id"))
            .and_then(|p| p.as_str())
            .is_some_and(|s| !s.is_empty());
        if !ids_ok && !id_ok {
            return Err(invalid(format!(
                "task_type {kind} needs document.package_ids (a non-empty list of package ids) or document.package_id."
            )));
        }
    }

    let (schedule_at, retry) = match body.task_policy {
        None => (None, None),
        Some(policy) => {
            let schedule_at = match policy.schedule_time {
                None => None,
                Some(s) => {
                    let at = parse_compact(&s).ok_or_else(|| {
                        IotdaError::InvalidTime(format!(
                            "schedule_time {s} is not a time in yyyyMMdd'T'HHmmss'Z'."
                        ))
                    })?;
                    if at > now.plus_minutes(v::MAX_SCHEDULE_AHEAD_DAYS * 24 * 60) {
                        return Err(invalid("schedule_time must be within 7 days from now."));
                    }
                    Some(at)
                }
            };
            let retry = match (policy.retry_count, policy.retry_interval) {
                (None, None) => None,
                (Some(count), Some(interval)) => {
                    if !v::RETRY_COUNT.contains(&count) {
                        return Err(invalid("task_policy.retry_count must be 1-5."));
                    }
                    if !v::RETRY_INTERVAL_MINUTES.contains(&interval) {
                        return Err(invalid(
                            "task_policy.retry_interval must be 0-1440 minutes.",
                        ));
                    }
                    Some(RetryPolicy {
                        count: count as u32,
                        interval_minutes: interval as u32,
                    })
                }
                _ => {
                    return Err(invalid(
                        "task_policy.retry_count and task_policy.retry_interval must be given together.",
                    ));
                }
            };
            (schedule_at, retry)
        }
    };

    // Target sources, in IoTDA's precedence: targets > targets_filter > document_source.
    let targets = body.targets.filter(|t| !t.is_empty());
    let targets_filter = body.targets_filter.filter(|f| !f.is_null());
    let document_source = body.document_source.filter(|s| !s.is_empty());
    let mut targets_json = None;
    let mut targets_filter_json = None;
    let source = if let Some(targets) = targets {
        if !v::takes_targets(&kind) {
            return Err(invalid(format!(
                "task_type {kind} takes its devices from document_source, not targets."
            )));
        }
        if targets.len() > v::MAX_TARGETS {
            return Err(invalid(format!(
                "targets holds {} devices; at most {} are allowed.",
                targets.len(),
                v::MAX_TARGETS
            )));
        }
        let mut seen = HashSet::with_capacity(targets.len());
        for t in &targets {
            if !v::is_device_id(t) {
                return Err(invalid(format!(
                    "target {t:?} must be 1-128 letters, digits, '_' or '-'."
                )));
            }
            if !seen.insert(t.as_str()) {
                return Err(invalid(format!("target {t} is given more than once.")));
            }
        }
        targets_json =
            Some(serde_json::to_string(&targets).map_err(|e| IotdaError::Internal(e.to_string()))?);
        TargetSource::Explicit(targets)
    } else if let Some(filter) = targets_filter {
        if !v::takes_targets(&kind) {
            return Err(invalid(format!(
                "task_type {kind} takes its devices from document_source, not targets_filter."
            )));
        }
        let group_ids = filter.get("group_ids").and_then(|g| g.as_array());
        let valid = filter.is_object()
            && group_ids.is_some_and(|ids| {
                (1..=v::MAX_FILTER_GROUPS).contains(&ids.len())
                    && ids.iter().all(|id| id.as_str().is_some_and(v::is_group_id))
            });
        if !valid {
            return Err(invalid(format!(
                "targets_filter must be an object with group_ids, a list of 1-{} group ids.",
                v::MAX_FILTER_GROUPS
            )));
        }
        let text = filter.to_string();
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(invalid(format!(
                "targets_filter must be at most {MAX_DOCUMENT_BYTES} bytes of JSON."
            )));
        }
        targets_filter_json = Some(text);
        let mut group_ids: Vec<String> = group_ids
            .into_iter()
            .flatten()
            .filter_map(|id| id.as_str().map(str::to_owned))
            .collect();
        group_ids.sort();
        group_ids.dedup();
        TargetSource::Groups(group_ids)
    } else if let Some(file_id) = document_source.clone() {
        if !v::takes_document_source(&kind) {
            return Err(invalid(format!(
                "task_type {kind} does not take document_source; give targets."
            )));
        }
        if !v::is_file_id(&file_id) {
            return Err(invalid(
                "document_source must be 1-128 letters, digits, '_' or '-'.",
            ));
        }
        TargetSource::File(file_id)
    } else {
        return Err(invalid(
            "One of targets, targets_filter or document_source is required.",
        ));
    };

    let task = NewTask {
        scope,
        app_id: body.app_id,
        name,
        kind,
        mode: body.task_mode,
        need_confirm,
        ext_info_json,
        targets_json,
        targets_filter_json,
        document_json,
        document_source: matches!(source, TargetSource::File(_))
            .then_some(document_source)
            .flatten(),
        schedule_at,
        retry,
        operation: None,
    };
    Ok((task, source))
}

pub async fn create(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    body: Bytes,
) -> Result<Response, IotdaError> {
    if body.is_empty() {
        return Err(IotdaError::MalformedBody("A JSON body is required.".into()));
    }
    let body: CreateBatchTaskBody = parse_json(&body)?;
    let (task, source) = new_task(scope, body, state.clock.now())?;
    let task = state.engine.create_task(task, source).await?;
    Ok((StatusCode::CREATED, Json(TaskView::from(&task))).into_response())
}

/// `limit`, `marker` and `offset`, shared by list and show.
/// A listing's `app_id` filter (IoTDA's `^[A-Za-z0-9_-]{1,36}$`), if given.
pub(crate) fn app_id_filter(query: &Query) -> Result<Option<String>, IotdaError> {
    match query.get("app_id") {
        None => Ok(None),
        Some(app_id) if v::is_app_id(app_id) => Ok(Some(app_id.to_string())),
        Some(_) => Err(invalid("app_id must be 1-36 letters, digits, '_' or '-'.")),
    }
}

pub(crate) fn page_request(query: &Query) -> Result<PageRequest, IotdaError> {
    let int = |name: &str,
               range: std::ops::RangeInclusive<i64>,
               default: i64|
     -> Result<i64, IotdaError> {
        match query.get(name) {
            None => Ok(default),
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    invalid(format!(
                        "{name} must be an integer in {}-{}.",
                        range.start(),
                        range.end()
                    ))
                }),
        }
    };
    let limit = int("limit", v::LIMIT, v::DEFAULT_LIMIT as i64)?;
    let offset = int("offset", v::OFFSET, 0)?;
    let marker = match query.get("marker") {
        None => Id::MAX,
        Some(m) if v::is_marker(m) => {
            Id::parse_hex(m).map_err(|e| invalid(format!("marker {e}.")))?
        }
        Some(_) => return Err(invalid("marker must be 24 hexadecimal characters.")),
    };
    Ok(PageRequest {
        marker,
        offset: offset as u32,
        limit: limit as u32,
    })
}

pub(crate) fn parse_query(raw: Option<&str>) -> Result<Query, IotdaError> {
    Query::parse(raw).map_err(|e| invalid(e.to_string()))
}

pub async fn list(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    RawQuery(raw): RawQuery,
) -> Result<Response, IotdaError> {
    let query = parse_query(raw.as_deref())?;
    let page = page_request(&query)?;
    let mut filter = TaskFilter {
        app_id: app_id_filter(&query)?,
        ..TaskFilter::default()
    };
    if let Some(kind) = query.get("task_type") {
        if !v::is_task_type(kind) {
            return Err(invalid(format!("task_type {kind} is not supported.")));
        }
        filter.kind = Some(kind.to_string());
    }
    if let Some(status) = query.get("status") {
        filter.state = Some(wire::parse_task_status(status).ok_or_else(|| {
            invalid("status must be one of Success, Fail, Processing, PartialSuccess, Stopped, Waitting, Initializing, Stopping.")
        })?);
    }
    let result = state
        .store
        .task_list(&TaskListParams {
            scope,
            filter,
            page,
        })
        .await?;
    let marker = result.items.last().map(|t| t.id.to_string());
    Ok(Json(ListBatchTasksView {
        batchtasks: result.items.iter().map(TaskView::from).collect(),
        page: PageView {
            count: result.count,
            marker,
        },
    })
    .into_response())
}

/// A path task id: a malformed one is a 400; a well-formed one we never issued is a 404.
fn task_id(raw: &str) -> Result<Id, IotdaError> {
    if !v::is_task_id(raw) {
        return Err(invalid(
            "task_id must be 1-24 lowercase hexadecimal characters.",
        ));
    }
    Id::parse_exact(raw).ok_or(IotdaError::TaskNotFound)
}

pub async fn show(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_task_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, IotdaError> {
    let id = task_id(&raw_task_id)?;
    let query = parse_query(raw.as_deref())?;
    let page = page_request(&query)?;
    let status_filter = match query.get("task_detail_status") {
        None => None,
        Some(s) => Some(wire::parse_sub_task_status(s).ok_or_else(|| {
            invalid("task_detail_status must be one of Success, Fail, Processing, FailWaitRetry, Stopped, Waitting, Removed, DeviceInProgress, Rejected.")
        })?),
    };
    let target = match query.get("target") {
        Some(t) if !v::is_device_id(t) => {
            return Err(invalid("target must be 1-128 letters, digits, '_' or '-'."));
        }
        t => t.map(str::to_string),
    };
    let task = state
        .store
        .task_get(&scope, id)
        .await?
        .ok_or(IotdaError::TaskNotFound)?;
    let (details, count) = match status_filter {
        Some(SubTaskStatusFilter::Unreachable) => (Vec::new(), 0),
        other => {
            let state_filter = match other {
                Some(SubTaskStatusFilter::State(s)) => Some(s),
                _ => None,
            };
            let page = state
                .store
                .sub_task_list(&SubTaskListParams {
                    scope,
                    task_id: id,
                    state: state_filter,
                    target,
                    page,
                })
                .await?
                .ok_or(IotdaError::TaskNotFound)?;
            (page.items, page.count)
        }
    };
    let marker = details.last().map(|s| s.id.to_string());
    Ok(Json(ShowBatchTaskView {
        batchtask: TaskView::from(&task),
        task_details: details.iter().map(TaskDetailView::from).collect(),
        page: PageView { count, marker },
    })
    .into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_task_id)): Path<(String, String)>,
) -> Result<Response, IotdaError> {
    let id = task_id(&raw_task_id)?;
    match state.store.task_delete(&scope, id).await? {
        TaskDeleteOutcome::Deleted => Ok(StatusCode::NO_CONTENT.into_response()),
        TaskDeleteOutcome::NotFound => Err(IotdaError::TaskNotFound),
        TaskDeleteOutcome::NotFinished(s) => Err(IotdaError::TaskStatusForbids {
            status: wire::task_status_word(s),
            operation: "delete",
        }),
    }
}

pub async fn retry(
    state: State<AppState>,
    scope: IotdaScope,
    path: Path<(String, String)>,
    body: Bytes,
) -> Result<Response, IotdaError> {
    control(state, scope, path, body, ControlOp::Retry).await
}

pub async fn stop(
    state: State<AppState>,
    scope: IotdaScope,
    path: Path<(String, String)>,
    body: Bytes,
) -> Result<Response, IotdaError> {
    control(state, scope, path, body, ControlOp::Stop).await
}

pub async fn confirm(
    state: State<AppState>,
    scope: IotdaScope,
    path: Path<(String, String)>,
    body: Bytes,
) -> Result<Response, IotdaError> {
    control(state, scope, path, body, ControlOp::Confirm).await
}

fn op_name(op: ControlOp) -> &'static str {
    match op {
        ControlOp::Stop => "stop",
        ControlOp::Retry => "retry",
        ControlOp::Confirm => "confirm",
    }
}

/// IoTDA offers stop and retry for firmware and software upgrades, confirm also for
/// module upgrades.
fn op_supports(op: ControlOp, kind: &str) -> bool {
    match op {
        ControlOp::Stop | ControlOp::Retry => matches!(kind, "firmwareUpgrade" | "softwareUpgrade"),
        ControlOp::Confirm => v::is_upgrade(kind),
    }
}

/// The targets of a stop/retry/confirm body (`None`: the whole task), checked.
pub(crate) fn control_targets(body: &[u8]) -> Result<Option<Vec<String>>, IotdaError> {
    // The SDK sends no body, `{}` or `{"targets": [...]}`; all three are valid.
    let body: BatchTargetsBody = if body.iter().all(u8::is_ascii_whitespace) {
        BatchTargetsBody::default()
    } else {
        parse_json(body)?
    };
    let targets = body.targets.filter(|t| !t.is_empty());
    if let Some(targets) = &targets {
        if targets.len() > v::MAX_BATCH_TARGETS {
            return Err(invalid(format!(
                "targets holds {} devices; at most {} are allowed.",
                targets.len(),
                v::MAX_BATCH_TARGETS
            )));
        }
        if let Some(bad) = targets.iter().find(|t| !v::is_device_id(t)) {
            return Err(invalid(format!(
                "target {bad:?} must be 1-128 letters, digits, '_' or '-'."
            )));
        }
    }
    Ok(targets)
}

async fn control(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_task_id)): Path<(String, String)>,
    body: Bytes,
    op: ControlOp,
) -> Result<Response, IotdaError> {
    let id = task_id(&raw_task_id)?;
    let targets = control_targets(&body)?;
    // The task type never changes, so checking it before the guarded write is safe.
    let task = state
        .store
        .task_get(&scope, id)
        .await?
        .ok_or(IotdaError::TaskNotFound)?;
    if !op_supports(op, &task.kind) {
        return Err(invalid(format!(
            "{} is not supported for task_type {}.",
            op_name(op),
            task.kind
        )));
    }
    match state.engine.control(&scope, id, op, targets).await? {
        TaskControlOutcome::NotFound => Err(IotdaError::TaskNotFound),
        TaskControlOutcome::TaskStateRefused(s) => Err(IotdaError::TaskStatusForbids {
            status: wire::task_status_word(s),
            operation: op_name(op),
        }),
        TaskControlOutcome::Applied { targets, .. } => {
            let results: Vec<BatchTargetResultView> = targets
                .into_iter()
                .map(|(target, outcome)| match outcome {
                    TargetOutcome::Applied => BatchTargetResultView {
                        target,
                        status: "success",
                        error_code: None,
                        error_msg: None,
                    },
                    TargetOutcome::NotInTask => BatchTargetResultView {
                        target,
                        status: "failure",
                        error_code: Some("IOTDA.014219"),
                        error_msg: Some("Invalid input. The target is not in the task".into()),
                    },
                    TargetOutcome::StateRefused(s) => BatchTargetResultView {
                        target,
                        status: "failure",
                        error_code: Some("IOTDA.014221"),
                        error_msg: Some(format!(
                            "The sub-task status {} does not allow {}.",
                            wire::sub_task_status_word(s),
                            op_name(op)
                        )),
                    },
                })
                .collect();
            Ok(Json(json!({ "targets": results })).into_response())
        }
    }
}
