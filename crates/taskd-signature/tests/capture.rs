//! Every request the official SDK sent to a capture server (`sdk-wire-capture.txt`,
//! copied from the shared spec) must verify: 42 real requests, both algorithms,
//! JSON bodies, body-less POST/DELETE and the `UNSIGNED-PAYLOAD` multipart upload.

use http::{HeaderMap, HeaderName, HeaderValue};
use taskd_signature::*;

const SK: &str = "hwTestSecretKey0123456789abcdefghijklmnop";

struct Captured {
    call: String,
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn line(bytes: &[u8], at: usize) -> (&str, usize) {
    let end = find(&bytes[at..], b"\n").map_or(bytes.len(), |n| at + n);
    (std::str::from_utf8(&bytes[at..end]).unwrap(), end + 1)
}

/// Parses the capture's text format; bodies are taken by their declared byte length
/// because the multipart one contains CR LF and binary bytes.
fn captured() -> Vec<Captured> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sdk-wire-capture.txt"
    );
    let bytes = std::fs::read(path).expect("fixture sdk-wire-capture.txt");
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(n) = find(&bytes[at..], b"\nCALL: ") {
        at += n + 1;
        let (call, next) = line(&bytes, at);
        let (request_line, mut next) = line(&bytes, next);
        let (method, uri) = request_line.trim().split_once(' ').unwrap();
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let mut headers = HeaderMap::new();
        let body;
        loop {
            let (l, after) = line(&bytes, next);
            if let Some(h) = l.strip_prefix("  H ") {
                let (name, value) = h.split_once(": ").unwrap();
                headers.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            } else if l.starts_with("  BODY: (empty)") {
                body = Vec::new();
                break;
            } else if let Some(rest) = l.strip_prefix("  BODY (") {
                let (len, _) = rest.split_once(" bytes): ").unwrap();
                let len: usize = len.parse().unwrap();
                let start = next + "  BODY (".len() + rest.find("): ").unwrap() + 3;
                body = bytes[start..start + len].to_vec();
                break;
            }
            next = after;
        }
        at = next;
        out.push(Captured {
            call: call.trim_start_matches("CALL: ").to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
            body,
        });
    }
    out
}

fn request(c: &Captured) -> ReceivedRequest<'_, HeaderMap> {
    ReceivedRequest {
        method: &c.method,
        path: &c.path,
        query: &c.query,
        headers: &c.headers,
        body: &c.body,
    }
}

fn policy_for(c: &Captured, offset: i64) -> VerifyPolicy<'static> {
    let date = parse_sdk_date(c.headers["x-sdk-date"].to_str().unwrap()).unwrap();
    VerifyPolicy::new(date + offset, IOTDA_DERIVED_SERVICE)
}

#[test]
fn every_captured_sdk_request_verifies() {
    let all = captured();
    assert_eq!(all.len(), 42, "capture fixture changed?");
    let (mut plain, mut derived, mut unsigned, mut with_body) = (0, 0, 0, 0);
    for c in &all {
        let auth = parse_authorization(c.headers["authorization"].to_str().unwrap()).unwrap();
        for offset in [-MAX_CLOCK_SKEW_SECS, 0, 7, MAX_CLOCK_SKEW_SECS] {
            assert_eq!(
                verify(&request(c), &auth, SK, &policy_for(c, offset)),
                Ok(()),
                "{}",
                c.call
            );
        }
        match auth.algorithm {
            Algorithm::SdkHmacSha256 => plain += 1,
            Algorithm::V11HmacSha256 => derived += 1,
        }
        if c.headers.contains_key(X_SDK_CONTENT_SHA256) {
            unsigned += 1;
        }
        if !c.body.is_empty() {
            with_body += 1;
        }
    }
    assert_eq!((plain, derived, unsigned), (40, 2, 1));
    assert_eq!(with_body, 7);
}

#[test]
fn captured_requests_fail_when_tampered() {
    for c in &captured() {
        let auth = parse_authorization(c.headers["authorization"].to_str().unwrap()).unwrap();
        let policy = policy_for(c, 0);

        assert_eq!(
            verify(&request(c), &auth, "wrong-secret", &policy),
            Err(SignatureError::SignatureMismatch),
            "{}",
            c.call
        );

        let mut tampered = Captured {
            call: c.call.clone(),
            method: c.method.clone(),
            path: format!("{}x", c.path),
            query: c.query.clone(),
            headers: c.headers.clone(),
            body: c.body.clone(),
        };
        assert_eq!(
            verify(&request(&tampered), &auth, SK, &policy),
            Err(SignatureError::SignatureMismatch),
            "{}",
            c.call
        );
        tampered.path = c.path.clone();

        tampered
            .headers
            .insert("x-project-id", HeaderValue::from_static("someoneelse"));
        assert_eq!(
            verify(&request(&tampered), &auth, SK, &policy),
            Err(SignatureError::SignatureMismatch),
            "{}",
            c.call
        );
        tampered.headers = c.headers.clone();

        if !c.body.is_empty() {
            tampered.body[0] ^= 0x20;
            let result = verify(&request(&tampered), &auth, SK, &policy);
            if c.headers.contains_key(X_SDK_CONTENT_SHA256) {
                // UNSIGNED-PAYLOAD: by design the SDK does not sign multipart bodies.
                assert_eq!(result, Ok(()), "{}", c.call);
            } else {
                assert_eq!(result, Err(SignatureError::SignatureMismatch), "{}", c.call);
            }
        }
    }
}
