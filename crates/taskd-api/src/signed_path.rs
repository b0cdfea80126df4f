//! The path and project of a signed request, for the dialects whose instance (if any) is a
//! path segment (IoTDA instance tasks, DMS RabbitMQ, SWR). Each dialect turns a
//! [`PathRefusal`] into its own envelope.

use std::marker::PhantomData;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use axum::response::IntoResponse;

use crate::AppState;
use crate::auth::Principal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRefusal {
    /// The path could not be decoded (not UTF-8).
    Malformed(String),
    /// The path's project is not the signing key's.
    OtherProject(String),
    /// `X-Project-Id` names another project than the path.
    HeaderMismatch,
    /// No `Principal`: the route was mounted without the signature layer (a bug).
    Unauthenticated,
}

impl std::fmt::Display for PathRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathRefusal::Malformed(e) => write!(f, "the path could not be read: {e}"),
            PathRefusal::OtherProject(p) => {
                write!(f, "the access key does not belong to project {p}")
            }
            PathRefusal::HeaderMismatch => {
                write!(f, "X-Project-Id differs from the project in the path")
            }
            PathRefusal::Unauthenticated => write!(f, "request reached a handler unauthenticated"),
        }
    }
}

/// Whether a path id is an id at all, as the DMS and SWR services write theirs (32 hex
/// digits, UUIDs): 1-64 hex digits (either case) or `-`. One that is, but is not an id
/// taskd issued (`Id::parse_exact`), names a record that does not exist: a 404, not a
/// 400.
pub fn is_path_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The path parameters of a request whose project is the signing key's. `project_id` is
/// the credential's spelling (what the store keys by).
pub struct SignedPath<E> {
    pub project_id: String,
    params: Vec<(String, String)>,
    _dialect: PhantomData<fn() -> E>,
}

impl<E> SignedPath<E> {
    /// A path parameter of the route ("" when the route has none of that name).
    pub fn get(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

impl<E> FromRequestParts<AppState> for SignedPath<E>
where
    E: From<PathRefusal> + IntoResponse,
{
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, E> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| PathRefusal::Malformed(e.to_string()))?;
        let params: Vec<(String, String)> = raw
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let project_id = params
            .iter()
            .find(|(k, _)| k == "project_id")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let principal = parts
            .extensions
            .get::<Principal>()
            .ok_or(PathRefusal::Unauthenticated)?;
        if !principal.project_id.eq_ignore_ascii_case(&project_id) {
            return Err(PathRefusal::OtherProject(project_id).into());
        }
        if let Some(header) = parts.headers.get("x-project-id")
            && !header
                .as_bytes()
                .eq_ignore_ascii_case(project_id.as_bytes())
        {
            return Err(PathRefusal::HeaderMismatch.into());
        }
        Ok(SignedPath {
            project_id: principal.project_id.clone(),
            params,
            _dialect: PhantomData,
        })
    }
}
