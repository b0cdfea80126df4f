//! Parsing the `Authorization` header (spec §3.2, §3.3, §3.4).
//!
//! The SDK writes exactly `ALG Access=AK, SignedHeaders=a;b, Signature=hex` (or
//! `Credential=AK/yyyymmdd/region/service` for V11). Parsing is strict about content
//! (each item once, nothing unknown, a 32-byte hex signature) but tolerant of spacing
//! around the commas, which costs nothing and helps hand-written clients.

use crate::error::SignatureError;
use crate::{SDK_HMAC_SHA256, V11_HMAC_SHA256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `SDK-HMAC-SHA256`: HMAC keyed with the secret key.
    SdkHmacSha256,
    /// `V11-HMAC-SHA256`: HMAC keyed with the HKDF-derived key of the credential scope.
    V11HmacSha256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::SdkHmacSha256 => SDK_HMAC_SHA256,
            Algorithm::V11HmacSha256 => V11_HMAC_SHA256,
        }
    }
}

/// A parsed `Authorization` header (borrowing from it).
#[derive(Debug, Clone)]
pub struct Authorization<'a> {
    pub algorithm: Algorithm,
    pub access_key: &'a str,
    /// Only for V11: the credential scope after "AK/", e.g. "20240315/cn-north-4/iotdm".
    pub scope: Option<DerivedScope<'a>>,
    /// As listed in `SignedHeaders` (the SDK lowercases and sorts them); never empty.
    pub signed_headers: Vec<&'a str>,
    pub signature: [u8; 32],
}

/// A V11 credential scope `info = yyyymmdd/region/service`, and its three parts.
#[derive(Debug, Clone, Copy)]
pub struct DerivedScope<'a> {
    /// The whole scope; it is both the HKDF `info` and a line of the string to sign.
    pub info: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

/// Parses an `Authorization` header value as the SDK writes it.
///
/// Only the shape is checked here; the scope's date and service are checked against
/// the request by [`crate::verify`], which needs the secret key the caller looks up by
/// [`Authorization::access_key`].
pub fn parse_authorization(value: &str) -> Result<Authorization<'_>, SignatureError> {
    use SignatureError::MalformedAuthorization as Malformed;

    let value = value.trim();
    let (alg, rest) = value.split_once(' ').unwrap_or((value, ""));
    // Decide the scheme first so that e.g. `Bearer <token>` reports "unsupported", not "malformed".
    let algorithm = match alg {
        SDK_HMAC_SHA256 => Algorithm::SdkHmacSha256,
        V11_HMAC_SHA256 => Algorithm::V11HmacSha256,
        _ => return Err(SignatureError::UnsupportedAlgorithm),
    };

    let mut access = None;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for item in rest.split(',') {
        let (key, val) = item
            .trim()
            .split_once('=')
            .ok_or(Malformed("item without '='"))?;
        let slot = match key {
            "Access" => &mut access,
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(Malformed("unknown item")),
        };
        // A repeated item would leave it ambiguous which one was meant.
        if slot.replace(val).is_some() {
            return Err(Malformed("repeated item"));
        }
    }

    let (access_key, scope) = match algorithm {
        Algorithm::SdkHmacSha256 => {
            if credential.is_some() {
                return Err(Malformed("Credential is only valid for V11-HMAC-SHA256"));
            }
            (access.ok_or(Malformed("missing Access"))?, None)
        }
        Algorithm::V11HmacSha256 => {
            if access.is_some() {
                return Err(Malformed("Access is not valid for V11-HMAC-SHA256"));
            }
            let credential = credential.ok_or(Malformed("missing Credential"))?;
            let (ak, info) = credential
                .split_once('/')
                .ok_or(Malformed("Credential without scope"))?;
            (ak, Some(parse_scope(info)?))
        }
    };
    if access_key.is_empty() {
        return Err(Malformed("empty access key"));
    }

    let signed_headers = signed_headers.ok_or(Malformed("missing SignedHeaders"))?;
    // Sized up front: the SDK signs 5-7 headers, which would otherwise cost a regrowth.
    let mut names = Vec::with_capacity(signed_headers.bytes().filter(|&b| b == b';').count() + 1);
    names.extend(signed_headers.split(';'));
    let signed_headers = names;
    if signed_headers.iter().any(|h| h.is_empty()) {
        return Err(Malformed("empty name in SignedHeaders"));
    }

    let signature_hex = signature.ok_or(Malformed("missing Signature"))?;
    let mut signature = [0u8; 32];
    hex::decode_to_slice(signature_hex, &mut signature)
        .map_err(|_| Malformed("Signature is not 64 hex digits"))?;

    Ok(Authorization {
        algorithm,
        access_key,
        scope,
        signed_headers,
        signature,
    })
}

fn parse_scope(info: &str) -> Result<DerivedScope<'_>, SignatureError> {
    let mut parts = info.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(date), Some(region), Some(service), None)
            if !date.is_empty() && !region.is_empty() && !service.is_empty() =>
        {
            Ok(DerivedScope {
                info,
                date,
                region,
                service,
            })
        }
        _ => Err(SignatureError::MalformedAuthorization(
            "Credential scope is not yyyymmdd/region/service",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "2fdbf92dc14d630cd756a8706f0022e9f2d54b2b2cbecff2b9e0774fb95cb55d";

    #[test]
    fn parses_plain() {
        let v = format!(
            "SDK-HMAC-SHA256 Access=AK1, SignedHeaders=content-type;host;x-sdk-date, Signature={SIG}"
        );
        let a = parse_authorization(&v).unwrap();
        assert_eq!(a.algorithm, Algorithm::SdkHmacSha256);
        assert_eq!(a.access_key, "AK1");
        assert!(a.scope.is_none());
        assert_eq!(a.signed_headers, ["content-type", "host", "x-sdk-date"]);
        assert_eq!(hex::encode(a.signature), SIG);
    }

    #[test]
    fn parses_v11_scope() {
        let v = format!(
            "V11-HMAC-SHA256 Credential=AK1/20240315/cn-north-4/iotdm, SignedHeaders=host;x-sdk-date, Signature={SIG}"
        );
        let a = parse_authorization(&v).unwrap();
        assert_eq!(a.algorithm, Algorithm::V11HmacSha256);
        assert_eq!(a.access_key, "AK1");
        let s = a.scope.unwrap();
        assert_eq!(
            (s.info, s.date, s.region, s.service),
            (
                "20240315/cn-north-4/iotdm",
                "20240315",
                "cn-north-4",
                "iotdm"
            )
        );
    }

    #[test]
    fn tolerates_spacing_around_items() {
        let v = format!("SDK-HMAC-SHA256 Access=AK1,SignedHeaders=x-sdk-date ,  Signature={SIG} ");
        assert!(parse_authorization(&v).is_ok());
    }

    #[test]
    fn unsupported_algorithms() {
        for v in [
            "Bearer abc.def",
            "bearer",
            "",
            "SDK-HMAC-SM3 Access=AK, SignedHeaders=x-sdk-date, Signature=00",
            "sdk-hmac-sha256 Access=AK, SignedHeaders=x-sdk-date, Signature=00",
        ] {
            assert_eq!(
                parse_authorization(v).unwrap_err(),
                SignatureError::UnsupportedAlgorithm,
                "{v:?}"
            );
        }
    }

    #[test]
    fn malformed() {
        let ok_sig = format!("Signature={SIG}");
        let cases = [
            "SDK-HMAC-SHA256".to_string(),
            format!("SDK-HMAC-SHA256 SignedHeaders=x-sdk-date, {ok_sig}"),
            format!("SDK-HMAC-SHA256 Access=, SignedHeaders=x-sdk-date, {ok_sig}"),
            format!("SDK-HMAC-SHA256 Access=A, Access=B, SignedHeaders=x-sdk-date, {ok_sig}"),
            format!("SDK-HMAC-SHA256 Access=A, SignedHeaders=x-sdk-date, {ok_sig}, Extra=1"),
            format!("SDK-HMAC-SHA256 Access=A, SignedHeaders=x-sdk-date, {ok_sig},"),
            format!("SDK-HMAC-SHA256 Access=A, SignedHeaders=host;;x-sdk-date, {ok_sig}"),
            format!("SDK-HMAC-SHA256 Access=A, SignedHeaders=, {ok_sig}"),
            format!("SDK-HMAC-SHA256 Access=A, {ok_sig}"),
            "SDK-HMAC-SHA256 Access=A, SignedHeaders=x-sdk-date".to_string(),
            "SDK-HMAC-SHA256 Access=A, SignedHeaders=x-sdk-date, Signature=abcd".to_string(),
            format!("SDK-HMAC-SHA256 Access=A, SignedHeaders=x-sdk-date, Signature={SIG}00"),
            format!(
                "SDK-HMAC-SHA256 Access=A, SignedHeaders=x-sdk-date, Signature={}zz",
                &SIG[..62]
            ),
            format!(
                "SDK-HMAC-SHA256 Credential=A/20240315/r/iotdm, SignedHeaders=x-sdk-date, {ok_sig}"
            ),
            format!("V11-HMAC-SHA256 Access=A, SignedHeaders=x-sdk-date, {ok_sig}"),
            format!("V11-HMAC-SHA256 Credential=A, SignedHeaders=x-sdk-date, {ok_sig}"),
            format!(
                "V11-HMAC-SHA256 Credential=A/20240315/iotdm, SignedHeaders=x-sdk-date, {ok_sig}"
            ),
            format!(
                "V11-HMAC-SHA256 Credential=A/20240315//iotdm, SignedHeaders=x-sdk-date, {ok_sig}"
            ),
            format!(
                "V11-HMAC-SHA256 Credential=A/20240315/r/iotdm/x, SignedHeaders=x-sdk-date, {ok_sig}"
            ),
            format!(
                "V11-HMAC-SHA256 Credential=/20240315/r/iotdm, SignedHeaders=x-sdk-date, {ok_sig}"
            ),
        ];
        for v in &cases {
            assert!(
                matches!(
                    parse_authorization(v),
                    Err(SignatureError::MalformedAuthorization(_))
                ),
                "{v:?} -> {:?}",
                parse_authorization(v)
            );
        }
    }

    #[test]
    fn error_messages_do_not_echo_the_header() {
        let secretish = "Bearer s3cr3t-t0k3n";
        let msg = parse_authorization(secretish).unwrap_err().to_string();
        assert!(!msg.contains("s3cr3t"), "{msg}");
        let v = "SDK-HMAC-SHA256 Access=A, SignedHeaders=x-sdk-date, Signature=s3cr3t";
        let msg = parse_authorization(v).unwrap_err().to_string();
        assert!(!msg.contains("s3cr3t"), "{msg}");
    }
}
