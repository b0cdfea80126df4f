//! Static device groups: `/v5/iot/{project_id}/device-group[/{group_id}[/action]]`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use taskd_core::device::{MAX_DEVICE_ID_CHARS, check_new_group, is_word_id};
use taskd_core::{NewDeviceGroup, TaskScope};
use taskd_store::{GroupFilter, GroupListParams, Page, RegistryRefusal};

use super::batch_tasks::{app_id_filter, invalid, page_request, parse_json, parse_query};
use super::error::IotdaError;
use super::validate as v;
use super::wire::{DYNAMIC_GROUP, DeviceGroupView, ListDeviceGroupsView, PageView, STATIC_GROUP};
use super::{IotdaScope, Path};
use crate::AppState;
use crate::wire_time::parse_compact;

#[derive(Deserialize)]
pub(crate) struct AddDeviceGroupBody {
    name: Option<String>,
    description: Option<String>,
    super_group_id: Option<String>,
    app_id: Option<String>,
    group_type: Option<String>,
    dynamic_group_rule: Option<String>,
}

fn path_group_id(raw: &str) -> Result<&str, IotdaError> {
    if !v::is_group_id(raw) {
        return Err(invalid(
            "group_id must be at most 36 hexadecimal characters and '-'.",
        ));
    }
    Ok(raw)
}

pub async fn add(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    body: Bytes,
) -> Result<Response, IotdaError> {
    if body.is_empty() {
        return Err(IotdaError::MalformedBody("A JSON body is required.".into()));
    }
    let group = new_group(scope, parse_json(&body)?)?;
    let group = state.store.group_insert(group, state.clock.now()).await??;
    Ok((StatusCode::CREATED, Json(DeviceGroupView::from(&group))).into_response())
}

/// Validates an AddDeviceGroup body against every IoTDA rule; nothing is written unless
/// this succeeds.
pub(crate) fn new_group(
    scope: TaskScope,
    body: AddDeviceGroupBody,
) -> Result<NewDeviceGroup, IotdaError> {
    match body.group_type.as_deref() {
        None | Some(STATIC_GROUP) => {}
        Some(DYNAMIC_GROUP) => {
            return Err(invalid(
                "group_type DYNAMIC is not supported: taskd keeps static groups only.",
            ));
        }
        Some(_) => return Err(invalid("group_type must be STATIC or DYNAMIC.")),
    }
    if body.dynamic_group_rule.is_some() {
        return Err(invalid("dynamic_group_rule is only for DYNAMIC groups."));
    }
    let group = NewDeviceGroup {
        scope,
        group_id: uuid::Uuid::new_v4().to_string(),
        name: body.name.ok_or_else(|| invalid("name is required."))?,
        description: body.description,
        super_group_id: body.super_group_id,
        app_id: body.app_id,
    };
    check_new_group(&group).map_err(invalid)?;
    Ok(group)
}

pub async fn show(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
) -> Result<Response, IotdaError> {
    let group_id = path_group_id(&raw_id)?;
    let group = state
        .store
        .group_get(&scope, group_id)
        .await?
        .ok_or(RegistryRefusal::GroupNotFound)?;
    Ok(Json(DeviceGroupView::from(&group)).into_response())
}

pub async fn list(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    RawQuery(raw): RawQuery,
) -> Result<Response, IotdaError> {
    let query = parse_query(raw.as_deref())?;
    let page = page_request(&query)?;
    let mut filter = GroupFilter {
        app_id: app_id_filter(&query)?,
        ..GroupFilter::default()
    };
    if let Some(name) = query.get("name") {
        if !v::is_group_name(name) {
            return Err(invalid(
                "name must be 1-64 Chinese characters, letters, digits, spaces or _?'#().,&%@!-.",
            ));
        }
        filter.name = Some(name.to_string());
    }
    if let Some(t) = query.get("last_modified_time") {
        filter.modified_after = Some(parse_compact(t).ok_or_else(|| {
            IotdaError::InvalidTime(format!(
                "last_modified_time {t} is not a time in yyyyMMdd'T'HHmmss'Z'."
            ))
        })?);
    }
    let only_dynamic = match query.get("group_type") {
        None | Some(STATIC_GROUP) => false,
        Some(DYNAMIC_GROUP) => true,
        Some(_) => return Err(invalid("group_type must be STATIC or DYNAMIC.")),
    };
    let result = if only_dynamic {
        // A valid filter that matches nothing: there are no dynamic groups.
        Page {
            items: Vec::new(),
            count: 0,
        }
    } else {
        state
            .store
            .group_list(&GroupListParams {
                scope,
                filter,
                page,
            })
            .await?
    };
    let marker = result.items.last().map(|g| g.id.to_string());
    Ok(Json(ListDeviceGroupsView {
        device_groups: result.items.iter().map(DeviceGroupView::from).collect(),
        page: PageView {
            count: result.count,
            marker,
        },
    })
    .into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
) -> Result<Response, IotdaError> {
    let group_id = path_group_id(&raw_id)?;
    state.store.group_delete(&scope, group_id).await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `?action_id=addDevice|removeDevice&device_id=...`: adds a registered device to the
/// group or removes it (the device stays registered).
pub async fn action(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, IotdaError> {
    let group_id = path_group_id(&raw_id)?;
    let query = parse_query(raw.as_deref())?;
    let add = match query.get("action_id") {
        Some("addDevice") => true,
        Some("removeDevice") => false,
        Some(_) => return Err(invalid("action_id must be addDevice or removeDevice.")),
        None => return Err(invalid("action_id is required.")),
    };
    let device_id = match query.get("device_id") {
        Some(d) if is_word_id(d, MAX_DEVICE_ID_CHARS) => d,
        Some(_) => {
            return Err(invalid(format!(
                "device_id must be 1-{MAX_DEVICE_ID_CHARS} letters, digits, '_' or '-'."
            )));
        }
        None => return Err(invalid("device_id is required.")),
    };
    let now = state.clock.now();
    if add {
        state
            .store
            .group_add_device(&scope, group_id, device_id, now)
            .await??;
    } else {
        state
            .store
            .group_remove_device(&scope, group_id, device_id, now)
            .await??;
    }
    Ok(StatusCode::OK.into_response())
}
