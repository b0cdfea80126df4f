//! The SWR envelope: `{"error_code": "SVCSTG.SWR.xxxxxxx", "error_msg": "..."}`, and on
//! 403 `encoded_authorization_message` (the reason as hex of its text: taskd has no STS
//! to encrypt it for). The only place this dialect decides status and error
//! codes (`docs/instance-operations.md`).

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
pub enum SwrError {
    /// 401 SVCSTG.SWR.4010001.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 403 SVCSTG.SWR.4030001.
    #[error("{0}")]
    Forbidden(String),
    /// 400 SVCSTG.SWR.4000001.
    #[error("{0}")]
    InvalidParam(String),
    /// 404 SVCSTG.SWR.4040001.
    #[error("The job does not exist.")]
    JobNotFound,
    /// 409 SVCSTG.SWR.4090001: only a finished job can be deleted.
    #[error("The job is {0}: only a finished job can be deleted.")]
    NotFinished(&'static str),
    /// Refused before or around the handler (`crate::refusal`): the API gateway's
    /// `APIG.0101` (404) and `APIG.0201` (504, timeout), else SVCSTG.SWR.4000001.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// 500 SVCSTG.SWR.5000001.
    #[error("internal error: {0}")]
    Internal(String),
}

impl SwrError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use SwrError::*;
        match self {
            Auth(AuthError::BodyTooLarge(_)) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "SVCSTG.SWR.4000001")
            }
            Auth(AuthError::BodyUnreadable) => (StatusCode::BAD_REQUEST, "SVCSTG.SWR.4000001"),
            Auth(AuthError::Store(_)) | Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "SVCSTG.SWR.5000001")
            }
            Auth(_) => (StatusCode::UNAUTHORIZED, "SVCSTG.SWR.4010001"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "SVCSTG.SWR.4030001"),
            InvalidParam(_) => (StatusCode::BAD_REQUEST, "SVCSTG.SWR.4000001"),
            JobNotFound => (StatusCode::NOT_FOUND, "SVCSTG.SWR.4040001"),
            NotFinished(_) => (StatusCode::CONFLICT, "SVCSTG.SWR.4090001"),
            Refused(r) => match r {
                Refusal::NoSuchApi | Refusal::MethodNotAllowed => {
                    (StatusCode::NOT_FOUND, "APIG.0101")
                }
                Refusal::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "APIG.0201"),
                Refusal::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "SVCSTG.SWR.4000001"),
                Refusal::PathUnreadable(_)
                | Refusal::BodyUnreadable(_)
                | Refusal::NotMultipart(_) => (StatusCode::BAD_REQUEST, "SVCSTG.SWR.4000001"),
            },
        }
    }
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

impl IntoResponse for SwrError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() && !matches!(self, SwrError::Refused(_)) {
            tracing::error!(error = %self, "request failed");
            "Internal server error.".to_string()
        } else {
            match &self {
                SwrError::Auth(e) => format!("Authentication failed: {e}."),
                other => other.to_string(),
            }
        };
        let body = if status == StatusCode::FORBIDDEN {
            json!({
                "error_code": code,
                "error_msg": message,
                "encoded_authorization_message": hex(&message),
            })
        } else {
            json!({ "error_code": code, "error_msg": message })
        };
        (status, Json(body)).into_response()
    }
}

impl From<PathRefusal> for SwrError {
    fn from(r: PathRefusal) -> Self {
        match r {
            PathRefusal::Malformed(_) => SwrError::InvalidParam(r.to_string()),
            PathRefusal::Unauthenticated => SwrError::Internal(r.to_string()),
            _ => SwrError::Forbidden(format!("Operation not allowed: {r}.")),
        }
    }
}

impl From<QueryError> for SwrError {
    fn from(e: QueryError) -> Self {
        SwrError::InvalidParam(e.to_string())
    }
}

impl From<StoreError> for SwrError {
    fn from(e: StoreError) -> Self {
        match e {
            // Input validation missed a NUL; the store refused it and wrote nothing.
            StoreError::InvalidText(_) => SwrError::InvalidParam(e.to_string()),
            e => SwrError::Internal(e.to_string()),
        }
    }
}

impl From<EngineError> for SwrError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(e) => e.into(),
            e => SwrError::Internal(e.to_string()),
        }
    }
}
