//! Instance operations: produced through the native API, run through the worker
//! protocol, read through the IoTDA instance-task, DMS RabbitMQ and SWR dialects. Time is
//! virtual (maintenance windows, the 180-day listing, retention).

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::{AK2, Call, P1, P2, SK2, TestApp};

const INST: &str = "0a1b2c3d-0000-4000-8000-00000000beef";
const RMQ: &str = "9f6c3b1e-5a2d-4c7e-8b1a-2d3e4f5a6b7c";

fn ops_path(p: &str) -> String {
    format!("/taskd/v1/{p}/operations")
}

async fn create(app: &TestApp, body: Value) -> Value {
    let r = app.call(Call::new("POST", &ops_path(P1)).json(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

async fn claim(app: &TestApp, kind: &str) -> Vec<Value> {
    let r = app
        .call(Call::new("POST", &format!("/taskd/v1/{P1}/claims")).json(
            json!({"protocol": 2, "worker_id": "w-1", "task_types": [kind], "max": 10, "lease_seconds": 60}),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["sub_tasks"].as_array().unwrap().clone()
}

async fn report(app: &TestApp, c: &Value, ok: bool) {
    let item = if ok {
        json!({"sub_task_id": c["sub_task_id"], "attempt": c["attempt"], "status": "succeeded"})
    } else {
        json!({"sub_task_id": c["sub_task_id"], "attempt": c["attempt"], "status": "failed",
               "error_code": "E.FLAVOR", "error_msg": "flavour sold out"})
    };
    let r = app
        .call(
            Call::new("POST", &format!("/taskd/v1/{P1}/results")).json(json!({"results": [item]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

fn iotdm(p: &str, inst: &str) -> String {
    format!("/v5/iot/{p}/iotda-instances/{inst}/tasks")
}

async fn get(app: &TestApp, path: &str, query: &[(&str, &str)]) -> crate::support::Reply {
    let mut c = Call::new("GET", path);
    c.query = query;
    app.call(c).await
}

#[tokio::test]
async fn an_iotda_modify_waits_for_its_window_fails_is_retried_and_succeeds() {
    let app = TestApp::new().await;
    // START is 00:00 UTC; the window is 18:00-22:00.
    let op = create(
        &app,
        json!({"service": "iotda-instance", "instance_id": INST, "type": "MODIFY",
               "user_name": "ops", "operate_window": {"start_time": "18:00", "end_time": "22:00"},
               "target_config": {"flavor": {"type": "iotda.standard.s2", "size": 2}, "charge_mode": "prePaid"}}),
    )
    .await;
    let id = op["operation_id"].as_str().unwrap().to_owned();
    assert_eq!(op["schedule_time"], "2026-01-01T18:00:00.000Z");
    let show_path = format!("{}/{id}", iotdm(P1, INST));
    let shown = get(&app, &show_path, &[]).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert_eq!(shown.body["status"], "PENDING");
    assert_eq!(shown.body["type"], "MODIFY");
    assert_eq!(shown.body["progress"], 0);
    assert_eq!(
        shown.body["operate_window"],
        json!({"start_time": "18:00", "end_time": "22:00"})
    );
    assert_eq!(shown.body["target_config"]["flavor"]["size"], 2);
    assert_eq!(shown.body["target_config"]["charge_mode"], "prePaid");
    assert_eq!(shown.body["create_time"], "2026-01-01T00:00:00.000Z");
    assert_eq!(shown.body["start_time"], Value::Null);

    // Pending until the window opens.
    app.clock.advance_millis(18 * 3_600_000 - 1);
    assert!(claim(&app, "MODIFY").await.is_empty());
    app.clock.advance_millis(1);
    let claimed = claim(&app, "MODIFY").await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0]["target"], INST);
    let hb = app
        .call(
            Call::new(
                "POST",
                &format!(
                    "/taskd/v1/{P1}/sub-tasks/{}/heartbeat",
                    claimed[0]["sub_task_id"].as_str().unwrap()
                ),
            )
            .json(json!({"attempt": claimed[0]["attempt"], "progress": 40})),
        )
        .await;
    assert_eq!(hb.status, StatusCode::OK, "{}", hb.body);
    let shown = get(&app, &show_path, &[]).await.body;
    assert_eq!(
        (shown["status"].as_str(), shown["progress"].as_u64()),
        (Some("RUNNING"), Some(40))
    );
    assert_eq!(shown["start_time"], "2026-01-01T18:00:00.000Z");

    report(&app, &claimed[0], false).await;
    let shown = get(&app, &show_path, &[]).await.body;
    assert_eq!(shown["status"], "FAILED");
    assert_eq!(shown["status_detail"], "flavour sold out");
    assert_eq!(shown["end_time"], "2026-01-01T18:00:00.000Z");

    // Retry at 23:00: the window is closed, so it does not start until tomorrow 18:00.
    app.clock.advance_millis(5 * 3_600_000);
    let r = app
        .call(Call::new("POST", &format!("{show_path}/retry")))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["status"].as_str(), r.body["progress"].as_u64()),
        (Some("PENDING"), Some(0))
    );
    assert!(claim(&app, "MODIFY").await.is_empty());
    app.clock.advance_millis(19 * 3_600_000);
    let claimed = claim(&app, "MODIFY").await;
    assert_eq!(claimed.len(), 1);
    report(&app, &claimed[0], true).await;
    let shown = get(&app, &show_path, &[]).await.body;
    assert_eq!(
        (shown["status"].as_str(), shown["progress"].as_u64()),
        (Some("SUCCESS"), Some(100))
    );

    // A succeeded task can't be retried.
    let r = app
        .call(Call::new("POST", &format!("{show_path}/retry")))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "IOTDA.014221")
    );
}

#[tokio::test]
async fn iotda_instance_tasks_list_newest_first_with_paging_and_caps() {
    let app = TestApp::new().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let kind = ["CREATE", "FREEZE", "UNFREEZE", "OPEN_SNAT", "DELETE"][i % 5];
        let op = create(
            &app,
            json!({"service": "iotda-instance", "instance_id": INST, "type": kind}),
        )
        .await;
        ids.push(op["operation_id"].as_str().unwrap().to_owned());
        app.clock.advance_millis(1_000);
    }
    // Another instance's tasks don't show.
    create(
        &app,
        json!({"service": "iotda-instance", "instance_id": "abc", "type": "CREATE"}),
    )
    .await;
    let r = get(&app, &iotdm(P1, INST), &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // At most 20 tasks; limit defaults to 10; newest first.
    assert_eq!(r.body["page"]["count"], 20);
    let tasks = r.body["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 10);
    assert_eq!(tasks[0]["task_id"], ids[24].as_str());
    assert_eq!(r.body["page"]["marker"], ids[15].as_str());
    let marker = ids[15].clone();
    let r = get(
        &app,
        &iotdm(P1, INST),
        &[("marker", &marker), ("limit", "500")],
    )
    .await;
    let got: Vec<&str> = r.body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = ids[5..15].iter().rev().map(String::as_str).collect();
    assert_eq!(got, want, "the 20 newest only");
    let r = get(&app, &iotdm(P1, INST), &[("offset", "18"), ("limit", "5")]).await;
    assert_eq!(r.body["tasks"].as_array().unwrap().len(), 2);
    let r = get(&app, &iotdm(P1, INST), &[("offset", "500"), ("limit", "1")]).await;
    assert_eq!(
        (r.status, r.body["tasks"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );

    // Only the last 180 days.
    app.clock.advance_millis(181 * 24 * 3_600_000);
    let r = get(&app, &iotdm(P1, INST), &[]).await;
    assert_eq!(r.body["page"]["count"], 0);

    for (q, v) in [
        ("offset", "501"),
        ("offset", "-1"),
        ("offset", "x"),
        ("limit", "0"),
        ("limit", "501"),
        ("marker", "xyz"),
        ("marker", "000000000000000000000000000000000"),
    ] {
        let r = get(&app, &iotdm(P1, INST), &[(q, v)]).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "IOTDA.000006"),
            "{q}={v}"
        );
    }
    let r = get(&app, &iotdm(P1, "ABC"), &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000006")
    );
    let r = get(&app, &format!("{}/XYZ", iotdm(P1, INST)), &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000006")
    );
    let r = get(&app, &format!("{}/{}", iotdm(P1, "abc"), ids[0]), &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "IOTDA.014200")
    );
}

#[tokio::test]
async fn projects_and_instances_are_isolated() {
    let app = TestApp::new().await;
    let op = create(
        &app,
        json!({"service": "rabbitmq", "instance_id": RMQ, "type": "bindInstancePublicIp"}),
    )
    .await;
    let id = op["operation_id"].as_str().unwrap();
    // The other project's key may not record operations on this instance ...
    let p2_ops = ops_path(P2);
    let mut c = Call::new("POST", &p2_ops)
        .json(json!({"service": "rabbitmq", "instance_id": RMQ, "type": "x"}));
    (c.ak, c.sk, c.project_header) = (AK2, SK2, P2);
    let r = app.call(c).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "TASKD.000021")
    );
    // ... nor read it through its own project path.
    let path = format!("/v2/{P2}/instances/{RMQ}/tasks");
    let mut c = Call::new("GET", &path);
    (c.ak, c.sk, c.project_header) = (AK2, SK2, P2);
    let r = app.call(c).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "DMS.00403000")
    );
    // Another project's path with this key.
    let r = get(&app, &format!("/v2/{P2}/instances/{RMQ}/tasks"), &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "DMS.00403000")
    );
    // Another instance of the same project: not there.
    let r = get(&app, &format!("/v2/{P1}/instances/other-1/tasks/{id}"), &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "DMS.00404022")
    );
    // The IoTDA batch-task listing never shows operations.
    let r = get(&app, &format!("/v5/iot/{P1}/batchtasks"), &[]).await;
    assert_eq!(r.body["page"]["count"], 0, "{}", r.body);
    // An IoTDA instance of another project.
    let mut c = Call::new("POST", &p2_ops)
        .json(json!({"service": "iotda-instance", "instance_id": "abc", "type": "CREATE"}));
    (c.ak, c.sk, c.project_header) = (AK2, SK2, P2);
    assert_eq!(app.call(c).await.status, StatusCode::CREATED);
    let r = get(&app, &iotdm(P1, "abc"), &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "IOTDA.000021")
    );
}

#[tokio::test]
async fn rabbitmq_background_tasks_list_show_delete() {
    let app = TestApp::new().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let op = create(&app, json!({"service": "rabbitmq", "instance_id": RMQ, "type": "bindInstancePublicIp",
            "user_name": "dms_test", "user_id": "u-1", "params": {"public_ip_id": format!("ip-{i}"), "enable_public_ip": true}})).await;
        ids.push(op["operation_id"].as_str().unwrap().to_owned());
        app.clock.advance_millis(3_600_000);
    }
    let base = format!("/v2/{P1}/instances/{RMQ}/tasks");
    let r = get(&app, &base, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["task_count"], "3");
    let t = &r.body["tasks"][0];
    assert_eq!(t["id"], ids[2].as_str());
    assert_eq!(t["name"], "bindInstancePublicIp");
    assert_eq!(t["status"], "CREATED");
    assert_eq!(t["user_name"], "dms_test");
    let params: Value = serde_json::from_str(t["params"].as_str().unwrap()).unwrap();
    assert_eq!(
        params,
        json!({"public_ip_id": "ip-2", "enable_public_ip": true})
    );
    assert_eq!(t["created_at"], "2026-01-01T02:00:00.000Z");
    // start (1-based) and offset, its newer name; limit.
    for key in ["start", "offset"] {
        let r = get(&app, &base, &[(key, "2"), ("limit", "1")]).await;
        assert_eq!(r.body["tasks"][0]["id"], ids[1].as_str(), "{key}");
    }
    // Time range on the creation time, inclusive.
    let r = get(
        &app,
        &base,
        &[
            ("begin_time", "20260101010000"),
            ("end_time", "20260101020000"),
        ],
    )
    .await;
    assert_eq!(r.body["task_count"], "2");
    let r = get(&app, &base, &[("begin_time", "20260101010001")]).await;
    assert_eq!(r.body["task_count"], "1");
    for (k, v) in [
        ("begin_time", "2026-01-01"),
        ("end_time", "20261301000000"),
        ("begin_time", "202601010000"),
    ] {
        let r = get(&app, &base, &[(k, v)]).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "DMS.00400001"),
            "{k}={v}"
        );
    }
    let r = get(
        &app,
        &base,
        &[
            ("begin_time", "20260102000000"),
            ("end_time", "20260101000000"),
        ],
    )
    .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "DMS.00400001")
    );
    for (k, v) in [
        ("limit", "0"),
        ("limit", "101"),
        ("start", "-1"),
        ("start", "x"),
    ] {
        let r = get(&app, &base, &[(k, v)]).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "DMS.00400000"),
            "{k}={v}"
        );
    }
    // Show: the list envelope.
    let r = get(&app, &format!("{base}/{}", ids[0]), &[]).await;
    assert_eq!(
        (
            r.body["task_count"].as_str(),
            r.body["tasks"][0]["id"].as_str()
        ),
        (Some("1"), Some(ids[0].as_str()))
    );
    let r = get(&app, &format!("{base}/not-an-id"), &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "DMS.00400000")
    );
    // Delete: only a finished task.
    let r = app
        .call(Call::new("DELETE", &format!("{base}/{}", ids[0])))
        .await;
    assert_eq!((r.status, r.code()), (StatusCode::CONFLICT, "DMS.00409000"));
    let claimed = claim(&app, "bindInstancePublicIp").await;
    assert_eq!(claimed.len(), 3);
    for c in &claimed {
        report(&app, c, c["task_id"] != ids[0].as_str()).await;
    }
    let r = get(&app, &format!("{base}/{}", ids[0]), &[]).await;
    assert_eq!(r.body["tasks"][0]["status"], "FAILED");
    let r = app
        .call(Call::new("DELETE", &format!("{base}/{}", ids[0])))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = app
        .call(Call::new("DELETE", &format!("{base}/{}", ids[0])))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "DMS.00404022")
    );
    assert_eq!(get(&app, &base, &[]).await.body["task_count"], "2");
}

#[tokio::test]
async fn swr_instance_jobs_list_show_delete() {
    let app = TestApp::new().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let op = create(
            &app,
            json!({"service": "swr", "instance_id": format!("swr-{i}"), "type": "CreateInstance",
            "name": "test-public", "target": format!("res-{i}")}),
        )
        .await;
        ids.push(op["operation_id"].as_str().unwrap().to_owned());
    }
    let base = format!("/v2/{P1}/jobs");
    let r = get(&app, &base, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["total"], 3);
    let j = &r.body["jobs"][0];
    assert_eq!(
        (
            j["id"].as_str(),
            j["instance_id"].as_str(),
            j["resource_id"].as_str()
        ),
        (Some(ids[2].as_str()), Some("swr-2"), Some("res-2"))
    );
    assert_eq!(
        (
            j["type"].as_str(),
            j["status"].as_str(),
            j["resource_name"].as_str()
        ),
        (
            Some("CreateInstance"),
            Some("Creating"),
            Some("test-public")
        )
    );
    assert_eq!(j["created_at"], "2026-01-01T00:00:00.000000Z");
    let claimed = claim(&app, "CreateInstance").await;
    for c in &claimed {
        if c["task_id"] == ids[0].as_str() {
            report(&app, c, false).await;
        } else if c["task_id"] == ids[1].as_str() {
            report(&app, c, true).await;
        }
    }
    for (status, n) in [
        ("Failed", 1),
        ("Success", 1),
        ("Running", 1),
        ("Creating", 0),
        ("Initializing", 0),
    ] {
        let r = get(&app, &base, &[("status", status)]).await;
        assert_eq!(r.body["total"], n, "{status}");
        for j in r.body["jobs"].as_array().unwrap() {
            assert_eq!(j["status"], status);
        }
    }
    let r = get(&app, &format!("{base}/{}", ids[0]), &[]).await;
    assert_eq!(
        (r.body["status"].as_str(), r.body["reason"].as_str()),
        (Some("Failed"), Some("flavour sold out"))
    );
    let r = get(&app, &base, &[("offset", "1"), ("limit", "1")]).await;
    assert_eq!(
        (r.body["total"].as_i64(), r.body["jobs"][0]["id"].as_str()),
        (Some(3), Some(ids[1].as_str()))
    );
    for q in [
        vec![("status", "running")],
        vec![("offset", "1")],
        vec![("limit", "1")],
        vec![("offset", "-1"), ("limit", "1")],
        vec![("offset", "0"), ("limit", "0")],
        vec![("offset", "0"), ("limit", "101")],
    ] {
        let r = get(&app, &base, &q).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "SVCSTG.SWR.4000001"),
            "{q:?}"
        );
    }
    let r = app
        .call(Call::new("DELETE", &format!("{base}/{}", ids[2])))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::CONFLICT, "SVCSTG.SWR.4090001")
    );
    let r = app
        .call(Call::new("DELETE", &format!("{base}/{}", ids[0])))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = get(&app, &format!("{base}/{}", ids[0]), &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "SVCSTG.SWR.4040001")
    );
    let r = get(&app, &format!("/v2/{P2}/jobs"), &[]).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "SVCSTG.SWR.4030001")
    );
    assert!(r.body["encoded_authorization_message"].is_string());
}

#[tokio::test]
async fn bad_operations_are_refused_and_write_nothing() {
    let app = TestApp::new().await;
    for body in [
        json!({"service": "kafka", "instance_id": "a", "type": "X"}),
        json!({"service": "iotda-instance", "instance_id": "ABC", "type": "CREATE"}),
        json!({"service": "iotda-instance", "instance_id": "abc", "type": "RESTART"}),
        json!({"service": "iotda-instance", "instance_id": "abc", "type": "MODIFY"}),
        json!({"service": "iotda-instance", "instance_id": "abc", "type": "MODIFY", "target_config": {"flavor": {"type": "s2", "size": 201}}}),
        json!({"service": "iotda-instance", "instance_id": "abc", "type": "MODIFY", "target_config": {"flavor": {"type": "s 2"}}}),
        json!({"service": "iotda-instance", "instance_id": "abc", "type": "MODIFY", "target_config": {"flavor": {"type": "s2"}, "charge_mode": "free"}}),
        json!({"service": "iotda-instance", "instance_id": "abc", "type": "CREATE", "target_config": {"flavor": {"type": "s2"}}}),
        json!({"service": "rabbitmq", "instance_id": "r", "type": "bind-ip"}),
        json!({"service": "rabbitmq", "instance_id": "r", "type": "createDevices"}),
        json!({"service": "rabbitmq", "instance_id": "r", "type": "x", "params": [1]}),
        json!({"service": "rabbitmq", "instance_id": "r", "type": "x", "operate_window": {"start_time": "24:00", "end_time": "01:00"}}),
        json!({"service": "rabbitmq", "instance_id": "r", "type": "x", "operate_window": {"start_time": "01:00", "end_time": "01:00"}}),
        json!({"service": "rabbitmq", "instance_id": "r", "type": "x", "schedule_time": "2026-01-01"}),
        json!({"service": "rabbitmq", "instance_id": "r", "type": "x", "user_name": ""}),
        json!({"service": "swr", "instance_id": "s", "type": "x", "target": "a b"}),
    ] {
        let r = app
            .call(Call::new("POST", &ops_path(P1)).json(body.clone()))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "TASKD.000006"),
            "{body}: {}",
            r.body
        );
    }
    let r = app
        .call(Call::new("POST", &ops_path(P1)).json(json!({"service": "swr"})))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "TASKD.000008")
    );
    let p1_ops = ops_path(P1);
    for (service, inst) in [("iotda-instance", "abc"), ("rabbitmq", "r"), ("swr", "")] {
        let mut c = Call::new("GET", &p1_ops);
        let q = [("service", service), ("instance_id", inst)];
        c.query = &q;
        let r = app.call(c).await;
        assert_eq!(r.body["count"], 0, "{service}: {}", r.body);
    }
}

#[tokio::test]
async fn retention_purges_old_finished_operations_only() {
    let app = TestApp::new().await;
    let done = create(
        &app,
        json!({"service": "swr", "instance_id": "s1", "type": "CreateInstance"}),
    )
    .await;
    create(
        &app,
        json!({"service": "swr", "instance_id": "s2", "type": "DeleteInstance"}),
    )
    .await;
    let claimed = claim(&app, "CreateInstance").await;
    report(&app, &claimed[0], true).await;
    app.clock.advance_millis(180 * 24 * 3_600_000 - 1);
    app.engine.maintain().await.unwrap();
    assert_eq!(
        get(&app, &format!("/v2/{P1}/jobs"), &[]).await.body["total"],
        2
    );
    app.clock.advance_millis(2);
    app.engine.maintain().await.unwrap();
    let r = get(&app, &format!("/v2/{P1}/jobs"), &[]).await;
    assert_eq!(r.body["total"], 1);
    assert_ne!(r.body["jobs"][0]["id"], done["operation_id"]);
}

#[tokio::test]
async fn schedule_time_and_window_combine_and_the_native_list_pages() {
    let app = TestApp::new().await;
    // Asked for the next day at 00:00, window 18:00-22:00: runs from the next day 18:00.
    let op = create(
        &app,
        json!({"service": "rabbitmq", "instance_id": RMQ, "type": "resize", "schedule_time": "20260102T000000Z",
               "operate_window": {"start_time": "18:00", "end_time": "22:00"}}),
    )
    .await;
    assert_eq!(op["schedule_time"], "2026-01-02T18:00:00.000Z");
    // Inside a wrapping window at creation: at once.
    app.clock.advance_millis(30 * 60_000);
    let op = create(
        &app,
        json!({"service": "rabbitmq", "instance_id": RMQ, "type": "resize",
               "operate_window": {"start_time": "23:00", "end_time": "01:00"}}),
    )
    .await;
    assert_eq!(op["schedule_time"], "2026-01-01T00:30:00.000Z");
    assert_eq!(claim(&app, "resize").await.len(), 1);
    // Same time tomorrow at 18:00 the first one starts; not a minute before.
    app.clock
        .advance_millis((24 + 17) * 3_600_000 + 29 * 60_000);
    assert!(claim(&app, "resize").await.is_empty());
    app.clock.advance_millis(60_000);
    assert_eq!(claim(&app, "resize").await.len(), 1);

    let mut ids = Vec::new();
    for _ in 0..3 {
        let op = create(
            &app,
            json!({"service": "swr", "instance_id": "s1", "type": "CreateInstance"}),
        )
        .await;
        ids.push(op["operation_id"].as_str().unwrap().to_owned());
    }
    let p1_ops = ops_path(P1);
    let mut c = Call::new("GET", &p1_ops);
    let q = [("service", "swr"), ("limit", "2")];
    c.query = &q;
    let page = app.call(c).await.body;
    assert_eq!(page["count"], 3);
    let got: Vec<&str> = page["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["operation_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    let mut c = Call::new("GET", &p1_ops);
    let q = [("service", "swr"), ("marker", ids[1].as_str())];
    c.query = &q;
    let page = app.call(c).await.body;
    assert_eq!(page["operations"][0]["operation_id"], ids[0].as_str());
    assert_eq!(page["operations"][0]["instance_id"], "s1");
    for q in [
        vec![("service", "kafka")],
        vec![("service", "rabbitmq")],
        vec![("service", "swr"), ("limit", "101")],
        vec![("service", "swr"), ("marker", "zz")],
    ] {
        let mut c = Call::new("GET", &p1_ops);
        c.query = &q;
        let r = app.call(c).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "TASKD.000006"),
            "{q:?}"
        );
    }
}
