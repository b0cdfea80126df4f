//! Devices: `/v5/iot/{project_id}/devices[/{device_id}[/freeze|/unfreeze|/action]]`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use taskd_core::device::{
    MAX_APP_ID_CHARS, MAX_DEVICE_ID_CHARS, SECRET_CHARS, check_device_update, check_new_device,
    default_device_id, is_device_secret, is_word_id,
};
use taskd_core::{AuthType, DeviceUpdate, NewDevice, SecretType, TaskScope};
use taskd_store::{DeviceFilter, DeviceListParams, GatewayFilter, RegistryRefusal, SecretReset};

use super::batch_tasks::{invalid, page_request, parse_json, parse_query};
use super::error::IotdaError;
use super::validate as v;
use super::wire::{
    DeviceSummaryView, DeviceView, ListDevicesView, PageView, ResetDeviceSecretView,
    parse_secret_type, secret_type_word,
};
use super::{IotdaScope, Path};
use crate::AppState;
use crate::wire_time::parse_compact;

#[derive(Deserialize)]
struct AuthInfoBody {
    auth_type: Option<String>,
    secret: Option<String>,
    fingerprint: Option<String>,
    secure_access: Option<bool>,
    timeout: Option<i64>,
}

#[derive(Deserialize)]
pub(crate) struct AddDeviceBody {
    device_id: Option<String>,
    node_id: Option<String>,
    device_name: Option<String>,
    product_id: Option<String>,
    auth_info: Option<AuthInfoBody>,
    description: Option<String>,
    gateway_id: Option<String>,
    app_id: Option<String>,
    extension_info: Option<serde_json::Value>,
    /// Initial shadow: taskd keeps no shadows; accepted and not kept (docs/iotda.md).
    #[expect(dead_code, reason = "read so the body is accepted, never used")]
    shadow: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct UpdateAuthInfoBody {
    secure_access: Option<bool>,
    timeout: Option<i64>,
}

#[derive(Deserialize)]
pub(crate) struct UpdateDeviceBody {
    device_name: Option<String>,
    description: Option<String>,
    extension_info: Option<serde_json::Value>,
    auth_info: Option<UpdateAuthInfoBody>,
}

/// `ResetDeviceSecret`: every field optional.
#[derive(Deserialize, Default)]
struct ResetDeviceSecretBody {
    secret: Option<String>,
    force_disconnect: Option<bool>,
    secret_type: Option<String>,
}

pub(crate) fn required_body(body: &Bytes) -> Result<(), IotdaError> {
    if body.is_empty() {
        return Err(IotdaError::MalformedBody("A JSON body is required.".into()));
    }
    Ok(())
}

/// `extension_info` must be a JSON object; kept as its text.
fn extension_info(value: Option<serde_json::Value>) -> Result<Option<String>, IotdaError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v @ serde_json::Value::Object(_)) => Ok(Some(v.to_string())),
        Some(_) => Err(invalid("extension_info must be a JSON object.")),
    }
}

fn timeout(t: Option<i64>) -> Result<Option<u32>, IotdaError> {
    match t {
        None => Ok(None),
        Some(t) if v::DEVICE_TIMEOUT.contains(&t) => Ok(Some(t as u32)),
        Some(_) => Err(invalid(
            "auth_info.timeout must be an integer in 0-2147483647 (seconds).",
        )),
    }
}

/// A device id from the path: malformed is a 400; well-formed and unknown a 404 (later).
pub(crate) fn path_device_id(raw: &str) -> Result<&str, IotdaError> {
    if !is_word_id(raw, MAX_DEVICE_ID_CHARS) {
        return Err(invalid(format!(
            "device_id must be 1-{MAX_DEVICE_ID_CHARS} letters, digits, '_' or '-'."
        )));
    }
    Ok(raw)
}

/// Validates an AddDevice body against every IoTDA rule; nothing is written unless this
/// succeeds. Without a secret, a SECRET device gets a generated one (shown once, in the
/// response).
pub(crate) fn new_device(scope: TaskScope, body: AddDeviceBody) -> Result<NewDevice, IotdaError> {
    let node_id = body
        .node_id
        .ok_or_else(|| invalid("node_id is required."))?;
    let product_id = body
        .product_id
        .ok_or_else(|| invalid("product_id is required."))?;
    let auth = body.auth_info;
    let auth_type = match auth.as_ref().and_then(|a| a.auth_type.as_deref()) {
        None => AuthType::Secret,
        Some(t) => AuthType::parse(t)
            .ok_or_else(|| invalid("auth_info.auth_type must be SECRET or CERTIFICATES."))?,
    };
    let given_secret = auth.as_ref().and_then(|a| a.secret.clone());
    let secret = match (auth_type, given_secret) {
        (AuthType::Secret, None) => Some(generated_secret()),
        (_, s) => s,
    };
    let device = NewDevice {
        device_id: body
            .device_id
            .unwrap_or_else(|| default_device_id(&product_id, &node_id)),
        scope,
        node_id,
        product_id,
        device_name: body.device_name,
        description: body.description,
        gateway_id: body.gateway_id,
        app_id: body.app_id,
        auth_type,
        secret,
        fingerprint: auth.as_ref().and_then(|a| a.fingerprint.clone()),
        secure_access: auth.as_ref().and_then(|a| a.secure_access).unwrap_or(false),
        timeout: timeout(auth.as_ref().and_then(|a| a.timeout))?.unwrap_or(0),
        extension_info_json: extension_info(body.extension_info)?,
    };
    check_new_device(&device).map_err(invalid)?;
    Ok(device)
}

/// A secret the platform makes when none is given: 32 hex digits, as AddDevice's.
fn generated_secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Reads and validates a ResetDeviceSecret body against every IoTDA rule (an empty body
/// is every field's default, as `{}`); nothing is written unless this succeeds. Without
/// a secret, one is generated (shown once, in the response). Returns the reset and
/// whether the device's connection is to be closed (`force_disconnect`, default false).
pub(crate) fn secret_reset(
    scope: TaskScope,
    device_id: &str,
    body: &[u8],
) -> Result<(SecretReset, bool), IotdaError> {
    let body: ResetDeviceSecretBody = if body.is_empty() {
        ResetDeviceSecretBody::default()
    } else {
        parse_json(body)?
    };
    let secret_type = match body.secret_type.as_deref() {
        None => SecretType::Primary,
        Some(t) => parse_secret_type(t)
            .ok_or_else(|| invalid("secret_type must be PRIMARY or SECONDARY."))?,
    };
    let secret = match body.secret {
        None => generated_secret(),
        Some(s) if is_device_secret(&s) => s,
        Some(_) => {
            return Err(invalid(format!(
                "secret must be {}-{} letters, digits, '_' or '-'.",
                SECRET_CHARS.start(),
                SECRET_CHARS.end()
            )));
        }
    };
    let reset = SecretReset {
        scope,
        device_id: device_id.to_owned(),
        secret_type,
        secret,
    };
    Ok((reset, body.force_disconnect.unwrap_or(false)))
}

/// 404 `IOTDA.014000` unless the device exists in the scope: what a device's own
/// resources (messages, commands, properties) answer before anything else.
pub(crate) async fn require_device(
    state: &AppState,
    scope: &TaskScope,
    device_id: &str,
) -> Result<(), IotdaError> {
    state
        .store
        .device_get(scope, device_id)
        .await?
        .ok_or(RegistryRefusal::DeviceNotFound)?;
    Ok(())
}

pub async fn add(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    body: Bytes,
) -> Result<Response, IotdaError> {
    required_body(&body)?;
    let device = new_device(scope, parse_json(&body)?)?;
    let device = state
        .store
        .device_insert(device, state.clock.now())
        .await??;
    Ok((StatusCode::CREATED, Json(DeviceView::created(&device))).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
) -> Result<Response, IotdaError> {
    let device_id = path_device_id(&raw_id)?;
    let device = state
        .store
        .device_get(&scope, device_id)
        .await?
        .ok_or(RegistryRefusal::DeviceNotFound)?;
    Ok(Json(DeviceView::of(&device)).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    RawQuery(raw): RawQuery,
) -> Result<Response, IotdaError> {
    let query = parse_query(raw.as_deref())?;
    let page = page_request(&query)?;
    let word = |name: &str, max: usize| -> Result<Option<String>, IotdaError> {
        match query.get(name) {
            None => Ok(None),
            Some(s) if is_word_id(s, max) => Ok(Some(s.to_string())),
            Some(_) => Err(invalid(format!(
                "{name} must be 1-{max} letters, digits, '_' or '-'."
            ))),
        }
    };
    let mut filter = DeviceFilter {
        product_id: word("product_id", 36)?,
        node_id: word("node_id", 64)?,
        app_id: word("app_id", MAX_APP_ID_CHARS)?,
        ..DeviceFilter::default()
    };
    if let Some(name) = query.get("device_name") {
        if !v::is_device_name(name) {
            return Err(invalid(
                "device_name must be 1-256 Chinese characters, letters, digits or _?'#().,&%@!-.",
            ));
        }
        filter.device_name = Some(name.to_string());
    }
    let cascade = match query.get("is_cascade_query") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(invalid("is_cascade_query must be true or false.")),
    };
    // Only with gateway_id (as IoTDA: "effective only together with gateway_id").
    filter.gateway = word("gateway_id", MAX_DEVICE_ID_CHARS)?.map(|gateway_id| GatewayFilter {
        gateway_id,
        cascade,
    });
    let time = |name: &str| match query.get(name) {
        None => Ok(None),
        Some(s) => parse_compact(s).map(Some).ok_or_else(|| {
            IotdaError::InvalidTime(format!("{name} {s} is not a time in yyyyMMdd'T'HHmmss'Z'."))
        }),
    };
    filter.created_from = time("start_time")?;
    // The end second is included whole.
    filter.created_to = time("end_time")?.map(|t| t.plus_millis(999));
    if let (Some(from), Some(to)) = (filter.created_from, filter.created_to)
        && from > to
    {
        return Err(IotdaError::TimeRange);
    }
    let result = state
        .store
        .device_list(&DeviceListParams {
            scope,
            filter,
            page,
        })
        .await?;
    let marker = result.items.last().map(|d| d.id.to_string());
    Ok(Json(ListDevicesView {
        devices: result.items.iter().map(DeviceSummaryView::from).collect(),
        page: PageView {
            count: result.count,
            marker,
        },
    })
    .into_response())
}

/// Validates an UpdateDevice body against every IoTDA rule; nothing is written unless
/// this succeeds.
pub(crate) fn device_update(body: UpdateDeviceBody) -> Result<DeviceUpdate, IotdaError> {
    let update = DeviceUpdate {
        device_name: body.device_name,
        description: body.description,
        extension_info_json: extension_info(body.extension_info)?,
        secure_access: body.auth_info.as_ref().and_then(|a| a.secure_access),
        timeout: timeout(body.auth_info.as_ref().and_then(|a| a.timeout))?,
    };
    check_device_update(&update).map_err(invalid)?;
    Ok(update)
}

pub async fn update(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, IotdaError> {
    let device_id = path_device_id(&raw_id)?;
    required_body(&body)?;
    let update = device_update(parse_json(&body)?)?;
    let device = state
        .store
        .device_update(&scope, device_id, update, state.clock.now())
        .await??;
    Ok(Json(DeviceView::of(&device)).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
) -> Result<Response, IotdaError> {
    let device_id = path_device_id(&raw_id)?;
    state
        .store
        .device_delete(&scope, device_id, state.clock.now())
        .await??;
    // A deleted device's connection ends (spec §1.6).
    state.devices.disconnect(&scope, device_id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn freeze(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
) -> Result<Response, IotdaError> {
    let device_id = path_device_id(&raw_id)?;
    state
        .store
        .device_freeze(&scope, device_id, state.clock.now())
        .await??;
    // A frozen device can no longer be connected (spec §1.7).
    state.devices.disconnect(&scope, device_id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn unfreeze(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
) -> Result<Response, IotdaError> {
    let device_id = path_device_id(&raw_id)?;
    state
        .store
        .device_unfreeze(&scope, device_id, state.clock.now())
        .await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `?action_id=resetSecret` (ResetDeviceSecret): sets the device's primary or secondary
/// secret and answers it; with `force_disconnect` the device's connection is closed, so it
/// connects again with a secret it now holds.
pub async fn action(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Result<Response, IotdaError> {
    let device_id = path_device_id(&raw_id)?;
    let query = parse_query(raw.as_deref())?;
    match query.get("action_id") {
        Some("resetSecret") => {}
        Some(_) => return Err(invalid("action_id must be resetSecret.")),
        None => return Err(invalid("action_id is required.")),
    }
    let (reset, force_disconnect) = secret_reset(scope, device_id, &body)?;
    state
        .store
        .device_reset_secret(&reset, state.clock.now())
        .await??;
    if force_disconnect {
        // The device connects again, with a secret it holds now (spec §1.6).
        state.devices.disconnect(&reset.scope, device_id).await;
    }
    Ok(Json(ResetDeviceSecretView {
        device_id: reset.device_id.clone(),
        secret_type: secret_type_word(reset.secret_type),
        secret: reset.secret,
    })
    .into_response())
}
