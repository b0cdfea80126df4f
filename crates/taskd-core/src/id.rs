//! Record ids.
//!
//! Every task, sub-task and operation gets an [`Id`]: a positive 63-bit integer shown on
//! the wire as 24 lowercase hex digits (the IoTDA `task_id` and `page.marker` form). Ids
//! are allocated by the store from one monotonic sequence whose floor is the creation time
//! (`millis << 20`), so a newer record always has a larger id, across restarts and across
//! nodes sharing a database, and id order is creation order, which is what marker
//! pagination ("records with id < marker, newest first") relies on.

use std::fmt;

/// Number of low bits reserved for records created within the same millisecond.
pub const SEQUENCE_BITS: u32 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdParseError {
    #[error("must be at most 24 hexadecimal characters")]
    Malformed,
}

impl Id {
    /// The largest id: the default pagination marker (`ffffffffffffffffffffffff`) clamps to it.
    pub const MAX: Id = Id(i64::MAX);

    /// The smallest id the allocator may hand out at `now_millis`.
    pub const fn floor_at(now_millis: i64) -> Id {
        Id(now_millis << SEQUENCE_BITS)
    }

    /// Parses 1 to 24 hex digits (either case). Values beyond the id range clamp to
    /// [`Id::MAX`]: as a marker "below ffff…" means "everything", which is exact.
    pub fn parse_hex(s: &str) -> Result<Id, IdParseError> {
        if s.is_empty() || s.len() > 24 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(IdParseError::Malformed);
        }
        let v = u128::from_str_radix(s, 16).map_err(|_| IdParseError::Malformed)?;
        Ok(Id(v.min(i64::MAX as u128) as i64))
    }

    /// Parses an id a client got from us: exactly the 24-digit lowercase form. A string
    /// that is not one of our ids can't name a record, so callers answer "not found".
    pub fn parse_exact(s: &str) -> Option<Id> {
        if s.len() != 24 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let v = u128::from_str_radix(s, 16).ok()?;
        (v <= i64::MAX as u128).then_some(Id(v as i64))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:024x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn default_marker_means_everything() {
        assert_eq!(Id::parse_hex("ffffffffffffffffffffffff"), Ok(Id::MAX));
        assert_eq!(Id::parse_hex("FFFFFFFFFFFFFFFFFFFFFFFF"), Ok(Id::MAX));
    }

    #[test]
    fn rejects_non_hex_and_too_long() {
        assert!(Id::parse_hex("").is_err());
        assert!(Id::parse_hex("xyz").is_err());
        assert!(Id::parse_hex("0000000000000000000000000").is_err());
        assert_eq!(Id::parse_exact("00000000000000000000000G"), None);
        assert_eq!(Id::parse_exact("ABCDEF000000000000000000"), None);
        assert_eq!(Id::parse_exact("abc"), None);
    }

    #[test]
    fn floor_is_monotonic_in_time() {
        assert!(Id::floor_at(1_700_000_000_001) > Id::floor_at(1_700_000_000_000));
        // Year 2100 still fits without overflow.
        assert!(Id::floor_at(4_102_444_800_000).0 > 0);
    }

    proptest! {
        #[test]
        fn display_round_trips_and_orders_like_the_number(a in 0i64..i64::MAX, b in 0i64..i64::MAX) {
            let (ia, ib) = (Id(a), Id(b));
            let (sa, sb) = (ia.to_string(), ib.to_string());
            prop_assert_eq!(sa.len(), 24);
            prop_assert_eq!(Id::parse_exact(&sa), Some(ia));
            prop_assert_eq!(sa.cmp(&sb), ia.cmp(&ib));
        }
    }
}
