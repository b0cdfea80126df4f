//! The seed corpora of the fuzz targets (`fuzz/corpus/<target>/`), made here from the
//! same builders the tests use, so that every seed has a known origin.
//!
//! `TASKD_WRITE_FUZZ_SEEDS=1 cargo test -p taskd-api --test it fuzz_seeds` (re)writes
//! them; otherwise the test checks that the committed corpus holds each seed as made here
//! (task files: read the same way, since a spreadsheet writer stamps times into them).

use std::path::PathBuf;

use serde_json::json;
use taskd_api::iotda::task_file::{Limits, read_task_file};
use taskd_signature::{SigningKey, SigningRequest, sign};

use super::files::{HEADER_AND_ROW, XLS_CELLS, sheet_xml, xls, xlsx, xlsx_parts, zip_of};

/// What a seed is for: its target and file name, and the input.
struct Seed {
    target: &'static str,
    name: &'static str,
    bytes: Vec<u8>,
}

fn seed(target: &'static str, name: &'static str, bytes: impl Into<Vec<u8>>) -> Seed {
    Seed {
        target,
        name,
        bytes: bytes.into(),
    }
}

/// A selector byte (the targets' first input byte) before a body.
fn selected(selector: u8, body: impl AsRef<[u8]>) -> Vec<u8> {
    let mut out = vec![selector];
    out.extend_from_slice(body.as_ref());
    out
}

fn json_bytes(v: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn signed_request_text() -> String {
    let headers = [
        ("Host", "127.0.0.1:8080"),
        ("X-Sdk-Date", "20240315T080910Z"),
        ("Content-Type", "application/json"),
    ];
    let body = br#"{"task_name":"t","task_type":"createDevices"}"#;
    let signed = sign(
        &SigningRequest {
            method: "POST",
            path: "/v5/iot/0123456789abcdef0123456789abcdef/batchtasks",
            query: &[("limit", "10")],
            headers: &headers,
            body,
        },
        &SigningKey::Derived {
            access_key: "AKFUZZ",
            secret_key: "SKFUZZ",
            region: "cn-north-4",
            service: "iotdm",
        },
    );
    let mut text = format!(
        "{}\nPOST\n/v5/iot/0123456789abcdef0123456789abcdef/batchtasks\n{}\n",
        signed.authorization, signed.query_string
    );
    for (k, v) in headers {
        text.push_str(&format!("{k}: {v}\n"));
    }
    text.push('\n');
    text.push_str(std::str::from_utf8(body).unwrap());
    text
}

fn seeds() -> Vec<Seed> {
    let mut all = vec![
        // signature: byte 0 even = sign/verify round trip of what follows, odd = a request
        // as text (Authorization, method, path, query, headers, blank line, body).
        seed(
            "signature",
            "round-trip",
            selected(0, b"\x01\x02GET /v5/iot/p/batchtasks a=1 b=2\x00\xff"),
        ),
        seed(
            "signature",
            "signed-request",
            selected(1, signed_request_text()),
        ),
        // query_headers: the query (and path) on the first line, then header lines.
        seed(
            "query_headers",
            "iotda-list",
            "limit=10&offset=0&marker=ffffffffffffffffffffffff&task_type=createDevices\n\
             X-Sdk-Date: 20240315T080910Z\n\
             Authorization: SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=00ff\n",
        ),
        seed(
            "query_headers",
            "legacy-list",
            "pageNo=2&pageSize=100&operationStatus=success&deviceId=d%201\n\
             app_key: app-1\n\
             Authorization: Bearer 0123456789abcdef\n",
        ),
        seed(
            "query_headers",
            "v11-scope",
            "/v5/iot/p/batchtasks/%2Fx\n\
             Authorization: V11-HMAC-SHA256 Credential=AK/20240315/cn-north-4/iotdm, SignedHeaders=host;x-sdk-date, Signature=ab\n",
        ),
        // legacy_parsers: byte 0 = 0 create body, 1 login form, 2 paging query, 3 time.
        seed(
            "legacy_parsers",
            "create-devices",
            selected(
                0,
                json_bytes(json!({
                    "fileId": "fw-1", "targets": {"devices": ["d1", "d2", "d1"]},
                    "policy": {"executeType": "now", "retryType": true, "retryTimes": 3}
                })),
            ),
        ),
        seed(
            "legacy_parsers",
            "create-groups-window",
            selected(
                0,
                json_bytes(json!({
                    "fileId": "sw-1",
                    "targets": {"deviceGroups": ["g1"], "deviceType": "t", "model": "m",
                                "manufacturerName": "acme"},
                    "policy": {"executeType": "custom", "startTime": "20250101T000000Z",
                               "endTime": "20250102T000000Z"}
                })),
            ),
        ),
        seed(
            "legacy_parsers",
            "login-form",
            selected(1, "appId=my+app&secret=a%2Bb%3Dc"),
        ),
        seed(
            "legacy_parsers",
            "paging",
            selected(2, "pageNo=92233720368547759&pageSize=100"),
        ),
        seed(
            "legacy_parsers",
            "compact-time",
            selected(3, "20151212T121212Z"),
        ),
        // task_file: a spreadsheet writer's xlsx, a hand-built one, a hand-built xls.
        seed(
            "task_file",
            "written.xlsx",
            xlsx(&["node_id", "product_id", "name"], 3),
        ),
        seed(
            "task_file",
            "built.xlsx",
            zip_of(xlsx_parts(sheet_xml(Some("A1:B2"), HEADER_AND_ROW))),
        ),
        seed("task_file", "built.xls", xls((0, 2, 0, 2), &XLS_CELLS)),
        // Rows naming their devices like generated targets (see taskd-engine's
        // a_generated_row_target_never_repeats_a_named_one).
        seed(
            "task_file",
            "row-names.xls",
            xls(
                (0, 4, 0, 2),
                &[
                    (0, 0, "node_id"),
                    (0, 1, "product_id"),
                    (1, 0, "row-2"),
                    (1, 1, "p"),
                    (2, 0, "row-2"),
                    (2, 1, "p"),
                    (3, 1, "p"),
                ],
            ),
        ),
    ];
    // json_bodies: byte 0 picks the body type, in the order of `fuzzing::JsonBody::ALL`.
    let bodies = [
        (
            "iotda-create-batch-task",
            json!({
                "task_name": "upgrade_1", "task_type": "firmwareUpgrade",
                "targets": ["d1", "d2"], "document": {"package_id": "p1"},
                "task_policy": {"schedule_time": "20231115T000000Z", "retry_count": 2,
                                "retry_interval": 10}
            }),
        ),
        ("iotda-control-targets", json!({"targets": ["d1", "d2"]})),
        (
            "iotda-add-device",
            json!({
                "node_id": "n1", "product_id": "p1", "device_name": "dev 1",
                "auth_info": {"auth_type": "SECRET", "secret": "s3cret-s3cret", "timeout": 300},
                "extension_info": {"a": 1}
            }),
        ),
        (
            "iotda-update-device",
            json!({"device_name": "renamed", "auth_info": {"secure_access": true, "timeout": 0}}),
        ),
        (
            "iotda-add-device-group",
            json!({"name": "group 1", "description": "d"}),
        ),
        (
            "native-claim",
            json!({"protocol": 2, "worker_id": "w-1", "task_types": ["firmwareUpgrade"],
                   "max": 10, "lease_seconds": 60, "wait_seconds": 5}),
        ),
        (
            "native-heartbeat",
            json!({"attempt": 1, "lease_seconds": 60, "progress": 50}),
        ),
        (
            "native-results",
            json!({"results": [
                {"sub_task_id": "000000000000000000000001", "attempt": 1, "status": "succeeded",
                 "output": "ok"},
                {"sub_task_id": "ffffffffffffffffffffffff", "attempt": 1, "status": "failed",
                 "error_code": "E1", "error_msg": "bad"}
            ]}),
        ),
        (
            "native-create-operation",
            json!({"service": "iotda-instance", "instance_id": "a1b2-c3", "type": "MODIFY",
                   "params": {"x": 1}, "operate_window": {"start_time": "22:00", "end_time": "02:00"},
                   "target_config": {"flavor": {"type": "s1.large", "size": 2}, "charge_mode": "prePaid"}}),
        ),
        (
            "native-device-attributes",
            json!({"deviceType": "meter", "model": "m1", "manufacturerName": "acme"}),
        ),
        (
            "legacy-create-upgrade-task",
            json!({"fileId": "f", "targets": {"devices": ["a"]},
                   "policy": {"executeType": "now", "retryType": false}}),
        ),
        (
            "legacy-refresh-token",
            json!({"appId": "app", "secret": "s", "refreshToken": "r"}),
        ),
        (
            "iotda-update-shadow-desired",
            json!({"shadow": [{"service_id": "Temp", "desired": {"target": 20, "mode": null},
                               "version": 1}]}),
        ),
        (
            "iotda-reset-device-secret",
            json!({"secret": "s3cret-s3cond", "force_disconnect": true,
                   "secret_type": "SECONDARY"}),
        ),
        (
            "iotda-create-ota-package",
            json!({"app_id": "app-1", "package_type": "modulePackage", "product_id": "p1",
                   "module_name": "m.1", "version": "V2.0",
                   "support_source_versions": ["V1.0", "V1.1"], "description": "d",
                   "custom_info": "c",
                   "file_location": {"obs_location": {"region_name": "cn-north-4",
                       "bucket_name": "abc", "object_key": "bbb/upgrade.bin",
                       "sign_method": "SHA256",
                       "sign": "ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789"}}}),
        ),
    ];
    for (i, (name, body)) in bodies.into_iter().enumerate() {
        all.push(seed(
            "json_bodies",
            name,
            selected(i as u8, json_bytes(body)),
        ));
    }
    all
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// How the task-file reader takes a file: equal for two builds of the same workbook.
fn reading(bytes: &[u8]) -> String {
    match read_task_file(bytes, &Limits::TASK_FILE) {
        Ok(sheet) => format!("{sheet:?}"),
        Err(e) => format!("refused: {e}"),
    }
}

#[test]
fn fuzz_seeds_are_in_the_corpus() {
    let write = std::env::var_os("TASKD_WRITE_FUZZ_SEEDS").is_some_and(|v| v == "1");
    for s in seeds() {
        let path = corpus_dir(s.target).join(s.name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &s.bytes).unwrap();
            continue;
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run TASKD_WRITE_FUZZ_SEEDS=1 cargo test -p taskd-api --test it fuzz_seeds",
                path.display()
            )
        });
        if s.target == "task_file" {
            assert_eq!(reading(&committed), reading(&s.bytes), "{}", path.display());
            assert!(
                !reading(&committed).starts_with("refused"),
                "{}",
                path.display()
            );
        } else {
            assert_eq!(committed, s.bytes, "{} is stale", path.display());
        }
        // Seeds stay small: the corpus is for a start, the fuzzer grows its own. (The
        // largest is the xls: a compound file is 20 KiB of mostly empty sectors.)
        assert!(
            committed.len() <= 24 << 10,
            "{} is {} bytes",
            path.display(),
            committed.len()
        );
    }
}
