//! The HTTP face of taskd: one module per dialect, each wire-compatible with the Huawei
//! Cloud API it imitates, all serving the one task model of `taskd-engine`.
//!
//! * [`auth`] verifies AK/SK signatures (SDK-HMAC-SHA256 and V11-HMAC-SHA256) before any
//!   handler sees a request, and hands handlers a [`auth::Principal`].
//! * [`iotda`] serves the IoTDA batch-task family under `/v5/iot/{project_id}/`.
//! * [`iam`] answers the SDK's project discovery (`GET /v3/projects`).
//! * [`health`] answers `/livez` (the process) and `/readyz` = `/healthz` (the store
//!   can write), unauthenticated.
//! * [`iotdm`], [`rabbitmq`], [`swr`] serve instance operations (IoTDA instance tasks,
//!   DMS RabbitMQ background tasks, SWR instance jobs): thin views of the one model.
//! * [`legacy`] serves the legacy IoT northbound API (`/iocm/app/sec/v1.1.0/`,
//!   `/iodm/northbound/v1.5.0/`) with its own app/token authentication.
//! * [`native`] is taskd's own API under `/taskd/v1/`: the worker protocol, producing
//!   instance operations, and the legacy device attributes.
//!
//! Only this crate knows HTTP status codes and error envelopes; each dialect turns
//! errors into its envelope in exactly one place (its `error` module), refusals made
//! outside its handlers ([`refusal`]: routing, the request timeout, extractors) included.

pub mod auth;
/// Entry points for the fuzz targets in `fuzz/`: the private parsers, exactly as the
/// handlers call them (see the module).
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod iam;
pub mod iotda;
pub mod iotdm;
pub mod legacy;
pub mod native;
mod panic;
mod query;
pub mod rabbitmq;
pub mod refusal;
mod signed_path;
pub mod swr;
mod wire_time;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::routing::get;
use taskd_core::Clock;
use taskd_engine::Engine;
use taskd_store::Store;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// Largest request body accepted, signed or not. A 30,000-target create is about 4 MB of
/// JSON and a 30,000-row task file a few MB of xlsx; 32 MiB leaves room for both.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub max_body_bytes: usize,
    /// Longest a request may take before the server refuses it in its dialect's
    /// envelope (`refusal::timeout`: a stuck database must not hold connections forever).
    pub request_timeout: Duration,
    /// Legacy northbound flow control: calls per app per 60 s (spec §7.1 default 100).
    pub legacy_rate_limit: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout: Duration::from_secs(60),
            legacy_rate_limit: 100,
        }
    }
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ApiConfig>,
    /// The devices' connections (`taskd-mqtt`), or none: every device offline.
    pub devices: Arc<dyn taskd_engine::device_channel::DeviceChannel>,
    readiness: Arc<health::Readiness>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: ApiConfig) -> Self {
        AppState::with_engine(
            Engine::new(store.clone(), clock.clone()),
            store,
            clock,
            config,
        )
    }

    /// With an engine built by the caller (its configuration, shared with the runner).
    pub fn with_engine(
        engine: Engine,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: ApiConfig,
    ) -> Self {
        AppState {
            engine,
            store,
            clock,
            config: Arc::new(config),
            devices: Arc::new(taskd_engine::device_channel::NoDeviceChannel),
            readiness: Arc::default(),
        }
    }

    /// With the device channel of a server that holds device connections.
    pub fn with_device_channel(
        mut self,
        devices: Arc<dyn taskd_engine::device_channel::DeviceChannel>,
    ) -> Self {
        self.devices = devices;
        self
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let timeout = state.config.request_timeout;
    Router::new()
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/healthz", get(health::readyz))
        .merge(iotda::router(state.clone()))
        .merge(iam::router(state.clone()))
        .merge(native::router(state.clone()))
        .merge(legacy::router(state.clone()))
        .merge(iotdm::router(state.clone()))
        .merge(rabbitmq::router(state.clone()))
        .merge(swr::router(state.clone()))
        .fallback(refusal::no_such_api)
        .method_not_allowed_fallback(refusal::method_not_allowed)
        .with_state(state)
        // Outermost last: the request id exists before the trace span opens, and is
        // copied onto every response, errors included.
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(timeout, refusal::timeout))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let request_id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}
