//! Why a signature was rejected.
//!
//! Messages are meant for logs and for the `error_msg` of a 401: they name what was
//! wrong but never echo key material (secret key, derived key, expected signature) nor
//! the raw `Authorization` value (which could be some other scheme's bearer token).

use crate::date::format_sdk_date;

/// Which part of a V11 credential scope did not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopePart {
    /// The scope's `yyyymmdd` is not the day of `X-Sdk-Date`.
    Date,
    /// The scope names a service other than [`crate::VerifyPolicy::derived_service`].
    Service,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The `Authorization` value does not have the SDK's shape; the reason is static text.
    #[error("malformed Authorization header: {0}")]
    MalformedAuthorization(&'static str),
    /// The first word of `Authorization` is not one of the two supported schemes.
    #[error("unsupported signing algorithm (expected SDK-HMAC-SHA256 or V11-HMAC-SHA256)")]
    UnsupportedAlgorithm,
    /// `x-sdk-date` is not listed in `SignedHeaders`, so the request could be replayed forever.
    #[error("x-sdk-date is not listed in SignedHeaders")]
    DateNotSigned,
    #[error("missing X-Sdk-Date header")]
    MissingDate,
    #[error("malformed X-Sdk-Date (expected YYYYMMDDTHHMMSSZ)")]
    MalformedDate,
    /// Same meaning as APIG's "signature expired" (APIG.0303).
    #[error(
        "signature expired: request time {}, server time {} (allowed skew {max_skew_secs} s)",
        format_sdk_date(*request_unix),
        format_sdk_date(*server_unix)
    )]
    ClockSkew {
        request_unix: i64,
        server_unix: i64,
        max_skew_secs: i64,
    },
    #[error("V11 credential scope mismatch: {}", match .0 {
        ScopePart::Date => "scope date is not the X-Sdk-Date day",
        ScopePart::Service => "scope names an unexpected service",
    })]
    ScopeMismatch(ScopePart),
    /// A header named in `SignedHeaders` is absent from the request (or not valid UTF-8).
    #[error("signed header {0:?} is missing from the request")]
    MissingSignedHeader(String),
    /// A header that changes the request's meaning is present but not in `SignedHeaders`
    /// (`x-sdk-content-sha256`, or one of [`crate::VerifyPolicy::signed_when_present`]).
    #[error("header {0:?} is present but not listed in SignedHeaders")]
    HeaderNotSigned(String),
    /// `X-Sdk-Content-Sha256` is neither the body's SHA-256 nor `UNSIGNED-PAYLOAD`.
    #[error("X-Sdk-Content-Sha256 does not match the request body")]
    ContentHashMismatch,
    /// `UNSIGNED-PAYLOAD` on a request that is not a signed multipart upload.
    #[error(
        "X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD is accepted only on a signed multipart/form-data request"
    )]
    UnsignedPayloadNotMultipart,
    #[error("signature does not match")]
    SignatureMismatch,
}
