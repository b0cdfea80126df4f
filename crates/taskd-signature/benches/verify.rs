//! Server hot path: parse `Authorization` + `verify` for two typical SDK requests,
//! with headers in an `http::HeaderMap` as the HTTP layer hands them over.
//! Both requests are the real SDK vectors V2 and V3 of `sign-vectors.json`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};
use taskd_signature::*;

const SK: &str = "hwTestSecretKey0123456789abcdefghijklmnop";
const DATE: &str = "20240315T080910Z";
/// The real SDK User-Agent is much longer than the vectors' one; use a captured value.
const USER_AGENT: &str = "huaweicloud-usdk-python/3.0; os/Linux##1_SMP_PREEMPT_DYNAMIC_@0#x86_64 python/3.11.7 impl/CPython; app/0b3e02a6-7b25-475a-8e87-d43558dccc0d";

struct Fixture {
    method: &'static str,
    path: &'static str,
    query: &'static str,
    headers: HeaderMap,
    body: &'static [u8],
    authorization: String,
}

fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    // Unsigned headers a real request carries too.
    map.insert("accept", HeaderValue::from_static("*/*"));
    map.insert("accept-encoding", HeaderValue::from_static("gzip, deflate"));
    map.insert("connection", HeaderValue::from_static("keep-alive"));
    map
}

fn fixture(
    method: &'static str,
    path: &'static str,
    query: &[(&str, &str)],
    body: &'static [u8],
    key: SigningKey<'_>,
) -> Fixture {
    let headers = [
        ("Instance-Id", "inst-0001"),
        ("Content-Type", "application/json"),
        ("User-Agent", USER_AGENT),
        ("X-Project-Id", "0123456789abcdef0123456789abcdef"),
        ("X-Sdk-Date", DATE),
        ("Host", "127.0.0.1:8080"),
    ];
    let signed = sign(
        &SigningRequest {
            method,
            path,
            query,
            headers: &headers,
            body,
        },
        &key,
    );
    Fixture {
        method,
        path,
        query: signed.query_string.leak(),
        headers: header_map(&headers),
        body,
        authorization: signed.authorization,
    }
}

fn verify_once(f: &Fixture, policy: &VerifyPolicy<'_>) -> Result<(), SignatureError> {
    let auth = parse_authorization(&f.authorization)?;
    let req = ReceivedRequest {
        method: f.method,
        path: f.path,
        query: f.query,
        headers: &f.headers,
        body: f.body,
    };
    verify(&req, &auth, SK, policy)
}

fn bench(c: &mut Criterion) {
    const AK: &str = "HWTESTAK0123456789AB";
    let v2 = fixture(
        "POST",
        "/v5/iot/0123456789abcdef0123456789abcdef/batchtasks",
        &[],
        br#"{"task_name": "fw_upgrade_1", "task_type": "firmwareUpgrade", "targets": ["dev-001", "dev-002"], "document": {"package_ids": ["32822e5744a45ede319d2c50"]}, "task_policy": {"retry_count": 3, "retry_interval": 10}}"#,
        SigningKey::Plain {
            access_key: AK,
            secret_key: SK,
        },
    );
    let v3 = fixture(
        "GET",
        "/v5/iot/0123456789abcdef0123456789abcdef/batchtasks/64b7f1a2c3d4e5f6a7b8c9d0",
        &[
            ("task_detail_status", "Success"),
            ("limit", "10"),
            ("marker", "ffffffffffffffffffffffff"),
            ("offset", "0"),
        ],
        b"",
        SigningKey::Derived {
            access_key: AK,
            secret_key: SK,
            region: "cn-north-4",
            service: IOTDA_DERIVED_SERVICE,
        },
    );
    let policy = VerifyPolicy::new(parse_sdk_date(DATE).unwrap() + 3, IOTDA_DERIVED_SERVICE);
    // A benchmark of a failing path would be meaningless.
    verify_once(&v2, &policy).expect("v2 fixture verifies");
    verify_once(&v3, &policy).expect("v3 fixture verifies");

    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(1));
    group.bench_function("v2_post_create_batch_task_sdk_hmac", |b| {
        b.iter(|| verify_once(black_box(&v2), black_box(&policy)))
    });
    group.bench_function("v3_get_show_batch_task_v11_derived", |b| {
        b.iter(|| verify_once(black_box(&v3), black_box(&policy)))
    });
    group.finish();

    let mut group = c.benchmark_group("parts");
    group.bench_function("parse_authorization", |b| {
        b.iter(|| parse_authorization(black_box(&v2.authorization)))
    });
    group.bench_function("canonical_query_4_pairs", |b| {
        b.iter(|| canonical_query(black_box(v3.query)))
    });
    group.bench_function("payload_hash_212B", |b| {
        b.iter(|| payload_hash(black_box(&v2.headers), black_box(v2.body)))
    });
    group.bench_function("derive_key", |b| {
        b.iter(|| {
            derive_key(
                black_box("HWTESTAK0123456789AB"),
                black_box(SK),
                black_box("20240315/cn-north-4/iotdm"),
            )
        })
    });
    group.bench_function("header_lookup_x6", |b| {
        b.iter(|| {
            for n in [
                "content-type",
                "host",
                "instance-id",
                "user-agent",
                "x-project-id",
                "x-sdk-date",
            ] {
                black_box(black_box(&v2.headers).header(n));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
