//! Nodes sharing one store: who is alive (`cluster_nodes`), ending the device sessions of
//! those that are not, and the mailboxes nodes reach each other through (`node_mail`).
//! A node's mail is read only by that node.

use taskd_core::Timestamp;
use taskd_store::{
    MAX_NODE_MAIL_BYTES, MAX_NODE_MAIL_PER_NODE, MAX_NODE_MAIL_TTL_MS, NodeMailRefusal,
    NodesReaped, StoreResult,
};

use crate::channel::sessions_close_node;
use crate::driver::{Conn, Driver, Stmt, Tx};

pub async fn heartbeat<D: Driver>(driver: &D, node_id: &str, now: Timestamp) -> StoreResult<bool> {
    let known = driver
        .write_one(
            Stmt::new("UPDATE cluster_nodes SET seen_at = $2 WHERE node_id = $1")
                .bind(node_id)
                .bind(now.0),
        )
        .await?;
    if known > 0 {
        return Ok(true);
    }
    driver
        .write_one(
            Stmt::new(
                "INSERT INTO cluster_nodes (node_id, seen_at) VALUES ($1, $2) \
                 ON CONFLICT (node_id) DO UPDATE SET seen_at = excluded.seen_at",
            )
            .bind(node_id)
            .bind(now.0),
        )
        .await?;
    Ok(false)
}

pub async fn reap<D: Driver>(
    driver: &D,
    seen_before: Timestamp,
    now: Timestamp,
) -> StoreResult<NodesReaped> {
    let mut reaped = NodesReaped::default();
    let dead: Vec<(String,)> = driver
        .read()
        .await?
        .fetch_all(
            Stmt::new("SELECT node_id FROM cluster_nodes WHERE seen_at < $1 ORDER BY node_id")
                .bind(seen_before.0),
        )
        .await?;
    for (node_id,) in dead {
        // The record goes first, guarded by the deadline: a node that beat again meanwhile
        // keeps it (and its sessions). One that beats after this learns it was reaped
        // (`heartbeat` answers false) and closes the connections it still holds.
        let mut tx = driver.begin_write().await?;
        let forgotten = tx
            .execute(
                Stmt::new("DELETE FROM cluster_nodes WHERE node_id = $1 AND seen_at < $2")
                    .bind(&node_id)
                    .bind(seen_before.0),
            )
            .await?;
        if forgotten == 0 {
            tx.rollback().await?;
            continue;
        }
        tx.execute(Stmt::new("DELETE FROM node_mail WHERE node_id = $1").bind(&node_id))
            .await?;
        tx.commit().await?;
        reaped.nodes += 1;
        reaped.sessions += sessions_close_node(driver, &node_id, now).await?;
    }
    // Sessions of a node the store does not know: recorded by a reaped node before it
    // noticed, or by a process that died before its first beat.
    let orphans: Vec<(String,)> = driver
        .read()
        .await?
        .fetch_all(Stmt::new(
            "SELECT DISTINCT node_id FROM device_sessions \
             WHERE node_id NOT IN (SELECT node_id FROM cluster_nodes) ORDER BY node_id",
        ))
        .await?;
    for (node_id,) in orphans {
        reaped.sessions += sessions_close_node(driver, &node_id, now).await?;
    }
    driver
        .write_one(Stmt::new("DELETE FROM node_mail WHERE expires_at < $1").bind(now.0))
        .await?;
    Ok(reaped)
}

pub async fn mail_send<D: Driver>(
    driver: &D,
    node_id: &str,
    body: &str,
    now: Timestamp,
    expires_at: Timestamp,
) -> StoreResult<Result<(), NodeMailRefusal>> {
    if body.len() > MAX_NODE_MAIL_BYTES {
        return Ok(Err(NodeMailRefusal::TooLarge));
    }
    let expires_at = expires_at.0.min(now.0.saturating_add(MAX_NODE_MAIL_TTL_MS));
    let mut tx = driver.begin_write().await?;
    // Counted without a lock: senders racing for the last places may pass the cap by
    // their number, never by more (each holds one request).
    let waiting = tx
        .fetch_int(
            Stmt::new(
                "SELECT COUNT(*) FROM \
                 (SELECT 1 FROM node_mail WHERE node_id = $1 AND expires_at >= $2 LIMIT $3) w",
            )
            .bind(node_id)
            .bind(now.0)
            .bind(MAX_NODE_MAIL_PER_NODE),
        )
        .await?;
    if waiting >= MAX_NODE_MAIL_PER_NODE {
        return tx.give_up(Err(NodeMailRefusal::MailboxFull)).await;
    }
    tx.execute(
        Stmt::new("INSERT INTO node_mail (node_id, body, expires_at) VALUES ($1, $2, $3)")
            .bind(node_id)
            .bind(body)
            .bind(expires_at),
    )
    .await?;
    D::notify_mail(&mut tx, node_id).await?;
    tx.commit().await?;
    Ok(Ok(()))
}

pub async fn mail_take<D: Driver>(
    driver: &D,
    node_id: &str,
    now: Timestamp,
    max: u32,
) -> StoreResult<Vec<String>> {
    let mut tx = driver.begin_write().await?;
    let mut taken: Vec<(i64, String, i64)> = tx
        .fetch_all(
            Stmt::new(
                "DELETE FROM node_mail WHERE id IN \
                 (SELECT id FROM node_mail WHERE node_id = $1 ORDER BY id LIMIT $2) \
                 RETURNING id, body, expires_at",
            )
            .bind(node_id)
            .bind(i64::from(max)),
        )
        .await?;
    tx.commit().await?;
    // RETURNING gives no order.
    taken.sort_unstable_by_key(|(id, _, _)| *id);
    Ok(taken
        .into_iter()
        .filter(|(_, _, expires_at)| *expires_at >= now.0)
        .map(|(_, body, _)| body)
        .collect())
}
