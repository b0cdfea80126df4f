//! Entry points for the fuzz targets in `fuzz/` (docs/fuzzing.md). Not an API: hidden
//! from the docs, and nothing in taskd calls it.
//!
//! The parsers a request meets before any store is touched are private to their dialect
//! modules. The targets must exercise exactly what the handlers run, not a copy, so this
//! module hands them those very functions: every JSON body is read by its handler's own
//! type and checked by its handler's own validation (`json_body`), and the query-string,
//! header, form and task-file readers are re-exported as the handlers call them.

use std::time::Duration;

use axum::http::HeaderMap;
use taskd_core::{
    DeviceUpdate, NewDevice, NewDeviceGroup, NewOtaPackage, NewTask, RetryPolicy, TaskScope,
    Timestamp,
};
use taskd_engine::{ClaimRequest, NewOperation, TargetSource};
use taskd_store::{DesiredUpdate, DeviceAttributes, PageRequest, SecretReset};

pub use crate::iotda::task_file::{Limits, Sheet, read_task_file};
pub use crate::legacy::validate::{Targets as LegacyTargets, ValidCreate as LegacyCreate};
pub use crate::query::{Query, QueryError};
pub use crate::wire_time::{format_compact, parse_compact};

/// The scope every body is checked in: validation never depends on it beyond copying it.
const SCOPE_PROJECT: &str = "0123456789abcdef0123456789abcdef";

/// IoTDA list and show paging (`limit`, `offset`, `marker`), as every IoTDA listing reads
/// it from its query.
pub fn iotda_page(raw_query: &str) -> Result<PageRequest, String> {
    let query = crate::iotda::batch_tasks::parse_query(Some(raw_query)).map_err(describe)?;
    crate::iotda::batch_tasks::page_request(&query).map_err(describe)
}

/// Legacy `pageNo`/`pageSize` of a query: (offset, limit, pageNo, pageSize).
pub fn legacy_paging(raw_query: &str) -> Result<(u32, u32, i64, i64), String> {
    let query = Query::parse(Some(raw_query)).map_err(|e| e.to_string())?;
    crate::legacy::validate::paging(query.get("pageNo"), query.get("pageSize")).map_err(describe)
}

/// A legacy upgrade-task body (`CreateUpgradeTaskInDTO`), validated at `now`.
pub fn legacy_create(body: &[u8], now: Timestamp) -> Result<LegacyCreate, String> {
    crate::legacy::validate::create(body, now).map_err(describe)
}

/// One field of a legacy login body (`application/x-www-form-urlencoded`).
pub fn legacy_form_field(body: &[u8], name: &str) -> Option<String> {
    crate::legacy::auth::form_field(body, name)
}

/// The `app_key` header and bearer token every legacy call but login and refresh carries.
pub fn legacy_app_credentials(headers: &HeaderMap) -> Result<(&str, &str), String> {
    crate::legacy::auth::app_credentials(headers).map_err(describe)
}

/// Every JSON request body taskd reads, named by the operation that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonBody {
    /// IoTDA `CreateBatchTask`.
    IotdaCreateBatchTask,
    /// IoTDA batch-task stop, retry and confirm (`{"targets": [...]}` or nothing).
    IotdaControlTargets,
    /// IoTDA `AddDevice`.
    IotdaAddDevice,
    /// IoTDA `UpdateDevice`.
    IotdaUpdateDevice,
    /// IoTDA `AddDeviceGroup`.
    IotdaAddDeviceGroup,
    /// Native worker claim.
    NativeClaim,
    /// Native worker heartbeat.
    NativeHeartbeat,
    /// Native worker results (each entry checked on its own).
    NativeResults,
    /// Native instance operation create.
    NativeCreateOperation,
    /// Native legacy device attributes.
    NativeDeviceAttributes,
    /// Legacy firmware/software upgrade task create.
    LegacyCreateUpgradeTask,
    /// Legacy token refresh.
    LegacyRefreshToken,
    /// IoTDA `UpdateDeviceShadowDesiredData`.
    IotdaUpdateShadowDesired,
    /// IoTDA `ResetDeviceSecret`.
    IotdaResetDeviceSecret,
    /// IoTDA `CreateOtaPackage`.
    IotdaCreateOtaPackage,
}

impl JsonBody {
    pub const ALL: [JsonBody; 15] = [
        JsonBody::IotdaCreateBatchTask,
        JsonBody::IotdaControlTargets,
        JsonBody::IotdaAddDevice,
        JsonBody::IotdaUpdateDevice,
        JsonBody::IotdaAddDeviceGroup,
        JsonBody::NativeClaim,
        JsonBody::NativeHeartbeat,
        JsonBody::NativeResults,
        JsonBody::NativeCreateOperation,
        JsonBody::NativeDeviceAttributes,
        JsonBody::LegacyCreateUpgradeTask,
        JsonBody::LegacyRefreshToken,
        JsonBody::IotdaUpdateShadowDesired,
        JsonBody::IotdaResetDeviceSecret,
        JsonBody::IotdaCreateOtaPackage,
    ];
}

/// What a body that passed every check of its handler became: what the handler would
/// hand the engine or the store next.
#[derive(Debug)]
pub enum Accepted {
    Task(Box<NewTask>, TargetSource),
    ControlTargets(Option<Vec<String>>),
    Device(Box<NewDevice>),
    DeviceUpdate(DeviceUpdate),
    Group(NewDeviceGroup),
    Claim(ClaimRequest),
    HeartbeatLease(Duration),
    /// Each entry's quoted id and its check: a result to record, `None` for an id taskd
    /// never issued (lease lost), or why it is refused.
    Results(crate::native::worker::CheckedResults),
    Operation(Box<NewOperation>),
    Attributes(DeviceAttributes),
    LegacyTask(Box<LegacyCreate>),
    LegacyRefresh,
    ShadowDesired(Vec<DesiredUpdate>),
    /// The reset and whether the device is disconnected.
    SecretReset(SecretReset, bool),
    OtaPackage(Box<NewOtaPackage>),
}

/// Reads `body` as `kind`'s handler does, up to the point where it would call the engine
/// or the store: the same parse, the same checks, the same error. `Err` is the refusal's
/// text; refusals are never panics.
pub fn json_body(kind: JsonBody, body: &[u8], now: Timestamp) -> Result<Accepted, String> {
    use crate::iotda::batch_tasks::parse_json;
    use crate::native::worker;
    let scope = || TaskScope::new(SCOPE_PROJECT, "");
    match kind {
        JsonBody::IotdaCreateBatchTask => {
            let (task, source) = crate::iotda::batch_tasks::new_task(
                scope(),
                parse_json(body).map_err(describe)?,
                now,
            )
            .map_err(describe)?;
            Ok(Accepted::Task(Box::new(task), source))
        }
        JsonBody::IotdaControlTargets => crate::iotda::batch_tasks::control_targets(body)
            .map(Accepted::ControlTargets)
            .map_err(describe),
        JsonBody::IotdaAddDevice => {
            crate::iotda::devices::new_device(scope(), parse_json(body).map_err(describe)?)
                .map(|d| Accepted::Device(Box::new(d)))
                .map_err(describe)
        }
        JsonBody::IotdaUpdateDevice => {
            crate::iotda::devices::device_update(parse_json(body).map_err(describe)?)
                .map(Accepted::DeviceUpdate)
                .map_err(describe)
        }
        JsonBody::IotdaAddDeviceGroup => {
            crate::iotda::device_groups::new_group(scope(), parse_json(body).map_err(describe)?)
                .map(Accepted::Group)
                .map_err(describe)
        }
        JsonBody::NativeClaim => {
            let b = worker::parse(&bytes::Bytes::copy_from_slice(body)).map_err(describe)?;
            worker::claim_request(b, SCOPE_PROJECT.to_owned())
                .map(Accepted::Claim)
                .map_err(describe)
        }
        JsonBody::NativeHeartbeat => {
            let b = worker::parse(&bytes::Bytes::copy_from_slice(body)).map_err(describe)?;
            worker::heartbeat_lease(&b)
                .map(Accepted::HeartbeatLease)
                .map_err(describe)
        }
        JsonBody::NativeResults => {
            let b = worker::parse(&bytes::Bytes::copy_from_slice(body)).map_err(describe)?;
            worker::checked_results(b)
                .map(Accepted::Results)
                .map_err(describe)
        }
        JsonBody::NativeCreateOperation => {
            let b = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            crate::native::operations::validate(SCOPE_PROJECT.to_owned(), b)
                .map(|op| Accepted::Operation(Box::new(op)))
                .map_err(describe)
        }
        JsonBody::NativeDeviceAttributes => {
            let b = serde_json::from_slice(body).map_err(|e| e.to_string())?;
            crate::native::devices::attributes(b)
                .map(Accepted::Attributes)
                .map_err(describe)
        }
        JsonBody::LegacyCreateUpgradeTask => {
            legacy_create(body, now).map(|v| Accepted::LegacyTask(Box::new(v)))
        }
        JsonBody::LegacyRefreshToken => {
            serde_json::from_slice::<crate::legacy::auth::RefreshIn>(body)
                .map(|_| Accepted::LegacyRefresh)
                .map_err(|e| e.to_string())
        }
        JsonBody::IotdaUpdateShadowDesired => {
            crate::iotda::shadows::desired_updates(parse_json(body).map_err(describe)?)
                .map(Accepted::ShadowDesired)
                .map_err(describe)
        }
        JsonBody::IotdaResetDeviceSecret => {
            crate::iotda::devices::secret_reset(scope(), "fuzz_device", body)
                .map(|(reset, force)| Accepted::SecretReset(reset, force))
                .map_err(describe)
        }
        JsonBody::IotdaCreateOtaPackage => {
            crate::iotda::ota_packages::new_package(scope(), parse_json(body).map_err(describe)?)
                .map(|p| Accepted::OtaPackage(Box::new(p)))
                .map_err(describe)
        }
    }
}

/// The retry policy limits of the IoTDA and legacy dialects, for the targets' checks.
pub fn retry_in_limits(retry: &RetryPolicy) -> bool {
    crate::iotda::validate::RETRY_COUNT.contains(&i64::from(retry.count))
        && crate::iotda::validate::RETRY_INTERVAL_MINUTES
            .contains(&i64::from(retry.interval_minutes))
}

fn describe(e: impl std::fmt::Display) -> String {
    e.to_string()
}
