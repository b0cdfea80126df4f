use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use taskd_api::{ApiConfig, AppState};
use taskd_core::{Credential, ManualClock, Timestamp};
use taskd_signature::{SigningKey, SigningRequest, format_sdk_date, sign};
use taskd_store::Store;
use tower::ServiceExt;

pub const P1: &str = "0123456789abcdef0123456789abcdef";
pub const P2: &str = "fedcba9876543210fedcba9876543210";
pub const AK1: &str = "AK1TESTAAAAAAAAAAAAA";
pub const SK1: &str = "sk1-secret-0123456789abcdefghijklmnopqr";
pub const AK2: &str = "AK2TESTBBBBBBBBBBBBB";
pub const SK2: &str = "sk2-secret-0123456789abcdefghijklmnopqr";
/// 2026-01-01T00:00:00Z
pub const START: Timestamp = Timestamp::from_unix_secs(1_767_225_600);

pub struct TestApp {
    pub router: Router,
    pub clock: ManualClock,
    /// The app's engine: tests run its maintenance on the virtual clock.
    pub engine: taskd_engine::Engine,
    /// The app's store, for fixtures the API has no call for (legacy apps).
    pub store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    pub body: Vec<u8>,
    pub content_type: String,
    pub instance_id: Option<&'a str>,
    pub ak: &'a str,
    pub sk: &'a str,
    pub project_header: &'a str,
    pub derived: bool,
    /// Signing time offset from the server clock, seconds.
    pub skew_secs: i64,
    /// Bytes sent instead of `body` (which is what gets signed): a tampered request.
    pub sent_body: Option<Vec<u8>>,
    /// Headers added after signing, as an attacker replaying a captured request would.
    pub unsigned_headers: Vec<(&'a str, String)>,
}

impl<'a> Call<'a> {
    pub fn new(method: &'a str, path: &'a str) -> Self {
        Call {
            method,
            path,
            query: &[],
            body: Vec::new(),
            content_type: "application/json".into(),
            instance_id: None,
            ak: AK1,
            sk: SK1,
            project_header: P1,
            derived: false,
            skew_secs: 0,
            sent_body: None,
            unsigned_headers: Vec::new(),
        }
    }
    pub fn json(mut self, v: Value) -> Self {
        // The SDK's separators, so the hashed bytes look like the SDK's.
        self.body = serde_json::to_string(&v).unwrap().into_bytes();
        self
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["error_code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with_config(ApiConfig::default()).await
    }

    pub async fn with_config(config: ApiConfig) -> TestApp {
        Self::with_clock(config, |clock| Arc::new(clock)).await
    }

    /// With the clock the app reads made from the test's `ManualClock` (which still
    /// dates the signatures).
    pub async fn with_clock(
        config: ApiConfig,
        app_clock: impl FnOnce(ManualClock) -> Arc<dyn taskd_core::Clock>,
    ) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(taskd_store_sqlite::open(dir.path()).await.unwrap());
        for (ak, sk, p) in [(AK1, SK1, P1), (AK2, SK2, P2)] {
            store
                .credential_put(&Credential {
                    access_key: ak.into(),
                    secret_key: sk.into(),
                    project_id: p.into(),
                    created_at: START,
                    revoked_at: None,
                })
                .await
                .unwrap();
        }
        let clock = ManualClock::new(START);
        let state = AppState::new(store.clone(), app_clock(clock.clone()), config);
        let engine = state.engine.clone();
        let router = taskd_api::router(state);
        TestApp {
            router,
            clock,
            engine,
            store,
            _dir: dir,
        }
    }

    pub async fn call(&self, c: Call<'_>) -> Reply {
        use taskd_core::Clock;
        let date = format_sdk_date(self.clock.now().unix_secs() + c.skew_secs);
        let mut headers: Vec<(&str, &str)> = vec![
            ("Content-Type", &c.content_type),
            ("Host", "127.0.0.1:8080"),
            ("User-Agent", "huaweicloud-usdk-python/3.0"),
            ("X-Project-Id", c.project_header),
            ("X-Sdk-Date", &date),
        ];
        // An empty project header means "send none".
        headers.retain(|(k, v)| *k != "X-Project-Id" || !v.is_empty());
        if let Some(i) = c.instance_id {
            headers.push(("Instance-Id", i));
        }
        let key = if c.derived {
            SigningKey::Derived {
                access_key: c.ak,
                secret_key: c.sk,
                region: "cn-north-4",
                service: "iotdm",
            }
        } else {
            SigningKey::Plain {
                access_key: c.ak,
                secret_key: c.sk,
            }
        };
        let signed = sign(
            &SigningRequest {
                method: c.method,
                path: c.path,
                query: c.query,
                headers: &headers,
                body: &c.body,
            },
            &key,
        );
        let uri = if signed.query_string.is_empty() {
            c.path.to_string()
        } else {
            format!("{}?{}", c.path, signed.query_string)
        };
        let mut req = Request::builder().method(c.method).uri(uri);
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        for (k, v) in &c.unsigned_headers {
            req = req.header(*k, v.as_str());
        }
        req = req.header("Authorization", signed.authorization);
        let body = c.sent_body.unwrap_or(c.body);
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Creates a firmware upgrade task over `targets` and returns its id.
    pub async fn create_task(&self, name: &str, targets: &[&str], need_confirm: bool) -> String {
        let r = self
            .call(Call::new("POST", &batchtasks()).json(serde_json::json!({
                "task_name": name,
                "task_type": "firmwareUpgrade",
                "need_confirm": need_confirm,
                "targets": targets,
                "document": {"package_ids": ["32822e5744a45ede319d2c50"]},
            })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["task_id"].as_str().unwrap().to_string()
    }
}

pub fn batchtasks() -> String {
    format!("/v5/iot/{P1}/batchtasks")
}
