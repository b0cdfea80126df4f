//! IoTDA's wire vocabulary: its status words and its JSON shapes, mapped to and from the
//! core model in this one place.

use serde::Serialize;
use serde_json::value::RawValue;
use taskd_core::{
    Device, DeviceGroup, OtaPackage, Progress, SecretType, SubTask, SubTaskState, Task, TaskState,
};
use taskd_store::{DeviceMessage, MessageStatus, ShadowService};

use super::error::sub_task_error_code;
use crate::wire_time::{format_compact, format_iso_millis};

/// IoTDA's word for a task state (`Waitting` is spelled as Huawei spells it).
pub fn task_status_word(s: TaskState) -> &'static str {
    match s {
        TaskState::Initializing => "Initializing",
        TaskState::Waiting => "Waitting",
        TaskState::Processing => "Processing",
        TaskState::Stopping => "Stopping",
        TaskState::Succeeded => "Success",
        TaskState::Failed => "Fail",
        TaskState::PartiallySucceeded => "PartialSuccess",
        TaskState::Stopped => "Stopped",
    }
}

pub fn parse_task_status(word: &str) -> Option<TaskState> {
    TaskState::ALL
        .into_iter()
        .find(|s| task_status_word(*s) == word)
}

pub fn sub_task_status_word(s: SubTaskState) -> &'static str {
    match s {
        SubTaskState::Waiting => "Waitting",
        SubTaskState::Processing => "Processing",
        SubTaskState::Succeeded => "Success",
        SubTaskState::Failed => "Fail",
        SubTaskState::RetryWaiting => "FailWaitRetry",
        SubTaskState::Stopped => "Stopped",
        SubTaskState::Removed => "Removed",
    }
}

/// What a `task_detail_status` filter asks for.
pub enum SubTaskStatusFilter {
    State(SubTaskState),
    /// A status IoTDA's OpenAPI lists (`DeviceInProgress`, `Rejected`) that no taskd
    /// sub-task can be in: the filter is valid and matches nothing.
    Unreachable,
}

pub fn parse_sub_task_status(word: &str) -> Option<SubTaskStatusFilter> {
    if matches!(word, "DeviceInProgress" | "Rejected") {
        return Some(SubTaskStatusFilter::Unreachable);
    }
    SubTaskState::ALL
        .into_iter()
        .find(|s| sub_task_status_word(*s) == word)
        .map(SubTaskStatusFilter::State)
}

/// Stored JSON text back to raw JSON for echoing (it was written by us, compact).
fn raw(json: &Option<String>) -> Option<Box<RawValue>> {
    json.as_ref()
        .and_then(|s| RawValue::from_string(s.clone()).ok())
}

#[derive(Serialize)]
pub struct TaskPolicyView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<u32>,
}

#[derive(Serialize)]
pub struct TaskProgressView {
    pub total: i64,
    pub processing: i64,
    pub success: i64,
    pub fail: i64,
    pub waitting: i64,
    pub fail_wait_retry: i64,
    pub stopped: i64,
    pub removed: i64,
}

impl From<&Progress> for TaskProgressView {
    fn from(p: &Progress) -> Self {
        TaskProgressView {
            total: p.total,
            processing: p.processing,
            success: p.succeeded,
            fail: p.failed,
            waitting: p.waiting,
            fail_wait_retry: p.retry_waiting,
            stopped: p.stopped,
            removed: p.removed,
        }
    }
}

/// The `Task` model (also the CreateBatchTask response), fields in the SDK's order.
#[derive(Serialize)]
pub struct TaskView {
    pub task_id: String,
    pub task_name: String,
    pub task_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_mode: Option<String>,
    pub need_confirm: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_ext_info: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targets_filter: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document_source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_policy: Option<TaskPolicyView>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_desc: Option<String>,
    pub task_progress: TaskProgressView,
    pub create_time: String,
}

impl From<&Task> for TaskView {
    fn from(t: &Task) -> Self {
        let has_policy = t.schedule_at.is_some() || t.retry.is_some();
        TaskView {
            task_id: t.id.to_string(),
            task_name: t.name.clone(),
            task_type: t.kind.clone(),
            task_mode: t.mode.clone(),
            need_confirm: t.need_confirm,
            task_ext_info: raw(&t.ext_info_json),
            targets: raw(&t.targets_json),
            targets_filter: raw(&t.targets_filter_json),
            document: raw(&t.document_json),
            document_source: t.document_source.clone(),
            task_policy: has_policy.then(|| TaskPolicyView {
                schedule_time: t.schedule_at.map(format_compact),
                retry_count: t.retry.map(|r| r.count),
                retry_interval: t.retry.map(|r| r.interval_minutes),
            }),
            status: task_status_word(t.state),
            status_desc: t.state_detail.clone(),
            task_progress: (&t.progress).into(),
            create_time: format_compact(t.created_at),
        }
    }
}

#[derive(Serialize)]
pub struct ErrorInfoView {
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
}

#[derive(Serialize)]
pub struct TaskDetailView {
    pub target: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfoView>,
}

impl From<&SubTask> for TaskDetailView {
    fn from(s: &SubTask) -> Self {
        let has_error = s.error_code.is_some() || s.error_msg.is_some();
        TaskDetailView {
            target: s.target.clone(),
            status: sub_task_status_word(s.state),
            output: s.output.clone(),
            error: has_error.then(|| ErrorInfoView {
                error_code: s
                    .error_code
                    .as_deref()
                    .map(|c| sub_task_error_code(c).to_owned()),
                error_msg: s.error_msg.clone(),
            }),
        }
    }
}

#[derive(Serialize)]
pub struct PageView {
    pub count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
}

#[derive(Serialize)]
pub struct BatchTargetResultView {
    pub target: String,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_msg: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(parse_task_status(task_status_word(s)), Some(s));
        }
        assert_eq!(parse_task_status("Waiting"), None);
        assert!(matches!(
            parse_sub_task_status("FailWaitRetry"),
            Some(SubTaskStatusFilter::State(SubTaskState::RetryWaiting))
        ));
        assert!(matches!(
            parse_sub_task_status("Rejected"),
            Some(SubTaskStatusFilter::Unreachable)
        ));
        assert!(parse_sub_task_status("fail").is_none());
    }
}

/// ListBatchTasks response. Typed (not `json!`) so stored documents are written through
/// as raw JSON instead of being parsed into a value tree and printed again.
#[derive(Serialize)]
pub struct ListBatchTasksView {
    pub batchtasks: Vec<TaskView>,
    pub page: PageView,
}

/// ShowBatchTask response.
#[derive(Serialize)]
pub struct ShowBatchTaskView {
    pub batchtask: TaskView,
    pub task_details: Vec<TaskDetailView>,
    pub page: PageView,
}

// ---- the device registry ------------------------------------------------------------------

/// IoTDA's node type: `GATEWAY` for a directly connected device, `ENDPOINT` for a
/// sub-device.
pub fn node_type_word(d: &Device) -> &'static str {
    if d.is_direct() { "GATEWAY" } else { "ENDPOINT" }
}

/// `auth_info` of a device response. The secret appears only in the AddDevice response
/// (where the caller learns a generated one); shown, updated and listed devices never
/// carry it.
#[derive(Serialize)]
pub struct AuthInfoView {
    pub auth_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    pub secure_access: bool,
    pub timeout: u32,
}

/// A device as AddDevice, ShowDevice and UpdateDevice answer it, fields in the SDK's
/// order (`ShowDeviceResponse`). Fields taskd has no data for (product name, tags,
/// modules), and versions and connection times until the device reports or connects,
/// are left out: the SDK reads them as `None`.
#[derive(Serialize)]
pub struct DeviceView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    pub device_id: String,
    pub node_id: String,
    pub gateway_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    pub node_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fw_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sw_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_sdk_version: Option<String>,
    pub auth_info: AuthInfoView,
    pub product_id: String,
    pub status: &'static str,
    /// `yyyyMMdd'T'HHmmss'Z'`, unlike the two times after it (`yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`):
    /// the SDK model documents them so.
    pub create_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_status_update_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension_info: Option<Box<RawValue>>,
}

impl DeviceView {
    /// The device without its secret.
    pub fn of(d: &Device) -> Self {
        DeviceView {
            app_id: d.app_id.clone(),
            device_id: d.device_id.clone(),
            node_id: d.node_id.clone(),
            gateway_id: d.gateway_id.clone(),
            device_name: d.device_name.clone(),
            node_type: node_type_word(d),
            description: d.description.clone(),
            fw_version: d.fw_version.clone(),
            sw_version: d.sw_version.clone(),
            device_sdk_version: d.device_sdk_version.clone(),
            auth_info: AuthInfoView {
                auth_type: d.auth_type.as_str(),
                secret: None,
                fingerprint: d.fingerprint.clone(),
                secure_access: d.secure_access,
                timeout: d.timeout,
            },
            product_id: d.product_id.clone(),
            status: d.status.as_str(),
            create_time: format_compact(d.created_at),
            connection_status_update_time: d.connection_status_update_time.map(format_iso_millis),
            active_time: d.active_time.map(format_iso_millis),
            extension_info: raw(&d.extension_info_json),
        }
    }

    /// The AddDevice response: the device with its secret.
    pub fn created(d: &Device) -> Self {
        let mut view = DeviceView::of(d);
        view.auth_info.secret = d.secret.clone();
        view
    }
}

/// IoTDA's word for a secret type (`ResetDeviceSecret.secret_type`).
pub fn secret_type_word(t: SecretType) -> &'static str {
    match t {
        SecretType::Primary => "PRIMARY",
        SecretType::Secondary => "SECONDARY",
    }
}

pub fn parse_secret_type(word: &str) -> Option<SecretType> {
    [SecretType::Primary, SecretType::Secondary]
        .into_iter()
        .find(|t| secret_type_word(*t) == word)
}

/// The ResetDeviceSecret response (`ResetDeviceSecretResponse`): the secret set, shown
/// this once.
#[derive(Serialize)]
pub struct ResetDeviceSecretView {
    pub device_id: String,
    pub secret: String,
    pub secret_type: &'static str,
}

/// A device in ListDevices (`QueryDeviceSimplify`).
#[derive(Serialize)]
pub struct DeviceSummaryView {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    pub device_id: String,
    pub node_id: String,
    pub gateway_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    pub node_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fw_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sw_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_sdk_version: Option<String>,
    pub product_id: String,
    pub status: &'static str,
}

impl From<&Device> for DeviceSummaryView {
    fn from(d: &Device) -> Self {
        DeviceSummaryView {
            app_id: d.app_id.clone(),
            device_id: d.device_id.clone(),
            node_id: d.node_id.clone(),
            gateway_id: d.gateway_id.clone(),
            device_name: d.device_name.clone(),
            node_type: node_type_word(d),
            description: d.description.clone(),
            fw_version: d.fw_version.clone(),
            sw_version: d.sw_version.clone(),
            device_sdk_version: d.device_sdk_version.clone(),
            product_id: d.product_id.clone(),
            status: d.status.as_str(),
        }
    }
}

#[derive(Serialize)]
pub struct ListDevicesView {
    pub devices: Vec<DeviceSummaryView>,
    pub page: PageView,
}

/// The only group type taskd keeps.
pub const STATIC_GROUP: &str = "STATIC";
pub const DYNAMIC_GROUP: &str = "DYNAMIC";

/// A device group (AddDeviceGroup, ShowDeviceGroup, and the ListDeviceGroups items).
#[derive(Serialize)]
pub struct DeviceGroupView {
    pub group_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub super_group_id: Option<String>,
    pub group_type: &'static str,
}

impl From<&DeviceGroup> for DeviceGroupView {
    fn from(g: &DeviceGroup) -> Self {
        DeviceGroupView {
            group_id: g.group_id.clone(),
            name: g.name.clone(),
            description: g.description.clone(),
            super_group_id: g.super_group_id.clone(),
            group_type: STATIC_GROUP,
        }
    }
}

#[derive(Serialize)]
pub struct ListDeviceGroupsView {
    pub device_groups: Vec<DeviceGroupView>,
    pub page: PageView,
}

// ---- OTA packages (CreateOtaPackage, ShowOtaPackage, ListOtaPackageInfo) -----------------

/// `ShowOtaPackageResponse` (also CreateOtaPackage's), or without `file_location` an
/// `OtaPackageInfo` (the list items). `product_name` is never sent: taskd keeps no
/// products, so it has no name to give (docs/ota.md).
#[derive(Serialize)]
pub struct OtaPackageView {
    pub package_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    pub package_type: &'static str,
    pub product_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_name: Option<String>,
    pub version: String,
    pub support_source_versions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_info: Option<String>,
    /// `yyyyMMdd'T'HHmmss'Z'`.
    pub create_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_location: Option<FileLocationView>,
}

#[derive(Serialize)]
pub struct FileLocationView {
    pub obs_location: ObsLocationView,
}

#[derive(Serialize)]
pub struct ObsLocationView {
    pub region_name: String,
    pub bucket_name: String,
    pub object_key: String,
    pub sign_method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign: Option<String>,
}

impl OtaPackageView {
    /// A list item (`OtaPackageInfo`): no `file_location`.
    pub fn info(p: &OtaPackage) -> Self {
        let n = &p.package;
        OtaPackageView {
            package_id: p.id.to_string(),
            app_id: n.app_id.clone(),
            package_type: n.package_type.as_str(),
            product_id: n.product_id.clone(),
            module_name: n.module_name.clone(),
            version: n.version.clone(),
            support_source_versions: n.support_source_versions.clone(),
            description: n.description.clone(),
            custom_info: n.custom_info.clone(),
            create_time: format_compact(p.created_at),
            file_location: None,
        }
    }

    /// Show and create: with `file_location`.
    pub fn full(p: &OtaPackage) -> Self {
        let l = &p.package.file_location;
        OtaPackageView {
            file_location: Some(FileLocationView {
                obs_location: ObsLocationView {
                    region_name: l.region_name.clone(),
                    bucket_name: l.bucket_name.clone(),
                    object_key: l.object_key.clone(),
                    sign_method: l.sign_method.clone(),
                    sign: l.sign.clone(),
                },
            }),
            ..OtaPackageView::info(p)
        }
    }
}

#[derive(Serialize)]
pub struct ListOtaPackagesView {
    pub packages: Vec<OtaPackageView>,
    pub page: PageView,
}

// ---- device shadows (ShowDeviceShadow, UpdateDeviceShadowDesiredData) ----------------------

/// `DeviceShadowProperties`: a section and when it last changed (`yyyyMMdd'T'HHmmss'Z'`).
#[derive(Serialize)]
pub struct ShadowPropertiesView {
    pub properties: Box<RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_time: Option<String>,
}

impl ShadowPropertiesView {
    fn of(json: &str, event_time: Option<taskd_core::Timestamp>) -> Self {
        ShadowPropertiesView {
            // Stored sections are JSON objects the store wrote itself.
            properties: RawValue::from_string(json.to_owned()).unwrap_or_else(|_| empty_object()),
            event_time: event_time.map(format_compact),
        }
    }
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("{} is JSON")
}

/// `DeviceShadowData`: one service of a shadow.
#[derive(Serialize)]
pub struct ShadowServiceView {
    pub service_id: String,
    pub desired: ShadowPropertiesView,
    pub reported: ShadowPropertiesView,
    pub version: i64,
}

impl From<&ShadowService> for ShadowServiceView {
    fn from(s: &ShadowService) -> Self {
        ShadowServiceView {
            service_id: s.service_id.clone(),
            desired: ShadowPropertiesView::of(&s.desired_json, s.desired_event_time),
            reported: ShadowPropertiesView::of(&s.reported_json, s.reported_event_time),
            version: s.version,
        }
    }
}

/// ShowDeviceShadow and UpdateDeviceShadowDesiredData responses.
#[derive(Serialize)]
pub struct DeviceShadowView {
    pub device_id: String,
    pub shadow: Vec<ShadowServiceView>,
}

impl DeviceShadowView {
    pub fn of(device_id: &str, shadow: &[ShadowService]) -> Self {
        DeviceShadowView {
            device_id: device_id.to_owned(),
            shadow: shadow.iter().map(Into::into).collect(),
        }
    }
}

// ---- device messages (ListDeviceMessages, ShowDeviceMessage) -------------------------------

/// IoTDA's message status words (`DeviceMessage.status`).
pub fn message_status_word(s: MessageStatus) -> &'static str {
    match s {
        MessageStatus::Pending => "PENDING",
        MessageStatus::Delivered => "DELIVERED",
        MessageStatus::Failed => "FAILED",
        MessageStatus::Timeout => "TIMEOUT",
    }
}

/// `ErrorInfoDTO`.
#[derive(Serialize)]
pub struct MessageErrorView {
    pub error_code: String,
    pub error_msg: String,
}

/// `DeviceMessage` (also the ShowDeviceMessage response), fields in the SDK's order. Times
/// are `yyyyMMdd'T'HHmmss'Z'`; `finished_time` once the message is final.
#[derive(Serialize)]
pub struct DeviceMessageView {
    pub message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub message: Box<RawValue>,
    pub encoding: String,
    pub payload_format: String,
    /// The user's topic suffix, or else the full topic the message was sent on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<Box<RawValue>>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_info: Option<MessageErrorView>,
    pub created_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_time: Option<String>,
}

impl From<&DeviceMessage> for DeviceMessageView {
    fn from(m: &DeviceMessage) -> Self {
        let n = &m.message;
        DeviceMessageView {
            message_id: n.message_id.clone(),
            name: n.name.clone(),
            message: RawValue::from_string(n.message_json.clone())
                .unwrap_or_else(|_| empty_object()),
            encoding: n.encoding.clone(),
            payload_format: n.payload_format.clone(),
            topic: n.topic.clone().or_else(|| n.topic_full_name.clone()),
            properties: raw(&n.properties_json),
            status: message_status_word(m.status),
            error_info: m.error.as_ref().map(|(code, msg)| MessageErrorView {
                error_code: code.clone(),
                error_msg: msg.clone(),
            }),
            created_time: format_compact(m.created_at),
            finished_time: m.finished_at.map(format_compact),
        }
    }
}

/// ListDeviceMessages response.
#[derive(Serialize)]
pub struct ListDeviceMessagesView {
    pub device_id: String,
    pub messages: Vec<DeviceMessageView>,
}
