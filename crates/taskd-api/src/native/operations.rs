//! Producing instance operations: `POST /taskd/v1/{project_id}/operations` records one
//! (a task with one sub-task, run by workers like any other), `GET` lists them. Shapes
//! and limits are in `docs/instance-operations.md`; everything is validated before the
//! engine is called.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use taskd_core::{IOTDA_INSTANCE_TYPES, Id, MAX_DOCUMENT_BYTES, OpService, OperateWindow};
use taskd_engine::{EngineError, NewOperation};
use taskd_store::{OpListParams, OpRecord, PageRequest};

use super::{NativeError, NativeProject};
use crate::AppState;
use crate::query::Query;
use crate::wire_time::{format_iso_millis, parse_compact};

const MAX_USER: usize = 64;
const MAX_NAME: usize = 64;
const LIST_LIMIT_MAX: u32 = 100;
const LIST_LIMIT_DEFAULT: u32 = 50;
/// Task types taskd runs itself; an operation of one would be run as a registry effect.
const RESERVED_TYPES: [&str; 5] = [
    "createDevices",
    "deleteDevices",
    "freezeDevices",
    "unfreezeDevices",
    "updateDevices",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Flavor {
    #[serde(rename = "type")]
    kind: String,
    size: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetConfig {
    flavor: Option<Flavor>,
    charge_mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Window {
    start_time: String,
    end_time: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateBody {
    service: String,
    instance_id: String,
    #[serde(rename = "type")]
    kind: String,
    name: Option<String>,
    target: Option<String>,
    params: Option<Value>,
    user_name: Option<String>,
    user_id: Option<String>,
    schedule_time: Option<String>,
    operate_window: Option<Window>,
    target_config: Option<TargetConfig>,
}

fn invalid(msg: impl Into<String>) -> NativeError {
    NativeError::InvalidInput(msg.into())
}

/// `[A-Za-z0-9_]{1,64}`: what workers can claim.
fn is_type(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_text(s: &str, max: usize) -> bool {
    !s.is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
}

/// `[A-Za-z0-9_.:-]{1,128}`.
fn is_target(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

fn is_flavor_type(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

pub(crate) fn validate(project_id: String, b: CreateBody) -> Result<NewOperation, NativeError> {
    let service = OpService::parse(&b.service)
        .ok_or_else(|| invalid("service must be iotda-instance, rabbitmq or swr."))?;
    if !service.is_instance_id(&b.instance_id) {
        return Err(invalid(match service {
            OpService::IotdaInstance => "instance_id must be 1-36 characters of a-f, 0-9 and '-'.",
            _ => "instance_id must be 1-64 letters, digits or '-'.",
        }));
    }
    if !is_type(&b.kind) || RESERVED_TYPES.contains(&b.kind.as_str()) {
        return Err(invalid(
            "type must be 1-64 letters, digits or '_', and not a type taskd runs itself.",
        ));
    }
    if service == OpService::IotdaInstance && !IOTDA_INSTANCE_TYPES.contains(&b.kind.as_str()) {
        return Err(invalid(format!(
            "type of an iotda-instance operation must be one of {}.",
            IOTDA_INSTANCE_TYPES.join(", ")
        )));
    }
    let name = b.name.unwrap_or_else(|| b.kind.clone());
    if !is_text(&name, MAX_NAME) {
        return Err(invalid(format!(
            "name must be 1-{MAX_NAME} printable characters."
        )));
    }
    let target = b.target.unwrap_or_else(|| b.instance_id.clone());
    if !is_target(&target) {
        return Err(invalid("target must be 1-128 letters, digits or _.:-"));
    }
    for (field, v) in [("user_name", &b.user_name), ("user_id", &b.user_id)] {
        if let Some(v) = v
            && !is_text(v, MAX_USER)
        {
            return Err(invalid(format!(
                "{field} must be 1-{MAX_USER} printable characters."
            )));
        }
    }
    let params_json = match b.params {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => {
            let text = v.to_string();
            if text.len() > MAX_DOCUMENT_BYTES {
                return Err(invalid(format!(
                    "params must be at most {MAX_DOCUMENT_BYTES} bytes of JSON."
                )));
            }
            Some(text)
        }
        Some(_) => return Err(invalid("params must be a JSON object.")),
    };
    let schedule_at = b
        .schedule_time
        .as_deref()
        .map(|s| {
            parse_compact(s)
                .ok_or_else(|| invalid("schedule_time must be yyyyMMdd'T'HHmmss'Z' (UTC)."))
        })
        .transpose()?;
    let window = b
        .operate_window
        .map(|w| {
            OperateWindow::parse(&w.start_time, &w.end_time).ok_or_else(|| {
                invalid("operate_window start_time and end_time must be two different HH:mm (UTC).")
            })
        })
        .transpose()?;
    let target_config_json = match b.target_config {
        None => None,
        Some(_) if !(service == OpService::IotdaInstance && b.kind == "MODIFY") => {
            return Err(invalid(
                "target_config is only for iotda-instance MODIFY operations.",
            ));
        }
        Some(tc) => {
            let mut out = serde_json::Map::new();
            if let Some(f) = tc.flavor {
                if !is_flavor_type(&f.kind) {
                    return Err(invalid(
                        "target_config.flavor.type must match ^[A-Za-z0-9-.]{1,64}$.",
                    ));
                }
                if let Some(size) = f.size
                    && !(1..=200).contains(&size)
                {
                    return Err(invalid("target_config.flavor.size must be 1-200."));
                }
                let mut flavor = json!({ "type": f.kind });
                if let Some(size) = f.size {
                    flavor["size"] = json!(size);
                }
                out.insert("flavor".into(), flavor);
            }
            if let Some(mode) = tc.charge_mode {
                if mode != "prePaid" && mode != "postPaid" {
                    return Err(invalid(
                        "target_config.charge_mode must be prePaid or postPaid.",
                    ));
                }
                out.insert("charge_mode".into(), json!(mode));
            }
            Some(Value::Object(out).to_string())
        }
    };
    if service == OpService::IotdaInstance
        && b.kind == "MODIFY"
        && !target_config_json
            .as_deref()
            .is_some_and(|t| t.contains("\"flavor\""))
    {
        return Err(invalid(
            "an iotda-instance MODIFY needs target_config.flavor.",
        ));
    }
    Ok(NewOperation {
        project_id,
        service,
        instance_id: b.instance_id,
        kind: b.kind,
        name,
        target,
        params_json,
        user_name: b.user_name,
        user_id: b.user_id,
        target_config_json,
        window,
        schedule_at,
    })
}

/// The native view of an operation.
fn operation_json(rec: &OpRecord) -> Value {
    let t = &rec.task;
    let op = t.operation.as_ref();
    let sub = rec.sub_task.as_ref();
    json!({
        "operation_id": t.id.to_string(),
        "service": op.map(|o| o.service.as_str()),
        "project_id": t.scope.project_id,
        "instance_id": op.map(|o| o.instance_id.clone()),
        "type": t.kind,
        "name": t.name,
        "target": sub.map(|s| s.target.clone()),
        "params": t.document_json.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
        "user_name": op.and_then(|o| o.user_name.clone()),
        "user_id": op.and_then(|o| o.user_id.clone()),
        "target_config": op
            .and_then(|o| o.target_config_json.as_deref())
            .and_then(|d| serde_json::from_str::<Value>(d).ok()),
        "operate_window": op.and_then(|o| o.window).map(|w| {
            let (s, e) = w.format();
            json!({ "start_time": s, "end_time": e })
        }),
        "state": t.state.as_str(),
        "progress": sub.and_then(|s| s.progress),
        "error_code": sub.and_then(|s| s.error_code.clone()),
        "error_msg": sub.and_then(|s| s.error_msg.clone()),
        "schedule_time": t.schedule_at.map(format_iso_millis),
        "created_at": format_iso_millis(t.created_at),
        "updated_at": format_iso_millis(t.updated_at),
    })
}

pub async fn create(
    State(state): State<AppState>,
    NativeProject(project_id): NativeProject,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), NativeError> {
    let b: CreateBody =
        serde_json::from_slice(&body).map_err(|e| NativeError::MalformedBody(e.to_string()))?;
    let op = validate(project_id, b)?;
    let service = op.service;
    let instance = op.instance_id.clone();
    let task = state
        .engine
        .create_operation(op)
        .await
        .map_err(|e| match e {
            EngineError::InstanceOfAnotherProject(i) => NativeError::Forbidden(format!(
                "Instance {i} of service {} belongs to another project.",
                service.as_str()
            )),
            e => e.into(),
        })?;
    let rec = state
        .store
        .op_get(&service.scope(&task.scope.project_id, &instance), task.id)
        .await?
        .ok_or_else(|| NativeError::Internal(format!("operation {} vanished", task.id)))?;
    Ok((StatusCode::CREATED, Json(operation_json(&rec))))
}

pub async fn list(
    State(state): State<AppState>,
    NativeProject(project_id): NativeProject,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, NativeError> {
    let q = Query::parse(raw.as_deref()).map_err(|e| invalid(e.to_string()))?;
    let service = q
        .get("service")
        .and_then(OpService::parse)
        .ok_or_else(|| invalid("service must be iotda-instance, rabbitmq or swr."))?;
    let instance = q.get("instance_id").unwrap_or("");
    if service != OpService::Swr && !service.is_instance_id(instance) {
        return Err(invalid(
            "instance_id is required and must be a valid instance id.",
        ));
    }
    let limit = match q.get("limit") {
        None => LIST_LIMIT_DEFAULT,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=LIST_LIMIT_MAX).contains(n))
            .ok_or_else(|| invalid(format!("limit must be 1-{LIST_LIMIT_MAX}.")))?,
    };
    let marker = match q.get("marker") {
        None => Id::MAX,
        Some(m) => Id::parse_hex(m).map_err(|_| invalid("marker must be an operation id."))?,
    };
    let page = state
        .store
        .op_list(&OpListParams {
            scope: service.scope(&project_id, instance),
            state: None,
            created_from: None,
            created_to: None,
            page: PageRequest {
                marker,
                offset: 0,
                limit,
            },
        })
        .await?;
    Ok(Json(json!({
        "count": page.count,
        "operations": page.items.iter().map(operation_json).collect::<Vec<_>>(),
    })))
}
