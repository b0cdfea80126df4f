//! Time as the engine sees it: milliseconds since the Unix epoch, read from an injected
//! [`Clock`] so that schedules, retry intervals and signature windows can be tested on
//! virtual time without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Milliseconds since 1970-01-01T00:00:00Z (UTC). Plain integer so both stores persist it
/// identically (a BIGINT) and comparisons are exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }
    pub const fn from_unix_secs(secs: i64) -> Self {
        Timestamp(secs * 1000)
    }
    pub const fn millis(self) -> i64 {
        self.0
    }
    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }
    pub const fn plus_millis(self, ms: i64) -> Self {
        Timestamp(self.0 + ms)
    }
    pub const fn plus_minutes(self, minutes: i64) -> Self {
        Timestamp(self.0 + minutes * 60_000)
    }

    /// Calendar view (UTC), for the dialects' time formats.
    pub fn to_datetime(self) -> time::OffsetDateTime {
        time::OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }

    pub fn from_datetime(dt: time::OffsetDateTime) -> Self {
        Timestamp((dt.unix_timestamp_nanos() / 1_000_000) as i64)
    }
}

/// Where "now" comes from. The server uses [`SystemClock`]; tests use [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(since_epoch.as_millis() as i64)
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicI64::new(start.0)))
    }
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
    pub fn advance_millis(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_time() {
        let a = ManualClock::new(Timestamp(1_000));
        let b = a.clone();
        a.advance_millis(500);
        assert_eq!(b.now(), Timestamp(1_500));
    }

    #[test]
    fn datetime_round_trip_keeps_millis() {
        let t = Timestamp(1_710_490_150_123);
        assert_eq!(Timestamp::from_datetime(t.to_datetime()), t);
    }
}
