//! Timestamps: strict parsing with checked arithmetic, and a tolerance window that can
//! differ for the past and the future.

use std::time::Duration;

use time::{OffsetDateTime, format_description::well_known::Rfc3339};

/// How a provider writes its timestamp.
///
/// Parsing is strict: ASCII digits only for the numeric forms (no sign, no spaces, no
/// fraction, at most 19 digits); anything outside the representable range (years ±9999)
/// is malformed, never an overflow.
///
/// ```
/// use hookguard::verify::TimestampFormat;
///
/// let t = TimestampFormat::UnixSeconds.parse(b"1614265330").unwrap();
/// assert_eq!(t.unix_timestamp(), 1614265330);
/// assert!(TimestampFormat::UnixSeconds.parse(b"+1614265330").is_none());
/// assert!(TimestampFormat::UnixSeconds.parse(b"-9223372036854775808").is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimestampFormat {
    /// Seconds since the Unix epoch, in decimal.
    UnixSeconds,
    /// Milliseconds since the Unix epoch, in decimal.
    UnixMillis,
    /// RFC 3339 date-time (`2026-11-23T12:00:00.123456789Z`).
    Rfc3339,
}

impl TimestampFormat {
    /// Parses the timestamp text; `None` when it is malformed or out of range.
    ///
    /// ```
    /// use hookguard::verify::TimestampFormat;
    /// let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    /// assert_eq!(TimestampFormat::UnixSeconds.parse(b"1700000000"), Some(at));
    /// assert_eq!(TimestampFormat::UnixMillis.parse(b"1700000000000"), Some(at));
    /// assert_eq!(TimestampFormat::Rfc3339.parse(b"2023-11-14T22:13:20Z"), Some(at));
    /// assert_eq!(TimestampFormat::UnixSeconds.parse(b"17e8"), None);
    /// ```
    #[must_use]
    pub fn parse(self, text: &[u8]) -> Option<OffsetDateTime> {
        match self {
            Self::UnixSeconds => OffsetDateTime::from_unix_timestamp(parse_digits(text)?).ok(),
            Self::UnixMillis => {
                let ms = i128::from(parse_digits(text)?);
                OffsetDateTime::from_unix_timestamp_nanos(ms.checked_mul(1_000_000)?).ok()
            }
            Self::Rfc3339 => {
                let text = std::str::from_utf8(text).ok()?;
                OffsetDateTime::parse(text, &Rfc3339).ok()
            }
        }
    }

    /// Writes `at` in this format (what a sender sends).
    ///
    /// ```
    /// # use hookguard::verify::TimestampFormat;
    /// let at = time::OffsetDateTime::from_unix_timestamp(1).unwrap();
    /// assert_eq!(TimestampFormat::UnixMillis.format(at), "1000");
    /// assert_eq!(TimestampFormat::Rfc3339.format(at), "1970-01-01T00:00:01Z");
    /// ```
    #[must_use]
    pub fn format(self, at: OffsetDateTime) -> String {
        match self {
            Self::UnixSeconds => at.unix_timestamp().to_string(),
            Self::UnixMillis => (at.unix_timestamp_nanos() / 1_000_000).to_string(),
            Self::Rfc3339 => at.format(&Rfc3339).unwrap_or_else(|_| at.unix_timestamp().to_string()),
        }
    }
}

/// The latest instant `time` represents, in nanoseconds since the epoch.
const MAX_NANOS: i128 = time::UtcDateTime::MAX.unix_timestamp_nanos();
/// The earliest.
const MIN_NANOS: i128 = time::UtcDateTime::MIN.unix_timestamp_nanos();

impl TimestampFormat {
    /// Parses the timestamp text into nanoseconds since the epoch: what
    /// [`parse`](Self::parse) accepts, without building a date for the numeric forms.
    pub(crate) fn parse_nanos(self, text: &[u8]) -> Option<i128> {
        let nanos = match self {
            Self::UnixSeconds => i128::from(parse_digits(text)?) * 1_000_000_000,
            Self::UnixMillis => i128::from(parse_digits(text)?) * 1_000_000,
            // An offset can carry a date at the end of the calendar past it in UTC
            // (`9999-12-31T23:59:59-23:59`): in range, as for the numeric forms.
            Self::Rfc3339 => {
                let nanos = self.parse(text)?.unix_timestamp_nanos();
                return (MIN_NANOS..=MAX_NANOS).contains(&nanos).then_some(nanos);
            }
        };
        // Digits are never negative: only the upper end of the range can be passed.
        (nanos <= MAX_NANOS).then_some(nanos)
    }
}

/// Decimal digits only, at most 19 of them, into an `i64` without overflow.
///
/// Eight digits at a time (a seconds timestamp has ten, milliseconds thirteen): each
/// block of eight is checked and converted as one `u64` in three multiplications, the
/// few digits left over one by one.
fn parse_digits(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    let (blocks, rest) = text.as_chunks::<8>();
    // 19 digits stay below 10^19 < u64::MAX: no overflow before the final range check.
    let mut acc = 0_u64;
    for block in blocks {
        acc = acc * 100_000_000 + eight_digits(u64::from_le_bytes(*block))?;
    }
    for &b in rest {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        acc = acc * 10 + u64::from(digit);
    }
    i64::try_from(acc).ok()
}

/// The value of eight ASCII digits read little-endian (the first digit in the lowest
/// byte); `None` when a byte is not a digit.
fn eight_digits(word: u64) -> Option<u64> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    // Every byte 0x30..=0x39: the high nibble is 3, and still 3 after adding 6.
    if word & (ONES * 0xf0) != ONES * 0x30 || word.wrapping_add(ONES * 0x06) & (ONES * 0xf0) != ONES * 0x30 {
        return None;
    }
    // Pairs of digits, then fours, then the eight: each step multiplies the higher-order
    // half by its power of ten and adds the lower-order one in the same lane.
    let v = (word & (ONES * 0x0f)).wrapping_mul(10 << 8 | 1) >> 8;
    let v = (v & 0x00ff_00ff_00ff_00ff).wrapping_mul(100 << 16 | 1) >> 16;
    let v = (v & 0x0000_ffff_0000_ffff).wrapping_mul(10_000 << 32 | 1) >> 32;
    Some(v)
}

/// How far a timestamp may lie from "now", separately in the past and the future.
/// `None` on a side means that side is not checked.
///
/// ```
/// use std::time::Duration;
/// use hookguard::verify::Tolerance;
///
/// let t = Tolerance::symmetric(Duration::from_secs(300));
/// assert_eq!(t.past(), Some(Duration::from_secs(300)));
/// let stripe_like = Tolerance::past_only(Duration::from_secs(300));
/// assert_eq!(stripe_like.future(), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tolerance {
    past: Option<Duration>,
    future: Option<Duration>,
}

/// Outcome of a tolerance check that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skew {
    /// The timestamp is this many seconds old, more than allowed.
    TooOld { age_secs: u64, tolerance_secs: u64 },
    /// The timestamp is this many seconds ahead, more than allowed.
    TooNew { ahead_secs: u64, tolerance_secs: u64 },
}

impl Tolerance {
    /// No check on either side.
    ///
    /// ```
    /// use hookguard::{providers::github, verify::{Scheme, Tolerance}};
    /// assert!(!Tolerance::NONE.is_checked());
    /// assert_eq!(github::scheme("s").unwrap().tolerance(), Tolerance::NONE, "GitHub sends no timestamp");
    /// ```
    pub const NONE: Self = Self { past: None, future: None };

    /// The same window on both sides.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::verify::Tolerance;
    /// let t = Tolerance::symmetric(Duration::from_secs(300));
    /// assert_eq!((t.past(), t.future()), (Some(Duration::from_secs(300)), Some(Duration::from_secs(300))));
    /// ```
    #[must_use]
    pub const fn symmetric(window: Duration) -> Self {
        Self { past: Some(window), future: Some(window) }
    }

    /// Only too-old timestamps are refused (Stripe's and Paddle's SDKs do this).
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::verify::Tolerance;
    /// let t = Tolerance::past_only(Duration::from_secs(300));
    /// assert_eq!((t.past(), t.future()), (Some(Duration::from_secs(300)), None));
    /// ```
    #[must_use]
    pub const fn past_only(window: Duration) -> Self {
        Self { past: Some(window), future: None }
    }

    /// Separate windows; `None` leaves a side unchecked.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard::verify::Tolerance;
    /// let t = Tolerance::new(Some(Duration::from_secs(300)), Some(Duration::from_secs(30)));
    /// assert_eq!(t.future(), Some(Duration::from_secs(30)));
    /// ```
    #[must_use]
    pub const fn new(past: Option<Duration>, future: Option<Duration>) -> Self {
        Self { past, future }
    }

    /// The window into the past.
    ///
    /// ```
    /// use hookguard::{providers::stripe, verify::Scheme};
    /// let stripe = stripe::scheme("whsec_x").unwrap().tolerance();
    /// assert_eq!(stripe.past(), Some(std::time::Duration::from_secs(300)));
    /// ```
    #[must_use]
    pub const fn past(&self) -> Option<Duration> {
        self.past
    }

    /// The window into the future.
    ///
    /// ```
    /// use hookguard::{providers::stripe, verify::Scheme};
    /// assert_eq!(stripe::scheme("whsec_x").unwrap().tolerance().future(), None, "too-old only");
    /// ```
    #[must_use]
    pub const fn future(&self) -> Option<Duration> {
        self.future
    }

    /// Whether either side is checked.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookguard::verify::Tolerance;
    /// assert!(Tolerance::past_only(Duration::from_secs(5)).is_checked());
    /// assert!(!Tolerance::new(None, None).is_checked());
    /// ```
    #[must_use]
    pub const fn is_checked(&self) -> bool {
        self.past.is_some() || self.future.is_some()
    }

    /// The longest window: how long a replay mark must be kept for a timestamped
    /// delivery to be refused until it goes stale on its own. `None` when old timestamps
    /// are not refused (no past bound): such a delivery never goes stale, and the mark
    /// needs the time to live of deliveries without timestamps.
    ///
    /// Without a future bound (`past_only`, most presets), this holds for timestamps not
    /// ahead of the clock only: one signed an hour ahead (a sender's clock that runs fast)
    /// stays fresh for that hour plus the past bound. A store of your own should then keep
    /// each mark until the delivery's timestamp plus the past bound, as the
    /// [`Guard`](crate::guard::Guard) does.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use hookguard::verify::Tolerance;
    /// let t = Tolerance::new(Some(Duration::from_secs(300)), Some(Duration::from_secs(60)));
    /// assert_eq!(t.replay_window(), Some(Duration::from_secs(360)));
    /// let future_only = Tolerance::new(None, Some(Duration::from_secs(60)));
    /// assert_eq!(future_only.replay_window(), None);
    /// ```
    #[must_use]
    pub fn replay_window(&self) -> Option<Duration> {
        // A copy is refused by its age only when there is a past bound.
        let past = self.past?;
        Some(past.saturating_add(self.future.unwrap_or_default()))
    }

    #[cfg_attr(not(any(test, feature = "rsa")), allow(dead_code))] // PayPal's RFC 3339 times
    pub(crate) fn check(&self, at: OffsetDateTime, now: OffsetDateTime) -> Result<(), Skew> {
        self.check_nanos(at.unix_timestamp_nanos(), now.unix_timestamp_nanos())
    }

    /// [`check`](Self::check) on nanoseconds since the epoch.
    pub(crate) fn check_nanos(&self, at: i128, now: i128) -> Result<(), Skew> {
        // Both values lie within years ±9999: the difference cannot overflow an i128, and
        // whole seconds of it fit a u64.
        let diff = now - at;
        let secs = |nanos: i128| u64::try_from(nanos.unsigned_abs() / 1_000_000_000).unwrap_or(u64::MAX);
        if diff > 0 {
            if let Some(window) = self.past
                && diff.unsigned_abs() > window.as_nanos()
            {
                return Err(Skew::TooOld { age_secs: secs(diff), tolerance_secs: window.as_secs() });
            }
        } else if let Some(window) = self.future
            && diff.unsigned_abs() > window.as_nanos()
        {
            return Err(Skew::TooNew { ahead_secs: secs(diff), tolerance_secs: window.as_secs() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The eight-at-a-time parser reads exactly what a digit-by-digit one reads:
        /// every length up to 20, digits with a stray byte anywhere.
        #[test]
        fn parse_digits_agrees_with_a_digit_by_digit_parser(
            mut text in proptest::collection::vec(b'0'..=b'9', 0..21),
            stray in proptest::option::of((proptest::num::usize::ANY, proptest::num::u8::ANY)),
        ) {
            if let Some((at, byte)) = stray && !text.is_empty() {
                let at = at % text.len();
                text[at] = byte;
            }
            let slow = (!text.is_empty() && text.len() <= 19 && text.iter().all(u8::is_ascii_digit))
                .then(|| text.iter().fold(0_u64, |acc, d| acc * 10 + u64::from(d - b'0')))
                .and_then(|v| i64::try_from(v).ok());
            proptest::prop_assert_eq!(parse_digits(&text), slow);
        }
    }

    #[test]
    fn eight_digits_reads_every_position() {
        assert_eq!(eight_digits(u64::from_le_bytes(*b"12345678")), Some(12_345_678));
        assert_eq!(eight_digits(u64::from_le_bytes(*b"00000000")), Some(0));
        assert_eq!(eight_digits(u64::from_le_bytes(*b"99999999")), Some(99_999_999));
        for (i, bad) in [b'/', b':', b' ', 0xb0, 0x3a, 0x40].into_iter().cycle().take(8).enumerate() {
            let mut word = *b"12345678";
            word[i] = bad;
            assert_eq!(eight_digits(u64::from_le_bytes(word)), None, "{word:?}");
        }
        assert_eq!(parse_digits(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_digits(b"9223372036854775808"), None);
        assert_eq!(parse_digits(b"1700000000"), Some(1_700_000_000));
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    #[test]
    fn numeric_parsing_table() {
        let cases: &[(&str, &[u8], Option<i64>)] = &[
            ("plain", b"1614265330", Some(1_614_265_330)),
            ("zero", b"0", Some(0)),
            ("empty", b"", None),
            ("leading plus", b"+1614265330", None),
            ("negative", b"-5", None),
            ("i64 min", b"-9223372036854775808", None),
            ("i64 max", b"9223372036854775807", None),
            ("past i64", b"99999999999999999999", None),
            ("float", b"1614265330.5", None),
            ("space", b" 1614265330", None),
            ("trailing space", b"1614265330 ", None),
            ("millis where seconds expected", b"1614265330000", None),
            ("non-ascii", "١٢٣".as_bytes(), None),
        ];
        for (name, text, want) in cases {
            let got = TimestampFormat::UnixSeconds.parse(text).map(|t| t.unix_timestamp());
            assert_eq!(got, *want, "case {name}");
        }
    }

    #[test]
    fn millis_and_rfc3339() {
        let ms = TimestampFormat::UnixMillis.parse(b"1614265330123").unwrap();
        assert_eq!(ms.unix_timestamp(), 1_614_265_330);
        assert_eq!(ms.millisecond(), 123);
        assert!(TimestampFormat::UnixMillis.parse(b"9223372036854775807").is_none());
        let r = TimestampFormat::Rfc3339.parse(b"2023-07-19T14:56:12.123456789Z").unwrap();
        assert_eq!(r.nanosecond(), 123_456_789);
        assert!(TimestampFormat::Rfc3339.parse(b"yesterday").is_none());
        assert!(TimestampFormat::Rfc3339.parse(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn nanos_agree_with_dates_at_the_edges_of_the_range() {
        let max = time::UtcDateTime::MAX.unix_timestamp();
        let cases: &[(&str, TimestampFormat, String)] = &[
            ("seconds", TimestampFormat::UnixSeconds, "1614265330".into()),
            ("last second", TimestampFormat::UnixSeconds, max.to_string()),
            ("past the last second", TimestampFormat::UnixSeconds, (max + 1).to_string()),
            ("millis", TimestampFormat::UnixMillis, "1614265330123".into()),
            ("last milli", TimestampFormat::UnixMillis, format!("{max}999")),
            ("past the last milli", TimestampFormat::UnixMillis, format!("{}000", max + 1)),
            ("19 digits", TimestampFormat::UnixMillis, "9999999999999999999".into()),
            ("rfc3339", TimestampFormat::Rfc3339, "2023-07-19T14:56:12.123456789Z".into()),
            ("rfc3339 offset", TimestampFormat::Rfc3339, "2023-07-19T16:56:12+02:00".into()),
            ("not digits", TimestampFormat::UnixSeconds, "12a".into()),
        ];
        for (name, format, text) in cases {
            let want = format.parse(text.as_bytes()).map(OffsetDateTime::unix_timestamp_nanos);
            assert_eq!(format.parse_nanos(text.as_bytes()), want, "case {name}");
        }
        assert!(TimestampFormat::UnixSeconds.parse_nanos(max.to_string().as_bytes()).is_some());
        assert!(TimestampFormat::UnixSeconds.parse_nanos((max + 1).to_string().as_bytes()).is_none());
        // An offset that carries the calendar's last day past its end in UTC: out of
        // range, as a number past it is.
        let rfc = TimestampFormat::Rfc3339;
        assert!(rfc.parse_nanos(b"9999-12-31T23:59:59-23:59").is_none());
        assert!(rfc.parse_nanos(b"9999-12-31T23:59:59Z").is_some());
    }

    #[test]
    fn tolerance_counts_nanoseconds() {
        let t = Tolerance::symmetric(Duration::from_secs(300));
        let now = at(1_000_000);
        let edge = now - Duration::from_secs(300);
        assert!(t.check(edge, now).is_ok());
        assert_eq!(
            t.check(edge - Duration::from_nanos(1), now),
            Err(Skew::TooOld { age_secs: 300, tolerance_secs: 300 })
        );
        let ahead = now + Duration::from_secs(300);
        assert!(t.check(ahead, now).is_ok());
        assert_eq!(
            t.check(ahead + Duration::from_nanos(1), now),
            Err(Skew::TooNew { ahead_secs: 300, tolerance_secs: 300 })
        );
    }

    #[test]
    fn tolerance_sides_are_independent() {
        let t = Tolerance::new(Some(Duration::from_secs(300)), Some(Duration::from_secs(10)));
        let now = at(1_000_000);
        assert!(t.check(at(1_000_000 - 300), now).is_ok());
        assert_eq!(
            t.check(at(1_000_000 - 301), now),
            Err(Skew::TooOld { age_secs: 301, tolerance_secs: 300 })
        );
        assert!(t.check(at(1_000_010), now).is_ok());
        assert_eq!(t.check(at(1_000_011), now), Err(Skew::TooNew { ahead_secs: 11, tolerance_secs: 10 }));
        assert!(Tolerance::past_only(Duration::from_secs(1)).check(at(9_000_000), now).is_ok());
        assert!(Tolerance::NONE.check(at(0), now).is_ok());
    }

    #[test]
    fn extremes_do_not_overflow() {
        let t = Tolerance::symmetric(Duration::from_secs(300));
        let min = OffsetDateTime::new_utc(time::Date::MIN, time::Time::MIDNIGHT);
        let max = OffsetDateTime::new_utc(time::Date::MAX, time::Time::MIDNIGHT);
        assert!(t.check(min, max).is_err());
        assert!(t.check(max, min).is_err());
    }
}
