//! `/livez`, `/readyz` and `/healthz` on a store whose disk fills up and frees again
//! (`SqliteDriver::limit_pages`, SQLite's own "database or disk is full").

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use taskd_api::health::READY_CHECK_INTERVAL_MS;
use taskd_api::{ApiConfig, AppState};
use taskd_core::{Credential, ManualClock};
use taskd_store::Store;
use taskd_store_sqlite::SqliteStore;
use tower::ServiceExt;

use crate::support::START;

struct App {
    router: axum::Router,
    clock: ManualClock,
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

impl App {
    async fn new() -> App {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(taskd_store_sqlite::open(dir.path()).await.unwrap());
        let clock = ManualClock::new(START);
        let state = AppState::new(store.clone(), Arc::new(clock.clone()), ApiConfig::default());
        App {
            router: taskd_api::router(state),
            clock,
            store,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Readiness after the cached answer has lapsed.
    async fn ready_now(&self, path: &str) -> (StatusCode, Value) {
        self.clock.advance_millis(READY_CHECK_INTERVAL_MS);
        self.get(path).await
    }
}

fn credential(i: u32) -> Credential {
    Credential {
        access_key: format!("AK{i:06}"),
        secret_key: "s".repeat(500),
        project_id: "p1".into(),
        created_at: START,
        revoked_at: None,
    }
}

#[tokio::test]
async fn readiness_says_when_the_disk_is_full_and_when_it_is_not() {
    let app = App::new().await;
    for path in ["/livez", "/readyz", "/healthz"] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["status"], "ok");
    }

    app.store.limit_pages(Some(0)).await.unwrap();
    let mut i = 0;
    while app.store.credential_put(&credential(i)).await.is_ok() {
        i += 1;
    }
    for path in ["/readyz", "/healthz"] {
        let (status, body) = app.ready_now(path).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert_eq!(body["status"], "unavailable");
        let reason = body["reason"].as_str().unwrap();
        assert!(reason.contains("database or disk is full"), "{reason}");
    }
    let (status, _) = app.get("/livez").await;
    assert_eq!(status, StatusCode::OK, "the process is alive all the same");

    app.store.limit_pages(None).await.unwrap();
    // The verdict holds for its interval ...
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // ... then the next check sees the room.
    let (status, body) = app.ready_now("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.store
        .credential_put(&credential(i))
        .await
        .expect("writes resume");
}

/// A check answers for its interval: a second probe within it writes nothing, so the
/// store's state may change unseen until the interval ends.
#[tokio::test]
async fn readiness_is_checked_at_most_once_per_interval() {
    let app = App::new().await;
    assert_eq!(app.get("/readyz").await.0, StatusCode::OK);
    app.store.close().await;
    app.clock.advance_millis(READY_CHECK_INTERVAL_MS - 1);
    assert_eq!(app.get("/readyz").await.0, StatusCode::OK, "cached");
    app.clock.advance_millis(1);
    let (status, body) = app.get("/healthz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(app.get("/livez").await.0, StatusCode::OK);
}
