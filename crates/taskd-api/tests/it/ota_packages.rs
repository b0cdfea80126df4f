//! OTA package records through the router: CreateOtaPackage, ListOtaPackageInfo,
//! ShowOtaPackage, DeleteOtaPackage.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::support::{AK2, Call, P1, P2, Reply, SK2, TestApp};

fn packages() -> String {
    format!("/v5/iot/{P1}/ota-upgrades/packages")
}

fn package(id: &str) -> String {
    format!("/v5/iot/{P1}/ota-upgrades/packages/{id}")
}

/// The docs' example body, with a sign in upper case.
fn full_body() -> Value {
    json!({
        "app_id": "61f7e74d036aca5be29e1ed4",
        "package_type": "firmwarePackage",
        "product_id": "5ba24f5ebbe8f56f5a14f605",
        "version": "V2.0",
        "support_source_versions": ["V1.0", "V1.1"],
        "description": "package for version V1.0 and V1.1",
        "custom_info": "{\"reboot\": true}",
        "file_location": {"obs_location": {
            "region_name": "cn-north-4",
            "bucket_name": "abc",
            "object_key": "bbb/upgrade.bin",
            "sign_method": "SHA256",
            "sign": "ABCDEF0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789"
        }}
    })
}

fn minimal(product: &str, version: &str) -> Value {
    json!({
        "package_type": "softwarePackage",
        "product_id": product,
        "version": version,
        "file_location": {"obs_location": {
            "region_name": "cn-north-4", "bucket_name": "abc", "object_key": "k.bin"
        }}
    })
}

async fn create(app: &TestApp, body: Value) -> Reply {
    app.call(Call::new("POST", &packages()).json(body)).await
}

async fn create_ok(app: &TestApp, body: Value) -> String {
    let r = create(app, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["package_id"].as_str().unwrap().to_string()
}

async fn list(app: &TestApp, query: &[(&str, &str)]) -> Reply {
    let path = packages();
    app.call(Call {
        query,
        ..Call::new("GET", &path)
    })
    .await
}

fn listed(r: &Reply) -> Vec<&str> {
    r.body["packages"]
        .as_array()
        .unwrap_or_else(|| panic!("no packages in {}", r.body))
        .iter()
        .map(|p| p["package_id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn create_show_list_delete() {
    let app = TestApp::new().await;
    let r = create(&app, full_body()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["package_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 24);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    // Every field echoed; the sign lowercased; no product name (taskd keeps no products).
    let mut want = full_body();
    want["package_id"] = json!(id);
    want["create_time"] = json!("20260101T000000Z");
    want["file_location"]["obs_location"]["sign"] =
        json!("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789");
    assert_eq!(r.body, want);

    let shown = app.call(Call::new("GET", &package(&id))).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body, want);

    // List items are the same without file_location.
    let l = list(&app, &[]).await;
    assert_eq!(l.status, StatusCode::OK);
    let mut item = want.clone();
    item.as_object_mut().unwrap().remove("file_location");
    assert_eq!(l.body["packages"], json!([item]));
    assert_eq!(l.body["page"], json!({"count": 1, "marker": id}));

    // A package with only the required fields: sign_method defaults to SHA256, absent
    // fields stay absent, the source versions are an empty list.
    let min = create_ok(&app, minimal("prod", "V1")).await;
    let shown = app.call(Call::new("GET", &package(&min))).await;
    assert_eq!(
        shown.body["file_location"]["obs_location"],
        json!({"region_name": "cn-north-4", "bucket_name": "abc", "object_key": "k.bin",
               "sign_method": "SHA256"})
    );
    assert_eq!(shown.body["support_source_versions"], json!([]));
    for absent in [
        "app_id",
        "module_name",
        "description",
        "custom_info",
        "product_name",
    ] {
        assert!(
            shown.body.get(absent).is_none(),
            "{absent} in {}",
            shown.body
        );
    }

    // Delete: 204 with no body, then 404 for show and delete.
    let d = app.call(Call::new("DELETE", &package(&id))).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    assert_eq!(d.body, Value::Null);
    for method in ["GET", "DELETE"] {
        let r = app.call(Call::new(method, &package(&id))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(r.code(), "IOTDA.014903", "{method}");
    }
    assert_eq!(listed(&list(&app, &[]).await), vec![min.as_str()]);
}

#[tokio::test]
async fn module_packages_carry_their_module_name() {
    let app = TestApp::new().await;
    let mut body = minimal("prod", "V1");
    body["package_type"] = json!("modulePackage");
    body["module_name"] = json!("wifi.module_1");
    let id = create_ok(&app, body.clone()).await;
    let shown = app.call(Call::new("GET", &package(&id))).await;
    assert_eq!(shown.body["module_name"], "wifi.module_1");
    assert_eq!(shown.body["package_type"], "modulePackage");
    body["package_type"] = json!("firmwarePackage");
    let r = create(&app, body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "IOTDA.000006");
}

#[tokio::test]
async fn list_filters_and_paging() {
    let app = TestApp::new().await;
    let mut ids = Vec::new();
    for (i, (kind, product, version, app_id)) in [
        ("firmwarePackage", "prod-a", "V1", Some("space-1")),
        ("softwarePackage", "prod-a", "V2", None),
        ("firmwarePackage", "prod-b", "V2", Some("space-1")),
        ("firmwarePackage", "prod-b", "V3", None),
        ("softwarePackage", "prod-c", "V1", None),
    ]
    .into_iter()
    .enumerate()
    {
        app.clock.advance_millis(1000);
        let mut body = minimal(product, version);
        body["package_type"] = json!(kind);
        if let Some(a) = app_id {
            body["app_id"] = json!(a);
        }
        ids.push(create_ok(&app, body).await);
        assert!(i == 0 || ids[i] > ids[i - 1], "ids grow with time");
    }
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    let all = list(&app, &[]).await;
    assert_eq!(listed(&all), newest_first);
    assert_eq!(all.body["page"]["count"], 5);
    // The later package's create time is the clock's.
    assert_eq!(all.body["packages"][0]["create_time"], "20260101T000005Z");

    let pick = |idx: &[usize]| idx.iter().map(|i| ids[*i].clone()).collect::<Vec<_>>();
    for (query, want) in [
        (vec![("app_id", "space-1")], pick(&[2, 0])),
        (vec![("package_type", "softwarePackage")], pick(&[4, 1])),
        (vec![("package_type", "firmwarePackage")], pick(&[3, 2, 0])),
        (vec![("product_id", "prod-b")], pick(&[3, 2])),
        (vec![("version", "V2")], pick(&[2, 1])),
        (
            vec![("version", "V2"), ("package_type", "firmwarePackage")],
            pick(&[2]),
        ),
        (vec![("version", "V9")], vec![]),
    ] {
        let r = list(&app, &query).await;
        assert_eq!(r.status, StatusCode::OK, "{query:?}: {}", r.body);
        assert_eq!(listed(&r), want, "{query:?}");
        assert_eq!(r.body["page"]["count"], want.len(), "{query:?}");
    }

    // limit, then marker = the last id returned, then offset; count stays the total.
    let first = list(&app, &[("limit", "2")]).await;
    assert_eq!(listed(&first), newest_first[..2]);
    assert_eq!(first.body["page"]["count"], 5);
    let marker = first.body["page"]["marker"].as_str().unwrap().to_string();
    assert_eq!(marker, newest_first[1]);
    let next = list(&app, &[("limit", "2"), ("marker", &marker)]).await;
    assert_eq!(listed(&next), newest_first[2..4]);
    assert_eq!(next.body["page"]["count"], 5);
    let skipped = list(&app, &[("marker", &marker), ("offset", "2")]).await;
    assert_eq!(listed(&skipped), newest_first[4..]);
    let default_marker = list(&app, &[("marker", "ffffffffffffffffffffffff")]).await;
    assert_eq!(listed(&default_marker), newest_first);
    // An empty page has no marker.
    let empty = list(&app, &[("offset", "5")]).await;
    assert_eq!(empty.body["page"], json!({"count": 5}));

    for query in [
        vec![("limit", "0")],
        vec![("limit", "51")],
        vec![("offset", "501")],
        vec![("marker", "xyz")],
        vec![("package_type", "firmware")],
        vec![("app_id", "a.b")],
        vec![("product_id", "p/1")],
        vec![("version", "V 1")],
    ] {
        let r = list(&app, &query).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query:?}");
        assert_eq!(r.code(), "IOTDA.000006", "{query:?}");
    }
    assert_eq!(list(&app, &[("limit", "50")]).await.status, StatusCode::OK);
    assert_eq!(
        list(&app, &[("offset", "500")]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn invalid_packages_are_refused_and_write_nothing() {
    let app = TestApp::new().await;
    type Edit = fn(&mut Value);
    let edits: Vec<(&str, Edit)> = vec![
        ("no package_type", |b| {
            b.as_object_mut().unwrap().remove("package_type");
        }),
        ("unknown package_type", |b| {
            b["package_type"] = json!("imagePackage")
        }),
        ("no product_id", |b| {
            b.as_object_mut().unwrap().remove("product_id");
        }),
        ("long product_id", |b| {
            b["product_id"] = json!("p".repeat(37))
        }),
        ("no version", |b| {
            b.as_object_mut().unwrap().remove("version");
        }),
        ("version charset", |b| b["version"] = json!("V 2")),
        ("long version", |b| b["version"] = json!("v".repeat(257))),
        ("app_id charset", |b| b["app_id"] = json!("a.b")),
        ("module_name on firmware", |b| b["module_name"] = json!("m")),
        ("21 source versions", |b| {
            b["support_source_versions"] =
                json!((0..21).map(|i| format!("V{i}")).collect::<Vec<_>>())
        }),
        ("source version charset", |b| {
            b["support_source_versions"] = json!(["V1,0"])
        }),
        ("long description", |b| {
            b["description"] = json!("d".repeat(1025))
        }),
        ("long custom_info", |b| {
            b["custom_info"] = json!("c".repeat(4097))
        }),
        ("no file_location", |b| {
            b.as_object_mut().unwrap().remove("file_location");
        }),
        ("no obs_location", |b| b["file_location"] = json!({})),
        ("no region_name", |b| {
            b["file_location"]["obs_location"]
                .as_object_mut()
                .unwrap()
                .remove("region_name");
        }),
        ("bucket upper case", |b| {
            b["file_location"]["obs_location"]["bucket_name"] = json!("ABC")
        }),
        ("bucket too short", |b| {
            b["file_location"]["obs_location"]["bucket_name"] = json!("ab")
        }),
        ("long object_key", |b| {
            b["file_location"]["obs_location"]["object_key"] = json!("k".repeat(1025))
        }),
        ("sign_method MD5", |b| {
            b["file_location"]["obs_location"]["sign_method"] = json!("MD5")
        }),
        ("sign of 63", |b| {
            b["file_location"]["obs_location"]["sign"] = json!("a".repeat(63))
        }),
        ("sign not hex", |b| {
            b["file_location"]["obs_location"]["sign"] = json!("g".repeat(64))
        }),
        ("source versions not a list", |b| {
            b["support_source_versions"] = json!("V1")
        }),
        ("description with NUL", |b| {
            b["description"] = json!("a\u{0}b")
        }),
    ];
    for (what, edit) in edits {
        let mut body = full_body();
        edit(&mut body);
        let r = create(&app, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.body);
        assert_eq!(r.code(), "IOTDA.000006", "{what}: {}", r.body);
    }
    let r = app
        .call(Call {
            body: b"{not json".to_vec(),
            ..Call::new("POST", &packages())
        })
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000008")
    );
    assert_eq!(list(&app, &[]).await.body["page"]["count"], 0);
}

#[tokio::test]
async fn packages_are_scoped() {
    let app = TestApp::new().await;
    let id = create_ok(&app, full_body()).await;
    let app = &app;
    let in_instance = |method, path: String| async move {
        app.call(Call {
            instance_id: Some("inst-0001"),
            ..Call::new(method, &path)
        })
        .await
    };
    assert_eq!(
        in_instance("GET", package(&id)).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        in_instance("GET", packages()).await.body["page"]["count"],
        0
    );
    assert_eq!(
        in_instance("DELETE", package(&id)).await.status,
        StatusCode::NOT_FOUND
    );
    // One created in the instance is seen only there.
    let r = app
        .call(Call {
            instance_id: Some("inst-0001"),
            ..Call::new("POST", &packages()).json(minimal("p", "V1"))
        })
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let in_id = r.body["package_id"].as_str().unwrap().to_string();
    assert_eq!(
        in_instance("GET", package(&in_id)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.call(Call::new("GET", &package(&in_id))).await.status,
        StatusCode::NOT_FOUND
    );

    // Another project, with its own key: 404; project 1's key on project 2's path: 403.
    let other = format!("/v5/iot/{P2}/ota-upgrades/packages/{id}");
    for method in ["GET", "DELETE"] {
        let r = app
            .call(Call {
                ak: AK2,
                sk: SK2,
                project_header: P2,
                ..Call::new(method, &other)
            })
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{method}");
        assert_eq!(r.code(), "IOTDA.014903");
    }
    let r = app.call(Call::new("GET", &other)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Still there for its own scope.
    assert_eq!(
        app.call(Call::new("GET", &package(&id))).await.status,
        StatusCode::OK
    );
    assert_eq!(listed(&list(app, &[]).await), vec![id.as_str()]);
}

#[tokio::test]
async fn ids_that_are_not_ours_name_no_package() {
    let app = TestApp::new().await;
    let id = create_ok(&app, full_body()).await;
    for raw in [
        "abc",
        "ABCDEF000000000000000000",
        "0000000000000000000000000",
        "32822e5744a45ede319d2c50",
    ] {
        for method in ["GET", "DELETE"] {
            let r = app.call(Call::new(method, &package(raw))).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {raw}");
            assert_eq!(r.code(), "IOTDA.014903", "{method} {raw}");
        }
    }
    assert_eq!(
        app.call(Call::new("GET", &package(&id))).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_package_named_by_a_batch_task_is_still_deletable() {
    let app = TestApp::new().await;
    let id = create_ok(&app, full_body()).await;
    let r = app
        .call(
            Call::new("POST", &format!("/v5/iot/{P1}/batchtasks")).json(json!({
                "task_name": "fw",
                "task_type": "firmwareUpgrade",
                "targets": ["d1"],
                "document": {"package_ids": [id]},
            })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let task_id = r.body["task_id"].as_str().unwrap().to_string();
    let d = app.call(Call::new("DELETE", &package(&id))).await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    // The task keeps its document.
    let t = app
        .call(Call::new(
            "GET",
            &format!("/v5/iot/{P1}/batchtasks/{task_id}"),
        ))
        .await;
    assert_eq!(t.status, StatusCode::OK);
    assert_eq!(t.body["batchtask"]["document"]["package_ids"], json!([id]));
}
