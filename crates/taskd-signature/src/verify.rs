//! Server-side verification (spec §3.4).

use subtle::ConstantTimeEq;

use crate::auth::{Algorithm, Authorization};
use crate::canonical::{HashSink, PayloadHash, sha256_hex, write_canonical_request};
use crate::error::{ScopePart, SignatureError};
use crate::headers::HeaderLookup;
use crate::keys::compute_signature;
use crate::{
    EMPTY_PAYLOAD_SHA256, MAX_CLOCK_SKEW_SECS, UNSIGNED_PAYLOAD, X_SDK_CONTENT_SHA256, X_SDK_DATE,
};

/// What the server received, raw: path and query exactly as on the wire (still
/// percent-encoded), body bytes as received.
///
/// `H` may be unsized, so `&[(&str, &str)]` can be passed without another reference.
pub struct ReceivedRequest<'a, H: HeaderLookup + ?Sized> {
    pub method: &'a str,
    /// Wire path without the query, e.g. `/v5/iot/p/batchtasks`.
    pub path: &'a str,
    /// Wire query without the `?`; empty if there was none.
    pub query: &'a str,
    pub headers: &'a H,
    pub body: &'a [u8],
}

/// Server-side parameters of a verification.
#[derive(Debug, Clone, Copy)]
pub struct VerifyPolicy<'a> {
    /// The server clock, in Unix seconds; injected so tests can use fixed times.
    pub now_unix: i64,
    /// Largest accepted |now - X-Sdk-Date|; [`MAX_CLOCK_SKEW_SECS`] normally.
    pub max_skew_secs: i64,
    /// The only service a V11 credential scope may name (`"iotdm"` for IoTDA).
    pub derived_service: &'a str,
    /// Lowercase names of headers that change what the server does with a request (e.g.
    /// `instance-id`): when present they must be listed in `SignedHeaders`, otherwise a
    /// captured request could be replayed with the header added or swapped.
    pub signed_when_present: &'a [&'a str],
}

impl<'a> VerifyPolicy<'a> {
    /// A policy with the gateway's standard 15-minute window.
    pub fn new(now_unix: i64, derived_service: &'a str) -> Self {
        VerifyPolicy {
            now_unix,
            max_skew_secs: MAX_CLOCK_SKEW_SECS,
            derived_service,
            signed_when_present: &[],
        }
    }
}

/// Full server-side check per spec §3.4.
///
/// In order: `x-sdk-date` must be listed in `SignedHeaders`, present, well-formed and
/// within `policy.max_skew_secs` of `policy.now_unix` (either side); for V11 the scope
/// date must be the `X-Sdk-Date` day and the scope service `policy.derived_service`
/// (any non-empty region is accepted); every signed header must be present; finally the
/// signature is recomputed over the canonical request and compared in constant time.
///
/// The body is always covered unless the client signed that it is not: an
/// `X-Sdk-Content-Sha256` header must itself be signed, and its value must be either the
/// body's real SHA-256 or `UNSIGNED-PAYLOAD`, which is accepted only on a signed
/// `multipart/form-data` request (the SDK's uploads, where by the SDK's design the body
/// is not covered). Every header in `policy.signed_when_present` that the request
/// carries must be signed.
///
/// `secret_key` is the caller's lookup of [`Authorization::access_key`].
pub fn verify<H: HeaderLookup + ?Sized>(
    req: &ReceivedRequest<'_, H>,
    auth: &Authorization<'_>,
    secret_key: &str,
    policy: &VerifyPolicy<'_>,
) -> Result<(), SignatureError> {
    // Without a signed date a captured request could be replayed forever.
    if !auth
        .signed_headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case(X_SDK_DATE))
    {
        return Err(SignatureError::DateNotSigned);
    }
    let sdk_date = req
        .headers
        .header(X_SDK_DATE)
        .ok_or(SignatureError::MissingDate)?
        .trim();
    let request_unix = crate::date::parse_sdk_date(sdk_date)?;
    // abs_diff: no overflow whatever clock value the caller injects.
    let max_skew = u64::try_from(policy.max_skew_secs).unwrap_or(0);
    if request_unix.abs_diff(policy.now_unix) > max_skew {
        return Err(SignatureError::ClockSkew {
            request_unix,
            server_unix: policy.now_unix,
            max_skew_secs: policy.max_skew_secs,
        });
    }

    let scope = match (auth.algorithm, &auth.scope) {
        (Algorithm::SdkHmacSha256, None) => None,
        (Algorithm::V11HmacSha256, Some(scope)) => {
            // parse_sdk_date accepted it, so the first 8 bytes are the ASCII yyyymmdd.
            if scope.date != &sdk_date[..8] {
                return Err(SignatureError::ScopeMismatch(ScopePart::Date));
            }
            if scope.service != policy.derived_service {
                return Err(SignatureError::ScopeMismatch(ScopePart::Service));
            }
            Some((auth.access_key, scope.info))
        }
        // Only reachable with a hand-built Authorization; parse_authorization never does this.
        (Algorithm::SdkHmacSha256, Some(_)) => {
            return Err(SignatureError::MalformedAuthorization(
                "credential scope given for SDK-HMAC-SHA256",
            ));
        }
        (Algorithm::V11HmacSha256, None) => {
            return Err(SignatureError::MalformedAuthorization(
                "missing credential scope for V11-HMAC-SHA256",
            ));
        }
    };

    for &name in policy.signed_when_present {
        if req.headers.header(name).is_some() && !is_signed(auth, name) {
            return Err(SignatureError::HeaderNotSigned(name.to_owned()));
        }
    }
    let payload_hash = verified_payload_hash(req, auth)?;
    let mut canonical_hash = HashSink::new();
    write_canonical_request(
        &mut canonical_hash,
        req.method,
        req.path,
        req.query,
        req.headers,
        &auth.signed_headers,
        payload_hash.as_bytes(),
    )?;
    let expected = compute_signature(
        auth.algorithm,
        secret_key,
        scope,
        sdk_date,
        &canonical_hash.finalize_hex(),
    );
    if bool::from(expected.ct_eq(&auth.signature)) {
        Ok(())
    } else {
        Err(SignatureError::SignatureMismatch)
    }
}

fn is_signed(auth: &Authorization<'_>, lowercase_name: &str) -> bool {
    auth.signed_headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case(lowercase_name))
}

/// The payload hash line to verify against, refusing every way a client-supplied
/// `X-Sdk-Content-Sha256` could detach the signature from the body.
///
/// The SDK computes the line as `SHA-256("")` for an empty body, else the header's value
/// when present, else the body's hash; it only ever sends the header signed, with
/// `UNSIGNED-PAYLOAD`, on multipart uploads. Trusting an unsigned header, or a claimed
/// hash without checking it, would let anyone who captured one signed request resend it
/// with a body of their own.
fn verified_payload_hash<'r, H: HeaderLookup + ?Sized>(
    req: &ReceivedRequest<'r, H>,
    auth: &Authorization<'_>,
) -> Result<PayloadHash<'r>, SignatureError> {
    let given = req.headers.header(X_SDK_CONTENT_SHA256);
    if given.is_some() && !is_signed(auth, X_SDK_CONTENT_SHA256) {
        return Err(SignatureError::HeaderNotSigned(
            X_SDK_CONTENT_SHA256.to_owned(),
        ));
    }
    if req.body.is_empty() {
        return Ok(PayloadHash::Given(EMPTY_PAYLOAD_SHA256));
    }
    let actual = sha256_hex(req.body);
    let Some(given) = given else {
        return Ok(PayloadHash::Computed(actual));
    };
    let given = given.trim();
    if given == UNSIGNED_PAYLOAD {
        let multipart = req.headers.header("content-type").is_some_and(|v| {
            v.trim_start()
                .get(..19)
                .is_some_and(|p| p.eq_ignore_ascii_case("multipart/form-data"))
        });
        if !multipart || !is_signed(auth, "content-type") {
            return Err(SignatureError::UnsignedPayloadNotMultipart);
        }
        return Ok(PayloadHash::Given(UNSIGNED_PAYLOAD));
    }
    // The canonical request carries the header as sent, so a hash in upper case still
    // verifies if the client signed it that way; what must hold is that it is the body's.
    if !given.as_bytes().eq_ignore_ascii_case(&actual) {
        return Err(SignatureError::ContentHashMismatch);
    }
    Ok(PayloadHash::Given(given))
}
