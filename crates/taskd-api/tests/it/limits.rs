//! What a create may carry is bounded field by field (`docs/iotda.md`,
//! `docs/legacy-northbound.md`, `docs/instance-operations.md`), and a claim hands out a
//! task's document once, however many of its sub-tasks it leases.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use taskd_api::ApiConfig;
use taskd_core::MAX_DOCUMENT_BYTES;
use taskd_store::LegacyApp;

use crate::support::{Call, P1, Reply, START, TestApp, batchtasks};

/// A JSON object whose serialized form is exactly `bytes` long.
fn document_of(bytes: usize) -> Value {
    let overhead = json!({"package_ids": ["p"], "pad": ""}).to_string().len();
    json!({"package_ids": ["p"], "pad": "x".repeat(bytes - overhead)})
}

fn upgrade(document: Value) -> Value {
    json!({"task_name": "fw", "task_type": "firmwareUpgrade", "targets": ["dev-1"],
           "document": document})
}

async fn task_count(app: &TestApp) -> i64 {
    let r = app.call(Call::new("GET", &batchtasks())).await;
    r.body["page"]["count"].as_i64().unwrap()
}

#[track_caller]
fn assert_refused(r: &Reply, code: &str) {
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, code),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn an_iotda_document_over_64_kib_is_refused_and_writes_nothing() {
    let app = TestApp::new().await;
    assert_eq!(
        document_of(MAX_DOCUMENT_BYTES).to_string().len(),
        MAX_DOCUMENT_BYTES
    );
    let r = app
        .call(Call::new("POST", &batchtasks()).json(upgrade(document_of(MAX_DOCUMENT_BYTES + 1))))
        .await;
    assert_refused(&r, "IOTDA.000006");
    assert!(r.body["error_msg"].as_str().unwrap().contains("document"));
    assert_eq!(task_count(&app).await, 0);

    let r = app
        .call(Call::new("POST", &batchtasks()).json(upgrade(document_of(MAX_DOCUMENT_BYTES))))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(task_count(&app).await, 1);
}

#[tokio::test]
async fn an_iotda_targets_filter_is_bounded() {
    let app = TestApp::new().await;
    let r = app
        .call(
            Call::new("POST", &format!("/v5/iot/{P1}/devices"))
                .json(json!({"product_id": "p", "node_id": "n"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let groups = format!("/v5/iot/{P1}/device-group");
    let g = app
        .call(Call::new("POST", &groups).json(json!({"name": "g"})))
        .await;
    let group = g.body["group_id"].as_str().unwrap().to_owned();
    let r = app
        .call(Call {
            query: &[("action_id", "addDevice"), ("device_id", "p_n")],
            ..Call::new("POST", &format!("{groups}/{group}/action"))
        })
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let path = batchtasks();
    let create = |filter: Value| {
        Call::new("POST", &path).json(json!({
            "task_name": "fw", "task_type": "firmwareUpgrade", "targets_filter": filter,
            "document": {"package_ids": ["p"]}}))
    };
    for filter in [
        // More group ids than a scope can hold groups (the same one, which resolves).
        json!({"group_ids": vec![group.as_str(); 1001]}),
        // Other keys smuggling a payload in (the filter is kept and shown as given).
        json!({"group_ids": [group], "junk": "x".repeat(MAX_DOCUMENT_BYTES)}),
    ] {
        let r = app.call(create(filter)).await;
        assert_refused(&r, "IOTDA.000006");
    }
    assert_eq!(task_count(&app).await, 0);
    let r = app
        .call(create(json!({"group_ids": vec![group.as_str(); 1000]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn a_legacy_policy_time_is_bounded_even_when_unused() {
    let app = TestApp::with_config(ApiConfig::default()).await;
    app.store
        .legacy_app_put(&LegacyApp {
            app_id: "app".into(),
            project_id: P1.into(),
            secret_hash: taskd_api::legacy::hash_secret("secret-0123456789"),
            created_at: START,
            revoked_at: None,
        })
        .await
        .unwrap();
    let login = app
        .send(
            Request::post("/iocm/app/sec/v1.1.0/login")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(Body::from("appId=app&secret=secret-0123456789"))
                .unwrap(),
        )
        .await;
    let token = login.body["accessToken"].as_str().unwrap().to_owned();
    let legacy = |method: &str, path: &str, body: String| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("Content-Type", "application/json")
            .header("app_key", "app")
            .header("Authorization", format!("Bearer {token}"))
            .body(Body::from(body))
            .unwrap()
    };
    // `now` ignores the window, so nothing parsed these times: they were stored as given.
    for field in ["startTime", "endTime"] {
        let body = json!({"fileId": "pkg", "targets": {"devices": ["dev-1"]},
                          "policy": {"executeType": "now", field: "x".repeat(300)}});
        let r = app
            .send(legacy(
                "POST",
                "/iodm/northbound/v1.5.0/operations/firmwareUpgrade",
                body.to_string(),
            ))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "120015"),
            "{field}: {}",
            r.body
        );
    }
    let list = app
        .send(legacy(
            "GET",
            "/iodm/northbound/v1.5.0/operations",
            String::new(),
        ))
        .await;
    assert_eq!(list.body["totalCount"], 0, "{}", list.body);
}

#[tokio::test]
async fn instance_operation_params_over_64_kib_are_refused() {
    let app = TestApp::new().await;
    let path = format!("/taskd/v1/{P1}/operations");
    let op = |params: Value| {
        Call::new("POST", &path).json(json!({
            "service": "rabbitmq", "instance_id": "9f6c3b1e-5a2d-4c7e-8b1a-2d3e4f5a6b7c",
            "type": "bindInstancePublicIp", "params": params}))
    };
    let r = app.call(op(document_of(MAX_DOCUMENT_BYTES + 1))).await;
    assert_refused(&r, "TASKD.000006");
    let r = app.call(op(document_of(MAX_DOCUMENT_BYTES))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn a_claim_hands_out_a_tasks_document_once() {
    let app = TestApp::new().await;
    let targets: Vec<String> = (0..40).map(|i| format!("dev-{i:02}")).collect();
    let document = document_of(MAX_DOCUMENT_BYTES);
    let r = app
        .call(Call::new("POST", &batchtasks()).json(json!({
            "task_name": "fw", "task_type": "firmwareUpgrade", "targets": targets,
            "document": document})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let task_id = r.body["task_id"].as_str().unwrap().to_owned();

    let r = app
        .call(
            Call::new("POST", &format!("/taskd/v1/{P1}/claims")).json(json!({
            "protocol": 2, "worker_id": "w", "task_types": ["firmwareUpgrade"], "max": 40})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let subs = r.body["sub_tasks"].as_array().unwrap();
    assert_eq!(subs.len(), 40);
    for s in subs {
        assert_eq!(s["task_id"], task_id.as_str());
        assert!(s.get("document").is_none(), "{s}");
    }
    let tasks = r.body["tasks"].as_object().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[&task_id]["document"], document);
    // The whole answer: one document and 40 small entries.
    let size = r.body.to_string().len();
    assert!(
        size < MAX_DOCUMENT_BYTES + 40 * 1024,
        "{size} bytes for 40 sub-tasks"
    );
}

#[tokio::test]
async fn a_claim_without_protocol_2_is_refused_with_a_clear_message() {
    let app = TestApp::new().await;
    app.create_task("t", &["dev-1"], false).await;
    let r = app
        .call(
            Call::new("POST", &format!("/taskd/v1/{P1}/claims")).json(json!({
            "worker_id": "w", "task_types": ["firmwareUpgrade"], "max": 1})),
        )
        .await;
    assert_refused(&r, "TASKD.000006");
    assert!(
        r.body["error_msg"].as_str().unwrap().contains("protocol"),
        "{}",
        r.body
    );
    // Nothing was leased: a protocol-2 claim gets the sub-task at once.
    let r = app
        .call(
            Call::new("POST", &format!("/taskd/v1/{P1}/claims")).json(json!({
            "protocol": 2, "worker_id": "w", "task_types": ["firmwareUpgrade"], "max": 1})),
        )
        .await;
    assert_eq!(
        r.body["sub_tasks"].as_array().unwrap().len(),
        1,
        "{}",
        r.body
    );
}
