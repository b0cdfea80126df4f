use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

fn task_path(id: &str) -> String {
    format!("/v5/iot/{P1}/batchtasks/{id}")
}

#[tokio::test]
async fn create_answers_the_task_as_stored() {
    let app = TestApp::new().await;
    let r = app
        .call(Call::new("POST", &batchtasks()).json(json!({
            "task_name": "固件升级_1",
            "task_type": "firmwareUpgrade",
            "targets": ["dev-001", "dev-002"],
            "document": {"package_ids": ["32822e5744a45ede319d2c50"]},
            "task_policy": {"retry_count": 3, "retry_interval": 10, "schedule_time": "20260102T000000Z"},
            "task_mode": "GATEWAY",
            "task_ext_info": {"k": "v"},
        })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let t = &r.body;
    assert_eq!(t["task_id"].as_str().unwrap().len(), 24);
    assert_eq!(t["task_name"], "固件升级_1");
    assert_eq!(t["status"], "Waitting");
    assert_eq!(t["targets"], json!(["dev-001", "dev-002"]));
    assert_eq!(
        t["task_policy"],
        json!({"schedule_time": "20260102T000000Z", "retry_count": 3, "retry_interval": 10})
    );
    assert_eq!(t["task_ext_info"], json!({"k": "v"}));
    assert_eq!(t["create_time"], "20260101T000000Z");
    assert_eq!(
        t["task_progress"],
        json!({"total": 2, "processing": 0, "success": 0, "fail": 0, "waitting": 2, "fail_wait_retry": 0, "stopped": 0, "removed": 0})
    );
}

#[tokio::test]
async fn newer_tasks_have_larger_ids_even_in_the_same_millisecond() {
    let app = TestApp::new().await;
    let a = app.create_task("a", &["d1"], false).await;
    let b = app.create_task("b", &["d1"], false).await;
    app.clock.advance_millis(1);
    let c = app.create_task("c", &["d1"], false).await;
    assert!(a < b && b < c, "{a} {b} {c}");
}

#[tokio::test]
async fn every_invalid_create_is_refused_with_its_code_and_writes_nothing() {
    let app = TestApp::new().await;
    let ok = || {
        json!({"task_name": "t", "task_type": "firmwareUpgrade", "targets": ["d1"],
               "document": {"package_ids": ["p1"]}})
    };
    let with = |k: &str, v: Value| {
        let mut b = ok();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = ok();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let too_many: Vec<String> = (0..30_001).map(|i| format!("d{i}")).collect();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("no name", without("task_name"), "IOTDA.000006"),
        ("bad name", with("task_name", json!("a-b")), "IOTDA.000006"),
        (
            "long name",
            with("task_name", json!("a".repeat(129))),
            "IOTDA.000006",
        ),
        ("no type", without("task_type"), "IOTDA.000006"),
        (
            "bad type",
            with("task_type", json!("rebootDevices")),
            "IOTDA.000006",
        ),
        ("bad app_id", with("app_id", json!("a b")), "IOTDA.000006"),
        (
            "bad target",
            with("targets", json!(["d 1"])),
            "IOTDA.000006",
        ),
        (
            "duplicate target",
            with("targets", json!(["d1", "d1"])),
            "IOTDA.000006",
        ),
        (
            "30001 targets",
            with("targets", json!(too_many)),
            "IOTDA.000006",
        ),
        ("no source", without("targets"), "IOTDA.000006"),
        ("no package", without("document"), "IOTDA.000006"),
        (
            "bad mode",
            with("task_mode", json!("DIRECT")),
            "IOTDA.000006",
        ),
        (
            "ext info too long",
            with("task_ext_info", json!({"k": "x".repeat(510)})),
            "IOTDA.000006",
        ),
        (
            "retry_count alone",
            with("task_policy", json!({"retry_count": 1})),
            "IOTDA.000006",
        ),
        (
            "retry_interval alone",
            with("task_policy", json!({"retry_interval": 1})),
            "IOTDA.000006",
        ),
        (
            "retry_count 6",
            with(
                "task_policy",
                json!({"retry_count": 6, "retry_interval": 1}),
            ),
            "IOTDA.000006",
        ),
        (
            "retry_count 0",
            with(
                "task_policy",
                json!({"retry_count": 0, "retry_interval": 1}),
            ),
            "IOTDA.000006",
        ),
        (
            "retry_interval 1441",
            with(
                "task_policy",
                json!({"retry_count": 1, "retry_interval": 1441}),
            ),
            "IOTDA.000006",
        ),
        (
            "schedule 8 days ahead",
            with("task_policy", json!({"schedule_time": "20260109T000001Z"})),
            "IOTDA.000006",
        ),
        (
            "schedule format",
            with(
                "task_policy",
                json!({"schedule_time": "2026-01-02T00:00:00Z"}),
            ),
            "IOTDA.000009",
        ),
        (
            "schedule date",
            with("task_policy", json!({"schedule_time": "20260230T000000Z"})),
            "IOTDA.000009",
        ),
        (
            "targets not a list",
            with("targets", json!("d1")),
            "IOTDA.000006",
        ),
        (
            "document_source for upgrade",
            {
                let mut b = without("targets");
                b["document_source"] = json!("f1");
                b
            },
            "IOTDA.000006",
        ),
        (
            "unknown file",
            json!({"task_name": "t", "task_type": "createDevices", "document_source": "nope"}),
            "IOTDA.000006",
        ),
        (
            "createDevices with targets",
            json!({"task_name": "t", "task_type": "createDevices", "targets": ["d1"]}),
            "IOTDA.000006",
        ),
        (
            "need_confirm on commands",
            json!({"task_name": "t", "task_type": "createCommands", "targets": ["d1"], "need_confirm": true}),
            "IOTDA.000006",
        ),
        (
            "filter without groups",
            with("targets_filter", json!({"x": 1})),
            "IOTDA.000006",
        ),
    ];
    for (what, body, code) in cases {
        let mut body = body;
        if what == "filter without groups" {
            body.as_object_mut().unwrap().remove("targets");
        }
        let r = app.call(Call::new("POST", &batchtasks()).json(body)).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{what}: {}",
            r.body
        );
    }
    let not_json = app
        .call(Call {
            body: b"{not json".to_vec(),
            ..Call::new("POST", &batchtasks())
        })
        .await;
    assert_eq!(
        (not_json.status, not_json.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000008")
    );
    let list = app.call(Call::new("GET", &batchtasks())).await;
    assert_eq!(
        list.body["page"]["count"], 0,
        "a rejected request writes nothing"
    );
}

#[tokio::test]
async fn schedule_window_follows_the_injected_clock() {
    let app = TestApp::new().await;
    let body = |at: &str| json!({"task_name": "t", "task_type": "deleteDevices", "targets": ["d1"], "task_policy": {"schedule_time": at}});
    let ok = app
        .call(Call::new("POST", &batchtasks()).json(body("20260108T000000Z")))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    let too_far = app
        .call(Call::new("POST", &batchtasks()).json(body("20260108T000001Z")))
        .await;
    assert_eq!(too_far.status, StatusCode::BAD_REQUEST);
    app.clock.advance_millis(1000);
    let now_ok = app
        .call(Call::new("POST", &batchtasks()).json(body("20260108T000001Z")))
        .await;
    assert_eq!(now_ok.status, StatusCode::CREATED);
}

#[tokio::test]
async fn list_pages_by_marker_and_offset_and_counts_the_filter() {
    let app = TestApp::new().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let kind = if i % 5 == 0 {
            "softwareUpgrade"
        } else {
            "firmwareUpgrade"
        };
        let r = app
            .call(Call::new("POST", &batchtasks()).json(json!({
                "task_name": format!("t{i}"), "task_type": kind, "targets": ["d1"],
                "app_id": if i % 2 == 0 { "even" } else { "odd" },
                "document": {"package_id": "p"},
            })))
            .await;
        ids.push(r.body["task_id"].as_str().unwrap().to_string());
    }
    ids.reverse(); // newest first
    let mut seen = Vec::new();
    let mut marker = String::from("ffffffffffffffffffffffff");
    loop {
        let q = [("limit", "10"), ("marker", marker.as_str())];
        let r = app
            .call(Call {
                query: &q,
                ..Call::new("GET", &batchtasks())
            })
            .await;
        assert_eq!(r.body["page"]["count"], 25);
        let page: Vec<String> = r.body["batchtasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["task_id"].as_str().unwrap().to_string())
            .collect();
        if page.is_empty() {
            assert!(r.body["page"].get("marker").is_none());
            break;
        }
        assert_eq!(r.body["page"]["marker"], *page.last().unwrap());
        marker = page.last().unwrap().clone();
        seen.extend(page);
    }
    assert_eq!(seen, ids);
    let r = app
        .call(Call {
            query: &[("offset", "20"), ("limit", "50")],
            ..Call::new("GET", &batchtasks())
        })
        .await;
    let got: Vec<&str> = r.body["batchtasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        ids[20..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    for (q, count) in [
        (vec![("task_type", "softwareUpgrade")], 5),
        (vec![("app_id", "even")], 13),
        (
            vec![("app_id", "even"), ("task_type", "softwareUpgrade")],
            3,
        ),
        (vec![("status", "Waitting")], 25),
        (vec![("status", "Success")], 0),
    ] {
        let r = app
            .call(Call {
                query: &q,
                ..Call::new("GET", &batchtasks())
            })
            .await;
        assert_eq!(r.body["page"]["count"], count, "{q:?}");
        assert_eq!(
            r.body["batchtasks"].as_array().unwrap().len() as i64,
            count.min(10),
            "{q:?}"
        );
    }
    for q in [
        [("limit", "0")],
        [("limit", "51")],
        [("offset", "501")],
        [("offset", "-1")],
        [("marker", "xyz")],
        [("status", "Done")],
        [("task_type", "reboot")],
    ] {
        let r = app
            .call(Call {
                query: &q,
                ..Call::new("GET", &batchtasks())
            })
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "IOTDA.000006"),
            "{q:?}"
        );
    }
}

#[tokio::test]
async fn show_pages_sub_tasks_newest_first_with_filters() {
    let app = TestApp::new().await;
    let targets: Vec<String> = (0..30).map(|i| format!("d{i:02}")).collect();
    let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    let id = app.create_task("t", &refs, false).await;
    let mut seen = Vec::new();
    let mut marker = String::from("ffffffffffffffffffffffff");
    loop {
        let q = [("limit", "7"), ("marker", marker.as_str())];
        let r = app
            .call(Call {
                query: &q,
                ..Call::new("GET", &task_path(&id))
            })
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["page"]["count"], 30);
        let details = r.body["task_details"].as_array().unwrap();
        if details.is_empty() {
            break;
        }
        seen.extend(
            details
                .iter()
                .map(|d| d["target"].as_str().unwrap().to_string()),
        );
        marker = r.body["page"]["marker"].as_str().unwrap().to_string();
    }
    let mut expected = targets.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    let stop = app
        .call(
            Call::new("POST", &format!("{}/stop", task_path(&id)))
                .json(json!({"targets": ["d03", "d04"]})),
        )
        .await;
    assert_eq!(stop.status, StatusCode::OK);
    let r = app
        .call(Call {
            query: &[("task_detail_status", "Stopped")],
            ..Call::new("GET", &task_path(&id))
        })
        .await;
    assert_eq!(r.body["page"]["count"], 2);
    let r = app
        .call(Call {
            query: &[("target", "d04")],
            ..Call::new("GET", &task_path(&id))
        })
        .await;
    assert_eq!(
        r.body["task_details"],
        json!([{"target": "d04", "status": "Stopped"}])
    );
    assert_eq!(r.body["page"]["count"], 1);
    let r = app
        .call(Call {
            query: &[("task_detail_status", "Rejected")],
            ..Call::new("GET", &task_path(&id))
        })
        .await;
    assert_eq!(
        (r.status, r.body["page"]["count"].clone()),
        (StatusCode::OK, json!(0))
    );
    for q in [[("task_detail_status", "Done")], [("target", "a b")]] {
        let r = app
            .call(Call {
                query: &q,
                ..Call::new("GET", &task_path(&id))
            })
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "IOTDA.000006"),
            "{q:?}"
        );
    }
}

#[tokio::test]
async fn unknown_and_malformed_task_ids() {
    let app = TestApp::new().await;
    let r = app
        .call(Call::new("GET", &task_path("0123456789abcdef01234567")))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "IOTDA.014200")
    );
    let r = app.call(Call::new("GET", &task_path("abc"))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "IOTDA.014200")
    );
    let r = app.call(Call::new("GET", &task_path("ABCDEF"))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000006")
    );
}

#[tokio::test]
async fn instance_id_scopes_tasks() {
    let app = TestApp::new().await;
    let r = app
        .call(
            Call {
                instance_id: Some("inst-a"),
                ..Call::new("POST", &batchtasks())
            }
            .json(json!({"task_name": "t", "task_type": "deleteDevices", "targets": ["d1"]})),
        )
        .await;
    let id = r.body["task_id"].as_str().unwrap().to_string();
    let in_a = app
        .call(Call {
            instance_id: Some("inst-a"),
            ..Call::new("GET", &task_path(&id))
        })
        .await;
    assert_eq!(in_a.status, StatusCode::OK);
    for other in [Some("inst-b"), None] {
        let r = app
            .call(Call {
                instance_id: other,
                ..Call::new("GET", &task_path(&id))
            })
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{other:?}");
        let l = app
            .call(Call {
                instance_id: other,
                ..Call::new("GET", &batchtasks())
            })
            .await;
        assert_eq!(l.body["page"]["count"], 0);
    }
    let bad = app
        .call(Call {
            instance_id: Some("inst_a"),
            ..Call::new("GET", &batchtasks())
        })
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn stop_confirm_retry_and_delete_follow_the_state_rules() {
    let app = TestApp::new().await;
    let id = app.create_task("t", &["t1", "t2", "t3"], true).await;
    let op = |name: &str| format!("{}/{name}", task_path(&id));

    let r = app.call(Call::new("DELETE", &task_path(&id))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "IOTDA.014221")
    );
    let r = app.call(Call::new("POST", &op("retry"))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "IOTDA.014221"),
        "retry of a waiting task"
    );

    let r = app
        .call(Call::new("POST", &op("stop")).json(json!({"targets": ["t1", "ghost"]})))
        .await;
    assert_eq!(
        r.body["targets"][0],
        json!({"target": "t1", "status": "success"})
    );
    assert_eq!(r.body["targets"][1]["error_code"], "IOTDA.014219");
    let r = app.call(Call::new("POST", &op("confirm"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let show = app.call(Call::new("GET", &task_path(&id))).await;
    assert_eq!(
        show.body["batchtask"]["status"], "Waitting",
        "confirmed, not yet claimed"
    );
    let claimed = app
        .call(Call::new("POST", &format!("/taskd/v1/{P1}/claims")).json(
            json!({"protocol": 2, "worker_id": "w", "task_types": ["firmwareUpgrade"], "max": 10}),
        ))
        .await;
    assert_eq!(claimed.body["sub_tasks"].as_array().unwrap().len(), 2);
    let show = app.call(Call::new("GET", &task_path(&id))).await;
    assert_eq!(show.body["batchtask"]["status"], "Processing");
    assert_eq!(show.body["batchtask"]["task_progress"]["processing"], 2);
    assert_eq!(show.body["batchtask"]["task_progress"]["stopped"], 1);

    let r = app
        .call(Call::new("POST", &op("retry")).json(json!({"targets": ["t1", "t2"]})))
        .await;
    assert_eq!(
        r.body["targets"][0],
        json!({"target": "t1", "status": "success"})
    );
    assert_eq!(
        r.body["targets"][1]["error_code"], "IOTDA.014221",
        "t2 is processing"
    );
    let r = app
        .call(Call::new("POST", &op("stop")).json(json!({})))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let show = app.call(Call::new("GET", &task_path(&id))).await;
    assert_eq!(show.body["batchtask"]["status"], "Stopped");
    assert_eq!(show.body["batchtask"]["task_progress"]["stopped"], 3);
    for name in ["stop", "confirm", "retry"] {
        let r = app.call(Call::new("POST", &op(name))).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::FORBIDDEN, "IOTDA.014221"),
            "{name} on a stopped task"
        );
    }
    let too_many: Vec<String> = (0..101).map(|i| format!("d{i}")).collect();
    let r = app
        .call(Call::new("POST", &op("stop")).json(json!({"targets": too_many})))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000006")
    );

    assert_eq!(
        app.call(Call::new("DELETE", &task_path(&id))).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(Call::new("GET", &task_path(&id))).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Call::new("DELETE", &task_path(&id))).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn ops_are_refused_for_task_types_that_lack_them() {
    let app = TestApp::new().await;
    let r = app
        .call(
            Call::new("POST", &batchtasks())
                .json(json!({"task_name": "t", "task_type": "deleteDevices", "targets": ["d1"]})),
        )
        .await;
    let id = r.body["task_id"].as_str().unwrap().to_string();
    for name in ["stop", "retry", "confirm"] {
        let r = app
            .call(Call::new("POST", &format!("{}/{name}", task_path(&id))))
            .await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "IOTDA.000006"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn group_filters_resolve_to_the_members_at_creation() {
    let app = TestApp::new().await;
    let devices = format!("/v5/iot/{P1}/devices");
    for node in ["a", "b", "c", "d"] {
        let r = app
            .call(Call::new("POST", &devices).json(json!({"product_id": "p", "node_id": node})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let groups = format!("/v5/iot/{P1}/device-group");
    let mut gids = Vec::new();
    for (name, members) in [("north", ["p_a", "p_b"]), ("south", ["p_b", "p_c"])] {
        let g = app
            .call(Call::new("POST", &groups).json(json!({"name": name})))
            .await;
        let gid = g.body["group_id"].as_str().unwrap().to_string();
        for device_id in members {
            let path = format!("{groups}/{gid}/action");
            let r = app
                .call(Call {
                    query: &[("action_id", "addDevice"), ("device_id", device_id)],
                    ..Call::new("POST", &path)
                })
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
        gids.push(gid);
    }
    let empty = app
        .call(Call::new("POST", &groups).json(json!({"name": "empty"})))
        .await;
    let empty = empty.body["group_id"].as_str().unwrap().to_string();
    let path = batchtasks();
    let create = |group_ids: Value| {
        Call::new("POST", &path).json(json!({"task_name": "t", "task_type": "firmwareUpgrade", "targets_filter": {"group_ids": group_ids}, "document": {"package_id": "p"}}))
    };

    // Both groups, p_b in each: one sub-task per distinct member, the filter echoed back.
    let r = app.call(create(json!([gids[0], gids[1], gids[0]]))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["status"], "Waitting");
    assert_eq!(r.body["task_progress"]["total"], 3);
    assert_eq!(r.body["targets_filter"]["group_ids"][1], gids[1].as_str());
    let id = r.body["task_id"].as_str().unwrap().to_string();
    let details = app.call(Call::new("GET", &task_path(&id))).await;
    let mut targets: Vec<&str> = details.body["task_details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["target"].as_str().unwrap())
        .collect();
    targets.sort();
    assert_eq!(targets, ["p_a", "p_b", "p_c"]);

    // A group that does not exist (or holds no devices) is refused, and nothing is created.
    let before = app.call(Call::new("GET", &batchtasks())).await.body["page"]["count"].clone();
    for group_ids in [
        json!([gids[0], "00000000-0000-0000-0000-000000000000"]),
        json!([empty]),
    ] {
        let r = app.call(create(group_ids.clone())).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "IOTDA.000006"),
            "{group_ids}: {}",
            r.body
        );
    }
    let after = app.call(Call::new("GET", &batchtasks())).await.body["page"]["count"].clone();
    assert_eq!(before, after);
}
