//! The native envelope: `{"error_code": "TASKD.xxxxxx", "error_msg": "..."}`. The only
//! place the `/taskd/v1/` API decides status and error codes (listed in
//! `docs/worker-protocol.md`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use taskd_engine::EngineError;
use taskd_store::StoreError;

use crate::auth::AuthError;
use crate::refusal::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// 401 TASKD.000002 (413 TASKD.000413 for an oversized body).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 403 TASKD.000021: the key belongs to another project.
    #[error("{0}")]
    Forbidden(String),
    /// 400 TASKD.000006.
    #[error("Invalid input: {0}")]
    InvalidInput(String),
    /// 400 TASKD.000008: the body is not the JSON object the operation takes.
    #[error("Invalid request body: {0}")]
    MalformedBody(String),
    /// 409 TASKD.010409: the sub-task is no longer leased to this attempt.
    #[error("The lease on sub-task {0} is lost: it was stopped, expired or claimed again.")]
    LeaseLost(String),
    /// 404 TASKD.000404: the named device (or other record) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Refused before or around the handler (`crate::refusal`): 404 TASKD.000404, 405
    /// TASKD.000405, 503 TASKD.000503 (timeout), 413 TASKD.000413, else 400.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// 500 TASKD.000001: the cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl NativeError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use NativeError::*;
        match self {
            Auth(AuthError::BodyTooLarge(_)) => (StatusCode::PAYLOAD_TOO_LARGE, "TASKD.000413"),
            Auth(AuthError::BodyUnreadable) => (StatusCode::BAD_REQUEST, "TASKD.000008"),
            Auth(AuthError::Store(_)) | Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "TASKD.000001")
            }
            Auth(_) => (StatusCode::UNAUTHORIZED, "TASKD.000002"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "TASKD.000021"),
            InvalidInput(_) => (StatusCode::BAD_REQUEST, "TASKD.000006"),
            MalformedBody(_) => (StatusCode::BAD_REQUEST, "TASKD.000008"),
            LeaseLost(_) => (StatusCode::CONFLICT, "TASKD.010409"),
            NotFound(_) => (StatusCode::NOT_FOUND, "TASKD.000404"),
            Refused(r) => match r {
                Refusal::NoSuchApi => (StatusCode::NOT_FOUND, "TASKD.000404"),
                Refusal::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "TASKD.000405"),
                Refusal::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "TASKD.000503"),
                Refusal::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "TASKD.000413"),
                Refusal::PathUnreadable(_) => (StatusCode::BAD_REQUEST, "TASKD.000006"),
                Refusal::BodyUnreadable(_) | Refusal::NotMultipart(_) => {
                    (StatusCode::BAD_REQUEST, "TASKD.000008")
                }
            },
        }
    }
}

impl IntoResponse for NativeError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() && !matches!(self, NativeError::Refused(_)) {
            tracing::error!(error = %self, "request failed");
            "Internal server error.".to_string()
        } else {
            match &self {
                NativeError::Auth(e) => format!("Authentication failed: {e}."),
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

impl From<axum::extract::rejection::PathRejection> for NativeError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        Refusal::from(r).into()
    }
}

impl From<StoreError> for NativeError {
    fn from(e: StoreError) -> Self {
        match e {
            // Input validation missed a NUL; the store refused it and wrote nothing.
            StoreError::InvalidText(_) => NativeError::InvalidInput(e.to_string()),
            e => NativeError::Internal(e.to_string()),
        }
    }
}

impl From<EngineError> for NativeError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(e) => e.into(),
            e => NativeError::Internal(e.to_string()),
        }
    }
}
