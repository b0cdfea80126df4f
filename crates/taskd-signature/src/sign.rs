//! Client-side signing, byte-compatible with the Python SDK (`Signer`,
//! `DerivationAKSKSigner`), for taskd's own CLI, workers, tests and benchmarks.

use crate::X_SDK_DATE;
use crate::auth::Algorithm;
use crate::canonical::{HashSink, Sink, compute_payload_hash, write_canonical_request};
use crate::keys::compute_signature;

/// A request to sign, as the client will send it.
pub struct SigningRequest<'a> {
    pub method: &'a str,
    /// The wire path, already percent-encoded the way it will be sent (the SDK encodes
    /// each path parameter with `quote(v, safe="")`).
    pub path: &'a str,
    /// Decoded (key, value) pairs in any order; send [`Signed::query_string`]. Encode
    /// non-strings as the SDK does: integers in decimal, booleans as `true`/`false`,
    /// lists as one pair per element.
    pub query: &'a [(&'a str, &'a str)],
    /// Must include `host` and `x-sdk-date`. All headers are signed except names
    /// containing `_`; if a name repeats (case-insensitively) the first one wins.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

pub enum SigningKey<'a> {
    /// `SDK-HMAC-SHA256`.
    Plain {
        access_key: &'a str,
        secret_key: &'a str,
    },
    /// `V11-HMAC-SHA256` with scope `yyyymmdd(X-Sdk-Date)/region/service`.
    Derived {
        access_key: &'a str,
        secret_key: &'a str,
        region: &'a str,
        service: &'a str,
    },
}

/// Result of [`sign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The complete `Authorization` header value.
    pub authorization: String,
    /// The canonical query (no `?`), to send on the wire as the SDK does.
    pub query_string: String,
}

/// Signs like the SDK does.
///
/// Signed headers = all given header names lowercased and sorted, excluding names that
/// contain `_`. Without an `x-sdk-date` header the result is an `Authorization` no
/// verifier accepts (debug builds assert).
pub fn sign(req: &SigningRequest<'_>, key: &SigningKey<'_>) -> Signed {
    let mut headers: Vec<(String, &str)> = req
        .headers
        .iter()
        .filter(|(name, _)| !name.contains('_'))
        .map(|(name, value)| (name.to_ascii_lowercase(), *value))
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0)); // stable, so dedup keeps the first occurrence
    headers.dedup_by(|later, earlier| later.0 == earlier.0);
    let signed_names: Vec<&str> = headers.iter().map(|(name, _)| name.as_str()).collect();

    let sdk_date = headers
        .iter()
        .find(|(name, _)| name == X_SDK_DATE)
        .map_or("", |(_, value)| value.trim());
    debug_assert!(
        !sdk_date.is_empty(),
        "SigningRequest needs an x-sdk-date header"
    );

    let query_string = client_canonical_query(req.query);

    let (algorithm, access_key, secret_key, info) = match *key {
        SigningKey::Plain {
            access_key,
            secret_key,
        } => (Algorithm::SdkHmacSha256, access_key, secret_key, None),
        SigningKey::Derived {
            access_key,
            secret_key,
            region,
            service,
        } => {
            let day = sdk_date.get(..8).unwrap_or(sdk_date);
            let info = format!("{day}/{region}/{service}");
            (Algorithm::V11HmacSha256, access_key, secret_key, Some(info))
        }
    };

    let payload_hash = compute_payload_hash(req.headers, req.body);
    let mut canonical_hash = HashSink::new();
    // The client canonical query is a fixed point of the server canonicalisation
    // (decode∘encode = id and the sort key is the same), so the server-side writer
    // produces exactly the SDK's canonical request.
    write_canonical_request(
        &mut canonical_hash,
        req.method,
        req.path,
        &query_string,
        headers.as_slice(),
        &signed_names,
        payload_hash.as_bytes(),
    )
    .expect("every signed header comes from the header list");
    let scope = info.as_deref().map(|info| (access_key, info));
    let signature = compute_signature(
        algorithm,
        secret_key,
        scope,
        sdk_date,
        &canonical_hash.finalize_hex(),
    );

    let signed_headers = signed_names.join(";");
    let signature = hex::encode(signature);
    let authorization = match &info {
        None => format!(
            "{} Access={access_key}, SignedHeaders={signed_headers}, Signature={signature}",
            algorithm.as_str()
        ),
        Some(info) => format!(
            "{} Credential={access_key}/{info}, SignedHeaders={signed_headers}, Signature={signature}",
            algorithm.as_str()
        ),
    };
    Signed {
        authorization,
        query_string,
    }
}

/// The SDK's `CanonicalQuery`: sort by (key, value) on the raw strings (UTF-8 byte order
/// equals Python's code-point order), then encode each side.
fn client_canonical_query(pairs: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = pairs.iter().collect();
    sorted.sort_unstable();
    let mut out = Vec::new();
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.put(b"&");
        }
        crate::canonical::put_encoded(&mut out, k.as_bytes());
        out.put(b"=");
        crate::canonical::put_encoded(&mut out, v.as_bytes());
    }
    String::from_utf8(out).expect("percent-encoding output is ASCII")
}
