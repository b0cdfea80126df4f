//! Batch-task files: `/v5/iot/{project_id}/batchtask-files[/{file_id}]`.
//!
//! An upload is read (see `task_file`, which bounds what a hostile file can cost) into a
//! header row and data rows once, when it arrives; the rows are what a
//! `document_source` task is made from.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use taskd_core::NewTaskFile;
use taskd_store::FileInsertOutcome;

use super::error::IotdaError;
use super::task_file::{Limits, read_task_file};
use super::validate as v;
use super::{IotdaScope, Multipart, Path};
use crate::AppState;
use crate::wire_time::format_compact;

/// Files kept per project and instance (IoTDA lists at most 10).
pub const MAX_FILES: u32 = 10;
pub const MAX_FILE_NAME_CHARS: usize = 60;

fn check_file_name(name: &str) -> Result<(), IotdaError> {
    let lower = name.to_ascii_lowercase();
    if !(lower.ends_with(".xlsx") || lower.ends_with(".xls")) {
        return Err(IotdaError::FileType);
    }
    let chars = name.chars().count();
    if chars > MAX_FILE_NAME_CHARS {
        return Err(IotdaError::FileName(format!(
            "{chars} characters; at most {MAX_FILE_NAME_CHARS} are allowed."
        )));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(IotdaError::FileName(
            "it contains control characters or path separators.".into(),
        ));
    }
    Ok(())
}

pub async fn upload(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Multipart(mut multipart): Multipart,
) -> Result<Response, IotdaError> {
    let mut upload = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| IotdaError::MalformedBody(format!("multipart body: {e}")))?
    {
        if field.name() == Some("file") {
            let name = field.file_name().unwrap_or_default().to_string();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| IotdaError::MalformedBody(format!("multipart body: {e}")))?;
            upload = Some((name, bytes));
            break;
        }
    }
    let (file_name, bytes) = upload.ok_or_else(|| {
        IotdaError::InvalidInput("The multipart field \"file\" is required.".into())
    })?;
    check_file_name(&file_name)?;
    // Reading 30,000 rows is CPU work: keep it off the async workers.
    let sheet = tokio::task::spawn_blocking(move || read_task_file(&bytes, &Limits::TASK_FILE))
        .await
        .map_err(|e| IotdaError::Internal(e.to_string()))??;
    let file = NewTaskFile {
        scope,
        file_id: uuid::Uuid::new_v4().to_string(),
        file_name,
        columns: sheet.columns,
        rows: sheet.rows,
    };
    match state
        .store
        .file_insert(file, MAX_FILES, state.clock.now())
        .await?
    {
        FileInsertOutcome::LimitReached => Err(IotdaError::FileLimitReached(MAX_FILES)),
        FileInsertOutcome::Inserted(f) => Ok((
            StatusCode::CREATED,
            Json(json!({
                "file_id": f.file_id,
                "file_name": f.file_name,
                "upload_time": format_compact(f.uploaded_at),
            })),
        )
            .into_response()),
    }
}

pub async fn list(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
) -> Result<Response, IotdaError> {
    let files = state.store.file_list(&scope).await?;
    let files: Vec<_> = files
        .iter()
        .map(|f| json!({ "file_id": f.file_id, "file_name": f.file_name, "upload_time": format_compact(f.uploaded_at) }))
        .collect();
    Ok(Json(json!({ "files": files })).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, file_id)): Path<(String, String)>,
) -> Result<Response, IotdaError> {
    if !v::is_file_id(&file_id) {
        return Err(IotdaError::InvalidInput(
            "file_id must be 1-128 letters, digits, '_' or '-'.".into(),
        ));
    }
    if state.store.file_delete(&scope, &file_id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(IotdaError::FileNotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert!(check_file_name("devices.xlsx").is_ok());
        assert!(check_file_name("DEVICES.XLS").is_ok());
        assert!(matches!(
            check_file_name("devices.csv"),
            Err(IotdaError::FileType)
        ));
        let long = format!("{}.xlsx", "a".repeat(56));
        assert!(matches!(
            check_file_name(&long),
            Err(IotdaError::FileName(_))
        ));
    }
}
