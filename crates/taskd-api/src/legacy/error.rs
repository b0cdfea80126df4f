//! The legacy northbound envelope: `{"error_code": "123009", "error_desc": "..."}`.
//!
//! This is the only place the legacy dialect decides status codes and error codes; the
//! codes and texts are those of the platform's documentation (spec §7, `docs/legacy-
//! northbound.md`). Codes are numeric strings.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use taskd_engine::EngineError;
use taskd_store::StoreError;

use crate::refusal::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// 401 100025: no `app_key` header.
    #[error("AppId for auth not exist.")]
    AppKeyMissing,
    /// 403 1010005: the bearer token is missing, wrong, expired or not the last issued,
    /// or the app is unknown or revoked.
    #[error("App_key or access_token is invalid.")]
    InvalidToken,
    /// 403 1010009: over the app's flow-control limit.
    #[error("app throttle exceed.")]
    Throttled,
    /// 400 100247: the app is frozen (revoked).
    #[error("The application has been frozen.")]
    AppFrozen,
    /// 400 102202: a mandatory login or refresh parameter is null or empty.
    #[error("Required Parameter is null or empty.")]
    RequiredParameter,
    /// 401 100208: appId, secret or refreshToken not right.
    #[error("AppId or secret is not right.")]
    WrongSecret,
    /// 400 50400: the refresh body is not the JSON it should be.
    #[error("The input is invalid.")]
    InputInvalid,
    /// 400 120015: anything else about the request that is malformed.
    #[error("Bad request error.")]
    BadRequest(String),
    /// 404 123002.
    #[error("Device or package file not found.")]
    DeviceNotFound(String),
    /// 400 123019.
    #[error("manufacturerName is null.")]
    ManufacturerNameNull,
    /// 400 123020.
    #[error("deviceType is null.")]
    DeviceTypeNull,
    /// 400 123021.
    #[error("model is null.")]
    ModelNull,
    /// 400 123022.
    #[error("deviceGroups and devices cannot be null together.")]
    TargetsNull,
    /// 400 123023.
    #[error("deviceGroups and devices cannot exist together.")]
    TargetsBoth,
    /// 400 123024.
    #[error("The number of deviceGroups or devices reached upper limit.")]
    TooManyTargets,
    /// 400 123025.
    #[error("executeType is error or null.")]
    ExecuteType,
    /// 400 123026.
    #[error("startTime or endTime is null or error.")]
    WindowTime,
    /// 400 123028.
    #[error("retryTimes is null or beyond the limit.")]
    RetryTimes,
    /// 400 123032.
    #[error("startTime can not be later than endTime.")]
    StartAfterEnd,
    /// 400 123033.
    #[error("startTime can not be earlier than now.")]
    StartInPast,
    /// 404 123009.
    #[error("The requested task does not exist.")]
    TaskNotFound,
    /// 400 123029.
    #[error("pageNo or pageSize beyond the limit.")]
    PageLimit,
    /// Refused before or around the handler (`crate::refusal`). The platform documents
    /// no codes for these: an unknown path (404), method (405), body over the limit
    /// (413) or unreadable path or body (400) is its general `120015`, a timeout (503)
    /// its `50252`.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// 500 50252: the cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl LegacyError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use LegacyError::*;
        match self {
            AppKeyMissing => (StatusCode::UNAUTHORIZED, "100025"),
            InvalidToken => (StatusCode::FORBIDDEN, "1010005"),
            Throttled => (StatusCode::FORBIDDEN, "1010009"),
            AppFrozen => (StatusCode::BAD_REQUEST, "100247"),
            RequiredParameter => (StatusCode::BAD_REQUEST, "102202"),
            WrongSecret => (StatusCode::UNAUTHORIZED, "100208"),
            InputInvalid => (StatusCode::BAD_REQUEST, "50400"),
            BadRequest(_) => (StatusCode::BAD_REQUEST, "120015"),
            DeviceNotFound(_) => (StatusCode::NOT_FOUND, "123002"),
            ManufacturerNameNull => (StatusCode::BAD_REQUEST, "123019"),
            DeviceTypeNull => (StatusCode::BAD_REQUEST, "123020"),
            ModelNull => (StatusCode::BAD_REQUEST, "123021"),
            TargetsNull => (StatusCode::BAD_REQUEST, "123022"),
            TargetsBoth => (StatusCode::BAD_REQUEST, "123023"),
            TooManyTargets => (StatusCode::BAD_REQUEST, "123024"),
            ExecuteType => (StatusCode::BAD_REQUEST, "123025"),
            WindowTime => (StatusCode::BAD_REQUEST, "123026"),
            RetryTimes => (StatusCode::BAD_REQUEST, "123028"),
            StartAfterEnd => (StatusCode::BAD_REQUEST, "123032"),
            StartInPast => (StatusCode::BAD_REQUEST, "123033"),
            TaskNotFound => (StatusCode::NOT_FOUND, "123009"),
            PageLimit => (StatusCode::BAD_REQUEST, "123029"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "50252"),
            Refused(r) => match r {
                Refusal::NoSuchApi => (StatusCode::NOT_FOUND, "120015"),
                Refusal::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "120015"),
                Refusal::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "50252"),
                Refusal::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "120015"),
                Refusal::PathUnreadable(_)
                | Refusal::BodyUnreadable(_)
                | Refusal::NotMultipart(_) => (StatusCode::BAD_REQUEST, "120015"),
            },
        }
    }
}

impl From<axum::extract::rejection::PathRejection> for LegacyError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        Refusal::from(r).into()
    }
}

impl From<StoreError> for LegacyError {
    fn from(e: StoreError) -> Self {
        match e {
            // Input validation missed a NUL; the store refused it and wrote nothing.
            StoreError::InvalidText(_) => LegacyError::BadRequest(e.to_string()),
            e => LegacyError::Internal(e.to_string()),
        }
    }
}

impl From<EngineError> for LegacyError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(e) => e.into(),
            e => LegacyError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for LegacyError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let desc = match &self {
            LegacyError::Internal(cause) => {
                tracing::error!(%cause, "legacy request failed");
                "Internal server error.".to_owned()
            }
            // The documented text, then what exactly was wrong.
            LegacyError::BadRequest(why) | LegacyError::DeviceNotFound(why) => {
                tracing::info!(code, %why, "legacy request refused");
                format!("{self} ({why})")
            }
            other => {
                tracing::info!(code, "legacy request refused: {other}");
                other.to_string()
            }
        };
        (
            status,
            Json(json!({ "error_code": code, "error_desc": desc })),
        )
            .into_response()
    }
}
