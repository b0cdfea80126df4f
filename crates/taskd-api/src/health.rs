//! Health checks for load balancers and orchestrators, unauthenticated:
//!
//! * `GET /livez`: liveness. The process is up and answering; no I/O, so a slow or full
//!   database never gets a healthy process restarted.
//! * `GET /readyz`, and `GET /healthz` (the same, the name scripts already use):
//!   readiness. The store can take a write now (`Store::check_writable` makes one); 503
//!   with the reason when it cannot (a full disk, an unreachable database), so a load
//!   balancer sends requests elsewhere until it can again.
//!
//! Readiness is checked at most once per [`READY_CHECK_INTERVAL_MS`] per process: every
//! answer within that time after a check repeats it, so polling cannot turn into a write
//! per request. Concurrent requests wait for the one check in flight.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use taskd_core::Timestamp;

use crate::AppState;

/// How long one readiness check answers for.
pub const READY_CHECK_INTERVAL_MS: i64 = 1_000;

/// The last readiness check: when, and its verdict (`Err`: why not ready).
#[derive(Default)]
pub(crate) struct Readiness {
    last: tokio::sync::Mutex<Option<(Timestamp, Result<(), String>)>>,
}

impl Readiness {
    async fn check(&self, state: &AppState) -> Result<(), String> {
        let mut last = self.last.lock().await;
        let now = state.clock.now();
        if let Some((at, verdict)) = &*last
            && (0..READY_CHECK_INTERVAL_MS).contains(&(now.0 - at.0))
        {
            return verdict.clone();
        }
        let verdict = state.store.check_writable(now).await.map_err(|e| {
            tracing::warn!(error = %e, "readiness: the store cannot write");
            e.to_string()
        });
        *last = Some((now, verdict.clone()));
        verdict
    }
}

pub(crate) async fn livez() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness.check(&state).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable",
                "reason": format!("the store cannot take writes: {reason}"),
            })),
        )
            .into_response(),
    }
}
