//! The IoTDA dialect (`IoTDAClient` of `huaweicloudsdkiotda`): batch tasks and the device
//! registry they act on.
//!
//! * `batch_tasks`: create, list, show, delete, retry, stop, confirm.
//! * `files`: upload, list and delete batch-task files (xlsx/xls).
//! * `devices`: add, show, list, update, delete, freeze, unfreeze, reset a secret.
//! * `device_requests`: commands, property set/get and messages for connected devices,
//!   through the device channel (`AppState::devices`).
//! * `device_groups`: add, show, list, delete static groups; add and remove members.
//! * `shadows`: show a device's shadow, update its desired sections.
//! * `messages`: list and show the messages sent to a device.
//! * `ota_packages`: create, list, show, delete OTA package records (`docs/ota.md`).
//! * `wire`: IoTDA's status words and JSON shapes; `validate`: its patterns and limits;
//!   `error`: its envelope. Nothing here stores task data of its own.

pub(crate) mod batch_tasks;
pub(crate) mod device_groups;
pub mod device_requests;
pub(crate) mod devices;
pub mod error;
mod files;
pub(crate) mod messages;
pub(crate) mod ota_packages;
pub(crate) mod shadows;
pub mod task_file;
pub mod validate;
pub mod wire;

use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::routing::{delete, get, post};
use axum::{Router, middleware};
use taskd_core::TaskScope;

pub use error::IotdaError;

use crate::AppState;
use crate::auth::{Principal, require_signature};
use crate::refusal::Refusal;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route(
            "/v5/iot/{project_id}/batchtasks",
            post(batch_tasks::create).get(batch_tasks::list),
        )
        .route(
            "/v5/iot/{project_id}/batchtasks/{task_id}",
            get(batch_tasks::show).delete(batch_tasks::delete),
        )
        .route(
            "/v5/iot/{project_id}/batchtasks/{task_id}/retry",
            post(batch_tasks::retry),
        )
        .route(
            "/v5/iot/{project_id}/batchtasks/{task_id}/stop",
            post(batch_tasks::stop),
        )
        .route(
            "/v5/iot/{project_id}/batchtasks/{task_id}/confirm",
            post(batch_tasks::confirm),
        )
        .route(
            "/v5/iot/{project_id}/batchtask-files",
            post(files::upload).get(files::list),
        )
        .route(
            "/v5/iot/{project_id}/batchtask-files/{file_id}",
            delete(files::delete),
        )
        .route(
            "/v5/iot/{project_id}/devices",
            post(devices::add).get(devices::list),
        )
        .route(
            "/v5/iot/{project_id}/devices/{device_id}",
            get(devices::show)
                .put(devices::update)
                .delete(devices::delete),
        )
        .route(
            "/v5/iot/{project_id}/devices/{device_id}/freeze",
            post(devices::freeze),
        )
        .route(
            "/v5/iot/{project_id}/devices/{device_id}/unfreeze",
            post(devices::unfreeze),
        )
        .route(
            "/v5/iot/{project_id}/devices/{device_id}/action",
            post(devices::action),
        )
        .route(
            "/v5/iot/{project_id}/devices/{device_id}/commands",
            post(device_requests::create_command),
        )
        .route(
            "/v5/iot/{project_id}/devices/{device_id}/properties",
            get(device_requests::list_properties).put(device_requests::update_properties),
        )
        .route(
            "/v5/iot/{project_id}/devices/{device_id}/messages",
            get(messages::list).post(device_requests::create_message),
        )
        .route(
            "/v5/iot/{project_id}/devices/{device_id}/shadow",
            get(shadows::show).put(shadows::update_desired),
        )
        .route(
            "/v5/iot/{project_id}/devices/{device_id}/messages/{message_id}",
            get(messages::show),
        )
        .route(
            "/v5/iot/{project_id}/device-group",
            post(device_groups::add).get(device_groups::list),
        )
        .route(
            "/v5/iot/{project_id}/device-group/{group_id}",
            get(device_groups::show).delete(device_groups::delete),
        )
        .route(
            "/v5/iot/{project_id}/device-group/{group_id}/action",
            post(device_groups::action),
        )
        .route(
            "/v5/iot/{project_id}/ota-upgrades/packages",
            post(ota_packages::create).get(ota_packages::list),
        )
        .route(
            "/v5/iot/{project_id}/ota-upgrades/packages/{package_id}",
            get(ota_packages::show).delete(ota_packages::delete),
        )
        .route_layer(middleware::from_fn_with_state(
            state,
            require_signature::<IotdaError>,
        ))
        .layer(crate::panic::catch_panic(IotdaError::Internal))
}

/// axum's `Path`, refusing in IoTDA's envelope.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(IotdaError))]
pub struct Path<T>(pub T);

/// axum's `Multipart`, refusing a body that is not multipart in IoTDA's envelope.
pub struct Multipart(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for Multipart {
    type Rejection = IotdaError;

    async fn from_request(request: Request, state: &S) -> Result<Self, IotdaError> {
        axum::extract::Multipart::from_request(request, state)
            .await
            .map(Multipart)
            .map_err(|r| Refusal::from(r).into())
    }
}

/// The scope an IoTDA request acts in: the path's project (which must be the signing
/// key's project) and the `Instance-Id` header.
pub struct IotdaScope(pub TaskScope);

impl FromRequestParts<AppState> for IotdaScope {
    type Rejection = IotdaError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, IotdaError> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| IotdaError::InvalidInput(e.to_string()))?;
        let project_id = params
            .iter()
            .find(|(k, _)| *k == "project_id")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        if !validate::is_project_id(&project_id) {
            return Err(IotdaError::InvalidInput(
                "project_id must be 1-32 hexadecimal characters.".into(),
            ));
        }
        let principal = parts.extensions.get::<Principal>().ok_or_else(|| {
            IotdaError::Internal("request reached a handler unauthenticated".into())
        })?;
        if !principal.project_id.eq_ignore_ascii_case(&project_id) {
            return Err(IotdaError::Forbidden(format!(
                "Operation not allowed. The access key does not belong to project {project_id}."
            )));
        }
        if let Some(header) = parts.headers.get("x-project-id")
            && !header
                .as_bytes()
                .eq_ignore_ascii_case(project_id.as_bytes())
        {
            return Err(IotdaError::Forbidden(
                "Operation not allowed. X-Project-Id differs from the project in the path.".into(),
            ));
        }
        let instance_id = match parts.headers.get("instance-id") {
            None => String::new(),
            Some(v) => {
                let v = v.to_str().unwrap_or("");
                if !validate::is_instance_id(v) {
                    return Err(IotdaError::InvalidInput(
                        "Instance-Id must be 1-36 letters, digits or '-'.".into(),
                    ));
                }
                v.to_string()
            }
        };
        // The stored project id is canonical (the credential's spelling).
        Ok(IotdaScope(TaskScope::new(
            principal.project_id.clone(),
            instance_id,
        )))
    }
}
