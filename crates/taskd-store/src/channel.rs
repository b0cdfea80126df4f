//! What the device channel (MQTT) stores: who may connect, which node holds each
//! device's connection, the versions devices report, device shadows and the
//! platform-to-device messages that wait for their device.
//!
//! Status words and limits are IoTDA's (`../shared/spec/iotda-device-mqtt.md`,
//! `docs/device-channel.md`).

use taskd_core::{AuthType, DeviceStatus, Id, TaskScope, Timestamp};

/// A registered device as the MQTT listener authenticates it: every device with the
/// CONNECT's device id, in any scope (the listener is shared by all projects).
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceLogin {
    pub scope: TaskScope,
    pub device_id: String,
    pub auth_type: AuthType,
    /// Never logged (see `Debug`).
    pub secret: Option<String>,
    /// The secondary secret (ResetDeviceSecret `SECONDARY`), tried when the primary one
    /// fails. Never logged (see `Debug`).
    pub secondary_secret: Option<String>,
    pub secure_access: bool,
    pub status: DeviceStatus,
    /// A directly connected device (not a sub-device: those reach taskd through their
    /// gateway and never connect themselves).
    pub is_direct: bool,
}

impl std::fmt::Debug for DeviceLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceLogin")
            .field("scope", &self.scope)
            .field("device_id", &self.device_id)
            .field("auth_type", &self.auth_type)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field(
                "secondary_secret",
                &self.secondary_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("secure_access", &self.secure_access)
            .field("status", &self.status)
            .field("is_direct", &self.is_direct)
            .finish()
    }
}

/// One MQTT connection of a device, as the store records it: the node holding it, so
/// that traffic issued on another node can be routed there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSession {
    pub scope: TaskScope,
    pub device_id: String,
    /// Unique per connection (a UUID): a kicked connection's late "disconnected" must
    /// not mark the device that reconnected OFFLINE.
    pub session_id: String,
    /// The node (`EngineConfig::node_id`) holding the connection.
    pub node_id: String,
    pub connected_at: Timestamp,
}

/// Why a connected device may not stay connected; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRefusal {
    /// Deleted since it authenticated.
    DeviceNotFound,
    /// Frozen since it authenticated.
    Frozen,
}

/// Versions a device reports (`$ota` `version_report`, `$sdk_info` `sdk_info_report`);
/// `None` leaves the stored value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceVersions {
    pub fw_version: Option<String>,
    pub sw_version: Option<String>,
    pub device_sdk_version: Option<String>,
}

/// Each reported version is kept to this many characters (longer ones are cut: see
/// `Store::device_versions_put`).
pub const MAX_VERSION_CHARS: usize = 256;

// ---- shadows -----------------------------------------------------------------------------

/// At most this many services in one shadow (IoTDA: a shadow update names at most 5
/// services, and the product model bounds the rest; taskd has no product model, so this
/// bounds what reports can add).
pub const MAX_SHADOW_SERVICES: usize = 64;
/// A service id (IoTDA: 1-64 characters); a longer one is [`ShadowRefusal::TooLarge`].
pub const MAX_SERVICE_ID_CHARS: usize = 64;
/// The JSON text of one service's desired or reported properties (IoTDA: 10 KB for a
/// shadow document; taskd keeps each section to this).
pub const MAX_SHADOW_SECTION_BYTES: usize = 10 * 1024;

/// One service of a device shadow. Sections are JSON object texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowService {
    pub service_id: String,
    /// `{}` when nothing is desired.
    pub desired_json: String,
    pub desired_event_time: Option<Timestamp>,
    /// `{}` until the device reports.
    pub reported_json: String,
    pub reported_event_time: Option<Timestamp>,
    /// Bumped by every desired change (IoTDA's optimistic-concurrency `version`).
    pub version: i64,
}

/// A desired-section update of one service: each property is set, a JSON `null` removes
/// it, an empty object clears the section (IoTDA `UpdateDesired`). Every accepted update
/// bumps the service's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredUpdate {
    pub service_id: String,
    /// A JSON object text.
    pub desired_json: String,
    /// When given, the update is refused unless the service's stored version equals it.
    pub expected_version: Option<i64>,
}

/// What a device's property report adds to the reported sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedProperties {
    pub service_id: String,
    /// A JSON object text, merged into the stored section property by property.
    pub properties_json: String,
    pub event_time: Option<Timestamp>,
}

/// Why a shadow write was refused; nothing was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShadowRefusal {
    DeviceNotFound,
    /// `expected_version` differed from the stored version.
    VersionConflict {
        service_id: String,
        stored: i64,
    },
    /// A section would exceed [`MAX_SHADOW_SECTION_BYTES`] or the shadow
    /// [`MAX_SHADOW_SERVICES`].
    TooLarge,
    /// Not a JSON object.
    NotAnObject,
}

// ---- messages ----------------------------------------------------------------------------

/// A platform-to-device message's status (IoTDA `ListDeviceMessages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    /// Waiting for its device to be online.
    Pending,
    Delivered,
    Failed,
    /// Its `ttl` passed before delivery.
    Timeout,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 4] = [
        MessageStatus::Pending,
        MessageStatus::Delivered,
        MessageStatus::Failed,
        MessageStatus::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "PENDING",
            MessageStatus::Delivered => "DELIVERED",
            MessageStatus::Failed => "FAILED",
            MessageStatus::Timeout => "TIMEOUT",
        }
    }

    pub fn parse(s: &str) -> Option<MessageStatus> {
        MessageStatus::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        self != MessageStatus::Pending
    }
}

/// Pending messages kept per device; one more is refused (IoTDA caps a device's cache
/// too; taskd's figure, `docs/device-channel.md`).
pub const MAX_PENDING_MESSAGES_PER_DEVICE: i64 = 1_000;
/// Messages kept per device, newest first; older final ones are purged past this.
pub const MAX_MESSAGES_PER_DEVICE: i64 = 10_000;

/// A message to store for a device (IoTDA `CreateMessage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeviceMessage {
    pub scope: TaskScope,
    pub device_id: String,
    /// The user's `message_id` or a generated UUID; unique per device.
    pub message_id: String,
    pub name: Option<String>,
    /// The message as the user sent it (JSON text of `message`: a string or an object).
    pub message_json: String,
    /// `none` or `base64`.
    pub encoding: String,
    /// `standard` or `raw`.
    pub payload_format: String,
    /// `topic` (suffix under `$oc/devices/{id}/user/`) or `topic_full_name`: the
    /// full topic, resolved by the caller.
    pub topic: Option<String>,
    pub topic_full_name: Option<String>,
    /// JSON text of `properties`, as sent.
    pub properties_json: Option<String>,
    /// After this instant an undelivered message is `Timeout`; `None`: delivered now or
    /// never (ttl 0).
    pub expires_at: Option<Timestamp>,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMessage {
    /// Paging key, creation order.
    pub id: Id,
    pub message: NewDeviceMessage,
    pub status: MessageStatus,
    /// Why it failed (`error_code`, `error_msg`), for `Failed`.
    pub error: Option<(String, String)>,
    pub created_at: Timestamp,
    /// When it became final.
    pub finished_at: Option<Timestamp>,
}

/// Why a message was not stored; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRefusal {
    DeviceNotFound,
    /// The device already has a message with this id.
    DuplicateId,
    /// [`MAX_PENDING_MESSAGES_PER_DEVICE`] reached.
    TooManyPending,
}

// ---- nodes: several taskd processes on one store -------------------------------------------

/// The largest mail one node may send another. Mail carries a device request (a command's
/// parameters, a property set) or its answer; the API bounds those far below this.
pub const MAX_NODE_MAIL_BYTES: usize = 1024 * 1024;
/// Mail waiting for one node; more is refused (a node that stopped reading its mailbox
/// must not fill the database).
pub const MAX_NODE_MAIL_PER_NODE: i64 = 5_000;
/// How long mail may wait at most: later expiries are cut to this (every mail is a
/// request or answer bounded by the 20 s reply timeout).
pub const MAX_NODE_MAIL_TTL_MS: i64 = 120_000;

/// Why mail was not sent; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMailRefusal {
    /// Longer than [`MAX_NODE_MAIL_BYTES`].
    TooLarge,
    /// The node already has [`MAX_NODE_MAIL_PER_NODE`] unread.
    MailboxFull,
}

/// What a sweep of dead nodes ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodesReaped {
    /// Nodes not seen since the deadline, now forgotten.
    pub nodes: u64,
    /// Device sessions they held, now ended (devices OFFLINE).
    pub sessions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_hides_both_secrets() {
        let login = DeviceLogin {
            scope: TaskScope::new("p", ""),
            device_id: "d".into(),
            auth_type: AuthType::Secret,
            secret: Some("primary-secret-1".into()),
            secondary_secret: Some("secondary-secret-2".into()),
            secure_access: false,
            status: DeviceStatus::Online,
            is_direct: true,
        };
        let shown = format!("{login:?}");
        assert!(!shown.contains("primary-secret-1"), "{shown}");
        assert!(!shown.contains("secondary-secret-2"), "{shown}");
    }
}
