//! [`Router`]: the [`DeviceChannel`] of a node that shares its store with others. A
//! device is connected to one node; a command, property request or message for it may be
//! issued on any node (a REST call, a batch sub-task claimed there).
//!
//! The store says which node holds a device's connection (its session row). A request for
//! a device held elsewhere travels as [`Mail`] through the store to that node's mailbox,
//! which PostgreSQL's `NOTIFY taskd_mail` wakes; the holding node runs it on its [`Hub`]
//! and mails the outcome back. No second broker: the database every node already shares
//! is the route (ARCHITECTURE.md).
//!
//! Each node also beats (`Store::node_heartbeat`) and reaps: a node not seen for the node
//! timeout is dead, and its devices' sessions end (OFFLINE) so that they can be found
//! again when they reconnect elsewhere. A node that learns it was reaped (a stall longer
//! than the timeout) closes its connections, whose sessions the store no longer has; the
//! devices reconnect and are recorded again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use taskd_core::{Clock, TaskScope};
use taskd_engine::device_channel::{ChannelError, DeviceChannel, DeviceCommand, DeviceReply};
use taskd_store::{DeviceMessage, NodeMailRefusal, Store};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::hub::{DeviceKey, Hub, MAX_PENDING_REQUESTS};

/// How long a node may go unseen before it is taken for dead (its devices OFFLINE), by
/// default. A node beats three times per timeout.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(30);
/// Mail read per look into the mailbox.
const MAIL_BATCH: u32 = 500;
/// The mailbox is looked into at least this often: a notification lost to a reconnect of
/// the LISTEN connection delays mail by this much at most.
const MAIL_POLL: Duration = Duration::from_secs(1);
/// Beyond the request's own timeout, how long the asking node waits for the holding
/// node's answer (which reports a timeout itself) before giving up on it.
const ANSWER_MARGIN: Duration = Duration::from_secs(5);

/// What one node asks of, or answers to, another. JSON in the store's `node_mail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mail {
    /// Run `request` on the device's connection and answer `from` with `id`.
    Request {
        id: String,
        from: String,
        project_id: String,
        instance_id: String,
        device_id: String,
        timeout_ms: u64,
        request: Request,
    },
    Answer {
        id: String,
        outcome: Outcome,
    },
    /// The device's desired shadow changed: push the delta (no answer).
    DesiredChanged {
        project_id: String,
        instance_id: String,
        device_id: String,
    },
    /// Close the device's connection: frozen or deleted (`session_id` absent), or
    /// replaced by a newer connection on another node (that older session only).
    Disconnect {
        project_id: String,
        instance_id: String,
        device_id: String,
        session_id: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Command {
        request_id: String,
        service_id: Option<String>,
        command_name: Option<String>,
        paras: Value,
    },
    PropertySet {
        services: Value,
    },
    PropertyGet {
        service_id: Option<String>,
    },
    /// Deliver the stored message (the holding node reads it) and record the outcome.
    Deliver {
        message_id: String,
    },
}

/// A request's outcome as it travels back: [`DeviceChannel`]'s result, by value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Reply { request_id: String, payload: Value },
    Done,
    Offline,
    Timeout { ms: u64 },
    NotSubscribed { topic: String },
    ConnectionLost { reason: String },
    InvalidRequest { reason: String },
    Store { reason: String },
}

impl Outcome {
    fn of_reply(result: Result<DeviceReply, ChannelError>) -> Outcome {
        match result {
            Ok(r) => Outcome::Reply {
                request_id: r.request_id,
                payload: r.payload,
            },
            Err(e) => Outcome::of_error(e),
        }
    }

    fn of_error(e: ChannelError) -> Outcome {
        match e {
            ChannelError::Offline => Outcome::Offline,
            ChannelError::Timeout(d) => Outcome::Timeout {
                ms: d.as_millis() as u64,
            },
            ChannelError::NotSubscribed(topic) => Outcome::NotSubscribed { topic },
            ChannelError::ConnectionLost(reason) => Outcome::ConnectionLost { reason },
            ChannelError::InvalidRequest(reason) => Outcome::InvalidRequest { reason },
            ChannelError::Store(reason) => Outcome::Store { reason },
        }
    }

    fn into_reply(self) -> Result<DeviceReply, ChannelError> {
        match self {
            Outcome::Reply {
                request_id,
                payload,
            } => Ok(DeviceReply {
                request_id,
                payload,
            }),
            Outcome::Done => Err(ChannelError::Store(
                "the holding node answered a request with no reply".into(),
            )),
            other => Err(other.into_error()),
        }
    }

    fn into_done(self) -> Result<(), ChannelError> {
        match self {
            Outcome::Done | Outcome::Reply { .. } => Ok(()),
            other => Err(other.into_error()),
        }
    }

    fn into_error(self) -> ChannelError {
        match self {
            Outcome::Reply { .. } | Outcome::Done => {
                ChannelError::Store("an answer is not an error".into())
            }
            Outcome::Offline => ChannelError::Offline,
            Outcome::Timeout { ms } => ChannelError::Timeout(Duration::from_millis(ms)),
            Outcome::NotSubscribed { topic } => ChannelError::NotSubscribed(topic),
            Outcome::ConnectionLost { reason } => ChannelError::ConnectionLost(reason),
            Outcome::InvalidRequest { reason } => ChannelError::InvalidRequest(reason),
            Outcome::Store { reason } => ChannelError::Store(reason),
        }
    }
}

/// Where a device's traffic goes.
enum Route {
    /// Connected to this node.
    Here,
    /// Connected to another node.
    There(String),
    Offline,
}

/// Mails `mail` to `node_id`, to be read within `ttl`.
pub(crate) async fn send(
    store: &dyn Store,
    clock: &dyn Clock,
    node_id: &str,
    mail: &Mail,
    ttl: Duration,
) -> Result<(), ChannelError> {
    let body = serde_json::to_string(mail).map_err(|e| ChannelError::Store(e.to_string()))?;
    let now = clock.now();
    match store
        .node_mail_send(node_id, &body, now, now.plus_millis(ttl.as_millis() as i64))
        .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(NodeMailRefusal::MailboxFull)) => Err(ChannelError::ConnectionLost(
            "the node holding the device's connection is not keeping up; try again".into(),
        )),
        Ok(Err(NodeMailRefusal::TooLarge)) => Err(ChannelError::InvalidRequest(
            "The request is too large to route to the device's node.".into(),
        )),
        Err(e) => Err(ChannelError::Store(e.to_string())),
    }
}

/// The node's device channel: its own [`Hub`] for the devices connected here, mail for
/// the rest. Cheap to share (`Arc`).
pub struct Router {
    hub: Arc<Hub>,
    /// Requests this node mailed, waiting for their answers, by mail id.
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
}

impl Router {
    pub fn new(hub: Arc<Hub>) -> Arc<Router> {
        Arc::new(Router {
            hub,
            waiting: Mutex::default(),
        })
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    fn store(&self) -> &dyn Store {
        self.hub.store().as_ref()
    }

    async fn route(&self, key: &DeviceKey) -> Result<Route, ChannelError> {
        if self.hub.holds(key) {
            return Ok(Route::Here);
        }
        match self.store().device_session_get(&key.0, &key.1).await {
            Ok(Some(s)) if s.node_id != self.hub.node_id() => Ok(Route::There(s.node_id)),
            // Recorded for this node but not held (a connection ending right now): offline.
            Ok(_) => Ok(Route::Offline),
            Err(e) => Err(ChannelError::Store(e.to_string())),
        }
    }

    /// Mails `node` something that wants no answer.
    async fn tell(&self, node: &str, mail: &Mail) -> Result<(), ChannelError> {
        send(
            self.store(),
            self.hub.clock().as_ref(),
            node,
            mail,
            ANSWER_MARGIN,
        )
        .await
    }

    /// Mails `request` to `node` and waits for its answer.
    async fn ask(
        &self,
        node: &str,
        key: &DeviceKey,
        request: Request,
        timeout: Duration,
    ) -> Result<Outcome, ChannelError> {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.waiting.lock().unwrap();
            if waiting.len() >= MAX_PENDING_REQUESTS {
                return Err(ChannelError::InvalidRequest(format!(
                    "Too many requests are waiting for devices on other nodes (at most {MAX_PENDING_REQUESTS})."
                )));
            }
            waiting.insert(id.clone(), tx);
        }
        // However this ends, the entry goes (a late answer then finds nothing).
        let _forget = Forget {
            waiting: &self.waiting,
            id: &id,
        };
        let mail = Mail::Request {
            id: id.clone(),
            from: self.hub.node_id().to_owned(),
            project_id: key.0.project_id.clone(),
            instance_id: key.0.instance_id.clone(),
            device_id: key.1.clone(),
            timeout_ms: timeout.as_millis() as u64,
            request,
        };
        send(
            self.store(),
            self.hub.clock().as_ref(),
            node,
            &mail,
            timeout + ANSWER_MARGIN,
        )
        .await?;
        match tokio::time::timeout(timeout + ANSWER_MARGIN, rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(ChannelError::ConnectionLost(
                "the request was dropped".into(),
            )),
            // The holding node never answered (it died with the request).
            Err(_) => Err(ChannelError::Timeout(timeout)),
        }
    }

    async fn request(
        &self,
        key: DeviceKey,
        request: Request,
        timeout: Duration,
    ) -> Result<DeviceReply, ChannelError> {
        match self.route(&key).await? {
            Route::Here => Self::run_here(&self.hub, &key, request, timeout)
                .await
                .into_reply(),
            Route::There(node) => self.ask(&node, &key, request, timeout).await?.into_reply(),
            Route::Offline => Err(ChannelError::Offline),
        }
    }

    /// Runs a request on this node's hub.
    async fn run_here(hub: &Hub, key: &DeviceKey, request: Request, timeout: Duration) -> Outcome {
        let (scope, device_id) = (&key.0, key.1.as_str());
        match request {
            Request::Command {
                request_id,
                service_id,
                command_name,
                paras,
            } => Outcome::of_reply(
                hub.command(
                    scope,
                    device_id,
                    &request_id,
                    DeviceCommand {
                        service_id,
                        command_name,
                        paras,
                    },
                    timeout,
                )
                .await,
            ),
            Request::PropertySet { services } => {
                Outcome::of_reply(hub.property_set(scope, device_id, services, timeout).await)
            }
            Request::PropertyGet { service_id } => Outcome::of_reply(
                hub.property_get(scope, device_id, service_id.as_deref(), timeout)
                    .await,
            ),
            Request::Deliver { message_id } => {
                match hub.store().message_get(scope, device_id, &message_id).await {
                    Ok(Some(message)) => match hub.deliver_message(&message).await {
                        Ok(()) => Outcome::Done,
                        Err(e) => Outcome::of_error(e),
                    },
                    // Deleted with its device meanwhile: nothing to deliver.
                    Ok(None) => Outcome::Done,
                    Err(e) => Outcome::Store {
                        reason: e.to_string(),
                    },
                }
            }
        }
    }

    /// Says this node is alive, before it accepts any connection: another node's reaper
    /// ends the sessions of nodes the store does not know.
    pub async fn join(&self) -> Result<(), taskd_store::StoreError> {
        self.store()
            .node_heartbeat(self.hub.node_id(), self.hub.clock().now())
            .await
            .map(|_| ())
    }

    /// Runs until `stop`, after [`Router::join`]: beats and reaps dead nodes, and reads
    /// this node's mailbox, each on its own (ending a dead node's thousands of sessions
    /// must not hold up the mail). Only needed where several nodes share the store; on
    /// the embedded store the one node holds every connection and nothing is ever mailed.
    pub async fn run(self: Arc<Self>, node_timeout: Duration, stop: CancellationToken) {
        tokio::join!(
            self.clone().read_mail_until(stop.clone()),
            self.beat_until(node_timeout, stop),
        );
    }

    async fn read_mail_until(self: Arc<Self>, stop: CancellationToken) {
        let wake = self.store().node_mail_wakeups();
        loop {
            // Armed before the mailbox is read: mail announced while reading is not missed.
            let mut notified = wake.as_deref().map(|n| Box::pin(n.notified()));
            if let Some(n) = notified.as_mut() {
                n.as_mut().enable();
            }
            self.read_mailbox().await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = async {
                    match notified.as_mut() {
                        Some(n) => n.await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = tokio::time::sleep(MAIL_POLL) => {}
            }
        }
    }

    async fn beat_until(&self, node_timeout: Duration, stop: CancellationToken) {
        let beat_every = (node_timeout / 3).max(Duration::from_millis(100));
        let mut beats = tokio::time::interval(beat_every);
        beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = beats.tick() => self.beat(node_timeout).await,
            }
        }
    }

    async fn beat(&self, node_timeout: Duration) {
        let now = self.hub.clock().now();
        match self.store().node_heartbeat(self.hub.node_id(), now).await {
            Ok(true) => {}
            Ok(false) => {
                // Taken for dead (a stall longer than the timeout): the store no longer
                // has this node's sessions. Its devices reconnect and are recorded again.
                tracing::warn!(
                    node = self.hub.node_id(),
                    "this node was taken for dead by another; closing its device connections"
                );
                self.hub.close_all();
            }
            Err(e) => {
                tracing::warn!(error = %e, "node heartbeat not recorded");
                return;
            }
        }
        let seen_before = now.plus_millis(-(node_timeout.as_millis() as i64));
        match self.store().nodes_reap(seen_before, now).await {
            Ok(r) if r.nodes > 0 || r.sessions > 0 => tracing::info!(
                nodes = r.nodes,
                sessions = r.sessions,
                "nodes not seen in time: their device sessions ended"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "dead nodes not reaped"),
        }
    }

    async fn read_mailbox(self: &Arc<Self>) {
        loop {
            let now = self.hub.clock().now();
            let taken = match self
                .store()
                .node_mail_take(self.hub.node_id(), now, MAIL_BATCH)
                .await
            {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "mailbox not read");
                    return;
                }
            };
            let full = taken.len() == MAIL_BATCH as usize;
            for body in taken {
                match serde_json::from_str::<Mail>(&body) {
                    Ok(mail) => self.handle(mail),
                    Err(e) => tracing::warn!(error = %e, "mail dropped: not understood"),
                }
            }
            if !full {
                return;
            }
        }
    }

    fn handle(self: &Arc<Self>, mail: Mail) {
        match mail {
            Mail::Answer { id, outcome } => {
                if let Some(waiter) = self.waiting.lock().unwrap().remove(&id) {
                    let _ = waiter.send(outcome);
                }
            }
            Mail::Request {
                id,
                from,
                project_id,
                instance_id,
                device_id,
                timeout_ms,
                request,
            } => {
                let hub = Arc::clone(&self.hub);
                tokio::spawn(async move {
                    let key: DeviceKey = (TaskScope::new(project_id, instance_id), device_id);
                    let timeout = Duration::from_millis(timeout_ms)
                        .min(taskd_engine::device_channel::DEVICE_REPLY_TIMEOUT * 2);
                    let outcome = Self::run_here(&hub, &key, request, timeout).await;
                    let answer = Mail::Answer { id, outcome };
                    if let Err(e) = send(
                        hub.store().as_ref(),
                        hub.clock().as_ref(),
                        &from,
                        &answer,
                        ANSWER_MARGIN,
                    )
                    .await
                    {
                        tracing::warn!(node = %from, error = %e, "answer not mailed");
                    }
                });
            }
            Mail::DesiredChanged {
                project_id,
                instance_id,
                device_id,
            } => {
                let hub = Arc::clone(&self.hub);
                tokio::spawn(async move {
                    hub.desired_changed(&TaskScope::new(project_id, instance_id), &device_id)
                        .await;
                });
            }
            Mail::Disconnect {
                project_id,
                instance_id,
                device_id,
                session_id,
            } => {
                let hub = Arc::clone(&self.hub);
                tokio::spawn(async move {
                    let key: DeviceKey = (TaskScope::new(project_id, instance_id), device_id);
                    hub.disconnect_session(&key, session_id.as_deref()).await;
                });
            }
        }
    }
}

/// Removes a waiting request's entry when its wait ends, however it ends.
struct Forget<'a> {
    waiting: &'a Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    id: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.waiting.lock().unwrap().remove(self.id);
    }
}

#[async_trait]
impl DeviceChannel for Router {
    async fn command(
        &self,
        scope: &TaskScope,
        device_id: &str,
        request_id: &str,
        command: DeviceCommand,
        timeout: Duration,
    ) -> Result<DeviceReply, ChannelError> {
        self.request(
            (scope.clone(), device_id.to_owned()),
            Request::Command {
                request_id: request_id.to_owned(),
                service_id: command.service_id,
                command_name: command.command_name,
                paras: command.paras,
            },
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
        self.request(
            (scope.clone(), device_id.to_owned()),
            Request::PropertySet { services },
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
        self.request(
            (scope.clone(), device_id.to_owned()),
            Request::PropertyGet {
                service_id: service_id.map(str::to_owned),
            },
            timeout,
        )
        .await
    }

    async fn deliver_message(&self, message: &DeviceMessage) -> Result<(), ChannelError> {
        let m = &message.message;
        let key: DeviceKey = (m.scope.clone(), m.device_id.clone());
        match self.route(&key).await? {
            Route::Here => self.hub.deliver_message(message).await,
            Route::There(node) => self
                .ask(
                    &node,
                    &key,
                    Request::Deliver {
                        message_id: m.message_id.clone(),
                    },
                    // The holding node waits up to its PUBACK timeout.
                    taskd_engine::device_channel::DEVICE_REPLY_TIMEOUT,
                )
                .await?
                .into_done(),
            // It stays pending for the device's next connection, on whichever node.
            Route::Offline => Ok(()),
        }
    }

    async fn desired_changed(&self, scope: &TaskScope, device_id: &str) {
        let key: DeviceKey = (scope.clone(), device_id.to_owned());
        match self.route(&key).await {
            Ok(Route::Here) => self.hub.desired_changed(scope, device_id).await,
            Ok(Route::There(node)) => {
                let mail = Mail::DesiredChanged {
                    project_id: scope.project_id.clone(),
                    instance_id: scope.instance_id.clone(),
                    device_id: device_id.to_owned(),
                };
                if let Err(e) = self.tell(&node, &mail).await {
                    // Pushed at the device's next connection or property report anyway.
                    tracing::debug!(device_id, error = %e, "desired change not routed");
                }
            }
            // Pushed when it connects.
            Ok(Route::Offline) | Err(_) => {}
        }
    }

    async fn disconnect(&self, scope: &TaskScope, device_id: &str) {
        let key: DeviceKey = (scope.clone(), device_id.to_owned());
        // A CONNECT in flight on this node is waited for (see `Hub::disconnect`).
        self.hub.disconnect(scope, device_id).await;
        if let Ok(Route::There(node)) = self.route(&key).await {
            let mail = Mail::Disconnect {
                project_id: scope.project_id.clone(),
                instance_id: scope.instance_id.clone(),
                device_id: device_id.to_owned(),
                session_id: None,
            };
            if let Err(e) = self.tell(&node, &mail).await {
                tracing::warn!(device_id, error = %e, "disconnect not routed to the device's node");
            }
        }
    }

    async fn is_online(&self, scope: &TaskScope, device_id: &str) -> bool {
        matches!(
            self.route(&(scope.clone(), device_id.to_owned())).await,
            Ok(Route::Here | Route::There(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_reads_back_what_was_written() {
        let mails = [
            Mail::Request {
                id: "m1".into(),
                from: "node-a".into(),
                project_id: "p".into(),
                instance_id: "".into(),
                device_id: "d".into(),
                timeout_ms: 20_000,
                request: Request::Command {
                    request_id: "c1".into(),
                    service_id: Some("s".into()),
                    command_name: None,
                    paras: serde_json::json!({"x": 1}),
                },
            },
            Mail::Answer {
                id: "m1".into(),
                outcome: Outcome::Timeout { ms: 20_000 },
            },
            Mail::Disconnect {
                project_id: "p".into(),
                instance_id: "i".into(),
                device_id: "d".into(),
                session_id: Some("s1".into()),
            },
        ];
        for mail in mails {
            let text = serde_json::to_string(&mail).unwrap();
            assert_eq!(serde_json::from_str::<Mail>(&text).unwrap(), mail);
        }
    }

    #[test]
    fn every_channel_error_survives_the_trip() {
        let errors = [
            ChannelError::Offline,
            ChannelError::Timeout(Duration::from_secs(20)),
            ChannelError::NotSubscribed("t".into()),
            ChannelError::ConnectionLost("gone".into()),
            ChannelError::InvalidRequest("bad".into()),
            ChannelError::Store("db".into()),
        ];
        for e in errors {
            let outcome = Outcome::of_error(e.clone());
            let text = serde_json::to_string(&outcome).unwrap();
            let back: Outcome = serde_json::from_str(&text).unwrap();
            assert_eq!(back.into_reply(), Err(e));
        }
    }
}
