//! Time, injected: everything that compares timestamps or expires entries asks a
//! [`Clock`], so tests set the time instead of sleeping.
//!
//! ```
//! use hookguard::clock::{Clock, ManualClock};
//! use std::time::Duration;
//!
//! let clock = ManualClock::at_unix(1_700_000_000);
//! clock.advance(Duration::from_secs(5));
//! assert_eq!(clock.now().unix_timestamp(), 1_700_000_005);
//! ```

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use time::OffsetDateTime;

/// A source of "now".
///
/// The crate's stores, schemes and workers take an `Arc<dyn Clock>` (or a clock by
/// value); a clock of one's own needs only [`now`](Self::now):
///
/// ```
/// use hookguard::clock::Clock;
/// use time::OffsetDateTime;
///
/// #[derive(Debug)]
/// struct Frozen(OffsetDateTime);
/// impl Clock for Frozen {
///     fn now(&self) -> OffsetDateTime {
///         self.0
///     }
/// }
///
/// let clock = Frozen(OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap());
/// assert_eq!(clock.unix_nanos(), 1_700_000_000_000_000_000);
/// ```
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// The current time.
    ///
    /// ```
    /// use hookguard::clock::{Clock, ManualClock, SystemClock};
    /// assert_eq!(ManualClock::at_unix(1_700_000_000).now().unix_timestamp(), 1_700_000_000);
    /// assert!(SystemClock.now().year() >= 2024);
    /// ```
    fn now(&self) -> OffsetDateTime;

    /// The current time in nanoseconds since the Unix epoch: what in-process stores
    /// compare and add, without building a date. The default converts [`now`](Self::now);
    /// the clocks of this crate answer it directly.
    ///
    /// ```
    /// use hookguard::clock::{Clock, ManualClock};
    /// assert_eq!(ManualClock::at_unix(2).unix_nanos(), 2_000_000_000);
    /// ```
    fn unix_nanos(&self) -> i128 {
        self.now().unix_timestamp_nanos()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> OffsetDateTime {
        (**self).now()
    }
    fn unix_nanos(&self) -> i128 {
        (**self).unix_nanos()
    }
}

/// The system's wall clock.
///
/// ```
/// use hookguard::clock::{Clock, SystemClock};
/// assert!(SystemClock.now().year() >= 2024);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
    fn unix_nanos(&self) -> i128 {
        match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(since) => i128::try_from(since.as_nanos()).unwrap_or(i128::MAX),
            Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
        }
    }
}

/// A clock that moves only when told to; clones share the same time.
///
/// It keeps nanoseconds since the Unix epoch in an `i64`, so it spans
/// 1677-09-21T00:12:43Z to 2262-04-11T23:47:16Z: [`at_unix`](Self::at_unix),
/// [`set_unix`](Self::set_unix) and [`advance`](Self::advance) stop at those ends
/// instead of wrapping.
///
/// ```
/// use hookguard::clock::{Clock, ManualClock};
/// let a = ManualClock::at_unix(0);
/// let b = a.clone();
/// a.set_unix(42);
/// assert_eq!(b.now().unix_timestamp(), 42);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `secs` seconds after the Unix epoch (saturating at the ends of
    /// the [range](ManualClock)).
    ///
    /// ```
    /// use hookguard::clock::{Clock, ManualClock};
    /// assert_eq!(ManualClock::at_unix(1_700_000_000).now().unix_timestamp(), 1_700_000_000);
    /// assert_eq!(ManualClock::at_unix(i64::MAX).now().year(), 2262);
    /// ```
    #[must_use]
    pub fn at_unix(secs: i64) -> Self {
        Self(Arc::new(AtomicI64::new(secs.saturating_mul(1_000_000_000))))
    }

    /// Moves the clock to `secs` seconds after the epoch, backwards too (saturating at
    /// the ends of the [range](ManualClock)).
    ///
    /// ```
    /// use hookguard::clock::{Clock, ManualClock};
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// clock.set_unix(1_600_000_000);
    /// assert_eq!(clock.now().unix_timestamp(), 1_600_000_000);
    /// ```
    pub fn set_unix(&self, secs: i64) {
        self.0.store(secs.saturating_mul(1_000_000_000), Ordering::SeqCst);
    }

    /// The clock's time (the same as [`Clock::now`], without importing the trait).
    ///
    /// ```
    /// use hookguard::clock::ManualClock;
    /// assert_eq!(ManualClock::at_unix(60).now_for_tests().minute(), 1);
    /// ```
    #[must_use]
    pub fn now_for_tests(&self) -> OffsetDateTime {
        Clock::now(self)
    }

    /// Moves the clock forward by `by`, stopping at 2262-04-11T23:47:16Z, the end of
    /// the [range](ManualClock): a huge step never wraps into the past.
    ///
    /// ```
    /// use hookguard::clock::{Clock, ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::at_unix(1_700_000_000);
    /// clock.advance(Duration::from_millis(1_500));
    /// assert_eq!(clock.unix_nanos(), 1_700_000_001_500_000_000);
    /// clock.advance(Duration::MAX);
    /// assert_eq!(clock.now().year(), 2262);
    /// ```
    pub fn advance(&self, by: Duration) {
        let nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        // `fetch_add` would wrap; the closure always answers `Some`, so this cannot fail.
        let _ =
            self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| Some(now.saturating_add(nanos)));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.unix_nanos()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
    fn unix_nanos(&self) -> i128 {
        i128::from(self.0.load(Ordering::SeqCst))
    }
}

/// Wall time that follows tokio's clock: the system time when created, advanced by
/// [`tokio::time::Instant`]. Under `#[tokio::test(start_paused = true)]` it moves with
/// tokio's virtual time, so retry back-off and lease expiry are tested without waiting.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use hookguard::clock::{Clock, TokioClock};
/// let clock = TokioClock::new();
/// assert!(clock.now().year() >= 2024);
/// # }
/// ```
#[cfg(feature = "tower")]
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall: OffsetDateTime,
    start: tokio::time::Instant,
}

#[cfg(feature = "tower")]
impl TokioClock {
    /// Anchors tokio's clock to the current wall time.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// use hookguard::clock::{Clock, TokioClock};
    /// use std::time::Duration;
    ///
    /// let clock = TokioClock::new();
    /// let before = clock.now();
    /// tokio::time::advance(Duration::from_secs(30)).await;
    /// assert_eq!(clock.now() - before, Duration::from_secs(30));
    /// # }
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self { wall: OffsetDateTime::now_utc(), start: tokio::time::Instant::now() }
    }
}

#[cfg(feature = "tower")]
impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "tower")]
impl Clock for TokioClock {
    fn now(&self) -> OffsetDateTime {
        self.wall + self.start.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanoseconds_agree_with_the_date() {
        let clock = ManualClock::at_unix(1_700_000_000);
        clock.advance(Duration::from_nanos(5));
        assert_eq!(clock.unix_nanos(), clock.now().unix_timestamp_nanos());
        assert_eq!(clock.unix_nanos(), 1_700_000_000_000_000_005);
        let (before, nanos, after) =
            (OffsetDateTime::now_utc(), SystemClock.unix_nanos(), OffsetDateTime::now_utc());
        assert!((before.unix_timestamp_nanos()..=after.unix_timestamp_nanos()).contains(&nanos));
        // A clock of one's own gets the conversion.
        #[derive(Debug)]
        struct Fixed;
        impl Clock for Fixed {
            fn now(&self) -> OffsetDateTime {
                OffsetDateTime::UNIX_EPOCH + Duration::from_secs(3)
            }
        }
        assert_eq!(Fixed.unix_nanos(), 3_000_000_000);
        assert_eq!(Arc::new(Fixed).unix_nanos(), 3_000_000_000);
    }

    #[test]
    fn advance_saturates_instead_of_wrapping() {
        let clock = ManualClock::at_unix(1_700_000_000);
        clock.advance(Duration::MAX);
        assert_eq!(clock.unix_nanos(), i128::from(i64::MAX));
        assert_eq!(clock.now().year(), 2262);
        // Just short of the end, a step past it stops there too.
        clock.set_unix(i64::MAX / 1_000_000_000);
        clock.advance(Duration::from_secs(1));
        assert_eq!(clock.unix_nanos(), i128::from(i64::MAX));
        // And further steps leave it there.
        clock.advance(Duration::from_nanos(1));
        assert_eq!(clock.unix_nanos(), i128::from(i64::MAX));
    }
}
