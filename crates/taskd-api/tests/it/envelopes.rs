//! Refusals made outside the handlers (routing, the request timeout, axum's extractors)
//! answer in the envelope of the dialect whose path was called, with its code: never
//! axum's plain text or an empty body.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use taskd_api::ApiConfig;
use taskd_store::LegacyApp;

use crate::support::{Call, P1, Reply, START, TestApp, batchtasks};

const INST: &str = "0a1b2c3d-0000-4000-8000-00000000beef";
const RMQ: &str = "9f6c3b1e-5a2d-4c7e-8b1a-2d3e4f5a6b7c";
const APP: &str = "app-envelopes";
const SECRET: &str = "secret-envelopes-0123";

/// A body that never arrives: whatever reads it waits until the request times out.
fn endless_body() -> Body {
    Body::from_stream(futures_util::stream::pending::<Result<Bytes, std::io::Error>>())
}

fn unsigned(method: &str, path: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json")
        .body(body)
        .unwrap()
}

/// `{"error_code", "error_msg"}` (IoTDA, IoTDM, DMS, SWR, native).
#[track_caller]
fn assert_msg_envelope(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!((r.status, r.code()), (status, code), "{}", r.body);
    assert!(
        r.body["error_msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        r.body
    );
}

/// `{"error_code", "error_desc"}` (legacy northbound).
#[track_caller]
fn assert_legacy_envelope(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!((r.status, r.code()), (status, code), "{}", r.body);
    assert!(
        r.body["error_desc"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        r.body
    );
}

/// IAM's `{"error": {"code", "message", "title"}}`.
#[track_caller]
fn assert_iam_envelope(r: &Reply, status: StatusCode) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(
        r.body["error"]["code"],
        status.as_u16().to_string(),
        "{}",
        r.body
    );
    assert!(r.body["error"]["message"].is_string(), "{}", r.body);
}

async fn legacy_app(config: ApiConfig) -> (TestApp, String) {
    let app = TestApp::with_config(config).await;
    app.store
        .legacy_app_put(&LegacyApp {
            app_id: APP.into(),
            project_id: P1.into(),
            secret_hash: taskd_api::legacy::hash_secret(SECRET),
            created_at: START,
            revoked_at: None,
        })
        .await
        .unwrap();
    let login = app
        .send(
            Request::post("/iocm/app/sec/v1.1.0/login")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("appId={APP}&secret={SECRET}")))
                .unwrap(),
        )
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.body);
    let token = login.body["accessToken"].as_str().unwrap().to_owned();
    (app, token)
}

fn legacy_request(method: &str, path: &str, token: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json")
        .header("app_key", APP)
        .header("Authorization", format!("Bearer {token}"))
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn an_upload_that_is_not_multipart_is_an_iotda_000008() {
    let app = TestApp::new().await;
    let r = app
        .call(
            Call::new("POST", &format!("/v5/iot/{P1}/batchtask-files"))
                .json(json!({"file": "devices.xlsx"})),
        )
        .await;
    assert_msg_envelope(&r, StatusCode::BAD_REQUEST, "IOTDA.000008");
}

#[tokio::test]
async fn a_path_that_is_not_utf8_is_refused_in_each_envelope() {
    let (app, token) = legacy_app(ApiConfig::default()).await;
    let legacy = app
        .send(legacy_request(
            "GET",
            "/iodm/northbound/v1.5.0/operations/%FF%FE",
            &token,
            Body::empty(),
        ))
        .await;
    assert_legacy_envelope(&legacy, StatusCode::BAD_REQUEST, "120015");
    for (path, code) in [
        (format!("/v5/iot/{P1}/batchtasks/%FF%FE"), "IOTDA.000006"),
        (format!("/v5/iot/{P1}/devices/%FF%FE"), "IOTDA.000006"),
        (format!("{}/%FF%FE", iotdm()), "IOTDA.000006"),
        (format!("{}/%FF%FE", dms()), "DMS.00400000"),
        (format!("{}/%FF%FE", swr()), "SVCSTG.SWR.4000001"),
        (
            format!("/taskd/v1/{P1}/devices/%FF%FE/attributes"),
            "TASKD.000006",
        ),
    ] {
        let r = app.call(Call::new("GET", &path)).await;
        assert_msg_envelope(&r, StatusCode::BAD_REQUEST, code);
    }
}

#[tokio::test]
async fn a_legacy_body_over_the_limit_is_413_in_the_legacy_envelope_and_writes_nothing() {
    let (app, token) = legacy_app(ApiConfig {
        max_body_bytes: 1024,
        ..ApiConfig::default()
    })
    .await;
    let devices: Vec<String> = (0..100).map(|i| format!("device-{i:04}")).collect();
    let body = json!({"fileId": "pkg", "targets": {"devices": devices}}).to_string();
    assert!(body.len() > 1024);
    let r = app
        .send(legacy_request(
            "POST",
            "/iodm/northbound/v1.5.0/operations/firmwareUpgrade",
            &token,
            Body::from(body),
        ))
        .await;
    assert_legacy_envelope(&r, StatusCode::PAYLOAD_TOO_LARGE, "120015");
    let list = app
        .send(legacy_request(
            "GET",
            "/iodm/northbound/v1.5.0/operations",
            &token,
            Body::empty(),
        ))
        .await;
    assert_eq!(list.body["totalCount"], 0, "{}", list.body);

    let login = app
        .send(
            Request::post("/iocm/app/sec/v1.1.0/login")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(Body::from(format!(
                    "appId={APP}&secret={}",
                    "s".repeat(2000)
                )))
                .unwrap(),
        )
        .await;
    assert_legacy_envelope(&login, StatusCode::PAYLOAD_TOO_LARGE, "120015");
}

fn iotdm() -> String {
    format!("/v5/iot/{P1}/iotda-instances/{INST}/tasks")
}

fn dms() -> String {
    format!("/v2/{P1}/instances/{RMQ}/tasks")
}

fn swr() -> String {
    format!("/v2/{P1}/jobs")
}

#[tokio::test]
async fn the_request_timeout_answers_in_each_envelope() {
    let (app, _) = legacy_app(ApiConfig {
        request_timeout: Duration::from_millis(100),
        ..ApiConfig::default()
    })
    .await;
    // Every AK/SK dialect reads the whole body before verifying its signature; the
    // legacy login reads it in the handler.
    for (method, path, status, code) in [
        (
            "POST",
            batchtasks(),
            StatusCode::GATEWAY_TIMEOUT,
            "APIG.0201",
        ),
        ("GET", iotdm(), StatusCode::GATEWAY_TIMEOUT, "APIG.0201"),
        ("GET", dms(), StatusCode::GATEWAY_TIMEOUT, "APIG.0201"),
        ("GET", swr(), StatusCode::GATEWAY_TIMEOUT, "APIG.0201"),
        (
            "POST",
            format!("/taskd/v1/{P1}/claims"),
            StatusCode::SERVICE_UNAVAILABLE,
            "TASKD.000503",
        ),
    ] {
        let r = app.send(unsigned(method, &path, endless_body())).await;
        assert_msg_envelope(&r, status, code);
    }
    let login = app
        .send(unsigned(
            "POST",
            "/iocm/app/sec/v1.1.0/login",
            endless_body(),
        ))
        .await;
    assert_legacy_envelope(&login, StatusCode::SERVICE_UNAVAILABLE, "50252");
    let iam = app
        .send(unsigned("GET", "/v3/projects", endless_body()))
        .await;
    assert_iam_envelope(&iam, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_method_a_path_does_not_take_is_refused_in_each_envelope() {
    let (app, token) = legacy_app(ApiConfig::default()).await;
    // Huawei's API gateway routes on method and path: another method is an API that
    // does not exist (APIG.0101, 404).
    for (method, path) in [
        ("PUT", batchtasks()),
        ("POST", iotdm()),
        ("POST", dms()),
        ("PUT", swr()),
    ] {
        let r = app.call(Call::new(method, &path)).await;
        assert_msg_envelope(&r, StatusCode::NOT_FOUND, "APIG.0101");
    }
    let native = app
        .call(Call::new("GET", &format!("/taskd/v1/{P1}/claims")))
        .await;
    assert_msg_envelope(&native, StatusCode::METHOD_NOT_ALLOWED, "TASKD.000405");
    let legacy = app
        .send(legacy_request(
            "DELETE",
            "/iodm/northbound/v1.5.0/operations",
            &token,
            Body::empty(),
        ))
        .await;
    assert_legacy_envelope(&legacy, StatusCode::METHOD_NOT_ALLOWED, "120015");
    let iam = app
        .send(unsigned("DELETE", "/v3/projects", Body::empty()))
        .await;
    assert_iam_envelope(&iam, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn an_unknown_path_is_refused_in_the_envelope_of_its_prefix() {
    let (app, token) = legacy_app(ApiConfig::default()).await;
    for path in [
        "/nope".to_owned(),
        format!("/v5/iot/{P1}/no-such-api"),
        format!("/v2/{P1}/no-such-api"),
    ] {
        let r = app.send(unsigned("GET", &path, Body::empty())).await;
        assert_msg_envelope(&r, StatusCode::NOT_FOUND, "APIG.0101");
    }
    let native = app
        .send(unsigned(
            "GET",
            &format!("/taskd/v1/{P1}/nope"),
            Body::empty(),
        ))
        .await;
    assert_msg_envelope(&native, StatusCode::NOT_FOUND, "TASKD.000404");
    let legacy = app
        .send(legacy_request(
            "GET",
            "/iodm/northbound/v1.5.0/nope",
            &token,
            Body::empty(),
        ))
        .await;
    assert_legacy_envelope(&legacy, StatusCode::NOT_FOUND, "120015");
    let iam = app.send(unsigned("GET", "/v3/nope", Body::empty())).await;
    assert_iam_envelope(&iam, StatusCode::NOT_FOUND);
    // Not JSON of some other shape either: every refusal above parsed as JSON.
    assert_ne!(iam.body, Value::Null);
}
