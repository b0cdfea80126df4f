//! IoTDA's device protocol over MQTT (`../shared/spec/iotda-device-mqtt.md`): taskd holds
//! its devices' connections, as IoTDA does, so that real devices and the official device
//! SDKs connect to it unchanged.
//!
//! * [`server`]: the listeners (plain and TLS), the connection cap;
//! * [`connection`]: one connection: CONNECT and its CONNACK code, then QoS 0/1 publishes,
//!   subscriptions within the device's own topics, keepalive × 1.5;
//! * [`codec`]: `rumqttc`'s 3.1.1 codec, and 3.1 CONNECTs read as 3.1.1;
//! * [`auth`]: IoTDA's client id and password rules;
//! * [`hub`]: the devices connected to this node and the [`DeviceChannel`] over them
//!   (commands, property set/get, messages, desired shadow pushes);
//! * [`relay`]: the [`DeviceChannel`] of a node among several: requests for a device
//!   connected to another node travel there as mail through the store;
//! * [`topics`], [`payloads`]: IoTDA's topic grammar and JSON, read tolerantly.
//!
//! The packet codec is `rumqttc`'s (`mqttbytes::v4`): a maintained MQTT 3.1.1 codec whose
//! packet types serve both sides; ARCHITECTURE.md says why this one.
//!
//! [`DeviceChannel`]: taskd_engine::device_channel::DeviceChannel

pub mod auth;
pub mod codec;
pub mod connection;
pub mod hub;
pub mod payloads;
pub mod relay;
pub mod server;
pub mod topics;

pub use hub::Hub;
pub use relay::{DEFAULT_NODE_TIMEOUT, Router};
pub use server::{DEFAULT_MAX_CONNECTIONS, MqttServer, TlsConfigError, tls_acceptor};
