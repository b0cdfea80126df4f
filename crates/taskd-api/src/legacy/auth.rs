//! Apps and tokens: login, refresh, and the layer every other legacy call passes
//! (`app_key` + `Authorization: Bearer …`, then flow control).
//!
//! Secrets are stored as salted SHA-256 (`sha256$<salt>$<hash>`), tokens as SHA-256 of
//! the token; neither is ever logged. Only the last tokens issued to an app are valid:
//! a login or refresh replaces them in the store.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use taskd_core::Timestamp;
use taskd_store::{LegacyApp, LegacyTokens};

use super::Body;
use super::error::LegacyError;
use crate::AppState;

/// `expiresIn` of an access token, seconds (spec §7.1).
pub const ACCESS_TOKEN_SECS: i64 = 3600;
/// A refresh token's life: the API page says 24 h, the SDK pages a month; taskd takes
/// the API page's 24 h (`docs/legacy-northbound.md`).
pub const REFRESH_TOKEN_SECS: i64 = 24 * 3600;
/// The flow-control window.
pub const RATE_WINDOW_MS: i64 = 60_000;

/// The app a verified legacy request acts as.
#[derive(Debug, Clone)]
pub struct LegacyPrincipal {
    pub app_id: String,
    pub project_id: String,
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// Random hex from two v4 UUIDs (244 random bits).
fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// A random secret for `taskd apps create` when none is given.
pub fn generate_secret() -> String {
    random_hex()
}

/// The stored form of a secret: salted, verifiable, not reversible.
pub fn hash_secret(secret: &str) -> String {
    let salt = uuid::Uuid::new_v4().simple().to_string();
    let hash = sha256_hex(&[salt.as_bytes(), secret.as_bytes()]);
    format!("sha256${salt}${hash}")
}

pub fn verify_secret(stored: &str, secret: &str) -> bool {
    let mut parts = stored.splitn(3, '$');
    let (Some("sha256"), Some(salt), Some(hash)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let got = sha256_hex(&[salt.as_bytes(), secret.as_bytes()]);
    bool::from(got.as_bytes().ct_eq(hash.as_bytes()))
}

fn token_hash(token: &str) -> String {
    sha256_hex(&[token.as_bytes()])
}

fn same_hash(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `AuthOutDTO`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthOut {
    scope: &'static str,
    token_type: &'static str,
    expires_in: i64,
    access_token: String,
    refresh_token: String,
}

/// Issues new tokens, replacing the app's previous ones.
async fn issue(state: &AppState, app: &LegacyApp) -> Result<Json<AuthOut>, LegacyError> {
    let now = state.clock.now();
    let access = random_hex();
    let refresh = random_hex();
    let stored = state
        .store
        .legacy_tokens_put(&LegacyTokens {
            app_id: app.app_id.clone(),
            access_hash: token_hash(&access),
            access_expires_at: now.plus_millis(ACCESS_TOKEN_SECS * 1000),
            refresh_hash: token_hash(&refresh),
            refresh_expires_at: now.plus_millis(REFRESH_TOKEN_SECS * 1000),
            issued_at: now,
        })
        .await?;
    if !stored {
        // Revoked between the check and the write.
        return Err(LegacyError::AppFrozen);
    }
    tracing::info!(app_id = %app.app_id, "legacy tokens issued");
    Ok(Json(AuthOut {
        scope: "default",
        token_type: "bearer",
        expires_in: ACCESS_TOKEN_SECS,
        access_token: access,
        refresh_token: refresh,
    }))
}

/// The app named `app_id` if `secret` is its secret.
async fn check_secret(
    state: &AppState,
    app_id: &str,
    secret: &str,
) -> Result<LegacyApp, LegacyError> {
    let Some(app) = state.store.legacy_app_get(app_id).await? else {
        return Err(LegacyError::WrongSecret);
    };
    if !verify_secret(&app.secret_hash, secret) {
        return Err(LegacyError::WrongSecret);
    }
    if app.revoked_at.is_some() {
        return Err(LegacyError::AppFrozen);
    }
    Ok(app)
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space).
pub(crate) fn form_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let mut kv = pair.splitn(2, |b| *b == b'=');
        let key = decode_form(kv.next()?)?;
        (key == name).then(|| decode_form(kv.next().unwrap_or_default()))?
    })
}

fn decode_form(raw: &[u8]) -> Option<String> {
    let plus: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_encoding::percent_decode(&plus)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// `POST /iocm/app/sec/v1.1.0/login`, form-encoded `appId`, `secret`.
pub async fn login(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<Json<AuthOut>, LegacyError> {
    let app_id = form_field(&body, "appId").filter(|s| !s.is_empty());
    let secret = form_field(&body, "secret").filter(|s| !s.is_empty());
    let (Some(app_id), Some(secret)) = (app_id, secret) else {
        return Err(LegacyError::RequiredParameter);
    };
    // No app has such an id (none is longer, none holds a NUL): no need to look.
    if app_id.len() > 256 || secret.len() > 256 || taskd_store::text::has_nul(&app_id) {
        return Err(LegacyError::WrongSecret);
    }
    let app = check_secret(&state, &app_id, &secret).await?;
    issue(&state, &app).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshIn {
    app_id: Option<String>,
    secret: Option<String>,
    refresh_token: Option<String>,
}

/// `POST /iocm/app/sec/v1.1.0/refreshToken`, JSON `appId`, `secret`, `refreshToken`.
pub async fn refresh(
    State(state): State<AppState>,
    Body(body): Body,
) -> Result<Json<AuthOut>, LegacyError> {
    let input: RefreshIn = serde_json::from_slice(&body).map_err(|_| LegacyError::InputInvalid)?;
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    let (Some(app_id), Some(secret), Some(refresh_token)) = (
        nonempty(input.app_id),
        nonempty(input.secret),
        nonempty(input.refresh_token),
    ) else {
        return Err(LegacyError::RequiredParameter);
    };
    let app = check_secret(&state, &app_id, &secret).await?;
    let now = state.clock.now();
    let valid = state
        .store
        .legacy_tokens_get(&app.app_id)
        .await?
        .is_some_and(|t| {
            same_hash(&t.refresh_hash, &token_hash(&refresh_token)) && now < t.refresh_expires_at
        });
    if !valid {
        return Err(LegacyError::WrongSecret);
    }
    issue(&state, &app).await
}

/// Route layer of every legacy call but login and refresh: `app_key` names an active
/// app, the bearer token is its last, unexpired access token, and the app is within its
/// flow-control limit. Handlers read the [`LegacyPrincipal`] it attaches.
pub async fn require_app_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, LegacyError> {
    let principal = authenticate(&state, request.headers()).await?;
    let now = state.clock.now();
    let window = Timestamp(now.0 - now.0.rem_euclid(RATE_WINDOW_MS));
    let calls = state
        .store
        .legacy_rate_hit(&principal.app_id, window)
        .await?;
    if calls > i64::from(state.config.legacy_rate_limit) {
        return Err(LegacyError::Throttled);
    }
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// The `app_key` header and the bearer token of `Authorization`, both non-empty.
pub(crate) fn app_credentials(headers: &HeaderMap) -> Result<(&str, &str), LegacyError> {
    let app_id = headers
        .get("app_key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(LegacyError::AppKeyMissing)?;
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or(LegacyError::InvalidToken)?;
    Ok((app_id, token))
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<LegacyPrincipal, LegacyError> {
    let (app_id, token) = app_credentials(headers)?;
    let Some(app) = state.store.legacy_app_get(app_id).await? else {
        return Err(LegacyError::InvalidToken);
    };
    if app.revoked_at.is_some() {
        return Err(LegacyError::InvalidToken);
    }
    let now = state.clock.now();
    let valid = state
        .store
        .legacy_tokens_get(&app.app_id)
        .await?
        .is_some_and(|t| {
            same_hash(&t.access_hash, &token_hash(token)) && now < t.access_expires_at
        });
    if !valid {
        return Err(LegacyError::InvalidToken);
    }
    Ok(LegacyPrincipal {
        app_id: app.app_id,
        project_id: app.project_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify_only_themselves() {
        let stored = hash_secret("s3cret");
        assert!(stored.starts_with("sha256$"));
        assert!(!stored.contains("s3cret"));
        assert!(verify_secret(&stored, "s3cret"));
        assert!(!verify_secret(&stored, "s3cret "));
        assert!(!verify_secret("garbage", "s3cret"));
        assert_ne!(hash_secret("s3cret"), stored, "salted");
    }

    #[test]
    fn form_fields_decode() {
        let body = b"appId=my+app&secret=a%2Bb%3Dc&x=";
        assert_eq!(form_field(body, "appId").as_deref(), Some("my app"));
        assert_eq!(form_field(body, "secret").as_deref(), Some("a+b=c"));
        assert_eq!(form_field(body, "x").as_deref(), Some(""));
        assert_eq!(form_field(body, "y"), None);
    }
}
