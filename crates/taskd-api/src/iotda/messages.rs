//! Platform-to-device messages, read side: `/v5/iot/{project_id}/devices/{device_id}/
//! messages[/{message_id}]` (ListDeviceMessages, ShowDeviceMessage). Messages are stored
//! by the device channel (`Store::message_insert`).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::batch_tasks::invalid;
use super::devices::{path_device_id, require_device};
use super::error::IotdaError;
use super::wire::{DeviceMessageView, ListDeviceMessagesView};
use super::{IotdaScope, Path};
use crate::AppState;

/// ListDeviceMessages has no paging: it answers the newest this many.
pub const LIST_LIMIT: u32 = 1_000;
/// A message id (IoTDA: at most 100 characters).
pub const MAX_MESSAGE_ID_CHARS: usize = 100;

pub async fn list(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
) -> Result<Response, IotdaError> {
    let device_id = path_device_id(&raw_id)?;
    // An unknown device is a 404, not an empty list.
    require_device(&state, &scope, device_id).await?;
    let messages = state
        .store
        .message_list(&scope, device_id, LIST_LIMIT)
        .await?;
    Ok(Json(ListDeviceMessagesView {
        device_id: device_id.to_owned(),
        messages: messages.iter().map(Into::into).collect(),
    })
    .into_response())
}

pub async fn show(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id, message_id)): Path<(String, String, String)>,
) -> Result<Response, IotdaError> {
    let device_id = path_device_id(&raw_id)?;
    let n = message_id.chars().count();
    if n == 0 || n > MAX_MESSAGE_ID_CHARS || message_id.chars().any(char::is_control) {
        return Err(invalid(format!(
            "message_id must be 1-{MAX_MESSAGE_ID_CHARS} characters, no control characters."
        )));
    }
    let message = match state
        .store
        .message_get(&scope, device_id, &message_id)
        .await?
    {
        Some(m) => m,
        None => {
            // Which of the two is missing decides the answer.
            require_device(&state, &scope, device_id).await?;
            return Err(IotdaError::MessageNotFound);
        }
    };
    Ok(Json(DeviceMessageView::from(&message)).into_response())
}
