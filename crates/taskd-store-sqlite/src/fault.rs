//! Fault injection for tests (feature `fault-injection`): a full disk without filling one.
//!
//! SQLite answers `SQLITE_FULL` ("database or disk is full") both when the file system
//! has no room and when the database would grow past the connection's
//! `PRAGMA max_page_count`; the second is what this sets, on the writer only. The limit
//! is per connection, so the writer pool sets it again on every connection it opens.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::sqlite::SqlitePoolOptions;

use crate::{SqliteDriver, db};
use taskd_store::StoreResult;

/// SQLite's largest `max_page_count`: no limit in practice.
const NO_LIMIT: u32 = u32::MAX - 1;

pub(crate) fn apply_page_limit(
    options: SqlitePoolOptions,
    limit: Arc<AtomicU32>,
) -> SqlitePoolOptions {
    options.after_connect(move |conn, _| {
        let limit = limit.load(Ordering::Acquire);
        Box::pin(async move {
            if limit != 0 {
                set_max_page_count(conn, limit).await?;
            }
            Ok(())
        })
    })
}

async fn set_max_page_count(
    conn: &mut sqlx::SqliteConnection,
    pages: u32,
) -> Result<(), sqlx::Error> {
    // A pragma takes no bound parameters; `pages` is a number.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "PRAGMA max_page_count = {pages}"
    )))
    .execute(conn)
    .await?;
    Ok(())
}

impl SqliteDriver {
    /// Lets the database grow by at most `extra_pages` more pages (of 4 KiB): writes
    /// that need more fail with `SQLITE_FULL`, like on a full disk. `None` lifts the
    /// limit ("space was freed").
    pub async fn limit_pages(&self, extra_pages: Option<u32>) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await.map_err(db)?;
        let limit = match extra_pages {
            Some(extra) => {
                let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db)?;
                u32::try_from(pages)
                    .unwrap_or(NO_LIMIT)
                    .saturating_add(extra)
            }
            None => NO_LIMIT,
        };
        self.page_limit.store(
            if extra_pages.is_some() { limit } else { 0 },
            Ordering::Release,
        );
        set_max_page_count(&mut conn, limit).await.map_err(db)
    }
}
