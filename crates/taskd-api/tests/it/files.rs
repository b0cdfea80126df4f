use axum::http::StatusCode;
use rust_xlsxwriter::Workbook;
use serde_json::json;

use crate::support::*;

fn xlsx(header: &[&str], rows: usize) -> Vec<u8> {
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in header.iter().enumerate() {
        sheet.write_string(0, c as u16, *h).unwrap();
    }
    for r in 0..rows {
        sheet
            .write_string(r as u32 + 1, 0, format!("node{r}"))
            .unwrap();
        sheet.write_string(r as u32 + 1, 1, "product").unwrap();
        // A numeric cell: read back as "7", not "7.0".
        sheet.write_number(r as u32 + 1, 2, 7.0).unwrap();
    }
    book.save_to_buffer().unwrap()
}

fn multipart(name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "091eeddbc64942e0bb764db3a5b17858";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn upload(app: &TestApp, name: &str, bytes: &[u8]) -> Reply {
    let (content_type, body) = multipart(name, bytes);
    let path = format!("/v5/iot/{P1}/batchtask-files");
    app.call(Call {
        content_type,
        body,
        ..Call::new("POST", &path)
    })
    .await
}

#[tokio::test]
async fn an_uploaded_file_becomes_a_create_devices_task() {
    let app = TestApp::new().await;
    let r = upload(
        &app,
        "devices.xlsx",
        &xlsx(&["node_id", "product_id", "description"], 3),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["file_name"], "devices.xlsx");
    assert_eq!(r.body["upload_time"], "20260101T000000Z");
    let file_id = r.body["file_id"].as_str().unwrap().to_string();

    let list = app
        .call(Call::new("GET", &format!("/v5/iot/{P1}/batchtask-files")))
        .await;
    assert_eq!(list.body["files"][0]["file_id"], file_id);

    let t = app
        .call(Call::new("POST", &batchtasks()).json(
            json!({"task_name": "reg", "task_type": "createDevices", "document_source": file_id}),
        ))
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.body);
    assert_eq!(t.body["task_progress"]["total"], 3);
    let id = t.body["task_id"].as_str().unwrap();
    let show = app
        .call(Call::new("GET", &format!("{}/{id}", batchtasks())))
        .await;
    let targets: Vec<&str> = show.body["task_details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["node2", "node1", "node0"]);

    let path = format!("/v5/iot/{P1}/batchtask-files/{file_id}");
    assert_eq!(
        app.call(Call::new("DELETE", &path)).await.status,
        StatusCode::NO_CONTENT
    );
    let again = app.call(Call::new("DELETE", &path)).await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::NOT_FOUND, "IOTDA.014600")
    );
}

#[tokio::test]
async fn bad_files_get_their_codes() {
    let app = TestApp::new().await;
    let no_extension = "a".repeat(56);
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "devices.csv",
            b"a,b".to_vec(),
            StatusCode::BAD_REQUEST,
            "IOTDA.014602",
        ),
        (
            "devices.xlsx",
            b"PKfake-xlsx-bytes".to_vec(),
            StatusCode::BAD_REQUEST,
            "IOTDA.014603",
        ),
        (
            "devices.xlsx",
            xlsx(&["node_id", "product_id", "x"], 30_001),
            StatusCode::BAD_REQUEST,
            "IOTDA.014604",
        ),
        (
            &no_extension,
            xlsx(&["node_id"], 1),
            StatusCode::BAD_REQUEST,
            "IOTDA.014602",
        ),
        (
            "devices.xlsx",
            xlsx(&["node_id", "product_id"], 0),
            StatusCode::BAD_REQUEST,
            "IOTDA.014606",
        ),
    ];
    for (name, bytes, status, code) in cases {
        let r = upload(&app, name, &bytes).await;
        assert_eq!((r.status, r.code()), (status, code), "{name}: {}", r.body);
    }
    let long = format!("{}.xlsx", "a".repeat(56));
    let r = upload(&app, &long, &xlsx(&["node_id"], 1)).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.014605")
    );
    let full = upload(
        &app,
        "devices.xlsx",
        &xlsx(&["node_id", "product_id", "x"], 30_000),
    )
    .await;
    assert_eq!(
        full.status,
        StatusCode::CREATED,
        "exactly 30,000 rows is allowed"
    );
}

#[tokio::test]
async fn at_most_ten_files_are_kept_per_scope() {
    let app = TestApp::new().await;
    let bytes = xlsx(&["node_id", "product_id", "x"], 1);
    for i in 0..10 {
        assert_eq!(
            upload(&app, &format!("f{i}.xlsx"), &bytes).await.status,
            StatusCode::CREATED
        );
    }
    let r = upload(&app, "f10.xlsx", &bytes).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "IOTDA.014601")
    );
}

/// createDevices, freezeDevices and deleteDevices run on taskd's own executor: each row or
/// target applies its registry effect once, and a refused one fails alone with its code.
#[tokio::test]
async fn registry_tasks_act_on_the_registry() {
    let app = TestApp::new().await;
    let show_task = |id: String| {
        let app = &app;
        async move {
            app.call(Call::new("GET", &format!("{}/{id}", batchtasks())))
                .await
                .body
        }
    };
    let device = |id: &str| format!("/v5/iot/{P1}/devices/{id}");
    // A device the file names again: its row fails, the others go on.
    let r = app
        .call(
            Call::new("POST", &format!("/v5/iot/{P1}/devices"))
                .json(json!({"product_id": "product", "node_id": "node1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = upload(
        &app,
        "devices.xlsx",
        &xlsx(&["node_id", "product_id", "description"], 3),
    )
    .await;
    let file_id = r.body["file_id"].as_str().unwrap().to_string();
    let t = app
        .call(Call::new("POST", &batchtasks()).json(
            json!({"task_name": "reg", "task_type": "createDevices", "document_source": file_id}),
        ))
        .await;
    let id = t.body["task_id"].as_str().unwrap().to_string();

    assert_eq!(app.engine.run_registry_batch("test", 100).await.unwrap(), 3);
    assert_eq!(
        app.engine.run_registry_batch("test", 100).await.unwrap(),
        0,
        "each once"
    );
    let shown = show_task(id.clone()).await;
    assert_eq!(shown["batchtask"]["status"], "PartialSuccess", "{shown}");
    let details = shown["task_details"].as_array().unwrap();
    let by_target = |t: &str| details.iter().find(|d| d["target"] == t).unwrap().clone();
    assert_eq!(by_target("node0")["status"], "Success");
    assert_eq!(by_target("node2")["status"], "Success");
    assert_eq!(by_target("node1")["status"], "Fail");
    assert!(
        by_target("node1")["error"]["error_code"]
            .as_str()
            .unwrap()
            .starts_with("IOTDA."),
        "{}",
        by_target("node1")
    );
    let d0 = app.call(Call::new("GET", &device("product_node0"))).await;
    assert_eq!(d0.status, StatusCode::OK, "{}", d0.body);
    assert_eq!(d0.body["description"], "7");

    // Freeze two devices, one of which doesn't exist.
    let t = app
        .call(Call::new("POST", &batchtasks()).json(json!({
            "task_name": "fz", "task_type": "freezeDevices", "targets": ["product_node0", "ghost"]
        })))
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.body);
    let fz = t.body["task_id"].as_str().unwrap().to_string();
    assert_eq!(app.engine.run_registry_batch("test", 100).await.unwrap(), 2);
    assert_eq!(show_task(fz).await["batchtask"]["status"], "PartialSuccess");
    let d0 = app.call(Call::new("GET", &device("product_node0"))).await;
    assert_eq!(d0.body["status"], "FROZEN");

    let t = app
        .call(Call::new("POST", &batchtasks()).json(json!({
            "task_name": "del", "task_type": "deleteDevices", "targets": ["product_node0", "product_node2"]
        })))
        .await;
    let del = t.body["task_id"].as_str().unwrap().to_string();
    assert_eq!(app.engine.run_registry_batch("test", 100).await.unwrap(), 2);
    assert_eq!(show_task(del).await["batchtask"]["status"], "Success");
    let gone = app.call(Call::new("GET", &device("product_node0"))).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

/// A cell holding a NUL character (xlsx stores it escaped, `_x0000_`): no store keeps
/// one, so the upload is refused in IoTDA's envelope and stores nothing (on PostgreSQL
/// it was a 500).
#[tokio::test]
async fn a_nul_in_a_cell_is_refused_in_the_envelope() {
    let app = TestApp::new().await;
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (c, text) in ["node_id", "product_id", "description"].iter().enumerate() {
        sheet.write_string(0, c as u16, *text).unwrap();
    }
    for (c, text) in ["node1", "product", "a\u{0}b"].iter().enumerate() {
        sheet.write_string(1, c as u16, *text).unwrap();
    }
    let r = upload(&app, "devices.xlsx", &book.save_to_buffer().unwrap()).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "IOTDA.000006"),
        "{}",
        r.body
    );
    assert!(
        r.body["error_msg"].as_str().unwrap().contains("NUL"),
        "{}",
        r.body
    );
    let list = app
        .call(Call::new("GET", &format!("/v5/iot/{P1}/batchtask-files")))
        .await;
    assert_eq!(list.body["files"], json!([]), "{}", list.body);
}
