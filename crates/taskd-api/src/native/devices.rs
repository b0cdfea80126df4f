//! `PUT|GET /taskd/v1/{project_id}/devices/{device_id}/attributes`: the legacy device
//! attributes (`deviceType`, `model`, `manufacturerName`) of a registry device in the
//! scope `(project, "")`, what legacy group targets are filtered on. The IoTDA device
//! model has no such fields, so they are set here.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use taskd_core::TaskScope;
use taskd_store::DeviceAttributes;

use super::{NativeError, NativeProject, Path};
use crate::AppState;

const MAX_LEN: usize = 256;

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttributesBody {
    device_type: Option<String>,
    model: Option<String>,
    manufacturer_name: Option<String>,
}

impl From<DeviceAttributes> for AttributesBody {
    fn from(a: DeviceAttributes) -> Self {
        AttributesBody {
            device_type: a.device_type,
            model: a.model,
            manufacturer_name: a.manufacturer_name,
        }
    }
}

pub async fn put_attributes(
    State(state): State<AppState>,
    NativeProject(project_id): NativeProject,
    Path((_, device_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<AttributesBody>, NativeError> {
    let attrs = attributes(
        serde_json::from_slice(&body).map_err(|e| NativeError::MalformedBody(e.to_string()))?,
    )?;
    let scope = TaskScope::new(project_id, "");
    if !state
        .store
        .device_attributes_put(&scope, &device_id, &attrs)
        .await?
    {
        return Err(NativeError::NotFound(format!(
            "The device {device_id} does not exist."
        )));
    }
    Ok(Json(attrs.into()))
}

/// The attributes a PUT body sets, checked; nothing is written unless this succeeds.
pub(crate) fn attributes(b: AttributesBody) -> Result<DeviceAttributes, NativeError> {
    let clean = |name: &str, v: Option<String>| -> Result<Option<String>, NativeError> {
        match v {
            Some(v) if v.chars().count() > MAX_LEN => Err(NativeError::InvalidInput(format!(
                "{name} is longer than {MAX_LEN} characters."
            ))),
            // No store keeps NUL (`taskd_store::text`).
            Some(v) if taskd_store::text::has_nul(&v) => Err(NativeError::InvalidInput(format!(
                "{name} must not contain a NUL character (U+0000)."
            ))),
            Some(v) if v.is_empty() => Ok(None),
            v => Ok(v),
        }
    };
    Ok(DeviceAttributes {
        device_type: clean("deviceType", b.device_type)?,
        model: clean("model", b.model)?,
        manufacturer_name: clean("manufacturerName", b.manufacturer_name)?,
    })
}

pub async fn get_attributes(
    State(state): State<AppState>,
    NativeProject(project_id): NativeProject,
    Path((_, device_id)): Path<(String, String)>,
) -> Result<Json<AttributesBody>, NativeError> {
    let scope = TaskScope::new(project_id, "");
    let found = state
        .store
        .device_attributes_get(&scope, std::slice::from_ref(&device_id))
        .await?;
    let Some((_, attrs)) = found.into_iter().next() else {
        return Err(NativeError::NotFound(format!(
            "The device {device_id} does not exist."
        )));
    };
    Ok(Json(attrs.into()))
}
