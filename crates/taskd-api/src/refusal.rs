//! Refusals made before or around a handler: by routing (no such path, or not with this
//! method), by the request timeout, and by axum's extractors (a path that is not UTF-8, a
//! body over the limit or not multipart). They carry no envelope of their own: each
//! dialect's error enum converts a [`Refusal`] (`From<Refusal>`) and renders it like any
//! other of its errors, and [`Dialect::of`] says which dialect a path belongs to where no
//! handler has decided it yet (fallbacks, the timeout layer).

use std::time::Duration;

use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Request, State};
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::iam::IamError;
use crate::iotda::IotdaError;
use crate::iotdm::IotdmError;
use crate::legacy::LegacyError;
use crate::native::NativeError;
use crate::rabbitmq::DmsError;
use crate::swr::SwrError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No route has this path.
    #[error("The API does not exist or has not been published in the environment.")]
    NoSuchApi,
    /// A route has this path, but not with this method.
    #[error("The API does not exist: the path does not take this method.")]
    MethodNotAllowed,
    /// The request was not answered within the configured request timeout.
    #[error("Backend timeout: the request was not answered within {} s.", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("Request entity too large: the body exceeds {0} bytes.")]
    BodyTooLarge(usize),
    #[error("The request body could not be read: {0}")]
    BodyUnreadable(String),
    /// A path parameter is not UTF-8 once percent-decoded.
    #[error("The path could not be read: {0}")]
    PathUnreadable(String),
    #[error("The body is not multipart/form-data with a boundary: {0}")]
    NotMultipart(String),
}

impl Refusal {
    /// A body-reading extractor's rejection, `limit` being the body limit in force.
    pub fn of_body(rejection: BytesRejection, limit: usize) -> Refusal {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Refusal::BodyTooLarge(limit)
        } else {
            Refusal::BodyUnreadable(rejection.body_text())
        }
    }
}

impl From<PathRejection> for Refusal {
    fn from(r: PathRejection) -> Self {
        Refusal::PathUnreadable(r.body_text())
    }
}

impl From<MultipartRejection> for Refusal {
    fn from(r: MultipartRejection) -> Self {
        Refusal::NotMultipart(r.body_text())
    }
}

/// Whose envelope a path answers in, by its prefix (the routes of the dialects are
/// disjoint). `Gateway` is no dialect: paths no API of taskd starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Iotda,
    Iotdm,
    Iam,
    Native,
    Legacy,
    Rabbitmq,
    Swr,
    Gateway,
}

impl Dialect {
    pub fn of(path: &str) -> Dialect {
        let segments: Vec<&str> = path.split('/').skip(1).take(4).collect();
        match segments.as_slice() {
            ["v5", "iot", _, "iotda-instances", ..] => Dialect::Iotdm,
            ["v5", "iot", ..] => Dialect::Iotda,
            ["v3", ..] => Dialect::Iam,
            ["taskd", ..] => Dialect::Native,
            ["iocm" | "iodm", ..] => Dialect::Legacy,
            ["v2", _, "instances", ..] => Dialect::Rabbitmq,
            ["v2", _, "jobs", ..] => Dialect::Swr,
            _ => Dialect::Gateway,
        }
    }

    /// The refusal in this dialect's envelope.
    pub fn refuse(self, refusal: Refusal) -> Response {
        match self {
            Dialect::Iotda => IotdaError::from(refusal).into_response(),
            Dialect::Iotdm => IotdmError::from(refusal).into_response(),
            Dialect::Iam => IamError::from(refusal).into_response(),
            Dialect::Native => NativeError::from(refusal).into_response(),
            Dialect::Legacy => LegacyError::from(refusal).into_response(),
            Dialect::Rabbitmq => DmsError::from(refusal).into_response(),
            Dialect::Swr => SwrError::from(refusal).into_response(),
            // What Huawei's API gateway answers, in its own shape, which the SDKs read.
            Dialect::Gateway => IotdaError::from(refusal).into_response(),
        }
    }
}

/// The router's fallback: no route has this path.
pub async fn no_such_api(uri: Uri) -> Response {
    Dialect::of(uri.path()).refuse(Refusal::NoSuchApi)
}

/// The fallback of every route: it has this path, but not with this method.
pub async fn method_not_allowed(uri: Uri) -> Response {
    Dialect::of(uri.path()).refuse(Refusal::MethodNotAllowed)
}

/// Layer: a request not answered within `limit` is answered [`Refusal::Timeout`] in its
/// dialect's envelope (a stuck database must not hold connections forever). Dropping the
/// handler's future cancels it; its store call rolls back (a transaction not committed).
pub async fn timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    let dialect = Dialect::of(request.uri().path());
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(?limit, "request timed out");
            dialect.refuse(Refusal::Timeout(limit))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_belong_to_their_dialect() {
        for (path, dialect) in [
            ("/v5/iot/p/batchtasks", Dialect::Iotda),
            ("/v5/iot/p/iotda-instances/i/tasks/t", Dialect::Iotdm),
            ("/v5/iot/p/iotda-instances", Dialect::Iotdm),
            ("/v3/projects", Dialect::Iam),
            ("/taskd/v1/p/claims", Dialect::Native),
            ("/iocm/app/sec/v1.1.0/login", Dialect::Legacy),
            ("/iodm/northbound/v1.5.0/operations/x", Dialect::Legacy),
            ("/v2/p/instances/i/tasks", Dialect::Rabbitmq),
            ("/v2/p/jobs/j", Dialect::Swr),
            ("/v2/p/other", Dialect::Gateway),
            ("/", Dialect::Gateway),
            ("/healthz", Dialect::Gateway),
        ] {
            assert_eq!(Dialect::of(path), dialect, "{path}");
        }
    }
}
