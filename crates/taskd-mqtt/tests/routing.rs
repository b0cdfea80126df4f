//! Two nodes on one store: a device connected to node B is reached through node A's
//! router (mail through the store), and node B's death is noticed by node A's reaper.
//! The store here is one SQLite database both hubs share, so the mailbox is polled (the
//! PostgreSQL `NOTIFY` path runs in tests/sdk/test_cluster.py).

mod common;

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use taskd_core::{Clock, DeviceStatus, ManualClock, TaskScope, Timestamp};
use taskd_engine::device_channel::{ChannelError, DeviceChannel, DeviceCommand};
use taskd_mqtt::{Hub, MqttServer, Router, auth};
use taskd_store::Store;
use tokio_util::sync::CancellationToken;

const NOW: Timestamp = Timestamp::from_millis(1_796_050_800_000); // 2026-11-30T15:00Z
const SECRET: &str = "s3cret-s3cret";
const NODE_TIMEOUT: Duration = Duration::from_millis(300);

struct Node {
    router: Arc<Router>,
    stop: CancellationToken,
}

async fn node(store: &Arc<dyn Store>, clock: &Arc<ManualClock>, name: &str) -> Node {
    let clock: Arc<dyn Clock> = clock.clone();
    let router = Router::new(Hub::new(store.clone(), clock, name.into()));
    router.join().await.unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(Arc::clone(&router).run(NODE_TIMEOUT, stop.clone()));
    Node { router, stop }
}

/// Connects `device_id` to the listener on `port` and answers every command with its
/// parameters, until the connection ends; then the returned task ends.
async fn answering_device(port: u16, device_id: &str) -> tokio::task::JoinHandle<()> {
    let ts = "2026113015";
    let mut o = MqttOptions::new(format!("{device_id}_0_0_{ts}"), "127.0.0.1", port);
    o.set_credentials(device_id, auth::password(ts, SECRET));
    o.set_keep_alive(Duration::from_secs(120));
    let (client, mut events): (AsyncClient, EventLoop) = AsyncClient::new(o, 16);
    loop {
        match events.poll().await.unwrap() {
            Event::Incoming(Packet::ConnAck(_)) => break,
            _ => continue,
        }
    }
    let device_id = device_id.to_owned();
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = event
                && p.topic.contains("/sys/commands/request_id=")
            {
                let id = p.topic.rsplit("request_id=").next().unwrap().to_owned();
                let asked: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                let answer = serde_json::json!({"result_code": 0, "paras": asked["paras"]});
                client
                    .publish(
                        format!("$oc/devices/{device_id}/sys/commands/response/request_id={id}"),
                        QoS::AtLeastOnce,
                        false,
                        answer.to_string(),
                    )
                    .await
                    .unwrap();
            }
        }
    })
}

fn command(n: i64) -> DeviceCommand {
    DeviceCommand {
        service_id: Some("S".into()),
        command_name: Some("C".into()),
        paras: serde_json::json!({ "n": n }),
    }
}

#[tokio::test]
async fn a_device_on_node_b_is_reached_through_node_a_until_b_dies() {
    let store: Arc<dyn Store> = Arc::new(taskd_store_sqlite::open_in_memory().await.unwrap());
    let clock = Arc::new(ManualClock::new(NOW));
    let scope = TaskScope::new("p1", "");
    common::insert_device(&*store, &scope, "prod_a", SECRET, false, NOW).await;
    let a = node(&store, &clock, "node-a").await;
    let b = node(&store, &clock, "node-b").await;
    let server = MqttServer::new(Arc::clone(b.router.hub()), 100, true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let listening = CancellationToken::new();
    tokio::spawn(server.serve(listener, None, listening.clone()));
    let _listening = listening.drop_guard();

    let connected = answering_device(port, "prod_a").await;
    assert!(b.router.hub().holds(&(scope.clone(), "prod_a".into())));
    assert!(!a.router.hub().holds(&(scope.clone(), "prod_a".into())));
    assert!(a.router.is_online(&scope, "prod_a").await);

    // Through node A: mailed to node B, run on the connection, the answer mailed back.
    let reply = a
        .router
        .command(
            &scope,
            "prod_a",
            "cmd-1",
            command(7),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply.payload["paras"], serde_json::json!({"n": 7}));
    // Node B's own router serves it directly.
    let reply = b
        .router
        .command(
            &scope,
            "prod_a",
            "cmd-2",
            command(8),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(reply.payload["paras"], serde_json::json!({"n": 8}));

    // Freezing it through node A closes its connection on node B.
    a.router.disconnect(&scope, "prod_a").await;
    tokio::time::timeout(Duration::from_secs(10), connected)
        .await
        .expect("the connection on node B was closed")
        .unwrap();

    // Node B dies with a device session recorded (a crash leaves it ONLINE)...
    let answering = answering_device(port, "prod_a").await;
    let online = store.device_get(&scope, "prod_a").await.unwrap().unwrap();
    assert_eq!(online.status, DeviceStatus::Online);
    b.stop.cancel();
    // ... and once it has not been seen for the node timeout, node A's reaper ends it.
    clock.advance_millis(10_000);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let d = store.device_get(&scope, "prod_a").await.unwrap().unwrap();
        if d.status == DeviceStatus::Offline {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {:?}",
            d.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        a.router
            .command(
                &scope,
                "prod_a",
                "cmd-3",
                command(9),
                Duration::from_secs(10)
            )
            .await,
        Err(ChannelError::Offline)
    );
    answering.abort();
    a.stop.cancel();
}
