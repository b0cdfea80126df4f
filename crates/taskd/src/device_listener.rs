//! The device listeners of `taskd serve` (`--mqtt-listen`, `--mqtts-listen`): where they
//! bind, and what happens when they can't.
//!
//! The plain listener defaults to `127.0.0.1:1883`, the port every device SDK expects. A
//! broker often holds that port already; a defaulted address that is taken is reported
//! in one log line and the server runs on without a device listener. An address the user
//! gave (flag or environment) that cannot be bound stops the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use taskd_mqtt::MqttServer;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub const DEFAULT_MQTT_LISTEN: &str = "127.0.0.1:1883";

#[derive(clap::Args, Debug, Clone)]
pub struct DeviceListenerArgs {
    /// Plain MQTT listener for devices (IoTDA's device protocol), or `off`.
    /// Default 127.0.0.1:1883, skipped with a log line when that port is taken.
    #[arg(long, env = "TASKD_MQTT_LISTEN")]
    pub mqtt_listen: Option<String>,
    /// MQTT over TLS listener for devices (IoTDA uses 8883); needs --tls-cert and
    /// --tls-key.
    #[arg(long, env = "TASKD_MQTTS_LISTEN")]
    pub mqtts_listen: Option<SocketAddr>,
    /// PEM certificate chain for the TLS listeners.
    #[arg(long, env = "TASKD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listeners.
    #[arg(long, env = "TASKD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Most device connections this node holds at once (both listeners together).
    #[arg(long, env = "TASKD_MQTT_MAX_CONNECTIONS", default_value_t = taskd_mqtt::DEFAULT_MAX_CONNECTIONS as u32,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub mqtt_max_connections: u32,
    /// Refuse devices registered with `secure_access: true` on the plain listener
    /// (CONNACK 5), as IoTDA does.
    #[arg(long, env = "TASKD_MQTT_ENFORCE_SECURE_ACCESS", default_value_t = true,
          action = clap::ArgAction::Set)]
    pub mqtt_enforce_secure_access: bool,
    /// With several nodes on PostgreSQL: how long a node may go unseen before the others
    /// take it for dead and mark the devices it held OFFLINE (it beats three times per
    /// timeout).
    #[arg(long, env = "TASKD_NODE_TIMEOUT_SECS", default_value_t = taskd_mqtt::DEFAULT_NODE_TIMEOUT.as_secs() as u32,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub node_timeout_secs: u32,
}

/// The bound listeners, ready to serve.
pub struct DeviceListeners {
    pub plain: Option<(SocketAddr, TcpListener)>,
    pub tls: Option<(SocketAddr, TcpListener, TlsAcceptor)>,
}

impl DeviceListeners {
    pub fn any(&self) -> bool {
        self.plain.is_some() || self.tls.is_some()
    }

    /// Binds what the arguments ask for.
    pub async fn bind(args: &DeviceListenerArgs) -> anyhow::Result<DeviceListeners> {
        let plain = match args.mqtt_listen.as_deref() {
            Some("off") => None,
            Some(given) => {
                let addr: SocketAddr = given.parse().with_context(|| {
                    format!("--mqtt-listen {given}: not an address (HOST:PORT or off)")
                })?;
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("--mqtt-listen {addr}: cannot listen"))?;
                Some((addr, listener))
            }
            None => {
                let addr: SocketAddr = DEFAULT_MQTT_LISTEN.parse().expect("a valid address");
                match TcpListener::bind(addr).await {
                    Ok(listener) => Some((addr, listener)),
                    Err(e) => {
                        tracing::warn!(
                            "device listener off: the default MQTT address {addr} is unavailable ({e}); give --mqtt-listen ADDR to listen elsewhere"
                        );
                        None
                    }
                }
            }
        };
        let tls = match args.mqtts_listen {
            None => None,
            Some(addr) => {
                let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
                    bail!("--mqtts-listen needs --tls-cert and --tls-key");
                };
                let acceptor = taskd_mqtt::tls_acceptor(cert, key)?;
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("--mqtts-listen {addr}: cannot listen"))?;
                Some((addr, listener, acceptor))
            }
        };
        Ok(DeviceListeners { plain, tls })
    }

    /// Serves every bound listener until `shutdown`.
    pub fn spawn(
        self,
        server: Arc<MqttServer>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some((addr, listener)) = self.plain {
            tracing::info!(%addr, "device listener (MQTT) ready");
            println!("taskd device listener on mqtt://{addr}");
            tasks.push(tokio::spawn(Arc::clone(&server).serve(
                listener,
                None,
                shutdown.clone(),
            )));
        }
        if let Some((addr, listener, acceptor)) = self.tls {
            tracing::info!(%addr, "device listener (MQTT over TLS) ready");
            println!("taskd device listener on mqtts://{addr}");
            tasks.push(tokio::spawn(server.serve(
                listener,
                Some(acceptor),
                shutdown,
            )));
        }
        tasks
    }
}
