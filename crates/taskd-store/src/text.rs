//! The one rule on stored text, shared by every backend so that they accept and refuse
//! the same inputs.
//!
//! PostgreSQL's `text` cannot hold NUL (U+0000): it refuses the whole statement
//! (`invalid byte sequence for encoding "UTF8": 0x00`), even for a lookup. SQLite would
//! store it, but its `LIKE` stops reading a pattern at it. So:
//!
//! * a write whose text holds a NUL is refused before it reaches the database, with
//!   [`StoreError::InvalidText`] naming the field; nothing is written;
//! * a lookup by a key that holds a NUL finds nothing (no stored text can equal it):
//!   `None`, an empty page, "not found", `false`, never an error.
//!
//! Every other character, control characters included, is stored and read back as given.
//! Each backend's `Store` impl applies [`StoredText::check_text`] to what a call writes
//! and [`finds_nothing`] to what it looks up, before its own code runs.

use taskd_core::{
    Credential, DeviceUpdate, NewDevice, NewDeviceGroup, NewOtaPackage, NewTask, NewTaskFile,
    TaskScope,
};

use crate::{
    ClaimParams, DesiredUpdate, DeviceAttributes, DeviceEffect, DeviceSession, DeviceVersions,
    LeaderParams, LegacyApp, LegacyOperation, LegacyTokens, NewDeviceMessage, ReportParams,
    ReportedProperties, RunOutcome, StoreError, StoreResult, TaskInsertParams,
};

/// Whether `s` holds the character no store keeps.
pub fn has_nul(s: &str) -> bool {
    s.contains('\0')
}

/// Whether a lookup by these keys finds nothing because one of them holds a NUL.
pub fn finds_nothing<'a>(keys: impl IntoIterator<Item = &'a str>) -> bool {
    keys.into_iter().any(has_nul)
}

/// [`finds_nothing`] for a scope's two keys and more.
pub fn scope_finds_nothing<'a>(
    scope: &'a TaskScope,
    keys: impl IntoIterator<Item = &'a str>,
) -> bool {
    finds_nothing(
        [scope.project_id.as_str(), scope.instance_id.as_str()]
            .into_iter()
            .chain(keys),
    )
}

/// `Err(StoreError::InvalidText(field))` when `value` holds a NUL.
pub fn check(field: &'static str, value: &str) -> StoreResult<()> {
    if has_nul(value) {
        return Err(StoreError::InvalidText(field));
    }
    Ok(())
}

fn check_opt(field: &'static str, value: &Option<String>) -> StoreResult<()> {
    value.as_deref().map_or(Ok(()), |v| check(field, v))
}

/// Text a store call would write, checked against the rule above.
pub trait StoredText {
    /// `Err(StoreError::InvalidText(field))` for the first field holding a NUL.
    fn check_text(&self) -> StoreResult<()>;
}

impl StoredText for TaskScope {
    fn check_text(&self) -> StoreResult<()> {
        check("project_id", &self.project_id)?;
        check("instance_id", &self.instance_id)
    }
}

impl StoredText for Credential {
    fn check_text(&self) -> StoreResult<()> {
        check("access_key", &self.access_key)?;
        check("secret_key", &self.secret_key)?;
        check("project_id", &self.project_id)
    }
}

impl StoredText for NewTask {
    fn check_text(&self) -> StoreResult<()> {
        self.scope.check_text()?;
        check_opt("app_id", &self.app_id)?;
        check("task name", &self.name)?;
        check("task type", &self.kind)?;
        check_opt("mode", &self.mode)?;
        check_opt("ext_info", &self.ext_info_json)?;
        check_opt("targets", &self.targets_json)?;
        check_opt("targets_filter", &self.targets_filter_json)?;
        check_opt("document", &self.document_json)?;
        check_opt("document_source", &self.document_source)?;
        if let Some(op) = &self.operation {
            check("operation instance_id", &op.instance_id)?;
            check_opt("operation user_name", &op.user_name)?;
            check_opt("operation user_id", &op.user_id)?;
            check_opt("operation target_config", &op.target_config_json)?;
        }
        Ok(())
    }
}

impl StoredText for TaskInsertParams {
    fn check_text(&self) -> StoreResult<()> {
        self.task.check_text()?;
        for sub in &self.sub_tasks {
            check("target", &sub.target)?;
            check_opt("sub-task input", &sub.input_json)?;
        }
        Ok(())
    }
}

impl StoredText for LegacyOperation {
    fn check_text(&self) -> StoreResult<()> {
        check("operateType", &self.operate_type)?;
        check_opt("deviceType", &self.device_type)?;
        check_opt("model", &self.model)?;
        check_opt("manufacturerName", &self.manufacturer_name)
    }
}

impl StoredText for NewTaskFile {
    fn check_text(&self) -> StoreResult<()> {
        self.scope.check_text()?;
        check("file_id", &self.file_id)?;
        check("file_name", &self.file_name)?;
        for column in &self.columns {
            check("task file column", column)?;
        }
        for cell in self.rows.iter().flatten() {
            check("task file cell", cell)?;
        }
        Ok(())
    }
}

impl StoredText for NewDevice {
    fn check_text(&self) -> StoreResult<()> {
        self.scope.check_text()?;
        check("device_id", &self.device_id)?;
        check("node_id", &self.node_id)?;
        check("product_id", &self.product_id)?;
        check_opt("device_name", &self.device_name)?;
        check_opt("description", &self.description)?;
        check_opt("gateway_id", &self.gateway_id)?;
        check_opt("app_id", &self.app_id)?;
        check_opt("secret", &self.secret)?;
        check_opt("fingerprint", &self.fingerprint)?;
        check_opt("extension_info", &self.extension_info_json)
    }
}

impl StoredText for DeviceUpdate {
    fn check_text(&self) -> StoreResult<()> {
        check_opt("device_name", &self.device_name)?;
        check_opt("description", &self.description)?;
        check_opt("extension_info", &self.extension_info_json)
    }
}

impl StoredText for NewDeviceGroup {
    fn check_text(&self) -> StoreResult<()> {
        self.scope.check_text()?;
        check("group_id", &self.group_id)?;
        check("group name", &self.name)?;
        check_opt("group description", &self.description)?;
        check_opt("super_group_id", &self.super_group_id)?;
        check_opt("app_id", &self.app_id)
    }
}

impl StoredText for NewOtaPackage {
    fn check_text(&self) -> StoreResult<()> {
        self.scope.check_text()?;
        check_opt("app_id", &self.app_id)?;
        check("product_id", &self.product_id)?;
        check_opt("module_name", &self.module_name)?;
        check("version", &self.version)?;
        for v in &self.support_source_versions {
            check("support_source_versions", v)?;
        }
        check_opt("package description", &self.description)?;
        check_opt("custom_info", &self.custom_info)?;
        let l = &self.file_location;
        check("region_name", &l.region_name)?;
        check("bucket_name", &l.bucket_name)?;
        check("object_key", &l.object_key)?;
        check("sign_method", &l.sign_method)?;
        check_opt("sign", &l.sign)
    }
}

impl StoredText for DeviceEffect {
    fn check_text(&self) -> StoreResult<()> {
        match self {
            DeviceEffect::Create(device) => device.check_text(),
            DeviceEffect::Update { device_id, update } => {
                check("device_id", device_id)?;
                update.check_text()
            }
            DeviceEffect::Delete { device_id }
            | DeviceEffect::Freeze { device_id }
            | DeviceEffect::Unfreeze { device_id } => check("device_id", device_id),
        }
    }
}

impl StoredText for RunOutcome {
    fn check_text(&self) -> StoreResult<()> {
        match self {
            RunOutcome::Succeeded { output } => check_opt("output", output),
            RunOutcome::Failed {
                error_code,
                error_msg,
                output,
            } => {
                check("error_code", error_code)?;
                check("error_msg", error_msg)?;
                check_opt("output", output)
            }
            RunOutcome::Deferred {
                error_code,
                error_msg,
                ..
            } => {
                check("error_code", error_code)?;
                check("error_msg", error_msg)
            }
        }
    }
}

impl StoredText for ReportParams {
    fn check_text(&self) -> StoreResult<()> {
        for result in &self.results {
            result.outcome.check_text()?;
            if let Some(effect) = &result.effect {
                effect.check_text()?;
            }
        }
        Ok(())
    }
}

impl StoredText for ClaimParams {
    fn check_text(&self) -> StoreResult<()> {
        check("worker_id", &self.worker_id)
    }
}

impl StoredText for LeaderParams {
    fn check_text(&self) -> StoreResult<()> {
        check("leadership name", &self.name)?;
        check("leadership holder", &self.holder)
    }
}

impl StoredText for LegacyApp {
    fn check_text(&self) -> StoreResult<()> {
        check("appId", &self.app_id)?;
        check("project_id", &self.project_id)?;
        check("secret hash", &self.secret_hash)
    }
}

impl StoredText for LegacyTokens {
    fn check_text(&self) -> StoreResult<()> {
        check("appId", &self.app_id)?;
        check("access token hash", &self.access_hash)?;
        check("refresh token hash", &self.refresh_hash)
    }
}

impl StoredText for DeviceAttributes {
    fn check_text(&self) -> StoreResult<()> {
        check_opt("deviceType", &self.device_type)?;
        check_opt("model", &self.model)?;
        check_opt("manufacturerName", &self.manufacturer_name)
    }
}

impl StoredText for DeviceSession {
    fn check_text(&self) -> StoreResult<()> {
        self.scope.check_text()?;
        check("device_id", &self.device_id)?;
        check("session_id", &self.session_id)?;
        check("node_id", &self.node_id)
    }
}

impl StoredText for DeviceVersions {
    fn check_text(&self) -> StoreResult<()> {
        check_opt("fw_version", &self.fw_version)?;
        check_opt("sw_version", &self.sw_version)?;
        check_opt("device_sdk_version", &self.device_sdk_version)
    }
}

impl StoredText for DesiredUpdate {
    fn check_text(&self) -> StoreResult<()> {
        check("service_id", &self.service_id)?;
        check("desired", &self.desired_json)
    }
}

impl StoredText for ReportedProperties {
    fn check_text(&self) -> StoreResult<()> {
        check("service_id", &self.service_id)?;
        check("properties", &self.properties_json)
    }
}

impl StoredText for NewDeviceMessage {
    fn check_text(&self) -> StoreResult<()> {
        self.scope.check_text()?;
        check("device_id", &self.device_id)?;
        check("message_id", &self.message_id)?;
        check_opt("name", &self.name)?;
        check("message", &self.message_json)?;
        check("encoding", &self.encoding)?;
        check("payload_format", &self.payload_format)?;
        check_opt("topic", &self.topic)?;
        check_opt("topic_full_name", &self.topic_full_name)?;
        check_opt("properties", &self.properties_json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_nul_is_refused() {
        assert!(check("f", "a\u{1}\t\n\r\u{1b}\u{7f}\u{fffd}\u{2028}").is_ok());
        assert!(matches!(
            check("f", "a\0b"),
            Err(StoreError::InvalidText("f"))
        ));
        assert!(finds_nothing(["ok", "\0"]));
        assert!(!finds_nothing(["ok", "\u{1}"]));
        let scope = TaskScope::new("p\0", "");
        assert!(scope_finds_nothing(&scope, []));
        assert!(matches!(
            scope.check_text(),
            Err(StoreError::InvalidText("project_id"))
        ));
    }
}
