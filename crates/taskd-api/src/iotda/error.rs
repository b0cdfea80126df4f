//! The IoTDA error envelope: `{"error_code": "IOTDA.xxxxxx", "error_msg": "..."}`.
//!
//! This is the only place the IoTDA dialect decides status codes and error codes. Codes
//! the spec names are used as named; where Huawei publishes a code without its meaning
//! (the `IOTDA.0146xx` file codes, `IOTDA.014221`), the meaning taskd gives it is written
//! beside the variant and in `docs/iotda.md`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use taskd_engine::{EngineError, SubTaskErrorKind};
use taskd_store::{
    MAX_SERVICE_ID_CHARS, MAX_SHADOW_SECTION_BYTES, MAX_SHADOW_SERVICES, RegistryRefusal,
    ShadowRefusal, StoreError,
};

use crate::auth::AuthError;
use crate::refusal::Refusal;

#[derive(Debug, thiserror::Error)]
pub enum IotdaError {
    /// 401 IOTDA.000002: no, unknown, revoked or wrongly signed credentials, stale date.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// 403 IOTDA.000021: a valid key used on a project it doesn't belong to.
    #[error("{0}")]
    Forbidden(String),
    /// 400 IOTDA.000006: a parameter or field breaks its pattern, range or rule.
    #[error("Invalid input data. {0}")]
    InvalidInput(String),
    /// 400 IOTDA.000008: the body is not JSON at all.
    #[error("Invalid request format. {0}")]
    MalformedBody(String),
    /// 400 IOTDA.000009: a time field is not `yyyyMMdd'T'HHmmss'Z'` or not a real date.
    #[error("Invalid time format. {0}")]
    InvalidTime(String),
    /// 400 IOTDA.000010: a listing's start time is after its end time.
    #[error("Invalid input. The start time must be earlier than the end time.")]
    TimeRange,
    /// 404 IOTDA.014200.
    #[error("The batch task does not exist.")]
    TaskNotFound,
    /// 403 IOTDA.014221: the task's status forbids the operation (delete, stop, ...).
    #[error("The batch task status {status} does not allow {operation}.")]
    TaskStatusForbids {
        status: &'static str,
        operation: &'static str,
    },
    /// 404 IOTDA.014600.
    #[error("The batch task file does not exist.")]
    FileNotFound,
    /// 403 IOTDA.014601: the scope already keeps the maximum number of task files.
    #[error("The number of batch task files has reached the upper limit ({0}); delete one first.")]
    FileLimitReached(u32),
    /// 400 IOTDA.014602.
    #[error("Invalid file type: only .xlsx and .xls files are accepted.")]
    FileType,
    /// 400 IOTDA.014603: not a spreadsheet, or one past a reading limit (inflated size,
    /// zip entries, columns, text); see `iotda::task_file::Limits`.
    #[error("The file could not be read as a spreadsheet: {0}")]
    FileUnreadable(String),
    /// 400 IOTDA.014604: more rows than a task file may hold (found while reading,
    /// which stops there).
    #[error("The file has too many rows: {0}.")]
    FileTooManyRows(String),
    /// 400 IOTDA.014605.
    #[error("Invalid file name: {0}")]
    FileName(String),
    /// 400 IOTDA.014606.
    #[error("The file has no header row or no data rows.")]
    FileEmpty,
    /// 404 IOTDA.014902: no message with this id for the device. Huawei documents no
    /// code for it; taskd's own, in IoTDA's range (docs/iotda.md).
    #[error("The device message does not exist.")]
    MessageNotFound,
    /// 404 IOTDA.014903: no OTA package with this id in the scope. Huawei documents no
    /// code for it; taskd's own, in IoTDA's range (docs/ota.md).
    #[error("The OTA package does not exist.")]
    PackageNotFound,
    /// 403 IOTDA.014904: the scope already holds the maximum number of OTA packages
    /// (taskd's code and limit, docs/ota.md).
    #[error(
        "Operation not allowed. The number of OTA packages has reached the limit ({0}); delete one first."
    )]
    PackageLimitReached(u32),
    /// The device registry refused (device or group not found, exists, frozen, limits);
    /// the code is the refusal's, the status is decided below.
    #[error("{0}")]
    Registry(#[from] RegistryRefusal),
    /// Refused before or around the handler (`crate::refusal`). Behind Huawei's API
    /// gateway an unknown path or method is its 404 `APIG.0101`, a timeout its 504
    /// `APIG.0201`; the rest are IoTDA's codes for a bad request.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// 409 IOTDA.014016: the device has no connection (a synchronous command or
    /// property request needs one).
    #[error("Operation not allowed. The device is not online.")]
    DeviceOffline,
    /// 408 IOTDA.014111: the device did not answer within 20 s. (Huawei publishes the
    /// code; the status is taskd's choice, docs/device-channel.md.)
    #[error("Command request timed out. {0}")]
    DeviceTimeout(String),
    /// 400 IOTDA.014015: the device already has a message with this id (taskd's code for
    /// Huawei's documented refusal, docs/device-channel.md).
    #[error("The message id {0} already exists for this device.")]
    MessageExists(String),
    /// 403 IOTDA.014017: the device already has the most pending messages taskd keeps.
    #[error("The device has reached the limit of {0} pending messages.")]
    TooManyPendingMessages(i64),
    /// 500: the cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<taskd_engine::device_channel::ChannelError> for IotdaError {
    fn from(e: taskd_engine::device_channel::ChannelError) -> Self {
        use taskd_engine::device_channel::ChannelError as C;
        match e {
            C::Offline | C::ConnectionLost(_) => IotdaError::DeviceOffline,
            C::Timeout(t) => IotdaError::DeviceTimeout(format!(
                "The device did not respond within {} seconds.",
                t.as_secs()
            )),
            C::NotSubscribed(topic) => {
                IotdaError::InvalidInput(format!("The device has not subscribed to {topic}."))
            }
            C::InvalidRequest(msg) => IotdaError::InvalidInput(msg),
            C::Store(msg) => IotdaError::Internal(msg),
        }
    }
}

impl IotdaError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        use IotdaError::*;
        match self {
            Registry(r) => (registry_status(*r), r.error_code()),
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
            Auth(AuthError::BodyTooLarge(_)) => (StatusCode::PAYLOAD_TOO_LARGE, "IOTDA.000006"),
            Auth(AuthError::BodyUnreadable) => (StatusCode::BAD_REQUEST, "IOTDA.000008"),
            Auth(AuthError::Store(_)) | Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "IOTDA.000001")
            }
            Auth(_) => (StatusCode::UNAUTHORIZED, "IOTDA.000002"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "IOTDA.000021"),
            InvalidInput(_) => (StatusCode::BAD_REQUEST, "IOTDA.000006"),
            MalformedBody(_) => (StatusCode::BAD_REQUEST, "IOTDA.000008"),
            InvalidTime(_) => (StatusCode::BAD_REQUEST, "IOTDA.000009"),
            TimeRange => (StatusCode::BAD_REQUEST, "IOTDA.000010"),
            TaskNotFound => (StatusCode::NOT_FOUND, "IOTDA.014200"),
            TaskStatusForbids { .. } => (StatusCode::FORBIDDEN, "IOTDA.014221"),
            FileNotFound => (StatusCode::NOT_FOUND, "IOTDA.014600"),
            FileLimitReached(_) => (StatusCode::FORBIDDEN, "IOTDA.014601"),
            FileType => (StatusCode::BAD_REQUEST, "IOTDA.014602"),
            FileUnreadable(_) => (StatusCode::BAD_REQUEST, "IOTDA.014603"),
            FileTooManyRows(..) => (StatusCode::BAD_REQUEST, "IOTDA.014604"),
            FileName(_) => (StatusCode::BAD_REQUEST, "IOTDA.014605"),
            FileEmpty => (StatusCode::BAD_REQUEST, "IOTDA.014606"),
            DeviceOffline => (StatusCode::CONFLICT, "IOTDA.014016"),
            DeviceTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "IOTDA.014111"),
            MessageExists(_) => (StatusCode::BAD_REQUEST, "IOTDA.014015"),
            TooManyPendingMessages(_) => (StatusCode::FORBIDDEN, "IOTDA.014017"),
            MessageNotFound => (StatusCode::NOT_FOUND, "IOTDA.014902"),
            PackageNotFound => (StatusCode::NOT_FOUND, "IOTDA.014903"),
            PackageLimitReached(_) => (StatusCode::FORBIDDEN, "IOTDA.014904"),
        }
    }
}

/// The IoTDA code of a sub-task's stored error code. The engine's own kinds
/// (`SubTaskErrorKind`, e.g. a task-file row that is no valid device) get the codes IoTDA
/// gives the same fault in a request; any other code is shown as stored: a worker's own,
/// the store's `LEASE_EXPIRED`, a registry refusal's IoTDA code, and what taskd stored
/// before the engine had its own kinds (then the IoTDA code itself).
pub fn sub_task_error_code(stored: &str) -> &str {
    match SubTaskErrorKind::from_code(stored) {
        Some(SubTaskErrorKind::InvalidInput) => "IOTDA.000006",
        Some(SubTaskErrorKind::NoExecutor) => "IOTDA.000001",
        Some(SubTaskErrorKind::DeviceNotFound) => "IOTDA.014000",
        Some(SubTaskErrorKind::DeviceOffline) => "IOTDA.014016",
        Some(SubTaskErrorKind::DeviceTimeout) => "IOTDA.014111",
        // Huawei has no code for a device's non-zero result_code (spec §6 Q13); taskd's
        // own, in IoTDA's range, listed in docs/device-channel.md.
        Some(SubTaskErrorKind::DeviceRejected) => "IOTDA.014901",
        Some(SubTaskErrorKind::NotSubscribed) => "IOTDA.014112",
        None => stored,
    }
}

/// The HTTP status of each registry refusal (its code is `RegistryRefusal::error_code`):
/// what doesn't exist is 404, what the state or a limit forbids is 403, what the request
/// itself gets wrong is 400 (Huawei answers a duplicate device with 400 IOTDA.014031).
fn registry_status(r: RegistryRefusal) -> StatusCode {
    use RegistryRefusal::*;
    match r {
        DeviceNotFound | GroupNotFound | SuperGroupNotFound => StatusCode::NOT_FOUND,
        DeviceExists | GatewayNotFound | GatewayTooDeep | GroupNameExists | GroupTooDeep
        | NotSecretAuth => StatusCode::BAD_REQUEST,
        HasSubDevices | SubDeviceFreeze | AlreadyFrozen | NotFrozen | GroupLimit
        | GroupsPerDevice | GroupFull | GroupHasChildren => StatusCode::FORBIDDEN,
    }
}

impl IntoResponse for IotdaError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status.is_server_error() && !matches!(self, IotdaError::Refused(_)) {
            tracing::error!(error = %self, "request failed");
            "Internal server error.".to_string()
        } else {
            match &self {
                IotdaError::Auth(e) => format!("Authentication failed: {e}."),
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

impl From<axum::extract::rejection::PathRejection> for IotdaError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        Refusal::from(r).into()
    }
}

impl From<StoreError> for IotdaError {
    fn from(e: StoreError) -> Self {
        match e {
            // Input validation missed a NUL; the store refused it and wrote nothing.
            StoreError::InvalidText(_) => IotdaError::InvalidInput(e.to_string()),
            e => IotdaError::Internal(e.to_string()),
        }
    }
}

impl From<ShadowRefusal> for IotdaError {
    fn from(r: ShadowRefusal) -> Self {
        match r {
            ShadowRefusal::DeviceNotFound => RegistryRefusal::DeviceNotFound.into(),
            ShadowRefusal::VersionConflict { service_id, stored } => {
                IotdaError::InvalidInput(format!(
                    "shadow.version of service {service_id} is not its current version {stored}."
                ))
            }
            ShadowRefusal::TooLarge => IotdaError::InvalidInput(format!(
                "The shadow would exceed its limits: {MAX_SHADOW_SERVICES} services, \
                 {MAX_SHADOW_SECTION_BYTES} bytes per section, service_id of \
                 {MAX_SERVICE_ID_CHARS} characters."
            )),
            ShadowRefusal::NotAnObject => {
                IotdaError::InvalidInput("shadow.desired must be a JSON object.".into())
            }
        }
    }
}

impl From<EngineError> for IotdaError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::FileNotFound(id) => IotdaError::InvalidInput(format!(
                "document_source {id} is not an uploaded batch task file."
            )),
            EngineError::GroupNotFound(id) => IotdaError::InvalidInput(format!(
                "targets_filter.group_ids: device group {id} does not exist."
            )),
            EngineError::GroupsEmpty => IotdaError::InvalidInput(
                "targets_filter.group_ids: the device groups have no devices.".into(),
            ),
            e @ EngineError::TooManyTargets { .. } => {
                IotdaError::InvalidInput(format!("targets_filter.group_ids: {e}."))
            }
            EngineError::InstanceOfAnotherProject(id) => IotdaError::Forbidden(format!(
                "Operation not allowed. Instance {id} belongs to another project."
            )),
            EngineError::Store(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_refusals_have_taskd_codes() {
        assert_eq!(
            IotdaError::PackageNotFound.status_and_code(),
            (StatusCode::NOT_FOUND, "IOTDA.014903")
        );
        let full = IotdaError::PackageLimitReached(10_000);
        assert_eq!(
            full.status_and_code(),
            (StatusCode::FORBIDDEN, "IOTDA.014904")
        );
        assert!(full.to_string().contains("(10000)"), "{full}");
    }

    #[test]
    fn engine_kinds_get_iotda_codes_other_codes_stay() {
        assert_eq!(
            sub_task_error_code(SubTaskErrorKind::InvalidInput.code()),
            "IOTDA.000006"
        );
        assert_eq!(
            sub_task_error_code(SubTaskErrorKind::NoExecutor.code()),
            "IOTDA.000001"
        );
        for stored in ["IOTDA.000006", "IOTDA.014031", "LEASE_EXPIRED", "EXIT_3"] {
            assert_eq!(sub_task_error_code(stored), stored);
        }
    }
}
