//! The canonical request (spec §3.1, server side per §3.4).
//!
//! Every piece is written through a [`Sink`] so the same code either builds the
//! canonical request as a string (public functions, tests, debugging) or streams it
//! into SHA-256 through a small stack buffer (the verification hot path, which thus
//! never allocates the canonical request).

use std::borrow::Cow;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use sha2::{Digest, Sha256};

use crate::error::SignatureError;
use crate::headers::HeaderLookup;
use crate::{EMPTY_PAYLOAD_SHA256, X_SDK_CONTENT_SHA256};

/// Python `quote(s, safe="~")`: everything but RFC 3986 unreserved characters is
/// `%XX`-encoded with uppercase hex (which is what `percent_encode` emits).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Destination of canonical-request bytes.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// SHA-256 of the canonical request without materialising it: pieces are gathered in a
/// stack buffer and handed to the hasher in large slices, because feeding the many tiny
/// pieces (`":"`, `"\n"`, …) one by one costs more than copying them.
pub(crate) struct HashSink {
    hasher: Sha256,
    buf: [u8; 512],
    len: usize,
}

impl HashSink {
    pub(crate) fn new() -> Self {
        HashSink {
            hasher: Sha256::new(),
            buf: [0; 512],
            len: 0,
        }
    }

    /// Lowercase hex of the digest, as it appears in the string to sign.
    pub(crate) fn finalize_hex(mut self) -> [u8; 64] {
        self.hasher.update(&self.buf[..self.len]);
        let mut hex = [0u8; 64];
        hex::encode_to_slice(self.hasher.finalize(), &mut hex).expect("64 = 2 * 32");
        hex
    }
}

impl Sink for HashSink {
    fn put(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > self.buf.len() {
            self.hasher.update(&self.buf[..self.len]);
            self.len = 0;
            if bytes.len() > self.buf.len() {
                self.hasher.update(bytes);
                return;
            }
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

pub(crate) fn put_encoded(sink: &mut impl Sink, raw: &[u8]) {
    for chunk in percent_encode(raw, ENCODE) {
        sink.put(chunk.as_bytes());
    }
}

/// Collects sink output into a `String`; every piece written is UTF-8 (ASCII or a
/// `&str` from the caller), so the conversion cannot fail.
fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("canonical pieces are UTF-8")
}

/// Canonical URI of a raw (still percent-encoded) request path: percent-decode, split
/// on `/`, re-encode each segment, and always end in `/`.
///
/// Inherited from the SDK and worth knowing when routing: `/a/b`, `/a/b/` and `/a%2Fb`
/// all have the same canonical URI, so one signature is valid for all three. A router
/// that treats `%2F` inside a segment as data (or a trailing slash as significant)
/// should reject such paths before dispatch rather than rely on the signature.
pub fn canonical_uri(raw_path: &str) -> String {
    let mut out = Vec::with_capacity(raw_path.len() + 1);
    write_canonical_uri(&mut out, raw_path);
    into_string(out)
}

pub(crate) fn write_canonical_uri(sink: &mut impl Sink, raw_path: &str) {
    // Work on bytes: a path the SDK produced always decodes to UTF-8 (its path params are
    // `quote`d `str`s), and staying byte-exact keeps distinct wire paths distinct instead
    // of folding invalid sequences into U+FFFD. `Cow` borrows when nothing is escaped.
    let decoded: Cow<'_, [u8]> = percent_decode_str(raw_path).into();
    for (i, segment) in decoded.split(|&b| b == b'/').enumerate() {
        if i > 0 {
            sink.put(b"/");
        }
        put_encoded(sink, segment);
    }
    if decoded.last() != Some(&b'/') {
        sink.put(b"/");
    }
}

/// Canonical query string of a raw query as received (without the `?`): split on `&`,
/// each pair on the first `=` (missing `=` means empty value), percent-decode both
/// (`+` stays a literal `+`: the SDK never sends one for a space), sort by (key, value)
/// bytes and re-encode. Empty `&&` pieces carry nothing and are skipped.
pub fn canonical_query(raw_query: &str) -> String {
    let mut out = Vec::with_capacity(raw_query.len());
    write_canonical_query(&mut out, raw_query);
    into_string(out)
}

pub(crate) fn write_canonical_query(sink: &mut impl Sink, raw_query: &str) {
    if raw_query.is_empty() {
        return;
    }
    if is_canonical_query(raw_query) {
        // The Python SDK sends its query already canonical; for the usual plain
        // ASCII parameters that is cheap to recognise and saves decoding and sorting.
        sink.put(raw_query.as_bytes());
        return;
    }
    write_canonical_query_general(sink, raw_query);
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// True if `raw_query` is its own canonical form *and* contains no `%` escapes (so its
/// bytes are the decoded bytes and can be compared directly): every piece is `k=v`
/// of unreserved characters and the pairs are sorted by (key, value). Anything else,
/// including an empty piece, takes the general path.
fn is_canonical_query(raw_query: &str) -> bool {
    let mut previous: Option<(&str, &str)> = None;
    for piece in raw_query.split('&') {
        let Some((k, v)) = piece.split_once('=') else {
            return false;
        };
        if !k.bytes().chain(v.bytes()).all(is_unreserved) {
            return false;
        }
        // Compare as tuples: comparing the "k=v" text would put "a-b=1" before "a=1".
        if previous.is_some_and(|p| p > (k, v)) {
            return false;
        }
        previous = Some((k, v));
    }
    true
}

/// A query (key, value) after percent-decoding; borrowed unless it contained escapes.
type DecodedPair<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

fn write_canonical_query_general(sink: &mut impl Sink, raw_query: &str) {
    let mut pairs: Vec<DecodedPair<'_>> = raw_query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            (percent_decode_str(k).into(), percent_decode_str(v).into())
        })
        .collect();
    // Equal pairs are byte-identical, so an unstable sort gives the same output.
    pairs.sort_unstable();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            sink.put(b"&");
        }
        put_encoded(sink, k);
        sink.put(b"=");
        put_encoded(sink, v);
    }
}

/// The payload hash as the SDK computes it, without allocating: either borrowed from
/// `X-Sdk-Content-Sha256`, a constant, or hex on the stack.
pub(crate) enum PayloadHash<'a> {
    Given(&'a str),
    Computed([u8; 64]),
}

impl PayloadHash<'_> {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            PayloadHash::Given(s) => s.as_bytes(),
            PayloadHash::Computed(hex) => hex,
        }
    }
}

pub(crate) fn compute_payload_hash<'h, H: HeaderLookup + ?Sized>(
    headers: &'h H,
    body: &[u8],
) -> PayloadHash<'h> {
    // Order matters and mirrors the SDK: an empty body hashes to SHA-256("") even if
    // X-Sdk-Content-Sha256 is present.
    if body.is_empty() {
        PayloadHash::Given(EMPTY_PAYLOAD_SHA256)
    } else if let Some(given) = headers.header(X_SDK_CONTENT_SHA256) {
        // Verbatim (e.g. UNSIGNED-PAYLOAD): the body is then not covered by the signature.
        PayloadHash::Given(given)
    } else {
        PayloadHash::Computed(sha256_hex(body))
    }
}

pub(crate) fn sha256_hex(data: &[u8]) -> [u8; 64] {
    let mut hex = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(data), &mut hex).expect("64 = 2 * 32");
    hex
}

/// Payload hash line of the canonical request: `SHA-256("")` for an empty body, else the
/// `X-Sdk-Content-Sha256` header verbatim when present (e.g. `UNSIGNED-PAYLOAD`), else
/// lowercase hex SHA-256 of the body bytes.
pub fn payload_hash<H: HeaderLookup + ?Sized>(headers: &H, body: &[u8]) -> String {
    into_string(compute_payload_hash(headers, body).as_bytes().to_vec())
}

/// The canonical request of a received request, built from the raw wire path and query,
/// the headers named in `signed_headers` (in that order), and a payload hash (see
/// [`payload_hash`]). Fails if a signed header is missing.
pub fn canonical_request<H: HeaderLookup + ?Sized>(
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &H,
    signed_headers: &[&str],
    payload_hash: &str,
) -> Result<String, SignatureError> {
    let mut out = Vec::with_capacity(256 + raw_path.len() + raw_query.len());
    write_canonical_request(
        &mut out,
        method,
        raw_path,
        raw_query,
        headers,
        signed_headers,
        payload_hash.as_bytes(),
    )?;
    Ok(into_string(out))
}

pub(crate) fn write_canonical_request<H: HeaderLookup + ?Sized>(
    sink: &mut impl Sink,
    method: &str,
    raw_path: &str,
    raw_query: &str,
    headers: &H,
    signed_headers: &[&str],
    payload_hash: &[u8],
) -> Result<(), SignatureError> {
    // The SDK upper-cases the method; HTTP stacks hand us what was on the wire.
    if method.bytes().any(|b| b.is_ascii_lowercase()) {
        sink.put(method.to_ascii_uppercase().as_bytes());
    } else {
        sink.put(method.as_bytes());
    }
    sink.put(b"\n");
    write_canonical_uri(sink, raw_path);
    sink.put(b"\n");
    write_canonical_query(sink, raw_query);
    sink.put(b"\n");
    for &name in signed_headers {
        let value = headers
            .header(name)
            .ok_or_else(|| SignatureError::MissingSignedHeader(name.to_owned()))?;
        sink.put(name.as_bytes());
        sink.put(b":");
        // Python `str.strip()`; HTTP parsers already drop surrounding SP/HTAB, but a
        // header list built by hand may not have.
        sink.put(value.trim().as_bytes());
        sink.put(b"\n");
    }
    sink.put(b"\n"); // canonical headers end in "\n", so this makes the blank line
    for (i, &name) in signed_headers.iter().enumerate() {
        if i > 0 {
            sink.put(b";");
        }
        sink.put(name.as_bytes());
    }
    sink.put(b"\n");
    sink.put(payload_hash);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_examples() {
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/"), "/");
        assert_eq!(canonical_uri("/v2/p/jobs"), "/v2/p/jobs/");
        assert_eq!(canonical_uri("/v2/p/jobs/"), "/v2/p/jobs/");
        assert_eq!(canonical_uri("/a//b"), "/a//b/");
        // decoded, then re-encoded with uppercase hex and unreserved chars left alone
        assert_eq!(canonical_uri("/a%20b/%7e%41"), "/a%20b/~A/");
        assert_eq!(canonical_uri("/a b/*"), "/a%20b/%2A/");
        assert_eq!(canonical_uri("/x/%C3%BC%E4%B8%AD"), "/x/%C3%BC%E4%B8%AD/");
        assert_eq!(canonical_uri("/x/ü中"), "/x/%C3%BC%E4%B8%AD/");
        // %2F is decoded before splitting, exactly like the SDK
        assert_eq!(canonical_uri("/a%2Fb"), "/a/b/");
        // invalid escapes stay literal; '%' itself is then encoded
        assert_eq!(canonical_uri("/a%zz"), "/a%25zz/");
        // invalid UTF-8 after decoding is kept byte-exact
        assert_eq!(canonical_uri("/%FF"), "/%FF/");
        assert_eq!(canonical_uri("/a+b"), "/a%2Bb/");
    }

    #[test]
    fn query_examples() {
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("b=2&a=1"), "a=1&b=2");
        assert_eq!(canonical_query("a=2&a=1&a"), "a=&a=1&a=2");
        assert_eq!(canonical_query("k=v=w"), "k=v%3Dw");
        assert_eq!(canonical_query("a+b=c%20d"), "a%2Bb=c%20d");
        assert_eq!(canonical_query("&&x=1&"), "x=1");
        assert_eq!(canonical_query("="), "=");
        assert_eq!(canonical_query("n=%7e%2a"), "n=~%2A");
        // sort is on decoded bytes: "a b" (0x20) < "a%" (0x25) < "a+" (0x2B)
        assert_eq!(
            canonical_query("k=a%2B&k=a%20b&k=a%25"),
            "k=a%20b&k=a%25&k=a%2B"
        );
        // V4 from sign-vectors.json is already canonical and must be a fixed point
        let v4 = "empty=&flag=true&multi=a&multi=b&name=a%20b%2Fc~d%2Ae&status=Running&uni=%C3%BC%E4%B8%AD";
        assert_eq!(canonical_query(v4), v4);
    }

    fn general(q: &str) -> String {
        let mut out = Vec::new();
        write_canonical_query_general(&mut out, q);
        into_string(out)
    }

    #[test]
    fn fast_path_recognises_only_canonical_queries() {
        for q in [
            "a=1",
            "a=1&b=2",
            "a=&a=1",
            "=",
            "a=1&a-b=1",
            "a-b=1&a=1",
            "a=1&a=1",
            "k=~._-",
        ] {
            let fast = is_canonical_query(q);
            assert_eq!(fast, general(q) == q, "{q:?}");
        }
        for q in [
            "b=2&a=1",
            "a-b=1&a=1",
            "a",
            "a=1&",
            "&a=1",
            "a=b=c",
            "a=%20",
            "a=+",
            "a=1&&b=2",
        ] {
            assert!(!is_canonical_query(q), "{q:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_path_agrees_with_general_path(q in "[ab=&~.+%2F-]{0,16}") {
            proptest::prop_assert_eq!(canonical_query(&q), general(&q));
        }
    }

    #[test]
    fn payload_hash_rules() {
        let unsigned: &[(&str, &str)] = &[("X-Sdk-Content-Sha256", "UNSIGNED-PAYLOAD")];
        let none: &[(&str, &str)] = &[];
        assert_eq!(payload_hash(none, b""), EMPTY_PAYLOAD_SHA256);
        assert_eq!(payload_hash(unsigned, b""), EMPTY_PAYLOAD_SHA256);
        assert_eq!(payload_hash(unsigned, b"x"), "UNSIGNED-PAYLOAD");
        assert_eq!(
            payload_hash(none, b"{}"),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn canonical_request_lowercase_method_and_missing_header() {
        let h: &[(&str, &str)] = &[("Host", " h:1 "), ("X-Sdk-Date", "20240315T080910Z")];
        let cr = canonical_request("get", "/p", "", h, &["host", "x-sdk-date"], "HASH").unwrap();
        assert_eq!(
            cr,
            "GET\n/p/\n\nhost:h:1\nx-sdk-date:20240315T080910Z\n\nhost;x-sdk-date\nHASH"
        );
        assert_eq!(
            canonical_request("GET", "/p", "", h, &["host", "x-project-id"], "HASH"),
            Err(SignatureError::MissingSignedHeader("x-project-id".into()))
        );
    }
}
