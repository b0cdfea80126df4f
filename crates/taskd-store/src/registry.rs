//! The device registry's parameter types, its refusals, and the effects the registry task
//! types apply.
//!
//! A registry sub-task (`createDevices`, `deleteDevices`, ...) applies one
//! [`DeviceEffect`] in the same transaction that records the sub-task's result, so the
//! effect happens exactly once across crashes. Each backend has one function applying an
//! effect inside a transaction its caller owns; the store's own device writes call it
//! too, so there is one implementation of each effect.

use taskd_core::{DeviceUpdate, NewDevice, SecretType, TaskScope, Timestamp};

use crate::PageRequest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayFilter {
    pub gateway_id: String,
    /// Every level of sub-devices below the gateway, not only its children.
    pub cascade: bool,
}

/// Device listing filters (IoTDA ListDevices); every one given must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceFilter {
    pub product_id: Option<String>,
    pub node_id: Option<String>,
    pub device_name: Option<String>,
    /// A resource space; the default space can't be named.
    pub app_id: Option<String>,
    /// Sub-devices of a gateway (never the gateway itself).
    pub gateway: Option<GatewayFilter>,
    /// Registered at or after.
    pub created_from: Option<Timestamp>,
    /// Registered at or before.
    pub created_to: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceListParams {
    pub scope: TaskScope,
    pub filter: DeviceFilter,
    pub page: PageRequest,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupFilter {
    pub app_id: Option<String>,
    /// Exact name.
    pub name: Option<String>,
    /// Changed (created, or members added or removed) after this instant.
    pub modified_after: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListParams {
    pub scope: TaskScope,
    pub filter: GroupFilter,
    pub page: PageRequest,
}

/// A device's new primary or secondary secret (IoTDA ResetDeviceSecret), validated by
/// the caller (`taskd_core::device::is_device_secret`).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretReset {
    pub scope: TaskScope,
    pub device_id: String,
    pub secret_type: SecretType,
    /// Never logged (see `Debug`).
    pub secret: String,
}

impl std::fmt::Debug for SecretReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretReset")
            .field("scope", &self.scope)
            .field("device_id", &self.device_id)
            .field("secret_type", &self.secret_type)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why the registry refused a write; nothing was written. Each has the IoTDA error code
/// the device API answers with ([`RegistryRefusal::error_code`]); the HTTP status is the
/// dialect's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegistryRefusal {
    #[error("Invalid input. The device already exists.")]
    DeviceExists,
    #[error("The device does not exist.")]
    DeviceNotFound,
    #[error("Invalid input data. The gateway device does not exist.")]
    GatewayNotFound,
    #[error("Invalid input data. Sub-devices nest at most two levels below a gateway.")]
    GatewayTooDeep,
    #[error("Operation not allowed. The device has sub-devices; delete them first.")]
    HasSubDevices,
    #[error(
        "Operation not allowed. It is not allowed to freeze sub-devices, only gateways or directly connected devices can be frozen."
    )]
    SubDeviceFreeze,
    #[error("Operation not allowed. The device is already frozen.")]
    AlreadyFrozen,
    #[error("Operation not allowed. The device is not frozen, can not unfreeze.")]
    NotFrozen,
    #[error("The device group does not exist.")]
    GroupNotFound,
    #[error("The parent device group does not exist.")]
    SuperGroupNotFound,
    #[error("Invalid input. A device group with this name already exists in the resource space.")]
    GroupNameExists,
    #[error("Operation not allowed. The number of device groups has reached the limit (1000).")]
    GroupLimit,
    #[error(
        "Operation not allowed. The device already belongs to the maximum number of groups (10)."
    )]
    GroupsPerDevice,
    #[error(
        "Operation not allowed. The device group already holds the maximum number of devices (20000)."
    )]
    GroupFull,
    #[error("Operation not allowed. The device group has child groups; delete them first.")]
    GroupHasChildren,
    #[error("Invalid input. Device groups nest at most 5 levels.")]
    GroupTooDeep,
    #[error(
        "Invalid input. The device authenticates with certificates (auth_type CERTIFICATES); it has no secret to reset."
    )]
    NotSecretAuth,
}

impl RegistryRefusal {
    /// The IoTDA error code. Huawei documents 014000, 014031, 014038 and 014040 with these
    /// meanings; the others are taskd's assignment (`docs/iotda.md`).
    pub fn error_code(self) -> &'static str {
        use RegistryRefusal::*;
        match self {
            DeviceNotFound => "IOTDA.014000",
            DeviceExists => "IOTDA.014031",
            GatewayNotFound | GatewayTooDeep | NotSecretAuth => "IOTDA.000006",
            SubDeviceFreeze => "IOTDA.014038",
            AlreadyFrozen => "IOTDA.014039",
            NotFrozen => "IOTDA.014040",
            HasSubDevices => "IOTDA.014041",
            GroupNotFound | SuperGroupNotFound => "IOTDA.015000",
            GroupNameExists => "IOTDA.015001",
            GroupLimit => "IOTDA.015002",
            GroupsPerDevice => "IOTDA.015003",
            GroupFull => "IOTDA.015004",
            GroupHasChildren => "IOTDA.015005",
            GroupTooDeep => "IOTDA.015006",
        }
    }
}

/// What one registry sub-task does to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEffect {
    Create(NewDevice),
    Update {
        device_id: String,
        update: DeviceUpdate,
    },
    Delete {
        device_id: String,
    },
    Freeze {
        device_id: String,
    },
    Unfreeze {
        device_id: String,
    },
}

/// Why an effect was not applied (the sub-task then fails with this code and message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEffectRefused {
    pub error_code: String,
    pub error_msg: String,
}

impl From<RegistryRefusal> for DeviceEffectRefused {
    fn from(r: RegistryRefusal) -> Self {
        DeviceEffectRefused {
            error_code: r.error_code().to_owned(),
            error_msg: r.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_their_code_and_message() {
        let r: DeviceEffectRefused = RegistryRefusal::DeviceExists.into();
        assert_eq!(r.error_code, "IOTDA.014031");
        assert_eq!(r.error_msg, "Invalid input. The device already exists.");
        assert_eq!(RegistryRefusal::NotFrozen.error_code(), "IOTDA.014040");
        assert_eq!(RegistryRefusal::NotSecretAuth.error_code(), "IOTDA.000006");
    }

    #[test]
    fn a_secret_reset_hides_its_secret() {
        let reset = SecretReset {
            scope: TaskScope::new("p", ""),
            device_id: "d".into(),
            secret_type: SecretType::Secondary,
            secret: "very-secret-2".into(),
        };
        assert!(!format!("{reset:?}").contains("very-secret-2"));
    }
}
