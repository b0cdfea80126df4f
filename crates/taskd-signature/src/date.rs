//! `X-Sdk-Date` (`YYYYMMDDTHHMMSSZ`, UTC) <-> Unix seconds.
//!
//! Hand-written civil-calendar arithmetic (Howard Hinnant's `days_from_civil` /
//! `civil_from_days`, proleptic Gregorian) so this crate needs no date library for one
//! fixed format on the hot path.

use crate::error::SignatureError;

const SECS_PER_DAY: i64 = 86_400;

/// Parses `YYYYMMDDTHHMMSSZ` (exactly as the SDK's `%Y%m%dT%H%M%SZ` writes it) into Unix
/// seconds. Rejects anything else, including impossible dates such as `20230229` and
/// leap seconds (the SDK takes the time from Python's `datetime`, which has none).
pub fn parse_sdk_date(value: &str) -> Result<i64, SignatureError> {
    let b = value.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return Err(SignatureError::MalformedDate);
    }
    let num = |range: std::ops::Range<usize>| -> Result<u32, SignatureError> {
        b[range].iter().try_fold(0u32, |acc, &c| {
            if c.is_ascii_digit() {
                Ok(acc * 10 + u32::from(c - b'0'))
            } else {
                Err(SignatureError::MalformedDate)
            }
        })
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(SignatureError::MalformedDate);
    }
    let days = days_from_civil(i64::from(year), month, day);
    Ok(days * SECS_PER_DAY + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second))
}

/// Formats Unix seconds as `YYYYMMDDTHHMMSSZ`. Total for every `i64`; only years
/// 0000..=9999 give a value [`parse_sdk_date`] accepts back.
pub fn format_sdk_date(unix: i64) -> String {
    let (days, secs) = (unix.div_euclid(SECS_PER_DAY), unix.rem_euclid(SECS_PER_DAY));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a valid proleptic-Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Shift the year to start in March so the leap day is the last day of the year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = i64::from((month + 9) % 12); // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // Both fit in u32 by construction: day in 1..=31, month in 1..=12.
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        // `date -u -d 2024-03-15T08:09:10Z +%s`
        assert_eq!(parse_sdk_date("20240315T080910Z"), Ok(1_710_490_150));
        assert_eq!(parse_sdk_date("19700101T000000Z"), Ok(0));
        assert_eq!(parse_sdk_date("19691231T235959Z"), Ok(-1));
        assert_eq!(parse_sdk_date("20000229T120000Z"), Ok(951_825_600));
        assert_eq!(parse_sdk_date("20261123T121050Z"), Ok(1_795_435_850));
        assert_eq!(format_sdk_date(1_710_490_150), "20240315T080910Z");
        assert_eq!(format_sdk_date(-1), "19691231T235959Z");
        assert_eq!(format_sdk_date(951_825_600), "20000229T120000Z");
    }

    #[test]
    fn rejects_malformed_and_impossible_dates() {
        for bad in [
            "",
            "20240315T080910",
            "20240315T080910z",
            "20240315 080910Z",
            "2024-03-15T08:09:10Z",
            "20240315T080910ZZ",
            "2024031 T080910Z",
            "+0240315T080910Z",
            "20241315T080910Z",
            "20240015T080910Z",
            "20240300T080910Z",
            "20240431T080910Z",
            "20230229T080910Z",
            "19000229T080910Z",
            "20240315T240000Z",
            "20240315T086000Z",
            "20240315T080960Z",
            "２0240315T080910Z",
        ] {
            assert_eq!(
                parse_sdk_date(bad),
                Err(SignatureError::MalformedDate),
                "{bad:?}"
            );
        }
        assert!(parse_sdk_date("20240229T235959Z").is_ok());
        assert!(parse_sdk_date("20000229T000000Z").is_ok());
    }

    #[test]
    fn format_is_total() {
        // No panic or overflow at the extremes, even though the output is not parseable.
        let _ = format_sdk_date(i64::MIN);
        let _ = format_sdk_date(i64::MAX);
    }

    proptest! {
        #[test]
        fn round_trip(unix in -62_167_219_200i64..253_402_300_800) { // 0000-01-01 .. 9999-12-31
            let s = format_sdk_date(unix);
            prop_assert_eq!(s.len(), 16);
            prop_assert_eq!(parse_sdk_date(&s), Ok(unix));
        }
    }
}
