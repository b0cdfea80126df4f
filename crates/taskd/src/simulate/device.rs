//! One simulated device: its MQTT credentials, the topics it hears, what it answers
//! (the pure [`DeviceState::handle`]), and its connection loop ([`run`]).
//!
//! The protocol is IoTDA's device side (`iotda-device-mqtt.md` §1–§2), spoken as the
//! official SDKs speak it: client id `{device_id}_0_0_{YYYYMMDDHH}`, QoS 1 uplinks, the C
//! SDK's explicit subscriptions. The password is computed here rather than with the
//! server's function on purpose: a simulator sharing the server's code would agree with a
//! server bug (say, key and message swapped); the spec's vectors pin both.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet, QoS, SubscribeFilter, SubscribeReasonCode,
};
use serde_json::{Map, Value, json};
use taskd_core::{Clock, SystemClock, Timestamp};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::stats::Stats;
use crate::worker::client::Backoff;

/// Services a platform may create through property sets; a set that would exceed it (or
/// [`MAX_PROPERTIES_PER_SERVICE`], [`MAX_PROPERTY_BYTES`]) is answered `result_code 1`
/// and changes nothing, so a device's memory stays small whatever the platform sends.
pub const MAX_SERVICES: usize = 16;
pub const MAX_PROPERTIES_PER_SERVICE: usize = 64;
/// The property map as JSON, all services together.
pub const MAX_PROPERTY_BYTES: usize = 8 * 1024;
/// The service every device starts with, and its one property.
pub const DEFAULT_SERVICE: &str = "Sim";
/// IoTDA refuses a PUBLISH over 1 MB (spec §1.1); the simulator accepts up to that.
const MAX_INCOMING_PACKET: usize = 1024 * 1024;
const MAX_OUTGOING_PACKET: usize = 64 * 1024;
/// QoS 1 publishes a device may have unacknowledged (rumqttc keeps a slot per one).
const INFLIGHT: u16 = 8;
/// Buffered incoming events a device keeps room for between bursts.
const EVENTS_KEPT: usize = 4;
/// Requests queued from the device's loop to its connection.
const REQUEST_QUEUE: usize = 16;
/// TCP connect + CONNECT/CONNACK, and a flush, must finish within this.
const CONNECT_TIMEOUT_SECS: u64 = 10;
/// After a refused CONNECT or a lost connection: from this, doubling ...
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// ... up to this (with jitter, so a restarted server is not hit by the whole fleet at
/// once).
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long a stopping device waits for its DISCONNECT to be written.
const DISCONNECT_GRACE: Duration = Duration::from_secs(2);

/// What every device of the fleet does alike.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Fraction of commands answered with `result_code 1`, 0.0–1.0.
    pub fail_rate: f64,
    /// Picks which commands fail, so that a run can be repeated.
    pub seed: u64,
    /// Wait before answering a command.
    pub command_delay: Duration,
    /// Property reports; `None`: never.
    pub report_interval: Option<Duration>,
    pub fw_version: String,
    pub sw_version: String,
}

/// Where and how the fleet connects, shared by every device task.
pub struct Fleet {
    pub host: String,
    pub port: u16,
    pub keepalive: Duration,
    pub behaviour: Behaviour,
    pub stats: Stats,
    /// Bounds the handshakes in flight during a connect storm.
    pub handshakes: Semaphore,
    pub stop: CancellationToken,
}

/// A device as registered. `secret` never reaches a log line: no `Debug`.
pub struct Identity {
    pub device_id: String,
    pub secret: String,
}

/// `YYYYMMDDHH` of `now` (UTC): the client id's timestamp and the password's key.
pub fn timestamp(now: Timestamp) -> String {
    let t = now.to_datetime();
    format!(
        "{:04}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour()
    )
}

/// `{device_id}_0_0_{timestamp}`: id type 0 (device id), sign type 0 (HMAC-SHA256, the
/// timestamp not checked against the platform's clock, as the Java and C SDKs do).
pub fn client_id(device_id: &str, timestamp: &str) -> String {
    format!("{device_id}_0_0_{timestamp}")
}

/// Lowercase hex HMAC-SHA256, key = the timestamp, message = the secret (spec §1.2):
/// the server's own rule, so the two sides cannot drift apart.
pub use taskd_mqtt::auth::password;

/// The filters the C SDK subscribes to right after connecting (spec §1.8). taskd
/// subscribes every device to `…/sys/#` on its own; asking anyway is what a broker
/// without that rule (Mosquitto) needs, and checks that taskd grants them.
pub fn subscriptions(device_id: &str) -> [String; 6] {
    let base = format!("$oc/devices/{device_id}/sys");
    [
        format!("{base}/commands/#"),
        format!("{base}/properties/set/#"),
        format!("{base}/properties/get/#"),
        format!("{base}/messages/down"),
        format!("{base}/events/down"),
        format!("{base}/shadow/get/response/#"),
    ]
}

fn uplink(device_id: &str, rest: &str) -> String {
    format!("$oc/devices/{device_id}/sys/{rest}")
}

/// What the platform sent, by topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Downlink {
    Command(String),
    PropertiesSet(String),
    PropertiesGet(String),
    MessageDown,
    EventsDown,
    ShadowGetResponse(String),
    /// One of the device's own uplinks (a response, a report) routed back to it: a plain
    /// broker does that, since `commands/#` matches `commands/response/…`; taskd does not.
    Echo,
    /// Anything else, another device's topic included.
    Other,
}

/// Reads a downlink topic of `device_id`. The request id is everything after the last
/// `request_id=`, as the SDKs read it; a `?…` suffix is not part of a downlink topic.
pub fn parse_downlink(device_id: &str, topic: &str) -> Downlink {
    let Some(rest) = topic
        .strip_prefix("$oc/devices/")
        .and_then(|t| t.strip_prefix(device_id))
        .and_then(|t| t.strip_prefix("/sys/"))
    else {
        return Downlink::Other;
    };
    let request_id = |prefix: &str| -> Option<String> {
        let tail = rest.strip_prefix(prefix)?;
        let at = tail.rfind("request_id=")?;
        Some(tail[at + "request_id=".len()..].to_owned())
    };
    match rest {
        "messages/down" => Downlink::MessageDown,
        "events/down" => Downlink::EventsDown,
        "messages/up" | "events/up" | "properties/report" => Downlink::Echo,
        _ => {
            if rest.starts_with("commands/response/")
                || rest.starts_with("properties/set/response/")
                || rest.starts_with("properties/get/response/")
            {
                Downlink::Echo
            } else if let Some(id) = request_id("commands/") {
                Downlink::Command(id)
            } else if let Some(id) = request_id("properties/set/") {
                Downlink::PropertiesSet(id)
            } else if let Some(id) = request_id("properties/get/") {
                Downlink::PropertiesGet(id)
            } else if let Some(id) = request_id("shadow/get/response/") {
                Downlink::ShadowGetResponse(id)
            } else {
                Downlink::Other
            }
        }
    }
}

/// A publish a device makes in answer (or on its own).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub topic: String,
    pub payload: Value,
    /// A command response, sent after [`Behaviour::command_delay`].
    pub delayed: bool,
}

/// What a downlink was, for the statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    CommandOk,
    CommandFailed,
    PropertiesSet,
    PropertiesSetRefused,
    PropertiesGet,
    Message,
    VersionQuery,
    OtherEvent,
    ShadowResponse,
    Echo,
    Unknown,
}

/// A device's protocol state: its properties, changed by property sets, read by gets
/// and reports.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceState {
    properties: BTreeMap<String, Map<String, Value>>,
}

impl Default for DeviceState {
    fn default() -> Self {
        let mut sim = Map::new();
        sim.insert("value".into(), json!(0));
        DeviceState {
            properties: BTreeMap::from([(DEFAULT_SERVICE.to_owned(), sim)]),
        }
    }
}

impl DeviceState {
    /// Answers one downlink. Payloads are read tolerantly (spec §0.5): what is missing,
    /// null or of another type is taken as absent; a command is answered even when its
    /// payload is not JSON, since its request id is in the topic.
    pub fn handle(
        &mut self,
        device_id: &str,
        downlink: &Downlink,
        payload: &[u8],
        behaviour: &Behaviour,
        now: Timestamp,
    ) -> (Handled, Vec<Reply>) {
        let body: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
        match downlink {
            Downlink::Command(id) => {
                let fail = command_fails(behaviour.seed, device_id, id, behaviour.fail_rate);
                let (code, result, handled) = if fail {
                    (1, "simulated failure", Handled::CommandFailed)
                } else {
                    (0, "ok", Handled::CommandOk)
                };
                let reply = Reply {
                    topic: uplink(device_id, &format!("commands/response/request_id={id}")),
                    payload: json!({
                        "result_code": code,
                        "response_name": "",
                        "paras": { "result": result },
                    }),
                    delayed: true,
                };
                (handled, vec![reply])
            }
            Downlink::PropertiesSet(id) => {
                let (handled, code, desc) = match self.set(&body) {
                    Ok(()) => (Handled::PropertiesSet, 0, "Success".to_owned()),
                    Err(why) => (Handled::PropertiesSetRefused, 1, why),
                };
                let reply = Reply {
                    topic: uplink(
                        device_id,
                        &format!("properties/set/response/request_id={id}"),
                    ),
                    payload: json!({ "result_code": code, "result_desc": desc }),
                    delayed: false,
                };
                (handled, vec![reply])
            }
            Downlink::PropertiesGet(id) => {
                let service = body
                    .get("service_id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty());
                let reply = Reply {
                    topic: uplink(
                        device_id,
                        &format!("properties/get/response/request_id={id}"),
                    ),
                    payload: json!({ "services": self.services(service, None) }),
                    delayed: false,
                };
                (Handled::PropertiesGet, vec![reply])
            }
            Downlink::MessageDown => (Handled::Message, Vec::new()),
            Downlink::ShadowGetResponse(_) => (Handled::ShadowResponse, Vec::new()),
            Downlink::EventsDown => self.events(device_id, &body, behaviour, now),
            Downlink::Echo => (Handled::Echo, Vec::new()),
            Downlink::Other => (Handled::Unknown, Vec::new()),
        }
    }

    /// A property report of every service (spec §2.6).
    pub fn report(&self, device_id: &str, now: Timestamp) -> Reply {
        Reply {
            topic: uplink(device_id, "properties/report"),
            payload: json!({ "services": self.services(None, Some(now)) }),
            delayed: false,
        }
    }

    fn services(&self, only: Option<&str>, event_time: Option<Timestamp>) -> Vec<Value> {
        self.properties
            .iter()
            .filter(|(id, _)| only.is_none_or(|o| o == id.as_str()))
            .map(|(id, props)| {
                let mut service = json!({ "service_id": id, "properties": props });
                if let Some(t) = event_time {
                    service["event_time"] = json!(compact_time(t));
                }
                service
            })
            .collect()
    }

    /// Merges `{"services":[{"service_id","properties":{…}}]}` into the map, all or
    /// nothing. Services without an id or without an object of properties are skipped.
    fn set(&mut self, body: &Value) -> Result<(), String> {
        let mut next = self.properties.clone();
        for service in body
            .get("services")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(id) = service
                .get("service_id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            else {
                continue;
            };
            let Some(props) = service.get("properties").and_then(Value::as_object) else {
                continue;
            };
            let entry = next.entry(id.to_owned()).or_default();
            for (k, v) in props {
                entry.insert(k.clone(), v.clone());
            }
            if entry.len() > MAX_PROPERTIES_PER_SERVICE {
                return Err(format!(
                    "at most {MAX_PROPERTIES_PER_SERVICE} properties per service"
                ));
            }
        }
        if next.len() > MAX_SERVICES {
            return Err(format!("at most {MAX_SERVICES} services"));
        }
        let bytes = serde_json::to_vec(&next).map(|v| v.len()).unwrap_or(0);
        if bytes > MAX_PROPERTY_BYTES {
            return Err(format!("properties larger than {MAX_PROPERTY_BYTES} bytes"));
        }
        self.properties = next;
        Ok(())
    }

    /// `$ota` `version_query` → `version_report` (spec §2.3); other events are counted.
    /// An event addressed to another device (a gateway's child) is not this device's,
    /// as the Python SDK decides.
    fn events(
        &self,
        device_id: &str,
        body: &Value,
        behaviour: &Behaviour,
        now: Timestamp,
    ) -> (Handled, Vec<Reply>) {
        let addressee = body.get("object_device_id").and_then(Value::as_str);
        if addressee.is_some_and(|a| !a.is_empty() && a != device_id) {
            return (Handled::OtherEvent, Vec::new());
        }
        let queried = body
            .get("services")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|s| {
                s.get("service_id").and_then(Value::as_str) == Some("$ota")
                    && s.get("event_type").and_then(Value::as_str) == Some("version_query")
            });
        if !queried {
            return (Handled::OtherEvent, Vec::new());
        }
        let reply = Reply {
            topic: uplink(device_id, "events/up"),
            payload: json!({
                "object_device_id": device_id,
                "services": [{
                    "service_id": "$ota",
                    "event_type": "version_report",
                    "event_time": compact_time(now),
                    "paras": {
                        "fw_version": behaviour.fw_version,
                        "sw_version": behaviour.sw_version,
                    },
                }],
            }),
            delayed: false,
        };
        (Handled::VersionQuery, vec![reply])
    }
}

/// `yyyyMMdd'T'HHmmss'Z'`, IoTDA's documented `event_time`.
fn compact_time(t: Timestamp) -> String {
    let t = t.to_datetime();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// FNV-1a over the parts, finished with SplitMix64's mixer: stable across builds and
/// platforms (std's hasher promises neither), so a seed fails the same commands every run.
pub fn stable_hash(seed: u64, parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Whether the command `request_id` to `device_id` is answered as failed: a point in
/// [0, 1) drawn from the seed, the device and the request, below `rate`.
pub fn command_fails(seed: u64, device_id: &str, request_id: &str, rate: f64) -> bool {
    let unit = (stable_hash(seed, &[device_id, request_id]) >> 11) as f64 / (1u64 << 53) as f64;
    unit < rate
}

/// Where in the report interval a device reports: spread over the fleet so that ten
/// thousand devices do not all report in the same millisecond.
pub fn report_phase(device_id: &str, interval: Duration) -> Duration {
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(stable_hash(0, &[device_id]) % ms)
}

fn options(fleet: &Fleet, identity: &Identity) -> MqttOptions {
    let ts = timestamp(SystemClock.now());
    let mut o = MqttOptions::new(
        client_id(&identity.device_id, &ts),
        fleet.host.clone(),
        fleet.port,
    );
    o.set_credentials(identity.device_id.clone(), password(&ts, &identity.secret))
        .set_keep_alive(fleet.keepalive)
        .set_clean_session(true)
        .set_inflight(INFLIGHT)
        .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
    o
}

/// Queues a publish without blocking the connection loop (which is what drains the
/// queue): at once when there is room, else (and always for a delayed reply) from a task
/// of its own. What cannot be queued (the device stopped meanwhile, or a request id that
/// makes the topic invalid) is counted as dropped.
fn publish(client: &AsyncClient, fleet: &Arc<Fleet>, reply: Reply, delay: Duration) {
    let payload = reply.payload.to_string().into_bytes();
    if delay.is_zero() {
        match client.try_publish(reply.topic.as_str(), QoS::AtLeastOnce, false, payload) {
            Ok(()) => return,
            Err(rumqttc::ClientError::TryRequest(rumqttc::Request::Publish(p)))
                if rumqttc::valid_topic(&p.topic) =>
            {
                let (client, fleet) = (client.clone(), fleet.clone());
                tokio::spawn(async move {
                    let queued = client
                        .publish(p.topic, QoS::AtLeastOnce, false, p.payload)
                        .await;
                    if queued.is_err() {
                        fleet.stats.publish_dropped.inc();
                    }
                });
            }
            Err(_) => fleet.stats.publish_dropped.inc(),
        }
        return;
    }
    let (client, fleet) = (client.clone(), fleet.clone());
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let queued = client
            .publish(reply.topic, QoS::AtLeastOnce, false, payload)
            .await;
        if queued.is_err() {
            fleet.stats.publish_dropped.inc();
        }
    });
}

/// One device, until the fleet stops: connect (within the handshake bound), subscribe,
/// answer, report; reconnect with back-off when refused or dropped, with a fresh client
/// id timestamp and password each time.
pub async fn run(identity: Identity, fleet: Arc<Fleet>) {
    let stats = &fleet.stats;
    let (client, mut eventloop) = AsyncClient::new(options(&fleet, &identity), REQUEST_QUEUE);
    let mut network = eventloop.network_options();
    network.set_connection_timeout(CONNECT_TIMEOUT_SECS);
    // An answer is a PUBACK and a publish written back to back: without this, Nagle holds
    // the second until the first is acknowledged (a 40 ms delayed ACK per round trip).
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
    let mut state = DeviceState::default();
    let mut connected = false;
    let mut reports = fleet.behaviour.report_interval.map(|every| {
        let first = tokio::time::Instant::now() + report_phase(&identity.device_id, every);
        let mut i = tokio::time::interval_at(first, every);
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    });
    loop {
        if !connected {
            eventloop.mqtt_options = options(&fleet, &identity);
            let outcome = tokio::select! {
                _ = fleet.stop.cancelled() => return,
                outcome = handshake(&fleet, &mut eventloop) => outcome,
            };
            match outcome {
                Ok(()) => {
                    // rumqttc reserves room for 100 buffered events per connection
                    // (~15 KB); a device sees a few at a time, and ten thousand devices
                    // would hold 150 MB of it. It grows again if ever needed.
                    eventloop.state.events.shrink_to(EVENTS_KEPT);
                    connected = true;
                    backoff.reset();
                    stats.connected.inc();
                    stats.connects.inc();
                    let filters = subscriptions(&identity.device_id)
                        .map(|f| SubscribeFilter::new(f, QoS::AtLeastOnce));
                    if client.try_subscribe_many(filters).is_err() {
                        stats.publish_dropped.inc();
                    }
                }
                Err(e) => {
                    count_connect_error(stats, &e);
                    if !pause(&fleet.stop, backoff.next_delay()).await {
                        return;
                    }
                }
            }
            continue;
        }
        let report_due = async {
            match reports.as_mut() {
                Some(i) => {
                    i.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = fleet.stop.cancelled() => {
                disconnect(&client, &mut eventloop).await;
                stats.connected.dec();
                return;
            }
            _ = report_due => {
                stats.reports.inc();
                publish(&client, &fleet, state.report(&identity.device_id, SystemClock.now()), Duration::ZERO);
            }
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    stats.received.inc();
                    let downlink = parse_downlink(&identity.device_id, &p.topic);
                    let (handled, replies) = state.handle(
                        &identity.device_id,
                        &downlink,
                        &p.payload,
                        &fleet.behaviour,
                        SystemClock.now(),
                    );
                    stats.count(handled);
                    for reply in replies {
                        let delay = if reply.delayed { fleet.behaviour.command_delay } else { Duration::ZERO };
                        publish(&client, &fleet, reply, delay);
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .filter(|c| matches!(c, SubscribeReasonCode::Failure))
                        .count();
                    stats.subscriptions_refused.add(refused as u64);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(device_id = %identity.device_id, error = %e, "connection lost");
                    connected = false;
                    stats.connected.dec();
                    stats.drops.inc();
                    if !pause(&fleet.stop, backoff.next_delay()).await {
                        return;
                    }
                }
            }
        }
    }
}

/// TCP connect and CONNECT/CONNACK, holding one of the fleet's handshake permits.
async fn handshake(fleet: &Fleet, eventloop: &mut EventLoop) -> Result<(), ConnectionError> {
    let _permit = fleet.handshakes.acquire().await.expect("never closed");
    loop {
        match eventloop.poll().await? {
            Event::Incoming(Packet::ConnAck(_)) => return Ok(()),
            // Nothing else comes before the CONNACK.
            _ => continue,
        }
    }
}

fn count_connect_error(stats: &Stats, e: &ConnectionError) {
    match e {
        ConnectionError::ConnectionRefused(code) => match code {
            ConnectReturnCode::BadUserNamePassword => stats.refused_credentials.inc(),
            ConnectReturnCode::NotAuthorized => stats.refused_not_authorized.inc(),
            ConnectReturnCode::BadClientId => stats.refused_client_id.inc(),
            _ => stats.refused_other.inc(),
        },
        _ => stats.connect_errors.inc(),
    }
}

/// Waits `delay` unless the fleet stops first; `false` when it stopped.
async fn pause(stop: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// Sends DISCONNECT so the server marks the device OFFLINE at once, giving up after
/// [`DISCONNECT_GRACE`].
async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(DISCONNECT_GRACE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behaviour() -> Behaviour {
        Behaviour {
            fail_rate: 0.0,
            seed: 7,
            command_delay: Duration::ZERO,
            report_interval: None,
            fw_version: "v1.0".into(),
            sw_version: "v1.1".into(),
        }
    }

    const NOW: Timestamp = Timestamp::from_unix_secs(1_795_996_800); // 2026-11-30T00:00:00Z

    #[test]
    fn the_server_accepts_what_a_simulated_device_sends() {
        let id = client_id("sim-1", "2026113015");
        let parsed = taskd_mqtt::auth::ClientId::parse(&id, "sim-1").unwrap();
        assert_eq!(parsed.timestamp, "2026113015");
        assert_eq!(
            password(parsed.timestamp, "secret123"),
            "d7292cf445aaf552da73f59d26a2fc2358df203c9f9b692305eefd22e95af0dd"
        );
    }

    #[test]
    fn client_id_carries_the_utc_hour() {
        let t = NOW.plus_minutes(15 * 60 + 59);
        assert_eq!(timestamp(t), "2026113015");
        assert_eq!(client_id("sim-7", "2026113015"), "sim-7_0_0_2026113015");
        // A device id with underscores stays whole: the server splits from the right.
        assert_eq!(
            client_id("prod_node_1", &timestamp(NOW)),
            "prod_node_1_0_0_2026113000"
        );
    }

    #[test]
    fn subscriptions_are_the_c_sdk_filters_of_its_own_topics() {
        let subs = subscriptions("d1");
        assert_eq!(subs[0], "$oc/devices/d1/sys/commands/#");
        assert_eq!(subs[5], "$oc/devices/d1/sys/shadow/get/response/#");
        assert!(subs.iter().all(|s| s.starts_with("$oc/devices/d1/sys/")));
    }

    #[test]
    fn downlink_topics_are_read_from_their_own_device_only() {
        let d = |t: &str| parse_downlink("dev_1", t);
        assert_eq!(
            d("$oc/devices/dev_1/sys/commands/request_id=abc-1"),
            Downlink::Command("abc-1".into())
        );
        assert_eq!(
            d("$oc/devices/dev_1/sys/properties/set/request_id=s1"),
            Downlink::PropertiesSet("s1".into())
        );
        assert_eq!(
            d("$oc/devices/dev_1/sys/properties/get/request_id=g1"),
            Downlink::PropertiesGet("g1".into())
        );
        assert_eq!(
            d("$oc/devices/dev_1/sys/shadow/get/response/request_id=9"),
            Downlink::ShadowGetResponse("9".into())
        );
        assert_eq!(
            d("$oc/devices/dev_1/sys/messages/down"),
            Downlink::MessageDown
        );
        assert_eq!(d("$oc/devices/dev_1/sys/events/down"), Downlink::EventsDown);
        // Everything after the last `request_id=`.
        assert_eq!(
            d("$oc/devices/dev_1/sys/commands/x/request_id=a/request_id=b"),
            Downlink::Command("b".into())
        );
        // Another device (a prefix of whose id this one is), our own uplinks, custom topics.
        assert_eq!(d("$oc/devices/dev_10/sys/messages/down"), Downlink::Other);
        assert_eq!(d("$oc/devices/dev/sys/messages/down"), Downlink::Other);
        assert_eq!(
            d("$oc/devices/dev_1/sys/commands/response/request_id=1"),
            Downlink::Echo
        );
        assert_eq!(
            d("$oc/devices/dev_1/sys/properties/set/response/request_id=1"),
            Downlink::Echo
        );
        assert_eq!(d("$oc/devices/dev_1/sys/properties/report"), Downlink::Echo);
        assert_eq!(d("$oc/devices/dev_1/sys/commands/"), Downlink::Other);
        assert_eq!(d("$oc/devices/dev_1/user/hello"), Downlink::Other);
    }

    #[test]
    fn a_command_is_answered_on_its_response_topic() {
        let mut s = DeviceState::default();
        let (h, replies) = s.handle(
            "d1",
            &Downlink::Command("r-1".into()),
            br#"{"service_id":"Switch","command_name":"ON","paras":{"v":1}}"#,
            &behaviour(),
            NOW,
        );
        assert_eq!(h, Handled::CommandOk);
        assert_eq!(
            replies,
            vec![Reply {
                topic: "$oc/devices/d1/sys/commands/response/request_id=r-1".into(),
                payload: json!({"result_code":0,"response_name":"","paras":{"result":"ok"}}),
                delayed: true,
            }]
        );
        // Not JSON, or null: still answered (the request id is the topic's).
        for payload in [&b"not json"[..], b"null", b""] {
            let (h, replies) = s.handle(
                "d1",
                &Downlink::Command("r-2".into()),
                payload,
                &behaviour(),
                NOW,
            );
            assert_eq!((h, replies.len()), (Handled::CommandOk, 1));
        }
    }

    #[test]
    fn the_fail_rate_fails_a_repeatable_fraction_of_commands() {
        let mut b = behaviour();
        b.fail_rate = 1.0;
        let (h, replies) =
            DeviceState::default().handle("d1", &Downlink::Command("r".into()), b"{}", &b, NOW);
        assert_eq!(h, Handled::CommandFailed);
        assert_eq!(replies[0].payload["result_code"], 1);

        let fails = |seed: u64, rate: f64| -> Vec<bool> {
            (0..2000)
                .map(|i| command_fails(seed, "d1", &format!("req-{i}"), rate))
                .collect()
        };
        assert!(fails(1, 0.0).iter().all(|f| !f));
        assert!(fails(1, 1.0).iter().all(|f| *f));
        let quarter = fails(1, 0.25);
        let n = quarter.iter().filter(|f| **f).count();
        assert!((400..600).contains(&n), "{n} of 2000 failed at rate 0.25");
        assert_eq!(quarter, fails(1, 0.25), "same seed, same failures");
        assert_ne!(quarter, fails(2, 0.25), "another seed, other failures");
        // The hash is fixed across builds: this value must never change.
        assert_eq!(stable_hash(0, &["sim-1"]), 0x9e71_a057_1c70_cfb6);
        assert_ne!(stable_hash(0, &["ab", "c"]), stable_hash(0, &["a", "bc"]));
    }

    #[test]
    fn property_sets_change_what_gets_and_reports_show() {
        let mut s = DeviceState::default();
        let b = behaviour();
        let (h, replies) = s.handle("d1", &Downlink::PropertiesGet("g0".into()), b"{}", &b, NOW);
        assert_eq!(h, Handled::PropertiesGet);
        assert_eq!(
            replies[0].topic,
            "$oc/devices/d1/sys/properties/get/response/request_id=g0"
        );
        assert_eq!(
            replies[0].payload,
            json!({"services":[{"service_id":"Sim","properties":{"value":0}}]})
        );

        let set = json!({"object_device_id":"d1","services":[
            {"service_id":"Sim","properties":{"value":5,"mode":"eco"}},
            {"service_id":"Switch","properties":{"state":1}},
            {"service_id":null,"properties":{"x":1}},
            {"service_id":"NoProps","properties":null}
        ]});
        let (h, replies) = s.handle(
            "d1",
            &Downlink::PropertiesSet("s1".into()),
            set.to_string().as_bytes(),
            &b,
            NOW,
        );
        assert_eq!(h, Handled::PropertiesSet);
        assert_eq!(
            replies[0].topic,
            "$oc/devices/d1/sys/properties/set/response/request_id=s1"
        );
        assert_eq!(
            replies[0].payload,
            json!({"result_code":0,"result_desc":"Success"})
        );

        let (_, replies) = s.handle(
            "d1",
            &Downlink::PropertiesGet("g1".into()),
            br#"{"service_id":"Switch"}"#,
            &b,
            NOW,
        );
        assert_eq!(
            replies[0].payload,
            json!({"services":[{"service_id":"Switch","properties":{"state":1}}]})
        );
        let (_, replies) = s.handle(
            "d1",
            &Downlink::PropertiesGet("g2".into()),
            br#"{"service_id":null}"#,
            &b,
            NOW,
        );
        assert_eq!(replies[0].payload["services"].as_array().unwrap().len(), 2);
        let (_, replies) = s.handle(
            "d1",
            &Downlink::PropertiesGet("g3".into()),
            br#"{"service_id":"Unknown"}"#,
            &b,
            NOW,
        );
        assert_eq!(replies[0].payload, json!({"services":[]}));

        let report = s.report("d1", NOW);
        assert_eq!(report.topic, "$oc/devices/d1/sys/properties/report");
        assert_eq!(
            report.payload,
            json!({"services":[
                {"service_id":"Sim","properties":{"mode":"eco","value":5},"event_time":"20261130T000000Z"},
                {"service_id":"Switch","properties":{"state":1},"event_time":"20261130T000000Z"}
            ]})
        );
        // Nothing usable: nothing changes, still a success (tolerant, like the SDKs).
        let before = s.clone();
        for payload in [&b"{}"[..], b"garbage", br#"{"services":null}"#] {
            let (h, _) = s.handle("d1", &Downlink::PropertiesSet("s".into()), payload, &b, NOW);
            assert_eq!(h, Handled::PropertiesSet);
        }
        assert_eq!(s, before);
    }

    #[test]
    fn a_set_beyond_the_limits_is_refused_and_changes_nothing() {
        let mut s = DeviceState::default();
        let before = s.clone();
        let many: Map<String, Value> = (0..=MAX_PROPERTIES_PER_SERVICE)
            .map(|i| (format!("p{i}"), json!(i)))
            .collect();
        let too_many_props = json!({"services":[{"service_id":"A","properties":many}]});
        let services: Vec<Value> = (0..MAX_SERVICES)
            .map(|i| json!({"service_id": format!("S{i}"), "properties": {"v": 1}}))
            .collect();
        let too_many_services = json!({ "services": services });
        let too_big = json!({"services":[{"service_id":"A","properties":{"blob":"x".repeat(MAX_PROPERTY_BYTES)}}]});
        for body in [too_many_props, too_many_services, too_big] {
            let (h, replies) = s.handle(
                "d1",
                &Downlink::PropertiesSet("s".into()),
                body.to_string().as_bytes(),
                &behaviour(),
                NOW,
            );
            assert_eq!(h, Handled::PropertiesSetRefused);
            assert_eq!(replies[0].payload["result_code"], 1);
            assert_eq!(s, before);
        }
    }

    #[test]
    fn a_version_query_is_answered_with_the_configured_versions() {
        let mut s = DeviceState::default();
        let query = json!({"object_device_id":"d1","services":[
            {"service_id":"$ota","event_type":"version_query","event_time":"20261130T120000Z","paras":{}}
        ]});
        let (h, replies) = s.handle(
            "d1",
            &Downlink::EventsDown,
            query.to_string().as_bytes(),
            &behaviour(),
            NOW,
        );
        assert_eq!(h, Handled::VersionQuery);
        assert_eq!(replies[0].topic, "$oc/devices/d1/sys/events/up");
        assert_eq!(
            replies[0].payload,
            json!({"object_device_id":"d1","services":[{
                "service_id":"$ota","event_type":"version_report","event_time":"20261130T000000Z",
                "paras":{"fw_version":"v1.0","sw_version":"v1.1"}
            }]})
        );
        // Without object_device_id, or with an empty one: still ours.
        let query = json!({"services":[{"service_id":"$ota","event_type":"version_query"}]});
        let (h, _) = s.handle(
            "d1",
            &Downlink::EventsDown,
            query.to_string().as_bytes(),
            &behaviour(),
            NOW,
        );
        assert_eq!(h, Handled::VersionQuery);
        // Another device's, other events, nonsense: counted, not answered.
        for body in [
            json!({"object_device_id":"child","services":[{"service_id":"$ota","event_type":"version_query"}]}),
            json!({"services":[{"service_id":"$time_sync","event_type":"time_sync_response"}]}),
            json!({"services":null}),
            json!(null),
        ] {
            let (h, replies) = s.handle(
                "d1",
                &Downlink::EventsDown,
                body.to_string().as_bytes(),
                &behaviour(),
                NOW,
            );
            assert_eq!((h, replies.len()), (Handled::OtherEvent, 0));
        }
    }

    #[test]
    fn messages_and_shadow_responses_are_counted_unanswered() {
        let mut s = DeviceState::default();
        for (d, expected) in [
            (Downlink::MessageDown, Handled::Message),
            (
                Downlink::ShadowGetResponse("1".into()),
                Handled::ShadowResponse,
            ),
            (Downlink::Echo, Handled::Echo),
            (Downlink::Other, Handled::Unknown),
        ] {
            let (h, replies) = s.handle("d1", &d, b"raw bytes", &behaviour(), NOW);
            assert_eq!((h, replies.len()), (expected, 0));
        }
    }

    #[test]
    fn report_phases_spread_within_the_interval() {
        let every = Duration::from_secs(10);
        let phases: std::collections::HashSet<Duration> = (0..100)
            .map(|i| report_phase(&format!("sim-{i}"), every))
            .collect();
        assert!(phases.iter().all(|p| *p < every));
        assert!(phases.len() > 90);
    }
}
