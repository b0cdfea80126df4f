//! The device executor: the batch task types that talk to devices over the device
//! channel (`createCommands`, `createAsyncCommands`, `createMessages`,
//! `updateDeviceShadows`), with the success and failure rules of spec §3.
//!
//! It runs only on a server with a device listener (`taskd serve --mqtt-listen`): without
//! one, these task types stay what they were before taskd held device connections, work
//! for external workers. Each sub-task is one device exchange, so a batch runs its
//! sub-tasks concurrently ([`Executor::CONCURRENT`]); a device that does not answer holds
//! only its own sub-task, for at most the 20 s reply timeout.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use taskd_core::Clock;
use taskd_store::{
    ClaimedSubTask, DesiredUpdate, MessageRefusal, MessageStatus, NewDeviceMessage, ShadowRefusal,
    Store,
};

use super::{Executed, Executor, TaskTypes};
use crate::SubTaskErrorKind;
use crate::device_channel::{ChannelError, DEVICE_REPLY_TIMEOUT, DeviceChannel, DeviceCommand};

/// The task types the device executor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceTaskType {
    CreateCommands,
    /// Huawei runs these for NB-IoT devices only; for MQTT devices taskd delivers them on
    /// the command topic like synchronous ones (spec §6 Q14).
    CreateAsyncCommands,
    CreateMessages,
    UpdateDeviceShadows,
}

impl TaskTypes for DeviceTaskType {
    const ALL: &'static [Self] = &[
        DeviceTaskType::CreateCommands,
        DeviceTaskType::CreateAsyncCommands,
        DeviceTaskType::CreateMessages,
        DeviceTaskType::UpdateDeviceShadows,
    ];

    fn name(self) -> &'static str {
        match self {
            DeviceTaskType::CreateCommands => "createCommands",
            DeviceTaskType::CreateAsyncCommands => "createAsyncCommands",
            DeviceTaskType::CreateMessages => "createMessages",
            DeviceTaskType::UpdateDeviceShadows => "updateDeviceShadows",
        }
    }
}

/// Messages of a `createMessages` task live this long undelivered (IoTDA's default
/// `ttl`, 1440 minutes) unless the document says otherwise.
const DEFAULT_MESSAGE_TTL_MINUTES: i64 = 1440;
/// A device's answer kept in a sub-task's error message at most this long.
const MAX_ANSWER_IN_MESSAGE: usize = 1024;

/// taskd's executor of the device task types.
#[derive(Clone)]
pub struct Devices {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    channel: Arc<dyn DeviceChannel>,
}

impl Devices {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        channel: Arc<dyn DeviceChannel>,
    ) -> Self {
        Devices {
            store,
            clock,
            channel,
        }
    }
}

fn failed(kind: SubTaskErrorKind, message: impl Into<String>) -> Executed {
    Executed::Failed {
        kind,
        message: message.into(),
    }
}

fn channel_failure(e: ChannelError) -> Executed {
    let kind = match &e {
        ChannelError::Offline | ChannelError::ConnectionLost(_) => SubTaskErrorKind::DeviceOffline,
        ChannelError::Timeout(_) => SubTaskErrorKind::DeviceTimeout,
        ChannelError::NotSubscribed(_) => SubTaskErrorKind::NotSubscribed,
        ChannelError::InvalidRequest(_) | ChannelError::Store(_) => SubTaskErrorKind::InvalidInput,
    };
    failed(kind, e.to_string())
}

fn document(sub_task: &ClaimedSubTask) -> Value {
    sub_task
        .task
        .document_json
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok())
        .unwrap_or(Value::Null)
}

fn opt_string(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl Executor for Devices {
    type TaskType = DeviceTaskType;
    const NAME: &'static str = "taskd-devices";
    /// Sub-tasks per claim; all of them wait on devices at once.
    const BATCH: u32 = 500;
    const CONCURRENT: bool = true;
    /// The longest exchange (a 20 s reply timeout, a 20 s PUBACK wait) with room to spare.
    const LEASE: Duration = Duration::from_secs(90);

    async fn execute(&self, task_type: DeviceTaskType, sub_task: &ClaimedSubTask) -> Executed {
        let scope = &sub_task.task.scope;
        let device_id = sub_task.target.as_str();
        match self.store.device_get(scope, device_id).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return failed(
                    SubTaskErrorKind::DeviceNotFound,
                    format!("The device {device_id} does not exist."),
                );
            }
            Err(e) => return failed(SubTaskErrorKind::DeviceOffline, e.to_string()),
        }
        let doc = document(sub_task);
        match task_type {
            DeviceTaskType::CreateCommands | DeviceTaskType::CreateAsyncCommands => {
                self.command(sub_task, &doc).await
            }
            DeviceTaskType::CreateMessages => self.message(sub_task, &doc).await,
            DeviceTaskType::UpdateDeviceShadows => self.shadow(sub_task, &doc).await,
        }
    }
}

impl Devices {
    async fn command(&self, sub_task: &ClaimedSubTask, doc: &Value) -> Executed {
        let command = DeviceCommand {
            service_id: opt_string(doc, "service_id"),
            command_name: opt_string(doc, "command_name"),
            paras: doc
                .get("paras")
                .cloned()
                .unwrap_or(Value::Object(Default::default())),
        };
        // The sub-task id and its attempt: unique, and a retry is a new request.
        let request_id = format!("{}-{}", sub_task.id, sub_task.attempt);
        match self
            .channel
            .command(
                &sub_task.task.scope,
                &sub_task.target,
                &request_id,
                command,
                DEVICE_REPLY_TIMEOUT,
            )
            .await
        {
            Ok(reply) if reply.result_code() == 0 => Executed::Succeeded {
                output: Some(reply.payload.to_string()),
                effect: None,
            },
            Ok(reply) => {
                let answer: String = reply
                    .payload
                    .to_string()
                    .chars()
                    .take(MAX_ANSWER_IN_MESSAGE)
                    .collect();
                failed(
                    SubTaskErrorKind::DeviceRejected,
                    format!(
                        "device returned result_code {}: {answer}",
                        reply.result_code()
                    ),
                )
            }
            Err(e) => channel_failure(e),
        }
    }

    async fn message(&self, sub_task: &ClaimedSubTask, doc: &Value) -> Executed {
        let scope = &sub_task.task.scope;
        let device_id = &sub_task.target;
        // No waiting for an offline device: a sub-task is leased, and a lease that
        // lasts a day would hold a claim slot for it (docs/device-channel.md).
        if !self.channel.is_online(scope, device_id).await {
            return channel_failure(ChannelError::Offline);
        }
        let now = self.clock.now();
        let Some(message) = doc
            .get("message")
            .filter(|m| m.is_string() || m.is_object())
        else {
            return failed(
                SubTaskErrorKind::InvalidInput,
                "The document has no message.",
            );
        };
        let ttl = doc
            .get("ttl")
            .and_then(Value::as_i64)
            .unwrap_or(DEFAULT_MESSAGE_TTL_MINUTES)
            .clamp(0, DEFAULT_MESSAGE_TTL_MINUTES * 30);
        // One message per sub-task: a retry finds the message its earlier run stored.
        let message_id = opt_string(doc, "message_id")
            .map(|id| format!("{id}-{}", sub_task.id))
            .unwrap_or_else(|| sub_task.id.to_string());
        let new = NewDeviceMessage {
            scope: scope.clone(),
            device_id: device_id.clone(),
            message_id: message_id.clone(),
            name: opt_string(doc, "name"),
            message_json: message.to_string(),
            encoding: opt_string(doc, "encoding").unwrap_or_else(|| "none".into()),
            payload_format: opt_string(doc, "payload_format").unwrap_or_else(|| "standard".into()),
            topic: opt_string(doc, "topic"),
            topic_full_name: opt_string(doc, "topic_full_name"),
            properties_json: doc.get("properties").map(Value::to_string),
            expires_at: (ttl > 0).then(|| now.plus_minutes(ttl)),
        };
        let stored = match self.store.message_insert(new, now).await {
            Ok(Ok(m)) => m,
            Ok(Err(MessageRefusal::DuplicateId)) => {
                match self.store.message_get(scope, device_id, &message_id).await {
                    Ok(Some(m)) => m,
                    Ok(None) => return failed(SubTaskErrorKind::InvalidInput, "message vanished"),
                    Err(e) => return failed(SubTaskErrorKind::DeviceOffline, e.to_string()),
                }
            }
            Ok(Err(MessageRefusal::DeviceNotFound)) => {
                return failed(
                    SubTaskErrorKind::DeviceNotFound,
                    format!("The device {device_id} does not exist."),
                );
            }
            Ok(Err(MessageRefusal::TooManyPending)) => {
                return failed(
                    SubTaskErrorKind::InvalidInput,
                    "The device has too many pending messages.",
                );
            }
            Err(e) => return failed(SubTaskErrorKind::DeviceOffline, e.to_string()),
        };
        if let Err(e) = self.channel.deliver_message(&stored).await {
            return channel_failure(e);
        }
        match self.store.message_get(scope, device_id, &message_id).await {
            Ok(Some(m)) if m.status == MessageStatus::Delivered => Executed::Succeeded {
                output: Some(
                    serde_json::json!({"message_id": message_id, "status": "DELIVERED"})
                        .to_string(),
                ),
                effect: None,
            },
            Ok(Some(m)) if m.status == MessageStatus::Failed => {
                let (code, msg) = m.error.unwrap_or_default();
                let kind = if code == "IOTDA.014112" {
                    SubTaskErrorKind::NotSubscribed
                } else {
                    SubTaskErrorKind::InvalidInput
                };
                failed(kind, msg)
            }
            Ok(_) => channel_failure(ChannelError::ConnectionLost(
                "the message was not acknowledged; it stays pending for the next connection".into(),
            )),
            Err(e) => failed(SubTaskErrorKind::DeviceOffline, e.to_string()),
        }
    }

    async fn shadow(&self, sub_task: &ClaimedSubTask, doc: &Value) -> Executed {
        let scope = &sub_task.task.scope;
        let device_id = &sub_task.target;
        let Some(services) = doc.get("shadow").and_then(Value::as_array) else {
            return failed(
                SubTaskErrorKind::InvalidInput,
                "The document has no shadow list.",
            );
        };
        let mut updates = Vec::with_capacity(services.len());
        for s in services {
            let (Some(service_id), Some(desired)) = (
                opt_string(s, "service_id"),
                s.get("desired").filter(|d| d.is_object()),
            ) else {
                return failed(
                    SubTaskErrorKind::InvalidInput,
                    "Each shadow entry needs a service_id and a desired object.",
                );
            };
            updates.push(DesiredUpdate {
                service_id,
                desired_json: desired.to_string(),
                expected_version: s.get("version").and_then(Value::as_i64),
            });
        }
        match self
            .store
            .shadow_update_desired(scope, device_id, updates, self.clock.now())
            .await
        {
            Ok(Ok(_)) => {
                // Configured now; delivered now or when the device comes (spec §3: the
                // shadow sub-task succeeds when desired is written).
                self.channel.desired_changed(scope, device_id).await;
                Executed::Succeeded {
                    output: None,
                    effect: None,
                }
            }
            Ok(Err(ShadowRefusal::DeviceNotFound)) => failed(
                SubTaskErrorKind::DeviceNotFound,
                format!("The device {device_id} does not exist."),
            ),
            Ok(Err(ShadowRefusal::VersionConflict { service_id, stored })) => failed(
                SubTaskErrorKind::InvalidInput,
                format!("The shadow version of service {service_id} is {stored}."),
            ),
            Ok(Err(ShadowRefusal::TooLarge)) => failed(
                SubTaskErrorKind::InvalidInput,
                "The shadow would exceed its size limits.",
            ),
            Ok(Err(ShadowRefusal::NotAnObject)) => failed(
                SubTaskErrorKind::InvalidInput,
                "desired must be a JSON object.",
            ),
            Err(e) => failed(SubTaskErrorKind::DeviceOffline, e.to_string()),
        }
    }
}
