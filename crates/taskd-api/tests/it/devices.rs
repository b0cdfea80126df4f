//! The device registry through the router: devices, groups, members.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::{AK2, Call, P1, P2, Reply, SK2, TestApp};

fn devices() -> String {
    format!("/v5/iot/{P1}/devices")
}

fn device(id: &str) -> String {
    format!("/v5/iot/{P1}/devices/{id}")
}

fn groups() -> String {
    format!("/v5/iot/{P1}/device-group")
}

fn group(id: &str) -> String {
    format!("/v5/iot/{P1}/device-group/{id}")
}

async fn add(app: &TestApp, body: Value) -> Reply {
    app.call(Call::new("POST", &devices()).json(body)).await
}

async fn add_ok(app: &TestApp, product: &str, node: &str) -> Value {
    let r = add(app, json!({"product_id": product, "node_id": node})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

async fn list(app: &TestApp, query: &[(&str, &str)]) -> Reply {
    let path = devices();
    app.call(Call {
        query,
        ..Call::new("GET", &path)
    })
    .await
}

fn ids(r: &Reply) -> Vec<&str> {
    r.body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect()
}

async fn add_group(app: &TestApp, body: Value) -> Reply {
    app.call(Call::new("POST", &groups()).json(body)).await
}

async fn member(app: &TestApp, group_id: &str, action: &str, device_id: &str) -> Reply {
    let path = format!("{}/action", group(group_id));
    app.call(Call {
        query: &[("action_id", action), ("device_id", device_id)],
        ..Call::new("POST", &path)
    })
    .await
}

#[tokio::test]
async fn add_show_update_delete() {
    let app = TestApp::new().await;
    let r = add(
        &app,
        json!({
            "node_id": "node-1",
            "product_id": "prod",
            "device_name": "水表_1",
            "description": "north(A)",
            "app_id": "app1",
            "auth_info": {"secret": "secret-0001", "secure_access": true, "timeout": 300},
            "extension_info": {"k": "v"},
        }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let b = &r.body;
    assert_eq!(b["device_id"], "prod_node-1", "defaults to product_node");
    assert_eq!(b["gateway_id"], "prod_node-1");
    assert_eq!(b["node_type"], "GATEWAY");
    assert_eq!(b["status"], "INACTIVE");
    assert_eq!(b["app_id"], "app1");
    assert_eq!(b["create_time"], "20260101T000000Z");
    assert_eq!(b["extension_info"], json!({"k": "v"}));
    assert_eq!(
        b["auth_info"],
        json!({"auth_type": "SECRET", "secret": "secret-0001", "secure_access": true, "timeout": 300}),
        "the creator sees the secret once"
    );

    let shown = app.call(Call::new("GET", &device("prod_node-1"))).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["device_name"], "水表_1");
    assert_eq!(
        shown.body["auth_info"].get("secret"),
        None,
        "never shown again"
    );

    // A generated secret when none is given: 32 hex digits, in the add response only.
    let gen_ = add_ok(&app, "prod", "node-2").await;
    let secret = gen_["auth_info"]["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32);
    assert!(secret.bytes().all(|c| c.is_ascii_hexdigit()));

    app.clock.advance_millis(60 * 1_000);
    let u = app
        .call(Call::new("PUT", &device("prod_node-1")).json(json!({
            "device_name": "renamed",
            "auth_info": {"timeout": 0},
        })))
        .await;
    assert_eq!(u.status, StatusCode::OK, "{}", u.body);
    assert_eq!(u.body["device_name"], "renamed");
    assert_eq!(u.body["description"], "north(A)", "unchanged");
    assert_eq!(u.body["auth_info"]["timeout"], 0);
    assert_eq!(u.body["auth_info"]["secure_access"], true);
    assert_eq!(u.body["auth_info"].get("secret"), None);

    let d = app.call(Call::new("DELETE", &device("prod_node-1"))).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    for (method, body) in [("GET", None), ("DELETE", None), ("PUT", Some(json!({})))] {
        let path = device("prod_node-1");
        let mut c = Call::new(method, &path);
        if let Some(b) = body {
            c = c.json(b);
        }
        let r = app.call(c).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(r.code(), "IOTDA.014000");
    }
}

#[tokio::test]
async fn duplicates_and_gateways() {
    let app = TestApp::new().await;
    add_ok(&app, "p", "gw").await;
    let dup = add(&app, json!({"product_id": "p", "node_id": "gw"})).await;
    assert_eq!(dup.status, StatusCode::BAD_REQUEST);
    assert_eq!(dup.code(), "IOTDA.014031");
    let same_id = add(
        &app,
        json!({"product_id": "q", "node_id": "x", "device_id": "p_gw"}),
    )
    .await;
    assert_eq!(same_id.code(), "IOTDA.014031");

    let child = add(
        &app,
        json!({"product_id": "p", "node_id": "c", "gateway_id": "p_gw"}),
    )
    .await;
    assert_eq!(child.status, StatusCode::CREATED, "{}", child.body);
    assert_eq!(child.body["gateway_id"], "p_gw");
    assert_eq!(child.body["node_type"], "ENDPOINT");
    let orphan = add(
        &app,
        json!({"product_id": "p", "node_id": "o", "gateway_id": "none"}),
    )
    .await;
    assert_eq!(
        (orphan.status, orphan.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000006")
    );

    // Sub-devices of a gateway; cascading.
    add(
        &app,
        json!({"product_id": "p", "node_id": "gc", "gateway_id": "p_c"}),
    )
    .await;
    let r = list(&app, &[("gateway_id", "p_gw")]).await;
    assert_eq!(ids(&r), ["p_c"]);
    let r = list(
        &app,
        &[("gateway_id", "p_gw"), ("is_cascade_query", "true")],
    )
    .await;
    assert_eq!(ids(&r), ["p_gc", "p_c"]);

    let f = app
        .call(Call::new("POST", &format!("{}/freeze", device("p_c"))))
        .await;
    assert_eq!(
        (f.status, f.code()),
        (StatusCode::FORBIDDEN, "IOTDA.014038")
    );
    let d = app.call(Call::new("DELETE", &device("p_gw"))).await;
    assert_eq!(
        (d.status, d.code()),
        (StatusCode::FORBIDDEN, "IOTDA.014041")
    );
}

#[tokio::test]
async fn freeze_and_unfreeze() {
    let app = TestApp::new().await;
    add_ok(&app, "p", "a").await;
    let freeze = format!("{}/freeze", device("p_a"));
    let unfreeze = format!("{}/unfreeze", device("p_a"));
    let r = app.call(Call::new("POST", &unfreeze)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "IOTDA.014040")
    );
    let r = app.call(Call::new("POST", &freeze)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let shown = app.call(Call::new("GET", &device("p_a"))).await;
    assert_eq!(shown.body["status"], "FROZEN");
    let r = app.call(Call::new("POST", &freeze)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "IOTDA.014039")
    );
    let r = app.call(Call::new("POST", &unfreeze)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let shown = app.call(Call::new("GET", &device("p_a"))).await;
    assert_eq!(shown.body["status"], "INACTIVE");
    let r = app
        .call(Call::new("POST", &format!("{}/freeze", device("nope"))))
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "IOTDA.014000")
    );
}

#[tokio::test]
async fn list_paging_and_filters() {
    let app = TestApp::new().await;
    for i in 0..12 {
        let product = if i % 3 == 0 { "pa" } else { "pb" };
        let r = add(
            &app,
            json!({"product_id": product, "node_id": format!("n{i:02}"), "device_name": format!("name{i}")}),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED);
        app.clock.advance_millis(10 * 1_000);
    }
    let first = list(&app, &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["page"]["count"], 12);
    assert_eq!(ids(&first).len(), 10, "default limit 10");
    assert_eq!(ids(&first)[0], "pb_n11");
    let marker = first.body["page"]["marker"].as_str().unwrap().to_string();
    assert_eq!(marker.len(), 24);
    let rest = list(&app, &[("marker", &marker)]).await;
    assert_eq!(ids(&rest), ["pb_n01", "pa_n00"]);
    assert_eq!(rest.body["page"]["count"], 12);
    let off = list(&app, &[("limit", "2"), ("offset", "3")]).await;
    assert_eq!(ids(&off), ["pb_n08", "pb_n07"]);

    let by_product = list(&app, &[("product_id", "pa"), ("limit", "50")]).await;
    assert_eq!(ids(&by_product), ["pa_n09", "pa_n06", "pa_n03", "pa_n00"]);
    assert_eq!(by_product.body["page"]["count"], 4);
    assert_eq!(ids(&list(&app, &[("node_id", "n05")]).await), ["pb_n05"]);
    assert_eq!(
        ids(&list(&app, &[("device_name", "name7")]).await),
        ["pb_n07"]
    );
    // Registered between 00:00:20 and 00:00:40 (both included).
    let window = list(
        &app,
        &[
            ("start_time", "20260101T000020Z"),
            ("end_time", "20260101T000040Z"),
        ],
    )
    .await;
    assert_eq!(ids(&window), ["pb_n04", "pa_n03", "pb_n02"]);

    for (k, v, code) in [
        ("limit", "0", "IOTDA.000006"),
        ("limit", "51", "IOTDA.000006"),
        ("offset", "501", "IOTDA.000006"),
        ("marker", "xyz", "IOTDA.000006"),
        ("node_id", "a b", "IOTDA.000006"),
        ("product_id", &"p".repeat(37), "IOTDA.000006"),
        ("is_cascade_query", "yes", "IOTDA.000006"),
        ("start_time", "2026-01-01", "IOTDA.000009"),
    ] {
        let r = list(&app, &[(k, v)]).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, code),
            "{k}={v}"
        );
    }
    let r = list(
        &app,
        &[
            ("start_time", "20260102T000000Z"),
            ("end_time", "20260101T000000Z"),
        ],
    )
    .await;
    assert_eq!(r.code(), "IOTDA.000010");
}

#[tokio::test]
async fn invalid_devices_write_nothing() {
    let app = TestApp::new().await;
    let long = |n: usize| "a".repeat(n);
    for body in [
        json!({"product_id": "p"}),
        json!({"node_id": "n"}),
        json!({"product_id": "p", "node_id": long(65)}),
        json!({"product_id": "p", "node_id": "n 1"}),
        json!({"product_id": long(37), "node_id": "n"}),
        json!({"product_id": "p", "node_id": "n", "device_id": long(129)}),
        json!({"product_id": "p", "node_id": "n", "device_name": long(257)}),
        json!({"product_id": "p", "node_id": "n", "device_name": "a b"}),
        json!({"product_id": "p", "node_id": "n", "description": long(2049)}),
        json!({"product_id": "p", "node_id": "n", "app_id": long(37)}),
        json!({"product_id": "p", "node_id": "n", "gateway_id": "a b"}),
        json!({"product_id": "p", "node_id": "n", "auth_info": {"secret": "short"}}),
        json!({"product_id": "p", "node_id": "n", "auth_info": {"auth_type": "PASSWORD"}}),
        json!({"product_id": "p", "node_id": "n", "auth_info": {"timeout": -1}}),
        json!({"product_id": "p", "node_id": "n", "auth_info": {"auth_type": "CERTIFICATES", "fingerprint": "abc"}}),
        json!({"product_id": "p", "node_id": "n", "extension_info": "text"}),
        json!({"product_id": "p", "node_id": "n", "extension_info": {"k": long(1100)}}),
        json!({"product_id": 5, "node_id": "n"}),
    ] {
        let r = add(&app, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "IOTDA.000006"),
            "{body}"
        );
    }
    let bad_json = app
        .call(Call {
            body: b"{not json".to_vec(),
            ..Call::new("POST", &devices())
        })
        .await;
    assert_eq!(bad_json.code(), "IOTDA.000008");
    assert_eq!(list(&app, &[]).await.body["page"]["count"], 0);

    // A bad update changes nothing; a bad path id is a 400.
    add_ok(&app, "p", "n").await;
    for body in [
        json!({"device_name": "a b"}),
        json!({"description": long(2049)}),
        json!({"auth_info": {"timeout": 2_147_483_648_i64}}),
        json!({"extension_info": [1]}),
    ] {
        let r = app
            .call(Call::new("PUT", &device("p_n")).json(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let shown = app.call(Call::new("GET", &device("p_n"))).await;
    assert_eq!(shown.body.get("device_name"), None);
    let r = app.call(Call::new("GET", &device(&long(129)))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000006")
    );
}

#[tokio::test]
async fn groups_and_members() {
    let app = TestApp::new().await;
    for node in ["a", "b", "c"] {
        add_ok(&app, "p", node).await;
    }
    let g = add_group(&app, json!({"name": "north meters", "description": "d"})).await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
    let gid = g.body["group_id"].as_str().unwrap().to_string();
    assert_eq!(gid.len(), 36);
    assert_eq!(g.body["group_type"], "STATIC");
    assert_eq!(g.body["name"], "north meters");

    let shown = app.call(Call::new("GET", &group(&gid))).await;
    assert_eq!(
        (shown.status, shown.body["group_id"].as_str()),
        (StatusCode::OK, Some(gid.as_str()))
    );

    let dup = add_group(&app, json!({"name": "north meters"})).await;
    assert_eq!(
        (dup.status, dup.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.015001")
    );
    let child = add_group(&app, json!({"name": "child", "super_group_id": gid})).await;
    assert_eq!(child.status, StatusCode::CREATED);
    assert_eq!(child.body["super_group_id"], gid.as_str());
    let child_id = child.body["group_id"].as_str().unwrap().to_string();
    let orphan = add_group(
        &app,
        json!({"name": "orphan", "super_group_id": "00000000-0000-0000-0000-000000000000"}),
    )
    .await;
    assert_eq!(
        (orphan.status, orphan.code()),
        (StatusCode::NOT_FOUND, "IOTDA.015000")
    );
    for body in [
        json!({}),
        json!({"name": "n".repeat(65)}),
        json!({"name": "x", "description": "d".repeat(65)}),
        json!({"name": "x", "group_type": "DYNAMIC", "dynamic_group_rule": "a"}),
        json!({"name": "x", "group_type": "OTHER"}),
        json!({"name": "x", "super_group_id": "not-hex!"}),
        json!({"name": "x", "app_id": "a b"}),
    ] {
        let r = add_group(&app, body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "IOTDA.000006"),
            "{body}"
        );
    }

    for d in ["p_a", "p_b"] {
        let r = member(&app, &gid, "addDevice", d).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = member(&app, &gid, "addDevice", "nope").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "IOTDA.014000")
    );
    let r = member(&app, "00000000-0000", "addDevice", "p_a").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "IOTDA.015000")
    );
    let r = member(&app, &gid, "moveDevice", "p_a").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000006")
    );
    let r = member(&app, &gid, "removeDevice", "p_b").await;
    assert_eq!(r.status, StatusCode::OK);

    let listed = app
        .call(Call {
            query: &[("limit", "1")],
            ..Call::new("GET", &groups())
        })
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["page"]["count"], 2);
    assert_eq!(
        listed.body["device_groups"][0]["group_id"],
        child_id.as_str()
    );
    let by_name = app
        .call(Call {
            query: &[("name", "north meters")],
            ..Call::new("GET", &groups())
        })
        .await;
    assert_eq!(by_name.body["device_groups"][0]["group_id"], gid.as_str());
    let dynamic = app
        .call(Call {
            query: &[("group_type", "DYNAMIC")],
            ..Call::new("GET", &groups())
        })
        .await;
    assert_eq!(dynamic.body["page"]["count"], 0);

    // A parent with children stays; deleting a group keeps its devices.
    let r = app.call(Call::new("DELETE", &group(&gid))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "IOTDA.015005")
    );
    assert_eq!(
        app.call(Call::new("DELETE", &group(&child_id)))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(Call::new("DELETE", &group(&gid))).await.status,
        StatusCode::NO_CONTENT
    );
    let r = app.call(Call::new("GET", &group(&gid))).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "IOTDA.015000")
    );
    assert_eq!(
        app.call(Call::new("GET", &device("p_a"))).await.status,
        StatusCode::OK
    );
    let r = app.call(Call::new("GET", &group("zzzz"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn devices_and_groups_are_scoped() {
    let app = TestApp::new().await;
    add_ok(&app, "p", "a").await;
    let gid = add_group(&app, json!({"name": "g"})).await.body["group_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Another instance of the same project.
    let app = &app;
    let in_instance = |method, path: String| async move {
        app.call(Call {
            instance_id: Some("inst-0001"),
            ..Call::new(method, &path)
        })
        .await
    };
    assert_eq!(
        in_instance("GET", device("p_a")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        in_instance("GET", group(&gid)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(in_instance("GET", devices()).await.body["page"]["count"], 0);
    assert_eq!(in_instance("GET", groups()).await.body["page"]["count"], 0);
    assert_eq!(
        in_instance("DELETE", device("p_a")).await.status,
        StatusCode::NOT_FOUND
    );
    let r = app
        .call(Call {
            instance_id: Some("inst-0001"),
            ..Call::new("POST", &devices()).json(json!({"product_id": "p", "node_id": "a"}))
        })
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "the same id is free in another instance"
    );

    // Another project, with its own key.
    let other = format!("/v5/iot/{P2}/devices/p_a");
    let r = app
        .call(Call {
            ak: AK2,
            sk: SK2,
            project_header: P2,
            ..Call::new("GET", &other)
        })
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Project 1's key can't reach project 2's path at all.
    let r = app.call(Call::new("GET", &other)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Still there for its own scope.
    assert_eq!(
        app.call(Call::new("GET", &device("p_a"))).await.status,
        StatusCode::OK
    );
    assert_eq!(list(app, &[]).await.body["page"]["count"], 1);
}

async fn reset_secret(app: &TestApp, device_id: &str, action: &str, body: Option<Value>) -> Reply {
    let path = format!("{}/action", device(device_id));
    let call = Call {
        query: &[("action_id", action)],
        ..Call::new("POST", &path)
    };
    app.call(match body {
        Some(b) => call.json(b),
        None => call,
    })
    .await
}

/// The (primary, secondary) secrets the MQTT listener checks for a device.
async fn secrets(app: &TestApp, device_id: &str) -> Vec<(Option<String>, Option<String>)> {
    app.store
        .device_logins(device_id)
        .await
        .unwrap()
        .into_iter()
        .map(|l| (l.secret, l.secondary_secret))
        .collect()
}

fn pair(primary: &str, secondary: Option<&str>) -> (Option<String>, Option<String>) {
    (Some(primary.to_owned()), secondary.map(str::to_owned))
}

#[tokio::test]
async fn reset_device_secret_primary_and_secondary() {
    let app = TestApp::new().await;
    let r = add(
        &app,
        json!({"product_id": "p", "node_id": "a",
               "auth_info": {"auth_type": "SECRET", "secret": "first-secret"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    let r = reset_secret(
        &app,
        "p_a",
        "resetSecret",
        Some(json!({"secret": "second_secret-2", "secret_type": "SECONDARY"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"device_id": "p_a", "secret": "second_secret-2", "secret_type": "SECONDARY"})
    );
    assert_eq!(
        secrets(&app, "p_a").await,
        vec![pair("first-secret", Some("second_secret-2"))]
    );

    // PRIMARY is the default; with force_disconnect (no connection here: nothing to close).
    let r = reset_secret(
        &app,
        "p_a",
        "resetSecret",
        Some(json!({"secret": "third-secret", "force_disconnect": true})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["secret_type"], "PRIMARY");
    assert_eq!(
        secrets(&app, "p_a").await,
        vec![pair("third-secret", Some("second_secret-2"))]
    );
    // ShowDevice never shows a secret.
    let shown = app.call(Call::new("GET", &device("p_a"))).await;
    assert!(
        shown.body["auth_info"].get("secret").is_none(),
        "{}",
        shown.body
    );

    // Without a secret (or without a body) the platform makes one: 32 hex digits.
    for body in [Some(json!({"secret_type": "SECONDARY"})), None] {
        let r = reset_secret(&app, "p_a", "resetSecret", body.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let made = r.body["secret"].as_str().unwrap().to_owned();
        assert_eq!(made.len(), 32, "{made}");
        assert!(made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");
        let want = if body.is_some() {
            pair("third-secret", Some(&made))
        } else {
            (Some(made.clone()), secrets(&app, "p_a").await[0].1.clone())
        };
        assert_eq!(secrets(&app, "p_a").await, vec![want]);
    }
}

#[tokio::test]
async fn reset_device_secret_refusals_write_nothing() {
    let app = TestApp::new().await;
    let r = add(
        &app,
        json!({"product_id": "p", "node_id": "a",
               "auth_info": {"auth_type": "SECRET", "secret": "first-secret"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = add(
        &app,
        json!({"product_id": "p", "node_id": "cert",
               "auth_info": {"auth_type": "CERTIFICATES", "fingerprint": "ab".repeat(20)}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let ok = json!({"secret": "new-secret-1"});
    for (device_id, action, body, status, code) in [
        ("p_a", "freeze", Some(ok.clone()), 400, "IOTDA.000006"),
        ("p_a", "", Some(ok.clone()), 400, "IOTDA.000006"),
        (
            "p_a",
            "resetSecret",
            Some(json!({"secret": "short"})),
            400,
            "IOTDA.000006",
        ),
        (
            "p_a",
            "resetSecret",
            Some(json!({"secret": "s".repeat(33)})),
            400,
            "IOTDA.000006",
        ),
        (
            "p_a",
            "resetSecret",
            Some(json!({"secret": "has space 1"})),
            400,
            "IOTDA.000006",
        ),
        (
            "p_a",
            "resetSecret",
            Some(json!({"secret": "new-secret-1", "secret_type": "primary"})),
            400,
            "IOTDA.000006",
        ),
        (
            "p_a",
            "resetSecret",
            Some(json!({"force_disconnect": "yes"})),
            400,
            "IOTDA.000006",
        ),
        ("nope", "resetSecret", Some(ok.clone()), 404, "IOTDA.014000"),
        (
            "p_cert",
            "resetSecret",
            Some(ok.clone()),
            400,
            "IOTDA.000006",
        ),
        (
            "p_cert",
            "resetSecret",
            Some(json!({"secret_type": "SECONDARY"})),
            400,
            "IOTDA.000006",
        ),
    ] {
        let r = reset_secret(&app, device_id, action, body.clone()).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (status, code),
            "{device_id} {action} {body:?}: {}",
            r.body
        );
    }
    // A malformed body is IoTDA's 000008.
    let path = format!("{}/action", device("p_a"));
    let mut call = Call {
        query: &[("action_id", "resetSecret")],
        ..Call::new("POST", &path)
    };
    call.body = b"{not json".to_vec();
    let r = app.call(call).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000008")
    );
    // The certificate device's refusal says why.
    let r = reset_secret(&app, "p_cert", "resetSecret", Some(ok)).await;
    assert!(
        r.body["error_msg"]
            .as_str()
            .unwrap()
            .contains("CERTIFICATES"),
        "{}",
        r.body
    );
    // Another project's device is not found.
    let path = format!("/v5/iot/{P2}/devices/p_a/action");
    let r = app
        .call(Call {
            query: &[("action_id", "resetSecret")],
            ak: AK2,
            sk: SK2,
            project_header: P2,
            ..Call::new("POST", &path)
        })
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "IOTDA.014000")
    );
    assert_eq!(secrets(&app, "p_a").await, vec![pair("first-secret", None)]);
    assert_eq!(secrets(&app, "p_cert").await, vec![(None, None)]);
}
