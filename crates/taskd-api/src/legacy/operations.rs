//! Upgrade tasks: create (firmware, software), show, sub-operations, list, and stop
//! (taskd's extension).

use axum::Json;
use axum::extract::{Extension, RawQuery, State};
use serde_json::{Value, json};
use taskd_core::{ControlOp, Id, NewTask, SubTask, SubTaskState, TaskScope};
use taskd_store::{
    GroupFilter, GroupListParams, LegacyOperation, LegacyTask, LegacyTaskListParams, PageRequest,
    SubTaskListParams, TaskControlOutcome,
};

use super::auth::LegacyPrincipal;
use super::error::LegacyError;
use super::validate::{self, Targets};
use super::wire::{self, LegacyDocument, OPERATION_TYPES};
use super::{Body, Path};
use crate::AppState;
use crate::query::Query;

fn scope(p: &LegacyPrincipal) -> TaskScope {
    TaskScope::new(p.project_id.clone(), "")
}

pub async fn create_firmware(
    State(state): State<AppState>,
    Extension(p): Extension<LegacyPrincipal>,
    Body(body): Body,
) -> Result<Json<Value>, LegacyError> {
    create(state, p, "firmware_upgrade", body).await
}

pub async fn create_software(
    State(state): State<AppState>,
    Extension(p): Extension<LegacyPrincipal>,
    Body(body): Body,
) -> Result<Json<Value>, LegacyError> {
    create(state, p, "software_upgrade", body).await
}

async fn create(
    state: AppState,
    p: LegacyPrincipal,
    operate_type: &'static str,
    body: bytes::Bytes,
) -> Result<Json<Value>, LegacyError> {
    let v = validate::create(&body, state.clock.now())?;
    let scope = scope(&p);
    let devices = resolve(&state, &scope, &v.targets).await?;
    let kind = OPERATION_TYPES
        .iter()
        .find(|(t, _)| *t == operate_type)
        .map(|(_, k)| *k)
        .ok_or_else(|| LegacyError::Internal(format!("no kind for {operate_type}")))?;
    let (device_type, model, manufacturer_name) = (
        v.targets_doc.device_type.clone().filter(|s| !s.is_empty()),
        v.targets_doc.model.clone().filter(|s| !s.is_empty()),
        v.targets_doc
            .manufacturer_name
            .clone()
            .filter(|s| !s.is_empty()),
    );
    let doc = LegacyDocument {
        file_id: v.file_id.clone(),
        targets: v.targets_doc,
        policy: v.policy_doc,
    };
    let ext = serde_json::to_string(&doc).map_err(|e| LegacyError::Internal(e.to_string()))?;
    let targets_json =
        serde_json::to_string(&devices).map_err(|e| LegacyError::Internal(e.to_string()))?;
    let new = NewTask {
        scope: scope.clone(),
        app_id: None,
        name: format!("{operate_type} {}", v.file_id),
        kind: kind.to_owned(),
        mode: None,
        need_confirm: false,
        ext_info_json: Some(ext),
        targets_json: Some(targets_json),
        targets_filter_json: None,
        // What a worker gets with each sub-task.
        document_json: Some(
            json!({ "fileId": v.file_id, "operateType": operate_type }).to_string(),
        ),
        document_source: None,
        schedule_at: v.schedule_at,
        retry: v.retry,
        operation: None,
    };
    let task = state
        .engine
        .create_legacy_task(
            new,
            devices,
            LegacyOperation {
                operate_type: operate_type.to_owned(),
                device_type,
                model,
                manufacturer_name,
                deadline_at: v.deadline_at,
            },
        )
        .await?;
    tracing::info!(app_id = %p.app_id, operation_id = %task.id, "legacy upgrade task created");
    Ok(Json(json!({ "operationId": task.id.to_string() })))
}

/// The device ids a task's targets name, in the scope's registry: explicit devices must
/// all exist; groups (by name) give their members whose legacy attributes match.
async fn resolve(
    state: &AppState,
    scope: &TaskScope,
    targets: &Targets,
) -> Result<Vec<String>, LegacyError> {
    match targets {
        Targets::Devices(ids) => {
            let found = state.store.device_attributes_get(scope, ids).await?;
            if found.len() != ids.len() {
                let missing = ids
                    .iter()
                    .find(|id| !found.iter().any(|(f, _)| f == *id))
                    .cloned()
                    .unwrap_or_default();
                return Err(LegacyError::DeviceNotFound(format!("device {missing}")));
            }
            Ok(ids.clone())
        }
        Targets::Groups {
            names,
            device_type,
            model,
            manufacturer_name,
        } => {
            let mut group_ids = Vec::new();
            for name in names {
                let page = state
                    .store
                    .group_list(&GroupListParams {
                        scope: scope.clone(),
                        filter: GroupFilter {
                            name: Some(name.clone()),
                            ..GroupFilter::default()
                        },
                        page: PageRequest {
                            marker: Id::MAX,
                            offset: 0,
                            limit: 50,
                        },
                    })
                    .await?;
                if page.items.is_empty() {
                    return Err(LegacyError::DeviceNotFound(format!("device group {name}")));
                }
                group_ids.extend(page.items.into_iter().map(|g| g.group_id));
            }
            let members = state
                .store
                .device_group_members(scope, &group_ids)
                .await?
                .map_err(|g| LegacyError::DeviceNotFound(format!("device group {g}")))?;
            let matching: Vec<String> = state
                .store
                .device_attributes_get(scope, &members)
                .await?
                .into_iter()
                .filter(|(_, a)| {
                    a.device_type.as_deref() == Some(device_type.as_str())
                        && a.model.as_deref() == Some(model.as_str())
                        && a.manufacturer_name.as_deref() == Some(manufacturer_name.as_str())
                })
                .map(|(id, _)| id)
                .collect();
            if matching.is_empty() {
                return Err(LegacyError::DeviceNotFound(
                    "no device of the groups has this deviceType, model and manufacturerName"
                        .into(),
                ));
            }
            Ok(matching)
        }
    }
}

async fn load(
    state: &AppState,
    p: &LegacyPrincipal,
    operation_id: &str,
) -> Result<LegacyTask, LegacyError> {
    let id = Id::parse_exact(operation_id).ok_or(LegacyError::TaskNotFound)?;
    state
        .store
        .legacy_task_get(&scope(p), id)
        .await?
        .ok_or(LegacyError::TaskNotFound)
}

pub async fn show(
    State(state): State<AppState>,
    Extension(p): Extension<LegacyPrincipal>,
    Path(operation_id): Path<String>,
) -> Result<Json<wire::OperationInfo>, LegacyError> {
    let task = load(&state, &p, &operation_id).await?;
    Ok(Json(wire::operation_info(&task)))
}

fn query(raw: Option<String>) -> Result<Query, LegacyError> {
    Query::parse(raw.as_deref()).map_err(|e| LegacyError::BadRequest(e.to_string()))
}

fn filter_string(q: &Query, name: &str) -> Result<Option<String>, LegacyError> {
    match q.get(name).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(v) => {
            validate::bounded(name, v)?;
            Ok(Some(v.to_owned()))
        }
    }
}

pub async fn sub_operations(
    State(state): State<AppState>,
    Extension(p): Extension<LegacyPrincipal>,
    Path(operation_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LegacyError> {
    let q = query(raw)?;
    let (offset, limit, page_no, page_size) = validate::paging(q.get("pageNo"), q.get("pageSize"))?;
    let states = match filter_string(&q, "subOperationStatus")? {
        None => None,
        Some(word) => Some(wire::sub_task_states(&word).ok_or_else(|| {
            LegacyError::BadRequest(format!("subOperationStatus {word} is not a status"))
        })?),
    };
    let task = load(&state, &p, &operation_id).await?;
    let (items, total) = sub_task_page(&state, &task, states.as_deref(), offset, limit).await?;
    let data: Vec<wire::SubOperationInfo> = items
        .iter()
        .map(|s| wire::sub_operation_info(&task, s))
        .collect();
    Ok(Json(json!({
        "data": data,
        "pageNo": page_no,
        "pageSize": page_size,
        "totalCount": total,
    })))
}

/// One page of a task's sub-tasks in any of `states` (all when `None`), newest first,
/// and the total from the task's counters (nothing is counted). A word standing for two
/// states reads both listings up to the page's end and merges them.
async fn sub_task_page(
    state: &AppState,
    task: &LegacyTask,
    states: Option<&[SubTaskState]>,
    offset: u32,
    limit: u32,
) -> Result<(Vec<SubTask>, i64), LegacyError> {
    let progress = task.task.progress;
    let list = |st: Option<SubTaskState>, offset: u32, limit: u32| {
        let params = SubTaskListParams {
            scope: task.task.scope.clone(),
            task_id: task.task.id,
            state: st,
            target: None,
            page: PageRequest {
                marker: Id::MAX,
                offset,
                limit,
            },
        };
        async move { state.store.sub_task_list(&params).await }
    };
    let Some(states) = states else {
        let page = list(None, offset, limit)
            .await?
            .ok_or(LegacyError::TaskNotFound)?;
        return Ok((page.items, progress.total));
    };
    let total: i64 = states.iter().map(|s| progress.get(*s)).sum();
    if let [only] = states {
        let page = list(Some(*only), offset, limit)
            .await?
            .ok_or(LegacyError::TaskNotFound)?;
        return Ok((page.items, total));
    }
    let end = offset.saturating_add(limit);
    let mut all = Vec::new();
    for s in states {
        if progress.get(*s) == 0 {
            continue;
        }
        let page = list(Some(*s), 0, end)
            .await?
            .ok_or(LegacyError::TaskNotFound)?;
        all.extend(page.items);
    }
    all.sort_unstable_by_key(|s| std::cmp::Reverse(s.id));
    let items = all
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect();
    Ok((items, total))
}

pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<LegacyPrincipal>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LegacyError> {
    let q = query(raw)?;
    let (offset, limit, page_no, page_size) = validate::paging(q.get("pageNo"), q.get("pageSize"))?;
    let operate_type = filter_string(&q, "operationType")?;
    if let Some(t) = &operate_type
        && !OPERATION_TYPES.iter().any(|(w, _)| w == t)
    {
        return Err(LegacyError::BadRequest(format!(
            "operationType {t} is not an operation type"
        )));
    }
    let states = match filter_string(&q, "operationStatus")? {
        None => Vec::new(),
        Some(word) => wire::task_states(&word).ok_or_else(|| {
            LegacyError::BadRequest(format!("operationStatus {word} is not a status"))
        })?,
    };
    let page = state
        .store
        .legacy_task_list(&LegacyTaskListParams {
            scope: scope(&p),
            operate_type,
            states,
            device_type: filter_string(&q, "deviceType")?,
            model: filter_string(&q, "model")?,
            manufacturer_name: filter_string(&q, "manufacturerName")?,
            device_id: filter_string(&q, "deviceId")?,
            offset,
            limit,
        })
        .await?;
    let data: Vec<wire::OperationInfo> = page.items.iter().map(wire::operation_info).collect();
    Ok(Json(json!({
        "data": data,
        "pageNo": page_no,
        "pageSize": page_size,
        "totalCount": page.count,
        // The legacy Java SDK's QueryUpgradeTaskListOutDTO reads this name.
        "totalSize": page.count,
    })))
}

/// `PUT …/operations/{operationId}/stop`: taskd's extension (not in the Huawei API).
pub async fn stop(
    State(state): State<AppState>,
    Extension(p): Extension<LegacyPrincipal>,
    Path(operation_id): Path<String>,
) -> Result<Json<wire::OperationInfo>, LegacyError> {
    let task = load(&state, &p, &operation_id).await?;
    match state
        .engine
        .control(&task.task.scope, task.task.id, ControlOp::Stop, None)
        .await?
    {
        TaskControlOutcome::NotFound => Err(LegacyError::TaskNotFound),
        TaskControlOutcome::TaskStateRefused(st) => Err(LegacyError::BadRequest(format!(
            "a task in status {} can't be stopped",
            wire::task_status(st)
        ))),
        TaskControlOutcome::Applied { .. } => {
            tracing::info!(app_id = %p.app_id, operation_id = %task.task.id, "legacy task stopped");
            let task = load(&state, &p, &operation_id).await?;
            Ok(Json(wire::operation_info(&task)))
        }
    }
}
