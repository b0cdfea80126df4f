//! The legacy IoT Device Management northbound API v1.5.0 (spec §7): apps log in with
//! appId and secret (`/iocm/app/sec/v1.1.0/`), and create and follow firmware and
//! software upgrade tasks (`/iodm/northbound/v1.5.0/operations`). `PUT
//! …/operations/{operationId}/stop` is taskd's own extension.
//!
//! * `auth`: login, refresh and the app-token + flow-control layer (not AK/SK);
//! * `validate`: the create rules and paging, each with its code;
//! * `wire`: the one mapping of states and fields;
//! * `error`: the one place building `{"error_code","error_desc"}`.
//!
//! An app belongs to one project; its tasks and devices live in the scope
//! `TaskScope::new(project, "")` (the IoTDA scope of requests without `Instance-Id`).

pub mod auth;
pub mod error;
mod operations;
pub mod validate;
pub mod wire;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::routing::{get, post, put};
use axum::{Router, middleware};
use bytes::Bytes;

pub use auth::{LegacyPrincipal, generate_secret, hash_secret, verify_secret};
pub use error::LegacyError;

use crate::AppState;
use crate::refusal::Refusal;

/// axum's `Path`, refusing in the legacy envelope.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(LegacyError))]
pub struct Path<T>(pub T);

/// The request body, read within the body limit; refused in the legacy envelope. (The
/// AK/SK dialects' handlers take axum's `Bytes`: `auth::require_signature` has already
/// read their body within the limit, so reading it again cannot fail.)
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = LegacyError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, LegacyError> {
        Bytes::from_request(request, state)
            .await
            .map(Body)
            .map_err(|r| Refusal::of_body(r, state.config.max_body_bytes).into())
    }
}

pub fn router(state: AppState) -> Router<AppState> {
    let protected = Router::new()
        .route(
            "/iodm/northbound/v1.5.0/operations/firmwareUpgrade",
            post(operations::create_firmware),
        )
        .route(
            "/iodm/northbound/v1.5.0/operations/softwareUpgrade",
            post(operations::create_software),
        )
        .route("/iodm/northbound/v1.5.0/operations", get(operations::list))
        .route(
            "/iodm/northbound/v1.5.0/operations/{operation_id}",
            get(operations::show),
        )
        .route(
            "/iodm/northbound/v1.5.0/operations/{operation_id}/subOperations",
            get(operations::sub_operations),
        )
        .route(
            "/iodm/northbound/v1.5.0/operations/{operation_id}/stop",
            put(operations::stop),
        )
        .route_layer(middleware::from_fn_with_state(
            state,
            auth::require_app_token,
        ));
    Router::new()
        .route("/iocm/app/sec/v1.1.0/login", post(auth::login))
        .route("/iocm/app/sec/v1.1.0/refreshToken", post(auth::refresh))
        .merge(protected)
        .layer(crate::panic::catch_panic(error::LegacyError::Internal))
}
