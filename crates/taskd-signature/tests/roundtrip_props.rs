//! Property tests: whatever `sign` signs, `verify` accepts (also when the wire encoding
//! and query order differ but the meaning does not); and changing exactly one
//! meaningful thing — method, a path character, a query key/value, a signed header
//! value, a hashed body byte — makes `verify` fail.

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;
use proptest::sample::Index;
use taskd_signature::*;

const METHODS: [&str; 6] = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"];
const AK: &str = "AKPROPTEST";
const SK: &str = "sk-proptest-0123456789";
/// Replacement characters for mutations: distinct non-whitespace, never '/', so a
/// substitution cannot be a canonical no-op (see `path_mutation_is_meaningful`).
const REPLACEMENTS: [char; 6] = ['x', 'Y', '%', '=', '&', 'é'];

#[derive(Debug, Clone)]
struct Case {
    method: &'static str,
    /// Decoded path segments; may contain '/', which the wire carries as %2F.
    segments: Vec<String>,
    query: Vec<(String, String)>,
    /// Extra headers; names with '_' are sent but never signed.
    extra_headers: Vec<(String, String)>,
    body: Vec<u8>,
    unsigned_payload: bool,
    region: Option<String>,
    date: i64,
    skew: i64,
}

const TEXT: &str = "[a-zA-Z0-9 /?#%&=+;:@!$'()*,~._\\-\\[\\]üé中😀]";

/// Strings of `min..=max` characters from [`TEXT`].
fn text(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("{TEXT}{{{min},{max}}}")).unwrap()
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::sample::select(&METHODS[..]),
        prop::collection::vec(text(1, 8), 1..5),
        prop::collection::vec((text(0, 6), text(0, 8)), 0..5),
        prop::collection::btree_map("[a-z][a-z0-9_-]{0,8}", "[ !-~üé中]{0,20}", 0..4),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
        prop::option::of("[a-z]{2}-[a-z]{4,9}-[0-9]{1,3}"),
        946_684_800i64..4_102_444_800, // 2000 .. 2100
        -MAX_CLOCK_SKEW_SECS..=MAX_CLOCK_SKEW_SECS,
    )
        .prop_map(
            |(method, segments, query, extra, body, unsigned_payload, region, date, skew)| Case {
                method,
                segments,
                query,
                extra_headers: extra
                    .into_iter()
                    .filter(|(name, _)| {
                        !matches!(
                            name.as_str(),
                            "host" | "x-sdk-date" | "content-type" | "x-sdk-content-sha256"
                        )
                    })
                    .collect(),
                body,
                unsigned_payload,
                region,
                date,
                skew,
            },
        )
}

impl Case {
    /// Wire path encoded more aggressively than the SDK does (every non-alphanumeric):
    /// the canonical form must not care.
    fn wire_path(&self) -> String {
        self.segments
            .iter()
            .map(|s| format!("/{}", utf8_percent_encode(s, NON_ALPHANUMERIC)))
            .collect()
    }

    fn headers(&self) -> Vec<(String, String)> {
        let mut h = vec![
            ("Host".to_owned(), "127.0.0.1:8080".to_owned()),
            ("X-Sdk-Date".to_owned(), format_sdk_date(self.date)),
        ];
        // The SDK sends UNSIGNED-PAYLOAD only on multipart uploads, and the verifier
        // accepts it nowhere else.
        let content_type = if self.unsigned_payload {
            "multipart/form-data; boundary=091eeddbc64942e0bb764db3a5b17858"
        } else {
            "application/json"
        };
        h.push(("Content-Type".to_owned(), content_type.to_owned()));
        if self.unsigned_payload {
            h.push((
                "X-Sdk-Content-Sha256".to_owned(),
                UNSIGNED_PAYLOAD.to_owned(),
            ));
        }
        h.extend(self.extra_headers.iter().cloned());
        h
    }

    fn sign(&self) -> Signed {
        let headers = self.headers();
        let header_refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let query_refs: Vec<(&str, &str)> = self
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let key = match &self.region {
            None => SigningKey::Plain {
                access_key: AK,
                secret_key: SK,
            },
            Some(region) => SigningKey::Derived {
                access_key: AK,
                secret_key: SK,
                region,
                service: IOTDA_DERIVED_SERVICE,
            },
        };
        sign(
            &SigningRequest {
                method: self.method,
                path: &self.wire_path(),
                query: &query_refs,
                headers: &header_refs,
                body: &self.body,
            },
            &key,
        )
    }
}

/// What the server sees.
struct Wire {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Wire {
    fn of(case: &Case, signed: &Signed) -> Wire {
        Wire {
            method: case.method.to_owned(),
            path: case.wire_path(),
            query: signed.query_string.clone(),
            headers: case.headers(),
            body: case.body.clone(),
        }
    }

    fn verify(&self, authorization: &str, now_unix: i64) -> Result<(), SignatureError> {
        let auth = parse_authorization(authorization)?;
        let req = ReceivedRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: self.headers.as_slice(),
            body: &self.body,
        };
        verify(
            &req,
            &auth,
            SK,
            &VerifyPolicy::new(now_unix, IOTDA_DERIVED_SERVICE),
        )
    }

    fn canonical(&self, authorization: &str) -> String {
        let auth = parse_authorization(authorization).unwrap();
        canonical_request(
            &self.method,
            &self.path,
            &self.query,
            self.headers.as_slice(),
            &auth.signed_headers,
            &payload_hash(self.headers.as_slice(), &self.body),
        )
        .unwrap()
    }
}

/// Replaces the character at `at` (an index into `s`'s chars) with a different one,
/// or sets an empty string to "x".
fn substitute(s: &str, at: Index, with: Index) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return "x".to_owned();
    }
    let i = at.index(chars.len());
    let mut j = with.index(REPLACEMENTS.len());
    if REPLACEMENTS[j] == chars[i] {
        j = (j + 1) % REPLACEMENTS.len();
    }
    chars[i] = REPLACEMENTS[j];
    chars.into_iter().collect()
}

fn encode_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(k, NON_ALPHANUMERIC),
                utf8_percent_encode(v, NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[derive(Debug, Clone, Copy)]
enum Mutation {
    Method,
    PathChar,
    QueryKeyOrValue,
    SignedHeaderValue,
    BodyByte,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn signed_requests_verify(case in case()) {
        let signed = case.sign();
        let wire = Wire::of(&case, &signed);
        prop_assert_eq!(wire.verify(&signed.authorization, case.date + case.skew), Ok(()));

        // Same meaning, different bytes on the wire: the query in reverse order and
        // over-encoded, the method in lowercase.
        let mut reordered = Wire::of(&case, &signed);
        let mut pairs = case.query.clone();
        pairs.reverse();
        reordered.query = encode_query(&pairs);
        reordered.method = case.method.to_ascii_lowercase();
        prop_assert_eq!(reordered.verify(&signed.authorization, case.date), Ok(()));

        // Outside the window either side it must fail, and only for that reason.
        let late = wire.verify(&signed.authorization, case.date + MAX_CLOCK_SKEW_SECS + 1);
        let early = wire.verify(&signed.authorization, case.date - MAX_CLOCK_SKEW_SECS - 1);
        prop_assert!(matches!(late, Err(SignatureError::ClockSkew { .. })), "late: {:?}", late);
        prop_assert!(matches!(early, Err(SignatureError::ClockSkew { .. })), "early: {:?}", early);
    }

    #[test]
    fn any_single_meaningful_change_fails(
        case in case(),
        pick_kind in any::<Index>(),
        pick_a in any::<Index>(),
        pick_b in any::<Index>(),
        pick_c in any::<Index>(),
        key_or_value in any::<bool>(),
    ) {
        let signed = case.sign();
        let original = Wire::of(&case, &signed);
        prop_assert_eq!(original.verify(&signed.authorization, case.date), Ok(()));

        let body_hashed = !case.body.is_empty() && !case.unsigned_payload;
        let mut kinds = vec![
            Mutation::Method,
            Mutation::PathChar,
            Mutation::QueryKeyOrValue,
            Mutation::SignedHeaderValue,
        ];
        if body_hashed {
            kinds.push(Mutation::BodyByte);
        }
        let kind = *pick_kind.get(&kinds);

        let mut wire = Wire::of(&case, &signed);
        match kind {
            Mutation::Method => {
                let others: Vec<&str> =
                    METHODS.iter().copied().filter(|m| *m != case.method).collect();
                wire.method = pick_a.get(&others).to_string();
            }
            Mutation::PathChar => {
                let mut mutated = case.clone();
                let seg = pick_a.index(mutated.segments.len());
                mutated.segments[seg] = substitute(&mutated.segments[seg], pick_b, pick_c);
                wire.path = mutated.wire_path();
            }
            Mutation::QueryKeyOrValue => {
                let mut pairs = case.query.clone();
                if pairs.is_empty() {
                    pairs.push(("k".into(), "v".into()));
                } else {
                    let p = pick_a.index(pairs.len());
                    if key_or_value {
                        pairs[p].0 = substitute(&pairs[p].0, pick_b, pick_c);
                    } else {
                        pairs[p].1 = substitute(&pairs[p].1, pick_b, pick_c);
                    }
                }
                wire.query = encode_query(&pairs);
            }
            Mutation::SignedHeaderValue => {
                let signed_idx: Vec<usize> = (0..wire.headers.len())
                    .filter(|&i| !wire.headers[i].0.contains('_'))
                    .collect();
                let i = *pick_a.get(&signed_idx);
                let value = &wire.headers[i].1;
                wire.headers[i].1 = if value.trim().is_empty() {
                    "x".to_owned()
                } else {
                    substitute(value, pick_b, pick_c)
                };
            }
            Mutation::BodyByte => {
                let i = pick_a.index(wire.body.len());
                wire.body[i] ^= 1 << pick_b.index(8);
            }
        }

        // Guard against vacuous passes: the mutation must change the canonical request.
        prop_assert_ne!(
            wire.canonical(&signed.authorization),
            original.canonical(&signed.authorization),
            "{:?} was a canonical no-op", kind
        );
        let result = wire.verify(&signed.authorization, case.date);
        prop_assert!(result.is_err(), "{:?} still verified", kind);
    }

    #[test]
    fn canonicalisation_is_idempotent_and_total(path in "\\PC{0,40}", query in "\\PC{0,40}") {
        let uri = canonical_uri(&path);
        prop_assert!(uri.ends_with('/'));
        prop_assert_eq!(canonical_uri(&uri), uri.clone());
        let q = canonical_query(&query);
        prop_assert_eq!(canonical_query(&q), q);
    }

    #[test]
    fn parse_authorization_never_panics(value in "\\PC{0,200}") {
        let _ = parse_authorization(&value);
    }

    #[test]
    fn parse_authorization_never_panics_near_valid(
        alg in prop::sample::select(vec![SDK_HMAC_SHA256, V11_HMAC_SHA256]),
        items in prop::collection::vec("(Access|Credential|SignedHeaders|Signature|X)=[a-f0-9/;,= ]{0,70}", 0..5),
    ) {
        let _ = parse_authorization(&format!("{alg} {}", items.join(", ")));
    }
}

#[test]
fn path_mutation_is_meaningful() {
    // The only canonical no-ops on a decoded path are a trailing '/' and the %2F/'/'
    // ambiguity; single-char substitutions with a non-'/' replacement avoid both.
    assert_eq!(canonical_uri("/a/b"), canonical_uri("/a/b/"));
    assert_eq!(canonical_uri("/a/b"), canonical_uri("/a%2Fb"));
    assert_ne!(canonical_uri("/a/"), canonical_uri("/ax"));
    assert_ne!(canonical_uri("/a/b"), canonical_uri("/a%b"));
}
