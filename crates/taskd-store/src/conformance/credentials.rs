//! Projects and credentials.

use std::sync::Arc;

use taskd_core::{Credential, Timestamp};

use super::{T0, at};
use crate::{Store, StoreError};

fn credential(access_key: &str, secret: &str, project: &str, created_at: Timestamp) -> Credential {
    Credential {
        access_key: access_key.to_owned(),
        secret_key: secret.to_owned(),
        project_id: project.to_owned(),
        created_at,
        revoked_at: None,
    }
}

pub async fn credential_round_trip(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
    assert_eq!(store.credential_list().await.unwrap(), vec![]);
    assert_eq!(store.credential_get("AK1").await.unwrap(), None);

    let c1 = credential("AK1", "secret-1", "p1", T0);
    let c2 = credential("AK2", "secret-2", "p2", at(1));
    store.credential_put(&c1).await.unwrap();
    store.credential_put(&c2).await.unwrap();
    assert_eq!(store.credential_get("AK1").await.unwrap(), Some(c1.clone()));
    assert_eq!(store.credential_get("AK2").await.unwrap(), Some(c2.clone()));
    assert_eq!(
        store.credential_get("ak1").await.unwrap(),
        None,
        "keys are case-sensitive"
    );
    assert_eq!(
        store.credential_list().await.unwrap(),
        vec![c1.clone(), c2.clone()]
    );

    assert!(store.credential_revoke("AK1", at(5)).await.unwrap());
    assert_eq!(
        store.credential_get("AK1").await.unwrap(),
        None,
        "revoked keys don't verify"
    );
    assert!(
        !store.credential_revoke("AK1", at(6)).await.unwrap(),
        "already revoked"
    );
    assert!(!store.credential_revoke("nope", at(6)).await.unwrap());
    let revoked = Credential {
        revoked_at: Some(at(5)),
        ..c1.clone()
    };
    assert_eq!(
        store.credential_list().await.unwrap(),
        vec![revoked, c2.clone()],
        "the list keeps revoked keys, oldest first"
    );

    // Putting the key again for its own project replaces the secret and un-revokes it.
    let renewed = credential("AK1", "secret-1b", "p1", at(10));
    store.credential_put(&renewed).await.unwrap();
    let got = store
        .credential_get("AK1")
        .await
        .unwrap()
        .expect("active again");
    assert_eq!(
        (
            got.secret_key.as_str(),
            got.project_id.as_str(),
            got.revoked_at
        ),
        ("secret-1b", "p1", None)
    );
    let list = store.credential_list().await.unwrap();
    assert_eq!(list.len(), 2, "a key is stored once: {list:?}");
    assert!(list.iter().all(|c| c.revoked_at.is_none()));
}

pub async fn credential_other_project_conflicts(store: Arc<dyn Store>) {
    let c1 = credential("AK1", "secret-1", "p1", T0);
    store.credential_put(&c1).await.unwrap();
    let stolen = credential("AK1", "other", "p2", at(1));
    match store.credential_put(&stolen).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.credential_get("AK1").await.unwrap(), Some(c1.clone()));
    assert_eq!(store.credential_list().await.unwrap(), vec![c1]);
}

pub async fn project_ensure_is_idempotent(store: Arc<dyn Store>) {
    store.project_ensure("p1", T0).await.unwrap();
    store.project_ensure("p1", at(1)).await.unwrap();
    let c = credential("AK1", "s", "p1", at(2));
    store.credential_put(&c).await.unwrap();
    assert_eq!(store.credential_get("AK1").await.unwrap(), Some(c));
}

/// Readiness: a working store can take the probe's write, over and over (the clock may
/// even go back across nodes), and it does not disturb the data; a closed one cannot.
pub async fn check_writable_round_trip(store: Arc<dyn Store>) {
    store
        .check_writable(T0)
        .await
        .expect("a fresh store is writable");
    store.check_writable(at(1)).await.expect("again");
    store.check_writable(T0).await.expect("an earlier clock");
    assert_eq!(store.credential_list().await.unwrap(), vec![]);
    store.close().await;
    assert!(
        store.check_writable(at(2)).await.is_err(),
        "a closed store is not writable"
    );
}
