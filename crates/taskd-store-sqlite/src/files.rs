//! Uploaded task files: header and rows stored as JSON text, read back whole.

use taskd_core::{NewTaskFile, TaskFile, TaskScope, Timestamp};
use taskd_store::{FileInsertOutcome, StoreResult, TaskFileContent};

use crate::rows::{FileRow, corrupt};
use crate::{SqliteStore, begin_write, db};

pub(crate) async fn insert(
    store: &SqliteStore,
    file: NewTaskFile,
    max_files: u32,
    now: Timestamp,
) -> StoreResult<FileInsertOutcome> {
    let columns_json = serde_json::to_string(&file.columns).map_err(|e| corrupt(e.to_string()))?;
    let rows_json = serde_json::to_string(&file.rows).map_err(|e| corrupt(e.to_string()))?;
    let row_count = i64::try_from(file.rows.len()).map_err(|_| corrupt("too many rows"))?;

    let mut tx = begin_write(store).await?;
    // Counted under the write lock, so two uploads can't both take the last slot.
    let held: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM task_files WHERE project_id = ? AND instance_id = ?",
    )
    .bind(&file.scope.project_id)
    .bind(&file.scope.instance_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db)?;
    if held >= i64::from(max_files) {
        return Ok(FileInsertOutcome::LimitReached);
    }
    sqlx::query(
        "INSERT INTO task_files (file_id, project_id, instance_id, file_name, columns_json, \
         rows_json, row_count, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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

pub(crate) async fn list(store: &SqliteStore, scope: &TaskScope) -> StoreResult<Vec<TaskFile>> {
    let rows: Vec<FileRow> = sqlx::query_as(
        "SELECT file_id, project_id, instance_id, file_name, row_count, uploaded_at \
         FROM task_files WHERE project_id = ? AND instance_id = ? \
         ORDER BY uploaded_at DESC, file_id",
    )
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .fetch_all(&store.reader)
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
    store: &SqliteStore,
    scope: &TaskScope,
    file_id: &str,
) -> StoreResult<Option<TaskFileContent>> {
    let row: Option<ContentRow> = sqlx::query_as(
        "SELECT file_id, project_id, instance_id, file_name, row_count, uploaded_at, \
         columns_json, rows_json \
         FROM task_files WHERE file_id = ? AND project_id = ? AND instance_id = ?",
    )
    .bind(file_id)
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .fetch_optional(&store.reader)
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

pub(crate) async fn delete(
    store: &SqliteStore,
    scope: &TaskScope,
    file_id: &str,
) -> StoreResult<bool> {
    let changed = sqlx::query(
        "DELETE FROM task_files WHERE file_id = ? AND project_id = ? AND instance_id = ?",
    )
    .bind(file_id)
    .bind(&scope.project_id)
    .bind(&scope.instance_id)
    .execute(&store.writer)
    .await
    .map_err(db)?
    .rows_affected();
    Ok(changed == 1)
}
