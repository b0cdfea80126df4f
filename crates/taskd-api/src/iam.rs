//! The slice of IAM the SDKs call on their own: project discovery.
//!
//! A client built with `BasicCredentials(ak, sk)` and no project id first asks
//! `GET /v3/projects?name={region}` and needs exactly one project back. taskd answers with
//! the project the signing key belongs to, whatever the region name.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router, middleware};
use serde_json::json;

use crate::AppState;
use crate::auth::{AuthError, Principal, require_signature};
use crate::query::Query;
use crate::refusal::Refusal;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v3/projects", get(list_projects))
        .route_layer(middleware::from_fn_with_state(
            state,
            require_signature::<IamError>,
        ))
        .layer(crate::panic::catch_panic(IamError::Internal))
}

async fn list_projects(
    Extension(principal): Extension<Principal>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Json<serde_json::Value>, IamError> {
    let query = Query::parse(raw.as_deref()).map_err(|e| IamError::BadRequest(e.to_string()))?;
    let name = query.get("name").unwrap_or("default");
    Ok(Json(json!({
        "projects": [{
            "id": principal.project_id,
            "name": name,
            "domain_id": "",
            "is_domain": false,
            "enabled": true,
            "parent_id": "",
            "description": "taskd project",
        }],
        "links": { "self": "/v3/projects", "next": null, "previous": null },
    })))
}

/// IAM's own error envelope (`{"error": {"code", "message"}}`), which the SDK also reads.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    BadRequest(String),
    /// Refused before or around the handler (`crate::refusal`), with the HTTP status as
    /// IAM's code.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// 500: the cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IntoResponse for IamError {
    fn into_response(self) -> Response {
        let status = match &self {
            IamError::Auth(AuthError::Store(e)) => {
                tracing::error!(error = %e, "credential lookup failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            IamError::Internal(cause) => {
                tracing::error!(%cause, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            IamError::Auth(AuthError::BodyTooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            IamError::Auth(_) => StatusCode::UNAUTHORIZED,
            IamError::BadRequest(_) => StatusCode::BAD_REQUEST,
            IamError::Refused(r) => match r {
                Refusal::NoSuchApi => StatusCode::NOT_FOUND,
                Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
                Refusal::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
                Refusal::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                Refusal::PathUnreadable(_)
                | Refusal::BodyUnreadable(_)
                | Refusal::NotMultipart(_) => StatusCode::BAD_REQUEST,
            },
        };
        let message = match &self {
            IamError::Auth(AuthError::Store(_)) | IamError::Internal(_) => {
                "Internal server error".to_string()
            }
            other => other.to_string(),
        };
        let body = json!({ "error": { "code": status.as_u16().to_string(), "message": message, "title": status.canonical_reason() } });
        (status, Json(body)).into_response()
    }
}
