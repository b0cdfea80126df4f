//! One device connection: CONNECT and its authentication, then the packet loop until
//! the device leaves, its keepalive expires, or taskd closes it.
//!
//! Packets are read and written with `rumqttc`'s MQTT 3.1.1 codec; this module decides
//! only what IoTDA's rules say (spec §1, §6): CONNACK codes, keepalive × 1.5, QoS 0/1,
//! subscriptions within the device's own topics, the auto-subscription.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{Error as CodecError, Protocol, QoS};
use taskd_store::{DeviceSession, SessionRefusal};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, ClientId, KEEPALIVE_SECS, Refusal, Transport};
use crate::codec::DeviceCodec;
use crate::hub::{DeviceKey, Hub, Outbound, SessionHandle, Subscription};
use crate::payloads::MAX_PAYLOAD_BYTES;

/// How long a new connection may take to send its CONNECT.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Explicit subscriptions per connection (spec §6 Q18: the larger of Huawei's figures).
pub const MAX_SUBSCRIPTIONS: usize = 100;
/// QoS 1 publishes to a device awaiting its PUBACK; more wait in the queue.
const MAX_INFLIGHT: usize = 64;
/// Publishes queued for one device's connection.
pub const OUTBOUND_QUEUE: usize = 256;
/// Largest packet taskd writes or reads (a PUBLISH ≤ 1 MB, plus its topic and header).
const MAX_PACKET_BYTES: usize = MAX_PAYLOAD_BYTES + 64 * 1024;

/// Settings of a listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSettings {
    pub transport: Transport,
    /// Refuse `secure_access` devices on a plain listener (spec §6 Q6).
    pub enforce_secure_access: bool,
}

/// Runs one connection to its end.
pub async fn run<S>(
    hub: Arc<Hub>,
    stream: S,
    settings: ConnectionSettings,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut framed = Framed::new(stream, DeviceCodec::new(MAX_PACKET_BYTES));
    let first = tokio::select! {
        first = tokio::time::timeout(CONNECT_TIMEOUT, framed.next()) => first,
        _ = shutdown.cancelled() => return,
    };
    let connect = match first {
        Ok(Some(Ok(Packet::Connect(connect)))) => connect,
        // Unknown protocol names or levels (3.1 reads as 3.1.1, `codec`): "unacceptable
        // protocol version", which makes clients that can fall back to 3.1.1 do so.
        Ok(Some(Err(CodecError::InvalidProtocol | CodecError::InvalidProtocolLevel(_)))) => {
            refuse(&mut framed, Refusal::ProtocolVersion).await;
            return;
        }
        // Not MQTT, not a CONNECT first, or silence: close without a word.
        _ => return,
    };
    if connect.protocol != Protocol::V4 {
        refuse(&mut framed, Refusal::ProtocolVersion).await;
        return;
    }
    let (username, password) = connect
        .login
        .as_ref()
        .map(|l| (l.username.as_str(), l.password.as_str()))
        .unwrap_or(("", ""));
    let client = match ClientId::parse(&connect.client_id, username) {
        Ok(c) => c,
        Err(r) => {
            refuse(&mut framed, r).await;
            return;
        }
    };
    if !KEEPALIVE_SECS.contains(&connect.keep_alive) {
        refuse(&mut framed, Refusal::KeepAlive).await;
        return;
    }
    let now = hub.clock().now();
    let candidates = match hub.store().device_logins(client.device_id).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "device lookup failed during CONNECT");
            refuse(&mut framed, Refusal::Unavailable).await;
            return;
        }
    };
    let device = match auth::authenticate(
        &client,
        password.as_bytes(),
        candidates,
        settings.transport,
        settings.enforce_secure_access,
        now,
    ) {
        Ok(d) => d,
        Err(r) => {
            // The device id and why, never the password (or the secret it was checked
            // against).
            tracing::info!(device_id = client.device_id, reason = %r, code = r.return_code(), "device refused");
            refuse(&mut framed, r).await;
            return;
        }
    };
    let key: DeviceKey = (device.scope.clone(), device.device_id.clone());
    let session = DeviceSession {
        scope: device.scope.clone(),
        device_id: device.device_id.clone(),
        session_id: uuid::Uuid::new_v4().to_string(),
        node_id: hub.node_id().to_owned(),
        connected_at: now,
    };
    // One device's CONNECTs on this node record their session and register in the same
    // order: else the connection the hub keeps could be another than the store's current
    // one, and its end would never mark the device OFFLINE.
    let _connecting = hub.connect_lock(&key).await;
    match hub.open_session(session.clone()).await {
        Ok(Ok(Some(replaced))) if replaced.node_id != hub.node_id() => {
            // The device's older connection is on another node: that node closes it (the
            // newer connection wins, spec §1.6). On this node `register` closes it.
            let mail = crate::relay::Mail::Disconnect {
                project_id: key.0.project_id.clone(),
                instance_id: key.0.instance_id.clone(),
                device_id: key.1.clone(),
                session_id: Some(replaced.session_id),
            };
            if let Err(e) = crate::relay::send(
                hub.store().as_ref(),
                hub.clock().as_ref(),
                &replaced.node_id,
                &mail,
                Duration::from_secs(30),
            )
            .await
            {
                tracing::warn!(device_id = %key.1, error = %e, "older connection on another node not closed");
            }
        }
        Ok(Ok(_)) => {}
        Ok(Err(SessionRefusal::Frozen)) => {
            refuse(&mut framed, Refusal::Frozen).await;
            return;
        }
        Ok(Err(SessionRefusal::DeviceNotFound)) => {
            refuse(&mut framed, Refusal::BadCredentials).await;
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "session not recorded during CONNECT");
            refuse(&mut framed, Refusal::Unavailable).await;
            return;
        }
    }
    let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let close = shutdown.child_token();
    let subscriptions = Arc::new(Mutex::new(Vec::new()));
    hub.register(
        key.clone(),
        SessionHandle {
            session_id: session.session_id.clone(),
            outbound: outbound_tx,
            close: close.clone(),
            subscriptions: Arc::clone(&subscriptions),
        },
    );
    drop(_connecting);
    let accepted = framed
        .send(Packet::ConnAck(ConnAck::new(
            ConnectReturnCode::Success,
            false,
        )))
        .await;
    tracing::debug!(device_id = %key.1, "device connected");
    hub.session_recorded();
    if accepted.is_ok() {
        let hub_for_connect = Arc::clone(&hub);
        let key_for_connect = key.clone();
        tokio::spawn(async move { hub_for_connect.on_connected(key_for_connect).await });
        let keepalive = Duration::from_millis(u64::from(connect.keep_alive) * 1500);
        let reason = packet_loop(
            &hub,
            &key,
            &mut framed,
            outbound_rx,
            &subscriptions,
            keepalive,
            &close,
        )
        .await;
        tracing::debug!(device_id = %key.1, reason, "device disconnected");
    }
    hub.unregister(&key, &session.session_id);
    if let Err(e) = hub
        .store()
        .device_session_close(&key.0, &key.1, &session.session_id, hub.clock().now())
        .await
    {
        tracing::warn!(device_id = %key.1, error = %e, "OFFLINE not recorded");
    }
    hub.session_recorded();
}

async fn refuse<S>(framed: &mut Framed<S, DeviceCodec>, refusal: Refusal)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let code = match refusal.return_code() {
        0x01 => ConnectReturnCode::RefusedProtocolVersion,
        0x02 => ConnectReturnCode::BadClientId,
        0x03 => ConnectReturnCode::ServiceUnavailable,
        0x04 => ConnectReturnCode::BadUserNamePassword,
        _ => ConnectReturnCode::NotAuthorized,
    };
    let _ = framed
        .send(Packet::ConnAck(ConnAck::new(code, false)))
        .await;
}

/// Reads and writes until the connection ends; returns why.
async fn packet_loop<S>(
    hub: &Hub,
    key: &DeviceKey,
    framed: &mut Framed<S, DeviceCodec>,
    mut outbound: mpsc::Receiver<Outbound>,
    subscriptions: &Mutex<Vec<Subscription>>,
    keepalive: Duration,
    close: &CancellationToken,
) -> &'static str
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut inflight: HashMap<u16, Option<oneshot::Sender<()>>> = HashMap::new();
    let mut uplink_rate = UplinkRate::default();
    let mut next_pkid: u16 = 0;
    let deadline = tokio::time::sleep(keepalive);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            packet = framed.next() => {
                let packet = match packet {
                    None => return "closed by the device",
                    Some(Err(_)) => return "malformed packet",
                    Some(Ok(p)) => p,
                };
                // Any packet proves the device alive (MQTT keepalive).
                deadline.as_mut().reset(tokio::time::Instant::now() + keepalive);
                match packet {
                    Packet::PingReq => {
                        if framed.send(Packet::PingResp).await.is_err() {
                            return "write failed";
                        }
                    }
                    Packet::Publish(publish) => {
                        match publish.qos {
                            // No QoS 2 (spec §6 Q9).
                            QoS::ExactlyOnce => return "QoS 2 publish",
                            QoS::AtLeastOnce => {
                                // Acknowledged first, even when dropped: 3.1.1 has no
                                // negative PUBACK (spec §6 Q20).
                                if framed.send(Packet::PubAck(PubAck::new(publish.pkid))).await.is_err() {
                                    return "write failed";
                                }
                            }
                            QoS::AtMostOnce => {}
                        }
                        if uplink_rate.admit(tokio::time::Instant::now()) {
                            hub.handle_publish(key, &publish.topic, &publish.payload).await;
                        } else if uplink_rate.first_drop_this_second() {
                            tracing::info!(device_id = %key.1, limit = MAX_UPLINKS_PER_SECOND, "device publishes over its rate; the rest of this second is dropped");
                        }
                    }
                    Packet::PubAck(ack) => {
                        if let Some(Some(tx)) = inflight.remove(&ack.pkid) {
                            let _ = tx.send(());
                        }
                    }
                    Packet::Subscribe(subscribe) => {
                        let codes: Vec<SubscribeReasonCode> = {
                        let mut subs = subscriptions.lock().unwrap();
                        subscribe
                            .filters
                            .iter()
                            .map(|f| {
                                if !crate::topics::filter_allowed(&key.1, &f.path) {
                                    return SubscribeReasonCode::Failure;
                                }
                                let qos = if f.qos == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce };
                                if let Some(existing) = subs.iter_mut().find(|s| s.filter == f.path) {
                                    existing.qos = qos;
                                } else if subs.len() >= MAX_SUBSCRIPTIONS {
                                    return SubscribeReasonCode::Failure;
                                } else {
                                    subs.push(Subscription { filter: f.path.clone(), qos });
                                }
                                SubscribeReasonCode::Success(qos)
                            })
                            .collect()
                        };
                        if framed.send(Packet::SubAck(SubAck::new(subscribe.pkid, codes))).await.is_err() {
                            return "write failed";
                        }
                    }
                    Packet::Unsubscribe(unsubscribe) => {
                        subscriptions
                            .lock()
                            .unwrap()
                            .retain(|s| !unsubscribe.topics.contains(&s.filter));
                        if framed.send(Packet::UnsubAck(UnsubAck::new(unsubscribe.pkid))).await.is_err() {
                            return "write failed";
                        }
                    }
                    Packet::Disconnect => return "DISCONNECT",
                    // A second CONNECT is a protocol violation.
                    Packet::Connect(_) => return "second CONNECT",
                    // PubRec/PubRel/PubComp belong to QoS 2; the rest are server packets.
                    _ => return "unexpected packet",
                }
            }
            out = outbound.recv(), if inflight.len() < MAX_INFLIGHT => {
                let Some(Outbound::Publish { topic, payload, qos, acked }) = out else {
                    return "hub closed";
                };
                let mut publish = rumqttc::mqttbytes::v4::Publish::from_bytes(topic, qos, payload);
                if qos == QoS::AtLeastOnce {
                    next_pkid = next_free_pkid(next_pkid, &inflight);
                    publish.pkid = next_pkid;
                    inflight.insert(next_pkid, acked);
                    if framed.send(Packet::Publish(publish)).await.is_err() {
                        return "write failed";
                    }
                } else {
                    if framed.send(Packet::Publish(publish)).await.is_err() {
                        return "write failed";
                    }
                    if let Some(tx) = acked {
                        let _ = tx.send(());
                    }
                }
            }
            _ = &mut deadline => return "keepalive expired",
            _ = close.cancelled() => return "closed by taskd",
        }
    }
}

/// Publishes a device may send per second (IoTDA: 50 per connection); more are
/// acknowledged and dropped.
pub const MAX_UPLINKS_PER_SECOND: u32 = 50;

/// A one-second window count of a connection's publishes.
#[derive(Debug, Default)]
struct UplinkRate {
    window_start: Option<tokio::time::Instant>,
    count: u32,
}

impl UplinkRate {
    fn admit(&mut self, now: tokio::time::Instant) -> bool {
        match self.window_start {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                self.window_start = Some(now);
                self.count = 0;
            }
        }
        self.count += 1;
        self.count <= MAX_UPLINKS_PER_SECOND
    }

    /// After a refused `admit`: whether it was the window's first refusal (logged once).
    fn first_drop_this_second(&self) -> bool {
        self.count == MAX_UPLINKS_PER_SECOND + 1
    }
}

/// The next packet id after `last` that no unacknowledged publish uses (never 0).
fn next_free_pkid(last: u16, inflight: &HashMap<u16, Option<oneshot::Sender<()>>>) -> u16 {
    let mut id = last;
    loop {
        id = id.wrapping_add(1);
        if id != 0 && !inflight.contains_key(&id) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifty_uplinks_a_second_pass_and_the_window_resets() {
        let t0 = tokio::time::Instant::now();
        let mut rate = UplinkRate::default();
        for _ in 0..MAX_UPLINKS_PER_SECOND {
            assert!(rate.admit(t0));
        }
        assert!(!rate.admit(t0 + Duration::from_millis(999)));
        assert!(rate.first_drop_this_second());
        assert!(!rate.admit(t0 + Duration::from_millis(999)));
        assert!(!rate.first_drop_this_second());
        assert!(rate.admit(t0 + Duration::from_secs(1)));
    }
}
