//! The device channel (MQTT): logins, sessions, versions, shadows, messages.

use std::sync::Arc;

use serde_json::{Value, json};
use taskd_core::{AuthType, DeviceStatus, SecretType, TaskScope, Timestamp};

use super::{at, new_device, scope};
use crate::{
    DesiredUpdate, DeviceSession, DeviceVersions, MAX_PENDING_MESSAGES_PER_DEVICE,
    MAX_SERVICE_ID_CHARS, MAX_SHADOW_SECTION_BYTES, MAX_SHADOW_SERVICES, MAX_VERSION_CHARS,
    MessageRefusal, MessageStatus, NewDeviceMessage, RegistryRefusal, ReportedProperties,
    SecretReset, SessionRefusal, ShadowRefusal, ShadowService, Store, StoreError,
};

async fn add(store: &dyn Store, s: &TaskScope, node: &str) -> String {
    let d = store
        .device_insert(new_device(s, "p", node), at(0))
        .await
        .expect("device_insert")
        .expect("device accepted");
    d.device_id
}

fn session(s: &TaskScope, device_id: &str, session_id: &str, node: &str, t: i64) -> DeviceSession {
    DeviceSession {
        scope: s.clone(),
        device_id: device_id.to_owned(),
        session_id: session_id.to_owned(),
        node_id: node.to_owned(),
        connected_at: at(t),
    }
}

async fn status(
    store: &dyn Store,
    s: &TaskScope,
    id: &str,
) -> (DeviceStatus, Option<DeviceStatus>) {
    let d = store.device_get(s, id).await.unwrap().expect("device");
    (d.status, d.status_before_freeze)
}

pub async fn channel_logins_span_scopes(store: Arc<dyn Store>) {
    let store = &*store;
    let (a, b) = (scope("p1", "i1"), scope("p2", ""));
    add(store, &a, "n").await;
    add(store, &b, "n").await;
    add(store, &a, "other").await;
    let logins = store.device_logins("p_n").await.unwrap();
    let scopes: Vec<_> = logins.iter().map(|l| l.scope.clone()).collect();
    assert_eq!(scopes, vec![a.clone(), b.clone()]);
    let l = &logins[0];
    assert_eq!(l.device_id, "p_n");
    assert_eq!(l.secret.as_deref(), Some("secret-0001"));
    assert_eq!(l.status, DeviceStatus::Inactive);
    assert!(l.is_direct);
    assert!(!format!("{l:?}").contains("secret-0001"), "Debug redacts");
    assert_eq!(store.device_logins("nope").await.unwrap(), vec![]);
    assert_eq!(store.device_logins("p\0n").await.unwrap(), vec![]);
    // A sub-device is no direct device.
    let mut sub = new_device(&a, "p", "sub");
    sub.gateway_id = Some("p_n".into());
    store.device_insert(sub, at(1)).await.unwrap().unwrap();
    let logins = store.device_logins("p_sub").await.unwrap();
    assert_eq!(logins.len(), 1);
    assert!(!logins[0].is_direct);
}

fn reset(s: &TaskScope, device_id: &str, secret_type: SecretType, secret: &str) -> SecretReset {
    SecretReset {
        scope: s.clone(),
        device_id: device_id.to_owned(),
        secret_type,
        secret: secret.to_owned(),
    }
}

pub async fn channel_secret_resets_reach_logins(store: Arc<dyn Store>) {
    let store = &*store;
    let (a, b) = (scope("p1", "i1"), scope("p2", ""));
    let id = add(store, &a, "n").await;
    add(store, &b, "n").await;
    let secrets = |logins: Vec<crate::DeviceLogin>| -> Vec<(Option<String>, Option<String>)> {
        logins
            .into_iter()
            .map(|l| (l.secret, l.secondary_secret))
            .collect()
    };
    let pair = |p: &str, s: Option<&str>| (Some(p.to_owned()), s.map(str::to_owned));
    assert_eq!(
        secrets(store.device_logins(&id).await.unwrap()),
        vec![pair("secret-0001", None), pair("secret-0001", None)]
    );

    // The secondary secret is set beside the primary one, in its own scope only.
    assert_eq!(
        store
            .device_reset_secret(&reset(&a, &id, SecretType::Secondary, "second-0002"), at(5))
            .await
            .unwrap(),
        Ok(())
    );
    let logins = store.device_logins(&id).await.unwrap();
    let shown = format!("{logins:?}");
    assert!(!shown.contains("second-0002"), "Debug redacts: {shown}");
    assert_eq!(
        secrets(logins),
        vec![
            pair("secret-0001", Some("second-0002")),
            pair("secret-0001", None)
        ]
    );
    let d = store.device_get(&a, &id).await.unwrap().unwrap();
    assert_eq!(d.secret.as_deref(), Some("secret-0001"));
    assert_eq!(d.updated_at, at(5), "a reset is a registry edit");

    // A primary reset replaces the primary secret and keeps the secondary one.
    store
        .device_reset_secret(&reset(&a, &id, SecretType::Primary, "primary-0003"), at(6))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        secrets(store.device_logins(&id).await.unwrap()),
        vec![
            pair("primary-0003", Some("second-0002")),
            pair("secret-0001", None)
        ]
    );
    let d = store.device_get(&a, &id).await.unwrap().unwrap();
    assert_eq!(d.secret.as_deref(), Some("primary-0003"));

    // Refusals write nothing.
    for (s, device) in [(&a, "nope"), (&scope("p3", ""), id.as_str()), (&a, "p\0n")] {
        assert_eq!(
            store
                .device_reset_secret(&reset(s, device, SecretType::Secondary, "x-0004-xx"), at(7))
                .await
                .unwrap(),
            Err(RegistryRefusal::DeviceNotFound),
            "{s:?} {device}"
        );
    }
    let mut cert = new_device(&a, "p", "cert");
    cert.auth_type = AuthType::Certificates;
    cert.secret = None;
    cert.fingerprint = Some("a".repeat(40));
    store.device_insert(cert, at(8)).await.unwrap().unwrap();
    for secret_type in [SecretType::Primary, SecretType::Secondary] {
        assert_eq!(
            store
                .device_reset_secret(&reset(&a, "p_cert", secret_type, "cert-0005"), at(9))
                .await
                .unwrap(),
            Err(RegistryRefusal::NotSecretAuth)
        );
    }
    let logins = store.device_logins("p_cert").await.unwrap();
    assert_eq!(secrets(logins), vec![(None, None)]);
    assert_eq!(
        store
            .device_get(&a, "p_cert")
            .await
            .unwrap()
            .unwrap()
            .updated_at,
        at(8)
    );
    assert!(matches!(
        store
            .device_reset_secret(
                &reset(&a, &id, SecretType::Secondary, "nul\0-secret"),
                at(10)
            )
            .await,
        Err(StoreError::InvalidText(_))
    ));
    assert_eq!(
        secrets(store.device_logins(&id).await.unwrap())[0],
        pair("primary-0003", Some("second-0002"))
    );
}

pub async fn channel_sessions_open_replace_and_close(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let id = add(store, &s, "n").await;
    let first = session(&s, &id, "s1", "node-a", 10);
    assert_eq!(store.device_session_open(&first).await.unwrap(), Ok(None));
    let d = store.device_get(&s, &id).await.unwrap().unwrap();
    assert_eq!(d.status, DeviceStatus::Online);
    assert_eq!(d.active_time, Some(at(10)));
    assert_eq!(d.connection_status_update_time, Some(at(10)));
    assert_eq!(d.updated_at, at(0), "a connection is no registry edit");
    assert_eq!(
        store.device_session_get(&s, &id).await.unwrap(),
        Some(first.clone())
    );

    // A newer connection (on another node) replaces the first, which is returned.
    let second = session(&s, &id, "s2", "node-b", 20);
    assert_eq!(
        store.device_session_open(&second).await.unwrap(),
        Ok(Some(first.clone()))
    );
    let d = store.device_get(&s, &id).await.unwrap().unwrap();
    assert_eq!(d.active_time, Some(at(10)), "the first connection stays");
    assert_eq!(d.connection_status_update_time, Some(at(20)));
    // The kicked connection's late close changes nothing.
    assert!(
        !store
            .device_session_close(&s, &id, "s1", at(30))
            .await
            .unwrap()
    );
    assert_eq!(status(store, &s, &id).await.0, DeviceStatus::Online);
    assert_eq!(
        store.device_session_get(&s, &id).await.unwrap(),
        Some(second.clone())
    );
    // The current one's close ends it.
    assert!(
        store
            .device_session_close(&s, &id, "s2", at(40))
            .await
            .unwrap()
    );
    let d = store.device_get(&s, &id).await.unwrap().unwrap();
    assert_eq!(d.status, DeviceStatus::Offline);
    assert_eq!(d.connection_status_update_time, Some(at(40)));
    assert_eq!(store.device_session_get(&s, &id).await.unwrap(), None);
    assert!(
        !store
            .device_session_close(&s, &id, "s2", at(41))
            .await
            .unwrap(),
        "closed once"
    );

    // Unknown devices and NUL keys.
    assert_eq!(
        store
            .device_session_open(&session(&s, "nope", "s", "node-a", 50))
            .await
            .unwrap(),
        Err(SessionRefusal::DeviceNotFound)
    );
    assert!(
        !store
            .device_session_close(&s, "nope", "s", at(50))
            .await
            .unwrap()
    );
    assert_eq!(store.device_session_get(&s, "p\0n").await.unwrap(), None);
    assert!(matches!(
        store
            .device_session_open(&session(&s, &id, "s\0", "node-a", 50))
            .await,
        Err(StoreError::InvalidText(_))
    ));
    assert_eq!(store.device_session_get(&s, &id).await.unwrap(), None);
}

pub async fn channel_frozen_devices_and_sessions(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let id = add(store, &s, "n").await;
    // A frozen device is refused and stays as it was.
    store.device_freeze(&s, &id, at(1)).await.unwrap().unwrap();
    assert_eq!(
        store
            .device_session_open(&session(&s, &id, "s1", "node-a", 2))
            .await
            .unwrap(),
        Err(SessionRefusal::Frozen)
    );
    let d = store.device_get(&s, &id).await.unwrap().unwrap();
    assert_eq!(
        (d.status, d.status_before_freeze, d.active_time),
        (DeviceStatus::Frozen, Some(DeviceStatus::Inactive), None)
    );
    store
        .device_unfreeze(&s, &id, at(3))
        .await
        .unwrap()
        .unwrap();

    // Freezing an online device keeps its session until the channel closes it; then it
    // returns to OFFLINE when unfrozen.
    store
        .device_session_open(&session(&s, &id, "s2", "node-a", 4))
        .await
        .unwrap()
        .unwrap();
    store.device_freeze(&s, &id, at(5)).await.unwrap().unwrap();
    assert_eq!(
        status(store, &s, &id).await,
        (DeviceStatus::Frozen, Some(DeviceStatus::Online))
    );
    assert!(
        store
            .device_session_close(&s, &id, "s2", at(6))
            .await
            .unwrap()
    );
    assert_eq!(
        status(store, &s, &id).await,
        (DeviceStatus::Frozen, Some(DeviceStatus::Offline))
    );
    let d = store.device_get(&s, &id).await.unwrap().unwrap();
    assert_eq!(d.connection_status_update_time, Some(at(6)));
    store
        .device_unfreeze(&s, &id, at(7))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status(store, &s, &id).await, (DeviceStatus::Offline, None));
}

pub async fn channel_sessions_open_in_one_batch(store: Arc<dyn Store>) {
    let store = &*store;
    let (a, b) = (scope("p1", "i1"), scope("p2", ""));
    let d1 = add(store, &a, "one").await;
    let frozen = add(store, &b, "frozen").await;
    let d3 = add(store, &b, "three").await;
    store
        .device_freeze(&b, &frozen, at(1))
        .await
        .unwrap()
        .unwrap();
    let batch = [
        session(&b, &d3, "s3", "node-a", 2),
        session(&a, &d1, "s1", "node-a", 2),
        session(&a, "p_missing", "sx", "node-a", 2),
        session(&b, &frozen, "sf", "node-a", 2),
        // The same device again in the batch: it replaces the first, in the given order.
        session(&a, &d1, "s1b", "node-b", 3),
    ];
    let results = store.device_sessions_open(&batch).await.unwrap();
    assert_eq!(
        results,
        vec![
            Ok(None),
            Ok(None),
            Err(SessionRefusal::DeviceNotFound),
            Err(SessionRefusal::Frozen),
            Ok(Some(session(&a, &d1, "s1", "node-a", 2))),
        ]
    );
    assert_eq!(status(store, &a, &d1).await.0, DeviceStatus::Online);
    assert_eq!(status(store, &b, &d3).await.0, DeviceStatus::Online);
    assert_eq!(status(store, &b, &frozen).await.0, DeviceStatus::Frozen);
    assert_eq!(
        store.device_session_get(&a, &d1).await.unwrap(),
        Some(session(&a, &d1, "s1b", "node-b", 3))
    );
    assert_eq!(store.device_session_get(&b, &frozen).await.unwrap(), None);
    assert_eq!(store.device_sessions_open(&[]).await.unwrap(), vec![]);
    // Text with NUL: the whole batch is refused, nothing written.
    let bad = [session(&b, &d3, "s\0", "node-a", 4)];
    assert!(matches!(
        store.device_sessions_open(&bad).await,
        Err(StoreError::InvalidText(_))
    ));
    assert_eq!(
        store
            .device_session_get(&b, &d3)
            .await
            .unwrap()
            .unwrap()
            .session_id,
        "s3"
    );
}

pub async fn channel_sessions_close_node(store: Arc<dyn Store>) {
    let store = &*store;
    let (a, b) = (scope("p1", "i1"), scope("p2", ""));
    let d1 = add(store, &a, "one").await;
    let d2 = add(store, &b, "two").await;
    let d3 = add(store, &a, "three").await;
    for (s, d, sid, node) in [
        (&a, &d1, "s1", "node-a"),
        (&b, &d2, "s2", "node-a"),
        (&a, &d3, "s3", "node-b"),
    ] {
        store
            .device_session_open(&session(s, d, sid, node, 1))
            .await
            .unwrap()
            .unwrap();
    }
    // d1 froze meanwhile: it stays frozen, returning to OFFLINE.
    store.device_freeze(&a, &d1, at(2)).await.unwrap().unwrap();
    assert_eq!(
        store
            .device_sessions_close_node("node-a", at(3))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        status(store, &a, &d1).await,
        (DeviceStatus::Frozen, Some(DeviceStatus::Offline))
    );
    assert_eq!(status(store, &b, &d2).await.0, DeviceStatus::Offline);
    assert_eq!(status(store, &a, &d3).await.0, DeviceStatus::Online);
    assert_eq!(store.device_session_get(&b, &d2).await.unwrap(), None);
    assert!(store.device_session_get(&a, &d3).await.unwrap().is_some());
    assert_eq!(
        store
            .device_sessions_close_node("node-a", at(4))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .device_sessions_close_node("node\0", at(4))
            .await
            .unwrap(),
        0
    );
}

pub async fn channel_versions(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let id = add(store, &s, "n").await;
    let v = DeviceVersions {
        fw_version: Some("fw1".into()),
        sw_version: Some("sw1".into()),
        device_sdk_version: None,
    };
    assert!(store.device_versions_put(&s, &id, &v, at(1)).await.unwrap());
    let only_sdk = DeviceVersions {
        device_sdk_version: Some("C_v5.0".into()),
        ..DeviceVersions::default()
    };
    assert!(
        store
            .device_versions_put(&s, &id, &only_sdk, at(2))
            .await
            .unwrap()
    );
    let d = store.device_get(&s, &id).await.unwrap().unwrap();
    assert_eq!(
        (
            d.fw_version.as_deref(),
            d.sw_version.as_deref(),
            d.device_sdk_version.as_deref()
        ),
        (Some("fw1"), Some("sw1"), Some("C_v5.0")),
        "None leaves a version"
    );
    // Longer versions are cut to the limit (in characters).
    let long = DeviceVersions {
        fw_version: Some("é".repeat(MAX_VERSION_CHARS + 5)),
        ..DeviceVersions::default()
    };
    assert!(
        store
            .device_versions_put(&s, &id, &long, at(3))
            .await
            .unwrap()
    );
    let d = store.device_get(&s, &id).await.unwrap().unwrap();
    assert_eq!(d.fw_version, Some("é".repeat(MAX_VERSION_CHARS)));
    assert!(
        !store
            .device_versions_put(&s, "nope", &v, at(4))
            .await
            .unwrap()
    );
    assert!(
        !store
            .device_versions_put(&s, "n\0", &v, at(4))
            .await
            .unwrap()
    );
    let nul = DeviceVersions {
        sw_version: Some("a\0".into()),
        ..DeviceVersions::default()
    };
    assert!(matches!(
        store.device_versions_put(&s, &id, &nul, at(5)).await,
        Err(StoreError::InvalidText(_))
    ));
}

fn desired(service: &str, j: Value, version: Option<i64>) -> DesiredUpdate {
    DesiredUpdate {
        service_id: service.to_owned(),
        desired_json: j.to_string(),
        expected_version: version,
    }
}

fn reported(service: &str, j: Value, t: Option<Timestamp>) -> ReportedProperties {
    ReportedProperties {
        service_id: service.to_owned(),
        properties_json: j.to_string(),
        event_time: t,
    }
}

fn section(text: &str) -> Value {
    serde_json::from_str(text).expect("a stored section is JSON")
}

pub async fn channel_shadow_desired_and_reported(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let id = add(store, &s, "n").await;
    assert_eq!(store.shadow_get(&s, &id).await.unwrap(), Some(vec![]));
    assert_eq!(store.shadow_get(&s, "nope").await.unwrap(), None);
    assert_eq!(store.shadow_get(&s, "n\0").await.unwrap(), None);

    let after = store
        .shadow_update_desired(
            &s,
            &id,
            vec![
                desired("temp", json!({"target": 20, "mode": "eco"}), None),
                desired("door", json!({"open": false}), Some(0)),
            ],
            at(1),
        )
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<_> = after.iter().map(|x| x.service_id.as_str()).collect();
    assert_eq!(ids, ["door", "temp"], "sorted by service id");
    assert_eq!(after[1].version, 1);
    assert_eq!(after[1].desired_event_time, Some(at(1)));
    assert_eq!(section(&after[1].reported_json), json!({}));
    assert_eq!(after[1].reported_event_time, None);

    // A merge: set, keep, and remove by null.
    let after = store
        .shadow_update_desired(
            &s,
            &id,
            vec![desired(
                "temp",
                json!({"target": 22, "mode": null, "fan": 1}),
                Some(1),
            )],
            at(2),
        )
        .await
        .unwrap()
        .unwrap();
    let temp = &after[1];
    assert_eq!(section(&temp.desired_json), json!({"target": 22, "fan": 1}));
    assert_eq!(temp.version, 2);
    assert_eq!(temp.desired_event_time, Some(at(2)));
    assert_eq!(after[0].version, 1, "other services untouched");

    // An empty object clears the section.
    let cleared = store
        .shadow_update_desired(&s, &id, vec![desired("door", json!({}), None)], at(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(section(&cleared[0].desired_json), json!({}));
    assert_eq!(cleared[0].version, 2);
    let after = cleared;

    // A stale version refuses the whole update.
    assert_eq!(
        store
            .shadow_update_desired(
                &s,
                &id,
                vec![
                    desired("door", json!({"open": true}), Some(2)),
                    desired("temp", json!({"target": 30}), Some(1)),
                ],
                at(3),
            )
            .await
            .unwrap(),
        Err(ShadowRefusal::VersionConflict {
            service_id: "temp".into(),
            stored: 2
        })
    );
    assert_eq!(store.shadow_get(&s, &id).await.unwrap().unwrap(), after);

    // Reports merge into the reported sections; a reported null is kept as a value.
    let t = at(100);
    let reported_after = store
        .shadow_report(
            &s,
            &id,
            vec![
                reported("temp", json!({"target": 21, "now": 19.5}), Some(t)),
                reported("light", json!({"on": null}), None),
            ],
            at(4),
        )
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<_> = reported_after
        .iter()
        .map(|x| x.service_id.as_str())
        .collect();
    assert_eq!(ids, ["door", "light", "temp"]);
    let light = &reported_after[1];
    assert_eq!(section(&light.reported_json), json!({"on": null}));
    assert_eq!(
        light.reported_event_time,
        Some(at(4)),
        "now without event_time"
    );
    assert_eq!(
        (light.version, section(&light.desired_json)),
        (0, json!({}))
    );
    let temp = &reported_after[2];
    assert_eq!(temp.reported_event_time, Some(t));
    assert_eq!(temp.version, 2, "reports leave the version");
    store
        .shadow_report(
            &s,
            &id,
            vec![reported("temp", json!({"now": 20}), None)],
            at(5),
        )
        .await
        .unwrap()
        .unwrap();
    let shadow = store.shadow_get(&s, &id).await.unwrap().unwrap();
    assert_eq!(
        section(&shadow[2].reported_json),
        json!({"target": 21, "now": 20})
    );
    assert_eq!(
        section(&shadow[2].desired_json),
        json!({"target": 22, "fan": 1})
    );

    // Unknown devices.
    assert_eq!(
        store
            .shadow_update_desired(&s, "nope", vec![desired("a", json!({}), None)], at(6))
            .await
            .unwrap(),
        Err(ShadowRefusal::DeviceNotFound)
    );
    assert_eq!(
        store
            .shadow_report(&s, "nope", vec![reported("a", json!({}), None)], at(6))
            .await
            .unwrap(),
        Err(ShadowRefusal::DeviceNotFound)
    );
}

pub async fn channel_shadow_refusals_write_nothing(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let id = add(store, &s, "n").await;
    store
        .shadow_update_desired(&s, &id, vec![desired("a", json!({"x": 1}), None)], at(1))
        .await
        .unwrap()
        .unwrap();
    let before: Vec<ShadowService> = store.shadow_get(&s, &id).await.unwrap().unwrap();

    let big = json!({ "blob": "x".repeat(MAX_SHADOW_SECTION_BYTES) });
    let too_many: Vec<DesiredUpdate> = (0..MAX_SHADOW_SERVICES)
        .map(|i| desired(&format!("s{i:03}"), json!({}), None))
        .collect();
    let cases: Vec<(Vec<DesiredUpdate>, ShadowRefusal)> = vec![
        (
            vec![
                desired("b", json!({"ok": 1}), None),
                desired("a", big.clone(), None),
            ],
            ShadowRefusal::TooLarge,
        ),
        (
            vec![
                desired("b", json!({"ok": 1}), None),
                desired("a", json!([1, 2]), None),
            ],
            ShadowRefusal::NotAnObject,
        ),
        (
            vec![DesiredUpdate {
                service_id: "b".into(),
                desired_json: "{not json".into(),
                expected_version: None,
            }],
            ShadowRefusal::NotAnObject,
        ),
        (too_many, ShadowRefusal::TooLarge),
        (
            vec![desired(
                &"s".repeat(MAX_SERVICE_ID_CHARS + 1),
                json!({}),
                None,
            )],
            ShadowRefusal::TooLarge,
        ),
    ];
    for (updates, refusal) in cases {
        assert_eq!(
            store
                .shadow_update_desired(&s, &id, updates, at(2))
                .await
                .unwrap(),
            Err(refusal.clone())
        );
        assert_eq!(store.shadow_get(&s, &id).await.unwrap().unwrap(), before);
    }
    assert_eq!(
        store
            .shadow_report(&s, &id, vec![reported("a", big, None)], at(3))
            .await
            .unwrap(),
        Err(ShadowRefusal::TooLarge)
    );
    assert_eq!(
        store
            .shadow_report(&s, &id, vec![reported("a", json!("str"), None)], at(3))
            .await
            .unwrap(),
        Err(ShadowRefusal::NotAnObject)
    );
    // NUL text is refused before anything else.
    assert!(matches!(
        store
            .shadow_update_desired(&s, &id, vec![desired("a\0", json!({}), None)], at(4))
            .await,
        Err(StoreError::InvalidText(_))
    ));
    assert!(matches!(
        store
            .shadow_report(&s, &id, vec![reported("a\0", json!({}), None)], at(4))
            .await,
        Err(StoreError::InvalidText(_))
    ));
    assert_eq!(
        store
            .shadow_update_desired(&s, "n\0", vec![desired("a", json!({}), None)], at(4))
            .await
            .unwrap(),
        Err(ShadowRefusal::DeviceNotFound)
    );
    assert_eq!(store.shadow_get(&s, &id).await.unwrap().unwrap(), before);

    // Exactly at the limits is accepted.
    let full: Vec<DesiredUpdate> = (1..MAX_SHADOW_SERVICES)
        .map(|i| desired(&format!("s{i:03}"), json!({}), None))
        .collect();
    let after = store
        .shadow_update_desired(&s, &id, full, at(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.len(), MAX_SHADOW_SERVICES);
}

fn message(
    s: &TaskScope,
    device_id: &str,
    message_id: &str,
    expires: Option<i64>,
) -> NewDeviceMessage {
    NewDeviceMessage {
        scope: s.clone(),
        device_id: device_id.to_owned(),
        message_id: message_id.to_owned(),
        name: Some("greeting".into()),
        message_json: json!({"hello": "world"}).to_string(),
        encoding: "none".into(),
        payload_format: "standard".into(),
        topic: Some("cmd".into()),
        topic_full_name: None,
        properties_json: Some(json!({"correlation_data": "c1"}).to_string()),
        expires_at: expires.map(at),
    }
}

fn message_ids(list: &[crate::DeviceMessage]) -> Vec<&str> {
    list.iter().map(|m| m.message.message_id.as_str()).collect()
}

pub async fn channel_messages_round_trip(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let id = add(store, &s, "n").await;
    let new = message(&s, &id, "m1", Some(1_000));
    let m1 = store
        .message_insert(new.clone(), at(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m1.message, new);
    assert_eq!(m1.status, MessageStatus::Pending);
    assert_eq!(
        (m1.created_at, m1.finished_at, m1.error.clone()),
        (at(1), None, None)
    );
    assert_eq!(
        store.message_get(&s, &id, "m1").await.unwrap(),
        Some(m1.clone())
    );
    assert_eq!(
        store
            .message_insert(message(&s, &id, "m1", None), at(2))
            .await
            .unwrap(),
        Err(MessageRefusal::DuplicateId)
    );
    assert_eq!(
        store
            .message_insert(message(&s, "nope", "m1", None), at(2))
            .await
            .unwrap(),
        Err(MessageRefusal::DeviceNotFound)
    );
    let mut bare = message(&s, &id, "m2", None);
    bare.name = None;
    bare.topic = None;
    bare.properties_json = None;
    bare.topic_full_name = Some("$oc/devices/x/user/y".into());
    let m2 = store
        .message_insert(bare.clone(), at(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m2.message, bare);
    assert!(m2.id > m1.id, "ids in creation order");
    store
        .message_insert(message(&s, &id, "m3", None), at(4))
        .await
        .unwrap()
        .unwrap();

    // Newest first, bounded.
    let list = store.message_list(&s, &id, 10).await.unwrap();
    assert_eq!(message_ids(&list), ["m3", "m2", "m1"]);
    let list = store.message_list(&s, &id, 2).await.unwrap();
    assert_eq!(message_ids(&list), ["m3", "m2"]);
    // Pending oldest first, bounded, unexpired only.
    let pending = store.messages_pending(&s, &id, at(5), 10).await.unwrap();
    assert_eq!(message_ids(&pending), ["m1", "m2", "m3"]);
    let pending = store.messages_pending(&s, &id, at(5), 1).await.unwrap();
    assert_eq!(message_ids(&pending), ["m1"]);
    let pending = store
        .messages_pending(&s, &id, at(1_000), 10)
        .await
        .unwrap();
    assert_eq!(message_ids(&pending), ["m2", "m3"], "m1 expired at 1000");

    // Finished once, from pending only.
    assert!(
        store
            .message_finish(&s, &id, "m2", MessageStatus::Delivered, None, at(6))
            .await
            .unwrap()
    );
    let err = Some(("E1".to_owned(), "no ack".to_owned()));
    assert!(
        !store
            .message_finish(&s, &id, "m2", MessageStatus::Failed, err.clone(), at(7))
            .await
            .unwrap(),
        "finished once"
    );
    assert!(
        store
            .message_finish(&s, &id, "m3", MessageStatus::Failed, err.clone(), at(8))
            .await
            .unwrap()
    );
    assert!(
        !store
            .message_finish(&s, &id, "m1", MessageStatus::Pending, None, at(8))
            .await
            .unwrap(),
        "pending is no end"
    );
    assert!(
        !store
            .message_finish(&s, &id, "nope", MessageStatus::Delivered, None, at(8))
            .await
            .unwrap()
    );
    let m2 = store.message_get(&s, &id, "m2").await.unwrap().unwrap();
    assert_eq!(
        (m2.status, m2.finished_at),
        (MessageStatus::Delivered, Some(at(6)))
    );
    let m3 = store.message_get(&s, &id, "m3").await.unwrap().unwrap();
    assert_eq!((m3.status, m3.error), (MessageStatus::Failed, err));
    let pending = store.messages_pending(&s, &id, at(9), 10).await.unwrap();
    assert_eq!(message_ids(&pending), ["m1"]);

    // Scoped, and NUL keys find nothing.
    let other = scope("p2", "");
    assert_eq!(store.message_get(&other, &id, "m1").await.unwrap(), None);
    assert_eq!(store.message_list(&other, &id, 10).await.unwrap(), vec![]);
    assert_eq!(store.message_get(&s, &id, "m\0").await.unwrap(), None);
    assert_eq!(store.message_list(&s, "n\0", 10).await.unwrap(), vec![]);
    assert_eq!(
        store.messages_pending(&s, "n\0", at(9), 10).await.unwrap(),
        vec![]
    );
    assert!(matches!(
        store
            .message_insert(message(&s, &id, "m\0", None), at(9))
            .await,
        Err(StoreError::InvalidText(_))
    ));
    let mut nul = message(&s, &id, "m9", None);
    nul.message_json = "\"a\0\"".into();
    assert!(matches!(
        store.message_insert(nul, at(9)).await,
        Err(StoreError::InvalidText(_))
    ));
    assert!(matches!(
        store
            .message_finish(
                &s,
                &id,
                "m1",
                MessageStatus::Failed,
                Some(("E\0".into(), "x".into())),
                at(9)
            )
            .await,
        Err(StoreError::InvalidText(_))
    ));
    assert_eq!(store.message_list(&s, &id, 10).await.unwrap().len(), 3);
}

pub async fn channel_messages_expire_by_maintenance(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let id = add(store, &s, "n").await;
    for (m, expires) in [
        ("a", Some(100)),
        ("b", Some(50)),
        ("c", None),
        ("d", Some(300)),
    ] {
        store
            .message_insert(message(&s, &id, m, expires), at(1))
            .await
            .unwrap()
            .unwrap();
    }
    store
        .message_finish(&s, &id, "b", MessageStatus::Delivered, None, at(2))
        .await
        .unwrap();
    assert_eq!(store.next_due(at(3)).await.unwrap(), Some(at(100)));
    let report = store.maintain(at(99), 100).await.unwrap();
    assert_eq!(report.messages_expired, 0);
    // Bounded by max_rows.
    store
        .message_insert(message(&s, &id, "e", Some(100)), at(3))
        .await
        .unwrap()
        .unwrap();
    let report = store.maintain(at(100), 1).await.unwrap();
    assert_eq!(report.messages_expired, 1);
    assert!(report.more);
    let report = store.maintain(at(100), 100).await.unwrap();
    assert_eq!(report.messages_expired, 1);
    for (m, want) in [
        ("a", MessageStatus::Timeout),
        ("b", MessageStatus::Delivered),
        ("c", MessageStatus::Pending),
        ("d", MessageStatus::Pending),
        ("e", MessageStatus::Timeout),
    ] {
        let got = store.message_get(&s, &id, m).await.unwrap().unwrap();
        assert_eq!(got.status, want, "message {m}");
        if want == MessageStatus::Timeout {
            assert_eq!(got.finished_at, Some(at(100)));
        }
    }
    assert!(
        !store
            .message_finish(&s, &id, "a", MessageStatus::Delivered, None, at(101))
            .await
            .unwrap(),
        "a timed-out message is final"
    );
    assert_eq!(store.next_due(at(101)).await.unwrap(), Some(at(300)));
}

pub async fn channel_messages_pending_cap(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let id = add(store, &s, "n").await;
    for i in 0..MAX_PENDING_MESSAGES_PER_DEVICE {
        store
            .message_insert(message(&s, &id, &format!("m{i}"), None), at(1))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        store
            .message_insert(message(&s, &id, "over", None), at(2))
            .await
            .unwrap(),
        Err(MessageRefusal::TooManyPending)
    );
    // Another device has its own cap; a finished message frees a slot.
    let other = add(store, &s, "other").await;
    store
        .message_insert(message(&s, &other, "m0", None), at(2))
        .await
        .unwrap()
        .unwrap();
    store
        .message_finish(&s, &id, "m0", MessageStatus::Delivered, None, at(3))
        .await
        .unwrap();
    store
        .message_insert(message(&s, &id, "over", None), at(4))
        .await
        .unwrap()
        .unwrap();
    let oldest = store.messages_pending(&s, &id, at(5), 2).await.unwrap();
    assert_eq!(message_ids(&oldest), ["m1", "m2"]);
}

pub async fn channel_device_delete_takes_its_channel_rows(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let id = add(store, &s, "n").await;
    let keep = add(store, &s, "keep").await;
    for d in [&id, &keep] {
        store
            .device_session_open(&session(&s, d, &format!("s-{d}"), "node-a", 1))
            .await
            .unwrap()
            .unwrap();
        store
            .shadow_report(&s, d, vec![reported("a", json!({"x": 1}), None)], at(2))
            .await
            .unwrap()
            .unwrap();
        store
            .message_insert(message(&s, d, "m1", Some(500)), at(3))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(store.device_delete(&s, &id, at(4)).await.unwrap(), Ok(()));
    assert_eq!(store.device_session_get(&s, &id).await.unwrap(), None);
    assert_eq!(store.shadow_get(&s, &id).await.unwrap(), None);
    assert_eq!(store.message_list(&s, &id, 10).await.unwrap(), vec![]);
    // A device registered again under the same id starts empty.
    add(store, &s, "n").await;
    assert_eq!(store.shadow_get(&s, &id).await.unwrap(), Some(vec![]));
    assert_eq!(store.message_get(&s, &id, "m1").await.unwrap(), None);
    assert_eq!(store.device_session_get(&s, &id).await.unwrap(), None);
    assert_eq!(
        store.device_get(&s, &id).await.unwrap().unwrap().status,
        DeviceStatus::Inactive
    );
    // The other device keeps everything.
    assert!(store.device_session_get(&s, &keep).await.unwrap().is_some());
    assert_eq!(store.shadow_get(&s, &keep).await.unwrap().unwrap().len(), 1);
    assert_eq!(store.message_list(&s, &keep, 10).await.unwrap().len(), 1);
    assert_eq!(store.device_delete(&s, &id, at(5)).await.unwrap(), Ok(()),);
    assert_eq!(
        store.device_delete(&s, &id, at(5)).await.unwrap(),
        Err(RegistryRefusal::DeviceNotFound),
    );
}
