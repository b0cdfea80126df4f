//! `taskd devices simulate` as a process: it registers its devices on a real `taskd serve`
//! (its MQTT listener off), and its devices connect to a scripted platform, a plain socket
//! this test owns and speaks MQTT on packet by packet (rumqttc's codec), so that every
//! CONNECT field and every answer is checked as sent, with no broker of anyone else's.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hmac::{Hmac, KeyInit, Mac};
use rumqttc::mqttbytes::Error as CodecError;
use rumqttc::mqttbytes::v4::{ConnAck, Connect, Packet, PubAck, Publish, SubAck};
use rumqttc::{ConnectReturnCode, QoS, SubscribeReasonCode};
use serde_json::{Value, json};
use sha2::Sha256;

use super::client::{AK, PROJECT, SK, bootstrap_env};
use super::{BIN, Server};

const SEED: &str = "it-seed";
const PATIENCE: Duration = Duration::from_secs(20);

fn hmac_hex(key: &str, msg: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(msg.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// One device's connection, seen from the platform.
struct Link {
    stream: TcpStream,
    buf: BytesMut,
    device_id: String,
}

impl Link {
    fn read(&mut self) -> Packet {
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return p,
                Err(CodecError::InsufficientBytes(_)) => {
                    let mut chunk = [0u8; 4096];
                    let n = self.stream.read(&mut chunk).expect("device sent nothing");
                    assert!(n > 0, "{}: connection closed", self.device_id);
                    self.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) => panic!("{}: {e:?}", self.device_id),
            }
        }
    }

    fn write(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.write(&mut out, 1 << 20).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    /// Sends a downlink at QoS 1 and returns the device's publish in answer (acking it),
    /// having seen the device's PUBACK of the downlink.
    fn request(&mut self, pkid: u16, topic: &str, payload: &Value) -> (String, Value) {
        let mut down = Publish::new(topic, QoS::AtLeastOnce, payload.to_string());
        down.pkid = pkid;
        self.write(Packet::Publish(down));
        let (mut acked, mut answer) = (false, None);
        while !acked || answer.is_none() {
            match self.read() {
                Packet::PubAck(a) => {
                    assert_eq!(a.pkid, pkid);
                    acked = true;
                }
                Packet::Publish(p) => {
                    assert_eq!(p.qos, QoS::AtLeastOnce, "uplinks are QoS 1");
                    self.write(Packet::PubAck(PubAck::new(p.pkid)));
                    answer = Some((p.topic, serde_json::from_slice(&p.payload).unwrap()));
                }
                Packet::PingReq => self.write(Packet::PingResp),
                other => panic!("{}: unexpected {other:?}", self.device_id),
            }
        }
        answer.unwrap()
    }
}

/// Accepts one device: checks its CONNECT as IoTDA would, CONNACK 0, then its SUBSCRIBE.
fn accept(listener: &TcpListener) -> Link {
    let (stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut link = Link {
        stream,
        buf: BytesMut::new(),
        device_id: "?".into(),
    };
    let Packet::Connect(Connect {
        keep_alive,
        client_id,
        clean_session,
        login: Some(login),
        ..
    }) = link.read()
    else {
        panic!("the first packet is not a CONNECT with a login");
    };
    assert_eq!((keep_alive, clean_session), (120, true));
    let device_id = login.username.clone();
    assert!(
        ["sim-1", "sim-2"].contains(&device_id.as_str()),
        "{device_id}"
    );
    let (prefix, ts) = client_id.rsplit_once('_').unwrap();
    assert_eq!(prefix, format!("{device_id}_0_0"));
    assert!(
        ts.len() == 10 && ts.bytes().all(|b| b.is_ascii_digit()),
        "{ts}"
    );
    let secret = hmac_hex(SEED, &device_id)[..32].to_string();
    assert_eq!(
        login.password,
        hmac_hex(ts, &secret),
        "password of {device_id}"
    );
    link.device_id = device_id;
    link.write(Packet::ConnAck(ConnAck::new(
        ConnectReturnCode::Success,
        false,
    )));

    let Packet::Subscribe(sub) = link.read() else {
        panic!("no SUBSCRIBE after the CONNACK");
    };
    let own = format!("$oc/devices/{}/sys/", link.device_id);
    assert_eq!(sub.filters.len(), 6);
    assert!(
        sub.filters
            .iter()
            .all(|f| f.path.starts_with(&own) && f.qos == QoS::AtLeastOnce)
    );
    assert!(
        sub.filters
            .iter()
            .any(|f| f.path == format!("{own}commands/#"))
    );
    let granted = vec![SubscribeReasonCode::Success(QoS::AtLeastOnce); 6];
    link.write(Packet::SubAck(SubAck::new(sub.pkid, granted)));
    link
}

fn simulate(server_port: u16, mqtt_port: u16, extra: &[&str]) -> Child {
    Command::new(BIN)
        .args(["devices", "simulate", "--endpoint"])
        .arg(format!("http://127.0.0.1:{server_port}"))
        .args(["--ak", AK, "--sk", SK, "--project-id", PROJECT, "--mqtt"])
        .arg(format!("127.0.0.1:{mqtt_port}"))
        .args(["--count", "2", "--secret-seed", SEED, "--json"])
        .args(["--stats-interval", "0"])
        .args(extra)
        .env_remove("TASKD_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> (bool, Value) {
    let deadline = Instant::now() + PATIENCE;
    let out = child.wait_with_output().unwrap();
    assert!(Instant::now() < deadline);
    let summary = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.success(), summary)
}

#[test]
fn simulated_devices_register_connect_as_iotda_and_answer_the_platform() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = bootstrap_env().to_vec();
    env.push(("TASKD_MQTT_LISTEN", "off"));
    let (server, _) = Server::start(dir.path(), &env);
    let platform = TcpListener::bind("127.0.0.1:0").unwrap();
    let mqtt_port = platform.local_addr().unwrap().port();

    let sim = simulate(server.port, mqtt_port, &["--fw-version", "v9"]);
    let mut links = [accept(&platform), accept(&platform)];
    links.sort_by(|a, b| a.device_id.cmp(&b.device_id));
    let d = &mut links[0];
    assert_eq!(d.device_id, "sim-1");
    let base = "$oc/devices/sim-1/sys";

    let (topic, answer) = d.request(
        1,
        &format!("{base}/commands/request_id=c-1"),
        &json!({"service_id":"Switch","command_name":"ON","paras":{"v":1}}),
    );
    assert_eq!(topic, format!("{base}/commands/response/request_id=c-1"));
    assert_eq!(
        answer,
        json!({"result_code":0,"response_name":"","paras":{"result":"ok"}})
    );

    let (topic, answer) = d.request(
        2,
        &format!("{base}/properties/set/request_id=s-1"),
        &json!({"services":[{"service_id":"Switch","properties":{"state":1}}]}),
    );
    assert_eq!(
        topic,
        format!("{base}/properties/set/response/request_id=s-1")
    );
    assert_eq!(answer, json!({"result_code":0,"result_desc":"Success"}));

    let (topic, answer) = d.request(
        3,
        &format!("{base}/properties/get/request_id=g-1"),
        &json!({"service_id":"Switch"}),
    );
    assert_eq!(
        topic,
        format!("{base}/properties/get/response/request_id=g-1")
    );
    assert_eq!(
        answer,
        json!({"services":[{"service_id":"Switch","properties":{"state":1}}]})
    );

    let (topic, answer) = d.request(
        4,
        &format!("{base}/events/down"),
        &json!({"object_device_id":"sim-1","services":[{"service_id":"$ota","event_type":"version_query","paras":{}}]}),
    );
    assert_eq!(topic, format!("{base}/events/up"));
    assert_eq!(answer["services"][0]["event_type"], "version_report");
    assert_eq!(answer["services"][0]["paras"]["fw_version"], "v9");

    // A dropped connection comes back (after its back-off), with fresh credentials
    // checked again by `accept`, and works as before.
    links[0].stream.shutdown(std::net::Shutdown::Both).unwrap();
    links[0] = accept(&platform);
    let d = &mut links[0];
    assert_eq!(d.device_id, "sim-1");
    let (_, answer) = d.request(
        5,
        &format!("{base}/properties/get/request_id=g-2"),
        &json!({}),
    );
    assert_eq!(
        answer["services"].as_array().map(Vec::len),
        Some(2),
        "the properties outlive the connection: {answer}"
    );

    // SIGTERM: every device says DISCONNECT, then the summary.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sim.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    for link in &mut links {
        loop {
            match link.read() {
                Packet::Disconnect => break,
                Packet::PingReq => link.write(Packet::PingResp),
                other => panic!("{}: {other:?} before DISCONNECT", link.device_id),
            }
        }
    }
    let (ok, summary) = finish(sim);
    assert!(ok, "{summary}");
    assert_eq!(summary["registered"], json!({"created": 2, "existing": 0}));
    let stats = &summary["stats"];
    assert_eq!(
        [
            &stats["connected"],
            &stats["connects"],
            &stats["drops"],
            &stats["commands_ok"],
            &stats["property_sets"],
            &stats["property_gets"],
            &stats["version_queries"],
            &stats["received"],
        ],
        [2, 3, 1, 1, 1, 2, 1, 5].map(|n| json!(n)).each_ref()
    );

    // A second run reuses the registered devices; with nothing to connect to it says
    // so in its exit status (the summary still printed).
    drop(platform);
    let sim = simulate(server.port, mqtt_port, &["--duration", "1"]);
    let (ok, summary) = finish(sim);
    assert!(!ok);
    assert_eq!(summary["registered"], json!({"created": 0, "existing": 2}));
    assert_eq!(summary["stats"]["connects"], 0);
    assert!(summary["stats"]["connect_errors"].as_u64().unwrap() >= 2);
}
