//! `verify` must reject each way a request can be stale, mis-scoped or tampered with.
//! Where possible the rejected request carries an otherwise *valid* signature, so the
//! test shows the policy check itself (not a later signature mismatch) is what rejects.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use taskd_signature::*;

const AK: &str = "HWTESTAK0123456789AB";
const SK: &str = "hwTestSecretKey0123456789abcdefghijklmnop";
const DATE: &str = "20240315T080910Z";
const PATH: &str = "/v5/iot/0123456789abcdef0123456789abcdef/batchtasks";
const BODY: &[u8] = br#"{"task_name": "fw_upgrade_1", "task_type": "firmwareUpgrade", "targets": ["dev-001", "dev-002"], "document": {"package_ids": ["32822e5744a45ede319d2c50"]}, "task_policy": {"retry_count": 3, "retry_interval": 10}}"#;
/// Vector V2 (plain) of sign-vectors.json.
const V2_AUTH: &str = "SDK-HMAC-SHA256 Access=HWTESTAK0123456789AB, SignedHeaders=content-type;host;instance-id;user-agent;x-project-id;x-sdk-date, Signature=46870192b96197280b72f92c27ce9031f3927e9abd07785132955b50d0a2fbdb";

fn headers(date: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Instance-Id", "inst-0001".into()),
        ("Content-Type", "application/json".into()),
        ("User-Agent", "huaweicloud-usdk-python/3.0".into()),
        ("X-Project-Id", "0123456789abcdef0123456789abcdef".into()),
        ("X-Sdk-Date", date.into()),
        ("Host", "127.0.0.1:8080".into()),
    ]
}

fn now() -> i64 {
    parse_sdk_date(DATE).unwrap()
}

fn policy(now_unix: i64) -> VerifyPolicy<'static> {
    VerifyPolicy::new(now_unix, IOTDA_DERIVED_SERVICE)
}

fn check(
    headers: &[(&'static str, String)],
    authorization: &str,
    secret: &str,
    now_unix: i64,
) -> Result<(), SignatureError> {
    let auth = parse_authorization(authorization)?;
    let req = ReceivedRequest {
        method: "POST",
        path: PATH,
        query: "",
        headers,
        body: BODY,
    };
    verify(&req, &auth, secret, &policy(now_unix))
}

/// Signs `headers` with an arbitrary signed-header list and credential scope, the way a
/// (misbehaving) client could, to get signatures `sign()` would never produce.
fn forge(
    headers: &[(&'static str, String)],
    signed: &[&str],
    algorithm: Algorithm,
    scope_info: Option<&str>,
) -> String {
    let cr = canonical_request(
        "POST",
        PATH,
        "",
        headers,
        signed,
        &payload_hash(headers, BODY),
    )
    .unwrap();
    let date = headers
        .iter()
        .find(|(k, _)| *k == "X-Sdk-Date")
        .unwrap()
        .1
        .as_str();
    let sts = string_to_sign(algorithm, date, scope_info, &cr);
    let key = match scope_info {
        Some(info) => derive_key(AK, SK, info),
        None => SK.to_owned(),
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(sts.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let signed = signed.join(";");
    match scope_info {
        Some(info) => {
            format!(
                "V11-HMAC-SHA256 Credential={AK}/{info}, SignedHeaders={signed}, Signature={sig}"
            )
        }
        None => format!("SDK-HMAC-SHA256 Access={AK}, SignedHeaders={signed}, Signature={sig}"),
    }
}

fn sign_derived(headers: &[(&'static str, String)], region: &str, service: &str) -> String {
    let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sign(
        &SigningRequest {
            method: "POST",
            path: PATH,
            query: &[],
            headers: &refs,
            body: BODY,
        },
        &SigningKey::Derived {
            access_key: AK,
            secret_key: SK,
            region,
            service,
        },
    )
    .authorization
}

#[test]
fn baseline_vector_is_accepted() {
    assert_eq!(check(&headers(DATE), V2_AUTH, SK, now()), Ok(()));
    // The forging helper agrees with the SDK, so the forged cases below are meaningful.
    let signed = [
        "content-type",
        "host",
        "instance-id",
        "user-agent",
        "x-project-id",
        "x-sdk-date",
    ];
    assert_eq!(
        forge(&headers(DATE), &signed, Algorithm::SdkHmacSha256, None),
        V2_AUTH
    );
}

#[test]
fn clock_skew_boundaries() {
    let h = headers(DATE);
    let max = MAX_CLOCK_SKEW_SECS;
    assert_eq!(check(&h, V2_AUTH, SK, now() + max), Ok(()));
    assert_eq!(check(&h, V2_AUTH, SK, now() - max), Ok(()));
    for now_unix in [
        now() + max + 1,
        now() - max - 1,
        now() + 86_400,
        0,
        i64::MIN,
        i64::MAX,
    ] {
        let err = check(&h, V2_AUTH, SK, now_unix).unwrap_err();
        assert_eq!(
            err,
            SignatureError::ClockSkew {
                request_unix: now(),
                server_unix: now_unix,
                max_skew_secs: max
            }
        );
    }
    // A custom, tighter window is honoured too.
    let auth = parse_authorization(V2_AUTH).unwrap();
    let req = ReceivedRequest {
        method: "POST",
        path: PATH,
        query: "",
        headers: h.as_slice(),
        body: BODY,
    };
    let tight = VerifyPolicy {
        now_unix: now() + 61,
        max_skew_secs: 60,
        derived_service: IOTDA_DERIVED_SERVICE,
        signed_when_present: &[],
    };
    assert!(matches!(
        verify(&req, &auth, SK, &tight),
        Err(SignatureError::ClockSkew { .. })
    ));
}

#[test]
fn clock_skew_message_names_both_times() {
    let err = check(&headers(DATE), V2_AUTH, SK, now() + 3600).unwrap_err();
    assert_eq!(
        err.to_string(),
        "signature expired: request time 20240315T080910Z, server time 20240315T090910Z (allowed skew 900 s)"
    );
}

#[test]
fn x_sdk_date_not_signed() {
    let h = headers(DATE);
    let signed = [
        "content-type",
        "host",
        "instance-id",
        "user-agent",
        "x-project-id",
    ];
    let auth = forge(&h, &signed, Algorithm::SdkHmacSha256, None);
    assert_eq!(
        check(&h, &auth, SK, now()),
        Err(SignatureError::DateNotSigned)
    );
}

#[test]
fn x_sdk_date_missing_or_malformed() {
    let mut h = headers(DATE);
    h.retain(|(k, _)| *k != "X-Sdk-Date");
    assert_eq!(
        check(&h, V2_AUTH, SK, now()),
        Err(SignatureError::MissingDate)
    );

    let h = headers("2024-03-15T08:09:10Z");
    let signed = ["host", "x-sdk-date"];
    let auth = forge(&h, &signed, Algorithm::SdkHmacSha256, None);
    assert_eq!(
        check(&h, &auth, SK, now()),
        Err(SignatureError::MalformedDate)
    );
}

#[test]
fn unknown_algorithm() {
    for alg in [
        "SDK-HMAC-SM3",
        "SDK-ECDSA-P256-SHA256",
        "AWS4-HMAC-SHA256",
        "Bearer",
    ] {
        let auth = V2_AUTH.replacen("SDK-HMAC-SHA256", alg, 1);
        assert_eq!(
            check(&headers(DATE), &auth, SK, now()),
            Err(SignatureError::UnsupportedAlgorithm)
        );
    }
}

#[test]
fn v11_is_accepted_for_any_region_with_service_iotdm() {
    let h = headers(DATE);
    for region in ["cn-north-4", "ap-southeast-1", "x"] {
        let auth = sign_derived(&h, region, "iotdm");
        assert_eq!(check(&h, &auth, SK, now()), Ok(()), "{region}");
    }
}

#[test]
fn v11_wrong_service() {
    let h = headers(DATE);
    for service in ["iotda", "IOTDM", "iotdm2", "swr"] {
        let auth = sign_derived(&h, "cn-north-4", service);
        assert_eq!(
            check(&h, &auth, SK, now()),
            Err(SignatureError::ScopeMismatch(ScopePart::Service)),
            "{service}"
        );
    }
}

#[test]
fn v11_scope_date_differs_from_x_sdk_date_day() {
    // Five seconds after midnight: a scope for the previous day is well within the clock
    // window, so only the day check can reject it.
    let date = "20240315T000005Z";
    let h = headers(date);
    let now_unix = parse_sdk_date(date).unwrap();
    let signed = [
        "content-type",
        "host",
        "instance-id",
        "user-agent",
        "x-project-id",
        "x-sdk-date",
    ];
    let good = forge(
        &h,
        &signed,
        Algorithm::V11HmacSha256,
        Some("20240315/cn-north-4/iotdm"),
    );
    assert_eq!(good, sign_derived(&h, "cn-north-4", "iotdm"));
    assert_eq!(check(&h, &good, SK, now_unix), Ok(()));
    for info in [
        "20240314/cn-north-4/iotdm",
        "20240316/cn-north-4/iotdm",
        "2024031/cn-north-4/iotdm",
    ] {
        let auth = forge(&h, &signed, Algorithm::V11HmacSha256, Some(info));
        assert_eq!(
            check(&h, &auth, SK, now_unix),
            Err(SignatureError::ScopeMismatch(ScopePart::Date)),
            "{info}"
        );
    }
}

#[test]
fn missing_signed_header() {
    for missing in [
        "Instance-Id",
        "Host",
        "User-Agent",
        "Content-Type",
        "X-Project-Id",
    ] {
        let mut h = headers(DATE);
        h.retain(|(k, _)| *k != missing);
        assert_eq!(
            check(&h, V2_AUTH, SK, now()),
            Err(SignatureError::MissingSignedHeader(
                missing.to_ascii_lowercase()
            )),
            "{missing}"
        );
    }
}

#[test]
fn wrong_secret_or_tampering() {
    let h = headers(DATE);
    assert_eq!(
        check(
            &h,
            V2_AUTH,
            "hwTestSecretKey0123456789abcdefghijklmnoP",
            now()
        ),
        Err(SignatureError::SignatureMismatch)
    );
    // Flip each signature bit position class: first and last byte.
    for (from, to) in [("Signature=4", "Signature=5"), ("2fbdb", "2fbda")] {
        let auth = V2_AUTH.replace(from, to);
        assert_ne!(auth, V2_AUTH);
        assert_eq!(
            check(&h, &auth, SK, now()),
            Err(SignatureError::SignatureMismatch)
        );
    }
    // Header value changed.
    let mut h2 = h.clone();
    h2[0].1 = "inst-0002".into();
    assert_eq!(
        check(&h2, V2_AUTH, SK, now()),
        Err(SignatureError::SignatureMismatch)
    );
    // An attacker adding X-Sdk-Content-Sha256 to skip body hashing: refused because the
    // header is not signed (before any signature math).
    let mut h3 = h.clone();
    h3.push(("X-Sdk-Content-Sha256", UNSIGNED_PAYLOAD.into()));
    assert_eq!(
        check(&h3, V2_AUTH, SK, now()),
        Err(SignatureError::HeaderNotSigned(
            "x-sdk-content-sha256".into()
        ))
    );
    // Dropping a name from SignedHeaders (date still signed) changes the canonical request.
    let auth = V2_AUTH.replace("instance-id;", "");
    assert_eq!(
        check(&h, &auth, SK, now()),
        Err(SignatureError::SignatureMismatch)
    );
}

#[test]
fn hand_built_inconsistent_authorization() {
    let h = headers(DATE);
    let req = ReceivedRequest {
        method: "POST",
        path: PATH,
        query: "",
        headers: h.as_slice(),
        body: BODY,
    };
    let mut auth = parse_authorization(V2_AUTH).unwrap();
    auth.algorithm = Algorithm::V11HmacSha256;
    assert!(matches!(
        verify(&req, &auth, SK, &policy(now())),
        Err(SignatureError::MalformedAuthorization(_))
    ));
}

#[test]
fn messages_never_contain_secrets() {
    let h = headers(DATE);
    let derived = derive_key(AK, SK, "20240315/cn-north-4/iotdm");
    let errors = [
        check(&h, V2_AUTH, SK, now() + 10_000).unwrap_err(),
        check(&h, V2_AUTH, "wrong", now()).unwrap_err(),
        check(&h, &sign_derived(&h, "cn-north-4", "x"), SK, now()).unwrap_err(),
        check(&h[1..], V2_AUTH, SK, now()).unwrap_err(),
        check(&h, "Bearer topsecret", SK, now()).unwrap_err(),
    ];
    for e in errors {
        let msg = e.to_string();
        for secret in [SK, &derived, "4687019", "topsecret"] {
            assert!(!msg.contains(secret), "{msg}");
        }
    }
}

#[test]
fn odd_signed_header_names_are_missing_not_panics() {
    // SignedHeaders is attacker-controlled; names http cannot represent must just be
    // "missing" when looked up in a HeaderMap.
    let mut map = http::HeaderMap::new();
    for (k, v) in headers(DATE) {
        map.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(&v).unwrap(),
        );
    }
    let long = "a".repeat(70_000);
    for name in ["bad name", "ü", "x:y", long.as_str()] {
        let authorization = V2_AUTH.replace("x-sdk-date", &format!("x-sdk-date;{name}"));
        let auth = parse_authorization(&authorization).unwrap();
        let req = ReceivedRequest {
            method: "POST",
            path: PATH,
            query: "",
            headers: &map,
            body: BODY,
        };
        assert_eq!(
            verify(&req, &auth, SK, &policy(now())),
            Err(SignatureError::MissingSignedHeader(name.to_owned()))
        );
    }
}

// --- The body is covered by the signature unless the client *signed* that it is not. ---

const STANDARD_SIGNED: [&str; 6] = [
    "content-type",
    "host",
    "instance-id",
    "user-agent",
    "x-project-id",
    "x-sdk-date",
];

fn sha256_hex(body: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(Sha256::digest(body))
}

fn check_body(
    headers: &[(&'static str, String)],
    authorization: &str,
    body: &[u8],
    policy: &VerifyPolicy<'_>,
) -> Result<(), SignatureError> {
    let auth = parse_authorization(authorization)?;
    let req = ReceivedRequest {
        method: "POST",
        path: PATH,
        query: "",
        headers,
        body,
    };
    verify(&req, &auth, SK, policy)
}

const FORGED_BODY: &[u8] =
    br#"{"task_name": "wipe", "task_type": "deleteDevices", "targets": ["dev-001", "dev-002"]}"#;

/// The attack of issue 10: a captured signed request resent with another body and an
/// *unsigned* `X-Sdk-Content-Sha256` claiming the original body's hash.
#[test]
fn unsigned_content_hash_header_cannot_replace_the_body() {
    let h = headers(DATE);
    let auth = forge(&h, &STANDARD_SIGNED, Algorithm::SdkHmacSha256, None);
    assert_eq!(check_body(&h, &auth, BODY, &policy(now())), Ok(()));

    let mut forged = h.clone();
    forged.push(("X-Sdk-Content-Sha256", sha256_hex(BODY)));
    assert_eq!(
        check_body(&forged, &auth, FORGED_BODY, &policy(now())),
        Err(SignatureError::HeaderNotSigned(
            "x-sdk-content-sha256".into()
        ))
    );
    // Not even UNSIGNED-PAYLOAD may be slipped in unsigned.
    let mut forged = h.clone();
    forged.push(("X-Sdk-Content-Sha256", UNSIGNED_PAYLOAD.into()));
    assert_eq!(
        check_body(&forged, &auth, FORGED_BODY, &policy(now())),
        Err(SignatureError::HeaderNotSigned(
            "x-sdk-content-sha256".into()
        ))
    );
}

#[test]
fn signed_content_hash_must_be_the_body_hash() {
    let mut h = headers(DATE);
    h.push(("X-Sdk-Content-Sha256", sha256_hex(BODY)));
    let mut signed = STANDARD_SIGNED.to_vec();
    signed.insert(5, "x-sdk-content-sha256");
    let auth = forge(&h, &signed, Algorithm::SdkHmacSha256, None);
    // The real hash, signed: the body is covered and verifies.
    assert_eq!(check_body(&h, &auth, BODY, &policy(now())), Ok(()));
    // The same signed hash over another body: refused before any signature math.
    assert_eq!(
        check_body(&h, &auth, FORGED_BODY, &policy(now())),
        Err(SignatureError::ContentHashMismatch)
    );
    // A signed claim that is simply not the hash of what was sent.
    let mut wrong = headers(DATE);
    wrong.push(("X-Sdk-Content-Sha256", sha256_hex(FORGED_BODY)));
    let auth = forge(&wrong, &signed, Algorithm::SdkHmacSha256, None);
    assert_eq!(
        check_body(&wrong, &auth, BODY, &policy(now())),
        Err(SignatureError::ContentHashMismatch)
    );
}

fn multipart_headers(content_type: &str) -> Vec<(&'static str, String)> {
    let mut h = headers(DATE);
    h.retain(|(k, _)| *k != "Content-Type");
    h.push(("Content-Type", content_type.into()));
    h.push(("X-Sdk-Content-Sha256", UNSIGNED_PAYLOAD.into()));
    h
}

/// What the SDK's `upload_batch_task_file` sends: accepted, and by the SDK's design the
/// body is not covered; anywhere else `UNSIGNED-PAYLOAD` is refused.
#[test]
fn unsigned_payload_only_on_a_signed_multipart_request() {
    let mut signed = STANDARD_SIGNED.to_vec();
    signed.insert(5, "x-sdk-content-sha256");
    let multipart = multipart_headers("multipart/form-data; boundary=091eeddbc64942e0");
    let auth = forge(&multipart, &signed, Algorithm::SdkHmacSha256, None);
    assert_eq!(check_body(&multipart, &auth, BODY, &policy(now())), Ok(()));

    let json = multipart_headers("application/json");
    let auth = forge(&json, &signed, Algorithm::SdkHmacSha256, None);
    assert_eq!(
        check_body(&json, &auth, FORGED_BODY, &policy(now())),
        Err(SignatureError::UnsignedPayloadNotMultipart)
    );

    // Multipart, but the Content-Type itself unsigned (so it could have been swapped in).
    let unsigned_ct: Vec<&str> = signed
        .iter()
        .copied()
        .filter(|h| *h != "content-type")
        .collect();
    let auth = forge(&multipart, &unsigned_ct, Algorithm::SdkHmacSha256, None);
    assert_eq!(
        check_body(&multipart, &auth, BODY, &policy(now())),
        Err(SignatureError::UnsignedPayloadNotMultipart)
    );
}

/// An `Instance-Id` added to a captured request that did not sign one would move it to
/// another scope; the server names such headers in `signed_when_present`.
#[test]
fn meaningful_headers_must_be_signed_when_present() {
    let mut h = headers(DATE);
    h.retain(|(k, _)| *k != "Instance-Id");
    let signed: Vec<&str> = STANDARD_SIGNED
        .iter()
        .copied()
        .filter(|h| *h != "instance-id")
        .collect();
    let auth = forge(&h, &signed, Algorithm::SdkHmacSha256, None);
    let strict = VerifyPolicy {
        signed_when_present: &["instance-id", "x-project-id"],
        ..policy(now())
    };
    assert_eq!(check_body(&h, &auth, BODY, &strict), Ok(()));

    h.push(("Instance-Id", "other-instance".into()));
    assert_eq!(
        check_body(&h, &auth, BODY, &strict),
        Err(SignatureError::HeaderNotSigned("instance-id".into()))
    );
    // Without the policy the added header is simply not part of the signature.
    assert_eq!(check_body(&h, &auth, BODY, &policy(now())), Ok(()));
}
