//! Registering the fleet through IoTDA `AddDevice` (`POST /v5/iot/{project_id}/devices`),
//! signed with the worker's client. A device that exists already (`IOTDA.014031`) is
//! reused: its secret is derived from the seed, so the same seed gives the same secret.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::device::Identity;
use crate::worker::client::{Backoff, CallError, Client};

/// IoTDA's answer to an AddDevice of a device id (or node id in its product) that
/// exists.
const DEVICE_EXISTS: &str = "IOTDA.014031";
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A network error or 5xx is retried this many times before registration gives up.
const ATTEMPTS: u32 = 6;
/// Progress on stderr at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Secret length (IoTDA allows 8–32 of `[A-Za-z0-9_-]`).
const SECRET_CHARS: usize = 32;

/// A device's secret: the first 32 hex digits of HMAC-SHA256(key = seed, msg = device
/// id). Anyone who knows the seed knows every secret: a shared server wants its own seed.
pub fn secret(seed: &str, device_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(seed.as_bytes()).expect("HMAC takes any key");
    mac.update(device_id.as_bytes());
    let mut hex = hex::encode(mac.finalize().into_bytes());
    hex.truncate(SECRET_CHARS);
    hex
}

/// The AddDevice body (huaweicloudsdkiotda `AddDevice`): the node id is the device id,
/// and `secure_access` is off so the device may use plain MQTT.
pub fn add_device_body(identity: &Identity, product_id: &str) -> Value {
    json!({
        "device_id": identity.device_id,
        "node_id": identity.device_id,
        "product_id": product_id,
        "device_name": identity.device_id,
        "description": "taskd-devices-simulate",
        "auth_info": {
            "auth_type": "SECRET",
            "secret": identity.secret,
            "secure_access": false,
        },
    })
}

/// How the registration went.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, PartialEq, Eq)]
pub struct Registered {
    pub created: usize,
    pub existing: usize,
}

enum Outcome {
    Created,
    Existed,
}

/// Adds every device, `concurrency` calls in flight, progress on stderr. A refusal other
/// than "exists" (a bad key, an invalid product id, a quota) stops it: it would refuse
/// every device alike. Stops early (with what it has) when `stop` is cancelled.
pub async fn register_all(
    client: Arc<Client>,
    devices: &[Identity],
    product_id: &str,
    concurrency: usize,
    stop: &CancellationToken,
) -> anyhow::Result<Registered> {
    let path = format!("/v5/iot/{}/devices", client.project_id());
    let created = Arc::new(AtomicUsize::new(0));
    let existing = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut calls = JoinSet::new();
    let mut next = devices.iter();
    let mut done = 0usize;
    loop {
        while calls.len() < concurrency.max(1) {
            let Some(identity) = next.next() else { break };
            let body = serde_json::to_vec(&add_device_body(identity, product_id))?;
            let (client, path, id) = (client.clone(), path.clone(), identity.device_id.clone());
            calls.spawn(async move { (id, add(&client, &path, body).await) });
        }
        let joined = tokio::select! {
            _ = stop.cancelled() => {
                calls.abort_all();
                bail!("stopped during registration");
            }
            joined = calls.join_next() => joined,
        };
        let Some(joined) = joined else { break };
        let (device_id, outcome) = joined?;
        match outcome {
            Ok(Outcome::Created) => created.fetch_add(1, Ordering::Relaxed),
            Ok(Outcome::Existed) => existing.fetch_add(1, Ordering::Relaxed),
            Err(e) => {
                calls.abort_all();
                bail!("registering device {device_id}: {e}");
            }
        };
        done += 1;
        if last_progress.elapsed() >= PROGRESS_EVERY || done == devices.len() {
            last_progress = Instant::now();
            eprintln!(
                "sim: registered {done}/{} ({} created, {} existing) in {:.1}s",
                devices.len(),
                created.load(Ordering::Relaxed),
                existing.load(Ordering::Relaxed),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(Registered {
        created: created.load(Ordering::Relaxed),
        existing: existing.load(Ordering::Relaxed),
    })
}

/// One AddDevice, retried with back-off while the failure is transient.
async fn add(client: &Client, path: &str, body: Vec<u8>) -> Result<Outcome, CallError> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut attempt = 1;
    loop {
        let result: Result<Value, CallError> = client
            .call("POST", path, &[], body.clone(), CALL_TIMEOUT)
            .await;
        match result {
            Ok(_) => return Ok(Outcome::Created),
            Err(CallError::Refused { code, .. }) if code == DEVICE_EXISTS => {
                return Ok(Outcome::Existed);
            }
            Err(e @ CallError::Refused { .. }) => return Err(e),
            Err(e @ CallError::Transient(_)) if attempt >= ATTEMPTS => return Err(e),
            Err(CallError::Transient(_)) => {
                attempt += 1;
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_derived_from_the_seed_and_the_device() {
        let s = secret("taskd-sim", "sim-1");
        assert_eq!(s.len(), 32);
        assert!(
            s.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(s, secret("taskd-sim", "sim-1"), "a second run reuses it");
        assert_ne!(s, secret("taskd-sim", "sim-2"));
        assert_ne!(s, secret("other-seed", "sim-1"));
        // Pinned: a change here would lock every existing simulated fleet out.
        assert_eq!(s, "0be0bdcd90d549a554b7bf28335bcc99");
    }

    #[test]
    fn the_add_device_body_is_huaweis_with_plain_access() {
        let id = Identity {
            device_id: "sim-3".into(),
            secret: "0123456789abcdef".into(),
        };
        let body = add_device_body(&id, "taskd-sim");
        assert_eq!(body["device_id"], "sim-3");
        assert_eq!(body["node_id"], "sim-3");
        assert_eq!(body["product_id"], "taskd-sim");
        assert_eq!(
            body["auth_info"],
            json!({"auth_type":"SECRET","secret":"0123456789abcdef","secure_access":false})
        );
    }
}
