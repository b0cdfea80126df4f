//! Validation of `CreateUpgradeTaskInDTO` (spec §7.4), in the order the platform checks:
//! each rule answers its own code and nothing is written before all pass.

use serde::Deserialize;
use taskd_core::{RetryPolicy, Timestamp};

use super::error::LegacyError;
use super::wire::{OperateDevices, OperatePolicy};
use crate::wire_time::parse_compact;

/// At most this many devices or device groups per task.
pub const MAX_TARGETS: usize = 256;
/// `String(256)` fields.
pub const MAX_STRING: usize = 256;
/// `retryTimes` range.
pub const RETRY_TIMES: std::ops::RangeInclusive<i64> = 1..=5;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateIn {
    file_id: Option<String>,
    targets: Option<OperateDevices>,
    policy: Option<OperatePolicy>,
}

/// Where the devices come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    Devices(Vec<String>),
    Groups {
        names: Vec<String>,
        device_type: String,
        model: String,
        manufacturer_name: String,
    },
}

/// A request that passed every rule.
#[derive(Debug)]
pub struct ValidCreate {
    pub file_id: String,
    pub targets: Targets,
    /// As given, echoed back.
    pub targets_doc: OperateDevices,
    /// As given, with `executeType` defaulted.
    pub policy_doc: OperatePolicy,
    pub schedule_at: Option<Timestamp>,
    pub deadline_at: Option<Timestamp>,
    pub retry: Option<RetryPolicy>,
}

pub(super) fn bounded(field: &str, v: &str) -> Result<(), LegacyError> {
    if v.chars().count() > MAX_STRING {
        return Err(LegacyError::BadRequest(format!(
            "{field} is longer than {MAX_STRING} characters"
        )));
    }
    // No store keeps NUL (`taskd_store::text`).
    if taskd_store::text::has_nul(v) {
        return Err(LegacyError::BadRequest(format!(
            "{field} contains a NUL character"
        )));
    }
    Ok(())
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn list(field: &str, v: &Option<Vec<String>>) -> Result<Option<Vec<String>>, LegacyError> {
    let Some(items) = v.as_ref().filter(|l| !l.is_empty()) else {
        return Ok(None);
    };
    if items.len() > MAX_TARGETS {
        return Err(LegacyError::TooManyTargets);
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if item.is_empty() {
            return Err(LegacyError::BadRequest(format!(
                "{field} holds an empty value"
            )));
        }
        bounded(field, item)?;
        // A device or group named twice is one target.
        if !out.contains(item) {
            out.push(item.clone());
        }
    }
    Ok(Some(out))
}

pub fn create(body: &[u8], now: Timestamp) -> Result<ValidCreate, LegacyError> {
    let input: CreateIn =
        serde_json::from_slice(body).map_err(|e| LegacyError::BadRequest(format!("body: {e}")))?;
    let file_id = nonempty(&input.file_id)
        .ok_or_else(|| LegacyError::BadRequest("fileId is missing".into()))?
        .to_owned();
    bounded("fileId", &file_id)?;

    let targets_doc = input.targets.ok_or(LegacyError::TargetsNull)?;
    for (field, v) in [
        ("deviceType", &targets_doc.device_type),
        ("model", &targets_doc.model),
        ("manufacturerName", &targets_doc.manufacturer_name),
    ] {
        if let Some(v) = v {
            bounded(field, v)?;
        }
    }
    let groups = list("deviceGroups", &targets_doc.device_groups)?;
    let devices = list("devices", &targets_doc.devices)?;
    let targets = match (groups, devices) {
        (None, None) => return Err(LegacyError::TargetsNull),
        (Some(_), Some(_)) => return Err(LegacyError::TargetsBoth),
        (None, Some(devices)) => Targets::Devices(devices),
        (Some(names), None) => {
            let manufacturer_name = nonempty(&targets_doc.manufacturer_name)
                .ok_or(LegacyError::ManufacturerNameNull)?;
            let device_type =
                nonempty(&targets_doc.device_type).ok_or(LegacyError::DeviceTypeNull)?;
            let model = nonempty(&targets_doc.model).ok_or(LegacyError::ModelNull)?;
            Targets::Groups {
                names,
                device_type: device_type.to_owned(),
                model: model.to_owned(),
                manufacturer_name: manufacturer_name.to_owned(),
            }
        }
    };

    let mut policy_doc = input.policy.unwrap_or(OperatePolicy {
        execute_type: Some("now".into()),
        ..OperatePolicy::default()
    });
    let execute_type = nonempty(&policy_doc.execute_type).ok_or(LegacyError::ExecuteType)?;
    let (schedule_at, deadline_at) = match execute_type {
        // taskd knows no device connectivity: device_online runs like now
        // (docs/legacy-northbound.md).
        "now" | "device_online" => {
            // Not parsed, but kept and echoed back as given: bounded like any String(256).
            for (field, v) in [
                ("startTime", &policy_doc.start_time),
                ("endTime", &policy_doc.end_time),
            ] {
                if let Some(v) = v {
                    bounded(field, v)?;
                }
            }
            (None, None)
        }
        "custom" => {
            let parse = |v: &Option<String>| {
                nonempty(v)
                    .and_then(parse_compact)
                    .ok_or(LegacyError::WindowTime)
            };
            let start = parse(&policy_doc.start_time)?;
            let end = parse(&policy_doc.end_time)?;
            if start >= end {
                return Err(LegacyError::StartAfterEnd);
            }
            // The window is given to the second.
            if start.unix_secs() < now.unix_secs() {
                return Err(LegacyError::StartInPast);
            }
            (Some(start), Some(end))
        }
        _ => return Err(LegacyError::ExecuteType),
    };
    policy_doc.execute_type = Some(execute_type.to_owned());
    let retry_type = policy_doc.retry_type.unwrap_or(false);
    if let Some(times) = policy_doc.retry_times
        && !RETRY_TIMES.contains(&times)
    {
        return Err(LegacyError::RetryTimes);
    }
    let retry = if retry_type {
        let times = policy_doc.retry_times.ok_or(LegacyError::RetryTimes)?;
        Some(RetryPolicy {
            count: times as u32,
            interval_minutes: 0,
        })
    } else {
        None
    };
    policy_doc.retry_type = Some(retry_type);

    Ok(ValidCreate {
        file_id,
        targets,
        targets_doc,
        policy_doc,
        schedule_at,
        deadline_at,
        retry,
    })
}

/// `pageNo` (>= 0, default 0) and `pageSize` (1-100, default 10) as (offset, limit).
pub fn paging(
    page_no: Option<&str>,
    page_size: Option<&str>,
) -> Result<(u32, u32, i64, i64), LegacyError> {
    let int = |name: &str, v: Option<&str>, default: i64| -> Result<i64, LegacyError> {
        match v.filter(|s| !s.is_empty()) {
            None => Ok(default),
            Some(s) => s
                .parse::<i64>()
                .map_err(|_| LegacyError::BadRequest(format!("{name} is not an integer"))),
        }
    };
    let page_no = int("pageNo", page_no, 0)?;
    let page_size = int("pageSize", page_size, 10)?;
    if page_no < 0 || !(1..=100).contains(&page_size) {
        return Err(LegacyError::PageLimit);
    }
    let offset = page_no
        .checked_mul(page_size)
        .and_then(|o| u32::try_from(o).ok())
        .ok_or(LegacyError::PageLimit)?;
    Ok((offset, page_size as u32, page_no, page_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_700_000_000_000);

    fn code(body: &str) -> String {
        match create(body.as_bytes(), NOW) {
            Ok(_) => "ok".into(),
            Err(e) => format!("{e}"),
        }
    }

    #[test]
    fn defaults_and_dedup() {
        let v = create(
            br#"{"fileId":"f","targets":{"devices":["a","b","a"]}}"#,
            NOW,
        )
        .unwrap();
        assert_eq!(v.targets, Targets::Devices(vec!["a".into(), "b".into()]));
        assert_eq!(v.policy_doc.execute_type.as_deref(), Some("now"));
        assert_eq!(v.retry, None);
        assert_eq!((v.schedule_at, v.deadline_at), (None, None));
    }

    #[test]
    fn rules() {
        assert_eq!(
            code(r#"{"fileId":"f","targets":{"devices":["a"]},"policy":{"executeType":"later"}}"#),
            "executeType is error or null."
        );
        assert_eq!(
            code(
                r#"{"fileId":"f","targets":{"devices":["a"]},"policy":{"executeType":"now","retryType":true}}"#
            ),
            "retryTimes is null or beyond the limit."
        );
        assert_eq!(
            code(
                r#"{"fileId":"f","targets":{"devices":["a"]},"policy":{"executeType":"now","retryType":true,"retryTimes":6}}"#
            ),
            "retryTimes is null or beyond the limit."
        );
        assert_eq!(
            code(
                r#"{"fileId":"f","targets":{"devices":["a"]},"policy":{"executeType":"now","retryType":true,"retryTimes":5}}"#
            ),
            "ok"
        );
        assert_eq!(
            code(r#"{"fileId":"f","targets":{"deviceGroups":["g"],"deviceType":"t","model":"m"}}"#),
            "manufacturerName is null."
        );
    }

    #[test]
    fn paging_limits() {
        assert_eq!(paging(None, None).unwrap(), (0, 10, 0, 10));
        assert_eq!(paging(Some("2"), Some("100")).unwrap(), (200, 100, 2, 100));
        assert!(matches!(
            paging(Some("-1"), None),
            Err(LegacyError::PageLimit)
        ));
        assert!(matches!(
            paging(None, Some("0")),
            Err(LegacyError::PageLimit)
        ));
        assert!(matches!(
            paging(None, Some("101")),
            Err(LegacyError::PageLimit)
        ));
        assert!(matches!(
            paging(Some("x"), None),
            Err(LegacyError::BadRequest(_))
        ));
        // Found by the legacy_parsers fuzz target: pageNo * pageSize overflowed i64.
        assert!(matches!(
            paging(Some("92233720368547759"), Some("100")),
            Err(LegacyError::PageLimit)
        ));
        assert!(matches!(
            paging(Some(&i64::MAX.to_string()), Some("2")),
            Err(LegacyError::PageLimit)
        ));
    }
}
