//! AK/SK request authentication, as the Huawei Cloud SDKs sign.
//!
//! [`require_signature`] runs before every dialect handler: it buffers the body (with the
//! size limit), looks the access key up, verifies the signature over the raw method, path,
//! query, signed headers and body bytes (`taskd-signature`), and only then lets the
//! request through with a [`Principal`] attached. Handlers never see an unverified
//! request. Failures become an [`AuthError`], which each dialect renders in its envelope.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use taskd_signature::{
    MAX_CLOCK_SKEW_SECS, ReceivedRequest, SignatureError, VerifyPolicy, parse_authorization, verify,
};
use taskd_store::StoreError;

use crate::AppState;

/// The only service a V11 (derived-key) credential scope may name: the one the IoTDA SDK
/// client derives its key for.
pub const DERIVED_SERVICE: &str = "iotdm";

/// Headers the dialects read for their meaning (`Instance-Id` chooses the task scope,
/// `X-Project-Id` must name the path's project): a request that carries one must have
/// signed it, as the official SDKs always do, so that nobody can add or swap one in a
/// captured request. (`X-Sdk-Content-Sha256` is checked by `taskd_signature::verify`
/// itself.)
pub const SIGNED_WHEN_PRESENT: &[&str] = &["instance-id", "x-project-id"];

/// Who signed a request. Present on every request that reached a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub access_key: String,
    pub project_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the request carries no Authorization header")]
    Missing,
    #[error("the Authorization header is not valid text")]
    NotText,
    #[error("{0}")]
    Signature(#[from] SignatureError),
    #[error("unknown or revoked access key")]
    UnknownKey,
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("request body could not be read")]
    BodyUnreadable,
    #[error("credential lookup failed: {0}")]
    Store(#[from] StoreError),
}

/// Middleware: verify the signature, then run the handler with a [`Principal`].
/// `E` is the dialect's error type, which decides the envelope of a refusal.
pub async fn require_signature<E>(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, E>
where
    E: From<AuthError> + IntoResponse,
{
    let (parts, body) = request.into_parts();
    let limit = state.config.max_body_bytes;
    let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            AuthError::BodyTooLarge(limit)
        } else {
            AuthError::BodyUnreadable
        }
    })?;
    let principal = authenticate(&state, &parts, &body).await?;
    let mut request = Request::from_parts(parts, Body::from(body));
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

async fn authenticate(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Result<Principal, AuthError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::NotText)?;
    let authorization = parse_authorization(header)?;
    let Some(credential) = state.store.credential_get(authorization.access_key).await? else {
        tracing::info!(access_key = authorization.access_key, "unknown access key");
        return Err(AuthError::UnknownKey);
    };
    let received = ReceivedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body,
    };
    let policy = VerifyPolicy {
        now_unix: state.clock.now().unix_secs(),
        max_skew_secs: MAX_CLOCK_SKEW_SECS,
        derived_service: DERIVED_SERVICE,
        signed_when_present: SIGNED_WHEN_PRESENT,
    };
    if let Err(e) = verify(&received, &authorization, &credential.secret_key, &policy) {
        tracing::info!(access_key = authorization.access_key, reason = %e, "signature refused");
        return Err(e.into());
    }
    Ok(Principal {
        access_key: credential.access_key,
        project_id: credential.project_id,
    })
}
