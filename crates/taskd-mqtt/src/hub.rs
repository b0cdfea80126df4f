//! [`Hub`]: the devices connected to this node, the requests waiting for their answers,
//! and the [`DeviceChannel`] the engine and the IoTDA dialect talk to devices through.
//!
//! A connection registers a [`SessionHandle`] here after its CONNACK is decided; what
//! taskd sends a device goes through the handle's queue to the connection's task, which
//! alone writes the socket. Answers (command, property set/get responses) come back
//! through [`Hub::handle_publish`], matched by request id and device.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rumqttc::QoS;
use serde_json::{Value, json};
use taskd_core::{Clock, TaskScope};
use taskd_engine::device_channel::{ChannelError, DeviceChannel, DeviceCommand, DeviceReply};
use taskd_store::{
    DeviceMessage, DeviceSession, DeviceVersions, MessageStatus, SessionRefusal, Store,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::payloads;
use crate::topics::{self, Uplink};

/// A device, as the hub keys it: its scope and id.
pub type DeviceKey = (TaskScope, String);

/// Stripes of the per-device CONNECT lock: devices whose ids share a stripe connect one
/// after the other (a store write each), the rest in parallel.
const CONNECT_LOCK_STRIPES: usize = 256;

/// Requests waiting for an answer, on this node; one more is refused (each holds a
/// caller for up to 20 s).
pub const MAX_PENDING_REQUESTS: usize = 100_000;
/// How long a message delivery waits for the device's PUBACK before it stays pending
/// for the next connection.
const PUBACK_TIMEOUT: Duration = Duration::from_secs(20);
/// A desired-state push the device did not answer is not repeated for this long (IoTDA's
/// protection window, spec §2.7).
const DESIRED_PUSH_PROTECTION: Duration = Duration::from_secs(300);
/// Pending messages delivered per connection, oldest first.
const PENDING_DELIVERIES_PER_CONNECT: u32 = 1_000;
/// CONNECTs recorded per store transaction at most (see [`session_writer`]).
const SESSION_BATCH: usize = 256;

/// What recording a new connection came to (a store failure as its text: one failed
/// transaction answers every CONNECT of its batch).
pub type SessionOpened = Result<Result<Option<DeviceSession>, SessionRefusal>, String>;

struct OpenRequest {
    session: DeviceSession,
    reply: oneshot::Sender<SessionOpened>,
}

/// Records new connections in batches: whatever CONNECTs arrived while the last
/// transaction ran go into the next one. A connect storm on the embedded store is bound by
/// its one writer; one commit per CONNECT held it near 1,000 a second.
async fn session_writer(store: Arc<dyn Store>, mut requests: mpsc::Receiver<OpenRequest>) {
    let mut batch = Vec::with_capacity(SESSION_BATCH);
    while requests.recv_many(&mut batch, SESSION_BATCH).await > 0 {
        let sessions: Vec<DeviceSession> = batch.iter().map(|r| r.session.clone()).collect();
        match store.device_sessions_open(&sessions).await {
            Ok(results) => {
                for (request, result) in batch.drain(..).zip(results) {
                    let _ = request.reply.send(Ok(result));
                }
            }
            Err(e) => {
                let text = e.to_string();
                for request in batch.drain(..) {
                    let _ = request.reply.send(Err(text.clone()));
                }
            }
        }
    }
}

/// What the hub asks a connection's task to write.
#[derive(Debug)]
pub enum Outbound {
    Publish {
        topic: String,
        payload: Bytes,
        qos: QoS,
        /// Told when the device acknowledged (PUBACK for QoS 1; written for QoS 0).
        acked: Option<oneshot::Sender<()>>,
    },
}

/// A subscription a device asked for, with its granted QoS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub filter: String,
    pub qos: QoS,
}

/// The hub's side of one connection.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    pub session_id: String,
    pub outbound: mpsc::Sender<Outbound>,
    /// Cancelled to close the connection (a newer connection, freeze, delete, shutdown).
    pub close: CancellationToken,
    /// The device's explicit subscriptions (the connection task keeps them current).
    pub subscriptions: Arc<Mutex<Vec<Subscription>>>,
}

struct PendingRequest {
    key: DeviceKey,
    reply: oneshot::Sender<Value>,
}

/// The hub of one node. Cheap to share (`Arc`).
pub struct Hub {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    node_id: String,
    sessions: Mutex<HashMap<DeviceKey, SessionHandle>>,
    pending: Mutex<HashMap<String, PendingRequest>>,
    /// Messages being delivered right now: a connect's sweep and a new message's
    /// delivery must not publish the same one twice at once.
    delivering: Mutex<HashSet<(DeviceKey, String)>>,
    /// Devices whose last desired push is unanswered, and when it went out.
    desired_pushed: Mutex<HashMap<DeviceKey, Instant>>,
    /// Itself, for the work it spawns.
    me: Weak<Hub>,
    /// Serialises one device's CONNECTs on this node (striped by device id).
    connect_locks: Vec<tokio::sync::Mutex<()>>,
    /// Bumped whenever a connection's start or end has been recorded in the store
    /// (what tests and benchmarks wait on instead of sleeping).
    sessions_changed: watch::Sender<u64>,
    /// To the task recording new connections ([`session_writer`]).
    session_opens: mpsc::Sender<OpenRequest>,
}

impl Hub {
    /// A hub; needs a Tokio runtime (it spawns the task that records connections, which
    /// ends with the hub).
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, node_id: String) -> Arc<Hub> {
        let (session_opens, requests) = mpsc::channel(4 * SESSION_BATCH);
        tokio::spawn(session_writer(Arc::clone(&store), requests));
        Arc::new_cyclic(|me| Hub {
            session_opens,
            store,
            clock,
            node_id,
            sessions: Mutex::default(),
            pending: Mutex::default(),
            delivering: Mutex::default(),
            desired_pushed: Mutex::default(),
            me: me.clone(),
            sessions_changed: watch::Sender::new(0),
            connect_locks: (0..CONNECT_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Records a new connection (`Store::device_sessions_open`, batched with the other
    /// CONNECTs in flight).
    pub async fn open_session(&self, session: DeviceSession) -> SessionOpened {
        let (reply, answer) = oneshot::channel();
        self.session_opens
            .send(OpenRequest { session, reply })
            .await
            .map_err(|_| "the session writer stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the session writer stopped".to_owned())?
    }

    /// Held while a CONNECT records its session and registers (see `connection::run`).
    pub(crate) async fn connect_lock(&self, key: &DeviceKey) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let stripe = (h.finish() % CONNECT_LOCK_STRIPES as u64) as usize;
        self.connect_locks[stripe].lock().await
    }

    /// Changes whenever a connection's start or end is recorded.
    pub fn watch_sessions(&self) -> watch::Receiver<u64> {
        self.sessions_changed.subscribe()
    }

    /// A connection's start or end is recorded in the store.
    pub(crate) fn session_recorded(&self) {
        self.sessions_changed.send_modify(|n| *n += 1);
    }

    /// Devices connected to this node.
    pub fn connected(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }

    /// Registers a connection that was accepted, closing the device's older connection
    /// on this node if there is one (the newer connection wins, spec §1.6).
    pub fn register(&self, key: DeviceKey, handle: SessionHandle) {
        let older = self.sessions.lock().unwrap().insert(key, handle);
        if let Some(older) = older {
            older.close.cancel();
        }
    }

    /// Forgets a connection that ended, unless a newer one of the device replaced it.
    /// Returns whether it was the current one.
    pub fn unregister(&self, key: &DeviceKey, session_id: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap();
        if sessions
            .get(key)
            .is_some_and(|h| h.session_id == session_id)
        {
            sessions.remove(key);
            drop(sessions);
            self.desired_pushed.lock().unwrap().remove(key);
            true
        } else {
            false
        }
    }

    /// Whether the device is connected to this node.
    pub fn holds(&self, key: &DeviceKey) -> bool {
        self.sessions.lock().unwrap().contains_key(key)
    }

    /// Closes the device's connection on this node: any (`session_id` absent), or only
    /// that session (one a newer connection on another node replaced).
    pub async fn disconnect_session(&self, key: &DeviceKey, session_id: Option<&str>) {
        let _connecting = self.connect_lock(key).await;
        if let Some(handle) = self.session(key)
            && session_id.is_none_or(|id| id == handle.session_id)
        {
            handle.close.cancel();
        }
    }

    fn session(&self, key: &DeviceKey) -> Option<SessionHandle> {
        self.sessions.lock().unwrap().get(key).cloned()
    }

    /// Closes every connection (shutdown).
    pub fn close_all(&self) {
        for handle in self.sessions.lock().unwrap().values() {
            handle.close.cancel();
        }
    }

    /// The QoS to publish `topic` with to a device, or `None` if the device does not
    /// receive it: its explicit subscriptions decide (the highest granted QoS of those
    /// that match); system downlinks are always received, at QoS 1 unless the device
    /// subscribed them at QoS 0 (spec §6 Q8).
    fn delivery_qos(handle: &SessionHandle, device_id: &str, topic: &str) -> Option<QoS> {
        let subs = handle.subscriptions.lock().unwrap();
        let explicit = subs
            .iter()
            .filter(|s| topics::matches(&s.filter, topic))
            .map(|s| s.qos)
            .max_by_key(|q| *q as u8);
        explicit.or_else(|| {
            topics::matches(&topics::auto_subscription(device_id), topic)
                .then_some(QoS::AtLeastOnce)
        })
    }

    /// Publishes to a connected device; `acked` resolves on its PUBACK (QoS 1) or once
    /// written (QoS 0).
    async fn publish(
        &self,
        key: &DeviceKey,
        topic: String,
        payload: Bytes,
    ) -> Result<oneshot::Receiver<()>, ChannelError> {
        let handle = self.session(key).ok_or(ChannelError::Offline)?;
        let qos = Self::delivery_qos(&handle, &key.1, &topic)
            .ok_or_else(|| ChannelError::NotSubscribed(topic.clone()))?;
        let (tx, rx) = oneshot::channel();
        handle
            .outbound
            .send(Outbound::Publish {
                topic,
                payload,
                qos,
                acked: Some(tx),
            })
            .await
            .map_err(|_| ChannelError::ConnectionLost("the connection closed".into()))?;
        Ok(rx)
    }

    /// Queues a publish without waiting for room: for the connection's own task.
    fn try_publish(
        &self,
        key: &DeviceKey,
        topic: String,
        payload: Bytes,
    ) -> Result<(), ChannelError> {
        let handle = self.session(key).ok_or(ChannelError::Offline)?;
        let qos = Self::delivery_qos(&handle, &key.1, &topic)
            .ok_or_else(|| ChannelError::NotSubscribed(topic.clone()))?;
        handle
            .outbound
            .try_send(Outbound::Publish {
                topic,
                payload,
                qos,
                acked: None,
            })
            .map_err(|_| ChannelError::ConnectionLost("the device's queue is full".into()))
    }

    /// Publishes a request and waits for the answer carrying its request id.
    async fn request(
        &self,
        key: DeviceKey,
        request_id: String,
        topic: String,
        payload: Value,
        timeout: Duration,
    ) -> Result<DeviceReply, ChannelError> {
        if self.session(&key).is_none() {
            return Err(ChannelError::Offline);
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().unwrap();
            if pending.len() >= MAX_PENDING_REQUESTS {
                return Err(ChannelError::InvalidRequest(format!(
                    "Too many requests are waiting for devices on this node (at most {MAX_PENDING_REQUESTS})."
                )));
            }
            if pending.contains_key(&request_id) {
                return Err(ChannelError::InvalidRequest(format!(
                    "A request with id {request_id} is already waiting for its device."
                )));
            }
            pending.insert(
                request_id.clone(),
                PendingRequest {
                    key: key.clone(),
                    reply: tx,
                },
            );
        }
        // The timeout covers the whole exchange: a device whose queue is full (it stopped
        // reading) times out like one that does not answer.
        let exchange = async {
            self.publish(&key, topic, Bytes::from(payload.to_string()))
                .await?;
            rx.await
                .map_err(|_| ChannelError::ConnectionLost("the request was dropped".into()))
        };
        let outcome = tokio::time::timeout(timeout, exchange).await;
        match outcome {
            Ok(Ok(payload)) => Ok(DeviceReply {
                request_id,
                payload,
            }),
            Ok(Err(e)) => {
                self.pending.lock().unwrap().remove(&request_id);
                Err(e)
            }
            Err(_) => {
                // A late answer finds nothing and is dropped (spec §2.4).
                self.pending.lock().unwrap().remove(&request_id);
                Err(ChannelError::Timeout(timeout))
            }
        }
    }

    /// An answer arrived: hand it to the request that waits for it, if that request was
    /// made of this device.
    fn answer(&self, key: &DeviceKey, request_id: &str, payload: Value) {
        let mut pending = self.pending.lock().unwrap();
        if pending.get(request_id).is_some_and(|p| &p.key == key)
            && let Some(p) = pending.remove(request_id)
        {
            let _ = p.reply.send(payload);
        }
    }

    /// After a CONNACK: what waited for the device goes out (pending messages, oldest
    /// first; the desired shadow where it differs from reported).
    pub async fn on_connected(&self, key: DeviceKey) {
        let now = self.clock.now();
        match self
            .store
            .messages_pending(&key.0, &key.1, now, PENDING_DELIVERIES_PER_CONNECT)
            .await
        {
            Ok(messages) => {
                for message in messages {
                    if self.session(&key).is_none() {
                        break;
                    }
                    if let Err(e) = self.deliver(&message).await {
                        tracing::debug!(device_id = %key.1, error = %e, "pending message not delivered");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(device_id = %key.1, error = %e, "could not read pending messages")
            }
        }
        self.push_desired(&key).await;
    }

    /// Sends the desired-reported delta as a property set, unless the device has an
    /// unanswered push younger than the protection window.
    async fn push_desired(&self, key: &DeviceKey) {
        if self.session(key).is_none() {
            return;
        }
        if let Some(at) = self.desired_pushed.lock().unwrap().get(key)
            && at.elapsed() < DESIRED_PUSH_PROTECTION
        {
            return;
        }
        let shadow = match self.store.shadow_get(&key.0, &key.1).await {
            Ok(Some(shadow)) => shadow,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(device_id = %key.1, error = %e, "could not read the shadow");
                return;
            }
        };
        let delta = payloads::desired_delta(&shadow);
        if delta.is_empty() {
            self.desired_pushed.lock().unwrap().remove(key);
            return;
        }
        self.desired_pushed
            .lock()
            .unwrap()
            .insert(key.clone(), Instant::now());
        let Some(hub) = self.me.upgrade() else { return };
        let key = key.clone();
        // Not awaited: a property report may trigger this, and the connection task that
        // handles the report must go on reading the answer.
        tokio::spawn(async move {
            let answered = hub
                .property_set(
                    &key.0,
                    &key.1,
                    Value::Array(delta),
                    taskd_engine::device_channel::DEVICE_REPLY_TIMEOUT,
                )
                .await;
            if answered.is_ok() {
                hub.desired_pushed.lock().unwrap().remove(&key);
            }
        });
    }

    /// Publishes a stored pending message and records the outcome.
    async fn deliver(&self, message: &DeviceMessage) -> Result<(), ChannelError> {
        let m = &message.message;
        let key: DeviceKey = (m.scope.clone(), m.device_id.clone());
        if message.status != MessageStatus::Pending {
            return Ok(());
        }
        if self.session(&key).is_none() {
            return Ok(());
        }
        let guard_key = (key.clone(), m.message_id.clone());
        if !self.delivering.lock().unwrap().insert(guard_key.clone()) {
            return Ok(());
        }
        let result = self.deliver_once(&key, message).await;
        self.delivering.lock().unwrap().remove(&guard_key);
        result
    }

    async fn deliver_once(
        &self,
        key: &DeviceKey,
        message: &DeviceMessage,
    ) -> Result<(), ChannelError> {
        let m = &message.message;
        let topic = match (&m.topic_full_name, &m.topic) {
            (Some(full), _) => full.clone(),
            (None, Some(suffix)) => topics::user_topic(&m.device_id, suffix),
            (None, None) => topics::messages_down(&m.device_id),
        };
        let payload = match message_payload(message) {
            Ok(p) => p,
            Err(e) => {
                self.finish(
                    message,
                    MessageStatus::Failed,
                    Some(("IOTDA.000006".into(), e.to_string())),
                )
                .await?;
                return Err(e);
            }
        };
        let published = async {
            let acked = self.publish(key, topic, payload).await?;
            acked.await.map_err(|_| {
                ChannelError::ConnectionLost(
                    "the connection closed before the device acknowledged".into(),
                )
            })
        };
        match tokio::time::timeout(PUBACK_TIMEOUT, published).await {
            Ok(Ok(())) => self.finish(message, MessageStatus::Delivered, None).await,
            Ok(Err(ChannelError::NotSubscribed(topic))) => {
                let e = ChannelError::NotSubscribed(topic);
                self.finish(
                    message,
                    MessageStatus::Failed,
                    Some(("IOTDA.014112".into(), e.to_string())),
                )
                .await?;
                Err(e)
            }
            // Offline, dropped or unacknowledged: it stays pending for the next connection.
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ChannelError::Timeout(PUBACK_TIMEOUT)),
        }
    }

    async fn finish(
        &self,
        message: &DeviceMessage,
        status: MessageStatus,
        error: Option<(String, String)>,
    ) -> Result<(), ChannelError> {
        let m = &message.message;
        self.store
            .message_finish(
                &m.scope,
                &m.device_id,
                &m.message_id,
                status,
                error,
                self.clock.now(),
            )
            .await
            .map(|_| ())
            .map_err(|e| ChannelError::Store(e.to_string()))
    }

    /// A PUBLISH from a connected device.
    pub async fn handle_publish(&self, key: &DeviceKey, topic: &str, payload: &[u8]) {
        let Some(published) = topics::parse_uplink(&key.1, topic) else {
            tracing::debug!(device_id = %key.1, topic, "publish outside the device's topics dropped");
            return;
        };
        let body = match payloads::body(payload, published.gzip) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(device_id = %key.1, topic, error = %e, "payload dropped");
                return;
            }
        };
        let parsed = || payloads::json(&body);
        let now = self.clock.now();
        match published.uplink {
            Uplink::CommandResponse(id)
            | Uplink::PropertiesSetResponse(id)
            | Uplink::PropertiesGetResponse(id) => {
                // A response that is not JSON still answers (with nothing to show).
                self.answer(key, &id, parsed().unwrap_or(Value::Null));
            }
            Uplink::PropertiesReport => {
                let Ok(report) = parsed() else { return };
                let reported = payloads::reported_properties(&report, now);
                if reported.is_empty() {
                    return;
                }
                match self
                    .store
                    .shadow_report(&key.0, &key.1, reported, now)
                    .await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(refused)) => {
                        tracing::debug!(device_id = %key.1, ?refused, "property report not stored")
                    }
                    Err(e) => {
                        tracing::warn!(device_id = %key.1, error = %e, "property report not stored")
                    }
                }
                // A report is also when IoTDA re-sends a desired state that differs.
                self.push_desired(key).await;
            }
            Uplink::ShadowGet(request_id) => {
                let service_id = parsed().ok().and_then(|v| {
                    v.get("service_id")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
                let shadow = match self.store.shadow_get(&key.0, &key.1).await {
                    Ok(s) => s.unwrap_or_default(),
                    Err(e) => {
                        tracing::warn!(device_id = %key.1, error = %e, "shadow get not answered");
                        return;
                    }
                };
                let answer = payloads::shadow_response(&key.1, &shadow, service_id.as_deref());
                let topic = topics::shadow_get_response(&key.1, &request_id);
                // Not awaited on the queue: this runs on the connection's own task, which
                // is the one that drains it.
                if let Err(e) = self.try_publish(key, topic, Bytes::from(answer.to_string())) {
                    tracing::debug!(device_id = %key.1, error = %e, "shadow answer not sent");
                }
            }
            Uplink::EventsUp => {
                let Ok(envelope) = parsed() else { return };
                self.handle_events(key, &envelope).await;
            }
            // Accepted; taskd has no consumer for device messages or custom topics yet.
            Uplink::MessageUp
            | Uplink::Custom
            | Uplink::GatewayPropertiesReport
            | Uplink::Unknown => {}
        }
    }

    async fn handle_events(&self, key: &DeviceKey, envelope: &Value) {
        let mut versions = DeviceVersions::default();
        for event in payloads::events(envelope) {
            let paras = event.paras.unwrap_or(Value::Null);
            match (event.service_id.as_deref(), event.event_type.as_deref()) {
                (Some("$ota"), Some("version_report")) => {
                    versions.fw_version = payloads::version_field(&paras, "fw_version");
                    versions.sw_version = payloads::version_field(&paras, "sw_version");
                }
                (Some("$sdk_info"), Some("sdk_info_report")) => {
                    versions.device_sdk_version =
                        payloads::version_field(&paras, "device_sdk_version");
                    versions.fw_version =
                        payloads::version_field(&paras, "fw_version").or(versions.fw_version);
                    versions.sw_version =
                        payloads::version_field(&paras, "sw_version").or(versions.sw_version);
                }
                // `$log`, `$time_sync`, `$file_manager`, … : accepted, not acted on.
                _ => {}
            }
        }
        if versions != DeviceVersions::default()
            && let Err(e) = self
                .store
                .device_versions_put(&key.0, &key.1, &versions, self.clock.now())
                .await
        {
            tracing::warn!(device_id = %key.1, error = %e, "versions not stored");
        }
    }
}

/// A message's MQTT payload (spec §2.5, §6 Q15): base64 is decoded and sent raw; `raw`
/// sends the message itself; `standard` wraps it in IoTDA's JSON.
fn message_payload(message: &DeviceMessage) -> Result<Bytes, ChannelError> {
    use base64::Engine as _;
    let m = &message.message;
    let value: Value = serde_json::from_str(&m.message_json)
        .map_err(|_| ChannelError::InvalidRequest("the stored message is not JSON".into()))?;
    let as_bytes = |v: &Value| -> Vec<u8> {
        match v {
            Value::String(s) => s.clone().into_bytes(),
            other => other.to_string().into_bytes(),
        }
    };
    if m.encoding == "base64" {
        let Value::String(text) = &value else {
            return Err(ChannelError::InvalidRequest(
                "A base64 message must be a string.".into(),
            ));
        };
        return base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(|_| ChannelError::InvalidRequest("The message is not valid base64.".into()));
    }
    if m.payload_format == "raw" {
        return Ok(Bytes::from(as_bytes(&value)));
    }
    let mut wrapped = json!({
        "object_device_id": m.device_id,
        "id": m.message_id,
        "content": value,
    });
    if let Some(name) = &m.name {
        wrapped["name"] = Value::String(name.clone());
    }
    Ok(Bytes::from(wrapped.to_string()))
}

#[async_trait]
impl DeviceChannel for Hub {
    async fn command(
        &self,
        scope: &TaskScope,
        device_id: &str,
        request_id: &str,
        command: DeviceCommand,
        timeout: Duration,
    ) -> Result<DeviceReply, ChannelError> {
        let mut body = json!({ "object_device_id": device_id, "paras": command.paras });
        if let Some(s) = command.service_id {
            body["service_id"] = Value::String(s);
        }
        if let Some(c) = command.command_name {
            body["command_name"] = Value::String(c);
        }
        self.request(
            (scope.clone(), device_id.to_owned()),
            request_id.to_owned(),
            topics::command(device_id, request_id),
            body,
            timeout,
        )
        .await
    }

    async fn property_set(
        &self,
        scope: &TaskScope,
        device_id: &str,
        services: Value,
        timeout: Duration,
    ) -> Result<DeviceReply, ChannelError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        self.request(
            (scope.clone(), device_id.to_owned()),
            request_id.clone(),
            topics::properties_set(device_id, &request_id),
            json!({ "object_device_id": device_id, "services": services }),
            timeout,
        )
        .await
    }

    async fn property_get(
        &self,
        scope: &TaskScope,
        device_id: &str,
        service_id: Option<&str>,
        timeout: Duration,
    ) -> Result<DeviceReply, ChannelError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut body = json!({ "object_device_id": device_id });
        if let Some(s) = service_id {
            body["service_id"] = Value::String(s.to_owned());
        }
        self.request(
            (scope.clone(), device_id.to_owned()),
            request_id.clone(),
            topics::properties_get(device_id, &request_id),
            body,
            timeout,
        )
        .await
    }

    async fn deliver_message(&self, message: &DeviceMessage) -> Result<(), ChannelError> {
        self.deliver(message).await
    }

    async fn desired_changed(&self, scope: &TaskScope, device_id: &str) {
        let key: DeviceKey = (scope.clone(), device_id.to_owned());
        // A change by the user is pushed even inside the protection window.
        self.desired_pushed.lock().unwrap().remove(&key);
        self.push_desired(&key).await;
    }

    async fn disconnect(&self, scope: &TaskScope, device_id: &str) {
        // A CONNECT that recorded its session before the freeze or delete committed is
        // waited for, then closed with the rest.
        self.disconnect_session(&(scope.clone(), device_id.to_owned()), None)
            .await;
    }

    async fn is_online(&self, scope: &TaskScope, device_id: &str) -> bool {
        self.session(&(scope.clone(), device_id.to_owned()))
            .is_some()
    }
}
