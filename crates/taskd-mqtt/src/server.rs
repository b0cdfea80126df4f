//! The listeners: plain MQTT and MQTT over TLS, each accepting connections up to a cap
//! and running [`connection::run`] for each.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::auth::Transport;
use crate::connection::{self, ConnectionSettings};
use crate::hub::Hub;

/// Connections one node holds at most (each listener counts toward it); one more is
/// closed at once. The file-descriptor limit is the other bound: `docs/device-channel.md`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;
/// How long a shutdown waits for the device connections to record their end.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read the TLS certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("cannot read the TLS private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("the TLS certificate and key do not make a server configuration: {0}")]
    Config(String),
}

/// A TLS acceptor from PEM files (a certificate chain and its private key). TLS 1.2 and
/// 1.3: every official device SDK pins 1.2 (spec §1.1).
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsConfigError::Cert {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsConfigError::Cert {
            path: cert.display().to_string(),
            reason: "no certificate in the file".into(),
        });
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsConfigError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|e| TlsConfigError::Config(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The device listener of one node.
pub struct MqttServer {
    hub: Arc<Hub>,
    connections: Arc<Semaphore>,
    enforce_secure_access: bool,
}

impl MqttServer {
    pub fn new(hub: Arc<Hub>, max_connections: usize, enforce_secure_access: bool) -> Arc<Self> {
        Arc::new(MqttServer {
            hub,
            connections: Arc::new(Semaphore::new(max_connections)),
            enforce_secure_access,
        })
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Accepts on `listener` until `shutdown`; with `tls`, each connection first
    /// completes a TLS handshake (within the CONNECT timeout).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        shutdown: CancellationToken,
    ) {
        let transport = if tls.is_some() {
            Transport::Tls
        } else {
            Transport::Plain
        };
        let settings = ConnectionSettings {
            transport,
            enforce_secure_access: self.enforce_secure_access,
        };
        // Every connection's task, so that shutdown waits for their OFFLINE writes.
        let connections = tokio_util::task::TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.cancelled() => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&self.connections).try_acquire_owned() else {
                tracing::warn!(%peer, "MQTT connection refused: the connection cap is reached");
                continue;
            };
            let _ = stream.set_nodelay(true);
            let hub = Arc::clone(&self.hub);
            let tls = tls.clone();
            let shutdown = shutdown.clone();
            connections.spawn(async move {
                let _permit = permit;
                match tls {
                    None => connection::run(hub, stream, settings, shutdown).await,
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(
                            connection::CONNECT_TIMEOUT,
                            acceptor.accept(stream),
                        )
                        .await;
                        match handshake {
                            Ok(Ok(tls_stream)) => {
                                connection::run(hub, tls_stream, settings, shutdown).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                }
            });
        }
        self.hub.close_all();
        connections.close();
        // Each closed connection records its device OFFLINE; a store that does not answer
        // must not hold the shutdown forever (a restart ends leftover sessions).
        if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("device connections did not all close within the shutdown grace");
        }
    }
}

/// Binds a listener address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
