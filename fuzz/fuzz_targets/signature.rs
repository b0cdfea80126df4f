//! The signature canonicaliser and verifier (`taskd-signature`), as the server runs them.
//!
//! Input byte 0 picks the mode:
//! * even: a request built from the input is signed as the SDK signs it, then verified
//!   as the server verifies it: it must pass, and must fail once its body, query,
//!   secret or clock is changed (unless the client signed that its multipart body is not
//!   covered, `UNSIGNED-PAYLOAD`, which then must still pass with another body);
//! * odd: the input is an arbitrary `Authorization` header and request; verifying it
//!   must answer, never panic, and never accept a request whose signature was not made
//!   with the key it is checked against.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use taskd_api::auth::SIGNED_WHEN_PRESENT;
use taskd_signature::{
    IOTDA_DERIVED_SERVICE, MAX_CLOCK_SKEW_SECS, ReceivedRequest, SignatureError, SigningKey,
    SigningRequest, UNSIGNED_PAYLOAD, VerifyPolicy, format_sdk_date, parse_authorization, sign,
    verify,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let _ = round_trip(&mut Unstructured::new(rest));
    } else {
        arbitrary_request(rest);
    }
});

/// HTTP token characters (RFC 9110 `tchar`) but `_`, which the SDK never signs.
const TCHAR: &[u8] =
    b"!#$%&'*+-.^`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn token(u: &mut Unstructured<'_>, alphabet: &[u8], max: usize) -> Result<String> {
    let len = u.int_in_range(1..=max)?;
    (0..len)
        .map(|_| u.choose(alphabet).map(|&b| b as char))
        .collect()
}

/// A header value an HTTP parser hands over: no CR, LF or NUL; any other UTF-8.
fn header_value(u: &mut Unstructured<'_>) -> Result<String> {
    let s: String = u.arbitrary()?;
    Ok(s.chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\0'))
        .take(64)
        .collect())
}

/// Headers the round trip sets itself, or that are not request headers at all.
const OWN_HEADERS: [&str; 5] = [
    "host",
    "x-sdk-date",
    "x-sdk-content-sha256",
    "content-type",
    "authorization",
];

fn round_trip(u: &mut Unstructured<'_>) -> Result<()> {
    let method = u
        .choose(&["GET", "POST", "PUT", "DELETE", "PATCH", "get", "Post"])?
        .to_string();
    // A wire path: visible ASCII but `?` and `#`.
    let path_bytes: Vec<u8> = u.arbitrary()?;
    let path: String = std::iter::once('/')
        .chain(
            path_bytes
                .iter()
                .take(96)
                .map(|&b| (b % 94 + 33) as char)
                .filter(|c| !matches!(c, '?' | '#')),
        )
        .collect();
    let mut query: Vec<(String, String)> = Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        query.push((u.arbitrary()?, u.arbitrary()?));
    }
    // Any second from 1970 to 9999: the SDK date format has four year digits.
    let unix = u.int_in_range(0..=253_402_300_799i64)?;
    let sdk_date = format_sdk_date(unix);
    let mut headers: Vec<(String, String)> = vec![
        ("Host".into(), "127.0.0.1:8080".into()),
        ("X-Sdk-Date".into(), sdk_date.clone()),
    ];
    for _ in 0..u.int_in_range(0..=6)? {
        let name = token(u, TCHAR, 24)?;
        if OWN_HEADERS
            .iter()
            .any(|own| own.eq_ignore_ascii_case(&name))
        {
            continue;
        }
        headers.push((name, header_value(u)?));
    }
    let body: Vec<u8> = u.arbitrary()?;
    // How the body is covered: by its hash (the SDK's JSON calls), by a signed
    // X-Sdk-Content-Sha256 holding that hash, or not at all (multipart uploads).
    let payload = u.int_in_range(0..=2u8)?;
    match payload {
        1 => {
            let hash = taskd_signature::payload_hash(&[("", "")][..0], &body);
            headers.push(("X-Sdk-Content-Sha256".into(), hash));
        }
        2 => {
            headers.push((
                "Content-Type".into(),
                "multipart/form-data; boundary=fuzz".into(),
            ));
            headers.push(("X-Sdk-Content-Sha256".into(), UNSIGNED_PAYLOAD.into()));
        }
        _ => {}
    }
    let access_key = token(u, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 40)?;
    let secret_key: String = u.arbitrary()?;
    let region = token(u, b"abcdefghijklmnopqrstuvwxyz0123456789-", 20)?;
    let key = if u.arbitrary()? {
        SigningKey::Derived {
            access_key: &access_key,
            secret_key: &secret_key,
            region: &region,
            service: IOTDA_DERIVED_SERVICE,
        }
    } else {
        SigningKey::Plain {
            access_key: &access_key,
            secret_key: &secret_key,
        }
    };

    let query_refs: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let header_refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let signed = sign(
        &SigningRequest {
            method: &method,
            path: &path,
            query: &query_refs,
            headers: &header_refs,
            body: &body,
        },
        &key,
    );
    let auth = parse_authorization(&signed.authorization)
        .unwrap_or_else(|e| panic!("own Authorization {:?} refused: {e}", signed.authorization));
    // The server sees the headers through http's HeaderMap whenever they are valid HTTP.
    let map = header_map(&headers);
    let policy = VerifyPolicy {
        signed_when_present: SIGNED_WHEN_PRESENT,
        ..VerifyPolicy::new(unix, IOTDA_DERIVED_SERVICE)
    };
    let check = |query: &str, body: &[u8], secret: &str, policy: &VerifyPolicy<'_>| {
        let on_slice = verify(
            &ReceivedRequest {
                method: &method,
                path: &path,
                query,
                headers: &header_refs[..],
                body,
            },
            &auth,
            secret,
            policy,
        );
        if let Some(map) = &map {
            let on_map = verify(
                &ReceivedRequest {
                    method: &method,
                    path: &path,
                    query,
                    headers: map,
                    body,
                },
                &auth,
                secret,
                policy,
            );
            assert_eq!(on_slice, on_map, "header list and HeaderMap disagree");
        }
        on_slice
    };

    let q = signed.query_string.as_str();
    if let Err(e) = check(q, &body, &secret_key, &policy) {
        panic!(
            "a request signed as the SDK signs it was refused: {e}\n{}",
            signed.authorization
        );
    }
    assert_eq!(
        check(q, &body, &format!("{secret_key}x"), &policy),
        Err(SignatureError::SignatureMismatch),
        "verified with another secret"
    );
    let tampered_query = if q.is_empty() {
        "taskd-fuzz=1".to_owned()
    } else {
        format!("{q}&taskd-fuzz=1")
    };
    assert!(
        check(&tampered_query, &body, &secret_key, &policy).is_err(),
        "a query parameter was added unnoticed"
    );
    let mut other_body = body.clone();
    other_body.push(b'!');
    let tampered = check(q, &other_body, &secret_key, &policy);
    if payload == 2 && !body.is_empty() {
        assert_eq!(
            tampered,
            Ok(()),
            "UNSIGNED-PAYLOAD multipart: the body is not covered"
        );
    } else {
        assert!(
            tampered.is_err(),
            "a changed body verified (payload mode {payload})"
        );
    }
    let late = VerifyPolicy {
        now_unix: unix + MAX_CLOCK_SKEW_SECS + 1,
        ..policy
    };
    assert!(
        matches!(
            check(q, &body, &secret_key, &late),
            Err(SignatureError::ClockSkew { .. })
        ),
        "a request older than the skew window verified"
    );
    Ok(())
}

fn header_map(headers: &[(String, String)]) -> Option<http::HeaderMap> {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
        let value = http::HeaderValue::from_bytes(value.as_bytes()).ok()?;
        map.append(name, value);
    }
    Some(map)
}

/// Lines of the input: the Authorization header, method, path, query, then headers
/// (`name: value`) up to an empty line, then the body.
fn arbitrary_request(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.split('\n');
    let authorization = lines.next().unwrap_or("");
    let method = lines.next().unwrap_or("GET");
    let path = lines.next().unwrap_or("/");
    let query = lines.next().unwrap_or("");
    let headers: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once(':')).collect();
    let Ok(auth) = parse_authorization(authorization) else {
        return;
    };
    assert!(
        !auth.signed_headers.is_empty(),
        "SignedHeaders parsed empty"
    );
    if let Some(scope) = &auth.scope {
        assert_eq!(
            scope.info,
            format!("{}/{}/{}", scope.date, scope.region, scope.service)
        );
    }
    let received = ReceivedRequest {
        method,
        path,
        query,
        headers: &headers[..],
        body: body.as_bytes(),
    };
    let date = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-sdk-date"))
        .and_then(|(_, v)| taskd_signature::parse_sdk_date(v.trim()).ok())
        .unwrap_or(0);
    let policy = VerifyPolicy {
        signed_when_present: SIGNED_WHEN_PRESENT,
        ..VerifyPolicy::new(date, IOTDA_DERIVED_SERVICE)
    };
    // The input cannot know this secret, so nothing it holds may verify against it.
    let verdict = verify(
        &received,
        &auth,
        "taskd-fuzz-secret-the-input-never-saw",
        &policy,
    );
    assert!(
        verdict.is_err(),
        "an arbitrary signature verified against an unknown secret"
    );
}
