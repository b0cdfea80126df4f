//! Readiness: can the store take a write now?
//!
//! A full disk is not always visible to a small write: SQLite reuses the WAL's frames
//! after a checkpoint and updates a row in place, so the probe's one-row update may
//! succeed while every insert fails. So before writing it also measures the room left,
//! the least of the file system's free space and what the writer's page limit allows.

use std::path::Path;

use taskd_core::Timestamp;
use taskd_store::{MIN_WRITE_ROOM_BYTES, StoreError, StoreResult};

use crate::{SqliteDriver, begin_write, db};

pub(crate) async fn check_writable(store: &SqliteDriver, now: Timestamp) -> StoreResult<()> {
    if let Some(dir) = &store.data_dir {
        let free = free_bytes(dir.clone()).await?;
        refuse_below(free, "free on the file system of the data directory")?;
    }
    let mut tx = begin_write(store).await?;
    // The page limit is the writer connection's own, hence in its transaction.
    let page_size: i64 = pragma(&mut tx, "PRAGMA page_size").await?;
    let pages: i64 = pragma(&mut tx, "PRAGMA page_count").await?;
    let free_pages: i64 = pragma(&mut tx, "PRAGMA freelist_count").await?;
    let max_pages: i64 = pragma(&mut tx, "PRAGMA max_page_count").await?;
    let room = (max_pages - pages + free_pages).max(0) * page_size;
    refuse_below(
        u64::try_from(room).unwrap_or(0),
        "left below the database's page limit",
    )?;
    sqlx::query("UPDATE health SET checked_at = ? WHERE id = 1")
        .bind(now.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.commit().await.map_err(db)
}

async fn pragma(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    sql: &'static str,
) -> StoreResult<i64> {
    sqlx::query_scalar(sql)
        .fetch_one(&mut **tx)
        .await
        .map_err(db)
}

fn refuse_below(room: u64, what: &str) -> StoreResult<()> {
    if room < MIN_WRITE_ROOM_BYTES {
        return Err(StoreError::Backend(
            format!(
                "database or disk is full: {room} bytes {what}, less than the \
                 {MIN_WRITE_ROOM_BYTES} a write may need"
            )
            .into(),
        ));
    }
    Ok(())
}

/// Bytes an unprivileged writer may still use on `dir`'s file system. Off the runtime's
/// threads: a hung network file system must not stall them.
async fn free_bytes(dir: std::sync::Arc<Path>) -> StoreResult<u64> {
    let stat = tokio::task::spawn_blocking(move || nix::sys::statvfs::statvfs(&*dir))
        .await
        .map_err(|e| StoreError::Backend(Box::new(e)))?
        .map_err(|e| StoreError::Backend(Box::new(e)))?;
    #[allow(
        clippy::useless_conversion,
        reason = "the field types differ by platform"
    )]
    Ok(u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size())))
}
