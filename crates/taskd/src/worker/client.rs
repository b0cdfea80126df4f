//! The worker's HTTP client: every request signed with AK/SK (`SDK-HMAC-SHA256`, as the
//! SDKs sign), answers sorted into "try again later" and "refused".

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use taskd_core::{Clock, SystemClock};
use taskd_signature::{SigningKey, SigningRequest, format_sdk_date, sign};

use super::protocol::{
    self, ClaimRequest, ClaimedSubTask, ErrorBody, HeartbeatRequest, HeartbeatResponse,
    ResultsRequest, ResultsResponse,
};

/// How long a heartbeat or a results batch may take before it counts as a network error.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A claim may take its `wait_seconds` plus this.
const CLAIM_GRACE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Network error, timeout, 5xx, 408 or 429, or an answer that could not be read: the
    /// same call may succeed later.
    #[error("{0}")]
    Transient(String),
    /// Any other 4xx: repeating the same call will not help.
    #[error("HTTP {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

/// A sub-task as claimed: the typed entry, and the entry exactly as received (what the
/// command gets on stdin, including fields this version does not know).
#[derive(Debug, Clone)]
pub struct Claimed {
    pub sub_task: ClaimedSubTask,
    pub raw: Value,
}

pub struct Client {
    http: reqwest::Client,
    /// `http://host:port` with any base path; the request path replaces its path.
    base: reqwest::Url,
    /// The endpoint's path prefix without a trailing `/` (usually empty).
    base_path: String,
    /// `Host` as sent and signed.
    host: String,
    access_key: String,
    /// Never logged: `Client` has no `Debug`.
    secret_key: String,
    project_id: String,
}

impl Client {
    pub fn new(
        endpoint: &str,
        access_key: &str,
        secret_key: &str,
        project_id: &str,
    ) -> anyhow::Result<Client> {
        let base = reqwest::Url::parse(endpoint)
            .with_context(|| format!("--endpoint {endpoint:?} is not a URL"))?;
        match base.scheme() {
            "http" => {}
            "https" => bail!(
                "--endpoint {endpoint}: this build of taskd speaks plain HTTP only; \
                 reach taskd over http:// (e.g. through a local TLS-terminating proxy)"
            ),
            other => bail!("--endpoint {endpoint}: unsupported scheme {other:?}, use http://"),
        }
        let Some(host) = base.host_str() else {
            bail!("--endpoint {endpoint} names no host");
        };
        let host = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        if base.query().is_some() {
            bail!("--endpoint {endpoint}: a query string is not allowed");
        }
        if project_id.is_empty() {
            bail!("--project-id must not be empty");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            http,
            base_path: base.path().trim_end_matches('/').to_string(),
            base,
            host,
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            project_id: project_id.to_string(),
        })
    }

    /// Long-polls for up to `request.wait_seconds`. Each entry gets its task's document
    /// back (from the answer's `tasks`), so a command sees what it saw in version 1.
    pub async fn claim(&self, request: &ClaimRequest) -> Result<Vec<Claimed>, CallError> {
        #[derive(serde::Deserialize)]
        struct Raw {
            #[serde(default)]
            tasks: serde_json::Map<String, Value>,
            sub_tasks: Vec<Value>,
        }
        let timeout = Duration::from_secs(request.wait_seconds) + CLAIM_GRACE;
        let raw: Raw = self
            .post(&protocol::claims_path(&self.project_id), request, timeout)
            .await?;
        let mut claimed = Vec::with_capacity(raw.sub_tasks.len());
        for mut entry in raw.sub_tasks {
            if let Some(fields) = entry.as_object_mut()
                && !fields.contains_key("document")
            {
                let document = fields
                    .get("task_id")
                    .and_then(Value::as_str)
                    .and_then(|id| raw.tasks.get(id))
                    .and_then(|task| task.get("document"))
                    .cloned()
                    .unwrap_or(Value::Null);
                fields.insert("document".to_owned(), document);
            }
            match serde_json::from_value::<ClaimedSubTask>(entry.clone()) {
                Ok(sub_task) => claimed.push(Claimed {
                    sub_task,
                    raw: entry,
                }),
                // Its lease expires and it is claimed again; nothing else to do.
                Err(e) => {
                    tracing::error!(error = %e, entry = %entry, "claimed sub-task not understood; skipped")
                }
            }
        }
        Ok(claimed)
    }

    /// `timeout` caps the call below [`CALL_TIMEOUT`]: a hanging heartbeat must not hold
    /// up the next one while the lease runs out.
    pub async fn heartbeat(
        &self,
        sub_task_id: &str,
        request: &HeartbeatRequest,
        timeout: Duration,
    ) -> Result<HeartbeatResponse, CallError> {
        let path = protocol::heartbeat_path(&self.project_id, sub_task_id);
        self.post(&path, request, timeout.min(CALL_TIMEOUT)).await
    }

    pub async fn report(&self, request: &ResultsRequest) -> Result<ResultsResponse, CallError> {
        let path = protocol::results_path(&self.project_id);
        self.post(&path, request, CALL_TIMEOUT).await
    }

    async fn post<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let body = serde_json::to_vec(request).expect("protocol types serialize");
        self.call("POST", path, &[], body, timeout).await
    }

    /// The project every call is made for.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// Path of this client's project under `/taskd/v1/`, e.g. `operations`.
    pub fn project_path(&self, rest: &str) -> String {
        protocol::project_path(&self.project_id, rest)
    }

    /// One signed call of the native API (`taskd ops` uses it too): `path` relative to
    /// the endpoint, `query` decoded pairs, `body` JSON bytes (empty for GET).
    pub async fn call<Resp: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let path = format!("{}{path}", self.base_path);
        let date = format_sdk_date(SystemClock.now().unix_secs());
        let headers = [
            ("Content-Type", "application/json"),
            ("Host", self.host.as_str()),
            ("X-Sdk-Date", date.as_str()),
        ];
        let signed = sign(
            &SigningRequest {
                method,
                path: &path,
                query,
                headers: &headers,
                body: &body,
            },
            &SigningKey::Plain {
                access_key: &self.access_key,
                secret_key: &self.secret_key,
            },
        );
        let mut url = self.base.clone();
        url.set_path(&path);
        if !signed.query_string.is_empty() {
            url.set_query(Some(&signed.query_string));
        }
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| CallError::Transient(format!("method {method}: {e}")))?;
        let mut builder = self.http.request(method, url).timeout(timeout);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let response = builder
            .header("Authorization", signed.authorization)
            .body(body)
            .send()
            .await
            .map_err(|e| CallError::Transient(describe(&e)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CallError::Transient(describe(&e)))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                CallError::Transient(format!("HTTP {status} with an unreadable body: {e}"))
            });
        }
        let envelope: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        let (code, message) = match envelope {
            Some(body) => (body.error_code, body.error_msg),
            None => (
                String::new(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            ),
        };
        let retryable = status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        if retryable || !status.is_client_error() {
            Err(CallError::Transient(format!(
                "HTTP {} {code}: {message}",
                status.as_u16()
            )))
        } else {
            Err(CallError::Refused {
                status: status.as_u16(),
                code,
                message,
            })
        }
    }
}

/// reqwest's `Display` hides the cause ("error sending request"); the chain says what
/// went wrong (connection refused, timed out, ...).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Capped exponential backoff with jitter: waits between half and all of the current
/// step, and the step doubles up to `max`.
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            step: min,
        }
    }

    pub fn reset(&mut self) {
        self.step = self.min;
    }

    pub fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(self.max);
        step.mul_f64(rand::random_range(0.5..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays[3] >= Duration::from_millis(400) && delays[3] <= Duration::from_millis(800));
        for d in &delays[4..] {
            assert!(*d >= Duration::from_millis(500) && *d <= Duration::from_secs(1));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn the_endpoint_decides_host_and_path_prefix() {
        let c = Client::new("http://127.0.0.1:8080", "AK", "SK", "p").unwrap();
        assert_eq!(
            (c.host.as_str(), c.base_path.as_str()),
            ("127.0.0.1:8080", "")
        );
        let c = Client::new("http://taskd/prefix/", "AK", "SK", "p").unwrap();
        assert_eq!(
            (c.host.as_str(), c.base_path.as_str()),
            ("taskd", "/prefix")
        );
        let err = Client::new("https://taskd", "AK", "SK", "p").err().unwrap();
        assert!(err.to_string().contains("plain HTTP"), "{err}");
        assert!(Client::new("taskd:8080", "AK", "SK", "p").is_err());
    }
}
