//! The IoTDA instance-management dialect (`IoTDMClient` of `huaweicloudsdkiotdm`): the
//! instance tasks of an IoTDA instance, which are taskd operations of service
//! `iotda-instance` (`taskd_core::Operation`), recorded through the native API.
//!
//! * list (`offset` 0-500, `limit` 1-500 default 10, `marker` 1-32 hex, newest first;
//!   only the last 180 days and at most the newest 20 tasks, as the seed says);
//! * show (with `progress`); retry (a FAILED task runs again, the engine's retry).
//!
//! `wire` maps the model to `InstanceTask`; `error` is the envelope.

pub mod error;
pub mod wire;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::routing::{get, post};
use axum::{Router, middleware};
use serde_json::{Value, json};
use taskd_core::{ControlOp, Id, OpService, TaskScope};
use taskd_store::{OpListParams, OpRecord, PageRequest, TaskControlOutcome};

pub use error::IotdmError;

use crate::AppState;
use crate::auth::require_signature;
use crate::query::Query;
use crate::signed_path::SignedPath;

/// The seed: only instance tasks of the last 180 days are listed ...
pub const LIST_DAYS: i64 = 180;
/// ... and at most 20 of them.
pub const LIST_MAX_TASKS: u32 = 20;
const OFFSET_MAX: u32 = 500;
const LIMIT_MAX: u32 = 500;
/// OpenAPI's default (the doc text says 500; see docs/instance-operations.md).
const LIMIT_DEFAULT: u32 = 10;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v5/iot/{project_id}/iotda-instances/{instance_id}/tasks",
            get(list),
        )
        .route(
            "/v5/iot/{project_id}/iotda-instances/{instance_id}/tasks/{task_id}",
            get(show),
        )
        .route(
            "/v5/iot/{project_id}/iotda-instances/{instance_id}/tasks/{task_id}/retry",
            post(retry),
        )
        .route_layer(middleware::from_fn_with_state(
            state,
            require_signature::<IotdmError>,
        ))
        .layer(crate::panic::catch_panic(IotdmError::Internal))
}

type IotdmPath = SignedPath<IotdmError>;

fn is_project_id(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `[0-9a-f-]{1,64}`.
fn is_task_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-')
}

/// `^[a-fA-F0-9]{1,32}$`.
fn parse_marker(s: &str) -> Option<Id> {
    if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let v = u128::from_str_radix(s, 16).ok()?;
    Some(Id(v.min(i64::MAX as u128) as i64))
}

/// The instance's scope, after the path's patterns and the instance's project.
async fn instance_scope(state: &AppState, path: &IotdmPath) -> Result<TaskScope, IotdmError> {
    let project = path.get("project_id");
    if !is_project_id(project) {
        return Err(IotdmError::InvalidInput(
            "project_id must be 1-32 hexadecimal characters.".into(),
        ));
    }
    let instance = path.get("instance_id");
    if !OpService::IotdaInstance.is_instance_id(instance) {
        return Err(IotdmError::InvalidInput(
            "instance_id must be 1-36 characters of a-f, 0-9 and '-'.".into(),
        ));
    }
    if let Some(owner) = state
        .store
        .op_instance_owner(OpService::IotdaInstance, instance)
        .await?
        && owner != path.project_id
    {
        return Err(IotdmError::Forbidden(format!(
            "Operation not allowed. Instance {instance} does not belong to project {project}."
        )));
    }
    Ok(OpService::IotdaInstance.scope(&path.project_id, instance))
}

fn task_id(path: &IotdmPath) -> Result<Id, IotdmError> {
    let raw = path.get("task_id");
    if !is_task_id(raw) {
        return Err(IotdmError::InvalidInput(
            "task_id must be 1-64 characters of a-f, 0-9 and '-'.".into(),
        ));
    }
    // Well-formed but not an id taskd hands out: it names no task.
    Id::parse_exact(raw).ok_or(IotdmError::TaskNotFound)
}

fn int_param(
    q: &Query,
    name: &str,
    range: std::ops::RangeInclusive<u32>,
    default: u32,
) -> Result<u32, IotdmError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| {
                IotdmError::InvalidInput(format!(
                    "{name} must be an integer from {} to {}.",
                    range.start(),
                    range.end()
                ))
            }),
    }
}

pub async fn list(
    State(state): State<AppState>,
    path: IotdmPath,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, IotdmError> {
    let q = Query::parse(raw.as_deref())?;
    let offset = int_param(&q, "offset", 0..=OFFSET_MAX, 0)?;
    let limit = int_param(&q, "limit", 1..=LIMIT_MAX, LIMIT_DEFAULT)?;
    let marker = match q.get("marker") {
        None => Id::MAX,
        Some(m) => parse_marker(m).ok_or_else(|| {
            IotdmError::InvalidInput("marker must be 1-32 hexadecimal characters.".into())
        })?,
    };
    let scope = instance_scope(&state, &path).await?;
    let since = state.clock.now().plus_minutes(-LIST_DAYS * 24 * 60);
    let params = |page: PageRequest| OpListParams {
        scope: scope.clone(),
        state: None,
        created_from: Some(since),
        created_to: None,
        page,
    };
    // The oldest task still among the newest LIST_MAX_TASKS: nothing older is listed.
    let floor = state
        .store
        .op_list(&params(PageRequest {
            marker: Id::MAX,
            offset: LIST_MAX_TASKS - 1,
            limit: 1,
        }))
        .await?
        .items
        .first()
        .map(|r| r.task.id);
    let page = state
        .store
        .op_list(&params(PageRequest {
            marker,
            offset,
            limit,
        }))
        .await?;
    let items: Vec<&OpRecord> = page
        .items
        .iter()
        .filter(|r| floor.is_none_or(|f| r.task.id >= f))
        .collect();
    let count = page.count.min(i64::from(LIST_MAX_TASKS));
    let marker = items.last().map(|r| r.task.id.to_string());
    Ok(Json(json!({
        "page": { "count": count, "marker": marker },
        "tasks": items.iter().map(|r| wire::instance_task(r, false)).collect::<Vec<_>>(),
    })))
}

async fn load(state: &AppState, path: &IotdmPath) -> Result<(TaskScope, OpRecord), IotdmError> {
    let scope = instance_scope(state, path).await?;
    let id = task_id(path)?;
    let rec = state
        .store
        .op_get(&scope, id)
        .await?
        .ok_or(IotdmError::TaskNotFound)?;
    Ok((scope, rec))
}

pub async fn show(
    State(state): State<AppState>,
    path: IotdmPath,
) -> Result<Json<Value>, IotdmError> {
    let (_, rec) = load(&state, &path).await?;
    Ok(Json(wire::instance_task(&rec, true)))
}

pub async fn retry(
    State(state): State<AppState>,
    path: IotdmPath,
) -> Result<Json<Value>, IotdmError> {
    let (scope, rec) = load(&state, &path).await?;
    if wire::status(rec.task.state) != "FAILED" {
        return Err(IotdmError::StatusForbids {
            status: wire::status(rec.task.state),
            operation: "retry",
        });
    }
    match state
        .engine
        .control(&scope, rec.task.id, ControlOp::Retry, None)
        .await?
    {
        TaskControlOutcome::NotFound => return Err(IotdmError::TaskNotFound),
        TaskControlOutcome::TaskStateRefused(s) => {
            return Err(IotdmError::StatusForbids {
                status: wire::status(s),
                operation: "retry",
            });
        }
        TaskControlOutcome::Applied { .. } => {}
    }
    let rec = state
        .store
        .op_get(&scope, rec.task.id)
        .await?
        .ok_or(IotdmError::TaskNotFound)?;
    Ok(Json(wire::instance_task(&rec, true)))
}
