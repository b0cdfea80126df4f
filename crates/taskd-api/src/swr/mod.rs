//! The SWR Enterprise dialect (`SwrClient` of `huaweicloudsdkswr`): the instance jobs of
//! a project, which are taskd operations of service `swr`.
//!
//! * list: `status` (Creating|Initializing|Running|Failed|Success), `offset` >= 0
//!   default 0, `limit` 1-100 default 100 (the doc: used together, so one without the
//!   other is refused), `total`, newest first;
//! * show (flat `JobDetail`); delete: 204, a finished job only.
//!
//! `wire` maps the model; `error` is the envelope.

pub mod error;
pub mod wire;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Router, middleware};
use serde_json::{Value, json};
use taskd_core::{Id, OpService};
use taskd_store::{OpListParams, PageRequest, TaskDeleteOutcome};

pub use error::SwrError;

use crate::AppState;
use crate::auth::require_signature;
use crate::query::Query;
use crate::signed_path::{SignedPath, is_path_id};

const LIMIT_MAX: u32 = 100;
const LIMIT_DEFAULT: u32 = 100;
/// Highest `offset` (i32, as the OpenAPI declares it).
const OFFSET_MAX: u32 = i32::MAX as u32;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v2/{project_id}/jobs", get(list))
        .route("/v2/{project_id}/jobs/{job_id}", get(show).delete(delete))
        .route_layer(middleware::from_fn_with_state(
            state,
            require_signature::<SwrError>,
        ))
        .layer(crate::panic::catch_panic(SwrError::Internal))
}

type SwrPath = SignedPath<SwrError>;

fn job_id(path: &SwrPath) -> Result<Id, SwrError> {
    let raw = path.get("job_id");
    if !is_path_id(raw) {
        return Err(SwrError::InvalidParam(
            "job_id must be 1-64 hexadecimal digits or '-'.".into(),
        ));
    }
    Id::parse_exact(raw).ok_or(SwrError::JobNotFound)
}

fn int_param(q: &Query, name: &str, min: u32, max: u32) -> Result<Option<u32>, SwrError> {
    q.get(name)
        .map(|v| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    SwrError::InvalidParam(format!(
                        "{name} must be an integer from {min} to {max}."
                    ))
                })
        })
        .transpose()
}

pub async fn list(
    State(state): State<AppState>,
    path: SwrPath,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, SwrError> {
    let q = Query::parse(raw.as_deref())?;
    let status = q
        .get("status")
        .map(|w| {
            wire::parse_status(w).ok_or_else(|| {
                SwrError::InvalidParam(
                    "Invalid status: use Creating, Initializing, Running, Failed or Success."
                        .into(),
                )
            })
        })
        .transpose()?;
    let offset = int_param(&q, "offset", 0, OFFSET_MAX)?;
    let limit = int_param(&q, "limit", 1, LIMIT_MAX)?;
    if offset.is_some() != limit.is_some() {
        return Err(SwrError::InvalidParam(
            "offset and limit must be used together.".into(),
        ));
    }
    let page = state
        .store
        .op_list(&OpListParams {
            scope: OpService::Swr.scope(&path.project_id, ""),
            state: status,
            created_from: None,
            created_to: None,
            page: PageRequest {
                marker: Id::MAX,
                offset: offset.unwrap_or(0),
                limit: limit.unwrap_or(LIMIT_DEFAULT),
            },
        })
        .await?;
    Ok(Json(json!({
        "total": page.count,
        "jobs": page.items.iter().map(wire::job).collect::<Vec<_>>(),
    })))
}

pub async fn show(State(state): State<AppState>, path: SwrPath) -> Result<Json<Value>, SwrError> {
    let id = job_id(&path)?;
    let rec = state
        .store
        .op_get(&OpService::Swr.scope(&path.project_id, ""), id)
        .await?
        .ok_or(SwrError::JobNotFound)?;
    Ok(Json(wire::job(&rec)))
}

pub async fn delete(State(state): State<AppState>, path: SwrPath) -> Result<StatusCode, SwrError> {
    let id = job_id(&path)?;
    match state
        .store
        .task_delete(&OpService::Swr.scope(&path.project_id, ""), id)
        .await?
    {
        TaskDeleteOutcome::Deleted => Ok(StatusCode::NO_CONTENT),
        TaskDeleteOutcome::NotFound => Err(SwrError::JobNotFound),
        TaskDeleteOutcome::NotFinished(s) => Err(SwrError::NotFinished(wire::status(s))),
    }
}
