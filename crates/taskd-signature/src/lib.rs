//! AK/SK request signatures as produced by the official Huawei Cloud SDKs, for taskd.
//!
//! taskd is wire-compatible with Huawei Cloud APIs, so every request that reaches it
//! from an unmodified SDK carries an `Authorization` header signed with one of two
//! schemes (spec `huawei-contract.md` §3):
//!
//! * `SDK-HMAC-SHA256` — HMAC over the canonical request, keyed with the secret key;
//! * `V11-HMAC-SHA256` — the same canonical request, keyed with a per-day, per-region,
//!   per-service key derived from AK/SK with HKDF (IoTDA "derived AK/SK").
//!
//! This crate is the server-side verifier ([`parse_authorization`] + [`verify`]) and a
//! client-side signer ([`sign`]) for taskd's own CLI, workers, tests and benchmarks. It
//! does no I/O and reads no clock: the caller passes the raw request parts, looks the
//! secret key up by [`Authorization::access_key`] itself, and injects "now" through
//! [`VerifyPolicy`]. That keeps every decision here a pure function of its inputs, so
//! it can be tested byte-for-byte against vectors produced by the real SDK.
//!
//! Typical server use:
//!
//! ```
//! use taskd_signature::*;
//!
//! # let signed = sign(
//! #     &SigningRequest { method: "GET", path: "/v2/p/jobs", query: &[("limit", "10")],
//! #         headers: &[("Host", "127.0.0.1:8080"), ("X-Sdk-Date", "20240315T080910Z")], body: b"" },
//! #     &SigningKey::Plain { access_key: "AK", secret_key: "SK" });
//! # let authorization_header = signed.authorization.as_str();
//! # let headers: &[(&str, &str)] = &[("Host", "127.0.0.1:8080"), ("X-Sdk-Date", "20240315T080910Z")];
//! let auth = parse_authorization(authorization_header)?;
//! let secret_key = "SK"; // look up by auth.access_key
//! let req = ReceivedRequest { method: "GET", path: "/v2/p/jobs", query: "limit=10", headers, body: b"" };
//! let policy = VerifyPolicy::new(parse_sdk_date("20240315T080910Z")?, IOTDA_DERIVED_SERVICE);
//! verify(&req, &auth, secret_key, &policy)?;
//! # Ok::<(), SignatureError>(())
//! ```

mod auth;
mod canonical;
mod date;
mod error;
mod headers;
mod keys;
mod sign;
mod verify;

pub use auth::{Algorithm, Authorization, DerivedScope, parse_authorization};
pub use canonical::{canonical_query, canonical_request, canonical_uri, payload_hash};
pub use date::{format_sdk_date, parse_sdk_date};
pub use error::{ScopePart, SignatureError};
pub use headers::HeaderLookup;
pub use keys::{derive_key, string_to_sign};
pub use sign::{Signed, SigningKey, SigningRequest, sign};
pub use verify::{ReceivedRequest, VerifyPolicy, verify};

/// Algorithm name of the default scheme (§3.2).
pub const SDK_HMAC_SHA256: &str = "SDK-HMAC-SHA256";
/// Algorithm name of the derived-key scheme (§3.3).
pub const V11_HMAC_SHA256: &str = "V11-HMAC-SHA256";
/// The signing-time header; it must be signed and within [`MAX_CLOCK_SKEW_SECS`] of now.
pub const X_SDK_DATE: &str = "x-sdk-date";
/// When present (and the body is non-empty) its value replaces the body hash.
pub const X_SDK_CONTENT_SHA256: &str = "x-sdk-content-sha256";
/// The value the SDK puts in `X-Sdk-Content-Sha256` for multipart uploads: the body is
/// then *not* covered by the signature.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Lowercase hex SHA-256 of the empty string: the payload hash of every body-less request.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The window Huawei's API gateway accepts between `X-Sdk-Date` and its own clock.
pub const MAX_CLOCK_SKEW_SECS: i64 = 15 * 60;
/// The only service name the IoTDA SDK client ever puts in a V11 credential scope.
pub const IOTDA_DERIVED_SERVICE: &str = "iotdm";
