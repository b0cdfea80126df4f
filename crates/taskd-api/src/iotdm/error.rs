//! The IoTDA instance-task envelope (IoTDA's: `{"error_code": "IOTDA.xxxxxx", "error_msg":
//! "..."}`). The only place this dialect decides status and error codes. Huawei declares
//! only the statuses (400, 401, 403) for these operations; the codes are IoTDA's codes
//! of the same meaning (`docs/instance-operations.md`).

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
pub enum IotdmError {
    /// 401 IOTDA.000002.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 403 IOTDA.000021: the key belongs to another project, or the instance does.
    #[error("{0}")]
    Forbidden(String),
    /// 400 IOTDA.000006: a parameter breaks its pattern or range.
    #[error("Invalid input data. {0}")]
    InvalidInput(String),
    /// 404 IOTDA.014200: no such instance task in this instance.
    #[error("The instance task does not exist.")]
    TaskNotFound,
    /// 403 IOTDA.014221: the task's status forbids the operation (retry of a task that
    /// did not fail).
    #[error("The instance task status {status} does not allow {operation}.")]
    StatusForbids {
        status: &'static str,
        operation: &'static str,
    },
    /// Refused before or around the handler (`crate::refusal`): the API gateway's
    /// `APIG.0101` (404) and `APIG.0201` (504, timeout), else IoTDA's bad-request codes.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// 500 IOTDA.000001.
    #[error("internal error: {0}")]
    Internal(String),
}

impl IotdmError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use IotdmError::*;
        match self {
            Auth(AuthError::BodyTooLarge(_)) => (StatusCode::PAYLOAD_TOO_LARGE, "IOTDA.000006"),
            Auth(AuthError::BodyUnreadable) => (StatusCode::BAD_REQUEST, "IOTDA.000008"),
            Auth(AuthError::Store(_)) | Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "IOTDA.000001")
            }
            Auth(_) => (StatusCode::UNAUTHORIZED, "IOTDA.000002"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "IOTDA.000021"),
            InvalidInput(_) => (StatusCode::BAD_REQUEST, "IOTDA.000006"),
            TaskNotFound => (StatusCode::NOT_FOUND, "IOTDA.014200"),
            StatusForbids { .. } => (StatusCode::FORBIDDEN, "IOTDA.014221"),
            Refused(r) => match r {
                Refusal::NoSuchApi | Refusal::MethodNotAllowed => {
                    (StatusCode::NOT_FOUND, "APIG.0101")
                }
                Refusal::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "APIG.0201"),
                Refusal::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "IOTDA.000006"),
                Refusal::PathUnreadable(_) => (StatusCode::BAD_REQUEST, "IOTDA.000006"),
                Refusal::BodyUnreadable(_) | Refusal::NotMultipart(_) => {
                    (StatusCode::BAD_REQUEST, "IOTDA.000008")
                }
            },
        }
    }
}

impl IntoResponse for IotdmError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() && !matches!(self, IotdmError::Refused(_)) {
            tracing::error!(error = %self, "request failed");
            "Internal server error.".to_string()
        } else {
            match &self {
                IotdmError::Auth(e) => format!("Authentication failed: {e}."),
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

impl From<PathRefusal> for IotdmError {
    fn from(r: PathRefusal) -> Self {
        match r {
            PathRefusal::Malformed(_) => IotdmError::InvalidInput(r.to_string()),
            PathRefusal::Unauthenticated => IotdmError::Internal(r.to_string()),
            _ => IotdmError::Forbidden(format!("Operation not allowed. {r}.")),
        }
    }
}

impl From<QueryError> for IotdmError {
    fn from(e: QueryError) -> Self {
        IotdmError::InvalidInput(e.to_string())
    }
}

impl From<StoreError> for IotdmError {
    fn from(e: StoreError) -> Self {
        match e {
            // Input validation missed a NUL; the store refused it and wrote nothing.
            StoreError::InvalidText(_) => IotdmError::InvalidInput(e.to_string()),
            e => IotdmError::Internal(e.to_string()),
        }
    }
}

impl From<EngineError> for IotdmError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(e) => e.into(),
            e => IotdmError::Internal(e.to_string()),
        }
    }
}
