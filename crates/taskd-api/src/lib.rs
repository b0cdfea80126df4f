//! The HTTP face of taskd: one module per dialect, each wire-compatible with the Huawei
//! Cloud API it imitates, all serving the one task model of `taskd-engine`.
//!
//! * [`auth`] verifies AK/SK signatures (SDK-HMAC-SHA256 and V11-HMAC-SHA256) before any
//!   handler sees a request, and hands handlers a [`auth::Principal`].
//! * [`iotda`] serves the IoTDA batch-task family under `/v5/iot/{project_id}/`.
//! * [`iam`] answers the SDK's project discovery (`GET /v3/projects`).
//! * [`iotdm`], [`rabbitmq`], [`swr`] serve instance operations (IoTDA instance tasks,
//!   DMS RabbitMQ background tasks, SWR instance jobs): thin views of the one model.
//! * [`legacy`] serves the legacy IoT northbound API (`/iocm/app/sec/v1.1.0/`,
//!   `/iodm/northbound/v1.5.0/`) with its own app/token authentication.
//! * [`native`] is taskd's own API under `/taskd/v1/`: the worker protocol, producing
//!   instance operations, and the legacy device attributes.
//!
//! Only this crate knows HTTP status codes and error envelopes; each dialect turns
//! errors into its envelope in exactly one place (its `error` module).

pub mod auth;
pub mod iam;
pub mod iotda;
pub mod iotdm;
pub mod legacy;
pub mod native;
mod panic;
mod query;
pub mod rabbitmq;
mod signed_path;
pub mod swr;
mod wire_time;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
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
    /// Longest a request may take before the server answers 503 (a stuck database
    /// must not hold connections forever).
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
        }
    }
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let timeout = state.config.request_timeout;
    Router::new()
        .route("/healthz", get(healthz))
        .merge(iotda::router(state.clone()))
        .merge(iam::router(state.clone()))
        .merge(native::router(state.clone()))
        .merge(legacy::router(state.clone()))
        .merge(iotdm::router(state.clone()))
        .merge(rabbitmq::router(state.clone()))
        .merge(swr::router(state.clone()))
        .fallback(no_such_api)
        .with_state(state)
        // Outermost last: the request id exists before the trace span opens, and is
        // copied onto every response, errors included.
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
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

async fn healthz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: store unavailable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
        }
    }
}

/// Unknown paths answer as Huawei's API gateway does for an unpublished API.
async fn no_such_api() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({
            "error_code": "APIG.0101",
            "error_msg": "The API does not exist or has not been published in the environment",
        })),
    )
        .into_response()
}
