//! The device registry: devices and static device groups, as the registry task types
//! (`createDevices`, `deleteDevices`, ...) and the IoTDA device API see them.
//!
//! The field rules ([`check_new_device`], [`check_device_update`], [`check_new_group`])
//! live here, not in a dialect, because two callers hold every device to them: the
//! IoTDA handlers and the engine's task-file rows. The patterns are Huawei's (IoTDA
//! AddDevice, UpdateDevice, AddDeviceGroup); see `docs/iotda.md`.

use crate::clock::Timestamp;
use crate::id::Id;
use crate::task::TaskScope;

/// Huawei's limits for static groups (IoTDA user guide, "Groups").
pub const MAX_GROUPS_PER_SCOPE: i64 = 1_000;
pub const MAX_DEVICES_PER_GROUP: i64 = 20_000;
pub const MAX_GROUPS_PER_DEVICE: i64 = 10;
/// Groups nest at most this many levels (a top-level group is level 1).
pub const MAX_GROUP_DEPTH: i64 = 5;
/// Sub-devices nest at most two levels below a directly connected device.
pub const MAX_SUB_DEVICE_LEVEL: i64 = 2;

/// A device's status as IoTDA reports it. A registered device that never connected is
/// `Inactive`; its first MQTT connection makes it `Online`, and it is `Offline` after its
/// connection ends. Freezing makes it `Frozen` (keeping the status to return to, which
/// connections still change: a frozen device's connection ending leaves it `Offline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceStatus {
    Online,
    Offline,
    Abnormal,
    Inactive,
    Frozen,
}

impl DeviceStatus {
    pub const ALL: [DeviceStatus; 5] = [
        DeviceStatus::Online,
        DeviceStatus::Offline,
        DeviceStatus::Abnormal,
        DeviceStatus::Inactive,
        DeviceStatus::Frozen,
    ];

    /// The stored name (also IoTDA's word).
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Online => "ONLINE",
            DeviceStatus::Offline => "OFFLINE",
            DeviceStatus::Abnormal => "ABNORMAL",
            DeviceStatus::Inactive => "INACTIVE",
            DeviceStatus::Frozen => "FROZEN",
        }
    }

    pub fn parse(s: &str) -> Option<DeviceStatus> {
        DeviceStatus::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// How a device authenticates (IoTDA `auth_info.auth_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    Secret,
    Certificates,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Secret => "SECRET",
            AuthType::Certificates => "CERTIFICATES",
        }
    }

    pub fn parse(s: &str) -> Option<AuthType> {
        [AuthType::Secret, AuthType::Certificates]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// Which of a device's two secrets (IoTDA `ResetDeviceSecret.secret_type`): the password
/// is checked against the primary, then the secondary; either lets the device in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretType {
    Primary,
    Secondary,
}

/// A device to register, validated by [`check_new_device`].
#[derive(Clone, PartialEq, Eq)]
pub struct NewDevice {
    pub scope: TaskScope,
    /// Defaults to `{product_id}_{node_id}` (see [`default_device_id`]).
    pub device_id: String,
    pub node_id: String,
    pub product_id: String,
    pub device_name: Option<String>,
    pub description: Option<String>,
    /// The parent device; `None` for a directly connected device.
    pub gateway_id: Option<String>,
    /// Resource space; `None` is the default space.
    pub app_id: Option<String>,
    pub auth_type: AuthType,
    /// Never logged (see `Debug`), never listed.
    pub secret: Option<String>,
    pub fingerprint: Option<String>,
    pub secure_access: bool,
    pub timeout: u32,
    /// `extension_info` as the JSON text the user sent.
    pub extension_info_json: Option<String>,
}

/// A registered device.
#[derive(Clone, PartialEq, Eq)]
pub struct Device {
    /// Paging key (creation order), shown as `page.marker`.
    pub id: Id,
    pub scope: TaskScope,
    pub device_id: String,
    pub node_id: String,
    pub product_id: String,
    pub device_name: Option<String>,
    pub description: Option<String>,
    /// The parent device; the device itself when directly connected.
    pub gateway_id: String,
    pub app_id: Option<String>,
    pub auth_type: AuthType,
    pub secret: Option<String>,
    pub fingerprint: Option<String>,
    pub secure_access: bool,
    pub timeout: u32,
    pub extension_info_json: Option<String>,
    pub status: DeviceStatus,
    /// The status a frozen device returns to when unfrozen.
    pub status_before_freeze: Option<DeviceStatus>,
    /// Versions the device reported over its connection (`$ota`, `$sdk_info`).
    pub fw_version: Option<String>,
    pub sw_version: Option<String>,
    pub device_sdk_version: Option<String>,
    /// Its first connection (IoTDA `active_time`).
    pub active_time: Option<Timestamp>,
    /// Its last change between ONLINE and OFFLINE.
    pub connection_status_update_time: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Device {
    /// Directly connected (IoTDA node type `GATEWAY`) rather than a sub-device.
    pub fn is_direct(&self) -> bool {
        self.gateway_id == self.device_id
    }
}

/// The fields an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceUpdate {
    pub device_name: Option<String>,
    pub description: Option<String>,
    pub extension_info_json: Option<String>,
    pub secure_access: Option<bool>,
    pub timeout: Option<u32>,
}

/// A static device group to create, validated by [`check_new_group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeviceGroup {
    pub scope: TaskScope,
    /// Generated by the caller: a UUID (36 characters, hex digits and `-`).
    pub group_id: String,
    pub name: String,
    pub description: Option<String>,
    pub super_group_id: Option<String>,
    pub app_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceGroup {
    /// Paging key (creation order).
    pub id: Id,
    pub scope: TaskScope,
    pub group_id: String,
    pub name: String,
    pub description: Option<String>,
    pub super_group_id: Option<String>,
    pub app_id: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A secret never reaches a log line.
fn redacted(secret: &Option<String>) -> Option<&'static str> {
    secret.as_ref().map(|_| "<redacted>")
}

impl std::fmt::Debug for NewDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewDevice")
            .field("scope", &self.scope)
            .field("device_id", &self.device_id)
            .field("node_id", &self.node_id)
            .field("product_id", &self.product_id)
            .field("device_name", &self.device_name)
            .field("description", &self.description)
            .field("gateway_id", &self.gateway_id)
            .field("app_id", &self.app_id)
            .field("auth_type", &self.auth_type)
            .field("secret", &redacted(&self.secret))
            .field("fingerprint", &self.fingerprint)
            .field("secure_access", &self.secure_access)
            .field("timeout", &self.timeout)
            .field("extension_info_json", &self.extension_info_json)
            .finish()
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("id", &self.id)
            .field("scope", &self.scope)
            .field("device_id", &self.device_id)
            .field("node_id", &self.node_id)
            .field("product_id", &self.product_id)
            .field("device_name", &self.device_name)
            .field("description", &self.description)
            .field("gateway_id", &self.gateway_id)
            .field("app_id", &self.app_id)
            .field("auth_type", &self.auth_type)
            .field("secret", &redacted(&self.secret))
            .field("fingerprint", &self.fingerprint)
            .field("secure_access", &self.secure_access)
            .field("timeout", &self.timeout)
            .field("extension_info_json", &self.extension_info_json)
            .field("status", &self.status)
            .field("status_before_freeze", &self.status_before_freeze)
            .field("fw_version", &self.fw_version)
            .field("sw_version", &self.sw_version)
            .field("device_sdk_version", &self.device_sdk_version)
            .field("active_time", &self.active_time)
            .field(
                "connection_status_update_time",
                &self.connection_status_update_time,
            )
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

// ---- field rules ---------------------------------------------------------------------------

pub const MAX_DEVICE_ID_CHARS: usize = 128;
pub const MAX_NODE_ID_CHARS: usize = 64;
pub const MAX_PRODUCT_ID_CHARS: usize = 36;
pub const MAX_DEVICE_NAME_CHARS: usize = 256;
pub const MAX_DEVICE_DESCRIPTION_CHARS: usize = 2048;
pub const MAX_EXTENSION_INFO_CHARS: usize = 1024;
pub const SECRET_CHARS: std::ops::RangeInclusive<usize> = 8..=32;
pub const MAX_GROUP_NAME_CHARS: usize = 64;
pub const MAX_GROUP_DESCRIPTION_CHARS: usize = 64;
pub const MAX_GROUP_ID_CHARS: usize = 36;
pub const MAX_APP_ID_CHARS: usize = 36;

fn chars_in(s: &str, max: usize, ok: impl Fn(char) -> bool) -> bool {
    let n = s.chars().count();
    (1..=max).contains(&n) && s.chars().all(ok)
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_chinese(c: char) -> bool {
    ('\u{4e00}'..='\u{9fa5}').contains(&c)
}

/// `^[a-zA-Z0-9_-]{1,max}$`: device, node, product, gateway and app ids.
pub fn is_word_id(s: &str, max: usize) -> bool {
    chars_in(s, max, is_word)
}

/// Device names and descriptions: Chinese characters, letters, digits and `_?'#().,&%@!-`.
pub fn is_device_text(s: &str, max: usize) -> bool {
    chars_in(s, max, |c| {
        c.is_ascii_alphanumeric() || is_chinese(c) || "_?'#().,&%@!-".contains(c)
    })
}

/// A device secret (primary or secondary): 8-32 letters, digits, `_` or `-`.
pub fn is_device_secret(s: &str) -> bool {
    SECRET_CHARS.contains(&s.chars().count()) && s.chars().all(is_word)
}

/// Group names and descriptions: as device text, and spaces.
pub fn is_group_text(s: &str, max: usize) -> bool {
    chars_in(s, max, |c| {
        c.is_ascii_alphanumeric() || is_chinese(c) || "_? '#().,&%@!-".contains(c)
    })
}

/// Group ids: at most 36 hex digits and `-`.
pub fn is_group_id(s: &str) -> bool {
    chars_in(s, MAX_GROUP_ID_CHARS, |c| c.is_ascii_hexdigit() || c == '-')
}

/// A certificate fingerprint: 40 or 64 hex digits.
pub fn is_fingerprint(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The device id IoTDA gives a device registered without one.
pub fn default_device_id(product_id: &str, node_id: &str) -> String {
    format!("{product_id}_{node_id}")
}

/// Checks every field of a device to register; `Err` says which rule it breaks.
pub fn check_new_device(d: &NewDevice) -> Result<(), String> {
    if !is_word_id(&d.node_id, MAX_NODE_ID_CHARS) {
        return Err(format!(
            "node_id must be 1-{MAX_NODE_ID_CHARS} letters, digits, '_' or '-'."
        ));
    }
    if !is_word_id(&d.product_id, MAX_PRODUCT_ID_CHARS) {
        return Err(format!(
            "product_id must be 1-{MAX_PRODUCT_ID_CHARS} letters, digits, '_' or '-'."
        ));
    }
    // After node_id and product_id: a default device id is made of them.
    if !is_word_id(&d.device_id, MAX_DEVICE_ID_CHARS) {
        return Err(format!(
            "device_id must be 1-{MAX_DEVICE_ID_CHARS} letters, digits, '_' or '-'."
        ));
    }
    check_device_name(d.device_name.as_deref())?;
    check_description(d.description.as_deref())?;
    if let Some(g) = &d.gateway_id
        && !is_word_id(g, MAX_DEVICE_ID_CHARS)
    {
        return Err(format!(
            "gateway_id must be 1-{MAX_DEVICE_ID_CHARS} letters, digits, '_' or '-'."
        ));
    }
    if let Some(a) = &d.app_id
        && !is_word_id(a, MAX_APP_ID_CHARS)
    {
        return Err(format!(
            "app_id must be 1-{MAX_APP_ID_CHARS} letters, digits, '_' or '-'."
        ));
    }
    if let Some(s) = &d.secret {
        if d.auth_type != AuthType::Secret {
            return Err("auth_info.secret is only for auth_type SECRET.".into());
        }
        if !is_device_secret(s) {
            return Err("auth_info.secret must be 8-32 letters, digits, '_' or '-'.".into());
        }
    }
    if let Some(f) = &d.fingerprint {
        if d.auth_type != AuthType::Certificates {
            return Err("auth_info.fingerprint is only for auth_type CERTIFICATES.".into());
        }
        if !is_fingerprint(f) {
            return Err("auth_info.fingerprint must be 40 or 64 hexadecimal characters.".into());
        }
    }
    check_extension_info(d.extension_info_json.as_deref())
}

pub fn check_device_update(u: &DeviceUpdate) -> Result<(), String> {
    check_device_name(u.device_name.as_deref())?;
    check_description(u.description.as_deref())?;
    check_extension_info(u.extension_info_json.as_deref())
}

fn check_device_name(name: Option<&str>) -> Result<(), String> {
    match name {
        Some(n) if !is_device_text(n, MAX_DEVICE_NAME_CHARS) => Err(format!(
            "device_name must be 1-{MAX_DEVICE_NAME_CHARS} Chinese characters, letters, digits or _?'#().,&%@!-."
        )),
        _ => Ok(()),
    }
}

fn check_description(description: Option<&str>) -> Result<(), String> {
    match description {
        Some(d) if !is_device_text(d, MAX_DEVICE_DESCRIPTION_CHARS) => Err(format!(
            "description must be 1-{MAX_DEVICE_DESCRIPTION_CHARS} Chinese characters, letters, digits or _?'#().,&%@!-."
        )),
        _ => Ok(()),
    }
}

fn check_extension_info(json: Option<&str>) -> Result<(), String> {
    match json {
        Some(j) if j.chars().count() > MAX_EXTENSION_INFO_CHARS => Err(format!(
            "extension_info must be at most {MAX_EXTENSION_INFO_CHARS} characters."
        )),
        _ => Ok(()),
    }
}

pub fn check_new_group(g: &NewDeviceGroup) -> Result<(), String> {
    if !is_group_id(&g.group_id) {
        return Err("group_id must be at most 36 hexadecimal characters and '-'.".into());
    }
    if !is_group_text(&g.name, MAX_GROUP_NAME_CHARS) {
        return Err(format!(
            "name must be 1-{MAX_GROUP_NAME_CHARS} Chinese characters, letters, digits, spaces or _?'#().,&%@!-."
        ));
    }
    if let Some(d) = &g.description
        && !is_group_text(d, MAX_GROUP_DESCRIPTION_CHARS)
    {
        return Err(format!(
            "description must be 1-{MAX_GROUP_DESCRIPTION_CHARS} Chinese characters, letters, digits, spaces or _?'#().,&%@!-."
        ));
    }
    if let Some(s) = &g.super_group_id
        && !is_group_id(s)
    {
        return Err("super_group_id must be at most 36 hexadecimal characters and '-'.".into());
    }
    if let Some(a) = &g.app_id
        && !is_word_id(a, MAX_APP_ID_CHARS)
    {
        return Err(format!(
            "app_id must be 1-{MAX_APP_ID_CHARS} letters, digits, '_' or '-'."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn new_device() -> NewDevice {
        NewDevice {
            scope: TaskScope::new("p", ""),
            device_id: "prod_node-1".into(),
            node_id: "node-1".into(),
            product_id: "prod".into(),
            device_name: Some("水表#1".into()),
            description: None,
            gateway_id: None,
            app_id: None,
            auth_type: AuthType::Secret,
            secret: Some("very-secret-1".into()),
            fingerprint: None,
            secure_access: false,
            timeout: 0,
            extension_info_json: None,
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let d = new_device();
        assert!(!format!("{d:?}").contains("very-secret-1"));
        assert!(format!("{d:?}").contains("<redacted>"));
    }

    #[test]
    fn status_words_round_trip() {
        for s in DeviceStatus::ALL {
            assert_eq!(DeviceStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeviceStatus::parse("frozen"), None);
    }

    #[test]
    fn device_rules() {
        assert_eq!(check_new_device(&new_device()), Ok(()));
        let bad = |f: fn(&mut NewDevice)| {
            let mut d = new_device();
            f(&mut d);
            check_new_device(&d).is_err()
        };
        assert!(bad(|d| d.node_id = "a".repeat(65)));
        assert!(bad(|d| d.node_id = "a b".into()));
        assert!(bad(|d| d.node_id = String::new()));
        assert!(bad(|d| d.product_id = "p".repeat(37)));
        assert!(bad(|d| d.device_id = "d".repeat(129)));
        assert!(bad(|d| d.device_name = Some("a b".into())));
        assert!(bad(|d| d.device_name = Some("n".repeat(257))));
        assert!(bad(|d| d.description = Some("d".repeat(2049))));
        assert!(bad(|d| d.secret = Some("short".into())));
        assert!(bad(|d| d.secret = Some("s".repeat(33))));
        assert!(bad(|d| d.fingerprint = Some("ab".repeat(20))));
        assert!(bad(|d| d.extension_info_json = Some("x".repeat(1025))));
        assert!(bad(|d| d.app_id = Some("a.b".into())));
        let mut ok = new_device();
        ok.description = Some("d".repeat(2048));
        ok.node_id = "n".repeat(64);
        assert_eq!(check_new_device(&ok), Ok(()));
        ok.auth_type = AuthType::Certificates;
        ok.secret = None;
        ok.fingerprint = Some("ab".repeat(20));
        assert_eq!(check_new_device(&ok), Ok(()));
    }

    #[test]
    fn group_rules() {
        let g = NewDeviceGroup {
            scope: TaskScope::new("p", ""),
            group_id: "0f6a3e1c-5b2d-4f7e-9a10-3c4d5e6f7a8b".into(),
            name: "water meters (north)".into(),
            description: None,
            super_group_id: None,
            app_id: None,
        };
        assert_eq!(check_new_group(&g), Ok(()));
        let mut long = g.clone();
        long.name = "n".repeat(65);
        assert!(check_new_group(&long).is_err());
        let mut bad_parent = g.clone();
        bad_parent.super_group_id = Some("xyz".into());
        assert!(check_new_group(&bad_parent).is_err());
        assert_eq!(default_device_id("p1", "n1"), "p1_n1");
    }
}
