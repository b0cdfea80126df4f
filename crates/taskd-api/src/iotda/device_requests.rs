//! What the platform asks of a connected device, through the device channel:
//!
//! * `POST /v5/iot/{project_id}/devices/{device_id}/commands` (CreateCommand): synchronous,
//!   answers with the device's response, 408 `IOTDA.014111` after 20 s, 409
//!   `IOTDA.014016` when the device is offline;
//! * `PUT  …/properties` (UpdateProperties, a property set) and `GET …/properties?service_id=`
//!   (ListProperties, a property get), the same way;
//! * `POST …/messages` (CreateMessage): stored `PENDING`, delivered now if the device is
//!   connected, else when it connects, `TIMEOUT` after its `ttl`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use taskd_core::TaskScope;
use taskd_core::device::{MAX_DEVICE_NAME_CHARS, is_device_text, is_word_id};
use taskd_engine::device_channel::{DEVICE_REPLY_TIMEOUT, DeviceCommand};
use taskd_store::{
    MAX_PENDING_MESSAGES_PER_DEVICE, MessageRefusal, NewDeviceMessage, RegistryRefusal,
};

use super::batch_tasks::{invalid, parse_json, parse_query};
use super::devices::{path_device_id, require_device, required_body};
use super::error::IotdaError;
use super::messages::MAX_MESSAGE_ID_CHARS;
use super::{IotdaScope, Path};
use crate::AppState;
use crate::wire_time::format_compact;

/// `service_id` of a command or property request (IoTDA: ≤ 64 characters).
const MAX_SERVICE_ID_CHARS: usize = 64;
/// `command_name` (IoTDA: ≤ 128 characters).
const MAX_COMMAND_NAME_CHARS: usize = 128;
/// A custom topic or full topic name (IoTDA: 128 characters).
const MAX_TOPIC_CHARS: usize = 128;
/// A message's content as JSON text: well under one MQTT publish (1 MB).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// IoTDA's cache time bound for messages, minutes (and its default).
const MAX_TTL_MINUTES: i64 = 1440;
/// A message with `ttl` 0 is not cached: it is delivered if its device is connected
/// now, and times out otherwise after this long.
const UNCACHED_MESSAGE_MILLIS: i64 = 20_000;

/// The device must exist in the scope: 404 `IOTDA.014000` before any exchange.
async fn existing_device(
    state: &AppState,
    scope: &TaskScope,
    raw_id: &str,
) -> Result<String, IotdaError> {
    let device_id = path_device_id(raw_id)?;
    require_device(state, scope, device_id).await?;
    Ok(device_id.to_owned())
}

fn optional_text(v: Option<String>, field: &str, max: usize) -> Result<Option<String>, IotdaError> {
    match v {
        Some(s) if s.is_empty() || s.chars().count() > max || s.contains('\0') => {
            Err(invalid(format!("{field} must be 1-{max} characters.")))
        }
        other => Ok(other),
    }
}

#[derive(Deserialize)]
struct CommandBody {
    service_id: Option<String>,
    command_name: Option<String>,
    paras: Option<Value>,
}

/// Checks a CreateCommand body (pure: the fuzz targets call it too).
pub fn command_request(body: &[u8]) -> Result<DeviceCommand, IotdaError> {
    let body: CommandBody = parse_json(body)?;
    let service_id = optional_text(body.service_id, "service_id", MAX_SERVICE_ID_CHARS)?;
    let command_name = optional_text(body.command_name, "command_name", MAX_COMMAND_NAME_CHARS)?;
    let paras = match body.paras {
        Some(p @ Value::Object(_)) => p,
        Some(_) => return Err(invalid("paras must be a JSON object.")),
        None => return Err(invalid("paras is required.")),
    };
    Ok(DeviceCommand {
        service_id,
        command_name,
        paras,
    })
}

pub async fn create_command(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, IotdaError> {
    required_body(&body)?;
    let command = command_request(&body)?;
    let device_id = existing_device(&state, &scope, &raw_id).await?;
    let command_id = uuid::Uuid::new_v4().to_string();
    let reply = state
        .devices
        .command(
            &scope,
            &device_id,
            &command_id,
            command,
            DEVICE_REPLY_TIMEOUT,
        )
        .await?;
    Ok(Json(json!({"command_id": command_id, "response": reply.payload})).into_response())
}

#[derive(Deserialize)]
struct PropertiesBody {
    services: Option<Value>,
}

/// Checks an UpdateProperties body: `services` is a list of `{service_id, properties}`.
pub fn properties_request(body: &[u8]) -> Result<Value, IotdaError> {
    let body: PropertiesBody = parse_json(body)?;
    let Some(Value::Array(services)) = body.services else {
        return Err(invalid(
            "services must be a list of {service_id, properties}.",
        ));
    };
    if services.is_empty() {
        return Err(invalid("services must not be empty."));
    }
    for s in &services {
        let id_ok = s
            .get("service_id")
            .and_then(Value::as_str)
            .is_some_and(|id| !id.is_empty() && id.chars().count() <= MAX_SERVICE_ID_CHARS);
        if !id_ok || !s.get("properties").is_some_and(Value::is_object) {
            return Err(invalid(format!(
                "each service needs a service_id (1-{MAX_SERVICE_ID_CHARS} characters) and a properties object."
            )));
        }
    }
    Ok(Value::Array(services))
}

pub async fn update_properties(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, IotdaError> {
    required_body(&body)?;
    let services = properties_request(&body)?;
    let device_id = existing_device(&state, &scope, &raw_id).await?;
    let reply = state
        .devices
        .property_set(&scope, &device_id, services, DEVICE_REPLY_TIMEOUT)
        .await?;
    Ok(Json(json!({"request_id": reply.request_id, "response": reply.payload})).into_response())
}

pub async fn list_properties(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, IotdaError> {
    let query = parse_query(raw.as_deref())?;
    let service_id = query.get("service_id").map(str::to_owned);
    let service_id = optional_text(service_id, "service_id", MAX_SERVICE_ID_CHARS)?
        .ok_or_else(|| invalid("service_id is required."))?;
    let device_id = existing_device(&state, &scope, &raw_id).await?;
    let reply = state
        .devices
        .property_get(&scope, &device_id, Some(&service_id), DEVICE_REPLY_TIMEOUT)
        .await?;
    Ok(Json(json!({"request_id": reply.request_id, "response": reply.payload})).into_response())
}

#[derive(Deserialize)]
struct MessageBody {
    message_id: Option<String>,
    name: Option<String>,
    message: Option<Value>,
    properties: Option<Value>,
    encoding: Option<String>,
    payload_format: Option<String>,
    topic: Option<String>,
    topic_full_name: Option<String>,
    ttl: Option<i64>,
}

/// A CreateMessage body, checked; the caller adds the scope, device and times.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRequest {
    pub message_id: Option<String>,
    pub name: Option<String>,
    pub message_json: String,
    pub encoding: String,
    pub payload_format: String,
    pub topic: Option<String>,
    pub topic_full_name: Option<String>,
    pub properties_json: Option<String>,
    pub ttl_minutes: i64,
}

/// Checks a CreateMessage body against IoTDA's rules (`DeviceMessageRequest`).
pub fn message_request(body: &[u8]) -> Result<MessageRequest, IotdaError> {
    let body: MessageBody = parse_json(body)?;
    let message_id = match body.message_id {
        Some(id) if !is_word_id(&id, MAX_MESSAGE_ID_CHARS) => {
            return Err(invalid(format!(
                "message_id must be 1-{MAX_MESSAGE_ID_CHARS} letters, digits, '_' or '-'."
            )));
        }
        other => other,
    };
    if let Some(name) = &body.name
        && !is_device_text(name, MAX_DEVICE_NAME_CHARS.min(128))
    {
        return Err(invalid(
            "name must be 1-128 letters, digits, Chinese characters or _?'#().,&%@!-.",
        ));
    }
    let message = match body.message {
        Some(m @ (Value::String(_) | Value::Object(_))) => m,
        Some(_) => return Err(invalid("message must be a string or a JSON object.")),
        None => return Err(invalid("message is required.")),
    };
    let message_json = message.to_string();
    if message_json.len() > MAX_MESSAGE_BYTES || message_json.contains("\\u0000") {
        return Err(invalid(format!(
            "message must be at most {MAX_MESSAGE_BYTES} bytes as JSON, without NUL characters."
        )));
    }
    let encoding = body.encoding.unwrap_or_else(|| "none".into());
    if !matches!(encoding.as_str(), "none" | "base64") {
        return Err(invalid("encoding must be none or base64."));
    }
    if encoding == "base64" {
        use base64::Engine as _;
        let ok = message
            .as_str()
            .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
        if !ok {
            return Err(invalid("a base64 message must be a base64 string."));
        }
    }
    let payload_format = body.payload_format.unwrap_or_else(|| "standard".into());
    if !matches!(payload_format.as_str(), "standard" | "raw") {
        return Err(invalid("payload_format must be standard or raw."));
    }
    if body.topic.is_some() && body.topic_full_name.is_some() {
        return Err(invalid("give topic or topic_full_name, not both."));
    }
    let topic_ok = |t: &str| {
        !t.is_empty() && t.chars().count() <= MAX_TOPIC_CHARS && !t.contains(['+', '#', '\0'])
    };
    for t in [&body.topic, &body.topic_full_name].into_iter().flatten() {
        if !topic_ok(t) {
            return Err(invalid(format!(
                "topic and topic_full_name must be 1-{MAX_TOPIC_CHARS} characters without wildcards."
            )));
        }
    }
    let ttl_minutes = body.ttl.unwrap_or(MAX_TTL_MINUTES);
    if !(0..=MAX_TTL_MINUTES).contains(&ttl_minutes) || ttl_minutes % 5 != 0 {
        return Err(invalid("ttl must be a multiple of 5 in 0-1440 (minutes)."));
    }
    let properties_json = match body.properties {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) if p.to_string().len() <= 4096 => Some(p.to_string()),
        Some(_) => {
            return Err(invalid(
                "properties must be a JSON object of at most 4096 bytes.",
            ));
        }
    };
    Ok(MessageRequest {
        message_id,
        name: body.name,
        message_json,
        encoding,
        payload_format,
        topic: body.topic,
        topic_full_name: body.topic_full_name,
        properties_json,
        ttl_minutes,
    })
}

pub async fn create_message(
    State(state): State<AppState>,
    IotdaScope(scope): IotdaScope,
    Path((_, raw_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, IotdaError> {
    required_body(&body)?;
    let request = message_request(&body)?;
    let device_id = path_device_id(&raw_id)?.to_owned();
    let now = state.clock.now();
    let message_id = request
        .message_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let expires_at = if request.ttl_minutes == 0 {
        now.plus_millis(UNCACHED_MESSAGE_MILLIS)
    } else {
        now.plus_minutes(request.ttl_minutes)
    };
    let stored = state
        .store
        .message_insert(
            NewDeviceMessage {
                scope: scope.clone(),
                device_id,
                message_id: message_id.clone(),
                name: request.name,
                message_json: request.message_json,
                encoding: request.encoding,
                payload_format: request.payload_format,
                topic: request.topic,
                topic_full_name: request.topic_full_name,
                properties_json: request.properties_json,
                expires_at: Some(expires_at),
            },
            now,
        )
        .await?
        .map_err(|refused| match refused {
            MessageRefusal::DeviceNotFound => IotdaError::Registry(RegistryRefusal::DeviceNotFound),
            MessageRefusal::DuplicateId => IotdaError::MessageExists(message_id.clone()),
            MessageRefusal::TooManyPending => {
                IotdaError::TooManyPendingMessages(MAX_PENDING_MESSAGES_PER_DEVICE)
            }
        })?;
    // Delivered in the background: the answer says PENDING, as IoTDA's does, and
    // ShowDeviceMessage follows it to DELIVERED (or FAILED, TIMEOUT).
    let devices = state.devices.clone();
    let to_deliver = stored.clone();
    tokio::spawn(async move {
        if let Err(e) = devices.deliver_message(&to_deliver).await {
            tracing::debug!(message_id = %to_deliver.message.message_id, error = %e, "message not delivered yet");
        }
    });
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "message_id": message_id,
            "result": {
                "status": stored.status.as_str(),
                "created_time": format_compact(stored.created_at),
            }
        })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_bodies() {
        assert!(command_request(br#"{"paras": {"v": 1}}"#).is_ok());
        assert!(command_request(br#"{"service_id": "", "paras": {}}"#).is_err());
        assert!(command_request(br#"{"paras": "x"}"#).is_err());
        assert!(command_request(br#"{"service_id": "s"}"#).is_err());
        let long = format!(
            r#"{{"command_name": "{}", "paras": {{}}}}"#,
            "c".repeat(129)
        );
        assert!(command_request(long.as_bytes()).is_err());
    }

    #[test]
    fn message_bodies() {
        let m = message_request(br#"{"message": "hi"}"#).unwrap();
        assert_eq!(m.ttl_minutes, 1440);
        assert_eq!(m.payload_format, "standard");
        assert!(message_request(br#"{"message": "hi", "ttl": 7}"#).is_err());
        assert!(message_request(br#"{"message": "hi", "ttl": 1445}"#).is_err());
        assert!(message_request(br#"{"message": 5}"#).is_err());
        assert!(
            message_request(br#"{"message": "hi", "topic": "a", "topic_full_name": "b"}"#).is_err()
        );
        assert!(message_request(br#"{"message": "hi", "topic": "a/#"}"#).is_err());
        assert!(message_request(br#"{"message": "!!", "encoding": "base64"}"#).is_err());
        assert!(message_request(br#"{"message": "aGk=", "encoding": "base64"}"#).is_ok());
        assert!(message_request(br#"{"message": "hi", "message_id": "a b"}"#).is_err());
        let big = format!(r#"{{"message": "{}"}}"#, "x".repeat(MAX_MESSAGE_BYTES));
        assert!(message_request(big.as_bytes()).is_err());
    }
}
