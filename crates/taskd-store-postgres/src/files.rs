//! Uploaded task files: header and rows stored as JSON text, read back whole.

use taskd_core::{NewTaskFile, TaskFile, TaskScope, Timestamp};
use taskd_store::{FileInsertOutcome, StoreResult, TaskFileContent};

use crate::rows::{FileRow, corrupt};
use crate::{PgStore, begin_write, db, give_up};

/// The first key of the advisory lock that serialises uploads to one scope (the second
/// is a hash of the scope). Spells "tskf".
const FILE_LOCK_CLASS: i32 = 0x7473_6b66;

pub(crate) async fn insert(
    store: &PgStore,
    file: NewTaskFile,
    max_files: u32,
    now: Timestamp,
) -> StoreResult<FileInsertOutcome> {
    let columns_json = serde_json::to_string(&file.columns).map_err(|e| corrupt(e.to_string()))?;
    let rows_json = serde_json::to_string(&file.rows).map_err(|e| corrupt(e.to_string()))?;
    let row_count = i64::try_from(file.rows.len()).map_err(|_| corrupt("too many rows"))?;

    let mut tx = begin_write(store).await?;
    // Uploads to one scope take turns (on every node) until commit, so two of them can't
    // both count the same free slot. A hash collision only makes two scopes take turns.
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2 || chr(31) || $3))")
        .bind(FILE_LOCK_CLASS)
        .bind(&file.scope.project_id)
        .bind(&file.scope.instance_id)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let held: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM task_files WHERE project_id = $1 AND instance_id = $2",
    )
    .bind(&file.scope.project_id)
    .bind(&file.scope.instance_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    if held >= i64::from(max_files) {
        return give_up(tx, FileInsertOutcome::LimitReached).await;
    }
    sqlx::query(
        "INSERT INTO task_files (file_id, project_id, instance_id, file_name, columns_json, \
         rows_json, row_count, uploaded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&file.file_id)
    .bind(&file.scope.project_id)
    .bind(&file.scope.instance_id)
    .bind(&file.file_name)
    .bind(columns_json)
    .bind(rows_json)
    .bind(row_count)
    .bind(now.0)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    tx.commit().await.map_err(db)?;
    Ok(FileInsertOutcome::Inserted(TaskFile {
        scope: file.scope,
        file_id: file.file_id,
        file_name: file.file_name,
        row_count,
        uploaded_at: now,
    }))
}

pub(crate) async fn list(store: &PgStore, scope: &TaskScope) -> StoreResult<Vec<TaskFile>> {
    let rows: Vec<FileRow> = sqlx::query_as(
        "SELECT file_id, project_id, instance_id, file_name, row_count, uploaded_at \
         FROM task_files WHERE project_id = $1 AND instance_id = $2 \
         ORDER BY uploaded_at DESC, file_id",
    )
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .fetch_all(&store.pool)
    .await
    .map_err(db)?;
    Ok(rows.into_iter().map(TaskFile::from).collect())
}

#[derive(sqlx::FromRow)]
struct ContentRow {
    #[sqlx(flatten)]
    file: FileRow,
    columns_json: String,
    rows_json: String,
}

pub(crate) async fn get(
    store: &PgStore,
    scope: &TaskScope,
    file_id: &str,
) -> StoreResult<Option<TaskFileContent>> {
    let row: Option<ContentRow> = sqlx::query_as(
        "SELECT file_id, project_id, instance_id, file_name, row_count, uploaded_at, \
         columns_json, rows_json \
         FROM task_files WHERE file_id = $1 AND project_id = $2 AND instance_id = $3",
    )
    .bind(file_id)
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .fetch_optional(&store.pool)
    .await
    .map_err(db)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let columns = serde_json::from_str(&row.columns_json)
        .map_err(|e| corrupt(format!("task file {file_id}: columns: {e}")))?;
    let rows = serde_json::from_str(&row.rows_json)
        .map_err(|e| corrupt(format!("task file {file_id}: rows: {e}")))?;
    Ok(Some(TaskFileContent {
        file: row.file.into(),
        columns,
        rows,
    }))
}

pub(crate) async fn delete(store: &PgStore, scope: &TaskScope, file_id: &str) -> StoreResult<bool> {
    let changed = sqlx::query(
        "DELETE FROM task_files WHERE file_id = $1 AND project_id = $2 AND instance_id = $3",
    )
    .bind(file_id)
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .execute(&store.pool)
    .await
    .map_err(db)?
    .rows_affected();
    Ok(changed == 1)
}
