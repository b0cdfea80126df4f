use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use taskd_api::ApiConfig;

use crate::support::*;

#[tokio::test]
async fn plain_and_derived_signatures_are_accepted() {
    let app = TestApp::new().await;
    for derived in [false, true] {
        let r = app
            .call(Call {
                derived,
                ..Call::new("GET", &batchtasks())
            })
            .await;
        assert_eq!(r.status, StatusCode::OK, "derived={derived}: {}", r.body);
    }
}

#[tokio::test]
async fn dates_more_than_15_minutes_off_are_refused() {
    let app = TestApp::new().await;
    for (skew, ok) in [
        (-14 * 60, true),
        (14 * 60, true),
        (-16 * 60, false),
        (16 * 60, false),
    ] {
        let r = app
            .call(Call {
                skew_secs: skew,
                ..Call::new("GET", &batchtasks())
            })
            .await;
        if ok {
            assert_eq!(r.status, StatusCode::OK, "skew {skew}");
        } else {
            assert_eq!(
                (r.status, r.code()),
                (StatusCode::UNAUTHORIZED, "IOTDA.000002"),
                "skew {skew}"
            );
        }
    }
}

#[tokio::test]
async fn wrong_secret_unknown_key_and_missing_header_are_401() {
    let app = TestApp::new().await;
    let wrong_sk = app
        .call(Call {
            sk: "not-the-secret",
            ..Call::new("GET", &batchtasks())
        })
        .await;
    let unknown = app
        .call(Call {
            ak: "UNKNOWNAK",
            ..Call::new("GET", &batchtasks())
        })
        .await;
    let unsigned = app
        .send(Request::get(batchtasks()).body(Body::empty()).unwrap())
        .await;
    for r in [wrong_sk, unknown, unsigned] {
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNAUTHORIZED, "IOTDA.000002"),
            "{}",
            r.body
        );
    }
}

#[tokio::test]
async fn a_body_changed_after_signing_is_refused_and_writes_nothing() {
    let app = TestApp::new().await;
    let path = batchtasks();
    let call = || {
        Call::new("POST", &path)
            .json(json!({"task_name": "a", "task_type": "deleteDevices", "targets": ["d1"]}))
    };
    let mut tampered = call().body;
    let pos = tampered.iter().position(|b| *b == b'1').unwrap();
    tampered[pos] = b'2';
    let r = app
        .call(Call {
            sent_body: Some(tampered),
            ..call()
        })
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "IOTDA.000002"),
        "{}",
        r.body
    );
    let list = app.call(Call::new("GET", &batchtasks())).await;
    assert_eq!(list.body["page"]["count"], 0);
    // The untouched request goes through.
    assert_eq!(app.call(call()).await.status, StatusCode::CREATED);
}

/// Issue 10, finding 1: a captured create resent with another body and an *unsigned*
/// `X-Sdk-Content-Sha256` naming the original body's hash was answered 201 and run.
#[tokio::test]
async fn an_unsigned_content_hash_header_cannot_carry_a_forged_body() {
    use sha2::Digest;
    let app = TestApp::new().await;
    let path = batchtasks();
    let original = Call::new("POST", &path).json(json!({
        "task_name": "upgrade", "task_type": "firmwareUpgrade", "targets": ["d1"],
        "document": {"package_ids": ["32822e5744a45ede319d2c50"]},
    }));
    let original_hash = hex::encode(sha2::Sha256::digest(&original.body));
    let forged = serde_json::to_vec(
        &json!({"task_name": "wipe", "task_type": "deleteDevices", "targets": ["d1"]}),
    )
    .unwrap();
    for claimed in [original_hash, "UNSIGNED-PAYLOAD".to_string()] {
        let r = app
            .call(Call {
                sent_body: Some(forged.clone()),
                unsigned_headers: vec![("X-Sdk-Content-Sha256", claimed)],
                ..Call::new("POST", &path).json(json!({
                    "task_name": "upgrade", "task_type": "firmwareUpgrade", "targets": ["d1"],
                    "document": {"package_ids": ["32822e5744a45ede319d2c50"]},
                }))
            })
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNAUTHORIZED, "IOTDA.000002"),
            "{}",
            r.body
        );
        assert!(
            r.body["error_msg"]
                .as_str()
                .unwrap()
                .contains("x-sdk-content-sha256"),
            "{}",
            r.body
        );
    }
    let list = app.call(Call::new("GET", &batchtasks())).await;
    assert_eq!(list.body["page"]["count"], 0, "nothing was written");
}

/// An `Instance-Id` added to a captured request that was signed without one would move
/// it into another instance's scope: refused, as the SDK always signs the header.
#[tokio::test]
async fn an_unsigned_instance_id_or_project_header_is_refused() {
    let app = TestApp::new().await;
    let path = batchtasks();
    for (name, value) in [("Instance-Id", "inst-b"), ("X-Project-Id", P1)] {
        let mut call = Call::new("GET", &path);
        if name == "X-Project-Id" {
            // Sign without X-Project-Id, then add it unsigned.
            call.project_header = "";
        }
        call.unsigned_headers = vec![(name, value.to_string())];
        let r = app.call(call).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::UNAUTHORIZED, "IOTDA.000002"),
            "{name}: {}",
            r.body
        );
    }
    // Signed, the same header is honoured.
    let r = app
        .call(Call {
            instance_id: Some("inst-b"),
            ..Call::new("GET", &path)
        })
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn a_key_on_another_projects_path_is_403() {
    let app = TestApp::new().await;
    let path = format!("/v5/iot/{P2}/batchtasks");
    let r = app
        .call(Call {
            project_header: P2,
            ..Call::new("GET", &path)
        })
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "IOTDA.000021"),
        "{}",
        r.body
    );
    let r = app
        .call(Call {
            ak: AK2,
            sk: SK2,
            project_header: P2,
            ..Call::new("GET", &path)
        })
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // X-Project-Id must agree with the path.
    let r = app
        .call(Call {
            project_header: P2,
            ..Call::new("GET", &batchtasks())
        })
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "IOTDA.000021")
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::new().await;
    let ok = app.call(Call::new("GET", &batchtasks())).await;
    let refused = app
        .send(Request::get(batchtasks()).body(Body::empty()).unwrap())
        .await;
    let unknown = app
        .send(Request::get("/nope").body(Body::empty()).unwrap())
        .await;
    let health = app
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code(), "APIG.0101");
    assert_eq!(health.status, StatusCode::OK);
    let mut ids = std::collections::HashSet::new();
    for r in [ok, refused, unknown, health] {
        let id = r
            .headers
            .get("x-request-id")
            .expect("x-request-id")
            .to_str()
            .unwrap()
            .to_string();
        assert!(!id.is_empty());
        assert!(ids.insert(id), "request ids are unique");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_and_write_nothing() {
    let app = TestApp::with_config(ApiConfig {
        max_body_bytes: 1024,
        ..ApiConfig::default()
    })
    .await;
    let targets: Vec<String> = (0..200).map(|i| format!("device-{i:04}")).collect();
    let r = app
        .call(
            Call::new("POST", &batchtasks()).json(
                json!({"task_name": "big", "task_type": "deleteDevices", "targets": targets}),
            ),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "IOTDA.000006")
    );
    let list = app.call(Call::new("GET", &batchtasks())).await;
    assert_eq!(list.body["page"]["count"], 0);
}

#[tokio::test]
async fn project_discovery_returns_the_keys_project() {
    let app = TestApp::new().await;
    let r = app
        .call(Call {
            query: &[("name", "cn-north-4")],
            ..Call::new("GET", "/v3/projects")
        })
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["projects"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["projects"][0]["id"], P1);
}
