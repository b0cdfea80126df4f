//! Wake-ups across nodes: a write that makes sub-tasks claimable sends
//! `NOTIFY taskd_ready` in its transaction (delivered at commit, dropped on rollback), and
//! every node LISTENs and wakes its long-polling claims. Polling stays the fallback, so a
//! notification lost to a reconnect only delays work by one poll interval.
//!
//! Mail between nodes (`Store::node_mail_send`) is announced the same way on a second
//! channel, `taskd_mail`, its payload the receiving node's id. Every notification on it
//! wakes every node, which looks in its own mailbox (one indexed `DELETE … RETURNING`,
//! empty for all but the addressee): the store does not know which node it serves.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgConnection;
use sqlx::postgres::{PgListener, PgPool};
use taskd_store::StoreResult;
use tokio::sync::Notify;

use crate::db;

/// One channel for the whole database. Stores in other schemas of the same database
/// (tests) share it; for them a notification is a harmless extra look.
pub(crate) const CHANNEL: &str = "taskd_ready";
/// Mail for a node; the payload is its id.
pub(crate) const MAIL_CHANNEL: &str = "taskd_mail";

/// Queues the notification in the caller's transaction.
pub(crate) async fn notify_ready(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// Queues "mail for `node_id`" in the caller's transaction.
pub(crate) async fn notify_mail(conn: &mut PgConnection, node_id: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(MAIL_CHANNEL)
        .bind(node_id)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// Runs until aborted (`PgDriver::close`): LISTENs and wakes `ready` or `mail` per
/// notification. While the database is away it retries every second; after a reconnect
/// it wakes both once, since notifications sent meanwhile are lost.
pub(crate) async fn listen(pool: PgPool, ready: Arc<Notify>, mail: Arc<Notify>) {
    let wake_all = || {
        ready.notify_waiters();
        mail.notify_waiters();
    };
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen_all([CHANNEL, MAIL_CHANNEL]).await {
                    tracing::warn!(error = %e, "LISTEN {CHANNEL}, {MAIL_CHANNEL} failed; polling meanwhile");
                } else {
                    wake_all();
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(n)) if n.channel() == MAIL_CHANNEL => mail.notify_waiters(),
                            Ok(Some(_)) => ready.notify_waiters(),
                            // The connection dropped; the next call reconnects and
                            // listens again. What was sent meanwhile is lost: look once.
                            Ok(None) => wake_all(),
                            Err(e) => {
                                tracing::warn!(error = %e, "LISTEN connection lost; polling meanwhile");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "LISTEN connection failed"),
        }
        if pool.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
