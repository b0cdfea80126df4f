//! The DMS for RabbitMQ dialect (`RabbitMQClient` of `huaweicloudsdkrabbitmq`): the
//! background tasks of an instance, which are taskd operations of service `rabbitmq`.
//!
//! * list: `start` (or `offset`, the newer doc's name; both 1-based positions, 0 taken
//!   as 1), `limit` 1-100 default 10, `begin_time`/`end_time` `YYYYMMDDHHmmss` (UTC,
//!   on the creation time, inclusive), newest first;
//! * show: the list envelope with one task; delete: 204, a finished task only.
//!
//! `wire` maps the model; `error` is the envelope.

pub mod error;
pub mod wire;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Router, middleware};
use serde_json::Value;
use taskd_core::{Id, OpService, TaskScope};
use taskd_store::{OpListParams, PageRequest, TaskDeleteOutcome};

pub use error::DmsError;

use crate::AppState;
use crate::auth::require_signature;
use crate::query::Query;
use crate::signed_path::{SignedPath, is_path_id};
use crate::wire_time::parse_dms_compact;

const LIMIT_MAX: u32 = 100;
const LIMIT_DEFAULT: u32 = 10;
/// Highest `start`: a position further than any listing goes.
const START_MAX: u32 = 100_000;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v2/{project_id}/instances/{instance_id}/tasks", get(list))
        .route(
            "/v2/{project_id}/instances/{instance_id}/tasks/{task_id}",
            get(show).delete(delete),
        )
        .route_layer(middleware::from_fn_with_state(
            state,
            require_signature::<DmsError>,
        ))
        .layer(crate::panic::catch_panic(DmsError::Internal))
}

type DmsPath = SignedPath<DmsError>;

async fn instance_scope(state: &AppState, path: &DmsPath) -> Result<TaskScope, DmsError> {
    let instance = path.get("instance_id");
    if !OpService::Rabbitmq.is_instance_id(instance) {
        return Err(DmsError::InvalidParam(
            "instance_id must be 1-64 letters, digits or '-'.".into(),
        ));
    }
    if let Some(owner) = state
        .store
        .op_instance_owner(OpService::Rabbitmq, instance)
        .await?
        && owner != path.project_id
    {
        return Err(DmsError::Forbidden(format!(
            "Operation not allowed: instance {instance} does not belong to this project."
        )));
    }
    Ok(OpService::Rabbitmq.scope(&path.project_id, instance))
}

fn task_id(path: &DmsPath) -> Result<Id, DmsError> {
    let raw = path.get("task_id");
    if !is_path_id(raw) {
        return Err(DmsError::InvalidParam(
            "task_id must be 1-64 hexadecimal digits or '-'.".into(),
        ));
    }
    Id::parse_exact(raw).ok_or(DmsError::TaskNotFound)
}

fn int_param(q: &Query, name: &str, max: u32) -> Result<Option<u32>, DmsError> {
    q.get(name)
        .map(|v| {
            v.parse::<u32>().ok().filter(|n| *n <= max).ok_or_else(|| {
                DmsError::InvalidParam(format!("{name} must be an integer from 0 to {max}."))
            })
        })
        .transpose()
}

fn time_param(q: &Query, name: &str) -> Result<Option<taskd_core::Timestamp>, DmsError> {
    q.get(name)
        .map(|v| {
            parse_dms_compact(v).ok_or_else(|| {
                DmsError::InvalidTime(format!("{name} must be a date as YYYYMMDDHHmmss."))
            })
        })
        .transpose()
}

pub async fn list(
    State(state): State<AppState>,
    path: DmsPath,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, DmsError> {
    let q = Query::parse(raw.as_deref())?;
    let start = int_param(&q, "start", START_MAX)?;
    let offset = int_param(&q, "offset", START_MAX)?;
    let start = match (start, offset) {
        (Some(s), Some(o)) if s != o => {
            return Err(DmsError::InvalidParam(
                "start and offset name the same position; give one.".into(),
            ));
        }
        (s, o) => s.or(o).unwrap_or(1).max(1),
    };
    let limit = match int_param(&q, "limit", LIMIT_MAX)? {
        None => LIMIT_DEFAULT,
        Some(0) => {
            return Err(DmsError::InvalidParam(format!(
                "limit must be an integer from 1 to {LIMIT_MAX}."
            )));
        }
        Some(n) => n,
    };
    let begin = time_param(&q, "begin_time")?;
    let end = time_param(&q, "end_time")?;
    if let (Some(b), Some(e)) = (begin, end)
        && b > e
    {
        return Err(DmsError::InvalidTime(
            "begin_time must not be after end_time.".into(),
        ));
    }
    let scope = instance_scope(&state, &path).await?;
    let page = state
        .store
        .op_list(&OpListParams {
            scope,
            state: None,
            created_from: begin,
            // end_time names a second: everything up to its last millisecond.
            created_to: end.map(|e| e.plus_millis(999)),
            page: PageRequest {
                marker: Id::MAX,
                offset: start - 1,
                limit,
            },
        })
        .await?;
    Ok(Json(wire::envelope(page.count, &page.items)))
}

pub async fn show(State(state): State<AppState>, path: DmsPath) -> Result<Json<Value>, DmsError> {
    let scope = instance_scope(&state, &path).await?;
    let id = task_id(&path)?;
    let rec = state
        .store
        .op_get(&scope, id)
        .await?
        .ok_or(DmsError::TaskNotFound)?;
    Ok(Json(wire::envelope(1, std::slice::from_ref(&rec))))
}

pub async fn delete(State(state): State<AppState>, path: DmsPath) -> Result<StatusCode, DmsError> {
    let scope = instance_scope(&state, &path).await?;
    let id = task_id(&path)?;
    match state.store.task_delete(&scope, id).await? {
        TaskDeleteOutcome::Deleted => Ok(StatusCode::NO_CONTENT),
        TaskDeleteOutcome::NotFound => Err(DmsError::TaskNotFound),
        TaskDeleteOutcome::NotFinished(s) => Err(DmsError::NotFinished(wire::status(s))),
    }
}
