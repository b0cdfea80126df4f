//! The JSON a device sends and receives (spec §2), read tolerantly: `null`, `""`,
//! missing fields, ISO or compact `event_time`, unknown services are all accepted.

use std::io::Read;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use taskd_core::Timestamp;
use taskd_store::{MAX_VERSION_CHARS, ReportedProperties, ShadowService};

/// Largest payload taskd reads, after gzip too (IoTDA: one PUBLISH ≤ 1 MB).
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("gzip payload is not valid gzip or inflates beyond {MAX_PAYLOAD_BYTES} bytes")]
    Gzip,
    #[error("payload is not JSON")]
    NotJson,
}

/// A payload's bytes, inflated when the topic said `encoding=gzip`; a small file that
/// expands past [`MAX_PAYLOAD_BYTES`] is refused rather than inflated.
pub fn body(payload: &[u8], gzip: bool) -> Result<Vec<u8>, PayloadError> {
    if !gzip {
        return Ok(payload.to_vec());
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(payload)
        .take(MAX_PAYLOAD_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| PayloadError::Gzip)?;
    if out.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::Gzip);
    }
    Ok(out)
}

pub fn json(bytes: &[u8]) -> Result<Value, PayloadError> {
    serde_json::from_slice(bytes).map_err(|_| PayloadError::NotJson)
}

/// Any string-ish field: `null` and missing are `None`.
fn opt_str(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// `services[]` of a property report: each service with an object `properties`.
pub fn reported_properties(report: &Value, now: Timestamp) -> Vec<ReportedProperties> {
    let Some(services) = report.get("services").and_then(Value::as_array) else {
        return Vec::new();
    };
    services
        .iter()
        .filter_map(|s| {
            let service_id = opt_str(s, "service_id").filter(|id| !id.is_empty())?;
            let properties = s.get("properties").filter(|p| p.is_object())?;
            let event_time = s
                .get("event_time")
                .and_then(Value::as_str)
                .and_then(parse_event_time)
                .or(Some(now));
            Some(ReportedProperties {
                service_id,
                properties_json: properties.to_string(),
                event_time,
            })
        })
        .collect()
}

/// One service of an event envelope (`services[]` of `sys/events/up`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    #[serde(default)]
    pub service_id: Option<String>,
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub paras: Option<Value>,
}

/// The services of an event envelope; entries that are not objects are skipped.
pub fn events(envelope: &Value) -> Vec<Event> {
    envelope
        .get("services")
        .and_then(Value::as_array)
        .map(|services| {
            services
                .iter()
                .filter_map(|s| serde_json::from_value::<Event>(s.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A version string a device reported, kept to taskd's limit (longer is cut: a device's
/// version is a label, never a key).
pub fn version_field(paras: &Value, key: &str) -> Option<String> {
    let v = opt_str(paras, key).filter(|s| !s.is_empty())?;
    Some(v.chars().take(MAX_VERSION_CHARS).collect())
}

/// `event_time` as devices send it: compact `20151212T121212Z` (the docs, Java) or ISO
/// `2026-11-30T15:32:56Z` (Python). Anything else: the receive time is used.
pub fn parse_event_time(s: &str) -> Option<Timestamp> {
    use time::macros::format_description;
    let compact = format_description!("[year][month][day]T[hour][minute][second]Z");
    if let Ok(dt) = time::PrimitiveDateTime::parse(s, compact) {
        return Some(Timestamp::from_datetime(dt.assume_utc()));
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(Timestamp::from_datetime)
}

/// IoTDA's compact UTC time, `yyyyMMdd'T'HHmmss'Z'`.
pub fn compact_time(t: Timestamp) -> String {
    use time::macros::format_description;
    t.to_datetime()
        .format(format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default()
}

/// The answer to a device's shadow get (spec §2.7): always a `shadow` array, the
/// Python SDK iterates it without a null check.
pub fn shadow_response(
    device_id: &str,
    shadow: &[ShadowService],
    service_id: Option<&str>,
) -> Value {
    let services: Vec<Value> = shadow
        .iter()
        .filter(|s| service_id.is_none_or(|id| id == s.service_id))
        .map(|s| {
            json!({
                "service_id": s.service_id,
                "desired": section(&s.desired_json, s.desired_event_time),
                "reported": section(&s.reported_json, s.reported_event_time),
                "version": s.version,
            })
        })
        .collect();
    json!({"object_device_id": device_id, "shadow": services})
}

fn section(properties_json: &str, event_time: Option<Timestamp>) -> Value {
    let properties: Value =
        serde_json::from_str(properties_json).unwrap_or_else(|_| Value::Object(Map::new()));
    let mut section = json!({ "properties": properties });
    if let Some(t) = event_time {
        section["event_time"] = Value::String(compact_time(t));
    }
    section
}

/// The desired properties that differ from reported, per service, as a property set's
/// `services` (spec §2.7); empty when the device is in sync.
pub fn desired_delta(shadow: &[ShadowService]) -> Vec<Value> {
    shadow
        .iter()
        .filter_map(|s| {
            let desired: Map<String, Value> = serde_json::from_str(&s.desired_json).ok()?;
            let reported: Map<String, Value> =
                serde_json::from_str(&s.reported_json).unwrap_or_default();
            let delta: Map<String, Value> = desired
                .into_iter()
                .filter(|(k, v)| reported.get(k) != Some(v))
                .collect();
            (!delta.is_empty())
                .then(|| json!({"service_id": s.service_id, "properties": Value::Object(delta)}))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn gzip_is_read_and_bombs_are_refused() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(br#"{"services":[]}"#).unwrap();
        let small = enc.finish().unwrap();
        assert_eq!(body(&small, true).unwrap(), br#"{"services":[]}"#);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b' '; MAX_PAYLOAD_BYTES + 1]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 10_000);
        assert_eq!(body(&bomb, true), Err(PayloadError::Gzip));
        assert_eq!(body(b"not gzip", true), Err(PayloadError::Gzip));
    }

    #[test]
    fn reports_are_read_tolerantly() {
        let now = Timestamp::from_millis(1_000);
        let report = json!({"services": [
            {"service_id": "Switch", "properties": {"state": 0}, "event_time": null},
            {"service_id": "T", "properties": {"t": 1}, "event_time": "20151212T121212Z"},
            {"service_id": "", "properties": {}},
            {"service_id": "NoProps"},
            "junk"
        ]});
        let got = reported_properties(&report, now);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].event_time, Some(now));
        assert_eq!(
            got[1].event_time.map(compact_time).as_deref(),
            Some("20151212T121212Z")
        );
        assert!(reported_properties(&json!({"services": null}), now).is_empty());
        assert_eq!(
            parse_event_time("2026-11-30T15:32:56Z")
                .map(compact_time)
                .as_deref(),
            Some("20261130T153256Z")
        );
        assert_eq!(parse_event_time("yesterday"), None);
    }

    #[test]
    fn the_delta_is_what_desired_says_and_reported_does_not() {
        let s = |d: &str, r: &str| ShadowService {
            service_id: "S".into(),
            desired_json: d.into(),
            desired_event_time: None,
            reported_json: r.into(),
            reported_event_time: None,
            version: 1,
        };
        assert!(desired_delta(&[s(r#"{"a":1}"#, r#"{"a":1,"b":2}"#)]).is_empty());
        assert_eq!(
            desired_delta(&[s(r#"{"a":1,"b":3}"#, r#"{"a":1,"b":2}"#)]),
            vec![json!({"service_id": "S", "properties": {"b": 3}})]
        );
        assert_eq!(
            shadow_response("d", &[s("{}", "{}")], Some("other")),
            json!({"object_device_id": "d", "shadow": []})
        );
    }
}
