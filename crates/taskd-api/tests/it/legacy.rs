//! The legacy IoT northbound API v1.5.0 over HTTP: apps and tokens, flow control, upgrade
//! tasks with every validation and code, reading them, windows on virtual time, stop, and
//! isolation between projects.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use taskd_api::ApiConfig;
use taskd_core::{SubTaskState, Timestamp};
use taskd_engine::ClaimRequest;
use taskd_store::{LegacyApp, RunOutcome, RunResult};

use crate::support::{Call, P1, P2, Reply, START, TestApp};

const APP1: &str = "app-one";
const SECRET1: &str = "secret-one-0123456789";
const APP2: &str = "app-two";
const SECRET2: &str = "secret-two-0123456789";
const OPS: &str = "/iodm/northbound/v1.5.0/operations";

async fn legacy_app(config: ApiConfig) -> TestApp {
    let app = TestApp::with_config(config).await;
    for (id, secret, project) in [(APP1, SECRET1, P1), (APP2, SECRET2, P2)] {
        app.store
            .legacy_app_put(&LegacyApp {
                app_id: id.into(),
                project_id: project.into(),
                secret_hash: taskd_api::legacy::hash_secret(secret),
                created_at: START,
                revoked_at: None,
            })
            .await
            .unwrap();
    }
    app
}

async fn login_raw(app: &TestApp, body: &str) -> Reply {
    app.send(
        Request::builder()
            .method("POST")
            .uri("/iocm/app/sec/v1.1.0/login")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(Body::from(body.to_owned()))
            .unwrap(),
    )
    .await
}

async fn login(app: &TestApp, app_id: &str, secret: &str) -> Value {
    let r = login_raw(app, &format!("appId={app_id}&secret={secret}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

async fn refresh(app: &TestApp, body: &str) -> Reply {
    app.send(
        Request::builder()
            .method("POST")
            .uri("/iocm/app/sec/v1.1.0/refreshToken")
            .header("Content-Type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap(),
    )
    .await
}

/// A legacy call: `app_key` and `Authorization: Bearer` when given.
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    app_key: Option<&str>,
    token: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json");
    if let Some(k) = app_key {
        req = req.header("app_key", k);
    }
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    app.send(req.body(Body::from(body)).unwrap()).await
}

/// A signed-in app.
struct Na<'a> {
    app: &'a TestApp,
    app_id: &'static str,
    token: String,
}

impl<'a> Na<'a> {
    async fn new(app: &'a TestApp, app_id: &'static str, secret: &str) -> Na<'a> {
        let t = login(app, app_id, secret).await;
        Na {
            app,
            app_id,
            token: t["accessToken"].as_str().unwrap().to_owned(),
        }
    }
    async fn get(&self, path: &str) -> Reply {
        call(
            self.app,
            "GET",
            path,
            Some(self.app_id),
            Some(&self.token),
            None,
        )
        .await
    }
    async fn post(&self, path: &str, body: Value) -> Reply {
        call(
            self.app,
            "POST",
            path,
            Some(self.app_id),
            Some(&self.token),
            Some(body),
        )
        .await
    }
    async fn put(&self, path: &str) -> Reply {
        call(
            self.app,
            "PUT",
            path,
            Some(self.app_id),
            Some(&self.token),
            None,
        )
        .await
    }
    async fn create(&self, kind: &str, body: Value) -> Reply {
        self.post(&format!("{OPS}/{kind}"), body).await
    }
    async fn create_ok(&self, body: Value) -> String {
        let r = self.create("firmwareUpgrade", body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["operationId"].as_str().unwrap().to_owned()
    }
}

fn assert_error(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!((r.status, r.code()), (status, code), "{}", r.body);
    assert!(
        r.body["error_desc"].as_str().is_some_and(|d| !d.is_empty()),
        "{}",
        r.body
    );
}

/// Registers devices `prod_<node>` in P1 through IoTDA.
async fn add_devices(app: &TestApp, nodes: &[&str]) {
    let path = format!("/v5/iot/{P1}/devices");
    for node in nodes {
        let r = app
            .call(Call::new("POST", &path).json(json!({"product_id": "prod", "node_id": node})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
}

async fn set_attributes(app: &TestApp, device: &str, body: Value) -> Reply {
    let path = format!("/taskd/v1/{P1}/devices/{device}/attributes");
    app.call(Call::new("PUT", &path).json(body)).await
}

async fn claim(app: &TestApp, max: u32) -> Vec<taskd_store::ClaimedSubTask> {
    app.engine
        .claim(ClaimRequest {
            worker_id: "w1".into(),
            project_id: Some(P1.into()),
            kinds: vec!["firmwareUpgrade".into(), "softwareUpgrade".into()],
            max,
            lease: std::time::Duration::from_secs(600),
            wait: std::time::Duration::ZERO,
        })
        .await
        .unwrap()
}

async fn report(app: &TestApp, c: &taskd_store::ClaimedSubTask, ok: bool) {
    let outcome = if ok {
        RunOutcome::Succeeded {
            output: Some("upgraded to V2".into()),
        }
    } else {
        RunOutcome::Failed {
            error_code: "E_FLASH".into(),
            error_msg: "flash write failed".into(),
            output: None,
        }
    };
    app.engine
        .report(
            Some(P1.into()),
            vec![RunResult {
                sub_task_id: c.id,
                attempt: c.attempt,
                outcome,
                effect: None,
            }],
        )
        .await
        .unwrap();
}

fn devices_body(devices: &[&str]) -> Value {
    json!({"fileId": "pkg-v2", "targets": {"devices": devices}})
}

fn compact(t: Timestamp) -> String {
    t.to_datetime()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap()
}

// ---- apps and tokens ---------------------------------------------------------------------

#[tokio::test]
async fn login_returns_tokens_and_checks_its_input() {
    let app = legacy_app(ApiConfig::default()).await;
    let t = login(&app, APP1, SECRET1).await;
    assert_eq!(t["tokenType"], "bearer");
    assert_eq!(t["expiresIn"], 3600);
    assert_eq!(t["scope"], "default");
    assert!(t["accessToken"].as_str().unwrap().len() >= 32);
    assert!(t["refreshToken"].as_str().unwrap().len() >= 32);
    assert_ne!(t["accessToken"], t["refreshToken"]);

    assert_error(
        &login_raw(&app, "appId=app-one").await,
        StatusCode::BAD_REQUEST,
        "102202",
    );
    assert_error(
        &login_raw(&app, "appId=&secret=x").await,
        StatusCode::BAD_REQUEST,
        "102202",
    );
    assert_error(
        &login_raw(&app, "").await,
        StatusCode::BAD_REQUEST,
        "102202",
    );
    assert_error(
        &login_raw(&app, "appId=app-one&secret=wrong").await,
        StatusCode::UNAUTHORIZED,
        "100208",
    );
    assert_error(
        &login_raw(&app, "appId=nobody&secret=x").await,
        StatusCode::UNAUTHORIZED,
        "100208",
    );
    // Percent-encoding is decoded.
    let r = login_raw(&app, "appId=app%2Done&secret=secret%2Done%2D0123456789").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn only_the_last_access_token_is_valid_and_tokens_expire() {
    let app = legacy_app(ApiConfig::default()).await;
    let first = login(&app, APP1, SECRET1).await;
    let t1 = first["accessToken"].as_str().unwrap();
    assert_eq!(
        call(&app, "GET", OPS, Some(APP1), Some(t1), None)
            .await
            .status,
        StatusCode::OK
    );

    let second = login(&app, APP1, SECRET1).await;
    let t2 = second["accessToken"].as_str().unwrap();
    assert_error(
        &call(&app, "GET", OPS, Some(APP1), Some(t1), None).await,
        StatusCode::FORBIDDEN,
        "1010005",
    );
    assert_eq!(
        call(&app, "GET", OPS, Some(APP1), Some(t2), None)
            .await
            .status,
        StatusCode::OK
    );

    // Refresh: appId, secret and the last refresh token; the old tokens end.
    let r = refresh(
        &app,
        &json!({"appId": APP1, "secret": SECRET1, "refreshToken": second["refreshToken"]})
            .to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for k in [
        "scope",
        "tokenType",
        "expiresIn",
        "accessToken",
        "refreshToken",
    ] {
        assert!(!r.body[k].is_null(), "{k} in {}", r.body);
    }
    let t3 = r.body["accessToken"].as_str().unwrap().to_owned();
    assert_error(
        &call(&app, "GET", OPS, Some(APP1), Some(t2), None).await,
        StatusCode::FORBIDDEN,
        "1010005",
    );
    assert_eq!(
        call(&app, "GET", OPS, Some(APP1), Some(&t3), None)
            .await
            .status,
        StatusCode::OK
    );
    // A used refresh token is spent.
    let again = refresh(
        &app,
        &json!({"appId": APP1, "secret": SECRET1, "refreshToken": second["refreshToken"]})
            .to_string(),
    )
    .await;
    assert_error(&again, StatusCode::UNAUTHORIZED, "100208");
    let wrong_secret = refresh(
        &app,
        &json!({"appId": APP1, "secret": "nope", "refreshToken": r.body["refreshToken"]})
            .to_string(),
    )
    .await;
    assert_error(&wrong_secret, StatusCode::UNAUTHORIZED, "100208");
    assert_error(
        &refresh(&app, &json!({"appId": APP1, "secret": SECRET1}).to_string()).await,
        StatusCode::BAD_REQUEST,
        "102202",
    );
    assert_error(
        &refresh(&app, "appId=x").await,
        StatusCode::BAD_REQUEST,
        "50400",
    );

    // The access token lives 3600 s.
    app.clock.advance_millis(3_599_000);
    assert_eq!(
        call(&app, "GET", OPS, Some(APP1), Some(&t3), None)
            .await
            .status,
        StatusCode::OK
    );
    app.clock.advance_millis(1_000);
    assert_error(
        &call(&app, "GET", OPS, Some(APP1), Some(&t3), None).await,
        StatusCode::FORBIDDEN,
        "1010005",
    );
    // The refresh token still works (24 h) ...
    let r2 = refresh(
        &app,
        &json!({"appId": APP1, "secret": SECRET1, "refreshToken": r.body["refreshToken"]})
            .to_string(),
    )
    .await;
    assert_eq!(r2.status, StatusCode::OK, "{}", r2.body);
    // ... but not after 24 h.
    app.clock.advance_millis(24 * 3_600_000);
    let r3 = refresh(
        &app,
        &json!({"appId": APP1, "secret": SECRET1, "refreshToken": r2.body["refreshToken"]})
            .to_string(),
    )
    .await;
    assert_error(&r3, StatusCode::UNAUTHORIZED, "100208");
}

#[tokio::test]
async fn calls_need_app_key_and_the_apps_own_bearer_token() {
    let app = legacy_app(ApiConfig::default()).await;
    let na = Na::new(&app, APP1, SECRET1).await;
    let other = Na::new(&app, APP2, SECRET2).await;
    assert_error(
        &call(&app, "GET", OPS, None, Some(&na.token), None).await,
        StatusCode::UNAUTHORIZED,
        "100025",
    );
    assert_error(
        &call(&app, "GET", OPS, Some(APP1), None, None).await,
        StatusCode::FORBIDDEN,
        "1010005",
    );
    assert_error(
        &call(&app, "GET", OPS, Some(APP1), Some("forged"), None).await,
        StatusCode::FORBIDDEN,
        "1010005",
    );
    assert_error(
        &call(&app, "GET", OPS, Some(APP1), Some(&other.token), None).await,
        StatusCode::FORBIDDEN,
        "1010005",
    );
    assert_error(
        &call(&app, "GET", OPS, Some("ghost"), Some(&na.token), None).await,
        StatusCode::FORBIDDEN,
        "1010005",
    );
    // Not a bearer token.
    let r = app
        .send(
            Request::builder()
                .uri(OPS)
                .header("app_key", APP1)
                .header("Authorization", format!("Basic {}", na.token))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "1010005");
    assert_eq!(na.get(OPS).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_revoked_app_is_frozen() {
    let app = legacy_app(ApiConfig::default()).await;
    let na = Na::new(&app, APP1, SECRET1).await;
    assert!(app.store.legacy_app_revoke(APP1, START).await.unwrap());
    assert_error(&na.get(OPS).await, StatusCode::FORBIDDEN, "1010005");
    assert_error(
        &login_raw(&app, &format!("appId={APP1}&secret={SECRET1}")).await,
        StatusCode::BAD_REQUEST,
        "100247",
    );
    // A wrong secret for a frozen app still says only "wrong".
    assert_error(
        &login_raw(&app, &format!("appId={APP1}&secret=nope")).await,
        StatusCode::UNAUTHORIZED,
        "100208",
    );
}

#[tokio::test]
async fn tokens_are_stored_hashed() {
    let app = legacy_app(ApiConfig::default()).await;
    let t = login(&app, APP1, SECRET1).await;
    let stored = app.store.legacy_tokens_get(APP1).await.unwrap().unwrap();
    let access = t["accessToken"].as_str().unwrap();
    let refresh_token = t["refreshToken"].as_str().unwrap();
    assert!(!stored.access_hash.contains(access) && !access.contains(&stored.access_hash));
    assert_ne!(stored.refresh_hash, refresh_token);
    let secret_hash = app
        .store
        .legacy_app_get(APP1)
        .await
        .unwrap()
        .unwrap()
        .secret_hash;
    assert!(!secret_hash.contains(SECRET1));
}

// ---- flow control ------------------------------------------------------------------------

#[tokio::test]
async fn flow_control_answers_403_1010009_per_app_and_window() {
    let app = legacy_app(ApiConfig {
        legacy_rate_limit: 3,
        ..ApiConfig::default()
    })
    .await;
    let na = Na::new(&app, APP1, SECRET1).await;
    let other = Na::new(&app, APP2, SECRET2).await;
    for _ in 0..3 {
        assert_eq!(na.get(OPS).await.status, StatusCode::OK);
    }
    let r = na.get(OPS).await;
    assert_error(&r, StatusCode::FORBIDDEN, "1010009");
    assert_ne!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Creates count too, and a throttled create writes nothing.
    assert_error(
        &na.create("firmwareUpgrade", devices_body(&["x"])).await,
        StatusCode::FORBIDDEN,
        "1010009",
    );
    // Another app has its own budget.
    assert_eq!(other.get(OPS).await.status, StatusCode::OK);
    // Login is not throttled.
    login(&app, APP2, SECRET2).await;
    // The next 60 s window starts afresh.
    app.clock.advance_millis(60_000);
    assert_eq!(na.get(OPS).await.status, StatusCode::OK);
    assert_eq!(na.get(OPS).await.body["totalCount"], 0);
}

#[tokio::test]
async fn default_flow_control_is_100_calls_a_minute() {
    let app = legacy_app(ApiConfig::default()).await;
    let na = Na::new(&app, APP1, SECRET1).await;
    for i in 0..100 {
        assert_eq!(na.get(OPS).await.status, StatusCode::OK, "call {i}");
    }
    assert_error(&na.get(OPS).await, StatusCode::FORBIDDEN, "1010009");
}

// ---- creating upgrade tasks --------------------------------------------------------------

#[tokio::test]
async fn every_create_validation_has_its_code_and_writes_nothing() {
    let app = legacy_app(ApiConfig::default()).await;
    add_devices(&app, &["a"]).await;
    let na = Na::new(&app, APP1, SECRET1).await;
    let now = app.clock_now();
    let future = |secs: i64| compact(now.plus_millis(secs * 1000));
    let many: Vec<String> = (0..257).map(|i| format!("d{i}")).collect();
    let long = "x".repeat(257);
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (json!("not an object"), StatusCode::BAD_REQUEST, "120015"),
        (
            json!({"targets": {"devices": ["prod_a"]}}),
            StatusCode::BAD_REQUEST,
            "120015",
        ),
        (
            json!({"fileId": "", "targets": {"devices": ["prod_a"]}}),
            StatusCode::BAD_REQUEST,
            "120015",
        ),
        (
            json!({"fileId": long, "targets": {"devices": ["prod_a"]}}),
            StatusCode::BAD_REQUEST,
            "120015",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": "prod_a"}}),
            StatusCode::BAD_REQUEST,
            "120015",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": [""]}}),
            StatusCode::BAD_REQUEST,
            "120015",
        ),
        (json!({"fileId": "f"}), StatusCode::BAD_REQUEST, "123022"),
        (
            json!({"fileId": "f", "targets": {}}),
            StatusCode::BAD_REQUEST,
            "123022",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": [], "deviceGroups": []}}),
            StatusCode::BAD_REQUEST,
            "123022",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": ["prod_a"], "deviceGroups": ["g"],
            "deviceType": "t", "model": "m", "manufacturerName": "n"}}),
            StatusCode::BAD_REQUEST,
            "123023",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": many}}),
            StatusCode::BAD_REQUEST,
            "123024",
        ),
        (
            json!({"fileId": "f", "targets": {"deviceGroups": many, "deviceType": "t", "model": "m",
            "manufacturerName": "n"}}),
            StatusCode::BAD_REQUEST,
            "123024",
        ),
        (
            json!({"fileId": "f", "targets": {"deviceGroups": ["g"], "deviceType": "t", "model": "m"}}),
            StatusCode::BAD_REQUEST,
            "123019",
        ),
        (
            json!({"fileId": "f", "targets": {"deviceGroups": ["g"], "model": "m", "manufacturerName": "n"}}),
            StatusCode::BAD_REQUEST,
            "123020",
        ),
        (
            json!({"fileId": "f", "targets": {"deviceGroups": ["g"], "deviceType": "t", "manufacturerName": "n"}}),
            StatusCode::BAD_REQUEST,
            "123021",
        ),
        (
            json!({"fileId": "f", "targets": {"deviceGroups": ["g"], "deviceType": long, "model": "m",
            "manufacturerName": "n"}}),
            StatusCode::BAD_REQUEST,
            "120015",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": ["prod_a"]}, "policy": {}}),
            StatusCode::BAD_REQUEST,
            "123025",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": ["prod_a"]}, "policy": {"executeType": "later"}}),
            StatusCode::BAD_REQUEST,
            "123025",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": ["prod_a"]}, "policy": {"executeType": "custom"}}),
            StatusCode::BAD_REQUEST,
            "123026",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": ["prod_a"]}, "policy": {"executeType": "custom",
            "startTime": future(60)}}),
            StatusCode::BAD_REQUEST,
            "123026",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": ["prod_a"]}, "policy": {"executeType": "custom",
            "startTime": "2026-01-01 10:00", "endTime": future(120)}}),
            StatusCode::BAD_REQUEST,
            "123026",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": ["prod_a"]}, "policy": {"executeType": "custom",
            "startTime": future(60), "endTime": "20260231T000000Z"}}),
            StatusCode::BAD_REQUEST,
            "123026",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": ["prod_a"]}, "policy": {"executeType": "custom",
            "startTime": future(120), "endTime": future(60)}}),
            StatusCode::BAD_REQUEST,
            "123032",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": ["prod_a"]}, "policy": {"executeType": "custom",
            "startTime": future(-60), "endTime": future(60)}}),
            StatusCode::BAD_REQUEST,
            "123033",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": ["prod_a"]}, "policy": {"executeType": "now",
            "retryType": true}}),
            StatusCode::BAD_REQUEST,
            "123028",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": ["prod_a"]}, "policy": {"executeType": "now",
            "retryType": true, "retryTimes": 0}}),
            StatusCode::BAD_REQUEST,
            "123028",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": ["prod_a"]}, "policy": {"executeType": "now",
            "retryType": true, "retryTimes": 6}}),
            StatusCode::BAD_REQUEST,
            "123028",
        ),
        (
            json!({"fileId": "f", "targets": {"devices": ["prod_a", "ghost"]}}),
            StatusCode::NOT_FOUND,
            "123002",
        ),
        (
            json!({"fileId": "f", "targets": {"deviceGroups": ["no such group"], "deviceType": "t",
            "model": "m", "manufacturerName": "n"}}),
            StatusCode::NOT_FOUND,
            "123002",
        ),
    ];
    for (body, status, code) in &cases {
        let r = na.create("firmwareUpgrade", body.clone()).await;
        assert_eq!(
            (r.status, r.code()),
            (*status, *code),
            "{body} -> {}",
            r.body
        );
    }
    // Malformed JSON.
    let r = app
        .send(
            Request::builder()
                .method("POST")
                .uri(format!("{OPS}/softwareUpgrade"))
                .header("app_key", APP1)
                .header("Authorization", format!("Bearer {}", na.token))
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "120015");
    let list = na.get(OPS).await;
    assert_eq!(
        list.body["totalCount"], 0,
        "a refused create writes nothing"
    );
    // The edge values pass.
    let edge: Vec<String> = vec!["prod_a".into()];
    for times in [1, 5] {
        let body = json!({"fileId": "f", "targets": {"devices": edge},
            "policy": {"executeType": "now", "retryType": true, "retryTimes": times}});
        assert_eq!(
            na.create("firmwareUpgrade", body).await.status,
            StatusCode::OK
        );
    }
    let body = json!({"fileId": "f", "targets": {"devices": edge},
        "policy": {"executeType": "custom", "startTime": future(0), "endTime": future(1)}});
    assert_eq!(
        na.create("firmwareUpgrade", body).await.status,
        StatusCode::OK
    );
}

impl TestApp {
    fn clock_now(&self) -> Timestamp {
        use taskd_core::Clock;
        self.clock.now()
    }
}

// ---- reading and running them ------------------------------------------------------------

#[tokio::test]
async fn a_task_runs_on_workers_and_reads_back() {
    let app = legacy_app(ApiConfig::default()).await;
    add_devices(&app, &["a", "b", "c"]).await;
    let na = Na::new(&app, APP1, SECRET1).await;
    let created = START;
    let id = na
        .create_ok(json!({"fileId": "pkg-v2", "targets": {"devices": ["prod_a", "prod_b", "prod_c", "prod_a"],
            "deviceType": "WaterMeter"}}))
        .await;
    assert_eq!(id.len(), 24);

    let r = na.get(&format!("{OPS}/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let t = &r.body;
    assert_eq!(t["operationId"], id.as_str());
    assert_eq!(t["operateType"], "firmware_upgrade");
    assert_eq!(t["status"], "wait");
    assert_eq!(t["createTime"], compact(created));
    assert_eq!(t["startTime"], compact(created));
    assert!(t["stopTime"].is_null());
    assert_eq!(
        t["targets"]["devices"],
        json!(["prod_a", "prod_b", "prod_c", "prod_a"])
    );
    assert_eq!(t["targets"]["deviceType"], "WaterMeter");
    assert_eq!(t["policy"]["executeType"], "now");
    assert_eq!(t["policy"]["retryType"], false);
    assert_eq!(t["extendPara"]["fileId"], "pkg-v2");
    assert_eq!(
        t["staResult"],
        json!({"total": 3, "wait": 3, "processing": 0, "success": 0, "fail": 0, "stop": 0, "timeout": 0})
    );

    // A worker runs them.
    app.clock.advance_millis(5_000);
    let claimed = claim(&app, 2).await;
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].task.kind, "firmwareUpgrade");
    let doc: Value =
        serde_json::from_str(claimed[0].task.document_json.as_deref().unwrap()).unwrap();
    assert_eq!(doc["fileId"], "pkg-v2");
    let r = na.get(&format!("{OPS}/{id}")).await;
    assert_eq!(r.body["status"], "processing");
    assert_eq!(r.body["staResult"]["processing"], 2);
    report(&app, &claimed[0], true).await;
    report(&app, &claimed[1], false).await;

    let subs = na.get(&format!("{OPS}/{id}/subOperations")).await;
    assert_eq!(subs.status, StatusCode::OK, "{}", subs.body);
    assert_eq!(
        (
            subs.body["pageNo"].clone(),
            subs.body["pageSize"].clone(),
            subs.body["totalCount"].clone()
        ),
        (json!(0), json!(10), json!(3))
    );
    let statuses: Vec<(String, String)> = subs.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["deviceId"].as_str().unwrap().into(),
                s["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("prod_a".into(), "success".into()),
            ("prod_b".into(), "fail".into()),
            ("prod_c".into(), "wait".into())
        ]
    );
    let failed = na
        .get(&format!("{OPS}/{id}/subOperations?subOperationStatus=fail"))
        .await;
    assert_eq!(failed.body["totalCount"], 1);
    let f = &failed.body["data"][0];
    assert_eq!(f["deviceId"], "prod_b");
    assert_eq!(f["detailInfo"], "flash write failed");
    assert_eq!(f["operateType"], "firmware_upgrade");
    assert_eq!(f["stopTime"], compact(START.plus_millis(5_000)));
    assert_eq!(f["extendInfo"]["errorCode"], "E_FLASH");
    assert!(f["subOperationId"].as_str().is_some());
    let waiting = na
        .get(&format!("{OPS}/{id}/subOperations?subOperationStatus=wait"))
        .await;
    assert_eq!(waiting.body["totalCount"], 1);
    assert_eq!(waiting.body["data"][0]["deviceId"], "prod_c");
    assert!(waiting.body["data"][0]["stopTime"].is_null());
    let succeeded = na
        .get(&format!(
            "{OPS}/{id}/subOperations?subOperationStatus=success&pageNo=0&pageSize=1"
        ))
        .await;
    assert_eq!(succeeded.body["data"][0]["detailInfo"], "upgraded to V2");
    // Paging.
    let p1 = na
        .get(&format!("{OPS}/{id}/subOperations?pageNo=1&pageSize=2"))
        .await;
    assert_eq!(
        (
            p1.body["data"].as_array().unwrap().len(),
            p1.body["totalCount"].clone()
        ),
        (1, json!(3))
    );
    let past = na
        .get(&format!("{OPS}/{id}/subOperations?pageNo=5&pageSize=2"))
        .await;
    assert_eq!(past.body["data"], json!([]));
    for bad in ["pageSize=0", "pageSize=101", "pageNo=-1"] {
        assert_error(
            &na.get(&format!("{OPS}/{id}/subOperations?{bad}")).await,
            StatusCode::BAD_REQUEST,
            "123029",
        );
    }
    assert_error(
        &na.get(&format!("{OPS}/{id}/subOperations?pageNo=x")).await,
        StatusCode::BAD_REQUEST,
        "120015",
    );
    assert_error(
        &na.get(&format!(
            "{OPS}/{id}/subOperations?subOperationStatus=failed"
        ))
        .await,
        StatusCode::BAD_REQUEST,
        "120015",
    );

    // The last one fails too: the task is "failed" (some succeeded).
    let rest = claim(&app, 10).await;
    assert_eq!(rest.len(), 1);
    report(&app, &rest[0], false).await;
    let r = na.get(&format!("{OPS}/{id}")).await;
    assert_eq!(r.body["status"], "failed");
    assert_eq!(r.body["stopTime"], compact(START.plus_millis(5_000)));
    assert_eq!(
        r.body["staResult"],
        json!({"total": 3, "wait": 0, "processing": 0, "success": 1, "fail": 2, "stop": 0, "timeout": 0})
    );
}

#[tokio::test]
async fn unknown_and_other_projects_tasks_are_123009() {
    let app = legacy_app(ApiConfig::default()).await;
    add_devices(&app, &["a"]).await;
    let na = Na::new(&app, APP1, SECRET1).await;
    let other = Na::new(&app, APP2, SECRET2).await;
    let id = na.create_ok(devices_body(&["prod_a"])).await;
    for path in [format!("{OPS}/{id}"), format!("{OPS}/{id}/subOperations")] {
        assert_error(&other.get(&path).await, StatusCode::NOT_FOUND, "123009");
    }
    assert_error(
        &other.put(&format!("{OPS}/{id}/stop")).await,
        StatusCode::NOT_FOUND,
        "123009",
    );
    assert_eq!(other.get(OPS).await.body["totalCount"], 0);
    assert_error(
        &na.get(&format!("{OPS}/ffffffffffffffffffffffff")).await,
        StatusCode::NOT_FOUND,
        "123009",
    );
    assert_error(
        &na.get(&format!("{OPS}/not-an-id")).await,
        StatusCode::NOT_FOUND,
        "123009",
    );
    // Devices of another project can't be targeted either.
    assert_error(
        &other
            .create("firmwareUpgrade", devices_body(&["prod_a"]))
            .await,
        StatusCode::NOT_FOUND,
        "123002",
    );
    // A task created through IoTDA is not a legacy operation.
    let iotda = app.create_task("iotda", &["prod_a"], false).await;
    assert_error(
        &na.get(&format!("{OPS}/{iotda}")).await,
        StatusCode::NOT_FOUND,
        "123009",
    );
    assert_eq!(na.get(OPS).await.body["totalCount"], 1);
}

#[tokio::test]
async fn the_task_list_filters_and_pages() {
    let app = legacy_app(ApiConfig::default()).await;
    add_devices(&app, &["a", "b", "c"]).await;
    let na = Na::new(&app, APP1, SECRET1).await;
    let fw = na
        .create_ok(
            json!({"fileId": "f1", "targets": {"devices": ["prod_a", "prod_b"],
            "deviceType": "WaterMeter", "model": "M1", "manufacturerName": "Acme"}}),
        )
        .await;
    let sw = na
        .post(
            &format!("{OPS}/softwareUpgrade"),
            json!({"fileId": "s1", "targets": {"devices": ["prod_c"]}}),
        )
        .await;
    assert_eq!(sw.status, StatusCode::OK, "{}", sw.body);
    let sw = sw.body["operationId"].as_str().unwrap().to_owned();
    let stopped = na.create_ok(devices_body(&["prod_b"])).await;
    assert_eq!(
        na.put(&format!("{OPS}/{stopped}/stop")).await.status,
        StatusCode::OK
    );

    let ids = |r: &Reply| -> Vec<String> {
        r.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["operationId"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = na.get(OPS).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(ids(&all), [stopped.clone(), sw.clone(), fw.clone()]);
    assert_eq!(
        (
            all.body["totalCount"].clone(),
            all.body["totalSize"].clone()
        ),
        (json!(3), json!(3))
    );
    assert_eq!(
        (all.body["pageNo"].clone(), all.body["pageSize"].clone()),
        (json!(0), json!(10))
    );
    let q = |query: &str| format!("{OPS}?{query}");
    assert_eq!(
        ids(&na.get(&q("operationType=software_upgrade")).await),
        vec![sw.clone()]
    );
    assert_eq!(
        ids(&na.get(&q("operationType=firmware_upgrade")).await),
        [stopped.clone(), fw.clone()]
    );
    assert_eq!(
        ids(&na.get(&q("operationStatus=stop")).await),
        vec![stopped.clone()]
    );
    assert_eq!(
        ids(&na.get(&q("operationStatus=wait")).await),
        [sw.clone(), fw.clone()]
    );
    assert_eq!(
        ids(&na.get(&q("operationStatus=failed")).await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&na
            .get(&q("deviceType=WaterMeter&model=M1&manufacturerName=Acme"))
            .await),
        vec![fw.clone()]
    );
    assert_eq!(
        ids(&na.get(&q("manufacturerName=Other")).await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&na.get(&q("deviceId=prod_b")).await),
        [stopped.clone(), fw.clone()]
    );
    assert_eq!(
        ids(&na
            .get(&q("deviceId=prod_c&operationType=software_upgrade"))
            .await),
        vec![sw.clone()]
    );
    let page = na.get(&q("pageNo=1&pageSize=2")).await;
    assert_eq!(
        (ids(&page), page.body["totalCount"].clone()),
        (vec![fw.clone()], json!(3))
    );
    assert_eq!(page.body["pageNo"], 1);
    for bad in ["pageSize=0", "pageSize=101", "pageNo=-1"] {
        assert_error(&na.get(&q(bad)).await, StatusCode::BAD_REQUEST, "123029");
    }
    for bad in [
        "operationType=reboot",
        "operationStatus=fail",
        "pageSize=ten",
    ] {
        assert_error(&na.get(&q(bad)).await, StatusCode::BAD_REQUEST, "120015");
    }
    let long = format!("deviceId={}", "x".repeat(257));
    assert_error(&na.get(&q(&long)).await, StatusCode::BAD_REQUEST, "120015");
}

#[tokio::test]
async fn stop_is_taskds_extension() {
    let app = legacy_app(ApiConfig::default()).await;
    add_devices(&app, &["a", "b"]).await;
    let na = Na::new(&app, APP1, SECRET1).await;
    let id = na.create_ok(devices_body(&["prod_a", "prod_b"])).await;
    let claimed = claim(&app, 1).await;
    let r = na.put(&format!("{OPS}/{id}/stop")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "stop");
    assert_eq!(r.body["staResult"]["stop"], 2);
    // The running one's result no longer counts; nothing more is claimed.
    report(&app, &claimed[0], true).await;
    assert!(claim(&app, 10).await.is_empty());
    let subs = na
        .get(&format!("{OPS}/{id}/subOperations?subOperationStatus=stop"))
        .await;
    assert_eq!(subs.body["totalCount"], 2);
    assert_error(
        &na.put(&format!("{OPS}/{id}/stop")).await,
        StatusCode::BAD_REQUEST,
        "120015",
    );
}

#[tokio::test]
async fn retries_follow_the_policy() {
    let app = legacy_app(ApiConfig::default()).await;
    add_devices(&app, &["a"]).await;
    let na = Na::new(&app, APP1, SECRET1).await;
    let id = na
        .create_ok(json!({"fileId": "f", "targets": {"devices": ["prod_a"]},
            "policy": {"executeType": "now", "retryType": true, "retryTimes": 1}}))
        .await;
    let first = claim(&app, 1).await;
    report(&app, &first[0], false).await;
    let r = na.get(&format!("{OPS}/{id}")).await;
    assert_eq!(
        r.body["staResult"]["wait"], 1,
        "retry-waiting reads as wait: {}",
        r.body
    );
    app.engine.maintain().await.unwrap();
    let second = claim(&app, 1).await;
    assert_eq!((second.len(), second[0].attempt), (1, 2));
    report(&app, &second[0], false).await;
    app.engine.maintain().await.unwrap();
    assert!(claim(&app, 1).await.is_empty(), "one retry only");
    let r = na.get(&format!("{OPS}/{id}")).await;
    assert_eq!(r.body["status"], "failed");
    assert_eq!(r.body["staResult"]["fail"], 1);
}

#[tokio::test]
async fn custom_window_runs_inside_it_and_times_out_the_rest() {
    let app = legacy_app(ApiConfig::default()).await;
    add_devices(&app, &["a", "b", "c", "d"]).await;
    let na = Na::new(&app, APP1, SECRET1).await;
    let start = START.plus_millis(3_600_000);
    let end = START.plus_millis(7_200_000);
    let id = na
        .create_ok(json!({"fileId": "f", "targets": {"devices": ["prod_a", "prod_b", "prod_c", "prod_d"]},
            "policy": {"executeType": "custom", "startTime": compact(start), "endTime": compact(end)}}))
        .await;
    let r = na.get(&format!("{OPS}/{id}")).await;
    assert_eq!(r.body["startTime"], compact(start));
    assert_eq!(r.body["policy"]["endTime"], compact(end));
    // Nothing runs before the window.
    app.clock.set(start.plus_millis(-1_000));
    assert!(claim(&app, 10).await.is_empty());
    app.clock.set(start);
    let claimed = claim(&app, 2).await;
    assert_eq!(claimed.len(), 2);
    report(&app, &claimed[0], true).await;
    // At the window's end: nothing is handed out, and maintenance ends the rest.
    app.clock.set(end);
    assert!(claim(&app, 10).await.is_empty());
    let m = app.engine.maintain().await.unwrap();
    assert_eq!(m.timed_out, 3);
    // Two hours on, the first access token has expired: log in again.
    let na = Na::new(&app, APP1, SECRET1).await;
    let r = na.get(&format!("{OPS}/{id}")).await;
    assert_eq!(r.body["status"], "failed");
    assert_eq!(
        r.body["staResult"],
        json!({"total": 4, "wait": 0, "processing": 0, "success": 1, "fail": 0, "stop": 0, "timeout": 3})
    );
    let subs = na
        .get(&format!("{OPS}/{id}/subOperations?subOperationStatus=fail"))
        .await;
    assert_eq!(subs.body["totalCount"], 3);
    assert!(
        subs.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["detailInfo"] == "timeout")
    );
    // The late result of the run that was cut off changes nothing.
    report(&app, &claimed[1], true).await;
    let r = na.get(&format!("{OPS}/{id}")).await;
    assert_eq!(r.body["staResult"]["timeout"], 3);
    assert_eq!(r.body["staResult"]["success"], 1);
    // Nor can a retry (through IoTDA) queue what no claim would hand out.
    let path = format!("/v5/iot/{P1}/batchtasks/{id}/retry");
    let retry = app.call(Call::new("POST", &path)).await;
    assert!(
        retry.status.is_client_error(),
        "{} {}",
        retry.status,
        retry.body
    );
    let scope = taskd_core::TaskScope::new(P1, "");
    let task_id = taskd_core::Id::parse_exact(&id).unwrap();
    let stored = app
        .store
        .legacy_task_get(&scope, task_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.task.progress.get(SubTaskState::Failed), 3);
    assert!(claim(&app, 10).await.is_empty());
}

#[tokio::test]
async fn device_groups_resolve_through_legacy_attributes() {
    let app = legacy_app(ApiConfig::default()).await;
    add_devices(&app, &["a", "b", "c"]).await;
    let attrs = json!({"deviceType": "WaterMeter", "model": "M1", "manufacturerName": "Acme"});
    for d in ["prod_a", "prod_b"] {
        let r = set_attributes(&app, d, attrs.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body, attrs);
    }
    let r = set_attributes(
        &app,
        "prod_c",
        json!({"deviceType": "GasMeter", "model": "M1", "manufacturerName": "Acme"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = set_attributes(&app, "ghost", attrs.clone()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = set_attributes(&app, "prod_a", json!({"color": "red"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let got = app
        .call(Call::new(
            "GET",
            &format!("/taskd/v1/{P1}/devices/prod_a/attributes"),
        ))
        .await;
    assert_eq!(got.body, attrs);

    let g = app
        .call(
            Call::new("POST", &format!("/v5/iot/{P1}/device-group")).json(json!({"name": "north"})),
        )
        .await;
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
    let gid = g.body["group_id"].as_str().unwrap().to_owned();
    for d in ["prod_a", "prod_b", "prod_c"] {
        let path = format!("/v5/iot/{P1}/device-group/{gid}/action");
        let r = app
            .call(Call {
                query: &[("action_id", "addDevice"), ("device_id", d)],
                ..Call::new("POST", &path)
            })
            .await;
        assert!(r.status.is_success(), "{}", r.body);
    }
    let na = Na::new(&app, APP1, SECRET1).await;
    let id = na
        .create_ok(
            json!({"fileId": "f", "targets": {"deviceGroups": ["north"], "deviceType": "WaterMeter",
            "model": "M1", "manufacturerName": "Acme"}}),
        )
        .await;
    let subs = na.get(&format!("{OPS}/{id}/subOperations")).await;
    let mut devices: Vec<&str> = subs.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["deviceId"].as_str().unwrap())
        .collect();
    devices.sort_unstable();
    assert_eq!(devices, ["prod_a", "prod_b"]);
    let t = na.get(&format!("{OPS}/{id}")).await;
    assert_eq!(t.body["targets"]["deviceGroups"], json!(["north"]));
    let listed = na
        .get(&format!(
            "{OPS}?deviceType=WaterMeter&model=M1&manufacturerName=Acme"
        ))
        .await;
    assert_eq!(listed.body["totalCount"], 1);
    // No member matches.
    let r = na
        .create(
            "firmwareUpgrade",
            json!({"fileId": "f", "targets": {"deviceGroups": ["north"],
            "deviceType": "WaterMeter", "model": "M9", "manufacturerName": "Acme"}}),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "123002");
}

#[tokio::test]
async fn device_online_runs_at_once() {
    let app = legacy_app(ApiConfig::default()).await;
    add_devices(&app, &["a"]).await;
    let na = Na::new(&app, APP1, SECRET1).await;
    let id = na
        .create_ok(json!({"fileId": "f", "targets": {"devices": ["prod_a"]}, "policy": {"executeType": "device_online"}}))
        .await;
    assert_eq!(claim(&app, 5).await.len(), 1);
    let r = na.get(&format!("{OPS}/{id}")).await;
    assert_eq!(r.body["policy"]["executeType"], "device_online");
}

/// No store keeps a NUL character: in any text the legacy API stores or filters on it is
/// a 400 in the legacy envelope, and writes nothing (on PostgreSQL it was a 500).
#[tokio::test]
async fn a_nul_in_input_is_refused_in_the_envelope() {
    let app = legacy_app(ApiConfig::default()).await;
    add_devices(&app, &["a"]).await;
    assert_error(
        &login_raw(&app, &format!("appId={APP1}%00&secret={SECRET1}")).await,
        StatusCode::UNAUTHORIZED,
        "100208",
    );
    let na = Na::new(&app, APP1, SECRET1).await;
    let groups = |device_type: &str, group: &str| {
        json!({"fileId": "pkg", "targets": {"deviceGroups": [group], "deviceType": device_type,
               "model": "M1", "manufacturerName": "Acme"}})
    };
    for body in [
        json!({"fileId": "pkg\u{0}", "targets": {"devices": ["prod_a"]}}),
        json!({"fileId": "pkg", "targets": {"devices": ["prod_a\u{0}"]}}),
        groups("Meter\u{0}", "g"),
        groups("Meter", "g\u{0}"),
    ] {
        let r = na.create("firmwareUpgrade", body.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "120015");
    }
    for filter in ["deviceId", "deviceType", "model", "manufacturerName"] {
        let r = na.get(&format!("{OPS}?{filter}=prod_a%00")).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "120015");
    }
    assert_eq!(
        na.get(OPS).await.body["totalCount"],
        0,
        "nothing was created"
    );

    // The attributes, set through taskd's own API: its envelope.
    let r = set_attributes(&app, "prod_a", json!({"deviceType": "Meter\u{0}"})).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::BAD_REQUEST, "TASKD.000006"),
        "{}",
        r.body
    );
    let r = set_attributes(&app, "prod_a", json!({"deviceType": "Meter\u{1}\t"})).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "other control characters are text"
    );
}
