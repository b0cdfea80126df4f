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

/// Parses `yyyyMMdd'T'HHmmss'Z'`; `None` when the shape or the date is invalid.
pub fn parse_compact(s: &str) -> Option<Timestamp> {
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
        ] {
            assert_eq!(parse_compact(bad), None, "{bad}");
        }
    }
}
