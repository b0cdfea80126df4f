//! Row types of the device registry tables (`devices`, `device_groups`) and their mapping
//! into `taskd_core`. The default resource space is stored as `''`, never NULL, so it can
//! sit in unique keys; it reads back as `None`.

use taskd_core::{AuthType, Device, DeviceGroup, DeviceStatus, Id, TaskScope, Timestamp};
use taskd_store::StoreResult;

use crate::corrupt;

/// The columns of [`DeviceRow`], for `SELECT`s.
#[macro_export]
macro_rules! device_columns {
    () => {
        "id, project_id, instance_id, device_id, node_id, product_id, device_name, \
         description, gateway_id, root_id, level, app_id, auth_type, secret, fingerprint, \
         secure_access, timeout, extension_info_json, status, status_before_freeze, \
         fw_version, sw_version, device_sdk_version, active_time, \
         connection_status_update_time, created_at, updated_at"
    };
}

/// The columns of [`GroupRow`].
#[macro_export]
macro_rules! group_columns {
    () => {
        "id, project_id, instance_id, group_id, name, description, super_group_id, depth, \
         app_id, created_at, updated_at"
    };
}

#[derive(Debug, sqlx::FromRow)]
pub struct DeviceRow {
    id: i64,
    project_id: String,
    instance_id: String,
    device_id: String,
    node_id: String,
    product_id: String,
    device_name: Option<String>,
    description: Option<String>,
    gateway_id: String,
    /// The directly connected device at the top of the chain (itself when direct).
    pub root_id: String,
    /// 0 for a directly connected device, 1 or 2 for sub-devices.
    pub level: i64,
    app_id: String,
    auth_type: String,
    secret: Option<String>,
    fingerprint: Option<String>,
    secure_access: bool,
    timeout: i64,
    extension_info_json: Option<String>,
    status: String,
    status_before_freeze: Option<String>,
    fw_version: Option<String>,
    sw_version: Option<String>,
    device_sdk_version: Option<String>,
    active_time: Option<i64>,
    connection_status_update_time: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl DeviceRow {
    pub fn into_device(self) -> StoreResult<Device> {
        let id = Id(self.id);
        let status = |s: &str| {
            DeviceStatus::parse(s)
                .ok_or_else(|| corrupt(format!("device {}: unknown status {s:?}", self.device_id)))
        };
        Ok(Device {
            id,
            status: status(&self.status)?,
            status_before_freeze: self
                .status_before_freeze
                .as_deref()
                .map(status)
                .transpose()?,
            auth_type: AuthType::parse(&self.auth_type).ok_or_else(|| {
                corrupt(format!(
                    "device {}: unknown auth type {:?}",
                    self.device_id, self.auth_type
                ))
            })?,
            timeout: u32::try_from(self.timeout)
                .map_err(|_| corrupt(format!("device {}: timeout out of range", self.device_id)))?,
            scope: TaskScope::new(self.project_id, self.instance_id),
            device_id: self.device_id,
            node_id: self.node_id,
            product_id: self.product_id,
            device_name: self.device_name,
            description: self.description,
            gateway_id: self.gateway_id,
            app_id: space(self.app_id),
            secret: self.secret,
            fingerprint: self.fingerprint,
            secure_access: self.secure_access,
            extension_info_json: self.extension_info_json,
            fw_version: self.fw_version,
            sw_version: self.sw_version,
            device_sdk_version: self.device_sdk_version,
            active_time: self.active_time.map(Timestamp),
            connection_status_update_time: self.connection_status_update_time.map(Timestamp),
            created_at: Timestamp(self.created_at),
            updated_at: Timestamp(self.updated_at),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub struct GroupRow {
    id: i64,
    project_id: String,
    instance_id: String,
    group_id: String,
    name: String,
    description: Option<String>,
    super_group_id: Option<String>,
    /// 1 for a top-level group.
    pub depth: i64,
    app_id: String,
    created_at: i64,
    updated_at: i64,
}

impl From<GroupRow> for DeviceGroup {
    fn from(r: GroupRow) -> DeviceGroup {
        DeviceGroup {
            id: Id(r.id),
            scope: TaskScope::new(r.project_id, r.instance_id),
            group_id: r.group_id,
            name: r.name,
            description: r.description,
            super_group_id: r.super_group_id,
            app_id: space(r.app_id),
            created_at: Timestamp(r.created_at),
            updated_at: Timestamp(r.updated_at),
        }
    }
}

/// The stored resource space of a model value: `''` for the default one.
pub fn space_key(app_id: Option<&str>) -> &str {
    app_id.unwrap_or("")
}

fn space(stored: String) -> Option<String> {
    (!stored.is_empty()).then_some(stored)
}
