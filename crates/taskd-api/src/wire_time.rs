//! Time formats the dialects put on the wire.

use taskd_core::Timestamp;
use time::format_description::FormatItem;
use time::macros::format_description;

/// IoTDA and the legacy API: `yyyyMMdd'T'HHmmss'Z'`, UTC.
const COMPACT: &[FormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

pub fn format_compact(t: Timestamp) -> String {
    t.to_datetime().format(COMPACT).unwrap_or_default()
}

/// The worker protocol, IoTDA instance tasks, RabbitMQ: `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`, UTC.
const ISO_MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

pub fn format_iso_millis(t: Timestamp) -> String {
    t.to_datetime().format(ISO_MILLIS).unwrap_or_default()
}

/// SWR: `yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'` (microseconds; taskd keeps milliseconds).
const ISO_MICROS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

pub fn format_iso_micros(t: Timestamp) -> String {
    t.to_datetime().format(ISO_MICROS).unwrap_or_default()
}

/// DMS: `YYYYMMDDHHmmss`, UTC.
const DMS_COMPACT: &[FormatItem<'static>] =
    format_description!("[year][month][day][hour][minute][second]");

/// Parses `YYYYMMDDHHmmss` (exactly 14 digits, a real date); `None` otherwise.
pub fn parse_dms_compact(s: &str) -> Option<Timestamp> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let dt = time::PrimitiveDateTime::parse(s, DMS_COMPACT).ok()?;
    Some(Timestamp::from_datetime(dt.assume_utc()))
}

/// Parses `yyyyMMdd'T'HHmmss'Z'`; `None` when the shape or the date is invalid.
pub fn parse_compact(s: &str) -> Option<Timestamp> {
    // `time`'s [year] also takes a sign (`+2015…`, `-0001…`), which this format has not.
    if s.len() != 16 || !s.as_bytes()[..8].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let dt = time::PrimitiveDateTime::parse(s, COMPACT).ok()?;
    Some(Timestamp::from_datetime(dt.assume_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_round_trip() {
        let t = parse_compact("20151212T121212Z").unwrap();
        assert_eq!(format_compact(t), "20151212T121212Z");
        assert_eq!(t.unix_secs(), 1_449_922_332);
    }

    #[test]
    fn dms_and_micros() {
        let t = parse_dms_compact("20151212121212").unwrap();
        assert_eq!(t.unix_secs(), 1_449_922_332);
        assert!(parse_dms_compact("20151312121212").is_none());
        assert!(parse_dms_compact("2015121212121").is_none());
        assert!(parse_dms_compact("2015-12-12T12:12").is_none());
        assert_eq!(
            format_iso_micros(Timestamp(1_449_922_332_007)),
            "2015-12-12T12:12:12.007000Z"
        );
    }

    #[test]
    fn iso_millis_keeps_milliseconds() {
        assert_eq!(
            format_iso_millis(Timestamp(1_449_922_332_007)),
            "2015-12-12T12:12:12.007Z"
        );
    }

    #[test]
    fn compact_rejects_bad_dates_and_shapes() {
        for bad in [
            "20151312T121212Z",
            "20150230T000000Z",
            "2015-12-12T12:12:12Z",
            "20151212T121212",
            "20151212T246000Z",
            "",
            // Found by the legacy_parsers fuzz target: `time`'s [year] takes a sign.
            "+20151212T121212Z",
            "-00011212T121212Z",
        ] {
            assert_eq!(parse_compact(bad), None, "{bad}");
        }
    }
}
