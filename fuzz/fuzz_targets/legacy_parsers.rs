//! The legacy northbound request parsers: the upgrade-task body (`CreateUpgradeTaskInDTO`)
//! with every rule of spec §7.4, the login form, paging, and the compact time format the
//! legacy API (and IoTDA) read.
//!
//! Byte 0 picks the parser; the rest is its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use taskd_api::fuzzing::{
    LegacyTargets, format_compact, legacy_create, legacy_form_field, legacy_paging, parse_compact,
};
use taskd_core::Timestamp;

/// 2023-11-14T22:13:20Z: seeds name windows after it.
const NOW: Timestamp = Timestamp(1_700_000_000_000);

fuzz_target!(|data: &[u8]| {
    let Some((&which, input)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => create(input),
        1 => form(input),
        2 => {
            if let Ok(q) = std::str::from_utf8(input) {
                paging(q);
            }
        }
        _ => {
            if let Ok(s) = std::str::from_utf8(input) {
                compact_time(s);
            }
        }
    }
});

fn create(body: &[u8]) {
    let Ok(v) = legacy_create(body, NOW) else {
        return;
    };
    let bounded = |s: &str| s.chars().count() <= 256 && !s.contains('\0');
    assert!(!v.file_id.is_empty() && bounded(&v.file_id));
    let names = match &v.targets {
        LegacyTargets::Devices(ids) => ids,
        LegacyTargets::Groups {
            names,
            device_type,
            model,
            manufacturer_name,
        } => {
            for s in [device_type, model, manufacturer_name] {
                assert!(!s.trim().is_empty() && bounded(s), "{s:?}");
            }
            names
        }
    };
    assert!((1..=256).contains(&names.len()), "{} targets", names.len());
    for (i, n) in names.iter().enumerate() {
        assert!(!n.is_empty() && bounded(n), "{n:?}");
        assert!(!names[..i].contains(n), "target {n:?} named twice");
    }
    match (v.schedule_at, v.deadline_at) {
        (None, None) => {}
        (Some(start), Some(end)) => {
            assert!(
                start < end && start.unix_secs() >= NOW.unix_secs(),
                "{start:?}..{end:?}"
            );
        }
        other => panic!("a window with one end: {other:?}"),
    }
    if let Some(retry) = &v.retry {
        assert!((1..=5).contains(&retry.count), "{retry:?}");
    }
    // What is echoed back is what was checked.
    assert!(matches!(
        v.policy_doc.execute_type.as_deref(),
        Some("now" | "device_online" | "custom")
    ));
}

fn form(body: &[u8]) {
    for name in ["appId", "secret"] {
        let Some(value) = legacy_form_field(body, name) else {
            continue;
        };
        // The value came from this body: decoded, it is at most as long as the body.
        assert!(value.len() <= body.len());
    }
}

fn paging(raw_query: &str) {
    if let Ok((offset, limit, page_no, page_size)) = legacy_paging(raw_query) {
        assert!((1..=100).contains(&page_size) && page_no >= 0);
        assert_eq!(i64::from(offset), page_no * page_size);
        assert_eq!(i64::from(limit), page_size);
    }
}

fn compact_time(s: &str) {
    if let Some(t) = parse_compact(s) {
        assert_eq!(format_compact(t), s, "compact time does not read back");
    }
}
