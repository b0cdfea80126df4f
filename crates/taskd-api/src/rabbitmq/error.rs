//! The DMS envelope: `{"error_code": "DMS.xxxxxxxx", "error_msg": "..."}`. The only place
//! this dialect decides status and error codes. Huawei does not enumerate the codes of
//! these operations; taskd's are listed in `docs/instance-operations.md`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use taskd_engine::EngineError;
use taskd_store::StoreError;

use crate::auth::AuthError;
use crate::query::QueryError;
use crate::refusal::Refusal;
use crate::signed_path::PathRefusal;

#[derive(Debug, thiserror::Error)]
pub enum DmsError {
    /// 401 DMS.00401000.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 403 DMS.00403000: the key's project is not the path's, or the instance belongs to
    /// another project.
    #[error("{0}")]
    Forbidden(String),
    /// 400 DMS.00400000: a parameter breaks its pattern or range.
    #[error("Invalid parameter: {0}")]
    InvalidParam(String),
    /// 400 DMS.00400001: `begin_time`/`end_time` not `YYYYMMDDHHmmss`, or begin after end.
    #[error("Invalid time: {0}")]
    InvalidTime(String),
    /// 404 DMS.00404022: no such task in this instance.
    #[error("The background task does not exist.")]
    TaskNotFound,
    /// 409 DMS.00409000: only a finished task can be deleted.
    #[error("The background task is {0}: only a finished task can be deleted.")]
    NotFinished(&'static str),
    /// Refused before or around the handler (`crate::refusal`): the API gateway's
    /// `APIG.0101` (404) and `APIG.0201` (504, timeout), else DMS.00400000.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// 500 DMS.00500000.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DmsError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use DmsError::*;
        match self {
            Auth(AuthError::BodyTooLarge(_)) => (StatusCode::PAYLOAD_TOO_LARGE, "DMS.00400000"),
            Auth(AuthError::BodyUnreadable) => (StatusCode::BAD_REQUEST, "DMS.00400000"),
            Auth(AuthError::Store(_)) | Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "DMS.00500000")
            }
            Auth(_) => (StatusCode::UNAUTHORIZED, "DMS.00401000"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "DMS.00403000"),
            InvalidParam(_) => (StatusCode::BAD_REQUEST, "DMS.00400000"),
            InvalidTime(_) => (StatusCode::BAD_REQUEST, "DMS.00400001"),
            TaskNotFound => (StatusCode::NOT_FOUND, "DMS.00404022"),
            NotFinished(_) => (StatusCode::CONFLICT, "DMS.00409000"),
            Refused(r) => match r {
                Refusal::NoSuchApi | Refusal::MethodNotAllowed => {
                    (StatusCode::NOT_FOUND, "APIG.0101")
                }
                Refusal::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "APIG.0201"),
                Refusal::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "DMS.00400000"),
                Refusal::PathUnreadable(_)
                | Refusal::BodyUnreadable(_)
                | Refusal::NotMultipart(_) => (StatusCode::BAD_REQUEST, "DMS.00400000"),
            },
        }
    }
}

impl IntoResponse for DmsError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() && !matches!(self, DmsError::Refused(_)) {
            tracing::error!(error = %self, "request failed");
            "Internal server error.".to_string()
        } else {
            match &self {
                DmsError::Auth(e) => format!("Authentication failed: {e}."),
                other => other.to_string(),
            }
        };
        (
            status,
            Json(json!({ "error_code": code, "error_msg": message })),
        )
            .into_response()
    }
}

impl From<PathRefusal> for DmsError {
    fn from(r: PathRefusal) -> Self {
        match r {
            PathRefusal::Malformed(_) => DmsError::InvalidParam(r.to_string()),
            PathRefusal::Unauthenticated => DmsError::Internal(r.to_string()),
            _ => DmsError::Forbidden(format!("Operation not allowed: {r}.")),
        }
    }
}

impl From<QueryError> for DmsError {
    fn from(e: QueryError) -> Self {
        DmsError::InvalidParam(e.to_string())
    }
}

impl From<StoreError> for DmsError {
    fn from(e: StoreError) -> Self {
        match e {
            // Input validation missed a NUL; the store refused it and wrote nothing.
            StoreError::InvalidText(_) => DmsError::InvalidParam(e.to_string()),
            e => DmsError::Internal(e.to_string()),
        }
    }
}

impl From<EngineError> for DmsError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(e) => e.into(),
            e => DmsError::Internal(e.to_string()),
        }
    }
}
