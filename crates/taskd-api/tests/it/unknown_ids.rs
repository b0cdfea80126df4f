//! A well-formed id that taskd never handed out names nothing: every dialect answers its
//! "not found" (or, in the worker protocol, "lease lost"), never "malformed". Ids above
//! the range taskd allocates from (any 24-hex id whose first 8 digits are not zero, like
//! the default marker `ffff…`) and the 32-hex ids DMS clients hold are such ids.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::{Call, P1, Reply, TestApp, batchtasks};

const INST: &str = "0a1b2c3d-0000-4000-8000-00000000beef";
const RMQ: &str = "9f6c3b1e-5a2d-4c7e-8b1a-2d3e4f5a6b7c";
/// Above `i64::MAX`: no id taskd allocates looks like these.
const HIGH_IDS: [&str; 2] = ["ffffffffffffffffffffffff", "8000000000000000a1b2c3d4"];
/// A DMS-style id (32 hex), as the real service hands out.
const DMS_STYLE: &str = "ff80808272dcc90f0172df1e490f41b0";

#[track_caller]
fn assert_code(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!((r.status, r.code()), (status, code), "{}", r.body);
}

#[tokio::test]
async fn swr_answers_404_for_a_job_id_it_never_issued() {
    let app = TestApp::new().await;
    for id in HIGH_IDS.iter().chain([&DMS_STYLE]) {
        let path = format!("/v2/{P1}/jobs/{id}");
        for method in ["GET", "DELETE"] {
            let r = app.call(Call::new(method, &path)).await;
            assert_code(&r, StatusCode::NOT_FOUND, "SVCSTG.SWR.4040001");
        }
    }
    // Not an id at all: still a 400.
    let r = app
        .call(Call::new("GET", &format!("/v2/{P1}/jobs/not.an.id")))
        .await;
    assert_code(&r, StatusCode::BAD_REQUEST, "SVCSTG.SWR.4000001");
}

#[tokio::test]
async fn rabbitmq_answers_404_for_a_task_id_it_never_issued() {
    let app = TestApp::new().await;
    for id in HIGH_IDS.iter().chain([&DMS_STYLE]) {
        let path = format!("/v2/{P1}/instances/{RMQ}/tasks/{id}");
        for method in ["GET", "DELETE"] {
            let r = app.call(Call::new(method, &path)).await;
            assert_code(&r, StatusCode::NOT_FOUND, "DMS.00404022");
        }
    }
    let r = app
        .call(Call::new(
            "GET",
            &format!("/v2/{P1}/instances/{RMQ}/tasks/not.an.id"),
        ))
        .await;
    assert_code(&r, StatusCode::BAD_REQUEST, "DMS.00400000");
}

#[tokio::test]
async fn iotda_iotdm_and_legacy_answer_their_not_found() {
    let app = TestApp::new().await;
    for id in HIGH_IDS {
        let r = app
            .call(Call::new("GET", &format!("{}/{id}", batchtasks())))
            .await;
        assert_code(&r, StatusCode::NOT_FOUND, "IOTDA.014200");
        for (method, suffix) in [("DELETE", ""), ("POST", "/retry"), ("POST", "/stop")] {
            let r = app
                .call(Call::new(method, &format!("{}/{id}{suffix}", batchtasks())))
                .await;
            assert_code(&r, StatusCode::NOT_FOUND, "IOTDA.014200");
        }
        let r = app
            .call(Call::new(
                "GET",
                &format!("/v5/iot/{P1}/iotda-instances/{INST}/tasks/{id}"),
            ))
            .await;
        assert_code(&r, StatusCode::NOT_FOUND, "IOTDA.014200");
    }
}

#[tokio::test]
async fn the_worker_protocol_treats_an_id_it_never_issued_as_a_lost_lease() {
    let app = TestApp::new().await;
    for id in HIGH_IDS {
        let hb = app
            .call(
                Call::new("POST", &format!("/taskd/v1/{P1}/sub-tasks/{id}/heartbeat"))
                    .json(json!({"attempt": 1})),
            )
            .await;
        assert_code(&hb, StatusCode::CONFLICT, "TASKD.010409");
    }
    // One unknown id does not cost the batch: each entry gets its answer.
    let task = app.create_task("t", &["dev-1"], false).await;
    let claimed = app
        .call(
            Call::new("POST", &format!("/taskd/v1/{P1}/claims")).json(json!({
                "protocol": 2, "worker_id": "w", "task_types": ["firmwareUpgrade"], "max": 1
            })),
        )
        .await;
    assert_eq!(claimed.status, StatusCode::OK, "{}", claimed.body);
    let sub = &claimed.body["sub_tasks"][0];
    assert_eq!(sub["task_id"], task);
    let r = app
        .call(
            Call::new("POST", &format!("/taskd/v1/{P1}/results")).json(json!({"results": [
                {"sub_task_id": HIGH_IDS[0], "attempt": 1, "status": "succeeded"},
                {"sub_task_id": sub["sub_task_id"], "attempt": sub["attempt"], "status": "succeeded"},
            ]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["results"],
        json!([
            {"sub_task_id": HIGH_IDS[0], "accepted": false, "reason": "lease_lost"},
            {"sub_task_id": sub["sub_task_id"], "accepted": true},
        ])
    );
    // Still malformed: not 24 lowercase hex digits.
    let hb = app
        .call(
            Call::new("POST", &format!("/taskd/v1/{P1}/sub-tasks/XYZ/heartbeat"))
                .json(json!({"attempt": 1})),
        )
        .await;
    assert_code(&hb, StatusCode::BAD_REQUEST, "TASKD.000006");
}
