//! What the device channel stores, read through IoTDA: a device's versions and connection
//! times (ShowDevice, ListDevices), shadows (ShowDeviceShadow,
//! UpdateDeviceShadowDesiredData) and messages (ListDeviceMessages, ShowDeviceMessage).

use axum::http::StatusCode;
use serde_json::{Value, json};
use taskd_core::{TaskScope, Timestamp};
use taskd_store::{
    DeviceSession, DeviceVersions, MessageStatus, NewDeviceMessage, ReportedProperties,
};

use crate::support::{Call, P1, Reply, START, TestApp};

fn device(id: &str) -> String {
    format!("/v5/iot/{P1}/devices/{id}")
}

fn shadow(id: &str) -> String {
    format!("/v5/iot/{P1}/devices/{id}/shadow")
}

fn messages(id: &str) -> String {
    format!("/v5/iot/{P1}/devices/{id}/messages")
}

fn scope() -> TaskScope {
    TaskScope::new(P1, "")
}

async fn add(app: &TestApp, node: &str) -> String {
    let path = format!("/v5/iot/{P1}/devices");
    let r = app
        .call(Call::new("POST", &path).json(json!({"product_id": "prod", "node_id": node})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["device_id"].as_str().unwrap().to_owned()
}

async fn get(app: &TestApp, path: &str) -> Reply {
    app.call(Call::new("GET", path)).await
}

async fn put_shadow(app: &TestApp, id: &str, body: Value) -> Reply {
    let path = shadow(id);
    app.call(Call::new("PUT", &path).json(body)).await
}

#[tokio::test]
async fn show_and_list_devices_carry_versions_and_connection_times() {
    let app = TestApp::new().await;
    let id = add(&app, "n1").await;
    let r = get(&app, &device(&id)).await;
    for field in [
        "fw_version",
        "sw_version",
        "device_sdk_version",
        "active_time",
        "connection_status_update_time",
    ] {
        assert!(r.body.get(field).is_none(), "{field} absent until known");
    }

    let connected = Timestamp(START.0 + 1_234);
    app.store
        .device_session_open(&DeviceSession {
            scope: scope(),
            device_id: id.clone(),
            session_id: "s1".into(),
            node_id: "node-a".into(),
            connected_at: connected,
        })
        .await
        .unwrap()
        .unwrap();
    let versions = DeviceVersions {
        fw_version: Some("fw-1.0".into()),
        sw_version: Some("sw-2.0".into()),
        device_sdk_version: Some("C_v5.0".into()),
    };
    assert!(
        app.store
            .device_versions_put(&scope(), &id, &versions, connected)
            .await
            .unwrap()
    );
    let r = get(&app, &device(&id)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "ONLINE");
    assert_eq!(r.body["fw_version"], "fw-1.0");
    assert_eq!(r.body["sw_version"], "sw-2.0");
    assert_eq!(r.body["device_sdk_version"], "C_v5.0");
    assert_eq!(r.body["active_time"], "2026-01-01T00:00:01.234Z");
    assert_eq!(
        r.body["connection_status_update_time"],
        "2026-01-01T00:00:01.234Z"
    );
    assert_eq!(r.body["create_time"], "20260101T000000Z");

    let path = format!("/v5/iot/{P1}/devices");
    let r = get(&app, &path).await;
    let listed = &r.body["devices"][0];
    assert_eq!(listed["fw_version"], "fw-1.0");
    assert_eq!(listed["device_sdk_version"], "C_v5.0");
    assert_eq!(listed["status"], "ONLINE");
}

#[tokio::test]
async fn shadow_show_and_update_desired() {
    let app = TestApp::new().await;
    let id = add(&app, "n1").await;
    let r = get(&app, &shadow(&id)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({"device_id": id, "shadow": []}));

    let r = put_shadow(
        &app,
        &id,
        json!({"shadow": [{"service_id": "Temp", "desired": {"target": 20, "mode": "eco"}}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"device_id": id, "shadow": [{
            "service_id": "Temp",
            "desired": {"properties": {"mode": "eco", "target": 20}, "event_time": "20260101T000000Z"},
            "reported": {"properties": {}},
            "version": 1,
        }]})
    );

    // A null removes a property; the version guard holds.
    let r = put_shadow(
        &app,
        &id,
        json!({"shadow": [{"service_id": "Temp", "desired": {"mode": null}, "version": 1}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["shadow"][0]["desired"]["properties"],
        json!({"target": 20})
    );
    assert_eq!(r.body["shadow"][0]["version"], 2);
    let r = put_shadow(
        &app,
        &id,
        json!({"shadow": [{"service_id": "Temp", "desired": {"target": 1}, "version": 1}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.code(), "IOTDA.000006");

    // The device's reports show in the reported sections.
    app.store
        .shadow_report(
            &scope(),
            &id,
            vec![ReportedProperties {
                service_id: "Temp".into(),
                properties_json: json!({"target": 20, "now": 18}).to_string(),
                event_time: None,
            }],
            Timestamp(START.0 + 60_000),
        )
        .await
        .unwrap()
        .unwrap();
    let r = get(&app, &shadow(&id)).await;
    assert_eq!(
        r.body["shadow"][0]["reported"],
        json!({"properties": {"now": 18, "target": 20}, "event_time": "20260101T000100Z"})
    );
    assert_eq!(r.body["shadow"][0]["version"], 2);
}

#[tokio::test]
async fn shadow_update_refusals() {
    let app = TestApp::new().await;
    let id = add(&app, "n1").await;
    let six: Vec<Value> = (0..6)
        .map(|i| json!({"service_id": format!("s{i}"), "desired": {}}))
        .collect();
    let big = "x".repeat(taskd_store::MAX_SHADOW_SECTION_BYTES);
    for body in [
        json!({}),
        json!({"shadow": []}),
        json!({"shadow": six}),
        json!({"shadow": [{"service_id": "a"}]}),
        json!({"shadow": [{"desired": {}}]}),
        json!({"shadow": [{"service_id": "a", "desired": [1]}]}),
        json!({"shadow": [{"service_id": "a", "desired": {"k": big}}]}),
        json!({"shadow": [{"service_id": "a", "desired": {}, "version": -1}]}),
        json!({"shadow": [{"service_id": "a", "desired": {}}, {"service_id": "a", "desired": {}}]}),
        json!({"shadow": [{"service_id": "", "desired": {}}]}),
    ] {
        let r = put_shadow(&app, &id, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_eq!(r.code(), "IOTDA.000006", "{body}");
    }
    let r = get(&app, &shadow(&id)).await;
    assert_eq!(r.body["shadow"], json!([]), "nothing written");

    let body = json!({"shadow": [{"service_id": "a", "desired": {}}]});
    let r = put_shadow(&app, "nope", body).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.code(), "IOTDA.014000");
    let r = get(&app, &shadow("nope")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "IOTDA.014000");
    let r = get(&app, &shadow("bad!id")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

fn message(id: &str, message_id: &str) -> NewDeviceMessage {
    NewDeviceMessage {
        scope: scope(),
        device_id: id.to_owned(),
        message_id: message_id.to_owned(),
        name: Some("hello".into()),
        message_json: json!({"k": "v"}).to_string(),
        encoding: "none".into(),
        payload_format: "standard".into(),
        topic: Some("down".into()),
        topic_full_name: None,
        properties_json: Some(json!({"correlation_data": "c1"}).to_string()),
        expires_at: None,
    }
}

#[tokio::test]
async fn messages_list_and_show() {
    let app = TestApp::new().await;
    let id = add(&app, "n1").await;
    let r = get(&app, &messages(&id)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({"device_id": id, "messages": []}));

    for (i, m) in ["m1", "m2"].into_iter().enumerate() {
        app.store
            .message_insert(message(&id, m), Timestamp(START.0 + i as i64 * 1_000))
            .await
            .unwrap()
            .unwrap();
    }
    let mut raw = message(&id, "m3");
    raw.name = None;
    raw.message_json = json!("plain text").to_string();
    raw.topic = None;
    raw.topic_full_name = Some("custom/full".into());
    raw.properties_json = None;
    app.store
        .message_insert(raw, Timestamp(START.0 + 2_000))
        .await
        .unwrap()
        .unwrap();
    app.store
        .message_finish(
            &scope(),
            &id,
            "m1",
            MessageStatus::Failed,
            Some(("IOTDA.014016".into(), "The device is not online.".into())),
            Timestamp(START.0 + 5_000),
        )
        .await
        .unwrap();

    let r = get(&app, &messages(&id)).await;
    let listed: Vec<&str> = r.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["m3", "m2", "m1"], "newest first");
    assert_eq!(
        r.body["messages"][0],
        json!({
            "message_id": "m3",
            "message": "plain text",
            "encoding": "none",
            "payload_format": "standard",
            "topic": "custom/full",
            "status": "PENDING",
            "created_time": "20260101T000002Z",
        })
    );

    let r = get(&app, &format!("{}/m1", messages(&id))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({
            "message_id": "m1",
            "name": "hello",
            "message": {"k": "v"},
            "encoding": "none",
            "payload_format": "standard",
            "topic": "down",
            "properties": {"correlation_data": "c1"},
            "status": "FAILED",
            "error_info": {"error_code": "IOTDA.014016", "error_msg": "The device is not online."},
            "created_time": "20260101T000000Z",
            "finished_time": "20260101T000005Z",
        })
    );

    let r = get(&app, &format!("{}/nope", messages(&id))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.code(), "IOTDA.014902");
    for path in [messages("nope"), format!("{}/m1", messages("nope"))] {
        let r = get(&app, &path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.body);
        assert_eq!(r.code(), "IOTDA.014000");
    }
    // Deleting the device takes its messages and shadow with it.
    let path = device(&id);
    let r = app.call(Call::new("DELETE", &path)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    add(&app, "n1").await;
    let r = get(&app, &messages(&id)).await;
    assert_eq!(r.body["messages"], json!([]));
}
