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
use taskd_core::{Clock, Timestamp};
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
/// The longest `expire_time` of a `createAsyncCommands` task taskd waits for (IoTDA's
/// largest, 2 days).
const MAX_ASYNC_EXPIRE_SECS: i64 = 2 * 24 * 3600;
/// A sub-task waiting for its device looks again after 5 s, then twice as long each time,
/// up to this (its message is delivered at the device's connection regardless; only the
/// sub-task's own Success may lag by this much).
const MAX_RECHECK: Duration = Duration::from_secs(30);

/// When a sub-task waiting for its device, in its `attempt`-th run, looks again.
fn recheck_at(attempt: u32, now: Timestamp) -> Timestamp {
    let doubled = Duration::from_secs(5).saturating_mul(1 << attempt.saturating_sub(1).min(10));
    now.plus_millis(doubled.min(MAX_RECHECK).as_millis() as i64)
}

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
        output: None,
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
        // No registry read up front: a connected device exists (deleting one closes its
        // connection), so only an offline one is looked up (`offline_or_missing`), and the
        // message and shadow writes refuse a missing device themselves.
        let doc = document(sub_task);
        match task_type {
            DeviceTaskType::CreateCommands | DeviceTaskType::CreateAsyncCommands => {
                self.command(task_type, sub_task, &doc).await
            }
            DeviceTaskType::CreateMessages => self.message(sub_task, &doc).await,
            DeviceTaskType::UpdateDeviceShadows => self.shadow(sub_task, &doc).await,
        }
    }
}

impl Devices {
    /// The failure for a device the channel found offline: `IOTDA.014000` if it is no
    /// registered device at all.
    async fn offline_or_missing(&self, sub_task: &ClaimedSubTask, e: ChannelError) -> Executed {
        match self.unregistered(sub_task).await {
            Some(failure) => failure,
            None => channel_failure(e),
        }
    }

    /// The failure of a sub-task whose target is no registered device (or whose registry
    /// could not be read); `None` when the device exists.
    async fn unregistered(&self, sub_task: &ClaimedSubTask) -> Option<Executed> {
        let device_id = &sub_task.target;
        match self.store.device_get(&sub_task.task.scope, device_id).await {
            Ok(Some(_)) => None,
            Ok(None) => Some(failed(
                SubTaskErrorKind::DeviceNotFound,
                format!("The device {device_id} does not exist."),
            )),
            Err(store) => Some(failed(SubTaskErrorKind::DeviceOffline, store.to_string())),
        }
    }

    async fn command(
        &self,
        task_type: DeviceTaskType,
        sub_task: &ClaimedSubTask,
        doc: &Value,
    ) -> Executed {
        let scope = &sub_task.task.scope;
        let device_id = &sub_task.target;
        // `createAsyncCommands` with `send_strategy: delay` waits for an offline device
        // up to `expire_time` seconds from the task's creation (spec §6 Q14; 0: no
        // waiting); everything else fails at once when the device is offline.
        let wait_until = (task_type == DeviceTaskType::CreateAsyncCommands
            && doc.get("send_strategy").and_then(Value::as_str) == Some("delay"))
        .then(|| {
            let secs = doc
                .get("expire_time")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .clamp(0, MAX_ASYNC_EXPIRE_SECS);
            sub_task.task.created_at.plus_millis(secs * 1000)
        });
        if let Some(deadline) = wait_until
            && !self.channel.is_online(scope, device_id).await
        {
            let now = self.clock.now();
            if let Some(failure) = self.unregistered(sub_task).await {
                return failure;
            }
            if now >= deadline {
                return failed(
                    SubTaskErrorKind::DeviceOffline,
                    "The device did not come online before the command's expire_time.",
                );
            }
            return Executed::Deferred {
                until: recheck_at(sub_task.attempt, now).min(deadline),
                kind: SubTaskErrorKind::DeviceOffline,
                message: "The device is offline; the command waits for it (send_strategy delay)."
                    .into(),
            };
        }
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
            .command(scope, device_id, &request_id, command, DEVICE_REPLY_TIMEOUT)
            .await
        {
            Ok(reply) if reply.result_code() == 0 => Executed::Succeeded {
                output: Some(reply.payload.to_string()),
                effect: None,
            },
            // Spec §6 Q13: Fail, the device's answer as the output.
            Ok(reply) => Executed::Failed {
                kind: SubTaskErrorKind::DeviceRejected,
                message: format!("device returned result_code {}", reply.result_code()),
                output: Some(reply.payload.to_string()),
            },
            Err(e @ ChannelError::Offline) => self.offline_or_missing(sub_task, e).await,
            Err(e) => channel_failure(e),
        }
    }

    async fn message(&self, sub_task: &ClaimedSubTask, doc: &Value) -> Executed {
        let scope = &sub_task.task.scope;
        let device_id = &sub_task.target;
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
        // ttl 0: no caching (IoTDA): an offline device fails the sub-task at once.
        if ttl == 0 && !self.channel.is_online(scope, device_id).await {
            return self
                .offline_or_missing(sub_task, ChannelError::Offline)
                .await;
        }
        // One message per sub-task: a later run (the device was offline, a lost lease)
        // finds the message its earlier run stored.
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
        // Delivered now if the device is connected (to any node); else it stays PENDING
        // and the device's next connection delivers it.
        let stored = if stored.status == MessageStatus::Pending {
            match self.channel.deliver_message(&stored).await {
                // Failures are recorded on the message (read back below).
                Ok(()) | Err(ChannelError::NotSubscribed(_) | ChannelError::InvalidRequest(_)) => {
                    match self.store.message_get(scope, device_id, &message_id).await {
                        Ok(Some(m)) => m,
                        Ok(None) => {
                            return failed(SubTaskErrorKind::InvalidInput, "message vanished");
                        }
                        Err(e) => return failed(SubTaskErrorKind::DeviceOffline, e.to_string()),
                    }
                }
                // Offline, unacknowledged, or its node is away: it waits, still PENDING.
                Err(_) => stored,
            }
        } else {
            stored
        };
        match stored.status {
            MessageStatus::Delivered => Executed::Succeeded {
                output: Some(
                    serde_json::json!({"message_id": message_id, "status": "DELIVERED"})
                        .to_string(),
                ),
                effect: None,
            },
            MessageStatus::Failed => {
                let (code, msg) = stored.error.unwrap_or_default();
                let kind = if code == "IOTDA.014112" {
                    SubTaskErrorKind::NotSubscribed
                } else {
                    SubTaskErrorKind::InvalidInput
                };
                failed(kind, msg)
            }
            MessageStatus::Timeout => failed(
                SubTaskErrorKind::DeviceTimeout,
                "The message was not delivered within its ttl.",
            ),
            MessageStatus::Pending => match stored.message.expires_at {
                // Maintenance marks it TIMEOUT; the sub-task does not wait for that.
                Some(expires) if now >= expires => failed(
                    SubTaskErrorKind::DeviceTimeout,
                    "The message was not delivered within its ttl.",
                ),
                expires => Executed::Deferred {
                    until: expires.map_or(recheck_at(sub_task.attempt, now), |e| {
                        recheck_at(sub_task.attempt, now).min(e)
                    }),
                    kind: SubTaskErrorKind::DeviceOffline,
                    message: format!(
                        "The device is offline; message {message_id} waits (PENDING) for it."
                    ),
                },
            },
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

#[cfg(test)]
mod tests {
    //! The executor's rules over a channel whose devices the test switches on and off:
    //! waiting for offline devices on virtual time. Real connections: tests/sdk.

    use std::collections::HashSet;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use taskd_core::{ManualClock, SubTask, SubTaskState, Task, TaskScope};
    use taskd_store::conformance::{first_page, new_device, new_task};
    use taskd_store::{DeviceMessage, SubTaskListParams};

    use super::*;
    use crate::device_channel::DeviceReply;
    use crate::{Engine, TargetSource};

    /// Devices are online when the test says so; they answer commands with
    /// `result_code`, and acknowledge every message.
    struct Switchboard {
        store: Arc<dyn Store>,
        clock: Arc<ManualClock>,
        online: Mutex<HashSet<String>>,
        result_code: i64,
    }

    #[async_trait]
    impl DeviceChannel for Switchboard {
        async fn command(
            &self,
            _: &TaskScope,
            device_id: &str,
            request_id: &str,
            command: DeviceCommand,
            _: Duration,
        ) -> Result<DeviceReply, ChannelError> {
            if !self.online.lock().unwrap().contains(device_id) {
                return Err(ChannelError::Offline);
            }
            Ok(DeviceReply {
                request_id: request_id.to_owned(),
                payload: serde_json::json!({"result_code": self.result_code, "paras": command.paras}),
            })
        }

        async fn property_set(
            &self,
            _: &TaskScope,
            _: &str,
            _: Value,
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

        async fn deliver_message(&self, message: &DeviceMessage) -> Result<(), ChannelError> {
            let m = &message.message;
            if !self.online.lock().unwrap().contains(&m.device_id) {
                return Ok(());
            }
            self.store
                .message_finish(
                    &m.scope,
                    &m.device_id,
                    &m.message_id,
                    MessageStatus::Delivered,
                    None,
                    self.clock.now(),
                )
                .await
                .unwrap();
            Ok(())
        }

        async fn desired_changed(&self, _: &TaskScope, _: &str) {}

        async fn disconnect(&self, _: &TaskScope, _: &str) {}

        async fn is_online(&self, _: &TaskScope, device_id: &str) -> bool {
            self.online.lock().unwrap().contains(device_id)
        }
    }

    struct Bench {
        engine: Engine,
        clock: Arc<ManualClock>,
        channel: Arc<Switchboard>,
        devices: Devices,
        scope: TaskScope,
        device_id: String,
    }

    async fn bench(result_code: i64) -> Bench {
        let store: Arc<dyn Store> = Arc::new(taskd_store_sqlite::open_in_memory().await.unwrap());
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_secs(1_767_225_600)));
        let scope = TaskScope::new("p1", "");
        let device = store
            .device_insert(new_device(&scope, "prod", "d1"), clock.now())
            .await
            .unwrap()
            .unwrap();
        let channel = Arc::new(Switchboard {
            store: store.clone(),
            clock: clock.clone(),
            online: Mutex::default(),
            result_code,
        });
        let devices = Devices::new(store.clone(), clock.clone(), channel.clone());
        Bench {
            engine: Engine::new(store, clock.clone()),
            clock,
            channel,
            devices,
            scope,
            device_id: device.device_id,
        }
    }

    impl Bench {
        async fn create(&self, kind: DeviceTaskType, document: Value) -> Task {
            let mut task = new_task(&self.scope, "t");
            task.kind = kind.name().to_owned();
            task.document_json = Some(document.to_string());
            self.engine
                .create_task(task, TargetSource::Explicit(vec![self.device_id.clone()]))
                .await
                .unwrap()
        }

        /// Advances virtual time, lets maintenance queue what is due, runs one batch.
        async fn run_after(&self, secs: i64) -> usize {
            self.clock.advance_millis(secs * 1000);
            self.engine
                .store()
                .maintain(self.clock.now(), 100)
                .await
                .unwrap();
            self.engine
                .run_batch(&self.devices, "test", 10)
                .await
                .unwrap()
        }

        async fn sub_task(&self, task: &Task) -> SubTask {
            let params = SubTaskListParams {
                scope: self.scope.clone(),
                task_id: task.id,
                state: None,
                target: None,
                page: first_page(1),
            };
            let mut page = self
                .engine
                .store()
                .sub_task_list(&params)
                .await
                .unwrap()
                .unwrap();
            page.items.remove(0)
        }

        fn connect(&self) {
            self.channel
                .online
                .lock()
                .unwrap()
                .insert(self.device_id.clone());
        }
    }

    #[tokio::test]
    async fn a_message_for_an_offline_device_waits_for_it_without_using_retries() {
        let b = bench(0).await;
        let task = b
            .create(
                DeviceTaskType::CreateMessages,
                serde_json::json!({"message": "hi", "message_id": "m"}),
            )
            .await;
        assert_eq!(b.run_after(0).await, 1);
        let waiting = b.sub_task(&task).await;
        assert_eq!(waiting.state, SubTaskState::RetryWaiting, "{waiting:?}");
        assert_eq!(
            waiting.error_code.as_deref(),
            Some(SubTaskErrorKind::DeviceOffline.code())
        );
        let message_id = format!("m-{}", waiting.id);
        let pending = b
            .engine
            .store()
            .message_get(&b.scope, &b.device_id, &message_id)
            .await;
        assert_eq!(pending.unwrap().unwrap().status, MessageStatus::Pending);
        // Looked at again after 5 s, then 10 s: still offline, still waiting.
        assert_eq!(b.run_after(4).await, 0, "not before 5 s");
        assert_eq!(b.run_after(1).await, 1);
        assert_eq!(b.run_after(9).await, 0, "then not before 10 s");
        assert_eq!(b.run_after(1).await, 1);
        assert_eq!(b.sub_task(&task).await.state, SubTaskState::RetryWaiting);
        // The device connects: the next look delivers the one message and succeeds.
        b.connect();
        assert_eq!(b.run_after(20).await, 1);
        let done = b.sub_task(&task).await;
        assert_eq!(done.state, SubTaskState::Succeeded, "{done:?}");
        let messages = b
            .engine
            .store()
            .message_list(&b.scope, &b.device_id, 10)
            .await
            .unwrap();
        assert_eq!(
            messages.len(),
            1,
            "one message however often the sub-task ran"
        );
        assert_eq!(messages[0].status, MessageStatus::Delivered);
    }

    #[tokio::test]
    async fn a_message_waits_no_longer_than_its_ttl_and_ttl_0_does_not_wait() {
        let b = bench(0).await;
        let task = b
            .create(
                DeviceTaskType::CreateMessages,
                serde_json::json!({"message": "hi", "ttl": 1}),
            )
            .await;
        assert_eq!(b.run_after(0).await, 1);
        let mut runs = 0;
        while b.sub_task(&task).await.state == SubTaskState::RetryWaiting {
            runs += b.run_after(5).await;
            assert!(runs < 20, "still waiting after {runs} runs");
        }
        let failed = b.sub_task(&task).await;
        assert_eq!(failed.state, SubTaskState::Failed);
        assert_eq!(
            failed.error_code.as_deref(),
            Some(SubTaskErrorKind::DeviceTimeout.code())
        );
        let no_cache = b
            .create(
                DeviceTaskType::CreateMessages,
                serde_json::json!({"message": "hi", "ttl": 0}),
            )
            .await;
        assert_eq!(b.run_after(0).await, 1);
        let failed = b.sub_task(&no_cache).await;
        assert_eq!(failed.state, SubTaskState::Failed, "ttl 0 does not cache");
        assert_eq!(
            failed.error_code.as_deref(),
            Some(SubTaskErrorKind::DeviceOffline.code())
        );
    }

    #[tokio::test]
    async fn delayed_async_commands_wait_until_expire_time_others_fail_at_once() {
        let b = bench(0).await;
        let sync = b
            .create(
                DeviceTaskType::CreateCommands,
                serde_json::json!({"paras": {}}),
            )
            .await;
        let immediate = b
            .create(
                DeviceTaskType::CreateAsyncCommands,
                serde_json::json!({"paras": {}, "send_strategy": "immediately", "expire_time": 60}),
            )
            .await;
        let delayed = b
            .create(
                DeviceTaskType::CreateAsyncCommands,
                serde_json::json!({"paras": {"n": 1}, "send_strategy": "delay", "expire_time": 60}),
            )
            .await;
        let expiring = b
            .create(
                DeviceTaskType::CreateAsyncCommands,
                serde_json::json!({"paras": {}, "send_strategy": "delay", "expire_time": 8}),
            )
            .await;
        assert_eq!(b.run_after(0).await, 4);
        for t in [&sync, &immediate] {
            let s = b.sub_task(t).await;
            assert_eq!(s.state, SubTaskState::Failed, "{s:?}");
            assert_eq!(
                s.error_code.as_deref(),
                Some(SubTaskErrorKind::DeviceOffline.code())
            );
        }
        assert_eq!(b.sub_task(&delayed).await.state, SubTaskState::RetryWaiting);
        assert_eq!(
            b.sub_task(&expiring).await.state,
            SubTaskState::RetryWaiting
        );
        assert_eq!(b.run_after(5).await, 2);
        // 8 s after its task was created: the expiring one gives up; the other runs on
        // once the device is there.
        assert_eq!(b.run_after(3).await, 1);
        assert_eq!(b.sub_task(&expiring).await.state, SubTaskState::Failed);
        b.connect();
        assert_eq!(b.run_after(10).await, 1);
        let done = b.sub_task(&delayed).await;
        assert_eq!(done.state, SubTaskState::Succeeded, "{done:?}");
        assert!(done.output.unwrap().contains(r#""n":1"#));
    }

    #[tokio::test]
    async fn a_refusing_answer_fails_the_sub_task_and_is_its_output() {
        let b = bench(3).await;
        b.connect();
        let task = b
            .create(
                DeviceTaskType::CreateCommands,
                serde_json::json!({"paras": {"x": 1}}),
            )
            .await;
        assert_eq!(b.run_after(0).await, 1);
        let s = b.sub_task(&task).await;
        assert_eq!(s.state, SubTaskState::Failed);
        assert_eq!(
            s.error_code.as_deref(),
            Some(SubTaskErrorKind::DeviceRejected.code())
        );
        assert_eq!(
            s.error_msg.as_deref(),
            Some("device returned result_code 3")
        );
        let output: Value = serde_json::from_str(&s.output.unwrap()).unwrap();
        assert_eq!(output["result_code"], 3);
    }
}
