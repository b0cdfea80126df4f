//! The five vectors the real Huawei SDK signer produced (`sign-vectors.json`, copied from
//! the shared spec into `tests/fixtures`): every intermediate value must match byte for
//! byte, `verify` must accept the request and `sign` must reproduce the header.

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use taskd_signature::*;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/sign-vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture sign-vectors.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn vector(name: &str) -> Value {
    vectors()["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))
        .clone()
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Python `str()` of a query value as the SDK's canonicaliser sees it.
fn query_strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Number(n) => vec![n.to_string()],
        Value::Bool(b) => vec![b.to_string()],
        Value::Array(items) => items.iter().flat_map(query_strings).collect(),
        other => panic!("unexpected query value {other}"),
    }
}

fn check(name: &str) {
    let v = vector(name);
    let (input, inter, output) = (&v["input"], &v["intermediate"], &v["output"]);
    let (ak, sk) = (s(&input["ak"]), s(&input["sk"]));
    let method = s(&input["method"]);
    let body = input["body"].as_str().unwrap_or("").as_bytes();

    // --- server side: rebuild from what went over the wire -------------------------
    let uri = s(&output["request_uri_on_wire"]);
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let wire_headers: Vec<(String, String)> = output["headers_after_signing"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), s(v).to_owned()))
        .collect();
    let mut header_map = HeaderMap::new();
    for (k, v) in &wire_headers {
        header_map.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }

    let authorization = s(&output["authorization"]);
    assert_eq!(
        s(&output["headers_after_signing"]["Authorization"]),
        authorization
    );
    let auth = parse_authorization(authorization).unwrap();
    assert_eq!(auth.access_key, ak);
    assert_eq!(auth.signed_headers.join(";"), s(&inter["signed_headers"]));

    let ph = payload_hash(wire_headers.as_slice(), body);
    assert_eq!(payload_hash(&header_map, body), ph);
    let cr = canonical_request(
        method,
        path,
        query,
        wire_headers.as_slice(),
        &auth.signed_headers,
        &ph,
    )
    .unwrap();
    assert_eq!(
        cr,
        s(&inter["canonical_request"]),
        "canonical request of {name}"
    );
    let cr_from_map =
        canonical_request(method, path, query, &header_map, &auth.signed_headers, &ph).unwrap();
    assert_eq!(cr_from_map, cr);
    // The canonical query line is what the SDK put on the wire (it sends it canonical).
    assert_eq!(canonical_query(query), query);

    let date = header_map["x-sdk-date"].to_str().unwrap();
    let sts = string_to_sign(auth.algorithm, date, auth.scope.map(|sc| sc.info), &cr);
    assert_eq!(sts, s(&inter["string_to_sign"]), "string to sign of {name}");
    assert!(sts.ends_with(s(&inter["canonical_request_sha256"])));

    match &input["derived"] {
        Value::Null => {
            assert_eq!(auth.algorithm, Algorithm::SdkHmacSha256);
            assert!(auth.scope.is_none());
        }
        derived => {
            assert_eq!(auth.algorithm, Algorithm::V11HmacSha256);
            let scope = auth.scope.unwrap();
            assert_eq!(scope.info, s(&inter["credential_scope_info"]));
            assert_eq!(scope.region, s(&derived["region_id"]));
            assert_eq!(scope.service, s(&derived["service"]));
            assert_eq!(derive_key(ak, sk, scope.info), s(&inter["derived_key_hex"]));
        }
    }

    let now = parse_sdk_date(date).unwrap();
    let policy = VerifyPolicy::new(now, IOTDA_DERIVED_SERVICE);
    let req = ReceivedRequest {
        method,
        path,
        query,
        headers: wire_headers.as_slice(),
        body,
    };
    assert_eq!(verify(&req, &auth, sk, &policy), Ok(()));
    let req_map = ReceivedRequest {
        method,
        path,
        query,
        headers: &header_map,
        body,
    };
    assert_eq!(verify(&req_map, &auth, sk, &policy), Ok(()));
    // The same request must not verify under another key (guards against a vacuous Ok).
    assert_eq!(
        verify(&req_map, &auth, "not-the-secret", &policy),
        Err(SignatureError::SignatureMismatch)
    );

    // --- client side: sign from the SDK's inputs ---------------------------------------
    let query_pairs: Vec<(String, String)> = input["query_params_in_sdk_order"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|pair| {
            let key = s(&pair[0]).to_owned();
            query_strings(&pair[1])
                .into_iter()
                .map(move |value| (key.clone(), value))
        })
        .collect();
    let query_refs: Vec<(&str, &str)> = query_pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut headers: Vec<(&str, &str)> = input["headers_before_signing"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), s(v)))
        .collect();
    headers.push(("Host", s(&input["host"])));
    let key = match &input["derived"] {
        Value::Null => SigningKey::Plain {
            access_key: ak,
            secret_key: sk,
        },
        derived => SigningKey::Derived {
            access_key: ak,
            secret_key: sk,
            region: s(&derived["region_id"]),
            service: s(&derived["service"]),
        },
    };
    let signed = sign(
        &SigningRequest {
            method,
            path: s(&input["path"]),
            query: &query_refs,
            headers: &headers,
            body,
        },
        &key,
    );
    assert_eq!(signed.authorization, authorization, "sign() of {name}");
    assert_eq!(signed.query_string, query);
}

#[test]
fn v1_get_query_rabbitmq_list_background_tasks() {
    check("v1_get_query_rabbitmq_list_background_tasks");
}

#[test]
fn v2_post_json_iotda_create_batch_task() {
    check("v2_post_json_iotda_create_batch_task");
}

#[test]
fn v3_derived_iotda_show_batch_task() {
    check("v3_derived_iotda_show_batch_task");
}

#[test]
fn v4_edge_special_chars() {
    check("v4_edge_special_chars");
}

#[test]
fn v5_post_empty_object_body() {
    check("v5_post_empty_object_body");
}

#[test]
fn fixture_has_exactly_the_five_vectors() {
    assert_eq!(vectors()["vectors"].as_array().unwrap().len(), 5);
}
