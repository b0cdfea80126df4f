//! Device shadows: `/v5/iot/{project_id}/devices/{device_id}/shadow` (ShowDeviceShadow,
//! UpdateDeviceShadowDesiredData). The store keeps and merges them; devices report into
//! them over the device channel.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use taskd_store::{DesiredUpdate, MAX_SERVICE_ID_CHARS, MAX_SHADOW_SECTION_BYTES};

use super::batch_tasks::{invalid, parse_json};
use super::devices::{path_device_id, required_body};
use super::error::IotdaError;
use super::wire::DeviceShadowView;
use super::{IotdaScope, Path};
use crate::AppState;

/// Services one UpdateDeviceShadowDesiredData may name (IoTDA: at most 5).
pub const MAX_SERVICES_PER_UPDATE: usize = 5;

pub async fn show(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
) -> Result<Response, IotdaError> {
    let device_id = path_device_id(&raw_id)?;
    let shadow = state
        .store
        .shadow_get(&scope, device_id)
        .await?
        .ok_or(taskd_store::ShadowRefusal::DeviceNotFound)?;
    Ok(Json(DeviceShadowView::of(device_id, &shadow)).into_response())
}

#[derive(Deserialize)]
pub(crate) struct UpdateDesiredBody {
    service_id: Option<String>,
    desired: Option<serde_json::Value>,
    version: Option<i64>,
}

#[derive(Deserialize)]
pub(crate) struct UpdateDesiredsBody {
    shadow: Option<Vec<UpdateDesiredBody>>,
}

/// Validates an UpdateDeviceShadowDesiredData body: 1-5 services, each named once, each
/// `desired` a JSON object within the section limit, `version` not negative.
pub(crate) fn desired_updates(body: UpdateDesiredsBody) -> Result<Vec<DesiredUpdate>, IotdaError> {
    let shadow = body.shadow.ok_or_else(|| invalid("shadow is required."))?;
    if shadow.is_empty() || shadow.len() > MAX_SERVICES_PER_UPDATE {
        return Err(invalid(format!(
            "shadow must name 1-{MAX_SERVICES_PER_UPDATE} services."
        )));
    }
    let mut updates: Vec<DesiredUpdate> = Vec::with_capacity(shadow.len());
    for s in shadow {
        let service_id = s
            .service_id
            .ok_or_else(|| invalid("shadow.service_id is required."))?;
        let n = service_id.chars().count();
        if n == 0 || n > MAX_SERVICE_ID_CHARS || service_id.chars().any(char::is_control) {
            return Err(invalid(format!(
                "shadow.service_id must be 1-{MAX_SERVICE_ID_CHARS} characters, no control characters."
            )));
        }
        if updates.iter().any(|u| u.service_id == service_id) {
            return Err(invalid(format!(
                "shadow.service_id {service_id} is named twice."
            )));
        }
        let desired = match s.desired {
            Some(v @ serde_json::Value::Object(_)) => v.to_string(),
            Some(_) => return Err(invalid("shadow.desired must be a JSON object.")),
            None => return Err(invalid("shadow.desired is required.")),
        };
        if desired.len() > MAX_SHADOW_SECTION_BYTES {
            return Err(invalid(format!(
                "shadow.desired must be at most {MAX_SHADOW_SECTION_BYTES} bytes."
            )));
        }
        if s.version.is_some_and(|v| v < 0) {
            return Err(invalid("shadow.version must not be negative."));
        }
        updates.push(DesiredUpdate {
            service_id,
            desired_json: desired,
            expected_version: s.version,
        });
    }
    Ok(updates)
}

pub async fn update_desired(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, IotdaError> {
    let device_id = path_device_id(&raw_id)?;
    required_body(&body)?;
    let updates = desired_updates(parse_json(&body)?)?;
    let shadow = state
        .store
        .shadow_update_desired(&scope, device_id, updates, state.clock.now())
        .await??;
    // The difference from reported goes to the device as a property set, now if it is
    // connected, else when it connects (spec §2.7).
    state.devices.desired_changed(&scope, device_id).await;
    Ok(Json(DeviceShadowView::of(device_id, &shadow)).into_response())
}
