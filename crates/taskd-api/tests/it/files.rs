use axum::http::StatusCode;
use rust_xlsxwriter::Workbook;
use serde_json::json;
use taskd_engine::executors::registry::Registry;

use crate::support::*;

pub(crate) fn xlsx(header: &[&str], rows: usize) -> Vec<u8> {
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

/// A row naming its device `row-2` and a row naming none (or a repeat) used to get the
/// same target, `row-2`: the store's unique (task, target) refused the whole task.
#[tokio::test]
async fn a_row_named_like_a_generated_target_still_makes_a_task() {
    let app = TestApp::new().await;
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    for (r, node) in ["node_id", "row-2", "row-2", ""].iter().enumerate() {
        sheet.write_string(r as u32, 0, *node).unwrap();
        let product = if r == 0 { "product_id" } else { "p" };
        sheet.write_string(r as u32, 1, product).unwrap();
    }
    let r = upload(&app, "rows.xlsx", &book.save_to_buffer().unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let t = app
        .call(Call::new("POST", &batchtasks()).json(json!({
            "task_name": "reg", "task_type": "createDevices", "document_source": r.body["file_id"]
        })))
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.body);
    assert_eq!(t.body["task_progress"]["total"], 3, "{}", t.body);
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

    assert_eq!(
        app.engine
            .run_batch(&Registry::default(), "test", 100)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        app.engine
            .run_batch(&Registry::default(), "test", 100)
            .await
            .unwrap(),
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
    assert_eq!(
        app.engine
            .run_batch(&Registry::default(), "test", 100)
            .await
            .unwrap(),
        2
    );
    assert_eq!(show_task(fz).await["batchtask"]["status"], "PartialSuccess");
    let d0 = app.call(Call::new("GET", &device("product_node0"))).await;
    assert_eq!(d0.body["status"], "FROZEN");

    let t = app
        .call(Call::new("POST", &batchtasks()).json(json!({
            "task_name": "del", "task_type": "deleteDevices", "targets": ["product_node0", "product_node2"]
        })))
        .await;
    let del = t.body["task_id"].as_str().unwrap().to_string();
    assert_eq!(
        app.engine
            .run_batch(&Registry::default(), "test", 100)
            .await
            .unwrap(),
        2
    );
    assert_eq!(show_task(del).await["batchtask"]["status"], "Success");
    let gone = app.call(Call::new("GET", &device("product_node0"))).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

/// A row the registry executor can't make a device of fails alone, with the code IoTDA
/// gives invalid input (the engine records its own kind; the dialect renders its code).
#[tokio::test]
async fn an_invalid_row_fails_with_iotda_invalid_input() {
    let app = TestApp::new().await;
    // The third column is the secret: "7" is too short for one.
    let r = upload(
        &app,
        "bad.xlsx",
        &xlsx(&["node_id", "product_id", "secret"], 1),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let file_id = r.body["file_id"].as_str().unwrap().to_string();
    let t = app
        .call(Call::new("POST", &batchtasks()).json(
            json!({"task_name": "reg", "task_type": "createDevices", "document_source": file_id}),
        ))
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{}", t.body);
    let id = t.body["task_id"].as_str().unwrap().to_string();
    assert_eq!(
        app.engine
            .run_batch(&Registry::default(), "test", 100)
            .await
            .unwrap(),
        1
    );
    let shown = app
        .call(Call::new("GET", &format!("{}/{id}", batchtasks())))
        .await
        .body;
    assert_eq!(shown["batchtask"]["status"], "Fail", "{shown}");
    let error = &shown["task_details"][0]["error"];
    assert_eq!(error["error_code"], "IOTDA.000006", "{shown}");
    assert!(
        error["error_msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("Invalid input data.") && m.contains("secret")),
        "{shown}"
    );
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

// ---- hostile files ----------------------------------------------------------------------
//
// Each is built here, part by part, so that it can say what no spreadsheet writer would.
// Before the reader was bounded, the A1/XFD1048576 sheet, the far xls cell and the shared
// string named by every cell aborted the process (a dense grid or a copy per cell), and the
// bombs cost their whole inflated size before any refusal.

use std::io::{Cursor, Write};
use std::time::{Duration, Instant};

/// Writes one part of a zip.
pub(crate) type WriteEntry = Box<dyn Fn(&mut dyn Write)>;
pub(crate) type Part = (String, WriteEntry);

pub(crate) fn text_part(name: &str, text: &'static str) -> Part {
    (
        name.to_string(),
        Box::new(move |w: &mut dyn Write| w.write_all(text.as_bytes()).unwrap()),
    )
}

pub(crate) fn zip_of(parts: Vec<Part>) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, write) in parts {
        zip.start_file(name, options).unwrap();
        write(&mut zip);
    }
    zip.finish().unwrap().into_inner()
}

const SHEET_HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#;

/// The parts of a one-sheet workbook around `sheet` (the worksheet XML).
pub(crate) fn xlsx_parts(sheet: WriteEntry) -> Vec<Part> {
    vec![
        text_part(
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#,
        ),
        text_part(
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#,
        ),
        text_part(
            "xl/workbook.xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>"#,
        ),
        text_part(
            "xl/_rels/workbook.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#,
        ),
        ("xl/worksheets/sheet1.xml".to_string(), sheet),
    ]
}

/// A sheet whose XML is `body` between `<sheetData>` and its end.
pub(crate) fn sheet_xml(dimension: Option<&'static str>, body: &'static str) -> WriteEntry {
    Box::new(move |w: &mut dyn Write| {
        w.write_all(SHEET_HEAD.as_bytes()).unwrap();
        if let Some(d) = dimension {
            write!(w, r#"<dimension ref="{d}"/>"#).unwrap();
        }
        write!(w, "<sheetData>{body}</sheetData></worksheet>").unwrap();
    })
}

pub(crate) const HEADER_AND_ROW: &str = r#"<row r="1"><c r="A1" t="inlineStr"><is><t>node_id</t></is></c><c r="B1" t="inlineStr"><is><t>product_id</t></is></c></row><row r="2"><c r="A2" t="inlineStr"><is><t>n1</t></is></c><c r="B2" t="inlineStr"><is><t>p</t></is></c></row>"#;

/// Uploads `bytes`, expects the refusal, and proves the app still takes a good file.
async fn refused(app: &TestApp, what: &str, bytes: &[u8], code: &str, msg_has: &str) {
    let started = Instant::now();
    let r = upload(app, "hostile.xlsx", bytes).await;
    let took = started.elapsed();
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, code),
        "{what}: {}",
        r.body
    );
    let msg = r.body["error_msg"].as_str().unwrap();
    assert!(msg.contains(msg_has), "{what}: {msg}");
    assert!(took < Duration::from_secs(10), "{what} took {took:?}");
    let ok = upload(app, "after.xlsx", &xlsx(&["node_id", "product_id"], 1)).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{what}: then {}", ok.body);
    let path = format!(
        "/v5/iot/{P1}/batchtask-files/{}",
        ok.body["file_id"].as_str().unwrap()
    );
    app.call(Call::new("DELETE", &path)).await;
}

#[tokio::test]
async fn a_hand_built_xlsx_is_read() {
    let app = TestApp::new().await;
    let bytes = zip_of(xlsx_parts(sheet_xml(Some("A1:B2"), HEADER_AND_ROW)));
    let r = upload(&app, "built.xlsx", &bytes).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn a_cell_at_xfd1048576_is_refused_without_a_dense_grid() {
    let app = TestApp::new().await;
    let far = zip_of(xlsx_parts(sheet_xml(
        None,
        r#"<row r="1"><c r="A1" t="inlineStr"><is><t>node_id</t></is></c></row><row r="1048576"><c r="XFD1048576" t="inlineStr"><is><t>x</t></is></c></row>"#,
    )));
    assert!(far.len() < 2_000, "{} bytes", far.len());
    refused(
        &app,
        "A1 and XFD1048576",
        &far,
        "IOTDA.014604",
        "row 1048576",
    )
    .await;
    let wide = zip_of(xlsx_parts(sheet_xml(
        None,
        r#"<row r="1"><c r="A1" t="inlineStr"><is><t>node_id</t></is></c><c r="XFD1" t="inlineStr"><is><t>x</t></is></c></row><row r="2"><c r="A2"><v>1</v></c></row>"#,
    )));
    refused(
        &app,
        "a header to XFD",
        &wide,
        "IOTDA.014603",
        "column 16384",
    )
    .await;
}

#[tokio::test]
async fn a_declared_dimension_past_the_rows_is_refused_before_any_cell() {
    let app = TestApp::new().await;
    let bytes = zip_of(xlsx_parts(sheet_xml(Some("A1:B1048576"), HEADER_AND_ROW)));
    refused(
        &app,
        "A1:B1048576",
        &bytes,
        "IOTDA.014604",
        "declared dimension",
    )
    .await;
    let edge = zip_of(xlsx_parts(sheet_xml(Some("A1:AF30001"), HEADER_AND_ROW)));
    let r = upload(&app, "edge.xlsx", &edge).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "30,001 rows by 32 columns: {}",
        r.body
    );
}

#[tokio::test]
async fn a_sheet_bomb_is_refused_at_the_inflated_limit() {
    let app = TestApp::new().await;
    // 2,000,000 rows (about 100 MB of XML) in about 0.2 MB.
    let sheet = Box::new(|w: &mut dyn Write| {
        w.write_all(SHEET_HEAD.as_bytes()).unwrap();
        w.write_all(b"<sheetData>").unwrap();
        let row = br#"<row><c t="inlineStr"><is><t>node</t></is></c><c><v>1</v></c></row>"#;
        let chunk: Vec<u8> = row.iter().copied().cycle().take(row.len() * 1000).collect();
        for _ in 0..2_000 {
            w.write_all(&chunk).unwrap();
        }
        w.write_all(b"</sheetData></worksheet>").unwrap();
    });
    let bytes = zip_of(xlsx_parts(sheet));
    assert!(bytes.len() < 2_000_000, "{} bytes", bytes.len());
    refused(
        &app,
        "sheet bomb",
        &bytes,
        "IOTDA.014603",
        "inflates to more than",
    )
    .await;
}

#[tokio::test]
async fn a_shared_strings_bomb_is_refused_at_the_inflated_limit() {
    let app = TestApp::new().await;
    let mut parts = xlsx_parts(sheet_xml(
        None,
        r#"<row r="1"><c r="A1" t="s"><v>0</v></c></row><row r="2"><c r="A2" t="s"><v>0</v></c></row>"#,
    ));
    parts.push((
        "xl/sharedStrings.xml".into(),
        Box::new(|w: &mut dyn Write| {
            w.write_all(br#"<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>"#).unwrap();
            let block = vec![b'a'; 1 << 20];
            for _ in 0..80 {
                w.write_all(&block).unwrap();
            }
            w.write_all(b"</t></si></sst>").unwrap();
        }),
    ));
    refused(
        &app,
        "sharedStrings bomb",
        &zip_of(parts),
        "IOTDA.014603",
        "inflates to more than",
    )
    .await;
}

#[tokio::test]
async fn a_shared_string_named_by_every_cell_stops_at_the_text_limit() {
    let app = TestApp::new().await;
    // 4 MiB once, named by 2 x 30,000 cells: 240 GB if each cell copied it.
    let mut parts = xlsx_parts(Box::new(|w: &mut dyn Write| {
        w.write_all(SHEET_HEAD.as_bytes()).unwrap();
        w.write_all(b"<sheetData>").unwrap();
        for r in 1..=30_001 {
            write!(
                w,
                r#"<row r="{r}"><c r="A{r}" t="s"><v>0</v></c><c r="B{r}" t="s"><v>0</v></c></row>"#
            )
            .unwrap();
        }
        w.write_all(b"</sheetData></worksheet>").unwrap();
    }));
    parts.push((
        "xl/sharedStrings.xml".into(),
        Box::new(|w: &mut dyn Write| {
            w.write_all(br#"<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>"#).unwrap();
            w.write_all(&vec![b'a'; 4 << 20]).unwrap();
            w.write_all(b"</t></si></sst>").unwrap();
        }),
    ));
    refused(
        &app,
        "one string everywhere",
        &zip_of(parts),
        "IOTDA.014603",
        "bytes of text",
    )
    .await;
}

#[tokio::test]
async fn more_shared_strings_than_cells_are_refused_before_calamine_reads_them() {
    let app = TestApp::new().await;
    let mut parts = xlsx_parts(sheet_xml(None, HEADER_AND_ROW));
    parts.push((
        "xl/sharedStrings.xml".into(),
        Box::new(|w: &mut dyn Write| {
            w.write_all(br#"<?xml version="1.0" encoding="UTF-8"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#).unwrap();
            let block = b"<si><t/></si>".repeat(10_000);
            for _ in 0..100 {
                w.write_all(&block).unwrap();
            }
            w.write_all(b"</sst>").unwrap();
        }),
    ));
    refused(
        &app,
        "1,000,000 empty strings",
        &zip_of(parts),
        "IOTDA.014603",
        "shared strings",
    )
    .await;
}

#[tokio::test]
async fn too_many_zip_entries_are_refused() {
    let app = TestApp::new().await;
    let mut parts = xlsx_parts(sheet_xml(None, HEADER_AND_ROW));
    for i in 0..1_001 {
        parts.push(text_part(&format!("pad/{i}"), ""));
    }
    refused(
        &app,
        "1,006 entries",
        &zip_of(parts),
        "IOTDA.014603",
        "entries",
    )
    .await;
}

#[tokio::test]
async fn a_zip_of_end_records_is_refused_in_linear_time() {
    let app = TestApp::new().await;
    // The zip reader tries every end-of-directory record and scans the file for each.
    let mut bytes = b"PK\x03\x04".to_vec();
    for _ in 0..100_000 {
        bytes.extend_from_slice(b"PK\x05\x06\0\0\0\0\x01\0\x01\0\0\0\0\0\0\0\0\0\0\0");
    }
    refused(
        &app,
        "2.2 MB of end records",
        &bytes,
        "IOTDA.014603",
        "end-of-directory",
    )
    .await;
}

// ---- xls ----------------------------------------------------------------------------------

fn biff(out: &mut Vec<u8>, typ: u16, data: &[u8]) {
    out.extend_from_slice(&typ.to_le_bytes());
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.extend_from_slice(data);
}

fn label(row: u16, col: u16, text: &str) -> Vec<u8> {
    let mut d = Vec::new();
    for v in [row, col, 0, text.len() as u16] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    d.push(0); // 8-bit characters
    d.extend_from_slice(text.as_bytes());
    d
}

/// A BIFF8 workbook of one sheet: its DIMENSIONS record (first row, last row + 1, first
/// column, last column + 1) and LABEL cells, in a compound file.
pub(crate) fn xls(dimensions: (u32, u32, u16, u16), cells: &[(u16, u16, &str)]) -> Vec<u8> {
    let bof = |dt: u16| {
        let mut d = vec![0x00, 0x06];
        d.extend_from_slice(&dt.to_le_bytes());
        d.extend_from_slice(&[0; 12]);
        d
    };
    let mut globals = Vec::new();
    biff(&mut globals, 0x0809, &bof(0x0005));
    let boundsheet_at = globals.len() + 4;
    biff(&mut globals, 0x0085, b"\0\0\0\0\0\0\x06\0Sheet1");
    biff(&mut globals, 0x000A, &[]);
    let sheet_at = globals.len() as u32;
    globals[boundsheet_at..boundsheet_at + 4].copy_from_slice(&sheet_at.to_le_bytes());
    let mut stream = globals;
    biff(&mut stream, 0x0809, &bof(0x0010));
    let (rf, rl, cf, cl) = dimensions;
    let mut d = Vec::new();
    d.extend_from_slice(&rf.to_le_bytes());
    d.extend_from_slice(&rl.to_le_bytes());
    d.extend_from_slice(&cf.to_le_bytes());
    d.extend_from_slice(&cl.to_le_bytes());
    d.extend_from_slice(&[0, 0]);
    biff(&mut stream, 0x0200, &d);
    for (row, col, text) in cells {
        biff(&mut stream, 0x0204, &label(*row, *col, text));
    }
    biff(&mut stream, 0x000A, &[]);
    let mut file = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
    file.create_stream("/Workbook")
        .unwrap()
        .write_all(&stream)
        .unwrap();
    file.flush().unwrap();
    file.into_inner().into_inner()
}

pub(crate) const XLS_CELLS: [(u16, u16, &str); 4] = [
    (0, 0, "node_id"),
    (0, 1, "product_id"),
    (1, 0, "n1"),
    (1, 1, "p"),
];

#[tokio::test]
async fn a_hand_built_xls_is_read() {
    let app = TestApp::new().await;
    let r = upload(&app, "built.xls", &xls((0, 2, 0, 2), &XLS_CELLS)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let t = app
        .call(Call::new("POST", &batchtasks()).json(json!({
            "task_name": "x", "task_type": "createDevices",
            "document_source": r.body["file_id"]
        })))
        .await;
    assert_eq!(t.body["task_progress"]["total"], 1, "{}", t.body);
}

#[tokio::test]
async fn a_far_xls_cell_or_dimension_is_refused_without_a_dense_grid() {
    let app = TestApp::new().await;
    let mut far = XLS_CELLS.to_vec();
    far.push((65_535, 65_535, "x"));
    refused(
        &app,
        "xls cell at 65535/65535",
        &xls((0, 2, 0, 2), &far),
        "IOTDA.014604",
        "row 65536",
    )
    .await;
    let mut wide = XLS_CELLS.to_vec();
    wide.push((1, 40_000, "x"));
    refused(
        &app,
        "xls cell in column 40001",
        &xls((0, 2, 0, 2), &wide),
        "IOTDA.014603",
        "column 40001",
    )
    .await;
    refused(
        &app,
        "xls dimension of 2^31 rows",
        &xls((0, 1 << 31, 0, 200), &XLS_CELLS),
        "IOTDA.014604",
        "declared dimension",
    )
    .await;
    refused(
        &app,
        "inverted xls dimension",
        &xls((5, 2, 0, 2), &XLS_CELLS),
        "IOTDA.014603",
        "inverted",
    )
    .await;
}
