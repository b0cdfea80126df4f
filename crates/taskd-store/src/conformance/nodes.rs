//! Nodes sharing one store: heartbeats, reaping dead nodes' device sessions, mail.

use std::sync::Arc;

use taskd_core::DeviceStatus;

use super::{at, new_device, scope};
use crate::{
    DeviceSession, MAX_NODE_MAIL_BYTES, MAX_NODE_MAIL_TTL_MS, NodeMailRefusal, NodesReaped, Store,
    StoreError,
};

pub async fn nodes_heartbeats_and_reaping_end_dead_nodes_sessions(store: Arc<dyn Store>) {
    let store = &*store;
    let s = scope("p1", "i1");
    let mut ids = Vec::new();
    for name in ["one", "two", "three"] {
        let d = store
            .device_insert(new_device(&s, "p", name), at(0))
            .await
            .unwrap()
            .unwrap();
        ids.push(d.device_id);
    }
    // A first beat: the store did not know the node. Later beats: it did.
    assert!(!store.node_heartbeat("node-a", at(10)).await.unwrap());
    assert!(store.node_heartbeat("node-a", at(20)).await.unwrap());
    assert!(!store.node_heartbeat("node-b", at(20)).await.unwrap());
    // "node-x" never beats (died before its first beat, or never knew to).
    for (device, node) in ids.iter().zip(["node-a", "node-b", "node-x"]) {
        store
            .device_session_open(&DeviceSession {
                scope: s.clone(),
                device_id: device.clone(),
                session_id: format!("s-{device}"),
                node_id: node.to_owned(),
                connected_at: at(21),
            })
            .await
            .unwrap()
            .unwrap();
    }
    store
        .node_mail_send("node-a", "for a", at(21), at(100_000))
        .await
        .unwrap()
        .unwrap();
    store
        .node_mail_send("node-b", "for b", at(21), at(100_000))
        .await
        .unwrap()
        .unwrap();
    store.node_heartbeat("node-b", at(50)).await.unwrap();

    // Nodes seen since 30 live on; node-a (last seen at 20) is dead, and node-x unknown.
    let reaped = store.nodes_reap(at(30), at(60)).await.unwrap();
    assert_eq!(
        reaped,
        NodesReaped {
            nodes: 1,
            sessions: 2
        }
    );
    let status = |id: &str| {
        let id = id.to_owned();
        let s = s.clone();
        async move { store.device_get(&s, &id).await.unwrap().unwrap().status }
    };
    assert_eq!(status(&ids[0]).await, DeviceStatus::Offline);
    assert_eq!(status(&ids[1]).await, DeviceStatus::Online);
    assert_eq!(status(&ids[2]).await, DeviceStatus::Offline);
    // Its mail went with it; the living node's stays.
    assert_eq!(
        store.node_mail_take("node-a", at(61), 10).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.node_mail_take("node-b", at(61), 10).await.unwrap(),
        vec!["for b"]
    );
    // The reaped node learns it at its next beat (and must close its connections).
    assert!(!store.node_heartbeat("node-a", at(70)).await.unwrap());
    assert!(store.node_heartbeat("node-a", at(80)).await.unwrap());
    // Nothing left to reap, however often it runs.
    assert_eq!(
        store.nodes_reap(at(30), at(90)).await.unwrap(),
        NodesReaped::default()
    );
    assert!(matches!(
        store.node_heartbeat("node\0a", at(90)).await,
        Err(StoreError::InvalidText(_))
    ));
}

pub async fn nodes_mail_round_trip_order_expiry_and_limits(store: Arc<dyn Store>) {
    let store = &*store;
    for (i, body) in ["first", "second", "third"].iter().enumerate() {
        store
            .node_mail_send("node-a", body, at(i as i64), at(10_000))
            .await
            .unwrap()
            .unwrap();
    }
    // Expires at 5 (taken after it, it is dropped unread).
    store
        .node_mail_send("node-a", "stale", at(3), at(5))
        .await
        .unwrap()
        .unwrap();
    store
        .node_mail_send("node-b", "other", at(3), at(10_000))
        .await
        .unwrap()
        .unwrap();
    // Oldest first, at most `max`, each taken once.
    assert_eq!(
        store.node_mail_take("node-a", at(4), 2).await.unwrap(),
        vec!["first", "second"]
    );
    assert_eq!(
        store.node_mail_take("node-a", at(6), 10).await.unwrap(),
        vec!["third"]
    );
    assert_eq!(
        store.node_mail_take("node-a", at(7), 10).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.node_mail_take("node-b", at(7), 10).await.unwrap(),
        vec!["other"]
    );

    // Too large: refused, nothing written.
    let big = "x".repeat(MAX_NODE_MAIL_BYTES + 1);
    assert_eq!(
        store
            .node_mail_send("node-a", &big, at(8), at(100))
            .await
            .unwrap(),
        Err(NodeMailRefusal::TooLarge)
    );
    assert!(matches!(
        store.node_mail_send("node-a", "a\0b", at(8), at(100)).await,
        Err(StoreError::InvalidText(_))
    ));
    assert_eq!(
        store.node_mail_take("node-a", at(9), 10).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store.node_mail_take("node\0a", at(9), 10).await.unwrap(),
        Vec::<String>::new()
    );

    // An expiry far away is cut to the longest a mail may wait.
    store
        .node_mail_send("node-c", "late", at(100), taskd_core::Timestamp(i64::MAX))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .node_mail_take("node-c", at(100 + MAX_NODE_MAIL_TTL_MS + 1), 10)
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    // The reaper deletes expired mail nobody took.
    store
        .node_mail_send("node-d", "gone", at(100), at(200))
        .await
        .unwrap()
        .unwrap();
    store.nodes_reap(at(0), at(300)).await.unwrap();
    assert_eq!(
        store.node_mail_take("node-d", at(150), 10).await.unwrap(),
        Vec::<String>::new()
    );
}

pub async fn nodes_mailbox_is_bounded(store: Arc<dyn Store>) {
    let store = &*store;
    for i in 0..crate::MAX_NODE_MAIL_PER_NODE {
        store
            .node_mail_send("slow", &i.to_string(), at(1), at(1_000))
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(
        store
            .node_mail_send("slow", "one more", at(1), at(1_000))
            .await
            .unwrap(),
        Err(NodeMailRefusal::MailboxFull)
    );
    // Other nodes' mailboxes are their own.
    store
        .node_mail_send("fast", "hello", at(1), at(1_000))
        .await
        .unwrap()
        .unwrap();
    // Once taken, there is room again.
    assert_eq!(
        store.node_mail_take("slow", at(2), 1).await.unwrap(),
        vec!["0"]
    );
    store
        .node_mail_send("slow", "one more", at(2), at(1_000))
        .await
        .unwrap()
        .unwrap();
}
