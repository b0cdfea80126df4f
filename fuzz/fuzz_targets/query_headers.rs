//! The query-string and header parsers: `Query` (every dialect's query), IoTDA and legacy
//! paging, the canonical query and URI of the signature, `Authorization`, `X-Sdk-Date`,
//! and the legacy `app_key` + bearer headers.
//!
//! The input's first line is the query and the path; the rest are `name: value` header
//! lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use taskd_api::fuzzing::{Query, QueryError, iotda_page, legacy_app_credentials, legacy_paging};
use taskd_signature::{
    canonical_query, canonical_uri, format_sdk_date, parse_authorization, parse_sdk_date,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    query(first);
    uri(first);
    headers(rest);
});

fn query(raw: &str) {
    // Every dialect's reader: decoded pairs, a repeated key or bad UTF-8 refused.
    match Query::parse(Some(raw)) {
        Ok(q) => {
            for piece in raw.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
                let k = percent_decode_str(k)
                    .decode_utf8()
                    .expect("accepted, so UTF-8");
                let v = percent_decode_str(v)
                    .decode_utf8()
                    .expect("accepted, so UTF-8");
                assert_eq!(q.get(&k), Some(&*v), "key {k:?} does not read back");
            }
        }
        Err(QueryError::Repeated(k)) => {
            let count = raw
                .split('&')
                .filter(|p| !p.is_empty())
                .filter(|p| {
                    let key = p.split_once('=').map_or(*p, |(k, _)| k);
                    percent_decode_str(key).decode_utf8().is_ok_and(|d| d == k)
                })
                .count();
            assert!(
                count > 1,
                "{k:?} refused as repeated but given {count} time(s)"
            );
        }
        Err(QueryError::NotUtf8(_)) => {}
    }
    if let Ok(page) = iotda_page(raw) {
        assert!(
            (1..=50).contains(&page.limit) && page.offset <= 500,
            "{page:?}"
        );
    }
    if let Ok((offset, limit, page_no, page_size)) = legacy_paging(raw) {
        assert!((1..=100).contains(&page_size) && page_no >= 0);
        assert_eq!(i64::from(offset), page_no * page_size);
        assert_eq!(i64::from(limit), page_size);
    }

    // The signature's canonical query: a fixed point, and blind to the order of pairs.
    let canonical = canonical_query(raw);
    assert_eq!(
        canonical_query(&canonical),
        canonical,
        "canonical query is not a fixed point"
    );
    let reversed: Vec<&str> = raw.split('&').rev().collect();
    assert_eq!(
        canonical_query(&reversed.join("&")),
        canonical,
        "pair order changed the canonical query"
    );
}

fn uri(raw_path: &str) {
    let canonical = canonical_uri(raw_path);
    assert!(canonical.ends_with('/'));
    assert_eq!(
        canonical_uri(&canonical),
        canonical,
        "canonical URI is not a fixed point"
    );
}

fn headers(rest: &str) {
    let mut map = http::HeaderMap::new();
    for line in rest.split('\n') {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            map.append(name, value);
        }
        if let Ok(auth) = parse_authorization(value) {
            assert!(!auth.signed_headers.is_empty());
            assert!(auth.signed_headers.iter().all(|h| !h.is_empty()));
        }
        if let Ok(unix) = parse_sdk_date(value) {
            assert_eq!(
                format_sdk_date(unix),
                value,
                "X-Sdk-Date does not read back"
            );
        }
    }
    if let Ok((app_id, token)) = legacy_app_credentials(&map) {
        for v in [app_id, token] {
            assert!(
                !v.is_empty() && v.trim() == v,
                "{v:?} is empty or untrimmed"
            );
        }
    }
    // `HeaderLookup` on what the HTTP stack hands over: any name, never a panic.
    for line in rest.split('\n') {
        let name = line.split_once(':').map_or(line, |(n, _)| n);
        let _ = taskd_signature::HeaderLookup::header(&map, name);
    }
}
