//! A panic below a dialect's router answers 500 in that dialect's envelope, and the
//! server goes on serving. The panic is real: the app's clock panics while armed, and
//! every dialect reads the clock (the signature's date window, the legacy tokens).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use taskd_api::ApiConfig;
use taskd_core::{Clock, ManualClock, Timestamp};
use taskd_store::LegacyApp;

use crate::support::{Call, P1, Reply, START, TestApp};

const INST: &str = "0a1b2c3d-0000-4000-8000-00000000beef";
const APP: &str = "app-panics";
const SECRET: &str = "secret-panics-0123456789";

struct PanickingClock {
    clock: ManualClock,
    armed: Arc<AtomicBool>,
}

impl Clock for PanickingClock {
    fn now(&self) -> Timestamp {
        assert!(
            !self.armed.load(Ordering::SeqCst),
            "the test's clock panics while armed"
        );
        self.clock.now()
    }
}

async fn login(app: &TestApp) -> Reply {
    app.send(
        Request::builder()
            .method("POST")
            .uri("/iocm/app/sec/v1.1.0/login")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("appId={APP}&secret={SECRET}")))
            .unwrap(),
    )
    .await
}

/// A signed listing of each dialect: its name, path, query, and its 500 envelope.
type Listing = (
    &'static str,
    String,
    &'static [(&'static str, &'static str)],
    Value,
);

fn signed_calls() -> Vec<Listing> {
    let internal = |code: &str| json!({"error_code": code, "error_msg": "Internal server error."});
    vec![
        (
            "IoTDA",
            format!("/v5/iot/{P1}/batchtasks"),
            &[],
            internal("IOTDA.000001"),
        ),
        (
            "IoTDA instance tasks",
            format!("/v5/iot/{P1}/iotda-instances/{INST}/tasks"),
            &[],
            internal("IOTDA.000001"),
        ),
        (
            "DMS RabbitMQ",
            format!("/v2/{P1}/instances/{INST}/tasks"),
            &[],
            internal("DMS.00500000"),
        ),
        (
            "SWR",
            format!("/v2/{P1}/jobs"),
            &[],
            internal("SVCSTG.SWR.5000001"),
        ),
        (
            "native",
            format!("/taskd/v1/{P1}/operations"),
            &[("service", "swr")],
            internal("TASKD.000001"),
        ),
        (
            "IAM",
            "/v3/projects".to_string(),
            &[],
            json!({"error": {"code": "500", "message": "Internal server error",
                             "title": "Internal Server Error"}}),
        ),
    ]
}

#[tokio::test]
async fn a_panic_answers_500_in_each_dialects_envelope_and_the_server_goes_on() {
    let armed = Arc::new(AtomicBool::new(false));
    let app = TestApp::with_clock(ApiConfig::default(), |clock| {
        Arc::new(PanickingClock {
            clock,
            armed: armed.clone(),
        })
    })
    .await;
    app.store
        .legacy_app_put(&LegacyApp {
            app_id: APP.into(),
            project_id: P1.into(),
            secret_hash: taskd_api::legacy::hash_secret(SECRET),
            created_at: START,
            revoked_at: None,
        })
        .await
        .unwrap();

    armed.store(true, Ordering::SeqCst);
    for (dialect, path, query, envelope) in signed_calls() {
        let r = app
            .call(Call {
                query,
                ..Call::new("GET", &path)
            })
            .await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{dialect}");
        assert_eq!(r.body, envelope, "{dialect}");
        assert!(
            r.headers.contains_key("x-request-id"),
            "{dialect}: the answer went back through every layer"
        );
    }
    let r = login(&app).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        r.body,
        json!({"error_code": "50252", "error_desc": "Internal server error."})
    );

    armed.store(false, Ordering::SeqCst);
    for (dialect, path, query, _) in signed_calls() {
        let r = app
            .call(Call {
                query,
                ..Call::new("GET", &path)
            })
            .await;
        assert_eq!(r.status, StatusCode::OK, "{dialect}: {}", r.body);
    }
    let r = login(&app).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
