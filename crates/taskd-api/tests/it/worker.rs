//! The worker protocol (`/taskd/v1/`) driving IoTDA batch tasks, on virtual time.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

fn claims() -> String {
    format!("/taskd/v1/{P1}/claims")
}

fn results() -> String {
    format!("/taskd/v1/{P1}/results")
}

fn heartbeat(id: &str) -> String {
    format!("/taskd/v1/{P1}/sub-tasks/{id}/heartbeat")
}

fn task_path(id: &str) -> String {
    format!("/v5/iot/{P1}/batchtasks/{id}")
}

/// The whole answer to a claim (worker protocol 2).
async fn claim_answer(app: &TestApp, mut body: Value) -> Value {
    body["protocol"] = json!(2);
    let r = app.call(Call::new("POST", &claims()).json(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

async fn claim(app: &TestApp, body: Value) -> Vec<Value> {
    claim_answer(app, body).await["sub_tasks"]
        .as_array()
        .unwrap()
        .clone()
}

async fn claim_fw(app: &TestApp, max: u32) -> Vec<Value> {
    claim(
        app,
        json!({"worker_id": "w-1", "task_types": ["firmwareUpgrade"], "max": max, "lease_seconds": 60}),
    )
    .await
}

async fn report(app: &TestApp, items: Value) -> Vec<Value> {
    let r = app
        .call(Call::new("POST", &results()).json(json!({ "results": items })))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["results"].as_array().unwrap().clone()
}

fn ok(c: &Value, output: &str) -> Value {
    json!({"sub_task_id": c["sub_task_id"], "attempt": c["attempt"], "status": "succeeded", "output": output})
}

fn failed(c: &Value, code: &str) -> Value {
    json!({"sub_task_id": c["sub_task_id"], "attempt": c["attempt"], "status": "failed",
           "error_code": code, "error_msg": "the device did not answer"})
}

async fn show(app: &TestApp, id: &str) -> Value {
    let r = app.call(Call::new("GET", &task_path(id))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

fn detail<'a>(shown: &'a Value, target: &str) -> &'a Value {
    shown["task_details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["target"] == target)
        .unwrap_or_else(|| panic!("{target} not in {shown}"))
}

#[tokio::test]
async fn a_worker_runs_a_batch_task_with_retries_to_its_end() {
    let app = TestApp::new().await;
    let r = app
        .call(Call::new("POST", &batchtasks()).json(json!({
            "task_name": "fw", "task_type": "firmwareUpgrade", "targets": ["d1", "d2"],
            "document": {"package_ids": ["32822e5744a45ede319d2c50"]},
            "task_policy": {"retry_count": 1, "retry_interval": 5},
        })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let task_id = r.body["task_id"].as_str().unwrap().to_string();

    let answer = claim_answer(
        &app,
        json!({"worker_id": "w-1", "task_types": ["firmwareUpgrade"], "max": 10, "lease_seconds": 60}),
    )
    .await;
    let claimed = answer["sub_tasks"].as_array().unwrap().clone();
    assert_eq!(claimed.len(), 2);
    let c1 = &claimed[0];
    assert_eq!(c1["target"], "d1");
    assert_eq!(c1["attempt"], 1);
    assert_eq!(c1["task_id"], task_id.as_str());
    assert_eq!(c1["task_type"], "firmwareUpgrade");
    assert_eq!(c1["project_id"], P1);
    assert_eq!(c1["instance_id"], "");
    assert_eq!(
        answer["tasks"][&task_id]["document"],
        json!({"package_ids": ["32822e5744a45ede319d2c50"]}),
        "the document, once per task"
    );
    assert_eq!(c1.get("document"), None);
    assert_eq!(c1["input"], Value::Null);
    assert_eq!(c1["lease_expires_at"], "2026-01-01T00:01:00.000Z");
    let shown = show(&app, &task_id).await;
    assert_eq!(shown["batchtask"]["status"], "Processing");
    assert_eq!(shown["batchtask"]["task_progress"]["processing"], 2);

    let r = app
        .call(
            Call::new("POST", &heartbeat(c1["sub_task_id"].as_str().unwrap()))
                .json(json!({"attempt": 1, "lease_seconds": 120, "progress": 50})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["lease_expires_at"], "2026-01-01T00:02:00.000Z");

    let outcomes = report(
        &app,
        json!([ok(c1, "upgraded to 2.1"), failed(&claimed[1], "E_OFFLINE")]),
    )
    .await;
    assert!(
        outcomes.iter().all(|o| o["accepted"] == true),
        "{outcomes:?}"
    );
    let shown = show(&app, &task_id).await;
    assert_eq!(shown["batchtask"]["status"], "Processing");
    assert_eq!(detail(&shown, "d1")["status"], "Success");
    assert_eq!(detail(&shown, "d1")["output"], "upgraded to 2.1");
    assert_eq!(detail(&shown, "d2")["status"], "FailWaitRetry");
    assert_eq!(
        detail(&shown, "d2")["error"],
        json!({"error_code": "E_OFFLINE", "error_msg": "the device did not answer"})
    );

    // The retry is due after retry_interval minutes of virtual time.
    app.clock.advance_millis(5 * 60_000 - 1);
    app.engine.maintain().await.unwrap();
    assert!(claim_fw(&app, 10).await.is_empty());
    app.clock.advance_millis(1);
    assert_eq!(app.engine.maintain().await.unwrap().retries_released, 1);
    let again = claim_fw(&app, 10).await;
    assert_eq!(
        (again[0]["target"].clone(), again[0]["attempt"].clone()),
        (json!("d2"), json!(2))
    );
    report(&app, json!([failed(&again[0], "E_OFFLINE")])).await;

    let shown = show(&app, &task_id).await;
    assert_eq!(shown["batchtask"]["status"], "PartialSuccess");
    assert_eq!(
        shown["batchtask"]["task_progress"],
        json!({"total": 2, "processing": 0, "success": 1, "fail": 1, "waitting": 0,
               "fail_wait_retry": 0, "stopped": 0, "removed": 0})
    );
    assert_eq!(detail(&shown, "d2")["status"], "Fail");

    // A user's retry runs the failed target again.
    let r = app
        .call(Call::new("POST", &format!("{}/retry", task_path(&task_id))).json(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let third = claim_fw(&app, 10).await;
    assert_eq!(third[0]["attempt"], 3);
    report(&app, json!([ok(&third[0], "ok at last")])).await;
    assert_eq!(show(&app, &task_id).await["batchtask"]["status"], "Success");
}

#[tokio::test]
async fn schedule_time_and_confirm_hold_sub_tasks_back() {
    let app = TestApp::new().await;
    let r = app
        .call(Call::new("POST", &batchtasks()).json(json!({
            "task_name": "later", "task_type": "firmwareUpgrade", "targets": ["d1"],
            "document": {"package_ids": ["32822e5744a45ede319d2c50"]},
            "task_policy": {"schedule_time": "20260101T010000Z"},
        })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let later = r.body["task_id"].as_str().unwrap().to_string();
    let confirm = app.create_task("confirm", &["d2"], true).await;

    assert!(claim_fw(&app, 10).await.is_empty());
    app.clock.advance_millis(3_600_000 - 1);
    assert!(
        claim_fw(&app, 10).await.is_empty(),
        "one ms before the schedule time"
    );
    app.clock.advance_millis(1);
    let got = claim_fw(&app, 10).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["task_id"], later.as_str());

    assert_eq!(
        show(&app, &confirm).await["batchtask"]["status"],
        "Waitting"
    );
    let r = app
        .call(Call::new("POST", &format!("{}/confirm", task_path(&confirm))).json(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let got = claim_fw(&app, 10).await;
    assert_eq!(got[0]["target"], "d2");
    assert_eq!(
        show(&app, &confirm).await["batchtask"]["status"],
        "Processing"
    );
}

#[tokio::test]
async fn stop_and_lease_expiry_take_the_work_away() {
    let app = TestApp::new().await;
    let stopped = app.create_task("s", &["d1"], false).await;
    let c = claim_fw(&app, 1).await.remove(0);
    let r = app
        .call(Call::new("POST", &format!("{}/stop", task_path(&stopped))).json(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .call(
            Call::new("POST", &heartbeat(c["sub_task_id"].as_str().unwrap()))
                .json(json!({"attempt": 1})),
        )
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "TASKD.010409"));
    let out = report(&app, json!([ok(&c, "too late")])).await;
    assert_eq!(
        out[0],
        json!({"sub_task_id": c["sub_task_id"], "accepted": false, "reason": "lease_lost"})
    );
    assert_eq!(show(&app, &stopped).await["batchtask"]["status"], "Stopped");

    let expiring = app.create_task("e", &["d9"], false).await;
    let first = claim(
        &app,
        json!({"worker_id": "w-1", "task_types": ["firmwareUpgrade"], "lease_seconds": 5}),
    )
    .await
    .remove(0);
    app.clock.advance_millis(5_001);
    assert_eq!(app.engine.maintain().await.unwrap().leases_expired, 1);
    let second = claim_fw(&app, 1).await.remove(0);
    assert_eq!(
        (second["sub_task_id"].clone(), second["attempt"].clone()),
        (first["sub_task_id"].clone(), json!(2))
    );
    let out = report(&app, json!([ok(&first, "late"), ok(&second, "on time")])).await;
    assert_eq!(
        (out[0]["accepted"].clone(), out[1]["accepted"].clone()),
        (json!(false), json!(true))
    );
    let shown = show(&app, &expiring).await;
    assert_eq!(detail(&shown, "d9")["output"], "on time");
}

#[tokio::test]
async fn a_worker_sees_only_its_own_project() {
    let app = TestApp::new().await;
    app.create_task("mine", &["d1"], false).await;
    let r = app
        .call(
            Call {
                ak: AK2,
                sk: SK2,
                project_header: P2,
                ..Call::new("POST", &format!("/taskd/v1/{P2}/claims"))
            }
            .json(json!({"protocol": 2, "worker_id": "w", "task_types": ["firmwareUpgrade"], "max": 10})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["sub_tasks"], json!([]));
    // Another project's path with this key: refused.
    let r = app
        .call(
            Call::new("POST", &format!("/taskd/v1/{P2}/claims"))
                .json(json!({"protocol": 2, "worker_id": "w", "task_types": ["x"]})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "TASKD.000021")
    );
    // P2 reporting P1's sub-task changes nothing.
    let c = claim_fw(&app, 1).await.remove(0);
    let r = app
        .call(
            Call {
                ak: AK2,
                sk: SK2,
                project_header: P2,
                ..Call::new("POST", &format!("/taskd/v1/{P2}/results"))
            }
            .json(json!({"results": [ok(&c, "x")]})),
        )
        .await;
    assert_eq!(r.body["results"][0]["accepted"], false);
    let r = app
        .call(
            Call {
                ak: AK2,
                sk: SK2,
                project_header: P2,
                ..Call::new(
                    "POST",
                    &format!(
                        "/taskd/v1/{P2}/sub-tasks/{}/heartbeat",
                        c["sub_task_id"].as_str().unwrap()
                    ),
                )
            }
            .json(json!({"attempt": 1})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        report(&app, json!([ok(&c, "mine")])).await[0]["accepted"],
        true
    );
}

#[tokio::test]
async fn bad_requests_are_refused_with_their_code() {
    let app = TestApp::new().await;
    app.create_task("t", &["d1"], false).await;
    let claim_base =
        || json!({"protocol": 2, "worker_id": "w-1", "task_types": ["firmwareUpgrade"]});
    let with = |k: &str, v: Value| {
        let mut b = claim_base();
        b[k] = v;
        b
    };
    for body in [
        with("worker_id", json!("")),
        with("worker_id", json!("has space")),
        with("worker_id", json!("x".repeat(129))),
        with("task_types", json!([])),
        with("task_types", json!(["bad-type"])),
        with(
            "task_types",
            json!((0..21).map(|i| format!("t{i}")).collect::<Vec<_>>()),
        ),
        with("max", json!(0)),
        with("max", json!(501)),
        with("lease_seconds", json!(4)),
        with("lease_seconds", json!(3601)),
        with("wait_seconds", json!(61)),
    ] {
        let r = app
            .call(Call::new("POST", &claims()).json(body.clone()))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "TASKD.000006"),
            "{body}"
        );
    }
    let claims_path = claims();
    for raw in [&b"not json"[..], b"[]", br#"{"worker_id": 5}"#] {
        let mut c = Call::new("POST", &claims_path);
        c.body = raw.to_vec();
        let r = app.call(c).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "TASKD.000008")
        );
    }
    // Nothing was claimed by the refused requests.
    let c = claim_fw(&app, 10).await.remove(0);

    let id = c["sub_task_id"].as_str().unwrap();
    for (item, what) in [
        (
            json!({"sub_task_id": "xyz", "attempt": 1, "status": "succeeded"}),
            "bad id",
        ),
        (
            json!({"sub_task_id": id, "attempt": 1, "status": "done"}),
            "bad status",
        ),
        (
            json!({"sub_task_id": id, "attempt": 1, "status": "failed"}),
            "no error_code",
        ),
        (
            json!({"sub_task_id": id, "attempt": 1, "status": "failed", "error_code": "x".repeat(65)}),
            "long code",
        ),
        (
            json!({"sub_task_id": id, "attempt": 1, "status": "failed", "error_code": "E", "error_msg": "m".repeat(1025)}),
            "long msg",
        ),
        (
            json!({"sub_task_id": id, "attempt": 1, "status": "succeeded", "output": "o".repeat(4097)}),
            "long output",
        ),
    ] {
        // Refused on its own (the batch is answered), and it changed nothing.
        let answer = report(&app, json!([item])).await;
        assert_eq!(answer[0]["accepted"], false, "{what}");
        assert_eq!(answer[0]["reason"], "invalid", "{what}");
        assert!(
            answer[0]["error_msg"].as_str().unwrap().len() > 10,
            "{what}"
        );
    }
    for body in [
        json!({"results": []}),
        json!({"results": vec![json!({}); 501]}),
    ] {
        let r = app.call(Call::new("POST", &results()).json(body)).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "TASKD.000006")
        );
    }
    for body in [
        json!({"attempt": 1, "progress": 101}),
        json!({"attempt": 1, "lease_seconds": 1}),
    ] {
        let r = app.call(Call::new("POST", &heartbeat(id)).json(body)).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "TASKD.000006")
        );
    }
    let r = app
        .call(Call::new("POST", &heartbeat("nothex")).json(json!({"attempt": 1})))
        .await;
    assert_eq!(r.code(), "TASKD.000006");
    assert_eq!(
        report(&app, json!([ok(&c, "fine")])).await[0]["accepted"],
        true
    );

    // Unsigned or wrongly signed: 401 in the native envelope.
    let r = app
        .call(
            Call {
                sk: "wrong",
                ..Call::new("POST", &claims())
            }
            .json(claim_base()),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "TASKD.000002")
    );
}

#[tokio::test]
async fn a_long_poll_returns_work_created_while_it_waits() {
    let app = std::sync::Arc::new(TestApp::new().await);
    let empty = claim(
        &app,
        json!({"worker_id": "w", "task_types": ["firmwareUpgrade"], "wait_seconds": 1}),
    )
    .await;
    assert!(empty.is_empty(), "nothing ready within the wait");
    let waiting = {
        let app = app.clone();
        tokio::spawn(async move {
            claim(
                &app,
                json!({"worker_id": "w", "task_types": ["firmwareUpgrade"], "wait_seconds": 30}),
            )
            .await
        })
    };
    app.create_task("t", &["d1"], false).await;
    let got = waiting.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["target"], "d1");
}

/// A result taskd cannot record (here: text with a NUL, which no store keeps) is refused
/// in its own answer; the others of its batch are recorded, and it can be sent again.
#[tokio::test]
async fn one_bad_result_never_costs_the_others_theirs() {
    let app = TestApp::new().await;
    let task = app
        .create_task("fw", &["d1", "d2", "d3", "d4"], false)
        .await;
    let c = claim_fw(&app, 4).await;
    let target = |i: usize| c[i]["target"].as_str().unwrap().to_string();
    let answer = report(
        &app,
        json!([
            ok(&c[0], "fine"),
            ok(&c[1], "a\u{0}b"),
            {"sub_task_id": c[2]["sub_task_id"], "attempt": c[2]["attempt"], "status": "failed",
             "error_code": "E1", "error_msg": "bad\u{0}news"},
            {"sub_task_id": c[3]["sub_task_id"], "attempt": "one"},
            failed(&c[3], "E2"),
        ]),
    )
    .await;
    let verdicts: Vec<(&str, &str)> = answer
        .iter()
        .map(|a| {
            (
                a["accepted"]
                    .as_bool()
                    .map_or("?", |b| if b { "yes" } else { "no" }),
                a["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        vec![
            ("yes", ""),
            ("no", "invalid"),
            ("no", "invalid"),
            ("no", "invalid"),
            ("yes", "")
        ]
    );
    assert!(
        answer[1]["error_msg"].as_str().unwrap().contains("NUL"),
        "{}",
        answer[1]
    );
    assert_eq!(answer[1]["sub_task_id"], c[1]["sub_task_id"]);
    let shown = show(&app, &task).await;
    assert_eq!(detail(&shown, &target(0))["status"], "Success");
    assert_eq!(detail(&shown, &target(0))["output"], "fine");
    assert_eq!(detail(&shown, &target(1))["status"], "Processing");
    assert_eq!(detail(&shown, &target(2))["status"], "Processing");
    assert_eq!(detail(&shown, &target(3))["status"], "Fail");

    // Still leased to this attempt: a clean result is taken.
    let answer = report(&app, json!([ok(&c[1], "a\u{fffd}b"), failed(&c[2], "E1")])).await;
    assert!(answer.iter().all(|a| a["accepted"] == true), "{answer:?}");
    let shown = show(&app, &task).await;
    assert_eq!(detail(&shown, &target(1))["output"], "a\u{fffd}b");
}
