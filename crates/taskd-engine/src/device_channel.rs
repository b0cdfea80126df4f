//! The device channel as the engine and the dialects see it: what can be asked of a
//! connected device, without knowing the protocol that carries it.
//!
//! `taskd-mqtt` implements [`DeviceChannel`] (IoTDA's device protocol over MQTT); the
//! IoTDA dialect calls it for synchronous commands, property requests and messages, and
//! the device executor (`executors::device`) for the batch task types that talk to
//! devices. A server without a listener has no channel: those calls answer "offline".

use std::time::Duration;

use async_trait::async_trait;
use taskd_core::TaskScope;
use taskd_store::DeviceMessage;

/// How long a synchronous request waits for the device's answer (IoTDA: 20 s for
/// commands; the same for property requests, spec §6 Q12).
pub const DEVICE_REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// A command for a device (IoTDA `DeviceCommandRequest`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceCommand {
    pub service_id: Option<String>,
    pub command_name: Option<String>,
    /// A JSON object.
    pub paras: serde_json::Value,
}

/// A device's answer to a request: the JSON it published on the response topic.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceReply {
    /// The request id the platform chose (a command's `command_id`).
    pub request_id: String,
    pub payload: serde_json::Value,
}

impl DeviceReply {
    /// The answer's `result_code`; absent (or not a number) means success (spec §2.4).
    pub fn result_code(&self) -> i64 {
        self.payload
            .get("result_code")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The device has no connection (IoTDA `IOTDA.014016`).
    #[error("The device is not online.")]
    Offline,
    /// The device did not answer in time (IoTDA `IOTDA.014111` for commands).
    #[error("The device did not respond within {} seconds.", .0.as_secs())]
    Timeout(Duration),
    /// The device has not subscribed the message's custom topic (IoTDA `IOTDA.014112`).
    #[error("The device has not subscribed to the topic {0}.")]
    NotSubscribed(String),
    /// The connection ended before the request was delivered or answered.
    #[error("The connection to the device was lost: {0}")]
    ConnectionLost(String),
    /// What to send is not what the protocol can carry (e.g. base64 that is not base64).
    #[error("{0}")]
    InvalidRequest(String),
    /// The store failed while the channel recorded the exchange.
    #[error("storage error: {0}")]
    Store(String),
}

/// What taskd can ask of a device. Implementations route to whichever node holds the
/// device's connection.
#[async_trait]
pub trait DeviceChannel: Send + Sync + 'static {
    /// Sends a command and waits up to `timeout` for the device's response.
    async fn command(
        &self,
        scope: &TaskScope,
        device_id: &str,
        request_id: &str,
        command: DeviceCommand,
        timeout: Duration,
    ) -> Result<DeviceReply, ChannelError>;

    /// Sends a property set (`services`: IoTDA's `[{service_id, properties}]`) and waits
    /// for the device's result.
    async fn property_set(
        &self,
        scope: &TaskScope,
        device_id: &str,
        services: serde_json::Value,
        timeout: Duration,
    ) -> Result<DeviceReply, ChannelError>;

    /// Asks the device for its properties (of one service, or all) and waits for them.
    async fn property_get(
        &self,
        scope: &TaskScope,
        device_id: &str,
        service_id: Option<&str>,
        timeout: Duration,
    ) -> Result<DeviceReply, ChannelError>;

    /// Publishes a stored `Pending` message if its device is connected and records the
    /// outcome in the store (`Delivered` on the device's PUBACK, `Failed` if it can't be
    /// delivered). A message for a device that is not connected stays `Pending`: the
    /// channel delivers it when the device connects. Returns the message's status after.
    async fn deliver_message(&self, message: &DeviceMessage) -> Result<(), ChannelError>;

    /// The device's desired shadow changed: pushes what differs from reported as a
    /// property set if the device is connected (else at its next connection).
    async fn desired_changed(&self, scope: &TaskScope, device_id: &str);

    /// Closes the device's connection (it was frozen or deleted).
    async fn disconnect(&self, scope: &TaskScope, device_id: &str);

    /// Whether the device is connected (to any node).
    async fn is_online(&self, scope: &TaskScope, device_id: &str) -> bool;
}

/// The channel of a server without a device listener: every device is offline.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDeviceChannel;

#[async_trait]
impl DeviceChannel for NoDeviceChannel {
    async fn command(
        &self,
        _: &TaskScope,
        _: &str,
        _: &str,
        _: DeviceCommand,
        _: Duration,
    ) -> Result<DeviceReply, ChannelError> {
        Err(ChannelError::Offline)
    }

    async fn property_set(
        &self,
        _: &TaskScope,
        _: &str,
        _: serde_json::Value,
        _: Duration,
    ) -> Result<DeviceReply, ChannelError> {
        Err(ChannelError::Offline)
    }

    async fn property_get(
        &self,
        _: &TaskScope,
        _: &str,
        _: Option<&str>,
        _: Duration,
    ) -> Result<DeviceReply, ChannelError> {
        Err(ChannelError::Offline)
    }

    async fn deliver_message(&self, _: &DeviceMessage) -> Result<(), ChannelError> {
        Ok(())
    }

    async fn desired_changed(&self, _: &TaskScope, _: &str) {}

    async fn disconnect(&self, _: &TaskScope, _: &str) {}

    async fn is_online(&self, _: &TaskScope, _: &str) -> bool {
        false
    }
}
