//! taskd's own API under `/taskd/v1/`, signed with the same AK/SK scheme as the
//! dialects: the worker protocol (`worker`), documented in `docs/worker-protocol.md`, and
//! producing instance operations (`operations`, `docs/instance-operations.md`), and the
//! legacy device attributes (`devices`, `docs/legacy-northbound.md`).
//! `error` is its envelope.

pub(crate) mod devices;
pub mod error;
pub(crate) mod operations;
pub(crate) mod worker;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::routing::{post, put};
use axum::{Router, middleware};

pub use error::NativeError;

use crate::AppState;
use crate::auth::{Principal, require_signature};

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/taskd/v1/{project_id}/claims", post(worker::claim))
        .route(
            "/taskd/v1/{project_id}/sub-tasks/{sub_task_id}/heartbeat",
            post(worker::heartbeat),
        )
        .route("/taskd/v1/{project_id}/results", post(worker::results))
        .route(
            "/taskd/v1/{project_id}/devices/{device_id}/attributes",
            put(devices::put_attributes).get(devices::get_attributes),
        )
        .route(
            "/taskd/v1/{project_id}/operations",
            post(operations::create).get(operations::list),
        )
        .route_layer(middleware::from_fn_with_state(
            state,
            require_signature::<NativeError>,
        ))
        .layer(crate::panic::catch_panic(NativeError::Internal))
}

/// axum's `Path`, refusing in the native envelope.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(NativeError))]
pub struct Path<T>(pub T);

/// The project a native request acts in: the path's, which must be the signing key's.
pub struct NativeProject(pub String);

impl FromRequestParts<AppState> for NativeProject {
    type Rejection = NativeError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, NativeError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| NativeError::InvalidInput(e.to_string()))?;
        let project_id = params
            .iter()
            .find(|(k, _)| *k == "project_id")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let principal = parts.extensions.get::<Principal>().ok_or_else(|| {
            NativeError::Internal("request reached a handler unauthenticated".into())
        })?;
        if !principal.project_id.eq_ignore_ascii_case(&project_id) {
            return Err(NativeError::Forbidden(format!(
                "The access key does not belong to project {project_id}."
            )));
        }
        Ok(NativeProject(principal.project_id.clone()))
    }
}
