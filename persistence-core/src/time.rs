//! Timestamps and clocks.
//!
//! Backends with a server use the server's clock for expiry. The in-memory backend takes
//! a [`Clock`] so tests can move time with [`ManualClock`] instead of sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Milliseconds since the Unix epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }
    /// `self + d`, saturating instead of overflowing.
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        Timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}ms)", self.0)
    }
}

/// The same instant (`Timestamp`s are whole milliseconds, which `DateTime` holds
/// exactly). One past `DateTime`'s range (after the year 262 143) is its maximum.
#[cfg(feature = "chrono")]
impl From<Timestamp> for chrono::DateTime<chrono::Utc> {
    fn from(t: Timestamp) -> Self {
        i64::try_from(t.0)
            .ok()
            .and_then(chrono::DateTime::from_timestamp_millis)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
    }
}

/// The instant, truncated to whole milliseconds.
///
/// # Errors
/// `InvalidInput` for an instant before the Unix epoch (a `Timestamp` counts from it).
#[cfg(feature = "chrono")]
impl TryFrom<chrono::DateTime<chrono::Utc>> for Timestamp {
    type Error = crate::Error;

    fn try_from(t: chrono::DateTime<chrono::Utc>) -> crate::Result<Self> {
        u64::try_from(t.timestamp_millis())
            .map(Timestamp)
            .map_err(|_| {
                crate::Error::invalid_input(format!(
                    "{} ms is before the Unix epoch: a Timestamp counts from it",
                    t.timestamp_millis()
                ))
            })
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to. Clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicU64::new(start.0)))
    }
    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new(Timestamp(1_700_000_000_000))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// Checks a TTL given by a caller: at least 1 ms, at most ten years.
///
/// # Errors
/// `InvalidInput` naming `what` when the TTL is out of range.
pub fn validate_ttl(what: &str, ttl: Duration) -> crate::Result<Duration> {
    const MAX: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
    if ttl < Duration::from_millis(1) {
        return Err(crate::Error::invalid_input(format!(
            "{what} must be at least 1 ms, got {ttl:?}"
        )));
    }
    if ttl > MAX {
        return Err(crate::Error::invalid_input(format!(
            "{what} must be at most ten years, got {ttl:?}"
        )));
    }
    Ok(ttl)
}

#[cfg(all(test, feature = "chrono"))]
mod chrono_tests {
    use super::Timestamp;
    use chrono::{DateTime, TimeZone, Utc};

    #[test]
    fn timestamps_convert_to_and_from_chrono() {
        let t = Timestamp(1_796_347_944_581);
        let d: DateTime<Utc> = t.into();
        assert_eq!(d.timestamp_millis(), 1_796_347_944_581);
        assert_eq!(Timestamp::try_from(d).unwrap(), t);
        // Sub-millisecond precision is truncated.
        let fine = Utc.timestamp_opt(1, 999_999_999).unwrap();
        assert_eq!(Timestamp::try_from(fine).unwrap(), Timestamp(1_999));
        // Before the epoch: refused, not wrapped.
        let before = Utc.timestamp_opt(-1, 0).unwrap();
        assert_eq!(
            Timestamp::try_from(before).unwrap_err().kind(),
            crate::ErrorKind::InvalidInput
        );
        // Past chrono's range: its maximum, not a panic.
        assert_eq!(
            DateTime::<Utc>::from(Timestamp(u64::MAX)),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
