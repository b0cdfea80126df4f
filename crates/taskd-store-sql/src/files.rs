//! Uploaded task files: header and rows stored as JSON text, read back whole.

use taskd_core::{NewTaskFile, TaskFile, TaskScope, Timestamp};
use taskd_store::{FileInsertOutcome, StoreResult, TaskFileContent};

use crate::driver::{Conn, Driver, KeyLock, Stmt, Tx};
use crate::{FileRow, corrupt};

pub async fn insert<D: Driver>(
    driver: &D,
    file: NewTaskFile,
    max_files: u32,
    now: Timestamp,
) -> StoreResult<FileInsertOutcome> {
    let columns_json = serde_json::to_string(&file.columns).map_err(|e| corrupt(e.to_string()))?;
    let rows_json = serde_json::to_string(&file.rows).map_err(|e| corrupt(e.to_string()))?;
    let row_count = i64::try_from(file.rows.len()).map_err(|_| corrupt("too many rows"))?;
    let scope = &file.scope;

    let mut tx = driver.begin_write().await?;
    // Uploads to one scope take turns until commit, so two of them can't both count the
    // same free slot.
    D::lock_key(
        &mut tx,
        KeyLock::Files,
        &[&scope.project_id, &scope.instance_id],
    )
    .await?;
    let held = tx
        .fetch_int(
            Stmt::new("SELECT COUNT(*) FROM task_files WHERE project_id = $1 AND instance_id = $2")
                .bind(&scope.project_id)
                .bind(&scope.instance_id),
        )
        .await?;
    if held >= i64::from(max_files) {
        return tx.give_up(FileInsertOutcome::LimitReached).await;
    }
    tx.execute(
        Stmt::new(
            "INSERT INTO task_files (file_id, project_id, instance_id, file_name, columns_json, \
             rows_json, row_count, uploaded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&file.file_id)
        .bind(&scope.project_id)
        .bind(&scope.instance_id)
        .bind(&file.file_name)
        .bind(&*columns_json)
        .bind(&*rows_json)
        .bind(row_count)
        .bind(now.0),
    )
    .await?;
    tx.commit().await?;
    Ok(FileInsertOutcome::Inserted(TaskFile {
        scope: file.scope,
        file_id: file.file_id,
        file_name: file.file_name,
        row_count,
        uploaded_at: now,
    }))
}

pub async fn list<D: Driver>(driver: &D, scope: &TaskScope) -> StoreResult<Vec<TaskFile>> {
    let rows: Vec<FileRow> = driver
        .read()
        .await?
        .fetch_all(
            Stmt::new(
                "SELECT file_id, project_id, instance_id, file_name, row_count, uploaded_at \
                 FROM task_files WHERE project_id = $1 AND instance_id = $2 \
                 ORDER BY uploaded_at DESC, file_id",
            )
            .bind(&scope.project_id)
            .bind(&scope.instance_id),
        )
        .await?;
    Ok(rows.into_iter().map(TaskFile::from).collect())
}

#[derive(sqlx::FromRow)]
struct ContentRow {
    #[sqlx(flatten)]
    file: FileRow,
    columns_json: String,
    rows_json: String,
}

pub async fn get<D: Driver>(
    driver: &D,
    scope: &TaskScope,
    file_id: &str,
) -> StoreResult<Option<TaskFileContent>> {
    let row: Option<ContentRow> = driver
        .read()
        .await?
        .fetch_optional(
            Stmt::new(
                "SELECT file_id, project_id, instance_id, file_name, row_count, uploaded_at, \
                 columns_json, rows_json \
                 FROM task_files WHERE file_id = $1 AND project_id = $2 AND instance_id = $3",
            )
            .bind(file_id)
            .bind(&scope.project_id)
            .bind(&scope.instance_id),
        )
        .await?;
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

pub async fn delete<D: Driver>(driver: &D, scope: &TaskScope, file_id: &str) -> StoreResult<bool> {
    let changed = driver
        .write_one(
            Stmt::new(
                "DELETE FROM task_files WHERE file_id = $1 AND project_id = $2 AND instance_id = $3",
            )
            .bind(file_id)
            .bind(&scope.project_id)
            .bind(&scope.instance_id),
        )
        .await?;
    Ok(changed == 1)
}
